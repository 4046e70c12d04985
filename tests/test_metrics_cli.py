"""`dcilab metrics replay|status` against a real VictoriaMetrics on loopback and real spools.

The spools are written by ``MetricsWriter`` while its store is down (a free port nobody listens
on); the same port then gets a VictoriaMetrics of this test only (never the lab's 8428), and what
the command delivered is read back from it.  The command runs as a subprocess, as a user runs
it, so the exit codes and the absence of tracebacks are the real ones.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from testbed.metrics import Iteration, MetricsWriter, Spool
from testbed.metrics.localstore import BINARY, LocalVictoriaMetrics, free_port
from tests.test_metrics import series

REPO = Path(__file__).resolve().parents[1]
DCILAB = [sys.executable, "-m", "testbed.cli"]
needs_vm = pytest.mark.skipif(not os.access(BINARY, os.X_OK), reason=f"{BINARY} not installed")

# Give up on a down store within about a second, so that the spool is written quickly.
FAST = {"flush_interval_ms": 100, "retry_interval_ms": 100, "max_retries": 1, "max_retry_delay_ms": 200,
        "max_retry_time_ms": 500, "timeout_ms": 1000, "max_close_wait_ms": 3000, "replay_interval_s": 0.3,
        "spool_flush_interval_s": 0.1, "health_timeout_s": 0.5, "final_replay_s": 0}


def inventory(tmp_path: Path, url: str, token_env: str | None = None, metrics: bool = True) -> Path:
    """The shipped emulated inventory with its metrics store moved to ``url`` (and a token reference)."""
    text = (REPO / "inventory" / "emulated.yaml").read_text()
    assert "url: http://127.0.0.1:8428" in text
    text = text.replace("url: http://127.0.0.1:8428", f"url: {url}")
    if token_env:
        text = text.replace("  bucket: dcilab\n", f"  bucket: dcilab\n  token: {{env: {token_env}}}\n", 1)
    if not metrics:
        start = text.index("\nmetrics:")
        text = text[:start] + text[text.index("\nemulation:"):]
    path = tmp_path / "inventory.yaml"
    path.write_text(text)
    return path


def dcilab(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([*DCILAB, *args], check=False, cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**os.environ, **(env or {})})
    assert "Traceback" not in res.stdout + res.stderr, res.stdout + res.stderr
    return res


def spool_while_down(url: str, spool: Path, run_id: str, n: int) -> list[Iteration]:
    """``n`` iterations written while the store at ``url`` is down: all of them end up in ``spool``."""
    t0 = time.time_ns() - 120 * 10**9
    recs = [Iteration(time_ns=t0 + k * 7_000_123, step=k, duration_s=0.5 + k / 1000, tokens_per_s=1000.0 + k,
                      loss=10.0 / (1 + k), warmup=k < 2, run_id=run_id) for k in range(n)]
    w = MetricsWriter(url, spool_dir=spool, **FAST)
    for r in recs:
        assert w.write(r)
    left = w.close()
    assert (left.spooled, left.in_flight, left.buffered) == (n, 0, 0), left
    return recs


def stored_steps(vm: LocalVictoriaMetrics, run_id: str, n: int) -> dict[int, float]:
    """timestamp (ms) -> step of one run, read back from the store; fails on a duplicate sample."""
    vm.wait_count(f'{{__name__="dcilab_iteration_step",run_id="{run_id}"}}', n, timeout=20)
    return series(vm, run_id, "step")


@needs_vm
def test_replay_and_status_with_the_store_down_then_up(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    inv = str(inventory(tmp_path, url))
    tree = tmp_path / "reports" / "jobs"
    runs = {f"r1-{uuid.uuid4().hex[:8]}": 30, f"r2-{uuid.uuid4().hex[:8]}": 12}
    recs = {rid: spool_while_down(url, tree / rid / "spool", rid, n) for rid, n in runs.items()}
    spools = [tree / rid / "spool" for rid in runs]
    segments_before = {s: sorted(p.name for p in Spool(s).segments()) for s in spools}

    # store down: status lists both spools found under the tree; replay sends nothing and keeps everything
    st = dcilab("metrics", "status", "-i", inv, "--spool", str(tmp_path / "reports"))
    assert st.returncode == 1
    for s, n in zip(spools, runs.values(), strict=True):
        assert f"{s}: {n} points in " in st.stdout, st.stdout
    assert f"store {url}: does not answer" in st.stdout
    rp = dcilab("metrics", "replay", "-i", inv, "--spool", str(tmp_path / "reports"))
    assert rp.returncode == 1
    assert len(rp.stderr.strip().splitlines()) == 1, rp.stderr
    assert f"store {url} does not answer" in rp.stderr and "42 points" in rp.stderr
    assert {s: sorted(p.name for p in Spool(s).segments()) for s in spools} == segments_before
    assert [Spool(s).count().points for s in spools] == list(runs.values())

    with LocalVictoriaMetrics(tmp_path / "vm", port=port) as vm:
        # another replayer holds a spool's lock: that spool is left alone, the other one is delivered
        with Spool(spools[0]).replay_lock() as got:
            assert got
            busy = dcilab("metrics", "replay", "-i", inv, "-s", str(spools[0]), "-s", str(spools[1]))
        assert busy.returncode == 1 and "another process is replaying" in busy.stderr, busy.stderr
        assert f"{spools[1]}: delivered 12 points" in busy.stdout, busy.stdout
        assert Spool(spools[0]).count().points == 30 and Spool(spools[1]).count().points == 0

        # a deadline already spent delivers nothing and says so
        late = dcilab("metrics", "replay", "-i", inv, "-s", str(tree), "--deadline-s", "0")
        assert late.returncode == 1 and "deadline of 0 s reached" in late.stderr, late.stderr
        assert Spool(spools[0]).count().points == 30

        ok = dcilab("metrics", "replay", "-i", inv, "-s", str(tree))
        assert ok.returncode == 0, ok.stderr
        assert f"{spools[0]}: delivered 30 points" in ok.stdout and f"30 points delivered to {url}, 0 left" in ok.stdout
        assert ok.stderr == ""
        assert all(Spool(s).count().points == 0 and not Spool(s).segments() for s in spools)
        for rid, n in runs.items():
            got = stored_steps(vm, rid, n)
            assert got == {r.time_ns // 1_000_000: float(r.step) for r in recs[rid]}

        st = dcilab("metrics", "status", "-i", inv, "-s", str(tree))
        assert st.returncode == 0, st.stdout + st.stderr
        assert f"store {url}: answers" in st.stdout and f"{spools[0]}: 0 points in 0 segments" in st.stdout
        again = dcilab("metrics", "replay", "-i", inv, "-s", str(tree))
        assert again.returncode == 0 and "nothing to replay" in again.stdout


def test_default_spool_is_the_writers_default(tmp_path: Path) -> None:
    """Without --spool the commands look where a writer given no spool_dir (a TrainingJob's default) spooled."""
    url = f"http://127.0.0.1:{free_port()}"
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home)}
    code = textwrap.dedent(f"""
        import time
        from testbed.metrics import Iteration, MetricsWriter
        w = MetricsWriter({url!r}, **{FAST!r})
        for k in range(7):
            w.write(Iteration(time_ns=time.time_ns() + k * 2_000_000, step=k, duration_s=1.0, tokens_per_s=1.0,
                              run_id="default-spool"))
        print(w.close().spooled, w.spool.dir)
    """)
    out = subprocess.run([sys.executable, "-c", code], check=False, cwd=REPO, capture_output=True, text=True,
                         timeout=60, env={**os.environ, **env})
    spooled, spool_dir = out.stdout.split()
    assert spooled == "7" and Path(spool_dir).is_relative_to(home), out.stdout + out.stderr
    inv = str(inventory(tmp_path, url))
    st = dcilab("metrics", "status", "-i", inv, env=env)
    assert st.returncode == 1 and f"{spool_dir}: 7 points in 1 segments waiting" in st.stdout, st.stdout
    rp = dcilab("metrics", "replay", "-i", inv, env=env)
    assert rp.returncode == 1 and "7 points (1 segments) left in " + spool_dir in rp.stderr, rp.stderr
    assert Spool(spool_dir).count().points == 7


