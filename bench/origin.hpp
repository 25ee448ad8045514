// The test origin: a small, fast HTTP/1.1 + WebSocket upstream whose answers
// are steered by the request path (see bench/README.md).
#pragma once

#include <span>

namespace sluice::bench {

// Runs `sluice-bench origin ARGS...` (ARGS excludes the subcommand).
// Returns the process exit code: 0 after SIGTERM/SIGINT or --help, 1 when the
// listener cannot be opened, 2 on bad usage (message already on stderr).
int run_origin(std::span<char* const> args);

} // namespace sluice::bench
