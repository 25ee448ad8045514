#pragma once
// Deadlines for waits that usually end long before them: a keep-alive
// connection's wait for its next request, a plain upstream's answer. Each
// such wait with an Asio timer of its own arms it and cancels it again
// (a timer-queue insertion and removal under the reactor's lock, and the
// cancelled handler's trip through the event loop) for nearly every
// request. Here a wait is linked into a list of waits of the same length,
// which is in order of deadline by construction, and one timer per list
// (the worker's) is armed for the earliest deadline and re-armed when it
// fires (or for a wait due before it): a wait that ends just unlinks
// itself.
//
// Pure (no Asio): the worker owns a timer per list and asks next_due()
// after every change; expire_due() runs the expired waits' actions.

#include <chrono>
#include <optional>

namespace sluice::proxy {

class wait_list;

// One wait. Its owner embeds it, sets `on_expiry`, and lets the list know
// when the wait starts (wait_list::add) and ends (end()); destroying a
// linked wait ends it.
class timed_wait {
  public:
    using clock = std::chrono::steady_clock;
    // Runs (from expire_due) when the deadline passes while linked; the
    // wait is unlinked first.
    using action = void (*)(timed_wait&);

    explicit timed_wait(action on_expiry) : on_expiry_(on_expiry) {}
    timed_wait(const timed_wait&) = delete;
    timed_wait& operator=(const timed_wait&) = delete;
    ~timed_wait() { end(); }

    bool waiting() const { return list_ != nullptr; }
    clock::time_point due() const { return due_; }
    // Unlinks the wait (nothing if it is not linked).
    inline void end();

  private:
    friend class wait_list;
    action on_expiry_;
    wait_list* list_ = nullptr;
    timed_wait* prev_ = nullptr;
    timed_wait* next_ = nullptr;
    clock::time_point due_{};
};

class wait_list {
  public:
    using clock = timed_wait::clock;

    wait_list() = default;
    wait_list(const wait_list&) = delete;
    wait_list& operator=(const wait_list&) = delete;
    // Waits still linked are let go (they end without their action).
    ~wait_list() {
        while (head_ != nullptr)
            unlink(*head_);
    }

    // Links `w` (ended first if it waits already) with deadline `due`. Waits
    // of one length arrive in deadline order: the new one goes at the end,
    // after stepping back over any due later (one begun earlier, counted
    // from a time already past).
    void add(timed_wait& w, clock::time_point due) {
        w.end();
        w.due_ = due;
        w.list_ = this;
        timed_wait* after = tail_;
        while (after != nullptr && after->due_ > due)
            after = after->prev_;
        w.prev_ = after;
        w.next_ = after != nullptr ? after->next_ : head_;
        (w.next_ != nullptr ? w.next_->prev_ : tail_) = &w;
        (after != nullptr ? after->next_ : head_) = &w;
    }

    // The earliest deadline, if any wait is linked.
    std::optional<clock::time_point> next_due() const {
        if (head_ == nullptr)
            return std::nullopt;
        return head_->due_;
    }

    // Unlinks every wait whose deadline is at or before `now` and runs its
    // action, earliest first. Returns how many expired.
    int expire_due(clock::time_point now) {
        int n = 0;
        while (head_ != nullptr && head_->due_ <= now) {
            timed_wait& w = *head_;
            unlink(w);
            ++n;
            w.on_expiry_(w);
        }
        return n;
    }

    bool empty() const { return head_ == nullptr; }

  private:
    friend class timed_wait;
    void unlink(timed_wait& w) {
        (w.prev_ != nullptr ? w.prev_->next_ : head_) = w.next_;
        (w.next_ != nullptr ? w.next_->prev_ : tail_) = w.prev_;
        w.prev_ = w.next_ = nullptr;
        w.list_ = nullptr;
    }

    timed_wait* head_ = nullptr;
    timed_wait* tail_ = nullptr;
};

inline void timed_wait::end() {
    if (list_ != nullptr)
        list_->unlink(*this);
}

} // namespace sluice::proxy
