"""SPEC 3: responses the proxy generates (400, 408, 413, 431, 502, 504),
smuggling defences, client timeouts."""

import select
import time

import pytest

import harness
from harness import ArrivalWatch, assert_proxy_error, build_request, free_port


@pytest.fixture
def origin(env):
    return env.origin("o")


def assert_closed(c, timeout=3.0):
    how, data = c.wait_closed(timeout)
    assert how in ("eof", "reset"), f"connection still open after {timeout}s"
    assert data == b"", f"unexpected bytes after the response: {data[:200]!r}"


# -- upstream failures


def test_nothing_listening_upstream_is_502(env):
    proxy = env.proxy([f"127.0.0.1:{free_port()}"])
    c = env.client(proxy)
    r = c.get("/small")
    rid = assert_proxy_error(r, 502)
    assert r.header("X-Origin") is None
    rec = proxy.wait_access_record(rid)
    assert rec["status"] == 502


def test_a_closing_error_answer_with_a_request_sent_after_it_ends_gracefully(env, origin):
    # The proxy's own answers end a connection as relayed ones do: a client
    # that sent more after an HTTP/1.0 request answered 504 (the bytes
    # arriving while the proxy waited for the origin, so still unread) gets
    # the answer and an orderly end, not a reset (closing with bytes
    # unread), which can destroy the answer before the client reads it.
    proxy = env.proxy([origin], timeouts={"upstream_response": "300ms"})
    c = env.client(proxy)
    watch = ArrivalWatch([origin])
    c.send(b"GET /delay/2000 HTTP/1.0\r\nHost: localhost\r\n\r\n")
    watch.wait(1)
    c.send(build_request("GET", "/next"))
    r = c.read_response(timeout=10)
    assert_proxy_error(r, 504)
    how, data = c.wait_closed(3)
    assert (how, data) == ("eof", b""), (how, data)


@pytest.mark.parametrize("where", ["global", "upstream"])
def test_slow_upstream_response_is_504(env, origin, where):
    if where == "global":
        proxy = env.proxy([origin], timeouts={"upstream_response": "300ms"})
    else:
        proxy = env.proxy([origin], upstream_extra={"timeouts": {"response": "300ms"}})
    c = env.client(proxy)
    t0 = time.monotonic()
    r = c.get("/delay/2000", timeout=10)
    elapsed = time.monotonic() - t0
    assert_proxy_error(r, 504)
    assert 0.25 <= elapsed < 1.8, f"504 after {elapsed:.3f}s with a 300ms response timeout"


def test_upstream_response_timeout_does_not_hit_fast_requests(env, origin):
    proxy = env.proxy([origin], upstream_extra={"timeouts": {"response": "1s"}})
    r = proxy.get("/delay/300")
    assert r.status == 200, r


def test_response_timeouts_of_different_lengths_each_hold(env, origin):
    # Upstreams with different response timeouts, their waits at once: the
    # short one's 504 comes on time although a longer wait began before it,
    # the long one's request is answered, and the connection that had the
    # 504 serves its next request.
    routes = [{"match": {"host": "slow.test"}, "upstream": "slow"},
              {"match": {"path_prefix": "/"}, "upstream": "patient"}]
    upstreams = [harness.upstream("slow", [origin], timeouts={"response": "400ms"}),
                 harness.upstream("patient", [origin], timeouts={"response": "5s"})]
    proxy = env.sluice(env.config(routes, upstreams))
    patient = env.client(proxy)
    watch = ArrivalWatch([origin])
    patient.send(build_request("GET", "/delay/1500"))
    watch.wait(1)
    slow = env.client(proxy)
    t0 = time.monotonic()
    slow.send(build_request("GET", "/delay/3000", {"Host": "slow.test"}))
    r = slow.read_response(timeout=10)
    elapsed = time.monotonic() - t0
    assert_proxy_error(r, 504)
    assert 0.35 <= elapsed < 1.4, f"504 after {elapsed:.3f}s with a 400ms response timeout"
    assert patient.read_response(timeout=10).status == 200
    slow.send(build_request("GET", "/small", {"Host": "slow.test"}))
    assert slow.read_response(timeout=10).status == 200


# -- malformed requests and smuggling


def test_malformed_request_line_is_400_and_closed(env, origin):
    proxy = env.proxy([origin])
    c = env.client(proxy)
    c.send(b"THIS IS NOT HTTP\r\n\r\n")
    rid = assert_proxy_error(c.read_response(), 400)
    assert_closed(c)
    # Refused before routing, still logged with the listener it came to.
    rec = proxy.wait_access_record(rid)
    assert rec["status"] == 400 and rec["listener"] == "public", rec


