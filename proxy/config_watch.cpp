#include "proxy/config_watch.hpp"

#include "proxy/log.hpp"

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
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
    impl(net::io_context& io, std::string p, std::function<void()> cb)
        : path(std::move(p)), on_change(std::move(cb)), descriptor(io), settle(io) {}

    void start() {
        const int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (fd < 0) {
            log::error("config watch failed", {{"error", std::strerror(errno)}});
            return;
        }
        const auto slash = path.rfind('/');
        const std::string dir =
            slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
        if (::inotify_add_watch(fd, dir.c_str(),
                                IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_ATTRIB) <
            0) {
            log::error("config watch failed", {{"dir", dir}, {"error", std::strerror(errno)}});
            ::close(fd);
            return;
        }
        descriptor.assign(fd);
        last_content = read_all(path);
        log::info("watching config", {{"path", path}});
        wait();
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
            auto content = read_all(self->path);
            // Only a real change reloads (an editor's touch does not); an
            // unreadable or half-written file is tried again on the next event.
            if (content.empty() || content == self->last_content)
                return;
            self->last_content = std::move(content);
            self->on_change();
        });
    }

    void stop() {
        boost::system::error_code ignored;
        settle.cancel();
        descriptor.close(ignored);
    }

    std::string path;
    std::function<void()> on_change;
    net::posix::stream_descriptor descriptor;
    net::steady_timer settle;
    std::string last_content;
};

config_watch::config_watch(net::io_context& io, std::string path, std::function<void()> on_change)
    : impl_(std::make_shared<impl>(io, std::move(path), std::move(on_change))) {
    impl_->start();
}

config_watch::~config_watch() {
    impl_->stop();
}

} // namespace sluice::proxy
