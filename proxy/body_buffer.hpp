#pragma once
// A request body held whole (for `request_buffering`): in memory up to a
// limit, then in an unlinked temporary file, so even a large upload costs a
// bounded amount of memory.

#include <cstdint>
#include <string>
#include <string_view>

namespace sluice::proxy {

class body_buffer {
  public:
    explicit body_buffer(std::size_t memory_limit = 1024 * 1024) : memory_limit_(memory_limit) {}
    ~body_buffer();
    body_buffer(const body_buffer&) = delete;
    body_buffer& operator=(const body_buffer&) = delete;

    // Appends `data`; past the memory limit the rest goes to a temporary
    // file (in $TMPDIR, else /tmp). Returns false and sets `error` when the
    // file cannot be created or written.
    bool append(std::string_view data, std::string& error);

    std::uint64_t size() const { return memory_.size() + spilled_; }
    std::string_view memory() const { return memory_; }
    std::uint64_t spilled() const { return spilled_; }

    // Reads up to `n` bytes of the spilled part from `offset` into `out`.
    // Returns the number read (0 at the end), or -1 on error.
    long read_spilled(std::uint64_t offset, char* out, std::size_t n) const;

    // Forgets the body and gives back its memory and file.
    void clear();

  private:
    std::size_t memory_limit_;
    std::string memory_;
    int fd_ = -1;
    std::uint64_t spilled_ = 0;
};

} // namespace sluice::proxy
