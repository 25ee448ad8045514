"""bench/soak.sh --smoke (issue 11): the soak run's tool works end to end.
20 s of mixed traffic through sluice with reloads (SIGHUP and POST /reload,
one bad config), an origin outage, idle bursts and hostile clients; the
memory and descriptors are sampled every second; bench/soak_report.py
writes the report and the verdict, which must be PASS. The real soak
(30 minutes) is run by hand: bench/README.md, "Soak run"."""

import csv
import json
import os
import shutil
import socket

import pytest

import harness

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SCRIPT = os.path.join(REPO, "bench", "soak.sh")

# The smoke run takes about 22 s; inside the 60 s per-test limit of
# conftest.py, with room to stop everything.
SMOKE_LIMIT_S = 45

COLUMNS = ["elapsed_s", "phase", "vm_rss_kib", "rss_anon_kib", "fds", "active_connections",
           "requests_total", "responses_5xx_total", "reloads_ok", "reloads_failed"]


def test_soak_smoke_passes_and_writes_samples_and_report(sluice_bin, bench_bin, tmp_path):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed (bash deploy/install-deps.sh)")
    out_dir = tmp_path / "out"
    env = dict(os.environ, SLUICE_BIN=sluice_bin, SLUICE_BENCH=bench_bin, TMPDIR=str(tmp_path))
    code, out, err = harness.run_script([SCRIPT, "--smoke", "--out", str(out_dir)], env, SMOKE_LIMIT_S, cwd=REPO)
    sluice_stderr = ""
    if (out_dir / "raw" / "sluice-stderr.txt").exists():
        sluice_stderr = (out_dir / "raw" / "sluice-stderr.txt").read_text(errors="replace")[-3000:]
    assert code == 0, (f"exit {code}\n--- stdout\n{out}\n--- stderr\n{err[-4000:]}"
                       f"\n--- sluice stderr\n{sluice_stderr}")
    assert out.rstrip().splitlines()[-1] == "PASS", out

    # samples.csv: the columns, a row a second (20 s, allowing for a loaded
    # machine), the two quiet points, every value a number.
    with open(out_dir / "samples.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == COLUMNS
        rows = list(reader)
    assert len(rows) >= 15, rows
    phases = [r["phase"] for r in rows]
    assert phases.count("baseline") == 1 and phases[-1] == "end", phases
    assert set(phases) == {"warmup", "baseline", "run", "end"}, phases
    times = [float(r["elapsed_s"]) for r in rows]
    assert times == sorted(times) and times[-1] >= 20, times
    for r in rows:
        assert int(r["vm_rss_kib"]) > 0 and int(r["rss_anon_kib"]) > 0 and int(r["fds"]) > 0, r
        assert r["requests_total"].isdigit() and r["reloads_ok"].isdigit(), r
    # An idle burst shows up in the descriptors and client connections.
    assert max(int(r["active_connections"]) for r in rows) >= 200
    assert max(int(r["fds"]) for r in rows) >= 200
    # The reloads counted by sluice reach the end row.
    assert rows[-1]["reloads_ok"] == "4" and rows[-1]["reloads_failed"] == "1", rows[-1]

    # Reloads: four applied (one through POST /reload), one bad config refused.
    with open(out_dir / "reloads.csv", newline="") as f:
        reloads = list(csv.DictReader(f))
    assert [(r["kind"], r["trigger"]) for r in reloads] == [
        ("applied", "sighup"), ("applied", "sighup"), ("applied", "post"), ("refused", "post"), ("applied", "sighup")]
    assert all(r["applied"] == "1" for r in reloads), reloads

    # The outage window saw the errors a stopped origin causes, and they were
    # kept apart from the rest (which must be none for PASS).
    summary = (out_dir / "summary.md").read_text()
    assert "| verdict | **PASS** |" in summary
    assert "| failed outside outage windows | 0 (" in summary
    with open(out_dir / "segments.csv", newline="") as f:
        segments = list(csv.DictReader(f))
    outage = [s for s in segments if s["kind"] == "outage"]
    assert len(outage) == 1 and outage[0]["origin_down"] == "C", segments
    bulk = json.loads((out_dir / "raw" / f"seg{outage[0]['index']}-keepalive_64k.json").read_text())
    assert sum(n for code, n in bulk["status_codes"].items() if code in ("502", "503")) > 0, bulk

    report = (out_dir / "report.html").read_text()
    assert report.count("<svg") >= 2 and "<polyline" in report and "PASS" in report
    assert "<script" not in report

    # Nothing it started is left running (sluice's config and the clients'
    # results are under tmp_path; the origins and sluice listened on these
    # ports), and its temp dir is gone.
    harness.assert_nothing_left(tmp_path, "sluice-soak.")
    meta = json.loads((out_dir / "meta.json").read_text())
    for port in [*meta["origins"].values(), meta["listen_port"], meta["admin_port"]]:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
