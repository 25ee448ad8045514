#!/usr/bin/env python3
"""bench/soak.sh's helpers and its report (python3 standard library only).

    soak_report.py report DIR        report.html and summary.md from a soak
                                     run's results in DIR; prints the verdict,
                                     exit 0 on PASS, 1 on FAIL
    soak_report.py census ...        sluice's descriptors and memory at a quiet point
    soak_report.py hostile ...       slowloris and malformed requests; the answers
    soak_report.py reload ...        SIGHUP or POST /reload, then waits until /status shows it
    soak_report.py wait-status ...   waits until the admin /status shows a state

The files soak.sh writes into DIR: meta.json, samples.csv, segments.csv,
reloads.csv, events.csv, census-baseline.json, census-end.json and raw/
(load results seg<N>-<load>.json, idle<N>.jsonl, hostile<N>.json,
metrics-end.txt, status-end.json, sluice-exit.txt).
"""

import argparse
import csv
import glob
import html
import json
import math
import os
import re
import select
import socket
import sys
import threading
import time

from proc_census import ESTABLISHED, fd_census, proc_status_kib

RSS_ALLOWED_KIB = 8 * 1024
ERROR_KINDS = ["connect", "timeout", "read", "write", "parse"]


# ---------------------------------------------------------------------------
# census: the descriptors of a process, by kind (bench/proc_census.py)


def cmd_census(args):
    """Waits for a quiet state, at most --timeout: the same census in three
    reads 0.2 s apart, with no client connection, no socket closed by the
    kernel but still held, and every upstream socket ESTABLISHED (a health
    check's short connection, caught mid-close, is not a quiet state). Then
    writes that census (or the last one, "settled": false) with VmRSS and
    RssAnon."""
    ports = {args.listen_port, args.admin_port}
    start = time.monotonic()
    deadline = start + args.timeout
    same = 0
    last = None
    while True:
        c = fd_census(args.pid, ports)
        key = (c["total"], c["other"], c["listen"], c["client"], c["unlisted"], sorted(c["upstream"].items()))
        quiet = c["client"] == 0 and c["unlisted"] == 0 and all(st == ESTABLISHED for _, st in c["upstream"])
        same = same + 1 if (quiet and key == last) else 0
        last = key
        settled = same >= 2
        if settled or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    doc = dict(c)
    doc["upstream"] = [{"port": p, "state": s, "count": n} for (p, s), n in sorted(c["upstream"].items())]
    doc["settled"] = settled
    doc["waited_s"] = round(time.monotonic() - start, 3)
    doc["vm_rss_kib"] = proc_status_kib(args.pid, "VmRSS")
    doc["rss_anon_kib"] = proc_status_kib(args.pid, "RssAnon")
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1)
    return 0 if settled else 1


# ---------------------------------------------------------------------------
# hostile: slowloris connections (expect 408 at client_header, then close)
# and malformed requests (expect 400, then close)

MALFORMED = [
    ("Content-Length with Transfer-Encoding",
     b"POST /echo HTTP/1.1\r\nHost: soak\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("two different Content-Length values",
     b"POST /echo HTTP/1.1\r\nHost: soak\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"),
    ("whitespace before a header colon", b"GET /small HTTP/1.1\r\nHost: soak\r\nX-Bad : 1\r\n\r\n"),
    ("obs-fold", b"GET /small HTTP/1.1\r\nHost: soak\r\nX-Fold: a\r\n b\r\n\r\n"),
    ("not a request line", b"HELLO THERE\r\n\r\n"),
]


def status_of(data):
    m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    return int(m.group(1)) if m else None


def read_to_close(sock, deadline, data=b""):
    """Reads until the peer closes (True) or the deadline (False)."""
    while time.monotonic() < deadline:
        r, _, _ = select.select([sock], [], [], min(0.2, max(0.0, deadline - time.monotonic())))
        if not r:
            continue
        try:
            chunk = sock.recv(65536)
        except OSError:
            return data, True  # reset: closed too
        if not chunk:
            return data, True
        data += chunk
    return data, False


def slowloris_one(port, pace, limit, result):
    start = time.monotonic()
    deadline = start + limit
    data, closed = b"", False
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /small HTTP/1.1\r\nHost: soak\r\nX-Slow: ")
            while time.monotonic() < deadline and not data:
                r, _, _ = select.select([s], [], [], pace)
                if r:
                    break
                try:
                    s.send(b"a")
                except OSError:
                    break
            data, closed = read_to_close(s, min(deadline, time.monotonic() + 5), data)
    except OSError as e:
        result.update(error=str(e))
    result.update(status=status_of(data), closed=closed, after_s=round(time.monotonic() - start, 2))


def malformed_one(port, raw, result):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(raw)
            data, closed = read_to_close(s, time.monotonic() + 5)
    except OSError as e:
        data, closed = b"", False
        result.update(error=str(e))
    result.update(status=status_of(data), closed=closed)


