#pragma once
// A connection's receive buffer: one contiguous block with a readable window
// [begin, end). Bytes are appended at the end and consumed from the front;
// the window slides back to the start when there is no room, and the block
// grows only up to the limit the owner sets (so a header flood cannot make
// it grow without bound).

#include <cstddef>
#include <cstring>
#include <memory>
#include <string_view>

namespace sluice::proxy {

class byte_buffer {
  public:
    explicit byte_buffer(std::size_t initial = 8192) : initial_(initial), capacity_(initial) {}

    std::string_view data() const { return {block_.get() + begin_, end_ - begin_}; }
    std::size_t size() const { return end_ - begin_; }
    bool empty() const { return begin_ == end_; }

    void consume(std::size_t n) {
        begin_ += n;
        if (begin_ == end_)
            begin_ = end_ = 0;
    }

    // Room for at least one byte (and up to `want`) at the end, growing the
    // block up to `limit` bytes in all. Returns an empty span when the
    // buffer already holds `limit` bytes.
    std::pair<char*, std::size_t> prepare(std::size_t want, std::size_t limit) {
        if (!block_)
            block_ = std::make_unique<char[]>(capacity_);
        if (capacity_ - end_ < want && begin_ > 0) {
            std::memmove(block_.get(), block_.get() + begin_, end_ - begin_);
            end_ -= begin_;
            begin_ = 0;
        }
        if (capacity_ - end_ < want && capacity_ < limit) {
            std::size_t grown = capacity_ * 2;
            while (grown - end_ < want && grown < limit)
                grown *= 2;
            if (grown > limit)
                grown = limit;
            if (grown > capacity_) {
                auto bigger = std::make_unique<char[]>(grown);
                std::memcpy(bigger.get(), block_.get() + begin_, end_ - begin_);
                end_ -= begin_;
                begin_ = 0;
                block_ = std::move(bigger);
                capacity_ = grown;
            }
        }
        std::size_t room = capacity_ - end_;
        if (size() + room > limit)
            room = limit > size() ? limit - size() : 0;
        return {block_.get() + end_, room < want ? room : want};
    }

    void commit(std::size_t n) { end_ += n; }

    // Drops the block of an empty buffer (an idle keep-alive connection need
    // not hold it).
    void release_if_empty() {
        if (empty() && block_) {
            block_.reset();
            capacity_ = initial_;
        }
    }

  private:
    std::size_t initial_;
    std::unique_ptr<char[]> block_;
    std::size_t capacity_;
    std::size_t begin_ = 0;
    std::size_t end_ = 0;
};

} // namespace sluice::proxy
