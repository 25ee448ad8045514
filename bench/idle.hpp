// `sluice-bench idle`: opens many keep-alive connections, sends one request on
// each, then holds them open and silent, so a proxy's memory per idle client
// connection can be measured (bench/compare.sh scenario 6).
#pragma once

#include <span>

namespace sluice::bench {

// Runs `sluice-bench idle ARGS...` (ARGS excludes the subcommand).
// Returns the process exit code: 0 after the hold ended (by time or by
// SIGTERM/SIGINT), even when some connections failed (they are reported);
// 1 when the host does not resolve; 2 on bad usage (message on stderr).
int run_idle(std::span<char* const> args);

} // namespace sluice::bench
