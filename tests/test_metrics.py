"""Tests of testbed.metrics: schema, and the writer against a real VictoriaMetrics on loopback.

Each VictoriaMetrics here is our own (127.0.0.1, a free port, never the lab's 8428, a temp data
dir) and is always stopped.  Notes on what VictoriaMetrics 1.79.5 (Debian 12) does with our writes:

* timestamps are kept to the millisecond: a point written at ``t_ns`` reads back at ``t_ns // 10**6``;
* a field becomes the series ``<measurement>_<field>``; bool -> 1/0; bucket and org are ignored;
* writes become visible to /api/v1/export after about a second (we poll with a deadline);
* identical samples written twice are both kept (export shows the duplicate) unless VM runs with
  ``-dedup.minScrapeInterval=1ms`` -- so the tests below count exactly and assert no duplicates.
"""

from __future__ import annotations

import http.server
import logging
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path
from typing import ClassVar

import pytest

from testbed.metrics import FaultEvent, Iteration, MetricsWriter, ProbeResult, Spool, replay, schema, to_line, to_point
from testbed.metrics.localstore import BINARY, LocalVictoriaMetrics, free_port
from testbed.metrics.schema import ALL_TAGS, RECORD_TYPES, check_default_tags
from testbed.metrics.spool import store_id
from testbed.metrics.writer import REFUSED, health

REPO = Path(__file__).resolve().parents[1]
needs_vm = pytest.mark.skipif(not os.access(BINARY, os.X_OK), reason=f"{BINARY} not installed")

# Small intervals so that the tests run in seconds.
FAST = {"flush_interval_ms": 100, "retry_interval_ms": 100, "max_retries": 2, "max_retry_delay_ms": 300,
        "max_retry_time_ms": 1000, "timeout_ms": 2000, "max_close_wait_ms": 5000, "replay_interval_s": 0.3,
        "spool_flush_interval_s": 0.1, "health_timeout_s": 0.5}


def rid() -> str:
    return "t-" + uuid.uuid4().hex[:10]


def iterations(run_id: str, n: int, t0: int | None = None, start_step: int = 0, **over) -> list[Iteration]:
    t0 = t0 or time.time_ns() - 60 * 10**9
    return [Iteration(time_ns=t0 + (start_step + k) * 7_000_123, step=start_step + k,  # > 1 ms apart: VM keeps ms
                      duration_s=0.5 + (start_step + k) / 1000, tokens_per_s=1000.0 + start_step + k,
                      loss=10.0 / (1 + start_step + k), warmup=(start_step + k) < 2, run_id=run_id, **over)
            for k in range(n)]


def series(vm: LocalVictoriaMetrics, run_id: str, field: str, measurement: str = "dcilab_iteration") -> dict[int, float]:
    """timestamp (ms) -> value for one field of one run; asserts no duplicate timestamps."""
    out: dict[int, float] = {}
    for s in vm.export(f'{{__name__="{measurement}_{field}",run_id="{run_id}"}}'):
        for ts, v in zip(s["timestamps"], s["values"], strict=True):
            assert ts not in out, f"duplicate sample at {ts} in {measurement}_{field}"
            out[ts] = v
    return out


def assert_iterations_stored(vm: LocalVictoriaMetrics, recs: list[Iteration], timeout: float = 20.0) -> None:
    run_id = recs[0].run_id
    got = vm.wait_count(f'{{__name__="dcilab_iteration_step",run_id="{run_id}"}}', len(recs), timeout)
    assert got == len(recs), f"{got} points in the store, {len(recs)} written"
    time.sleep(0.3)
    by_field = {f: series(vm, run_id, f) for f in ("step", "duration_s", "tokens_per_s", "loss", "warmup")}
    assert all(len(v) == len(recs) for v in by_field.values()), {f: len(v) for f, v in by_field.items()}
    for r in recs:
        ts = r.time_ns // 1_000_000  # VictoriaMetrics keeps milliseconds
        assert by_field["step"][ts] == r.step
        assert by_field["duration_s"][ts] == pytest.approx(r.duration_s, rel=1e-12)
        assert by_field["tokens_per_s"][ts] == pytest.approx(r.tokens_per_s, rel=1e-12)
        assert by_field["loss"][ts] == pytest.approx(r.loss, rel=1e-12)
        assert by_field["warmup"][ts] == (1.0 if r.warmup else 0.0)


