#include "proxy/headers.hpp"

#include "proxy/errors.hpp"
#include "proxy/router.hpp"

#include <charconv>

namespace sluice::proxy {
namespace {

using http::iequals;

void append_field(std::string& out, std::string_view name, std::string_view value) {
    out.append(name);
    out.append(": ");
    out.append(value);
    out.append("\r\n");
}

void append_number(std::string& out, std::uint64_t n) {
    char digits[24];
    const auto [end, ec] = std::to_chars(digits, digits + sizeof digits, n);
    out.append(digits, end);
}

bool named_in_connection(std::string_view name, const http::message_head& head) {
    for (const auto& f : head.fields) {
        if (f.name_id() != http::field_name::connection)
            continue;
        std::string_view v = f.value;
        while (!v.empty()) {
            const auto comma = v.find(',');
            auto token = v.substr(0, comma);
            while (!token.empty() && (token.front() == ' ' || token.front() == '\t'))
                token.remove_prefix(1);
            while (!token.empty() && (token.back() == ' ' || token.back() == '\t'))
                token.remove_suffix(1);
            if (iequals(token, name))
                return true;
            if (comma == std::string_view::npos)
                break;
            v.remove_prefix(comma + 1);
        }
    }
    return false;
}

bool is_hop_by_hop_name(http::field_name id) {
    using enum http::field_name;
    switch (id) {
    case te:
    case upgrade:
    case trailer:
    case connection:
    case keep_alive:
    case proxy_connection:
    case transfer_encoding:
        return true;
    default:
        return false;
    }
}

// Hop-by-hop fields of RFC 9110 7.6.1 plus Proxy-Connection and
// Keep-Alive, and any field the head's Connection names.
bool is_hop_by_hop_field(const http::field& f, const http::message_head& head) {
    // Rarely set, so the scan for names listed in Connection is rarely run.
    return is_hop_by_hop_name(f.name_id()) ||
           (head.connection_lists_fields && named_in_connection(f.name, head));
}

// Copies the field lines kept from a parsed head as they were received;
// lines adjacent in the received head go out in one append. Anything else
// appended to `out` must come after flush().
class line_copier {
  public:
    explicit line_copier(std::string& out) : out_(out) {}
    void keep(const http::field& f) {
        if (f.line_size == 0) { // not from the parser: no line to copy
            flush();
            append_field(out_, f.name, f.value);
            return;
        }
        const char* const begin = f.name.data();
        if (begin != end_) {
            flush();
            begin_ = begin;
        }
        end_ = begin + f.line_size;
    }
    void flush() {
        if (begin_ != end_)
            out_.append(begin_, static_cast<std::size_t>(end_ - begin_));
        begin_ = end_ = nullptr;
    }

