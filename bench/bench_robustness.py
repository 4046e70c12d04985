"""Robustness figures of the emulated lab (issue 16): a lab always left as it was found.

  kills     N fault applications (the four faults and a convergence ratio, chosen at random), each
            in a process that is sent SIGTERM or SIGKILL at a random instant of its life (while it
            connects, applies, holds or undoes the fault); after each, the lab must be back at its
            baseline: by the process's own undo after SIGTERM, by `dcilab lab restore` after
            SIGKILL (whose time is measured). Figures: back at baseline, restore time.
  sessions  how many sessions each emulator holds open at once (NETCONF on an OTN terminal, SSH
            CLI on a gateway), what one more gets, the device process's memory before and with
            them, and whether a fresh session still works after they are closed.

Needs root; brings the lab up if it is not (and down again). Run it alone on the machine.

    .venv/bin/python bench/bench_robustness.py [--kills 50] [--seed 1] [--skip-sessions] [--skip-kills]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from testbed.faults import Testbed, check_baseline  # noqa: E402
from testbed.faults.journal import Journal, journal_dir  # noqa: E402
from testbed.inventory import Inventory, load_inventory  # noqa: E402

FAULTS = ["BandwidthDrop('dci-otn', 400)", "BitErrors('working', 1e-6)", "ProtectionSwitch('dci-otn', 'force')",
          "FiberCut('working')", "ConvergenceRatio('dci-otn', 16)"]

CHILD = textwrap.dedent("""
    import signal, sys, time
    sys.path.insert(0, {root!r})
    def _interrupt(*_):                    # as dcilab's CLI: SIGTERM is handled like Ctrl-C
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, _interrupt)
    from testbed.faults import BandwidthDrop, BitErrors, ConvergenceRatio, FiberCut, ProtectionSwitch, Testbed
    from testbed.inventory import load_inventory
    inv = load_inventory({inv!r})
    fault = {fault}
    try:
        with Testbed(inv) as tb:
            print("connected", flush=True)
            with fault.applied(tb):
                print("applied", flush=True)
                time.sleep({hold})
            print("undone", flush=True)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(130)
