#pragma once
// config.watch (SPEC 2, 7): reload when the configuration file changes.
// Watches the file's directory with inotify, so editors that write a new
// file and rename it, and the Kubernetes ConfigMap pattern (an atomic swap
// of the `..data` symlink), are seen as well as writes in place. Runs on the
// control thread.

#include <boost/asio/io_context.hpp>

#include <functional>
#include <memory>
#include <string>

namespace sluice::proxy {

class config_watch {
  public:
    // Calls `on_change` (on `io`'s thread) a short while after the file at
    // `path` changed content. Logs and watches nothing when inotify fails.
    config_watch(boost::asio::io_context& io, std::string path, std::function<void()> on_change);
    ~config_watch();
    config_watch(const config_watch&) = delete;
    config_watch& operator=(const config_watch&) = delete;

  private:
    struct impl;
    std::shared_ptr<impl> impl_;
};

} // namespace sluice::proxy