@pytest.fixture(scope="module")
def vm(tmp_path_factory):
    if not os.access(BINARY, os.X_OK):
        pytest.skip(f"{BINARY} not installed")
    store = LocalVictoriaMetrics(tmp_path_factory.mktemp("vm") / "data")
    store.start()
    try:
        yield store
    finally:
        store.stop()


@pytest.fixture
def own_vm(tmp_path):
    """A VictoriaMetrics of this test only (it gets stopped and restarted)."""
    if not os.access(BINARY, os.X_OK):
        pytest.skip(f"{BINARY} not installed")
    store = LocalVictoriaMetrics(tmp_path / "vmdata")
    try:
        yield store
    finally:
        store.stop()


# ------------------------------------------------------------------------------------------------ schema


def test_line_protocol_matches_influxdb_client_point():
    t = 1_795_000_000_123_456_789
    recs = [
        Iteration(time_ns=t, step=7, duration_s=1, tokens_per_s=2048.5, loss=3.25, warmup=True, run_id="r 1",
                  case="bw,drop", placement="pp-remote", layout="tp1-pp2-dp1", model="tiny", testbed="emu=lab"),
        Iteration(time_ns=t, step=0, duration_s=0.001, tokens_per_s=0, loss=None, run_id="r1"),
        FaultEvent(start_ns=t, end_ns=t + 1_500_000_000, kind="switchover", target="line/working", run_id="r1"),
        FaultEvent(start_ns=t, end_ns=None, kind="ber", target="line", run_id="r1", case="c"),
        ProbeResult(time_ns=t, sdt_loss_ms=12.5, sdt_gap_ms=13, lost=25, dup=0, ooo=1, run_id="r1", probe="udp"),
    ]
    for r in recs:
        assert to_line(r) == to_point(r).to_line_protocol(), r
    line = to_line(recs[0])
    assert line == ("dcilab_iteration,case=bw\\,drop,layout=tp1-pp2-dp1,model=tiny,placement=pp-remote,run_id=r\\ 1,"
                    "testbed=emu\\=lab duration_s=1,loss=3.25,step=7i,tokens_per_s=2048.5,warmup=true "
                    "1795000000123456789")
    # loss None is omitted; an int given for a float field is written as a float (no field type conflict)
    assert to_line(recs[1]) == "dcilab_iteration,run_id=r1 duration_s=0.001,step=0i,tokens_per_s=0,warmup=false " \
                               f"{t}"
    assert to_line(recs[2]) == ("dcilab_fault,kind=switchover,run_id=r1,target=line/working duration_s=1.5,"
                                f"end_ns={t + 1_500_000_000}i,start_ns={t}i {t}")
    assert "end_ns" not in to_line(recs[3]) and "duration_s" not in to_line(recs[3])
    assert to_line(recs[4]).startswith("dcilab_probe,probe=udp,run_id=r1 dup=0i,lost=25i,ooo=1i,sdt_gap_ms=13,")


def test_default_tags_fill_in_but_do_not_override():
    r = Iteration(time_ns=1_795_000_000_000_000_000, step=1, duration_s=1.0, tokens_per_s=1.0, case="mine")
    line = to_line(r, {"run_id": "r9", "case": "default", "testbed": "emu", "kind": "ignored-for-iterations"})
    assert line.startswith("dcilab_iteration,case=mine,run_id=r9,testbed=emu ")


T = 1_795_000_000_000_000_000