def cmd_hostile(args):
    slow = [{} for _ in range(args.slowloris)]
    bad = [{"case": name} for name, _ in MALFORMED]
    threads = [threading.Thread(target=slowloris_one, args=(args.port, 0.5, 12, r), daemon=True) for r in slow]
    threads += [threading.Thread(target=malformed_one, args=(args.port, raw, r), daemon=True)
                for (_, raw), r in zip(MALFORMED, bad)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    problems = []
    for r in slow:
        if r.get("status") != 408 or not r.get("closed"):
            problems.append(f"slowloris: {r}")
    for r in bad:
        if r.get("status") != 400 or not r.get("closed"):
            problems.append(f"malformed ({r['case']}): {r}")
    doc = {"slowloris": len(slow), "slowloris_408": sum(r.get("status") == 408 and bool(r.get("closed")) for r in slow),
           "slowloris_cut_after_s": sorted(r.get("after_s", 0) for r in slow)[len(slow) // 2] if slow else None,
           "malformed": len(bad), "malformed_400": sum(r.get("status") == 400 and bool(r.get("closed")) for r in bad),
           "problems": problems}
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1)
    return 0 if not problems else 1


# ---------------------------------------------------------------------------
# wait-status: the admin /status


def admin_request(admin_port, method, path, timeout=2.0):
    """(status code, body) of one request to the admin listener. A plain
    socket: importing urllib costs more than the reload being timed."""
    with socket.create_connection(("127.0.0.1", admin_port), timeout=timeout) as s:
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\n"
                  "Connection: close\r\n\r\n".encode())
        data, _ = read_to_close(s, time.monotonic() + timeout)
    head, _, body = data.partition(b"\r\n\r\n")
    if re.search(rb"(?im)^transfer-encoding:\s*chunked", head):
        out, rest = b"", body
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size.split(b";")[0] or b"0", 16)
            if n == 0:
                break
            out, rest = out + rest[:n], rest[n + 2:]
        body = out
    return status_of(data), body


def get_status(admin_port):
    code, body = admin_request(admin_port, "GET", "/status")
    if code != 200:
        raise ValueError(f"/status answered {code}")
    return json.loads(body)


def upstream_servers(status, name):
    for u in status.get("upstreams", []):
        if u.get("name") == name:
            return u.get("servers", [])
    return None


def wait_for(args, start):
    """Polls /status until it shows args.generation, args.pool and
    args.last_ok (those given), at most args.timeout; (ok, text)."""
    want_pool = [f"127.0.0.1:{p}" for p in args.pool.split()] if args.pool else None
    want_ok = None if args.last_ok is None else args.last_ok == "true"
    deadline = start + args.timeout
    seen = "no answer"
    while True:
        try:
            st = get_status(args.admin)
            pool = [s.get("address") for s in (upstream_servers(st, "pool") or [])]
            last_ok = st.get("last_reload", {}).get("ok")
            seen = f"generation {st.get('generation')}; pool {' '.join(pool)}; last_reload.ok {last_ok}"
            if ((args.generation is None or st.get("generation") == args.generation)
                    and (want_pool is None or pool == want_pool)
                    and (want_ok is None or last_ok is want_ok)):
                return True, f"ok {round((time.monotonic() - start) * 1000)}"
        except (OSError, ValueError) as e:
            seen = f"no answer ({e})"
        if time.monotonic() >= deadline:
            return False, f"not seen within {args.timeout:g} s: {seen}"
        time.sleep(0.005)


def one_line(text):
    return " ".join(text.replace(",", ";").replace('"', "'").split())


def cmd_wait_status(args):
    if args.print_generation:
        print(get_status(args.admin)["generation"])
        return 0
    if args.print_health:
        st = get_status(args.admin)
        found = []
        for u in st.get("upstreams", []):
            for s in u.get("servers", []):
                if s.get("address") == args.print_health:
                    found.append(f"{u['name']}:{str(s.get('healthy')).lower()}")
        print(" ".join(found) or "absent")
        return 0
    ok, text = wait_for(args, time.monotonic())
    print(one_line(text))
    return 0 if ok else 1


def cmd_reload(args):
    """Triggers a reload (SIGHUP to --sighup PID, or POST /reload) and waits
    until /status shows what is expected. Prints "ok MS" (MS: from the
    trigger until /status showed it) or what went wrong, on one line."""
    start = time.monotonic()
    if args.sighup:
        os.kill(args.sighup, 1)
    else:
        try:
            code, body = admin_request(args.admin, "POST", "/reload", timeout=args.timeout)
        except OSError as e:
            print(one_line(f"POST /reload: {e}"))
            return 1
        try:
            doc = json.loads(body)
        except ValueError:
            doc = {}
        if args.last_ok == "false":
            answered = code == 400 and doc.get("ok") is False and doc.get("error")
        else:
            answered = code == 200 and doc.get("ok") is True and doc.get("generation") == args.generation
        if not answered:
            print(one_line(f"POST /reload answered {code} {body[:300].decode('utf-8', 'replace')}"))
            return 1
    ok, text = wait_for(args, start)
    print(one_line(text))
    return 0 if ok else 1


# ---------------------------------------------------------------------------
# report: reading the results


