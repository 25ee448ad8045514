#pragma once
// A connection's receive buffer: one contiguous block with a readable window
// [begin, end). Bytes are appended at the end and consumed from the front;
// the window slides back to the start when there is no room, and the block
// grows only up to the limit the owner sets (so a header flood cannot make
// it grow without bound).
//
// Blocks of the common size can come from a block_pool (one per worker), so
// a connection can give its block back whenever it has nothing buffered (an
// idle keep-alive connection then holds no receive memory) and take one
// again for the next request without going to the allocator. A second pool,
// of large blocks, serves a buffer that outgrows the common size (a body
// relayed 64 KiB at a time): it grows straight to a large block, and gives
// it back when empty. Without it every large response would be a malloc and
// a free of 64 KiB, and glibc trims its heap on such a free (a madvise, then
// a page fault per 4 KiB when the memory is written again).

#include <cstddef>
#include <cstring>
#include <memory>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::proxy {

// Spare blocks of one size, kept for reuse up to `keep` of them; the rest go
// back to the allocator. Single-threaded (a worker's own).
class block_pool {
  public:
    block_pool(std::size_t block_size, std::size_t keep) : size_(block_size), keep_(keep) {
        spare_.reserve(keep);
    }
    block_pool(const block_pool&) = delete;
    block_pool& operator=(const block_pool&) = delete;

    std::size_t block_size() const { return size_; }
    std::size_t spare() const { return spare_.size(); }

    std::unique_ptr<char[]> take() {
        if (spare_.empty())
            return std::make_unique_for_overwrite<char[]>(size_);
        auto b = std::move(spare_.back());
        spare_.pop_back();
        return b;
    }
    // Keeps `b` (a block of block_size()) for reuse, or frees it.
    void give(std::unique_ptr<char[]> b) {
        if (spare_.size() < keep_)
            spare_.push_back(std::move(b));
    }

  private:
    std::size_t size_;
    std::size_t keep_;
    std::vector<std::unique_ptr<char[]>> spare_;
};

class byte_buffer {
  public:
    explicit byte_buffer(std::size_t initial = 8192) : initial_(initial), capacity_(initial) {}
    // Blocks of pool->block_size() (the initial size) come from and go back
    // to `pool`, which must outlive the buffer. A null pool: as above, with
    // `initial` as the first block's size (ignored when there is a pool).
    // `large` (optional, blocks larger than pool's): a block that must grow
    // beyond pool's size grows to large's size at once when `limit` allows
    // it, and comes from and goes back to `large`.
    explicit byte_buffer(block_pool* pool, std::size_t initial = 8192)
        : pool_(pool), initial_(pool != nullptr ? pool->block_size() : initial),
          capacity_(initial_) {}
    byte_buffer(block_pool* pool, block_pool* large) : byte_buffer(pool) { large_ = large; }
    ~byte_buffer() { drop_block(); }
    byte_buffer(const byte_buffer&) = delete;
    byte_buffer& operator=(const byte_buffer&) = delete;

    std::string_view data() const { return {block_.get() + begin_, end_ - begin_}; }
    std::size_t size() const { return end_ - begin_; }
    bool empty() const { return begin_ == end_; }
    // Whether a block is held (memory in use).
    bool holds_block() const { return block_ != nullptr; }

    void consume(std::size_t n) {
        begin_ += n;
        if (begin_ == end_)
            begin_ = end_ = 0;
    }

    // Room for at least one byte (and up to `want`) at the end, growing the
    // block up to `limit` bytes in all. Returns an empty span when the
    // buffer already holds `limit` bytes.
    std::pair<char*, std::size_t> prepare(std::size_t want, std::size_t limit) {
        if (block_ == nullptr)
            block_ = new_block(capacity_);
        if (capacity_ - end_ < want && begin_ > 0) {
            std::memmove(block_.get(), block_.get() + begin_, end_ - begin_);
            end_ -= begin_;
            begin_ = 0;
        }
        if (capacity_ - end_ < want && capacity_ < limit) {
            std::size_t grown = capacity_ * 2;
            while (grown - end_ < want && grown < limit)
                grown *= 2;
            if (large_ != nullptr && grown < large_->block_size() && large_->block_size() <= limit)
                grown = large_->block_size();
            if (grown > limit)
                grown = limit;
            if (grown > capacity_) {
                auto bigger = new_block(grown);
                std::memcpy(bigger.get(), block_.get() + begin_, end_ - begin_);
                end_ -= begin_;
                begin_ = 0;
                drop_block();
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
    // not hold it); the next prepare takes one of the initial size again.
    void release_if_empty() {
        if (empty() && block_ != nullptr) {
            drop_block();
            capacity_ = initial_;
        }
    }

  private:
    // The pool whose blocks are `size` bytes, if any.
    block_pool* pool_for(std::size_t size) const {
        if (pool_ != nullptr && size == pool_->block_size())
            return pool_;
        if (large_ != nullptr && size == large_->block_size())
            return large_;
        return nullptr;
    }
    std::unique_ptr<char[]> new_block(std::size_t size) {
        block_pool* p = pool_for(size);
        return p != nullptr ? p->take() : std::make_unique_for_overwrite<char[]>(size);
    }
    void drop_block() {
        if (block_ == nullptr)
            return;
        if (block_pool* p = pool_for(capacity_); p != nullptr)
            p->give(std::move(block_));
        block_.reset();
    }

    block_pool* pool_ = nullptr;
    block_pool* large_ = nullptr;
    std::size_t initial_;
    std::unique_ptr<char[]> block_;
    std::size_t capacity_;
    std::size_t begin_ = 0;
    std::size_t end_ = 0;
};

} // namespace sluice::proxy
