#pragma once
// config.watch (SPEC 2, 7): reload when the configuration file, or a file it
// names (certificates, keys, upstream CA bundles), changes. Watches each
// file's directory with inotify, so editors that write a new file and
// rename it, and the Kubernetes ConfigMap and Secret pattern (an atomic swap
// of the `..data` symlink), are seen as well as writes in place. Runs on the
// control thread.

#include <boost/asio/io_context.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace sluice::proxy {

class config_watch {
  public:
    // Calls `on_change` (on `io`'s thread) a short while after one of the
    // files at `paths` changed content. Logs and watches nothing when
    // inotify fails.
    config_watch(boost::asio::io_context& io, std::vector<std::string> paths,
                 std::function<void()> on_change);
    ~config_watch();
    config_watch(const config_watch&) = delete;
    config_watch& operator=(const config_watch&) = delete;

    // Watches `paths` from now on (the files a configuration just installed
    // names); a file already watched keeps the content last seen.
    void watch(const std::vector<std::string>& paths);

  private:
    struct impl;
    std::shared_ptr<impl> impl_;
};

} // namespace sluice::proxy
