// A lean, incremental HTTP/1.1 response parser for the load generator: status
// line, Content-Length, chunked bodies, Connection: close, 1xx interim
// responses, HEAD/204/304 without body, bodies delimited by close. It only
// counts body bytes, never copies them, and never allocates.
// Pure (bytes in, state out) so a fuzz target can drive it directly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace sluice::bench {

class response_parser {
  public:
    enum class state : std::uint8_t { need_more, done, error };
    enum class failure : std::uint8_t {
        none,
        status_line,    // not "HTTP/1.x NNN ..."
        header_line,    // no colon, bad whitespace
        header_too_big, // a header line or the whole header over max_header_bytes
        content_length, // unparsable or conflicting Content-Length
        chunk_size,     // unparsable chunk size line or missing CRLF after data
        truncated,      // the peer closed before the message ended
    };

    static constexpr std::size_t max_header_bytes = 64 * 1024;

    // Prepares for the next response. `head_request`: the request was HEAD,
    // so the response has no body whatever its headers say.
    void reset(bool head_request = false) noexcept;

    // Parses as much of `data` as it can. Returns the number of bytes used;
    // unused bytes (an incomplete line) must be offered again, followed by
    // more data. Check result() afterwards: need_more, done, or error.
    // Bytes after the end of a complete message are never used.
    std::size_t parse(std::string_view data) noexcept;

    // Tells the parser the peer closed the connection. Completes a body that
    // is delimited by close; anything else in progress becomes an error.
    void on_eof() noexcept;

    state result() const noexcept { return result_; }
    failure error() const noexcept { return failure_; }
    unsigned status() const noexcept { return status_; }
    // Whether the connection may carry another request after this response.
    bool keep_alive() const noexcept { return keep_alive_; }
    std::uint64_t body_bytes() const noexcept { return body_bytes_; }
    // True once the status line and all headers of the final response are in.
    bool header_done() const noexcept { return phase_ > phase::headers; }

  private:
    enum class phase : std::uint8_t {
        status_line,
        headers,
        body_length,
        chunk_size,
        chunk_data,
        chunk_data_end,
        trailers,
        body_until_close,
        complete,
    };

    // Each returns false after setting an error.
    bool on_status_line(std::string_view line) noexcept;
    bool on_header_line(std::string_view line) noexcept;
    void on_header_end() noexcept;
    bool on_chunk_size_line(std::string_view line) noexcept;
    void fail(failure why) noexcept;

    phase phase_ = phase::status_line;
    state result_ = state::need_more;
    failure failure_ = failure::none;
    bool head_request_ = false;
    bool keep_alive_ = true;
    bool chunked_ = false;
    bool has_length_ = false;
    unsigned status_ = 0;
    unsigned minor_version_ = 1;
    std::size_t header_bytes_ = 0;
    std::uint64_t content_length_ = 0;
    std::uint64_t remaining_ = 0; // of the body or of the current chunk
    std::uint64_t body_bytes_ = 0;
};

} // namespace sluice::bench
