#pragma once
// The process: the workers and the control thread (the caller's thread,
// which runs signals, reloads and the admin listener). Kept free of Asio
// types so main.cpp stays light.

#include "config/model.hpp"

#include <memory>

namespace sluice::proxy {

class server_impl;

class server {
  public:
    // Takes a validated config. Nothing is bound until run().
    explicit server(config::config cfg);
    ~server();
    server(const server&) = delete;
    server& operator=(const server&) = delete;

    // Binds every listener and the admin listener, starts the workers and
    // serves until SIGTERM/SIGINT and the drain that follows. Returns the
    // process exit code: 0 after a clean drain, 1 when start-up failed
    // (the reason is logged).
    int run();

  private:
    std::unique_ptr<server_impl> impl_;
};

} // namespace sluice::proxy
