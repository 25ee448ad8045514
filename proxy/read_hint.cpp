#include "proxy/read_hint.hpp"

#include "proxy/socket_access.hpp"

#include <boost/asio/detail/reactor.hpp>
#include <boost/version.hpp>

#include <type_traits>

// Written against Boost 1.81's epoll reactor (CMakeLists.txt pins it).
static_assert(BOOST_VERSION == 108100, "read_hint.cpp reaches into Asio 1.81's reactor");
#if !defined(BOOST_ASIO_HAS_EPOLL) || defined(BOOST_ASIO_HAS_IO_URING_AS_DEFAULT)
#error "read_hint.cpp expects Asio's epoll reactor"
#endif

namespace sluice::proxy {
namespace {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using reactor = net::detail::epoll_reactor;
using descriptor_state = std::remove_pointer_t<reactor::per_descriptor_data>;

// The reactor's per-socket state is private: a pointer to the member named
// in an explicit instantiation ([temp.spec.general]: no access check there).
template <typename Tag, typename Tag::type Member> struct expose {
    friend typename Tag::type member(Tag) { return Member; }
};
struct speculative_tag {
    using type = bool (descriptor_state::*)[reactor::max_ops];
    friend type member(speculative_tag);
};
template struct expose<speculative_tag, &descriptor_state::try_speculative_>;

bool* read_speculation(tcp::socket& socket) noexcept {
    descriptor_state* state = socket_access::implementation(socket).reactor_data_;
    if (state == nullptr) // (not registered: closed)
        return nullptr;
    return &(state->*member(speculative_tag{}))[reactor::read_op];
}

} // namespace

// The worker's io_context runs on one thread and is made without reactor
// locking (BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO): the reactor reads and
// writes this state on that same thread, with no lock to take.
void mark_drained(tcp::socket& socket) noexcept {
    if (auto* flag = read_speculation(socket))
        *flag = false;
}

void mark_maybe_readable(tcp::socket& socket) noexcept {
    if (auto* flag = read_speculation(socket))
        *flag = true;
}

bool read_may_find_bytes(tcp::socket& socket) noexcept {
    const auto* flag = read_speculation(socket);
    return flag == nullptr || *flag;
}

} // namespace sluice::proxy