@pytest.mark.parametrize("record, field", [
    (Iteration(time_ns=T, step=1, duration_s=-1.0, tokens_per_s=1.0, run_id="r"), "dcilab_iteration.duration_s"),
    (Iteration(time_ns=T, step=1, duration_s=1.0, tokens_per_s=1.0, loss=math.nan, run_id="r"), "dcilab_iteration.loss"),
    (Iteration(time_ns=T, step=1, duration_s=1.0, tokens_per_s=math.inf, run_id="r"), "dcilab_iteration.tokens_per_s"),
    (Iteration(time_ns=T, step=1, duration_s=1.0, tokens_per_s="fast", run_id="r"), "dcilab_iteration.tokens_per_s"),
    (Iteration(time_ns=T, step=1.0, duration_s=1.0, tokens_per_s=1.0, run_id="r"), "dcilab_iteration.step"),
    (Iteration(time_ns=T, step=True, duration_s=1.0, tokens_per_s=1.0, run_id="r"), "dcilab_iteration.step"),
    (Iteration(time_ns=T, step=-1, duration_s=1.0, tokens_per_s=1.0, run_id="r"), "dcilab_iteration.step"),
    (Iteration(time_ns=T, step=1, duration_s=1.0, tokens_per_s=1.0, warmup="yes", run_id="r"), "dcilab_iteration.warmup"),
    (Iteration(time_ns=1_795_000_000, step=1, duration_s=1.0, tokens_per_s=1.0, run_id="r"), "dcilab_iteration.time_ns"),
    (Iteration(time_ns=T / 1, step=1, duration_s=1.0, tokens_per_s=1.0, run_id="r"), "dcilab_iteration.time_ns"),
    (Iteration(time_ns=T, step=1, duration_s=1.0, tokens_per_s=1.0), "dcilab_iteration.run_id"),
    (Iteration(time_ns=T, step=1, duration_s=1.0, tokens_per_s=1.0, run_id=""), "dcilab_iteration.run_id"),
    (Iteration(time_ns=T, step=1, duration_s=1.0, tokens_per_s=1.0, run_id="r", case="a\nb"), "dcilab_iteration.case"),
    (Iteration(time_ns=T, step=1, duration_s=1.0, tokens_per_s=1.0, run_id="r", model=7), "dcilab_iteration.model"),
    (FaultEvent(start_ns=T, end_ns=T - 1, kind="k", target="t", run_id="r"), "dcilab_fault.end_ns"),
    (FaultEvent(start_ns=T, end_ns=None, target="t", run_id="r"), "dcilab_fault.kind"),
    (FaultEvent(start_ns=T, end_ns=None, kind="k", run_id="r"), "dcilab_fault.target"),
    (ProbeResult(time_ns=T, run_id="r"), "dcilab_probe"),
    (ProbeResult(time_ns=T, lost=-3, run_id="r"), "dcilab_probe.lost"),
])
def test_validation_errors_name_the_field(record, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        to_line(record)
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        to_point(record)


def test_no_unbounded_tags():
    per_point = {"step", "time", "time_ns", "start_ns", "end_ns", "uuid", "id", "seq", "loss", "duration_s",
                 "tokens_per_s", "rank_time", "iteration", "host_pid"}
    for cls in RECORD_TYPES:
        assert not set(cls.TAGS) & per_point, cls
    assert ALL_TAGS == {"run_id", "case", "scenario", "placement", "layout", "model", "testbed", "kind", "target",
                        "probe", "verdict"}
    s = schema()
    assert s["dcilab_iteration"]["tags"] == ["run_id", "case", "scenario", "placement", "layout", "model", "testbed"]
    assert {"step", "warmup", "duration_s", "tokens_per_s", "loss"} <= set(s["dcilab_iteration"]["fields"])
    assert {"start_ns", "end_ns", "duration_s"} <= set(s["dcilab_fault"]["fields"])
    assert {"sdt_loss_ms", "sdt_gap_ms", "lost", "dup", "ooo"} <= set(s["dcilab_probe"]["fields"])
    for bad in ("step", "uuid", "rank"):
        with pytest.raises(ValueError, match=repr(bad)):
            check_default_tags({bad: "1"})
    with pytest.raises(ValueError, match="step"):
        MetricsWriter("http://127.0.0.1:1", spool_dir="/nonexistent-never-created", default_tags={"step": "1"})


@needs_vm
def test_one_series_per_field_whatever_the_number_of_steps(vm, tmp_path):
    run_id = rid()
    with MetricsWriter(vm.url, spool_dir=tmp_path / "spool", default_tags={"testbed": "emu"}, **FAST) as w:
        for r in iterations(run_id, 50):
            w.write(r)
    vm.wait_count(f'{{__name__="dcilab_iteration_step",run_id="{run_id}"}}', 50)
    names = sorted(s["metric"]["__name__"] for s in vm.export(f'{{run_id="{run_id}"}}'))
    assert names == ["dcilab_iteration_duration_s", "dcilab_iteration_loss", "dcilab_iteration_step",
                     "dcilab_iteration_tokens_per_s", "dcilab_iteration_warmup"]


# ------------------------------------------------------------------------------------------------ spool


def test_spool_segments_are_atomic_and_counted(tmp_path):
    sp = Spool(tmp_path / "s")
    assert sp.write([b"m f=1 1", b"", b"m f=2 2\n"]) == 2
    assert sp.write_payload(b"m f=3 3\nm f=4 4") == 2
    (sp.dir / ".tmp-00000000000000000001-1-000000.lp").write_bytes(b"m f=half")  # a crash mid-write
    c = sp.count()
    assert (c.points, c.segments, c.stray_tmp) == (4, 2, 1)
    segs = sp.segments()
    assert [s.read_bytes() for s in segs] == [b"m f=1 1\nm f=2 2\n", b"m f=3 3\nm f=4 4\n"]
    sp.reject(segs[0])
    sp.delete(segs[1])
    c = sp.count()
    assert (c.points, c.segments, c.rejected_points) == (0, 0, 2)
    with sp.replay_lock() as got:
        assert got
        with sp.replay_lock() as again:
            assert not again


# ------------------------------------------------------------------------------------------------ writer


@needs_vm
def test_points_arrive_one_to_one(vm, tmp_path):
    run_id = rid()
    recs = iterations(run_id, 300, scenario="baseline", placement="pp-remote", layout="tp1-pp2-dp1", model="tiny")
    t = time.time_ns() - 30 * 10**9
    faults = [FaultEvent(start_ns=t, end_ns=t + 2_345_678_901, kind="switchover", target="line", run_id=run_id),
              FaultEvent(start_ns=t + 10**9, end_ns=None, kind="ber", target="line", run_id=run_id)]
    probe = ProbeResult(time_ns=t + 5 * 10**9, sdt_loss_ms=48.2, sdt_gap_ms=50.0, lost=24, dup=0, ooo=2, tx=1000,
                        rx=976, run_id=run_id, probe="udp")
    with MetricsWriter(vm.url, spool_dir=tmp_path / "spool", default_tags={"case": "c1", "testbed": "emu"},
                       batch_size=64, **FAST) as w:
        for r in recs:
            assert w.write(r)
        for f in faults:
            assert w.write(f)
        assert w.write(probe)
    left = w.pending()
    assert left.total == 0 and w.counters["delivered"] == 303 and w.counters["spooled"] == 0
    assert_iterations_stored(vm, recs)
    tags = vm.export(f'{{__name__="dcilab_iteration_step",run_id="{run_id}"}}')[0]["metric"]
    assert tags == {"__name__": "dcilab_iteration_step", "run_id": run_id, "case": "c1", "testbed": "emu",
                    "scenario": "baseline", "placement": "pp-remote", "layout": "tp1-pp2-dp1", "model": "tiny"}
    assert vm.wait_count(f'{{__name__="dcilab_fault_start_ns",run_id="{run_id}"}}', 2) == 2
    dur = series(vm, run_id, "duration_s", "dcilab_fault")
    assert dur == {t // 10**6: pytest.approx(2.345678901)}  # the open fault has no duration
    end = series(vm, run_id, "end_ns", "dcilab_fault")
    assert end[t // 10**6] == pytest.approx(t + 2_345_678_901, abs=512)  # float64 in VM: ~256 ns resolution
    assert vm.wait_count(f'{{__name__="dcilab_probe_lost",run_id="{run_id}"}}', 1) == 1
    assert series(vm, run_id, "sdt_loss_ms", "dcilab_probe") == {(t + 5 * 10**9) // 10**6: 48.2}


@needs_vm
def test_store_down_then_back_loses_nothing(own_vm, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="dcilab.metrics")
    vm = own_vm.start()
    run_id = rid()
    recs = iterations(run_id, 150)
    costs = []
    with MetricsWriter(vm.url, spool_dir=tmp_path / "spool", batch_size=20, **FAST) as w:
        for r in recs[:30]:
            w.write(r)
            time.sleep(0.01)
        vm.stop()  # the store goes away mid-run
        for r in recs[30:120]:
            t0 = time.perf_counter()
            assert w.write(r) is True  # nothing raised, nothing refused
            costs.append(time.perf_counter() - t0)
            time.sleep(0.02)
        deadline = time.monotonic() + 10
        while w.pending().spooled < 60 and time.monotonic() < deadline:
            time.sleep(0.1)
        p = w.pending()
        assert p.spooled >= 60 and w.store_down, p
        vm.start()  # back, same port and data
        for r in recs[120:]:
            w.write(r)
        deadline = time.monotonic() + 20
        while w.pending().total and time.monotonic() < deadline:
            time.sleep(0.1)
        assert w.pending().total == 0, w.pending()
    assert w.counters["replayed"] >= 60
    assert not w.spool.segments() and not any(w.spool.dir.glob(".tmp-*"))
    assert_iterations_stored(vm, recs)  # all 150, values equal, no duplicates
    assert statistics.median(costs) < 0.002 and max(costs) < 0.1, (statistics.median(costs), max(costs))
    assert any("not answering" in r.getMessage() for r in caplog.records)
    assert any("answers again" in r.getMessage() for r in caplog.records)


@needs_vm
def test_unreachable_from_the_start_then_cli_replay(tmp_path, caplog):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    run_id = rid()
    recs = iterations(run_id, 40)
    spool = tmp_path / "spool"
    w = MetricsWriter(url, spool_dir=spool, **FAST)
    t0 = time.perf_counter()
    for r in recs:
        w.write(r)
    assert time.perf_counter() - t0 < 0.5
    t0 = time.perf_counter()
    left = w.close()
    assert time.perf_counter() - t0 < 10
    assert (left.in_flight, left.buffered, left.spooled) == (0, 0, 40)
    assert any("40 points" in r.getMessage() and str(spool) in r.getMessage() for r in caplog.records)
    res = replay(spool, url)
    assert res.error_kind == "down" and res.remaining_points == 40
    with LocalVictoriaMetrics(tmp_path / "vm", port=port) as vm:
        res = replay(spool, vm.url)
        assert res.ok and res.delivered_points == 40, res
        assert not Spool(spool).segments()
        assert_iterations_stored(vm, recs)


class _Unauthorized(http.server.BaseHTTPRequestHandler):
    posts: ClassVar[list[str]] = []
    auth: ClassVar[list[str | None]] = []

    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).posts.append(self.path)
        type(self).auth.append(self.headers.get("Authorization"))
        body = b'{"code":"unauthorized","message":"unauthorized access"}'
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def unauthorized_server():
    _Unauthorized.posts, _Unauthorized.auth = [], []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Unauthorized)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def test_unauthorized_is_spooled_and_reported_once(unauthorized_server, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="dcilab.metrics")
    spool = tmp_path / "spool"
    w = MetricsWriter(unauthorized_server, token="wrong", spool_dir=spool, batch_size=10, **FAST)
    for r in iterations(rid(), 50):
        w.write(r)
        time.sleep(0.005)
    deadline = time.monotonic() + 5
    while w.pending().in_flight and time.monotonic() < deadline:
        time.sleep(0.05)
    assert w.refused and "401" in w.refused
    left = w.close()
    assert left.spooled == 50 and left.in_flight == 0
    # not retried: one request per batch handed over before the refusal was known, none after
    assert 1 <= len(_Unauthorized.posts) <= 5, _Unauthorized.posts
    assert set(_Unauthorized.auth) == {"Token wrong"}
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name == "dcilab.metrics"]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert "401" in errors[0].getMessage() and "unauthorized access" in errors[0].getMessage()
    assert str(spool) in errors[0].getMessage()
    res = replay(spool, unauthorized_server, token="wrong")
    assert res.error_kind == REFUSED and res.remaining_points == 50 and "401" in res.error


@pytest.fixture
def silent_store():
    """Accepts TCP connections and never answers (a hung or black-holed store)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    srv.settimeout(0.2)
    conns = []
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                conns.append(srv.accept()[0])
            except OSError:
                pass
    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    finally:
        stop.set()
        t.join(2)
        for c in conns:
            c.close()
        srv.close()


def test_silent_store_from_the_start_spools_without_blocking(silent_store, tmp_path):
    assert health(silent_store, timeout=0.3)[0] is False
    w = MetricsWriter(silent_store, spool_dir=tmp_path / "spool", **{**FAST, "timeout_ms": 1000})
    costs = []
    for r in iterations(rid(), 40):
        t0 = time.perf_counter()
        w.write(r)
        costs.append(time.perf_counter() - t0)
        time.sleep(0.02)
    t0 = time.perf_counter()
    left = w.close()
    assert time.perf_counter() - t0 < 12
    assert left.total == left.spooled == 40, left
    assert max(costs) < 0.05 and w.store_down


def test_silent_store_close_spools_what_the_client_still_holds(silent_store, tmp_path):
    """The client holds a batch in a request that never returns: close() gives up after max_close_wait
    and spools it; the client's late error_callback does not spool it a second time."""
    opts = {**FAST, "timeout_ms": 4000, "max_close_wait_ms": 500}
    w = MetricsWriter(silent_store, spool_dir=tmp_path / "spool", **opts)
    w._down = None  # force the writes through the client despite the failed health check
    for r in iterations(rid(), 30):
        w._submit(to_line(r).encode())
    time.sleep(0.3)  # the batch is now stuck in the client's HTTP request
    t0 = time.perf_counter()
    left = w.close()
    assert time.perf_counter() - t0 < 3
    assert left.spooled == 30 and left.in_flight == 0, left
    time.sleep(4.5)  # the client's request times out later: its error_callback must not spool again
    assert w.pending().spooled == 30


@needs_vm
@pytest.mark.parametrize("store_up", [True, False])
def test_exit_without_close_flushes_or_spools(store_up, vm, tmp_path):
    spool = tmp_path / "spool"
    run_id = rid()
    url = vm.url if store_up else f"http://127.0.0.1:{free_port()}"
    code = textwrap.dedent(f"""
        import time
        from testbed.metrics import Iteration, MetricsWriter
        w = MetricsWriter({url!r}, spool_dir={str(spool)!r}, flush_interval_ms=1000, batch_size=100000,
                          max_close_wait_ms=1000)
        t = time.time_ns() - 10**10
        for k in range(25):
            w.write(Iteration(time_ns=t + k * 10**7, step=k, duration_s=1.0, tokens_per_s=1.0, run_id={run_id!r}))
        # no close(): the process just ends
    """)
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)
    assert time.monotonic() - t0 < 20
    spooled = Spool(spool).count().points
    if store_up:
        assert spooled == 0
        assert vm.wait_count(f'{{__name__="dcilab_iteration_step",run_id="{run_id}"}}', 25) == 25
    else:
        assert spooled == 25


