#pragma once
// The access log: one JSON line per request ("type":"access"). Each worker
// formats into its own buffer and writes whole lines with write(2) when the
// buffer fills or a short timer fires, so logging a request takes no lock.

#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>

namespace sluice::proxy {

struct access_record {
    std::string_view request_id;
    std::string_view client;
    std::string_view listener;
    std::string_view method;
    std::string_view path;
    std::string_view host;
    int status = 0;
    std::uint64_t bytes_in = 0;  // request body bytes received from the client
    std::uint64_t bytes_out = 0; // response body bytes sent to the client
    double duration_ms = 0;
    std::string_view upstream;
    std::string_view server;
    std::string_view error; // the proxy error, when there was one
};

// Opens the access-log destination: "stdout" or a file (appended to). The
// descriptor number stays the same for the life of the process, so reopen()
// (SIGUSR1, after log rotation) swaps the file under the workers' feet with
// dup2 and no worker has to be told. Returns false and sets `error`.
bool open_access_log(const std::string& path, std::string& error);
bool reopen_access_log(std::string& error);

class access_log_writer {
  public:
    void append(const access_record& r);
    bool empty() const { return buffer_.empty(); }
    bool full() const { return buffer_.size() >= flush_bytes; }
    // Writes the buffered lines, in pieces that end at line boundaries and
    // fit PIPE_BUF where lines allow, so lines from several workers never
    // interleave on a pipe.
    void flush();

  private:
    static constexpr std::size_t flush_bytes = 16 * 1024;
    std::string buffer_;
    std::time_t cached_second_ = 0;
    char cached_prefix_[24] = {}; // "2026-11-27T10:00:00."
};

} // namespace sluice::proxy
