// Waits timed by a shared list (proxy/wait_list.hpp): deadline order, expiry
// of exactly the waits that are due, waits that end or are destroyed before
// their deadline, and a wait started again while it waits.

#include "proxy/wait_list.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <vector>

using sluice::proxy::timed_wait;
using sluice::proxy::wait_list;
using namespace std::chrono_literals;

namespace {

std::vector<std::string>* expired_log = nullptr;

// A wait that records its name when it expires.
struct named_wait : timed_wait {
    explicit named_wait(std::string n)
        : timed_wait(
              [](timed_wait& w) { expired_log->push_back(static_cast<named_wait&>(w).name); }),
          name(std::move(n)) {}
    std::string name;
};

struct logged {
    std::vector<std::string> log;
    logged() { expired_log = &log; }
    ~logged() { expired_log = nullptr; }
};

const auto t0 = wait_list::clock::time_point{} + 1h;

} // namespace

TEST_CASE("waits of one length expire in the order they started, only once due", "[wait_list]") {
    logged l;
    wait_list list;
    named_wait a("a"), b("b"), c("c");
    CHECK(!list.next_due());
    list.add(a, t0 + 10ms);
    list.add(b, t0 + 11ms);
    list.add(c, t0 + 12ms);
    CHECK(list.next_due() == t0 + 10ms);
    CHECK(list.expire_due(t0 + 9ms) == 0);
    CHECK(l.log.empty());
    CHECK(list.expire_due(t0 + 11ms) == 2);
    CHECK(l.log == std::vector<std::string>{"a", "b"});
    CHECK(!a.waiting());
    CHECK(!b.waiting());
    CHECK(c.waiting());
    CHECK(list.next_due() == t0 + 12ms);
    CHECK(list.expire_due(t0 + 12ms) == 1);
    CHECK(l.log.back() == "c");
    CHECK(list.empty());
    CHECK(!list.next_due());
}

TEST_CASE("a wait that ends before its deadline never expires", "[wait_list]") {
    logged l;
    wait_list list;
    named_wait a("a"), b("b"), c("c");
    list.add(a, t0 + 10ms);
    list.add(b, t0 + 11ms);
    list.add(c, t0 + 12ms);
    b.end(); // the middle one
    a.end(); // the head
    CHECK(list.next_due() == t0 + 12ms);
    c.end(); // the last one
    CHECK(list.empty());
    CHECK(list.expire_due(t0 + 1s) == 0);
    CHECK(l.log.empty());
    b.end(); // (ending twice is harmless)
    CHECK(!b.waiting());
}

TEST_CASE("a wait destroyed while it waits leaves the list", "[wait_list]") {
    logged l;
    wait_list list;
    named_wait a("a");
    {
        named_wait gone("gone");
        list.add(gone, t0 + 5ms);
        list.add(a, t0 + 10ms);
    }
    CHECK(list.next_due() == t0 + 10ms);
    CHECK(list.expire_due(t0 + 1s) == 1);
    CHECK(l.log == std::vector<std::string>{"a"});
}

TEST_CASE("a wait started again takes its new deadline and place", "[wait_list]") {
    logged l;
    wait_list list;
    named_wait a("a"), b("b");
    list.add(a, t0 + 10ms);
    list.add(b, t0 + 11ms);
    list.add(a, t0 + 20ms); // the next request's wait, say
    CHECK(list.next_due() == t0 + 11ms);
    CHECK(list.expire_due(t0 + 15ms) == 1);
    CHECK(l.log == std::vector<std::string>{"b"});
    CHECK(a.due() == t0 + 20ms);
    CHECK(list.expire_due(t0 + 20ms) == 1);
    CHECK(l.log.back() == "a");
}

TEST_CASE("a wait due earlier than the last ones (a shorter length) goes in its place",
          "[wait_list]") {
    logged l;
    wait_list list;
    named_wait a("a"), b("b"), c("c"), d("d");
    list.add(a, t0 + 10ms);
    list.add(b, t0 + 30ms);
    list.add(c, t0 + 20ms); // between a and b
    list.add(d, t0 + 5ms);  // before all
    CHECK(list.next_due() == t0 + 5ms);
    CHECK(list.expire_due(t0 + 1s) == 4);
    CHECK(l.log == std::vector<std::string>{"d", "a", "c", "b"});
}

TEST_CASE("an expiry may start the wait again, for a later deadline", "[wait_list]") {
    wait_list list;
    static wait_list* again = nullptr;
    static int expiries = 0;
    again = &list;
    expiries = 0;
    timed_wait w([](timed_wait& self) {
        if (++expiries == 1)
            again->add(self, self.due() + 10ms);
    });
    list.add(w, t0 + 10ms);
    CHECK(list.expire_due(t0 + 10ms) == 1);
    CHECK(w.waiting());
    CHECK(list.next_due() == t0 + 20ms);
    CHECK(list.expire_due(t0 + 20ms) == 1);
    CHECK(expiries == 2);
    CHECK(list.empty());
}
