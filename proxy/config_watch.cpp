#include "proxy/config_watch.hpp"

#include "proxy/log.hpp"

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utility>

namespace sluice::proxy {
namespace net = boost::asio;

namespace {
// Editors and ConfigMap updates touch the directory several times in a row;
// one reload after they have settled.
constexpr auto settle_time = std::chrono::milliseconds(200);
// Symbolic links followed from a watched path (certbot's live/ links into
// archive/ are one).
constexpr int max_link_hops = 8;

// A digest of the file's content (0: missing, unreadable or empty, which
// is never taken for a change: the next event tries again). Only digests
// are kept: private keys stay on disk.
std::size_t digest_of(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    if (!in)
        return 0;
    const auto text = out.str();
    return text.empty() ? 0 : std::hash<std::string>{}(text) | 1;
}

std::string dir_of(const std::string& path) {
    const auto slash = path.rfind('/');
    return slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
}

// Which directory, by device and inode ({0, 0}: none there).
using identity = std::pair<dev_t, ino_t>;
identity identity_of(const std::string& dir) {
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0)
        return {0, 0};
    return {st.st_dev, st.st_ino};
}

// Where a change to `path` can happen: its directory (or, while that does
// not exist, the nearest one above it that does, where it will be
// created) and, for each symbolic link on the way to the file, the
// directory of what it points to (a link replaced in another directory
// changes what `path` reads).
std::vector<std::string> watch_points(const std::string& path) {
    std::vector<std::string> points;
    std::string at = path;
    for (int hop = 0; hop <= max_link_hops; ++hop) {
        auto dir = dir_of(at);
        while (identity_of(dir) == identity{0, 0} && dir != "/" && dir != ".")
            dir = dir_of(dir);
        points.push_back(dir);
        std::array<char, 4096> target;
        const auto n = ::readlink(at.c_str(), target.data(), target.size() - 1);
        if (n <= 0)
            break;
        std::string next(target.data(), static_cast<std::size_t>(n));
        at = next.front() == '/' ? next : dir_of(at) + "/" + next;
    }
    return points;
}

} // namespace

struct config_watch::impl : std::enable_shared_from_this<impl> {
    impl(net::io_context& io, std::function<void()> cb)
        : on_change(std::move(cb)), descriptor(io), settle(io) {}

    void start(const std::vector<std::string>& paths) {
        const int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (fd < 0) {
            log::error("config watch failed", {{"error", std::strerror(errno)}});
            return;
        }
        descriptor.assign(fd);
        watch(paths);
        wait();
    }

    void watch(const std::vector<std::string>& paths) {
        if (!descriptor.is_open())
            return;
        std::map<std::string, std::size_t> next;
        for (const auto& path : paths) {
            if (next.contains(path))
                continue;
            const auto seen = files.find(path);
            next.emplace(path, seen != files.end() ? seen->second : digest_of(path));
        }
        files = std::move(next);
        follow();
    }

    // Watches every directory a change of the files can happen in; again
    // where the name now leads to another directory (one replaced, removed
    // and made again, or a link that points elsewhere: the watch stays with
    // the directory it was set on). (Directories no longer needed stay
    // watched: their events find no change.)
    void follow() {
        for (const auto& [path, digest] : files)
            for (const auto& dir : watch_points(path)) {
                const auto now = identity_of(dir);
                const auto it = dirs.find(dir);
                if (it != dirs.end() && it->second == now)
                    continue;
                const int wd =
                    ::inotify_add_watch(descriptor.native_handle(), dir.c_str(),
                                        IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE |
                                            IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF);
                if (wd < 0) {
                    // (Tried again once the name leads to another directory.)
                    log::error("config watch failed",
                               {{"dir", dir}, {"error", std::strerror(errno)}});
                    dirs[dir] = now;
                    continue;
                }
                dirs[dir] = now;
                // (Two names of one directory share its watch.)
                if (by_descriptor.insert(wd).second)
                    log::info("watching config", {{"dir", dir}});
            }
    }

    void wait() {
        descriptor.async_wait(net::posix::stream_descriptor::wait_read,
                              [self = shared_from_this()](boost::system::error_code ec) {
                                  if (ec || self->stopped)
                                      return;
                                  self->drain_events();
                                  self->arm_settle();
                                  self->wait();
                              });
    }

    void drain_events() {
        alignas(inotify_event) std::array<char, 4096> buf;
        for (;;) {
            const auto n = ::read(descriptor.native_handle(), buf.data(), buf.size());
            if (n <= 0)
                return;
            for (std::size_t at = 0; at + sizeof(inotify_event) <= static_cast<std::size_t>(n);) {
                inotify_event ev;
                std::memcpy(&ev, buf.data() + at, sizeof ev);
                // A watch ends with its directory (then follow() sees the
                // name lead elsewhere, or nowhere); an overflow may have
                // lost such news: every directory is looked at again.
                if ((ev.mask & IN_IGNORED) != 0)
                    by_descriptor.erase(ev.wd);
                if ((ev.mask & IN_Q_OVERFLOW) != 0)
                    dirs.clear();
                at += sizeof(inotify_event) + ev.len;
            }
        }
    }

    void arm_settle() {
        settle.expires_after(settle_time);
        settle.async_wait([self = shared_from_this()](boost::system::error_code ec) {
            if (ec || self->stopped)
                return;
            self->follow();
            // Only a real change reloads (an editor's touch does not).
            bool changed = false;
            for (auto& [path, last] : self->files) {
                const auto digest = digest_of(path);
                if (digest == 0 || digest == last)
                    continue;
                last = digest;
                changed = true;
            }
            if (changed)
                self->on_change();
        });
    }

    void stop() {
        stopped = true;
        boost::system::error_code ignored;
        settle.cancel();
        descriptor.close(ignored);
    }

    std::function<void()> on_change;
    net::posix::stream_descriptor descriptor;
    net::steady_timer settle;
    bool stopped = false;
    std::map<std::string, identity> dirs;     // watched name -> the directory it led to
    std::set<int> by_descriptor;              // inotify watches
    std::map<std::string, std::size_t> files; // path -> digest last seen
};

config_watch::config_watch(net::io_context& io, std::vector<std::string> paths,
                           std::function<void()> on_change)
    : impl_(std::make_shared<impl>(io, std::move(on_change))) {
    impl_->start(paths);
}

config_watch::~config_watch() {
    impl_->stop();
}

void config_watch::watch(const std::vector<std::string>& paths) {
    impl_->watch(paths);
}

} // namespace sluice::proxy
