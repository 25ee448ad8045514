// The load generator: `sluice-bench load URL ...` (see bench/README.md).
#pragma once

#include <span>

namespace sluice::bench {

// Runs `sluice-bench load ARGS...` (ARGS excludes the subcommand).
// Returns the process exit code: 0 after a completed run (even one with
// request errors, which are reported), 1 when the run cannot start (bad URL
// host, unwritable output file), 2 on bad usage (message already on stderr).
int run_load(std::span<char* const> args);

} // namespace sluice::bench