def read_csv(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def metric_values(text):
    """{name: [(labels dict, value)]} from the Prometheus text format."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)", line)
        if not m:
            continue
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        out.setdefault(m.group(1), []).append((labels, float(m.group(4))))
    return out


def slope_per_min(points):
    """Least-squares slope of (t seconds, value) in value per minute."""
    if len(points) < 3:
        return None
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    den = sum((t - mt) ** 2 for t, _ in points)
    if den == 0:
        return None
    return sum((t - mt) * (v - mv) for t, v in points) / den * 60


def fmt_int(n):
    return f"{int(round(n)):,}"


def mib(kib):
    return f"{kib / 1024:.1f}"


def counts_text(d):
    return ", ".join(f"{k}: {fmt_int(v)}" for k, v in sorted(d.items()) if v) or "none"


class Run:
    """Everything a soak run left in its directory, and the verdict."""

    def __init__(self, d):
        self.dir = d
        self.meta = read_json(os.path.join(d, "meta.json")) or {}
        self.samples = read_csv(os.path.join(d, "samples.csv"))
        self.segments = read_csv(os.path.join(d, "segments.csv"))
        self.reloads = read_csv(os.path.join(d, "reloads.csv"))
        self.events = read_csv(os.path.join(d, "events.csv"))
        self.base = read_json(os.path.join(d, "census-baseline.json"))
        self.end = read_json(os.path.join(d, "census-end.json"))
        raw = os.path.join(d, "raw")
        try:
            with open(os.path.join(raw, "metrics-end.txt")) as f:
                self.metrics = metric_values(f.read())
        except OSError:
            self.metrics = {}
        self.status_end = read_json(os.path.join(raw, "status-end.json"))
        try:
            with open(os.path.join(raw, "sluice-exit.txt")) as f:
                self.sluice_exit = f.read().strip()
        except OSError:
            self.sluice_exit = "unknown"
        try:
            with open(os.path.join(d, "aborted.txt")) as f:
                self.aborted = f.read().strip()
        except OSError:
            self.aborted = ""
        self.load_names = [l["name"] for l in self.meta.get("loads", [])]
        self._loads(raw)
        self._idle(raw)
        self._hostile(raw)
        self.checks = []
        self._verdict()

    # -- load results, by segment kind ---------------------------------------

    def _loads(self, raw):
        # per load name and per window ("normal" or "outage")
        self.by_load = {}
        self.windows = {w: {"requests": 0, "non2xx": {}, "errors": {k: 0 for k in ERROR_KINDS}, "missing": 0}
                        for w in ("normal", "outage")}
        self.missing = []
        for seg in self.segments:
            window = "outage" if seg["kind"] == "outage" else "normal"
            for name in self.load_names:
                doc = read_json(os.path.join(raw, f"seg{seg['index']}-{name}.json"))
                row = self.by_load.setdefault(name, {w: {"requests": 0, "non2xx": 0, "errors": 0}
                                                     for w in ("normal", "outage")})
                w = self.windows[window]
                if doc is None:
                    self.missing.append(f"seg{seg['index']}-{name}")
                    w["missing"] += 1
                    continue
                w["requests"] += doc["requests"]
                row[window]["requests"] += doc["requests"]
                for code, n in doc.get("status_codes", {}).items():
                    if not (code.isdigit() and 200 <= int(code) < 300):
                        w["non2xx"][code] = w["non2xx"].get(code, 0) + n
                        row[window]["non2xx"] += n
                for k in ERROR_KINDS:
                    n = doc.get("errors", {}).get(k, 0)
                    w["errors"][k] += n
                    row[window]["errors"] += n
        self.requests = sum(w["requests"] for w in self.windows.values())

    def failed(self, window):
        w = self.windows[window]
        return sum(w["non2xx"].values()) + sum(w["errors"].values())

    # -- idle bursts and hostile clients -------------------------------------

    def _idle(self, raw):
        self.idle = []
        for path in sorted(glob.glob(os.path.join(raw, "idle*.jsonl")), key=lambda p: int(re.sub(r"\D", "", os.path.basename(p)))):
            lines = {}
            with open(path) as f:
                for line in f:
                    try:
                        doc = json.loads(line)
                    except ValueError:
                        continue
                    lines[doc.get("msg")] = doc
            start, hold, done = lines.get("started", {}), lines.get("holding"), lines.get("done")
            n = start.get("connections", 0)
            problem = ""
            if hold is None or done is None:
                problem = "no result (the idle client did not finish)"
            elif hold.get("open") != n or hold.get("failed") or hold.get("not_started") or hold.get("not_kept_alive"):
                problem = (f"{hold.get('open')} of {n} held; failed {hold.get('failed')}, errors "
                           f"{counts_text(hold.get('errors', {}))}, not kept alive {hold.get('not_kept_alive')}")
            elif done.get("closed_by_peer") or done.get("still_open") != n:
                problem = f"{done.get('closed_by_peer')} of {n} closed by sluice while held"
            self.idle.append({"at_s": start.get("at_s"), "connections": n,
                              "open": (hold or {}).get("open", 0), "setup_s": (hold or {}).get("setup_s"),
                              "problem": problem})

    def _hostile(self, raw):
        self.hostile = [read_json(p) or {"problems": [f"{os.path.basename(p)} unreadable"]}
                        for p in sorted(glob.glob(os.path.join(raw, "hostile*.json")))]
        self.hostile_rounds = len([e for e in self.events if e["kind"] == "hostile"])

    # -- samples -------------------------------------------------------------

    def series(self, column):
        return [(float(s["elapsed_s"]), num(s[column])) for s in self.samples if num(s.get(column)) is not None]

    def first_after_warmup(self, column):
        w = self.meta.get("warmup_s", 0)
        for t, v in self.series(column):
            if t >= w:
                return v
        return None

    def value_at(self, census, key, column):
        """A quiet point's value (its census), else the matching sample."""
        if census and key in census:
            return census[key]
        if census is self.base:
            return self.first_after_warmup(column)
        s = self.series(column)
        return s[-1][1] if s else None

    # -- the verdict ---------------------------------------------------------

    def check(self, ok, what, detail=""):
        self.checks.append((bool(ok), what, detail))

    def pool_bounds(self):
        """The most idle pooled connections allowed per origin port at the end."""
        workers = self.meta.get("workers", 1)
        pool = self.meta.get("pool_load_connections", 0)
        bulk = self.meta.get("bulk_load_connections", 0)
        o = self.meta.get("origins", {})
        return {o.get("A"): workers * pool + 1, o.get("B"): workers * pool + 1,
                o.get("C"): workers * (pool + bulk) + 1}

    def _verdict(self):
        if self.aborted:
            self.check(False, "the run ended early", self.aborted)
        self.check(self.sluice_exit == "0", "sluice ran to the end and exited 0 on SIGTERM",
                   f"exit: {self.sluice_exit}")
        # memory
        self.rss_base = self.value_at(self.base, "vm_rss_kib", "vm_rss_kib")
        self.rss_end = self.value_at(self.end, "vm_rss_kib", "vm_rss_kib")
        self.anon_base = self.value_at(self.base, "rss_anon_kib", "rss_anon_kib")
        self.anon_end = self.value_at(self.end, "rss_anon_kib", "rss_anon_kib")
        if self.rss_base is None or self.rss_end is None:
            self.check(False, f"end VmRSS within {RSS_ALLOWED_KIB // 1024} MiB of the warm-up value", "no samples")
        else:
            growth = self.rss_end - self.rss_base
            self.check(growth <= RSS_ALLOWED_KIB,
                       f"end VmRSS within {RSS_ALLOWED_KIB // 1024} MiB of the warm-up value",
                       f"{mib(self.rss_base)} → {mib(self.rss_end)} MiB ({growth / 1024:+.1f} MiB)")
        # descriptors
        self._fd_checks()
        # requests
        w = self.windows["normal"]
        self.check(self.failed("normal") == 0 and not self.missing,
                   "no failed request outside the outage windows",
                   f"non-2xx {counts_text(w['non2xx'])}; errors {counts_text(w['errors'])}"
                   + (f"; load results missing: {', '.join(self.missing)}" if self.missing else ""))
        bad_idle = [i for i in self.idle if i["problem"]]
        self.check(not bad_idle, "every idle burst held all its connections",
                   "; ".join(f"at {i['at_s']} s: {i['problem']}" for i in bad_idle))
        problems = [p for h in self.hostile for p in h.get("problems", [])]
        if len(self.hostile) != self.hostile_rounds:
            problems.append(f"{self.hostile_rounds} hostile rounds started, {len(self.hostile)} results")
        self.check(not problems, "every slowloris connection got 408 and every malformed request 400, then close",
                   "; ".join(problems[:5]))
        # reloads
        applied = [r for r in self.reloads if r["kind"] == "applied"]
        refused = [r for r in self.reloads if r["kind"] == "refused"]
        self.reloads_applied = sum(r["applied"] == "1" for r in applied)
        self.reloads_refused = sum(r["applied"] == "1" for r in refused)
        self.check(self.reloads_applied == len(applied) and self.reloads_refused == len(refused),
                   "every reload applied (and every bad config refused, the running one kept)",
                   "; ".join(f"reload {r['slot']} at {r['elapsed_s']} s: {r['note']}"
                             for r in applied + refused if r["applied"] != "1")[:600])
        m = self.metrics
        ok_n = sum(v for l, v in m.get("sluice_config_reloads_total", []) if l.get("result") == "success")
        bad_n = sum(v for l, v in m.get("sluice_config_reloads_total", []) if l.get("result") == "failure")
        last = [v for _, v in m.get("sluice_config_last_reload_successful", [])]
        self.metric_reloads = (ok_n, bad_n, last[0] if last else None)
        self.check(m and ok_n == len(applied) and bad_n == len(refused) and last == [1.0],
                   "the reload metrics agree",
                   f"sluice_config_reloads_total success {ok_n:g} (expected {len(applied)}), failure {bad_n:g} "
                   f"(expected {len(refused)}); sluice_config_last_reload_successful {f'{last[0]:g}' if last else '?'}")
        gen = (self.status_end or {}).get("generation")
        self.check(gen == 1 + len(applied), "/status generation at the end is 1 + the reloads applied",
                   f"generation {gen}, expected {1 + len(applied)}")

    def _fd_checks(self):
        b, e = self.base, self.end
        if not b or not e:
            self.check(False, "descriptors back to the warm-up count", "census missing")
            return
        problems = []
        if not b.get("settled"):
            problems.append(f"no quiet state after the warm-up within {b.get('waited_s')} s")
        if not e.get("settled"):
            problems.append(f"no quiet state at the end within {e.get('waited_s')} s")
        if e["client"]:
            problems.append(f"{e['client']} client connections still open at the end")
        if e["unlisted"]:
            problems.append(f"{e['unlisted']} sockets closed by the kernel but still held")
        if e["other"] != b["other"]:
            problems.append(f"non-socket descriptors {b['other']} → {e['other']}")
        if e["listen"] != b["listen"]:
            problems.append(f"listening sockets {b['listen']} → {e['listen']}")
        bounds = self.pool_bounds()
        per_port = {}
        for u in e["upstream"]:
            if u["state"] != ESTABLISHED:
                problems.append(f"{u['count']} upstream sockets to :{u['port']} in state {u['state']} (not ESTABLISHED)")
            if u["port"] not in bounds:
                problems.append(f"{u['count']} sockets to :{u['port']}, not an origin")
            per_port[u["port"]] = per_port.get(u["port"], 0) + u["count"]
        for port, n in per_port.items():
            if port in bounds and n > bounds[port]:
                problems.append(f"{n} pooled connections to :{port}, at most {bounds[port]} allowed")
        self.pooled_base = sum(u["count"] for u in b["upstream"])
        self.pooled_end = sum(u["count"] for u in e["upstream"])
        self.check(not problems, "descriptors back to the warm-up count (± idle pooled upstream connections)",
                   f"{b['total']} → {e['total']}: non-socket {b['other']} → {e['other']}, listening "
                   f"{b['listen']} → {e['listen']}, pooled upstream {self.pooled_base} → {self.pooled_end}, "
                   f"client {b['client']} → {e['client']}" + ("; " + "; ".join(problems) if problems else ""))

    @property
    def passed(self):
        return all(ok for ok, _, _ in self.checks)

    # -- the summary ---------------------------------------------------------

    def rows(self):
        meta = self.meta
        rows = []
        last_t = float(self.samples[-1]["elapsed_s"]) if self.samples else 0
        rows.append(("duration", f"{meta.get('duration_s', 0):g} s planned, {last_t:.0f} s run (warm-up "
                     f"{meta.get('warmup_s', 0):g} s, ending with the baseline quiet point; samples every "
                     f"{meta.get('sample_s', 0):g} s: {len(self.samples)})"))
        loads = "; ".join(l.get("what", l["name"]) for l in meta.get("loads", []))
        rows.append(("traffic", f"{loads}; idle bursts of {meta.get('idle_connections')} connections held "
                     f"{meta.get('idle_hold_s'):g} s every {meta.get('idle_every_s'):g} s; 20 slowloris and "
                     f"{len(MALFORMED)} malformed requests every {meta.get('hostile_every_s'):g} s"))
        rows.append(("requests (load generators)", fmt_int(self.requests)))
        w = self.windows["normal"]
        rows.append(("failed outside outage windows",
                     f"{fmt_int(self.failed('normal'))} (non-2xx: {counts_text(w['non2xx'])}; errors: "
                     f"{counts_text(w['errors'])})"))
        o = self.windows["outage"]
        outages = [e for e in self.events if e["kind"] == "outage"]
        names = {}
        for e in outages:
            names[e["detail"].split()[0]] = names.get(e["detail"].split()[0], 0) + 1
        rows.append(("failed inside outage windows (expected)",
                     f"{fmt_int(self.failed('outage'))} of {fmt_int(o['requests'])} (non-2xx: "
                     f"{counts_text(o['non2xx'])}; errors: {counts_text(o['errors'])})"))
        rows.append(("origin outages", f"{len(outages)} ({', '.join(f'{k} ×{v}' for k, v in sorted(names.items())) or 'none'}), "
                     f"{meta.get('outage_length_s', 0):g} s down each; window = down + {meta.get('outage_grace_s', 0):g} s"))
        held = sum(i["open"] for i in self.idle)
        rows.append(("idle bursts", f"{len(self.idle)}, {fmt_int(held)} of "
                     f"{fmt_int(sum(i['connections'] for i in self.idle))} connections held"))
        s408 = sum(h.get("slowloris_408", 0) for h in self.hostile)
        sn = sum(h.get("slowloris", 0) for h in self.hostile)
        m400 = sum(h.get("malformed_400", 0) for h in self.hostile)
        mn = sum(h.get("malformed", 0) for h in self.hostile)
        rows.append(("hostile clients", f"slowloris → 408: {s408}/{sn}; malformed → 400: {m400}/{mn}"))
        applied = [r for r in self.reloads if r["kind"] == "applied"]
        refused = [r for r in self.reloads if r["kind"] == "refused"]
        sighup = sum(r["trigger"] == "sighup" for r in applied)
        ms = sorted(int(r["ms"]) for r in applied if r["applied"] == "1")
        ok_n, bad_n, last = self.metric_reloads
        rows.append(("reloads applied", f"{self.reloads_applied}/{len(applied)} ({sighup} SIGHUP, "
                     f"{len(applied) - sighup} POST /reload; in force after {ms[len(ms) // 2] if ms else '?'} ms "
                     f"median, {ms[-1] if ms else '?'} ms max); bad configs refused: {self.reloads_refused}/{len(refused)}; "
                     f"metrics: success {ok_n:g}, failure {bad_n:g}, last_reload_successful "
                     f"{'?' if last is None else f'{last:g}'}"))
        rss = [v for _, v in self.series("vm_rss_kib")]
        anon = [v for _, v in self.series("rss_anon_kib")]
        if rss and self.rss_base is not None and self.rss_end is not None:
            rows.append(("VmRSS warm-up / max / end", f"{mib(self.rss_base)} / {mib(max(rss))} / {mib(self.rss_end)} MiB "
                         f"(end − warm-up {(self.rss_end - self.rss_base) / 1024:+.1f} MiB; allowed +"
                         f"{RSS_ALLOWED_KIB // 1024} MiB)"))
        if anon and self.anon_base is not None and self.anon_end is not None:
            rows.append(("RssAnon warm-up / max / end", f"{mib(self.anon_base)} / {mib(max(anon))} / {mib(self.anon_end)} MiB "
                         f"({(self.anon_end - self.anon_base) / 1024:+.1f} MiB)"))
        half = self.meta.get("duration_s", 0) / 2
        sl = [slope_per_min([(t, v) for t, v in self.series(c) if t >= half]) for c in ("vm_rss_kib", "rss_anon_kib")]
        rows.append(("RSS slope, second half", " ".join([
            f"VmRSS {sl[0]:+.1f} KiB/min," if sl[0] is not None else "VmRSS n/a,",
            f"RssAnon {sl[1]:+.1f} KiB/min" if sl[1] is not None else "RssAnon n/a",
            "(least squares over every sample, load and idle bursts included)"])))
        fds = [v for _, v in self.series("fds")]
        if fds and self.base and self.end:
            rows.append(("descriptors warm-up / max / end",
                         f"{self.base['total']} / {int(max(fds))} / {self.end['total']} (quiet points: non-socket "
                         f"{self.base['other']} → {self.end['other']}, listening {self.base['listen']} → "
                         f"{self.end['listen']}, idle pooled upstream {self.pooled_base} → {self.pooled_end}, "
                         f"client 0 → {self.end['client']})"))
        return rows

    def fd_rule(self):
        b = self.pool_bounds()
        o = self.meta.get("origins", {})
        return ("Warm-up and end values are taken at quiet points (the loads have stopped, no client connection "
                "is left). The descriptor check requires at the end: no client connection, no socket the kernel "
                "has closed but sluice still holds, exactly as many non-socket descriptors (epoll, eventfd, "
                "timers, files) and listening sockets as at the warm-up point; the only difference allowed is in "
                "idle pooled upstream connections, which must be ESTABLISHED, to the three origins, and at most "
                "workers × the load connections that reach that origin + 1 (a health check in flight): "
                f"A (:{o.get('A')}) ≤ {b.get(o.get('A'))}, B (:{o.get('B')}) ≤ {b.get(o.get('B'))}, "
                f"C (:{o.get('C')}) ≤ {b.get(o.get('C'))}. Failed requests (non-2xx answers and connection "
                "errors of the load generators) are counted per load segment; segments run between the "
                "warm-up end, each outage's start, the end of its window (the origin's downtime + the passive "
                "check's fail_timeout + 1 s) and the end, so errors inside an outage window are told apart "
                "from those outside, which must be zero.")

    def summary_md(self):
        meta = self.meta
        lines = [f"### Soak run: {'PASS' if self.passed else 'FAIL'}", "",
                 f"`{meta.get('command', 'bench/soak.sh')}` on {meta.get('date', '?')}, "
                 f"{meta.get('sluice_version', 'sluice')} ({meta.get('sluice_rev', '?')}), "
                 f"{meta.get('workers')} workers, {meta.get('nproc')} CPUs, Linux {meta.get('kernel', '?')}.", "",
                 "| measure | value |", "| --- | --- |"]
        for k, v in self.rows():
            lines.append(f"| {k} | {v.replace('|', '/')} |")
        lines.append(f"| verdict | **{'PASS' if self.passed else 'FAIL'}** |")
        lines += ["", self.fd_rule(), ""]
        failed = [(w, d) for ok, w, d in self.checks if not ok]
        if failed:
            lines.append("Failed checks:")
            lines += [f"- {w}: {d}" for w, d in failed]
            lines.append("")
        return "\n".join(lines)

    # -- the HTML page -------------------------------------------------------

    def marks(self):
        reloads = [(float(r["elapsed_s"]), r["kind"]) for r in self.reloads]
        outages = [(float(e["start_s"]), float(e["end_s"]), e["detail"].split()[0])
                   for e in self.events if e["kind"] == "outage"]
        return reloads, outages

    def html(self):
        reloads, outages = self.marks()
        x_max = max([self.meta.get("duration_s", 0)] + [float(s["elapsed_s"]) for s in self.samples] + [1])
        warm = self.meta.get("warmup_s", 0)
        mem = svg_chart("Memory (MiB)", [
            ("VmRSS", "#1f77b4", [(t, v / 1024) for t, v in self.series("vm_rss_kib")]),
            ("RssAnon", "#ff7f0e", [(t, v / 1024) for t, v in self.series("rss_anon_kib")])],
            x_max, warm, reloads, outages)
        fd = svg_chart("Open descriptors and client connections", [
            ("descriptors", "#2ca02c", self.series("fds")),
            ("active client connections", "#9467bd", self.series("active_connections"))],
            x_max, warm, reloads, outages)
        # Rates between samples under load (not across the quiet points).
        req = [(float(s["elapsed_s"]), num(s["requests_total"])) for s in self.samples
               if s["phase"] in ("warmup", "run") and num(s["requests_total"]) is not None]
        e5 = [(float(s["elapsed_s"]), num(s["responses_5xx_total"])) for s in self.samples
              if s["phase"] in ("warmup", "run") and num(s["responses_5xx_total"]) is not None]
        rate = [(t2, (v2 - v1) / (t2 - t1)) for (t1, v1), (t2, v2) in zip(req, req[1:]) if t2 > t1 and v2 >= v1]
        rate5 = [(t2, (v2 - v1) / (t2 - t1)) for (t1, v1), (t2, v2) in zip(e5, e5[1:]) if t2 > t1 and v2 >= v1]
        rq = svg_chart("Requests per second (sluice metrics)", [
            ("all", "#17becf", rate), ("5xx", "#d62728", rate5)], x_max, warm, reloads, outages)
        verdict = "PASS" if self.passed else "FAIL"
        color = "#1a7f37" if self.passed else "#c62828"
        e = html.escape
        table = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in self.rows())
        checks = "".join(f"<li class='{'ok' if ok else 'bad'}'>{'✓' if ok else '✗'} {e(w)}"
                         f"{': ' + e(d) if d else ''}</li>" for ok, w, d in self.checks)
        load_rows = ""
        for name, r in self.by_load.items():
            load_rows += (f"<tr><td>{e(name)}</td><td>{fmt_int(r['normal']['requests'])}</td>"
                          f"<td>{fmt_int(r['normal']['non2xx'])}</td><td>{fmt_int(r['normal']['errors'])}</td>"
                          f"<td>{fmt_int(r['outage']['requests'])}</td><td>{fmt_int(r['outage']['non2xx'])}</td>"
                          f"<td>{fmt_int(r['outage']['errors'])}</td></tr>")
        reload_rows = "".join(
            f"<tr><td>{e(r['elapsed_s'])}</td><td>{e(r['slot'])}</td><td>{e(r['kind'])}</td><td>{e(r['trigger'])}</td>"
            f"<td>{e(r['generation'])}</td><td>{e(r['pool_servers'].replace('+', ' '))}</td>"
            f"<td>{'yes' if r['applied'] == '1' else 'NO'}</td><td>{e(r['ms'])}</td><td>{e(r['note'])}</td></tr>"
            for r in self.reloads)
        event_rows = "".join(f"<tr><td>{e(ev['start_s'])}</td><td>{e(ev['end_s'])}</td><td>{e(ev['kind'])}</td>"
                             f"<td>{e(ev['detail'])}</td></tr>" for ev in self.events if ev["kind"] != "reload")
        return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>sluice soak run: {verdict}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 980px; color: #222; }}