SMUGGLING = {
    "content_length_and_transfer_encoding":
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "transfer_encoding_and_content_length":
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    "differing_content_lengths":
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "differing_content_length_list":
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\nhello!",
    "invalid_content_length":
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5x\r\n\r\nhello",
    "negative_content_length":
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\nhello",
    "transfer_encoding_not_chunked":
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nhello",
    "chunked_not_final":
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
    "whitespace_before_colon":
        b"GET /small HTTP/1.1\r\nHost: x\r\nX-Foo : bar\r\n\r\n",
    "whitespace_before_colon_transfer_encoding":
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\nhello",
    "obs_fold":
        b"GET /small HTTP/1.1\r\nHost: x\r\nX-Foo: bar\r\n baz\r\n\r\n",
}


@pytest.mark.parametrize("case", sorted(SMUGGLING))
def test_smuggling_attempt_is_400_closed_and_never_forwarded(env, origin, case):
    proxy = env.proxy([origin])
    watch = ArrivalWatch([origin])
    c = env.client(proxy)
    c.send(SMUGGLING[case])
    assert_proxy_error(c.read_response(), 400)
    assert_closed(c)
    assert watch.arrived() == {"o": 0}, "the origin received a request"


def test_invalid_chunk_size_is_400_and_closed(env, origin):
    proxy = env.proxy([origin])
    c = env.client(proxy)
    c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")
    assert_proxy_error(c.read_response(), 400)
    assert_closed(c)


def test_smuggled_second_request_is_not_forwarded(env, origin):
    # The classic CL.TE attack: a front end honouring Content-Length would
    # see one request, a back end honouring chunked would see a second one.
    proxy = env.proxy([origin])
    watch = ArrivalWatch([origin])
    c = env.client(proxy)
    smuggled = b"GET /headers?smuggled=1 HTTP/1.1\r\nHost: x\r\n\r\n"
    body = b"0\r\n\r\n" + smuggled
    c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    assert_proxy_error(c.read_response(), 400)
    assert_closed(c)
    assert watch.arrived() == {"o": 0}


# -- limits


def test_header_bigger_than_max_header_bytes_is_431(env, origin):
    proxy = env.proxy([origin], limits={"max_header_bytes": "4KiB"})
    r = proxy.get("/small", {"X-Small": "a" * 2000})
    assert r.status == 200, r
    c = env.client(proxy)
    r = c.get("/small", {"X-Big": "a" * 8000})
    assert_proxy_error(r, 431)


def test_body_bigger_than_max_body_bytes_is_413(env, origin):
    proxy = env.proxy([origin], limits={"max_body_bytes": "1KiB"})
    r = env.client(proxy).request("POST", "/echo", body=b"y" * 1000)
    assert r.status == 200 and r.body == b"y" * 1000, r
    r = env.client(proxy).request("POST", "/echo", body=b"y" * 2000)
    assert_proxy_error(r, 413)


# -- client timeouts


def test_client_header_timeout_is_408_then_close(env, origin):
    proxy = env.proxy([origin], timeouts={"client_header": "300ms"})
    c = env.client(proxy)
    t0 = time.monotonic()
    c.send(b"GET /small HTTP/1.1\r\nHost: localhost\r\nX-Half: ")
    r = c.read_response(timeout=5)
    elapsed = time.monotonic() - t0
    assert_proxy_error(r, 408)
    assert 0.25 <= elapsed < 2.0, f"408 after {elapsed:.3f}s with client_header 300ms"
    assert_closed(c, 2.0)


def test_client_header_timeout_is_total_not_idle(env, origin):
    # Slowloris: a byte every 50 ms keeps an idle timer alive forever; the
    # header timeout bounds the whole header.
    proxy = env.proxy([origin], timeouts={"client_header": "300ms"})
    c = env.client(proxy)
    request = b"GET /small HTTP/1.1\r\nHost: localhost\r\n" + b"X-Slow: " + b"a" * 1000
    t0 = time.monotonic()
    answered = False
    for i in range(len(request)):
        if time.monotonic() - t0 > 3.0:
            break
        try:
            c.send(request[i:i + 1])
        except OSError:
            answered = True
            break
        readable, _, _ = select.select([c.sock], [], [], 0.05)  # paces the client; returns early on an answer
        if readable:
            answered = True
            break
    elapsed = time.monotonic() - t0
    assert answered, "no answer to a slowloris client after 3s with client_header 300ms"
    assert elapsed < 2.0, elapsed
    assert_proxy_error(c.read_response(timeout=2), 408)
    assert_closed(c, 2.0)


def test_client_idle_timeout_closes_keep_alive_connection(env, origin):
    proxy = env.proxy([origin], timeouts={"client_idle": "300ms"})
    c = env.client(proxy)
    assert c.get("/small").status == 200
    t0 = time.monotonic()
    how, data = c.wait_closed(3.0)
    elapsed = time.monotonic() - t0
    assert how in ("eof", "reset") and data == b"", (how, data)
    assert 0.2 <= elapsed < 2.0, f"idle connection closed after {elapsed:.3f}s with client_idle 300ms"
