#pragma once
// How many CPUs this process may use, for `workers: auto`: the CPUs its
// affinity allows (taskset, a container's cpuset), capped by a cgroup CPU
// quota rounded up (a container's `cpus: 1.5` gives 2). The parsing is
// pure and tested on its own; available_cpus() reads the system.

#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace sluice::config {

// A cgroup v2 `cpu.max` ("max 100000", "150000 100000"), or v1's quota
// and period in the same form ("-1 100000"): the CPUs the quota allows,
// rounded up, or nothing when it sets no limit or cannot be read as one.
std::optional<int> cpus_from_cpu_max(std::string_view cpu_max);

// The cgroup v2 path in /proc/self/cgroup's text (the "0::/path" line), or
// nothing (no unified hierarchy).
std::optional<std::string> cgroup_v2_path(std::string_view proc_self_cgroup);

// The cgroup v1 path of the `cpu` controller in /proc/self/cgroup's text
// (a line "N:cpu,cpuacct:/path"), or nothing.
std::optional<std::string> cgroup_v1_cpu_path(std::string_view proc_self_cgroup);

// Where a cgroup hierarchy is mounted, from /proc/self/mountinfo's text:
// the cgroup2 mount (`v2`), or the v1 mount whose controllers include
// `cpu` ("cpu", "cpu,cpuacct", ...). `root` is the cgroup the mount shows
// at `point` (a container often sees its own cgroup there).
struct cgroup_mount {
    std::string point;
    std::string root;
};
std::optional<cgroup_mount> find_cgroup_mount(std::string_view mountinfo, bool v2);

// A path from /proc/self/cgroup, relative to `mount`'s root ("" for the
// root itself); a path outside that root is kept as it is (the walk up
// from it reaches the root).
std::string path_under_mount(std::string_view path, const cgroup_mount& mount);

// The smallest quota of `path` and of every cgroup above it (a parent's
// limit binds its children), reading each cgroup's quota with `read` as
// cpu.max's text (given a path relative to the cgroup root, "" for the
// root itself; it returns nothing for a cgroup not there: in a container
// the hierarchy is often mounted from the container's own cgroup down).
std::optional<int>
cpus_from_cgroup_tree(std::string_view path,
                      const std::function<std::optional<std::string>(const std::string&)>& read);

// CPUs in this process's affinity mask, capped by its cgroup's CPU quota
// (v2 cpu.max, or v1 cpu.cfs_quota_us over cpu.cfs_period_us, found from
// /proc/self/cgroup and /proc/self/mountinfo); at least 1. Worked out once
// per process (workers cannot change without a restart).
int available_cpus();

} // namespace sluice::config
