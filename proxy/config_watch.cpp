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
#include <unistd.h>

namespace sluice::proxy {
namespace net = boost::asio;

namespace {
// Editors and ConfigMap updates touch the directory several times in a row;
// one reload after they have settled.
constexpr auto settle_time = std::chrono::milliseconds(200);

std::string read_all(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    return in ? out.str() : std::string();
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
        std::map<std::string, std::string> next;
        for (const auto& path : paths) {
            if (next.contains(path))
                continue;
            const auto slash = path.rfind('/');
            const std::string dir =
                slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
            if (!dirs.contains(dir)) {
                if (::inotify_add_watch(descriptor.native_handle(), dir.c_str(),
                                        IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE |
                                            IN_ATTRIB) < 0) {
                    log::error("config watch failed",
                               {{"dir", dir}, {"error", std::strerror(errno)}});
                    continue;
                }
                dirs.insert(dir);
                log::info("watching config", {{"dir", dir}});
            }
            const auto seen = files.find(path);
            next.emplace(path, seen != files.end() ? seen->second : read_all(path));
        }
        // (A directory no longer needed stays watched: its events then
        // find no change, and a reload's configuration rarely moves.)
        files = std::move(next);
    }

    void wait() {
        descriptor.async_wait(net::posix::stream_descriptor::wait_read,
                              [self = shared_from_this()](boost::system::error_code ec) {
                                  if (ec)
                                      return;
                                  self->drain_events();
                                  self->arm_settle();
                                  self->wait();
                              });
    }

    void drain_events() {
        std::array<char, 4096> buf;
        while (::read(descriptor.native_handle(), buf.data(), buf.size()) > 0) {
        }
    }

    void arm_settle() {
        settle.expires_after(settle_time);
        settle.async_wait([self = shared_from_this()](boost::system::error_code ec) {
            if (ec)
                return;
            // Only a real change reloads (an editor's touch does not); an
            // unreadable or half-written file is tried again on the next
            // event.
            bool changed = false;
            for (auto& [path, last] : self->files) {
                auto content = read_all(path);
                if (content.empty() || content == last)
                    continue;
                last = std::move(content);
                changed = true;
            }
            if (changed)
                self->on_change();
        });
    }

    void stop() {
        boost::system::error_code ignored;
        settle.cancel();
        descriptor.close(ignored);
    }

    std::function<void()> on_change;
    net::posix::stream_descriptor descriptor;
    net::steady_timer settle;
    std::set<std::string> dirs;               // watched
    std::map<std::string, std::string> files; // path -> content last seen
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
