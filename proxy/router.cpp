#include "proxy/router.hpp"

#include "proxy/http_parser.hpp"

namespace sluice::proxy {

std::string_view host_without_port(std::string_view host) {
    if (!host.empty() && host.front() == '[') {
        const auto close = host.find(']');
        return close == std::string_view::npos ? host : host.substr(0, close + 1);
    }
    const auto colon = host.rfind(':');
    return colon == std::string_view::npos ? host : host.substr(0, colon);
}

std::string_view target_authority(std::string_view target) {
    std::size_t skip = 0;
    if (target.size() > 7 && http::iequals(target.substr(0, 7), "http://"))
        skip = 7;
    else if (target.size() > 8 && http::iequals(target.substr(0, 8), "https://"))
        skip = 8;
    else
        return {};
    const auto rest = target.substr(skip);
    return rest.substr(0, rest.find_first_of("/?"));
}

std::string_view target_path(std::string_view target) {
    if (!target.empty() && target.front() != '/') {
        const auto authority = target_authority(target);
        if (authority.empty())
            return target; // "*" or something the route cannot match
        const auto scheme_len = target.find("://") + 3;
        target.remove_prefix(scheme_len + authority.size());
        if (target.empty() || target.front() == '?')
            return "/";
    }
    return target.substr(0, target.find('?'));
}

bool host_matches(const compiled_route& r, std::string_view host) {
    if (r.host.empty())
        return true;
    host = host_without_port(host);
    if (!host.empty() && host.back() == '.')
        host.remove_suffix(1); // "example.com." is example.com
    if (!r.wildcard)
        return http::iequals(host, r.host);
    // "*.example.com": exactly one non-empty label before the suffix.
    if (host.size() <= r.host.size())
        return false;
    const auto label = host.substr(0, host.size() - r.host.size());
    if (label.find('.') != std::string_view::npos)
        return false;
    return http::iequals(host.substr(label.size()), r.host);
}

const compiled_route* match_route(const std::vector<compiled_route>& routes, std::string_view host,
                                  std::string_view path) {
    for (const auto& r : routes) {
        if (!host_matches(r, host))
            continue;
        if (path.substr(0, r.path_prefix.size()) != r.path_prefix)
            continue;
        return &r;
    }
    return nullptr;
}

compiled_route compile_route(const config::route& r) {
    compiled_route c;
    c.route = &r;
    c.path_prefix = r.match.path_prefix.empty() ? "/" : r.match.path_prefix;
    std::string host;
    for (char ch : r.match.host)
        host.push_back((ch >= 'A' && ch <= 'Z') ? static_cast<char>(ch + 32) : ch);
    if (host.size() > 2 && host[0] == '*' && host[1] == '.') {
        c.wildcard = true;
        c.host = host.substr(1); // ".example.com"
    } else {
        c.host = host;
    }
    return c;
}

} // namespace sluice::proxy
