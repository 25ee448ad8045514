#!/usr/bin/env python3
"""Folds `perf script -F ip,sym` samples (stacks, innermost frame first,
separated by blank lines) into areas of sluice's request path and prints a
Markdown table body, largest first (bench/profile.sh).

Kernel samples are named by the system call they serve (the `__x64_sys_*`
frame on their stack), or as interrupt work when there is none. User-space
samples are named by their innermost frame."""

import re
import sys
from collections import Counter

USER_AREAS = [
    (r"(^|::)http::[^:]+(::[^:]+)?$", "sluice: HTTP parser"),
    (r"build_upstream_request|build_client_response|append_field|is_hop_by_hop|build_local_response",
     "sluice: building heads"),
    (r"request_id", "sluice: request IDs"),
    (r"metrics|prometheus", "sluice: metrics"),
    (r"access_log|log_request", "sluice: access log"),
    (r"relay_body|byte_buffer|block_pool", "sluice: body relay, buffers"),
    (r"client_session|upstream_pool|balancer|pick_|match_route|router", "sluice: exchange logic"),
    (r"^(malloc|free|cfree|_int_malloc|_int_free|malloc_consolidate|realloc|operator new|operator delete|"
     r"tcache|unlink_chunk)", "allocator (malloc/free)"),
    (r"pthread_mutex|__lll_lock|pthread_cond", "locks (Asio's mutexes)"),
    (r"timer_queue|basic_waitable_timer|deadline_timer|chrono_time_traits|clock_gettime|__vdso",
     "timers and clocks"),
    (r"epoll_reactor|reactive_socket|socket_ops", "Asio reactor"),
    (r"scheduler|executor|any_io_executor|handler_work|executor_function|thread_info_base",
     "Asio scheduler and executors"),
    (r"awaitable|coroutine|co_spawn|as_tuple|use_awaitable", "coroutine machinery"),
    (r"basic_stream|beast::", "Beast (TLS stream; upstream tcp_stream)"),
    (r"^(__libc_|__GI_|__sendmsg|__recvmsg|sendmsg|recvmsg|recv|send|epoll_wait|epoll_ctl|syscall)",
     "libc system-call wrappers"),
    (r"mem(cpy|move|set|chr|cmp)|str(len|chr|cmp)|__mem|__str", "libc string and memory"),
    # What is left, by library.
    (r"^boost::(asio|system)::", "Asio, other (composed operations, buffers, errors)"),
    (r"^boost::beast::", "Beast (TLS stream; upstream tcp_stream)"),
    (r"^sluice::", "sluice, other"),
    (r"^std::", "C++ standard library"),
]
USER_RES = [(re.compile(p), name) for p, name in USER_AREAS]
SYSCALL_RE = re.compile(r"_sys_(\w+)$")


def bare_name(sym):
    """`sym` without template arguments and parameter lists, so areas are
    matched on the function's own qualified name (a parameter type such as
    http::framing must not make relay_body count as the parser)."""
    out = []
    depth = 0
    for ch in sym.replace("(anonymous namespace)::", ""):
        if ch in "<(":
            depth += 1
        elif ch in ">)":
            depth = max(0, depth - 1)
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def is_kernel(addr):
    return addr.startswith("ffff")


def area(frames):
    """frames: [(address, symbol)], innermost first."""
    if not frames:
        return "unknown"
    addr, sym = frames[0]
    if is_kernel(addr):
        for _, s in frames:
            m = SYSCALL_RE.search(s)
            if m:
                return f"kernel: {m.group(1)}"
        if any(s == "do_syscall_64" for _, s in frames):
            return "kernel: system call entry and exit"
        return "kernel: interrupts, softirq, scheduler"
    name_only = bare_name(sym)
    for rx, name in USER_RES:
        if rx.search(name_only):
            return name
    return "other user space"


def main():
    counts = Counter()
    frames = []
    for line in sys.stdin:
        line = line.strip()
        if not line:
            if frames:
                counts[area(frames)] += 1
            frames = []
            continue
        parts = line.split(None, 1)
        addr = parts[0]
        # Stacks run from the kernel out to user space: a kernel frame after
        # a user-space one starts the next sample (perf does not always put
        # a blank line between them).
        if frames and is_kernel(addr) and not is_kernel(frames[-1][0]):
            counts[area(frames)] += 1
            frames = []
        frames.append((addr, parts[1] if len(parts) > 1 else "[unknown]"))
    if frames:
        counts[area(frames)] += 1
    total = sum(counts.values())
    if total == 0:
        print("| – | no samples |")
        return
    for name, n in counts.most_common():
        share = 100.0 * n / total
        if share >= 0.5:
            print(f"| {share:.1f} % | {name} |")
    rest = sum(n for n in counts.values() if 100.0 * n / total < 0.5)
    if rest:
        print(f"| {100.0 * rest / total:.1f} % | (areas under 0.5 % each) |")


if __name__ == "__main__":
    main()
