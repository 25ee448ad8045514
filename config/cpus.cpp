#include "config/cpus.hpp"

#include <sched.h>

#include <algorithm>
#include <charconv>
#include <fstream>
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
        return std::nullopt; // "max": no limit
    const long long cpus = (*quota + *period - 1) / *period;
    return static_cast<int>(std::clamp<long long>(cpus, 1, 1 << 20));
}

namespace {
// The path of the first line of /proc/self/cgroup ("id:controllers:path")
// that `wanted` accepts (given the id and the controllers).
template <typename Wanted>
std::optional<std::string> cgroup_path(std::string_view text, Wanted&& wanted) {
    while (!text.empty()) {
        const auto eol = text.find('\n');
        const auto line = text.substr(0, eol);
        const auto first = line.find(':');
        const auto second = first == std::string_view::npos ? first : line.find(':', first + 1);
        if (second != std::string_view::npos &&
            wanted(line.substr(0, first), line.substr(first + 1, second - first - 1)))
            return std::string(line.substr(second + 1));
        if (eol == std::string_view::npos)
            break;
        text.remove_prefix(eol + 1);
    }
    return std::nullopt;
}
} // namespace

std::optional<std::string> cgroup_v2_path(std::string_view text) {
    return cgroup_path(text, [](std::string_view id, std::string_view controllers) {
        return id == "0" && controllers.empty();
    });
}

std::optional<std::string> cgroup_v1_cpu_path(std::string_view text) {
    return cgroup_path(text, [](std::string_view id, std::string_view controllers) {
        while (!controllers.empty()) {
            const auto comma = controllers.find(',');
            if (controllers.substr(0, comma) == "cpu")
                return id != "0";
            if (comma == std::string_view::npos)
                break;
            controllers.remove_prefix(comma + 1);
        }
        return false;
    });
}

std::optional<int>
cpus_from_cgroup_tree(std::string_view path,
                      const std::function<std::optional<std::string>(const std::string&)>& read) {
    std::optional<int> least;
    std::string at(path);
    while (!at.empty() && at.back() == '/')
        at.pop_back();
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

int available_cpus() {
    int cpus = static_cast<int>(std::thread::hardware_concurrency());
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        cpus = CPU_COUNT(&set);
    std::optional<int> quota;
    if (const auto self = read_file("/proc/self/cgroup")) {
        if (const auto path = cgroup_v1_cpu_path(*self)) {
            quota = cpus_from_cgroup_tree(*path, [](const std::string& dir) {
                const std::string at = "/sys/fs/cgroup/cpu" + dir;
                const auto q = read_file(at + "/cpu.cfs_quota_us");
                const auto p = read_file(at + "/cpu.cfs_period_us");
                if (!q || !p)
                    return std::optional<std::string>();
                // (-1: no limit; cpus_from_cpu_max reads that as none too.)
                return std::optional<std::string>(q->substr(0, q->find('\n')) + " " + *p);
            });
        } else if (const auto v2 = cgroup_v2_path(*self)) {
            // The unified hierarchy's mount: /sys/fs/cgroup itself, or
            // /sys/fs/cgroup/unified next to v1 controllers (hybrid).
            const std::string root = read_file("/sys/fs/cgroup/cgroup.controllers")
                                         ? "/sys/fs/cgroup"
                                         : "/sys/fs/cgroup/unified";
            quota = cpus_from_cgroup_tree(*v2, [&root](const std::string& dir) {
                return read_file(root + dir + "/cpu.max");
            });
        }
    }
    if (quota && (cpus <= 0 || *quota < cpus))
        cpus = *quota;
    return std::max(cpus, 1);
}

} // namespace sluice::config