def test_inventory_problems_are_one_clear_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    var = "DCILAB_TEST_TOKEN_" + uuid.uuid4().hex[:8].upper()
    spool = tmp_path / "spool"
    Spool(spool).write([b"dcilab_iteration,run_id=x step=1i 1700000000000000000"])
    with_token = tmp_path / "tok"
    with_token.mkdir()
    inv = str(inventory(with_token, url, token_env=var))
    rp = dcilab("metrics", "replay", "-i", inv, "-s", str(spool))
    assert rp.returncode == 1
    assert rp.stderr.strip() == (f"dcilab metrics replay: {inv}: metrics.token: environment variable {var} is not "
                                 f"set (export {var}=... before connecting)"), rp.stderr
    st = dcilab("metrics", "status", "-i", inv, "-s", str(spool))  # still shows what waits
    assert st.returncode == 1 and f"{spool}: 1 points in 1 segments waiting" in st.stdout
    assert f"environment variable {var} is not set" in st.stderr

    no_metrics = tmp_path / "nom"
    no_metrics.mkdir()
    inv2 = str(inventory(no_metrics, url, metrics=False))
    rp = dcilab("metrics", "replay", "-i", inv2, "-s", str(spool))
    assert rp.returncode == 1 and f"{inv2}: no metrics: section; add metrics: {{url:" in rp.stderr, rp.stderr

    missing = tmp_path / "no-such-spool"
    rp = dcilab("metrics", "replay", "-i", str(inventory(tmp_path, url)), "-s", str(missing))
    assert rp.returncode == 1 and f"--spool {missing}: no such directory" in rp.stderr, rp.stderr
    assert not missing.exists()  # a typo must not create a spool directory
    assert Spool(spool).count().points == 1
