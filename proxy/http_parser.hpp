#pragma once
// HTTP/1.1 message heads and chunked bodies (RFC 9112), parsed strictly and
// without allocation: a head is a set of views into the connection's buffer.
// Pure functions, no sockets; the same rules apply to requests from clients
// and responses from upstreams, which is what closes the smuggling gaps a
// lenient parser on either side would open.

#include <cstdint>
#include <string_view>
#include <vector>

namespace sluice::proxy::http {

// How the body of a message is delimited.
enum class framing : std::uint8_t {
    none,           // no body
    content_length, // exactly content_length bytes
    chunked,        // chunked transfer coding (final coding)
    until_close,    // a response body that ends when the upstream closes
};

// The field names the proxy acts on, recognised once by the parser so the
// header rewriting after it compares no names.
enum class field_name : std::uint8_t {
    other,
    host,
    content_length,
    transfer_encoding,
    connection,
    upgrade,
    expect,
    te,
    trailer,
    keep_alive,
    proxy_connection,
    x_forwarded_for,
    x_forwarded_proto,
    x_forwarded_host,
};

// Which of the above `name` is (case-insensitively), or other.
field_name classify_field_name(std::string_view name);

struct field {
    std::string_view name;
    std::string_view value; // without leading and trailing whitespace
    field_name id = field_name::other;
    // The whole line as received, from the name to its CRLF inclusive
    // (starts at name.data()); 0 for a field not made by the parser.
    std::uint32_t line_size = 0;

    std::string_view line() const { return {name.data(), line_size}; }
    // id; for a field not made by the parser (and given no id), its name's.
    field_name name_id() const {
        return line_size != 0 || id != field_name::other ? id : classify_field_name(name);
    }
};

enum class parse_status : std::uint8_t {
    ok,
    incomplete,            // the end of the head has not arrived yet
    bad_start_line,        // request line or status line malformed
    bad_version,           // not HTTP/1.0 or HTTP/1.1
    bad_field,             // a field line is not `token ":" OWS value OWS`
    space_before_colon,    // "Name : value"
    obs_fold,              // a field line starting with whitespace (RFC 9112 5.2)
    bad_content_length,    // not a decimal number, or several differing values
    bad_transfer_encoding, // anything but a final "chunked", or on HTTP/1.0
    conflicting_framing,   // both Content-Length and Transfer-Encoding
    too_many_fields,
};

const char* to_string(parse_status s);

// The most fields parse_request_head / parse_response_head take; a head with
// more is refused (too_many_fields).
inline constexpr std::size_t max_fields = 128;
// The most fields the proxy takes on a message it forwards. It may add up to
// eight of its own (Host, X-Request-ID, X-Forwarded-For/-Proto/-Host,
// Connection, Upgrade, the framing field), and what it sends must still
// parse at the next hop, a second sluice included: a request with more is
// answered 431, a response with more is a bad response (502).
inline constexpr std::size_t max_forwarded_fields = max_fields - 8;

struct message_head {
    // Request line (requests only).
    std::string_view method;
    std::string_view target;
    // Status line (responses only).
    int status = 0;
    std::string_view reason;

    int version_minor = 1;     // HTTP/1.<version_minor>
    std::vector<field> fields; // in received order; capacity is reused across messages
    static constexpr std::size_t typical_fields = 16; // reserved by clear()

    framing body = framing::none;
    std::uint64_t content_length = 0;
    std::string_view transfer_encoding; // the value(s) as received, when chunked

    // From the Connection header(s) and others the proxy acts on.
    bool connection_close = false;
    bool connection_keep_alive = false;
    bool connection_upgrade = false;
    bool connection_lists_fields = false; // Connection names other fields (hop-by-hop too)
    bool expect_continue = false;
    std::string_view host;    // the first Host field, as received
    std::string_view upgrade; // the Upgrade field

    std::size_t head_size = 0; // bytes of the head, including the final empty line

    // Whether the sender wants the connection kept open after this message.
    bool keep_alive() const {
        return version_minor >= 1 ? !connection_close : connection_keep_alive && !connection_close;
    }
    void clear();
};

// Parses the head at the start of `data` into `out`. Returns ok (and sets
// out.head_size), incomplete when no empty line has arrived yet, or the first
// rule the head breaks. Only CRLF line endings are accepted. Body framing is
// decided here (Content-Length / Transfer-Encoding, with the smuggling rules);
// for responses the caller still applies the request method and status
// (see response_framing).
// `head_end`, when the caller has already found it (find_head_end), saves
// looking for it again.
parse_status parse_request_head(std::string_view data, message_head& out, std::size_t head_end = 0);
parse_status parse_response_head(std::string_view data, message_head& out,
                                 std::size_t head_end = 0);

// The framing of a response body given the request it answers: HEAD requests
// and 1xx/204/304 responses have none; otherwise what the head says, with a
// body that has neither length nor chunked coding lasting until close.
framing response_framing(const message_head& response, bool request_was_head);

// Finds the end of a head ("\r\n\r\n") in data, starting the search at `from`
// (so a head arriving in pieces is scanned once). Returns the offset just past
// it, or 0 when it is not there yet.
std::size_t find_head_end(std::string_view data, std::size_t from);

bool iequals(std::string_view a, std::string_view b);

// Whether data[from..] holds an LF not preceded by CR (a line ending the
// parser refuses).
bool has_bare_lf(std::string_view data, std::size_t from);

// Validates a chunked body as it streams past, so it can be forwarded as
// received (or with the chunk framing removed, for HTTP/1.0 clients).
class chunked_scanner {
  public:
    struct result {
        std::size_t consumed = 0; // bytes of `data` that belong to the body
        bool done = false;        // the last chunk and the trailer section ended
        bool error = false;       // malformed: the connection must be closed
    };

    // Scans `data`, which continues the body from where the last call stopped.
    // When `payload` is not null, the chunk-data pieces within the consumed
    // bytes are appended to it (views into `data`).
    result feed(std::string_view data, std::vector<std::string_view>* payload = nullptr);

    void reset() { *this = chunked_scanner{}; }

  private:
    enum class state : std::uint8_t {
        size_first,
        size,
        size_ws,
        ext,
        size_lf,
        data,
        data_cr,
        data_lf,
        trailer_start,
        trailer,
        trailer_lf,
        final_lf,
        finished,
    };
    state state_ = state::size_first;
    std::uint64_t remaining_ = 0; // of the current chunk's data
    int size_digits_ = 0;
    std::uint32_t trailer_bytes_ = 0;
};

} // namespace sluice::proxy::http