@needs_vm
def test_victoria_metrics_keeps_duplicates_unless_dedup(vm, tmp_path):
    """Documents why a replayed batch that had in fact arrived would show twice in VM (InfluxDB overwrites)."""
    line = f"dcilab_iteration,run_id={{}} step=1i {time.time_ns() - 10**9}"
    run_a = rid()
    sp = Spool(tmp_path / "a")
    sp.write([line.format(run_a).encode()])
    sp.write([line.format(run_a).encode()])
    assert replay(sp.dir, vm.url).delivered_points == 2
    assert vm.wait_count(f'{{__name__="dcilab_iteration_step",run_id="{run_a}"}}', 2) == 2
    with LocalVictoriaMetrics(tmp_path / "vmdedup", extra_args=("-dedup.minScrapeInterval=1ms",)) as dvm:
        run_b = rid()
        sp.write([line.format(run_b).encode()])
        sp.write([line.format(run_b).encode()])
        assert replay(sp.dir, dvm.url).delivered_points == 2
        assert dvm.count(f'{{__name__="dcilab_iteration_step",run_id="{run_b}"}}') == 1


def test_invalid_record_is_dropped_and_logged_not_raised(tmp_path, caplog):
    w = MetricsWriter("http://127.0.0.1:1", spool_dir=tmp_path / "spool", **FAST)
    try:
        bad = Iteration(time_ns=T, step=1, duration_s=1.0, tokens_per_s=1.0, loss=math.nan, run_id="r")
        assert w.write(bad) is False and w.write(bad) is False
        assert w.counters["invalid"] == 2
        errs = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errs) == 1 and "dcilab_iteration.loss" in errs[0]
    finally:
        w.close()
    strict = MetricsWriter("http://127.0.0.1:1", spool_dir=tmp_path / "spool2", strict=True, **FAST)
    try:
        with pytest.raises(ValueError, match=r"dcilab_iteration\.loss"):
            strict.write(bad)
    finally:
        strict.close()
    shutil.rmtree(tmp_path / "spool2")