h1 {{ font-size: 22px; }} h2 {{ font-size: 17px; margin-top: 28px; }}
.verdict {{ display: inline-block; padding: 4px 12px; border-radius: 4px; color: #fff; background: {color}; }}
table {{ border-collapse: collapse; margin: 8px 0; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }}
th {{ background: #f4f4f4; font-weight: 600; }}
td.n, .num td {{ text-align: right; }}
li.ok {{ color: #1a7f37; }} li.bad {{ color: #c62828; font-weight: 600; }}
p.note {{ color: #555; }}
svg {{ display: block; margin: 10px 0; }}
</style></head><body>
<h1>sluice soak run <span class="verdict">{verdict}</span></h1>
<p><code>{e(self.meta.get('command', ''))}</code> on {e(self.meta.get('date', '?'))},
{e(self.meta.get('sluice_version', ''))} ({e(self.meta.get('sluice_rev', '?'))}), {self.meta.get('workers')} workers,
{self.meta.get('nproc')} CPUs.</p>
<h2>Checks</h2><ul>{checks}</ul>
<h2>Summary</h2><table>{table}</table>
<p class="note">{e(self.fd_rule())}</p>
<h2>Over time</h2>
<p class="note">Grey vertical lines: reloads applied; red dashed: bad configs refused; shaded: outage windows
(origin down, then until its fail_timeout has passed); black dashed: the end of the warm-up.</p>
{mem}{fd}{rq}
<h2>Load generators</h2>
<table class="num"><tr><th rowspan="2">load</th><th colspan="3">outside outage windows</th><th colspan="3">inside outage windows</th></tr>
<tr><th>requests</th><th>non-2xx</th><th>errors</th><th>requests</th><th>non-2xx</th><th>errors</th></tr>{load_rows}</table>
<h2>Reloads</h2>
<table><tr><th>at (s)</th><th>#</th><th>kind</th><th>trigger</th><th>generation</th><th>pool (ports)</th><th>in force</th><th>ms</th><th>note</th></tr>{reload_rows}</table>
<h2>Events</h2>
<table><tr><th>from (s)</th><th>to (s)</th><th>kind</th><th>detail</th></tr>{event_rows}</table>
</body></html>
"""


# ---------------------------------------------------------------------------
# SVG line charts, drawn here


def nice_step(span, target):
    raw = span / max(target, 1)
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def svg_chart(title, series, x_max, warm, reloads, outages, width=940, height=280):
    e = html.escape
    left, right, top, bottom = 64, 16, 30, 38
    pw, ph = width - left - right, height - top - bottom
    values = [v for _, _, pts in series for _, v in pts]
    if not values:
        return f"<p>{e(title)}: no samples</p>"
    lo, hi = min(values), max(values)
    if hi - lo < 1e-9:
        lo, hi = lo - 1, hi + 1
    ystep = nice_step(hi - lo, 5)
    y0 = math.floor(lo / ystep) * ystep
    y1 = math.ceil(hi / ystep) * ystep
    minutes = x_max >= 180
    unit = 60 if minutes else 1
    xstep = nice_step(x_max / unit, 10) * unit

    def X(t):
        return left + pw * t / x_max

    def Y(v):
        return top + ph * (1 - (v - y0) / (y1 - y0))

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
           f'<text x="{left}" y="18" font-size="13" font-weight="bold">{e(title)}</text>']
    for start, end, name in outages:
        out.append(f'<rect x="{X(start):.1f}" y="{top}" width="{max(1.0, X(end) - X(start)):.1f}" height="{ph}" '
                   f'fill="#f8d7da" opacity="0.7"><title>origin {e(name)} stopped</title></rect>')
    y = y0
    while y <= y1 + ystep / 2:
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{Y(y):.1f}" y2="{Y(y):.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{left - 6}" y="{Y(y) + 4:.1f}" text-anchor="end">{y:g}</text>')
        y += ystep
    t = 0.0
    while t <= x_max + 1e-9:
        out.append(f'<line x1="{X(t):.1f}" x2="{X(t):.1f}" y1="{top + ph}" y2="{top + ph + 4}" stroke="#888"/>')
        out.append(f'<text x="{X(t):.1f}" y="{top + ph + 16}" text-anchor="middle">{t / unit:g}</text>')
        t += xstep
    out.append(f'<text x="{left + pw / 2}" y="{height - 4}" text-anchor="middle">'
               f'{"minutes" if minutes else "seconds"} since the start</text>')
    for t, kind in reloads:
        if kind == "refused":
            out.append(f'<line x1="{X(t):.1f}" x2="{X(t):.1f}" y1="{top}" y2="{top + ph}" stroke="#d62728" '
                       f'stroke-dasharray="3,3"><title>bad config refused at {t:g} s</title></line>')
        else:
            out.append(f'<line x1="{X(t):.1f}" x2="{X(t):.1f}" y1="{top}" y2="{top + ph}" stroke="#999" '
                       f'stroke-width="0.8"><title>reload at {t:g} s</title></line>')
    out.append(f'<line x1="{X(warm):.1f}" x2="{X(warm):.1f}" y1="{top}" y2="{top + ph}" stroke="#000" '
               f'stroke-dasharray="6,3"><title>end of the warm-up</title></line>')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>')
    lx = left + 8
    for name, color, pts in series:
        if pts:
            path = " ".join(f"{X(t):.1f},{Y(v):.1f}" for t, v in pts)
            out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.6" points="{path}"/>')
        out.append(f'<rect x="{lx}" y="{top + 6}" width="12" height="3" fill="{color}"/>'
                   f'<text x="{lx + 16}" y="{top + 11}">{e(name)}</text>')
        lx += 32 + 7 * len(name)
    out.append("</svg>")
    return "\n".join(out)


def cmd_report(args):
    run = Run(args.dir)
    with open(os.path.join(args.dir, "summary.md"), "w") as f:
        f.write(run.summary_md())
    with open(os.path.join(args.dir, "report.html"), "w") as f:
        f.write(run.html())
    print(run.summary_md())
    if run.passed:
        print("PASS")
        return 0
    print("FAIL: " + "; ".join(f"{w} ({d})" if d else w for ok, w, d in run.checks if not ok))
    return 1


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("report")
    r.add_argument("dir")
    c = sub.add_parser("census")
    c.add_argument("--pid", type=int, required=True)
    c.add_argument("--listen-port", type=int, required=True)
    c.add_argument("--admin-port", type=int, required=True)
    c.add_argument("--timeout", type=float, default=15)
    c.add_argument("--out", required=True)
    h = sub.add_parser("hostile")
    h.add_argument("--port", type=int, required=True)
    h.add_argument("--slowloris", type=int, default=20)
    h.add_argument("--out", required=True)
    w = sub.add_parser("wait-status")
    w.add_argument("--admin", type=int, required=True)
    w.add_argument("--generation", type=int)
    w.add_argument("--pool", help="the ports of upstream pool, space-separated, in order")
    w.add_argument("--last-ok", choices=["true", "false"])
    w.add_argument("--timeout", type=float, default=5)
    w.add_argument("--print-generation", action="store_true")
    w.add_argument("--print-health", metavar="ADDRESS")
    rl = sub.add_parser("reload")
    rl.add_argument("--admin", type=int, required=True)
    how = rl.add_mutually_exclusive_group(required=True)
    how.add_argument("--sighup", type=int, metavar="PID")
    how.add_argument("--post", action="store_true")
    rl.add_argument("--generation", type=int, required=True)
    rl.add_argument("--pool", required=True)
    rl.add_argument("--last-ok", choices=["true", "false"], required=True)
    rl.add_argument("--timeout", type=float, default=5)
    a = p.parse_args()
    return {"report": cmd_report, "census": cmd_census, "hostile": cmd_hostile,
            "wait-status": cmd_wait_status, "reload": cmd_reload}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
