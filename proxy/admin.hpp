#pragma once
// The admin listener (SPEC 8): health, readiness, status, metrics and
// reload, served on the control thread. It asks the server for everything
// through control_plane, so it holds no proxy state of its own.

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <cstdint>
#include <memory>
#include <string>

namespace sluice::proxy {

struct reload_result {
    bool ok = false;
    std::uint64_t generation = 0;
    std::string error; // "file:line:col: ..." lines when !ok
};

class control_plane {
  public:
    virtual ~control_plane() = default;
    virtual bool ready() const = 0;
    virtual std::string status_json() const = 0;
    virtual std::string metrics_text() const = 0;
    virtual std::string status_page() const = 0;
    virtual reload_result reload(const char* trigger) = 0;
};

class admin_server {
  public:
    // Listens on `acceptor` (already bound) and answers until stop().
    admin_server(boost::asio::io_context& io, boost::asio::ip::tcp::acceptor acceptor,
                 control_plane& control);
    void start();
    void stop();

  private:
    boost::asio::io_context& io_;
    boost::asio::ip::tcp::acceptor acceptor_;
    control_plane& control_;
};

} // namespace sluice::proxy
