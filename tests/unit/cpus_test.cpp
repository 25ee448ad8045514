// `workers: auto`: the CPUs a process may use, from its affinity and its
// cgroup's CPU quota (the parsing; available_cpus() itself in the
// integration tests, on a proxy started with a narrower affinity).

#include "config/cpus.hpp"

#include <catch2/catch.hpp>

#include <map>
#include <sched.h>

namespace cfg = sluice::config;

TEST_CASE("cpu.max gives the quota's CPUs rounded up, or no limit", "[cpus]") {
    CHECK(cfg::cpus_from_cpu_max("max 100000\n") == std::nullopt);
    CHECK(cfg::cpus_from_cpu_max("100000 100000\n") == 1);
    CHECK(cfg::cpus_from_cpu_max("150000 100000\n") == 2);
    CHECK(cfg::cpus_from_cpu_max("50000 100000") == 1);
    CHECK(cfg::cpus_from_cpu_max("400000 100000") == 4);
    CHECK(cfg::cpus_from_cpu_max("1000 100000") == 1);
    // cgroup v1's "quota period" with -1 (no limit), and what is not a quota.
    CHECK(cfg::cpus_from_cpu_max("-1 100000\n") == std::nullopt);
    CHECK(cfg::cpus_from_cpu_max("") == std::nullopt);
    CHECK(cfg::cpus_from_cpu_max("max") == std::nullopt);
    CHECK(cfg::cpus_from_cpu_max("100000 0") == std::nullopt);
    CHECK(cfg::cpus_from_cpu_max("12x 100000") == std::nullopt);
}

TEST_CASE("/proc/self/cgroup gives the unified and the v1 cpu paths", "[cpus]") {
    const char* v2_only = "0::/system.slice/docker-abc.scope\n";
    CHECK(cfg::cgroup_v2_path(v2_only) == "/system.slice/docker-abc.scope");
    CHECK(cfg::cgroup_v1_cpu_path(v2_only) == std::nullopt);

    const char* hybrid = "12:cpuset:/\n"
                         "4:cpu,cpuacct:/docker/abc\n"
                         "3:memory:/docker/abc\n"
                         "1:name=systemd:/docker/abc\n"
                         "0::/docker/abc";
    CHECK(cfg::cgroup_v1_cpu_path(hybrid) == "/docker/abc");
    CHECK(cfg::cgroup_v2_path(hybrid) == "/docker/abc");
    // "cpuacct" and "cpuset" are not "cpu".
    CHECK(cfg::cgroup_v1_cpu_path("2:cpuacct:/a\n3:cpuset:/b\n") == std::nullopt);
    CHECK(cfg::cgroup_v1_cpu_path("1:cpu:/\n") == "/");
    CHECK(cfg::cgroup_v2_path("") == std::nullopt);
    CHECK(cfg::cgroup_v2_path("garbage\n") == std::nullopt);
}

TEST_CASE("mountinfo gives where the cpu controller and cgroup2 are mounted", "[cpus]") {
    const char* hybrid =
        "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
        "32 31 0:29 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
        "33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
        "34 31 0:31 /docker/abc /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup "
        "rw,cpu,cpuacct\n"
        "35 31 0:32 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n";
    const auto v1 = cfg::find_cgroup_mount(hybrid, false);
    REQUIRE(v1);
    CHECK(v1->point == "/sys/fs/cgroup/cpu,cpuacct");
    CHECK(v1->root == "/docker/abc");
    const auto v2 = cfg::find_cgroup_mount(hybrid, true);
    REQUIRE(v2);
    CHECK(v2->point == "/sys/fs/cgroup/unified");
    CHECK(v2->root == "/");

    const char* unified = "25 20 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n";
    const auto only_v2 = cfg::find_cgroup_mount(unified, true);
    REQUIRE(only_v2);
    CHECK(only_v2->point == "/sys/fs/cgroup");
    CHECK(cfg::find_cgroup_mount(unified, false) == std::nullopt);
    CHECK(cfg::find_cgroup_mount("", true) == std::nullopt);
    CHECK(cfg::find_cgroup_mount("garbage line\n", false) == std::nullopt);

    // Paths from /proc/self/cgroup, under the mount's root.
    const cfg::cgroup_mount at_docker{"/sys/fs/cgroup/cpu", "/docker/abc"};
    CHECK(cfg::path_under_mount("/docker/abc", at_docker) == "");
    CHECK(cfg::path_under_mount("/docker/abc/sub", at_docker) == "/sub");
    CHECK(cfg::path_under_mount("/docker/abcd", at_docker) == "/docker/abcd");
    const cfg::cgroup_mount at_root{"/sys/fs/cgroup", "/"};
    CHECK(cfg::path_under_mount("/system.slice/x.service", at_root) == "/system.slice/x.service");
    CHECK(cfg::path_under_mount("/", at_root) == "");
}

TEST_CASE("the tightest quota from a cgroup up to the root binds", "[cpus]") {
    std::map<std::string, std::string> files;
    auto read = [&files](const std::string& dir) -> std::optional<std::string> {
        const auto it = files.find(dir);
        if (it == files.end())
            return std::nullopt;
        return it->second;
    };
    CHECK(cfg::cpus_from_cgroup_tree("/a/b", read) == std::nullopt); // no files at all
    files[""] = "max 100000\n";
    files["/a"] = "300000 100000\n";
    files["/a/b"] = "max 100000\n";
    CHECK(cfg::cpus_from_cgroup_tree("/a/b", read) == 3); // the parent's
    files["/a/b"] = "150000 100000\n";
    CHECK(cfg::cpus_from_cgroup_tree("/a/b", read) == 2); // its own, tighter
    CHECK(cfg::cpus_from_cgroup_tree("/a/b/", read) == 2);
    // A container sees its own cgroup as the root: the path from
    // /proc/self/cgroup is not there below it, the root's quota is.
    files.clear();
    files[""] = "200000 100000\n";
    CHECK(cfg::cpus_from_cgroup_tree("/docker/abc", read) == 2);
    CHECK(cfg::cpus_from_cgroup_tree("/", read) == 2);
}

TEST_CASE("available CPUs are at most those of the affinity mask", "[cpus]") {
    // (That they follow it is tested on the proxy itself, started with a
    // narrower mask: test_cli.py.)
    cpu_set_t set;
    CPU_ZERO(&set);
    REQUIRE(::sched_getaffinity(0, sizeof set, &set) == 0);
    CHECK(cfg::available_cpus() >= 1);
    CHECK(cfg::available_cpus() <= CPU_COUNT(&set));
}
