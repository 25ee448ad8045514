#pragma once
// Internal to config/ (not for the rest of the proxy): helpers shared by load.cpp and
// validate.cpp. No yaml-cpp here either.

#include "config/load.hpp"

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::config::detail {

// `text` in double quotes, with '"', '\' and control characters escaped, for messages such as
// `unknown key "bnid"`.
std::string quote(std::string_view text);

// " (did you mean "bind"?)" when one of `candidates` is within a small edit distance of `word`
// and clearly closer than the rest, else "". Appended to unknown-key and unknown-name messages.
std::string did_you_mean(std::string_view word, std::span<const std::string_view> candidates);

// Takes a route's `match.host` as written. Returns what routes compare the Host header with:
// lowercase, without a ":port" (the request's port is ignored when matching, so a port here
// could only make the route never match); "" stays "" (any host). Returns nullopt, with a
// reason to append to the message in `problem` (possibly left empty), unless it is a host
// name, an IPv4 literal, a bracketed IPv6 literal, or "*." followed by a host name.
std::optional<std::string> host_pattern(std::string_view written, std::string& problem);

// "200" -> {200, 200}; "200-399" -> {200, 399}. Three-digit statuses from 100 to 599, low <=
// high; nullopt otherwise.
std::optional<std::pair<int, int>> parse_status_range(std::string_view text);

// The cross-field checks, run once every section was read. Takes a config whose fields were
// each checked on their own (possibly with errors already found; fields that failed keep their
// defaults) and whose `positions` were filled by the loader. Appends one error, placed with
// error_at(), for each: duplicate listener names, listener binds that are equal or overlap on
// the same port (a wildcard host overlaps every host; port 0 never conflicts), duplicate
// upstream names, the same server address twice in one upstream, a route naming an upstream
// that does not exist, and an admin bind that a listener also uses.
void validate(const config& cfg, std::vector<error>& errors);

} // namespace sluice::config::detail
