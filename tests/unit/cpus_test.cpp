// `workers: auto`: the CPUs a process may use, from its affinity and its
// cgroup's CPU quota (the parsing; available_cpus() itself in the
// integration tests, under taskset).

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

TEST_CASE("available CPUs follow the affinity mask", "[cpus]") {
    cpu_set_t set;
    CPU_ZERO(&set);
    REQUIRE(::sched_getaffinity(0, sizeof set, &set) == 0);
    const int allowed = CPU_COUNT(&set);
    CHECK(cfg::available_cpus() >= 1);
    CHECK(cfg::available_cpus() <= allowed);
}