""")


def _child(inv: Inventory, fault: str, hold: float) -> subprocess.Popen[str]:
    code = CHILD.format(root=str(ROOT), inv=str(inv.source), fault=fault, hold=hold)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _lifetime(inv: Inventory, fault: str, hold: float) -> float:
    """Seconds from 'connected' to exit of an uninterrupted run (where the kills are aimed)."""
    p = _child(inv, fault, hold)
    assert p.stdout is not None
    line = p.stdout.readline().strip()
    t0 = time.monotonic()
    out, err = p.communicate(timeout=300)
    if line != "connected" or p.returncode != 0:
        raise SystemExit(f"bench_robustness: {fault} did not run cleanly: {line} {out} {err[-2000:]}")
    return time.monotonic() - t0


def _restore(inv: Inventory) -> tuple[int, float, str]:
    t0 = time.monotonic()
    r = subprocess.run([str(ROOT / ".venv" / "bin" / "dcilab"), "lab", "restore", "--inventory", str(inv.source)],
                       capture_output=True, text=True, timeout=600)
    return r.returncode, time.monotonic() - t0, r.stdout + r.stderr


def kills(inv: Inventory, n: int, rng: random.Random, hold: float) -> bool:
    life = {f: _lifetime(inv, f, hold) for f in FAULTS}
    print(f"kills: {n} fault applications, SIGTERM or SIGKILL at a uniform instant of connect..exit "
          f"(uninterrupted: {', '.join(f'{f.split(chr(40))[0]} {s:.1f} s' for f, s in life.items())})")
    rows = []
    for i in range(n):
        fault, sig = rng.choice(FAULTS), rng.choice([signal.SIGTERM, signal.SIGKILL])
        at = rng.uniform(0, life[fault])
        p = _child(inv, fault, hold)
        assert p.stdout is not None
        seen = [p.stdout.readline().strip()]
        time.sleep(at)
        os.kill(p.pid, sig)
        out, err = p.communicate(timeout=300)
        seen += out.split()
        phase = {"connected": "applying", "applied": "holding or undoing", "undone": "exiting"}.get(
            [s for s in seen if s in ("connected", "applied", "undone")][-1], "?")
        pending = len(Journal(journal_dir(inv)).scan()[0]) + len(Journal(journal_dir(inv)).scan()[1])
        restore_s = None
        if sig == signal.SIGKILL or pending:
            rc, restore_s, text = _restore(inv)
            if rc != 0:
                print(f"  #{i}: lab restore failed (rc {rc}): {text[-1500:]}")
        with Testbed(inv) as tb:
            off = check_baseline(tb)
        rows.append({"fault": fault, "signal": sig.name, "at_s": at, "phase": phase, "pending": pending,
                     "restore_s": restore_s, "off": off})
        print(f"  #{i:02d} {sig.name:<7} at {at:5.2f} s ({phase:<18}) {fault:<38} journal {pending}  "
              f"{'restore %.1f s  ' % restore_s if restore_s is not None else ''}"
              f"{'at baseline' if not off else 'OFF BASELINE: ' + '; '.join(off)}")
    ok = sum(1 for r in rows if not r["off"])
    term = [r for r in rows if r["signal"] == "SIGTERM"]
    killed = [r for r in rows if r["signal"] == "SIGKILL"]
    rest = [r["restore_s"] for r in killed if r["restore_s"] is not None]
    print(f"kills: {ok} of {n} back at baseline; SIGTERM {sum(1 for r in term if not r['off'])} of {len(term)} "
          f"(journal left for lab restore: {sum(1 for r in term if r['pending'])}); SIGKILL "
          f"{sum(1 for r in killed if not r['off'])} of {len(killed)} after lab restore "
          f"(median {statistics.median(rest):.1f} s, max {max(rest):.1f} s)" if rest else "")
    return ok == n


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _pids(inv: Inventory) -> dict[str, int]:
    assert inv.emulation is not None
    state = json.loads((Path(inv.emulation.state_dir) / "lab.json").read_text())
    return {k.split(":", 1)[1]: v for k, v in state["pids"].items() if k.startswith("device:")}


def sessions(inv: Inventory, limit: int) -> bool:
    from testbed.connect import connect

    pids = _pids(inv)
    good = True
    for name in ("dc-a-otn", "dc-a-gw"):
        before = _rss_kib(pids[name])
        held, refusal = [], ""
        t0 = time.monotonic()
        while len(held) < limit:
            try:
                held.append(connect(inv, name))       # each driver holds its own session
            except Exception as exc:       # noqa: BLE001 - the refusal is the figure
                refusal = f"{type(exc).__name__}: {str(exc)[:160]}"
                break
        with_them = _rss_kib(pids[name])
        for d in held:
            d.close()
        time.sleep(1)
        try:
            connect(inv, name).close()
            after = "a fresh session works"
        except Exception as exc:           # noqa: BLE001
            after, good = f"a fresh session FAILS: {exc}", False
        print(f"sessions: {name}: {len(held)} held at once in {time.monotonic() - t0:.1f} s; the next: "
              f"{refusal or 'not tried (limit of this bench)'}; RSS {before / 1024:.1f} MiB -> "
              f"{with_them / 1024:.1f} MiB with them; after closing: {after}")
    return good


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--inventory", type=Path, default=ROOT / "inventory" / "emulated.yaml")
    ap.add_argument("--kills", type=int, default=50)
    ap.add_argument("--hold", type=float, default=1.0, help="seconds a fault is held before its undo")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--session-limit", type=int, default=200, help="stop opening sessions after this many")
    ap.add_argument("--skip-kills", action="store_true")
    ap.add_argument("--skip-sessions", action="store_true")
    a = ap.parse_args()
    for noisy in ("paramiko", "ncclient", "netmiko"):      # the refused sessions' stack traces are the point
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    inv = load_inventory(a.inventory)
    from emulator.lab import build
    from testbed.emulated_lab import lab_plan
    plan = lab_plan(inv)
    was_up = build.status(plan).ok
    if not was_up:
        build.up(plan, log=lambda *_: None)
    ok = True
    try:
        if not a.skip_sessions:
            ok &= sessions(inv, a.session_limit)
        if not a.skip_kills:
            ok &= kills(inv, a.kills, random.Random(a.seed), a.hold)
    finally:
        if not was_up:
            build.down(plan, quiet=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
