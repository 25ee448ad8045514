#include "config/cpus.hpp"

#include <sched.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>

namespace sluice::config {
namespace {

std::optional<long long> to_number(std::string_view s) {
    long long v = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || end != s.data() + s.size())
        return std::nullopt;
    return v;
}

std::optional<std::string> read_file(const std::string& path) {
    std::ifstream in(path);
    if (!in)
        return std::nullopt;
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

// The first line of `text` for which `take(line)` gives a value.
template <typename Take>
auto first_line(std::string_view text, Take&& take) -> decltype(take(text)) {
    while (!text.empty()) {
        const auto eol = text.find('\n');
        if (auto found = take(text.substr(0, eol)))
            return found;
        text.remove_prefix(eol == std::string_view::npos ? text.size() : eol + 1);
    }
    return std::nullopt;
}

// Whether the comma-separated `list` has `item` ("cpu" in "cpu,cpuacct").
bool lists(std::string_view list, std::string_view item) {
    for (;;) {
        const auto comma = list.find(',');
        if (list.substr(0, comma) == item)
            return true;
        if (comma == std::string_view::npos)
            return false;
        list.remove_prefix(comma + 1);
    }
}

// The path of the first line of /proc/self/cgroup ("id:controllers:path")
// whose controllers `wanted` accepts.
template <typename Wanted>
std::optional<std::string> cgroup_path(std::string_view text, Wanted&& wanted) {
    return first_line(text, [&](std::string_view line) -> std::optional<std::string> {
        const auto first = line.find(':');
        const auto second = first == std::string_view::npos ? first : line.find(':', first + 1);
        if (second == std::string_view::npos || !wanted(line.substr(first + 1, second - first - 1)))
            return std::nullopt;
        return std::string(line.substr(second + 1));
    });
}

std::string_view without_trailing_slashes(std::string_view path) {
    while (!path.empty() && path.back() == '/')
        path.remove_suffix(1);
    return path;
}

// The CPUs of this process's affinity mask, or nothing. The mask is sized
// for the machine: a fixed cpu_set_t holds 1,024 CPUs only.
std::optional<int> affinity_cpus() {
    for (int size = CPU_SETSIZE; size <= (1 << 20); size *= 2) {
        const std::unique_ptr<cpu_set_t, void (*)(cpu_set_t*)> set(
            CPU_ALLOC(size), [](cpu_set_t* s) { CPU_FREE(s); });
        if (!set)
            return std::nullopt;
        const auto bytes = CPU_ALLOC_SIZE(size);
        CPU_ZERO_S(bytes, set.get());
        if (::sched_getaffinity(0, bytes, set.get()) == 0) {
            const int n = CPU_COUNT_S(bytes, set.get());
            return n > 0 ? std::optional<int>(n) : std::nullopt;
        }
        if (errno != EINVAL)
            return std::nullopt;
    }
    return std::nullopt;
}

} // namespace

std::optional<int> cpus_from_cpu_max(std::string_view cpu_max) {
    while (!cpu_max.empty() && (cpu_max.back() == '\n' || cpu_max.back() == ' '))
        cpu_max.remove_suffix(1);
    const auto space = cpu_max.find(' ');
    if (space == std::string_view::npos)
        return std::nullopt;
    const auto quota = to_number(cpu_max.substr(0, space));
    const auto period = to_number(cpu_max.substr(space + 1));
    if (!quota || !period || *quota <= 0 || *period <= 0)
        return std::nullopt; // "max" (or v1's -1): no limit
    const long long cpus = (*quota + *period - 1) / *period;
    return static_cast<int>(std::clamp<long long>(cpus, 1, 1 << 20));
}

std::optional<std::string> cgroup_v2_path(std::string_view text) {
    // (The unified hierarchy's line is "0::/path": no controllers named.)
    return cgroup_path(text, [](std::string_view controllers) { return controllers.empty(); });
}

std::optional<std::string> cgroup_v1_cpu_path(std::string_view text) {
    return cgroup_path(text,
                       [](std::string_view controllers) { return lists(controllers, "cpu"); });
}

std::optional<cgroup_mount> find_cgroup_mount(std::string_view text, bool v2) {
    // "id parent major:minor root point options [tags...] - fstype source super-options"
    const auto field = [](std::string_view& rest) {
        while (!rest.empty() && rest.front() == ' ')
            rest.remove_prefix(1);
        const auto end = rest.find(' ');
        const auto f = rest.substr(0, end);
        rest.remove_prefix(end == std::string_view::npos ? rest.size() : end);
        return f;
    };
    return first_line(text, [&](std::string_view rest) -> std::optional<cgroup_mount> {
        field(rest); // id
        field(rest); // parent
        field(rest); // major:minor
        const auto root = field(rest);
        const auto point = field(rest);
        const auto dash = rest.find(" - ");
        if (root.empty() || point.empty() || dash == std::string_view::npos)
            return std::nullopt;
        rest.remove_prefix(dash + 3);
        const auto fstype = field(rest);
        field(rest); // source
        const auto options = field(rest);
        const bool wanted = v2 ? fstype == "cgroup2" : fstype == "cgroup" && lists(options, "cpu");
        if (!wanted)
            return std::nullopt;
        return cgroup_mount{std::string(point), std::string(root)};
    });
}

std::string path_under_mount(std::string_view path, const cgroup_mount& mount) {
    const auto root = without_trailing_slashes(mount.root);
    if (!root.empty() && path.starts_with(root) &&
        (path.size() == root.size() || path[root.size()] == '/'))
        path.remove_prefix(root.size());
    return std::string(without_trailing_slashes(path));
}

std::optional<int>
cpus_from_cgroup_tree(std::string_view path,
                      const std::function<std::optional<std::string>(const std::string&)>& read) {
    std::optional<int> least;
    std::string at(without_trailing_slashes(path));
    for (;;) {
        if (const auto text = read(at)) {
            if (const auto cpus = cpus_from_cpu_max(*text); cpus && (!least || *cpus < *least))
                least = cpus;
        }
        if (at.empty())
            return least;
        const auto slash = at.rfind('/');
        at.resize(slash == std::string::npos ? 0 : slash);
    }
}

namespace {
// The cgroup CPU quota of this process, or nothing (no limit, or not found).
std::optional<int> quota_cpus() {
    const auto self = read_file("/proc/self/cgroup");
    const auto mounts = read_file("/proc/self/mountinfo");
    if (!self || !mounts)
        return std::nullopt;
    if (const auto path = cgroup_v1_cpu_path(*self)) {
        if (const auto v1 = find_cgroup_mount(*mounts, false)) {
            return cpus_from_cgroup_tree(path_under_mount(*path, *v1), [&](const std::string& dir) {
                const std::string at = v1->point + dir;
                const auto q = read_file(at + "/cpu.cfs_quota_us");
                const auto p = read_file(at + "/cpu.cfs_period_us");
                if (!q || !p)
                    return std::optional<std::string>();
                return std::optional<std::string>(q->substr(0, q->find('\n')) + " " + *p);
            });
        }
    }
    if (const auto path = cgroup_v2_path(*self)) {
        if (const auto v2 = find_cgroup_mount(*mounts, true)) {
            return cpus_from_cgroup_tree(path_under_mount(*path, *v2), [&](const std::string& dir) {
                return read_file(v2->point + dir + "/cpu.max");
            });
        }
    }
    return std::nullopt;
}

int count_available_cpus() {
    int cpus = affinity_cpus().value_or(static_cast<int>(std::thread::hardware_concurrency()));
    if (const auto quota = quota_cpus(); quota && (cpus <= 0 || *quota < cpus))
        cpus = *quota;
    return std::max(cpus, 1);
}
} // namespace

int available_cpus() {
    static const int cpus = count_available_cpus();
    return cpus;
}

} // namespace sluice::config
