#pragma once
// Route matching (SPEC 2 `routes`): host exact or "*.suffix" (one extra
// label), case-insensitive, port ignored; then a literal path prefix, query
// ignored; the first route that matches wins.

#include "config/model.hpp"

#include <string_view>
#include <vector>

namespace sluice::proxy {

struct compiled_route {
    std::string host;      // lowercase exact host, or the suffix ".example.com" of a wildcard
    bool wildcard = false; // host holds the suffix of "*.example.com"
    std::string path_prefix;
    const config::route* route = nullptr; // the action; points into the snapshot's config
    int upstream_index = -1;              // for `upstream` actions: index in snapshot upstreams
};

// The Host value without its port ("example.com:8080" -> "example.com",
// "[::1]:80" -> "[::1]").
std::string_view host_without_port(std::string_view host);

// The path of a request target without its query ("/a?b" -> "/a"). For an
// absolute-form target ("http://h/p?q") the path part ("/p").
std::string_view target_path(std::string_view target);

// The authority of an absolute-form target ("http://h:1/p" -> "h:1"), or "".
std::string_view target_authority(std::string_view target);

bool host_matches(const compiled_route& r, std::string_view host);

// The first route of `routes` matching `host` (as received, port allowed)
// and `path` (no query), or nullptr.
const compiled_route* match_route(const std::vector<compiled_route>& routes, std::string_view host,
                                  std::string_view path);

compiled_route compile_route(const config::route& r);

} // namespace sluice::proxy
