#pragma once
// Loading and validating a configuration file. The only entry point into
// config/ for the rest of the proxy; yaml-cpp stays behind it.

#include "config/model.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace sluice::config {

// One problem found in a configuration file. `line` and `column` are 1-based
// and point at the offending key or value; `key` is the key path, e.g.
// "upstreams[0].servers[1].address".
struct error {
    std::string file;
    int line = 0;
    int column = 0;
    std::string key;
    std::string message;
};

// "file:line:col: key: message" (or "file:line:col: message" when key is empty).
std::string to_string(const error& e);

using load_result = std::variant<config, std::vector<error>>;

// Reads, parses and validates the file at `path`. Returns the complete config,
// or every error found (never just the first). Never throws. Certificate files
// are not opened here (tls/ checks them); missing or unreadable config files,
// YAML syntax errors, unknown keys, wrong types, bad durations/sizes/addresses,
// duplicate names and unknown upstream references are all reported as errors.
load_result load_file(const std::string& path);

// The same for YAML text already in memory; `file_name` is used in messages.
load_result load_string(std::string_view yaml, const std::string& file_name);

// An error about the value at `key` of an already loaded config, placed at the line and column
// where that value was written (or where its nearest written parent was, or 1:1), for checks
// made after loading: certificates that do not load, binds that fail at start-up.
// Example: error_at(cfg, "listeners[0].tls.certificates[0].cert_file", "cannot read ...").
error error_at(const config& cfg, std::string_view key, std::string message);

// Units (SPEC 2). Each returns std::nullopt on malformed input.
// "250ms", "5s", "2m", "1h" (also "0s"); integer amounts only.
std::optional<duration> parse_duration(std::string_view text);
// "512", "16KiB", "1MiB", "1GiB" (also KB/MB/GB as powers of 1000).
std::optional<std::uint64_t> parse_size(std::string_view text);
// "host:port" or "[v6]:port"; port 0..65535; host non-empty.
std::optional<host_port> parse_host_port(std::string_view text);
// "10.0.0.0/8", "::1/128", or a bare address (a /32 or /128).
std::optional<cidr> parse_cidr(std::string_view text);

} // namespace sluice::config