def test_a_writer_replays_only_its_own_stores_points_from_a_shared_spool(vm, tmp_path):
    """One spool folder for every store used to mean: whatever a writer found there went to its own
    URL, so an emulated run's points could land in the production store.  Segments now name their
    store; a legacy segment (no store) is sent only by `dcilab metrics replay`, to the store named."""
    spool = tmp_path / "spool"
    prod = Spool(spool, store=store_id("https://influx.example.net:8086", "lab", "dci"))
    prod.write([b"dcilab_iteration,run_id=prod-1 step=1i 1700000000000000000"])
    Spool(spool).write([b"dcilab_iteration,run_id=legacy-1 step=1i 1700000000000000000"])
    run_id = rid()
    with MetricsWriter(vm.url, spool_dir=spool, **FAST) as w:
        assert w.write(iterations(run_id, 1)[0])
        time.sleep(1.0)                                       # past a replay round
    assert w.counters["delivered"] == 1
    left = sorted(p.name for p in Spool(spool).segments())
    assert len(left) == 2 and any(prod.store in n for n in left)   # the other store's and the legacy one stay
    assert vm.export('{run_id="prod-1"}') == [] and vm.export('{run_id="legacy-1"}') == []
    assert Spool(spool, store=store_id(vm.url, "dcilab", "dcilab")).segments() == []
    assert len(Spool(spool, store=prod.store).segments()) == 1


def test_a_full_disk_leaves_no_partial_segment(tmp_path, monkeypatch):
    s = Spool(tmp_path / "spool", store="abc")

    def enospc(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr("testbed.metrics.spool.os.fsync", enospc)
    for _ in range(3):                                        # each retry of the writer
        with pytest.raises(OSError, match="No space"):
            s.write([b"m f=1i 1"])
    assert os.listdir(s.dir) == []


def test_points_kept_in_memory_while_the_spool_cannot_be_written_stay_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr("testbed.metrics.writer.MAX_BUFFERED", 5)
    w = MetricsWriter("http://127.0.0.1:9", spool_dir=tmp_path / "spool", **FAST)
    try:
        def full(lines):
            raise OSError(28, "No space left on device")
        monkeypatch.setattr(w.spool, "write", full)
        for _ in range(3):                                    # three flush rounds of 4 points each
            w._spool_lines([b"m f=1i %d" % i for i in range(4)])
        assert len(w._buffer) <= 5 and w.counters["dropped"] >= 7
    finally:
        monkeypatch.undo()
        w.close()