  private:
    std::string& out_;
    const char* begin_ = nullptr;
    const char* end_ = nullptr;
};

} // namespace

void build_upstream_request(const http::message_head& req, const forward_facts& facts,
                            std::string& out) {
    using enum http::field_name;
    out.append(req.method);
    out.push_back(' ');
    out.append(facts.path);
    out.append(" HTTP/1.1\r\n");

    // Incoming X-Forwarded-* values, kept only from trusted peers.
    bool xff_any = false; // a trusted peer sent X-Forwarded-For (joined below, in order)
    std::string_view xf_proto;
    std::string_view xf_host;
    bool saw_host = false;
    bool explicit_zero_length = false; // "Content-Length: 0", parsed as no body

    line_copier lines(out);
    for (const auto& f : req.fields) {
        if (f.name_id() == content_length) { // framing: set below
            explicit_zero_length = true;
            continue;
        }
        if (is_hop_by_hop_field(f, req) || iequals(f.name, facts.request_id_header))
            continue;
        switch (f.name_id()) {
        case x_forwarded_for:
            if (facts.peer_trusted && !f.value.empty())
                xff_any = true;
            continue;
        case x_forwarded_proto:
            if (facts.peer_trusted && xf_proto.empty())
                xf_proto = f.value;
            continue;
        case x_forwarded_host:
            if (facts.peer_trusted && xf_host.empty())
                xf_host = f.value;
            continue;
        case expect:
            if (facts.strip_expect)
                continue;
            break;
        case host:
            // One Host only, even if the client sent several; an
            // absolute-form target's authority replaces it (RFC 9112 3.2.2).
            if (saw_host)
                continue;
            saw_host = true;
            if (!facts.authority.empty()) {
                lines.flush();
                append_field(out, "Host", facts.authority);
                continue;
            }
            break;
        default:
            break;
        }
        lines.keep(f);
    }
    lines.flush();
    // HTTP/1.1 requires a Host (RFC 9112 3.2); an HTTP/1.0 client may have
    // sent none.
    if (!saw_host)
        append_field(out, "Host", !facts.authority.empty() ? facts.authority : facts.default_host);

    if (req.body == http::framing::chunked) {
        append_field(out, "Transfer-Encoding", req.transfer_encoding);
    } else if (req.body == http::framing::content_length) {
        out.append("Content-Length: ");
        append_number(out, req.content_length);
        out.append("\r\n");
    } else if (req.content_length == 0 && explicit_zero_length) {
        // An explicit "Content-Length: 0" (parsed as no body) is kept: some
        // servers demand a length on POST.
        out.append("Content-Length: 0\r\n");
    }

    out.append("X-Forwarded-For: ");
    if (xff_any) {
        // Several X-Forwarded-For fields form one list, in order; empty
        // ones add nothing.
        for (const auto& f : req.fields) {
            if (f.name_id() != x_forwarded_for || f.value.empty())
                continue;
            out.append(f.value);
            out.append(", ");
        }
    }
    out.append(facts.client_ip);
    out.append("\r\n");
    append_field(out, "X-Forwarded-Proto",
                 !xf_proto.empty() ? xf_proto : (facts.tls ? std::string_view("https") : "http"));
    const std::string_view host_value = !xf_host.empty()           ? xf_host
                                        : !facts.authority.empty() ? facts.authority
                                                                   : req.host;
    if (!host_value.empty())
        append_field(out, "X-Forwarded-Host", host_value);
    append_field(out, facts.request_id_header, facts.request_id);
    if (facts.upgrade) {
        append_field(out, "Connection", "upgrade");
        append_field(out, "Upgrade", req.upgrade);
    }
    out.append("\r\n");
}

void build_client_response(const http::message_head& resp, const response_facts& facts,
                           std::string& out) {
    out.append("HTTP/1.1 ");
    append_number(out, static_cast<std::uint64_t>(resp.status));
    out.push_back(' ');
    out.append(resp.reason.empty() ? reason_phrase(resp.status) : resp.reason);
    out.append("\r\n");
    const http::field* length_field = nullptr; // the first Content-Length
    line_copier lines(out);
    for (const auto& f : resp.fields) {
        if (f.name_id() == http::field_name::content_length) {
            if (length_field == nullptr)
                length_field = &f;
            continue;
        }
        if (is_hop_by_hop_field(f, resp) || iequals(f.name, facts.request_id_header))
            continue;
        lines.keep(f);
    }
    lines.flush();
    switch (facts.body) {
    case http::framing::content_length:
        out.append("Content-Length: ");
        append_number(out, resp.content_length);
        out.append("\r\n");
        break;
    case http::framing::chunked:
        if (!facts.dechunk)
            append_field(out, "Transfer-Encoding", resp.transfer_encoding);
        break;
    case http::framing::none:
        // Keep what the upstream said about the length (HEAD, 304, or an
        // explicit zero), minus any transfer coding.
        if (length_field != nullptr)
            append_field(out, length_field->name, length_field->value);
        break;
    case http::framing::until_close:
        break;
    }
    append_field(out, facts.request_id_header, facts.request_id);
    if (facts.upgrade) {
        append_field(out, "Connection", "upgrade");
        append_field(out, "Upgrade", resp.upgrade);
    } else if (!facts.keep_alive) {
        append_field(out, "Connection", "close");
    } else if (facts.client_http10) {
        append_field(out, "Connection", "keep-alive");
    }
    out.append("\r\n");
}

void build_local_response(const local_response& r, std::string& out) {
    out.append("HTTP/1.1 ");
    append_number(out, static_cast<std::uint64_t>(r.status));
    out.push_back(' ');
    out.append(reason_phrase(r.status));
    out.append("\r\n");
    if (!r.location.empty())
        append_field(out, "Location", r.location);
    if (!r.body.empty())
        append_field(out, "Content-Type", r.content_type);
    out.append("Content-Length: ");
    append_number(out, r.body.size());
    out.append("\r\n");
    append_field(out, r.request_id_header, r.request_id);
    if (!r.keep_alive)
        append_field(out, "Connection", "close");
    out.append("\r\n");
    if (!r.head_request)
        out.append(r.body);
}

std::string redirect_location(std::string_view scheme, int port, std::string_view host,
                              std::string_view target) {
    std::string out;
    out.append(scheme);
    out.append("://");
    out.append(host_without_port(host));
    const bool default_port =
        (scheme == "https" && port == 443) || (scheme == "http" && port == 80);
    if (port > 0 && !default_port) {
        out.push_back(':');
        append_number(out, static_cast<std::uint64_t>(port));
    }
    if (target.empty() || target.front() != '/') {
        // Absolute-form targets keep only their path and query.
        const auto authority = target_authority(target);
        if (!authority.empty())
            target.remove_prefix(target.find("://") + 3 + authority.size());
        if (target.empty() || target.front() != '/')
            out.push_back('/');
    }
    out.append(target);
    return out;
}

} // namespace sluice::proxy

namespace sluice::proxy {
bool cidr_contains(const config::cidr& net, const std::array<std::uint8_t, 16>& bytes, bool v6) {
    if (net.v6 != v6)
        return false;
    int bits = net.prefix_len;
    for (std::size_t i = 0; bits > 0; ++i, bits -= 8) {
        const std::uint8_t mask = bits >= 8 ? 0xff : static_cast<std::uint8_t>(0xff << (8 - bits));
        if ((bytes[i] & mask) != (net.addr[i] & mask))
            return false;
    }
    return true;
}
} // namespace sluice::proxy
