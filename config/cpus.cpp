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
    while (!text.empty()) {
        const auto eol = text.find('\n');
        std::string_view rest = text.substr(0, eol);
        text.remove_prefix(eol == std::string_view::npos ? text.size() : eol + 1);
        field(rest); // id
        field(rest); // parent
        field(rest); // major:minor
        const auto root = field(rest);
        const auto point = field(rest);
        const auto dash = rest.find(" - ");
        if (root.empty() || point.empty() || dash == std::string_view::npos)
            continue;
        rest.remove_prefix(dash + 3);
        const auto fstype = field(rest);
        field(rest); // source
        const auto options = field(rest);
        bool wanted = v2 && fstype == "cgroup2";
        if (!v2 && fstype == "cgroup") {
            for (std::string_view o = options; !o.empty();) {
                const auto comma = o.find(',');
                if (o.substr(0, comma) == "cpu")
                    wanted = true;
                o.remove_prefix(comma == std::string_view::npos ? o.size() : comma + 1);
            }
        }
        if (wanted)
            return cgroup_mount{std::string(point), std::string(root)};
    }
    return std::nullopt;
}

std::string path_under_mount(std::string_view path, const cgroup_mount& mount) {
    std::string_view root = mount.root;
    while (!root.empty() && root.back() == '/')
        root.remove_suffix(1);
    if (!root.empty() && path.starts_with(root) &&
        (path.size() == root.size() || path[root.size()] == '/'))
        path.remove_prefix(root.size());
    while (!path.empty() && path.back() == '/')
        path.remove_suffix(1);
    return std::string(path);
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

namespace {
int count_available_cpus() {
    int cpus = static_cast<int>(std::thread::hardware_concurrency());
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        cpus = CPU_COUNT(&set);
    std::optional<int> quota;
    const auto self = read_file("/proc/self/cgroup");
    const auto mounts = read_file("/proc/self/mountinfo");
    if (self && mounts) {
        const auto v1_path = cgroup_v1_cpu_path(*self);
        const auto v1 = v1_path ? find_cgroup_mount(*mounts, false) : std::nullopt;
        const auto v2_path = cgroup_v2_path(*self);
        const auto v2 = v2_path ? find_cgroup_mount(*mounts, true) : std::nullopt;
        if (v1) {
            quota =
                cpus_from_cgroup_tree(path_under_mount(*v1_path, *v1), [&](const std::string& dir) {
                    const std::string at = v1->point + dir;
                    const auto q = read_file(at + "/cpu.cfs_quota_us");
                    const auto p = read_file(at + "/cpu.cfs_period_us");
                    if (!q || !p)
                        return std::optional<std::string>();
                    // (-1: no limit; cpus_from_cpu_max reads that as none too.)
                    return std::optional<std::string>(q->substr(0, q->find('\n')) + " " + *p);
                });
        } else if (v2) {
            quota =
                cpus_from_cgroup_tree(path_under_mount(*v2_path, *v2), [&](const std::string& dir) {
                    return read_file(v2->point + dir + "/cpu.max");
                });
        }
    }
    if (quota && (cpus <= 0 || *quota < cpus))
        cpus = *quota;
    return std::max(cpus, 1);
}
} // namespace

int available_cpus() {
    static const int cpus = count_available_cpus();
    return cpus;
}

} // namespace sluice::config
