// `sluice-bench probe URL [--timeout D]`: one GET, exit 0 on a 2xx answer.
// Made for container health checks (the Dockerfile's HEALTHCHECK against the
// admin /healthz), so the runtime image needs no curl.
#pragma once

#include "bench/load_options.hpp"

#include <chrono>
#include <span>
#include <string>
#include <variant>

namespace sluice::bench {

struct probe_options {
    std::string url_text;
    target_url url; // http:// only: the admin listener speaks plain HTTP
    // Bounds the whole probe: resolve, connect, request and response.
    std::chrono::nanoseconds timeout = std::chrono::seconds{2};
};

// What parse_probe_args found wrong, or that --help was asked for.
struct probe_usage {
    std::string message; // empty for --help
};

// Parses `probe` arguments (without the subcommand). Pure: no sockets.
// Returns the options, or the first problem (one http:// URL is required;
// --timeout takes a duration such as 2s or 500ms).
std::variant<probe_options, probe_usage> parse_probe_args(std::span<char* const> args);

// Runs `sluice-bench probe ARGS...` (ARGS excludes the subcommand).
// Returns the process exit code: 0 when the answer's status is 2xx (nothing
// printed); 1 otherwise (connect refused, timeout, non-2xx status, a
// malformed answer, bad usage), with one line on stderr saying why. Bad
// usage is 1, not the usual 2, because a container health check reads any
// exit code but 0 and 1 as reserved.
int run_probe(std::span<char* const> args);

} // namespace sluice::bench
