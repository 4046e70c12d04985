"""The fault catalogue without a lab (no root): the allow-list refuses before any connection,
capabilities are checked before anything is sent, the journal is written (fsynced) before the
fault is applied, every way out of the block undoes it, and ``restore`` replays the journal a
SIGKILLed process left behind.  Devices are fakes whose state lives in one JSON file, so a
second process (the killed one) and this one see the same gear."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from drivers.errors import EditRejected, Unsupported
from drivers.otn.base import Protection
from drivers.roadm import Degree, Restoration
from testbed.cli import main
from testbed.faults import (BandwidthDrop, BitErrors, ConvergenceRatio, FaultRefused, FiberCut, Interrupted, Journal, ProtectionSwitch,
                            Testbed, UndoFailed, check_baseline, interrupts_as_exceptions, restore)
from testbed.faults.journal import Step
from testbed.inventory import InventoryError, load_inventory

ROOT = Path(__file__).resolve().parents[1]
EMULATED = ROOT / "inventory" / "emulated.yaml"
REAL = ROOT / "inventory" / "lab.example.yaml"
PATHS = ("working", "protection", "restoration")
BASE = {"rate": {"dc-a-otn": 800, "dc-b-otn": 800}, "shaping": {"dc-a-gw": None, "dc-b-gw": None},
        "active": "working", "request": "none",
        "paths": {p: {"up": True, "ber": 0.0} for p in PATHS}, "calls": []}


class FakeGear:
    """One fake device (OTN terminal or ROADM) over a shared JSON state file."""

    SWITCH_KINDS = ("force", "manual", "lockout", "release")

    def __init__(self, state: Path, name: str, journal: Path | None = None, rates=(200, 400, 600, 800)) -> None:  # type: ignore[no-untyped-def]
        self.state, self.name, self.journal, self.rates = state, name, journal, tuple(rates)

    def _load(self) -> dict[str, Any]:
        return json.loads(self.state.read_text())

    def _edit(self, op: str, fn) -> Any:  # type: ignore[no-untyped-def]
        s = self._load()
        journaled = sorted(p.name for p in self.journal.glob("*.json")) if self.journal else None
        s["calls"].append({"device": self.name, "op": op, "journal": journaled})
        fn(s)
        self.state.write_text(json.dumps(s))
        return "ok"

    def close(self) -> None:
        pass

    # OTN terminal
    def supported_rates_gbps(self) -> tuple[int, ...]:
        return self.rates

    def line_rate_gbps(self) -> int:
        return self._load()["rate"][self.name]

    def set_line_rate(self, gbps: int) -> str:
        if gbps not in self.rates:
            raise Unsupported("line rate", gbps, self.rates, self.name)
        return self._edit(f"set_line_rate {gbps}", lambda s: s["rate"].__setitem__(self.name, gbps))

    def protection(self) -> Protection:
        s = self._load()
        return Protection(s["active"], {"force": "forced"}.get(s["request"], s["request"]))

    def request_switch(self, kind: str, to: str = "protection") -> str:
        def fn(s: dict[str, Any]) -> None:
            s["request"] = "none" if kind == "release" else kind
            if kind in ("force", "manual"):
                s["active"] = to
        return self._edit(f"request_switch {kind} {to}", fn)

    # gateway
    def shaping_kbps(self) -> int | None:
        return self._load()["shaping"][self.name]

    def set_wan_shaping(self, rate_kbps: int) -> str:
        return self._edit(f"set_wan_shaping {rate_kbps}", lambda s: s["shaping"].__setitem__(self.name, rate_kbps))

    def clear_wan_shaping(self) -> str:
        return self._edit("clear_wan_shaping", lambda s: s["shaping"].__setitem__(self.name, None))

    # ROADM
    def degree_on(self, path: str) -> Degree:
        return Degree(PATHS.index(path) + 1, path, None, None, not self._load()["paths"][path]["up"])

    def restoration(self) -> Restoration:
        s = self._load()
        return Restoration("idle", s["active"], (), "sncp", s["request"],
                           {k: v["up"] for k, v in s["paths"].items()}, {"ason": "true"})

    def path_states(self) -> dict[str, dict[str, Any]]:
        return self._load()["paths"]

    def cut_fiber(self, degree: int) -> str:
        def fn(s: dict[str, Any]) -> None:
            p = PATHS[degree - 1]
            s["paths"][p]["up"] = False
            if s["active"] == p:
                s["active"] = "protection" if s["request"] != "lockout" else "restoration"
        return self._edit(f"cut {degree}", fn)

    def repair_fiber(self, degree: int) -> str:
        return self._edit(f"repair {degree}", lambda s: s["paths"][PATHS[degree - 1]].__setitem__("up", True))

    def inject_ber(self, path: str, ber: float) -> str:
        return self._edit(f"ber {path} {ber}", lambda s: s["paths"][path].__setitem__("ber", ber))

    def clear_ber(self, path: str) -> str:
        return self._edit(f"clear_ber {path}", lambda s: s["paths"][path].__setitem__("ber", 0.0))


class Lab:
    def __init__(self, tmp: Path) -> None:
        self.state = tmp / "gear.json"
        self.state.write_text(json.dumps(BASE))
        self.jdir = tmp / "journal"
        self.connected: list[str] = []

    def connect(self, inv, name: str) -> FakeGear:  # type: ignore[no-untyped-def]
        self.connected.append(name)
        return FakeGear(self.state, name, self.jdir)

    def testbed(self, inv=None) -> Testbed:  # type: ignore[no-untyped-def]
        return Testbed(inv or load_inventory(EMULATED), connect=self.connect, journal=self.jdir)

    @property
    def s(self) -> dict[str, Any]:
        return json.loads(self.state.read_text())


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    return Lab(tmp_path)


def never_connect(inv, name: str):  # type: ignore[no-untyped-def]
    raise AssertionError(f"connected to {name}: the refusal must come before any connection")


@pytest.mark.parametrize("fault", [BandwidthDrop("dci-otn", 400), BitErrors("working", 1e-6),
                                   ProtectionSwitch("dci-otn", "force"), FiberCut("working"),
                                   ConvergenceRatio("dci-otn", 16)])
def test_real_gear_template_refuses_every_fault_before_connecting(fault, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    inv = load_inventory(REAL)
    tb = Testbed(inv, connect=never_connect, journal=tmp_path / "j")
    with pytest.raises(FaultRefused, match="not allowed for fault injection") as e:
        with fault.applied(tb):
            pytest.fail("applied")
    assert "fault_injection: true" in str(e.value)
    assert not (tmp_path / "j").exists()            # nothing journaled either


def test_allow_list_is_per_device_and_per_path(tmp_path: Path) -> None:
    text = EMULATED.read_text().replace(
        "{name: restoration, kind: restoration, length_km: 611, roadms: [dc-a-roadm, ila-roadm, dc-b-roadm], "
        "fault_injection: true}", "{name: restoration, kind: restoration, length_km: 611, "
        "roadms: [dc-a-roadm, ila-roadm, dc-b-roadm]}")
    f = tmp_path / "inv.yaml"
    f.write_text(text.replace("../.venv", str(ROOT / ".venv")))
    inv = load_inventory(f)
    tb = Testbed(inv, connect=never_connect, journal=tmp_path / "j")
    with pytest.raises(FaultRefused, match="fiber path restoration not allowed"):
        with FiberCut("restoration").applied(tb):
            pass
    with pytest.raises(FaultRefused, match="no fiber path 'nowhere'"):
        BitErrors("nowhere", 1e-6).plan(tb)
    assert BitErrors("working", 1e-6).plan(tb)[0][0].device == "dc-a-roadm"   # the allowed path still plans


def test_inventory_check_wants_the_first_roadm_allowed_with_its_path(tmp_path: Path) -> None:
    flag = "    fault_injection: true       # testbed/faults may act on it (the emulated lab is ours)\n"
    roadm = "name: dc-a-roadm\n    kind: roadm\n    driver: openroadm\n"
    text = EMULATED.read_text().replace(roadm + flag, roadm)
    assert text != EMULATED.read_text()
    f = tmp_path / "inv.yaml"
    f.write_text(text)
    with pytest.raises(InventoryError, match="first ROADM 'dc-a-roadm' does not"):
        load_inventory(f)
    assert not load_inventory(REAL).device("dc-a-otn").fault_injection
    assert all(p.fault_injection for p in load_inventory(EMULATED).fiber_paths)


def test_300g_is_refused_with_the_supported_rates_and_nothing_sent(lab: Lab) -> None:
    with pytest.raises(FaultRefused) as e:
        with BandwidthDrop("dci-otn", 300).applied(lab.testbed()):
            pytest.fail("applied")
    assert "200G, 400G, 600G, 800G" in str(e.value) and "400G" in e.value.supported
    assert lab.s["calls"] == [] and not list(lab.jdir.glob("*.json"))
    with pytest.raises(FaultRefused, match="below the service's 800G"):
        BandwidthDrop("dci-otn", 800).plan(lab.testbed())


def test_convergence_ratio_shapes_both_gateways_and_puts_back_what_was_there(lab: Lab) -> None:
    """16:1 over the emulated 3200G fabric = 200G of WAN (the real CIR: the emulated gateway scales
    its own shaper); the physical 4:1 needs no step; below it is refused; a shaper that was there before comes back."""
    tb = lab.testbed()
    assert ConvergenceRatio("dci-otn", 4).plan(tb) == ([], [])
    with pytest.raises(FaultRefused, match="physical convergence is 4:1"):
        ConvergenceRatio("dci-otn", 2).plan(tb)
    apply, undo = ConvergenceRatio("dci-otn", 8).plan(tb)
    assert [(s.device, s.op, s.args) for s in apply] == [("dc-a-gw", "set_wan_shaping", {"rate_kbps": 400_000_000}),
                                                          ("dc-b-gw", "set_wan_shaping", {"rate_kbps": 400_000_000})]
    assert [s.op for s in undo] == ["clear_wan_shaping"] * 2
    assert check_baseline(tb) == []
    lab.state.write_text(json.dumps({**lab.s, "shaping": {"dc-a-gw": 123, "dc-b-gw": None}}))
    assert check_baseline(tb) == ["dc-a-gw: WAN shaped to 123 kbit/s, baseline unshaped (physical convergence)"]
    with ConvergenceRatio("dci-otn", 16).applied(tb) as rec:
        assert lab.s["shaping"] == {"dc-a-gw": 200_000_000, "dc-b-gw": 200_000_000}
        assert rec.details["before_kbps"] == {"dc-a-gw": 123, "dc-b-gw": None}
    assert lab.s["shaping"] == {"dc-a-gw": 123, "dc-b-gw": None}


def test_journal_is_written_before_apply_and_cleared_after_the_verified_undo(lab: Lab) -> None:
    tb = lab.testbed()
    with BandwidthDrop("dci-otn", 400).applied(tb) as rec:
        assert lab.s["rate"] == {"dc-a-otn": 400, "dc-b-otn": 400}
        (entry,) = lab.jdir.glob("*.json")
        data = json.loads(entry.read_text())
        assert data["state"] == "applied" and data["kind"] == "BandwidthDrop"
        assert [(u["device"], u["op"], u["args"]) for u in data["undo"]] == [
            ("dc-a-otn", "set_line_rate", {"gbps": 800}), ("dc-b-otn", "set_line_rate", {"gbps": 800})]
    applies = [c for c in lab.s["calls"] if c["op"] == "set_line_rate 400"]
    assert applies and all(c["journal"] == [entry.name] for c in applies)   # on disk when the edit was sent
    assert lab.s["rate"] == {"dc-a-otn": 800, "dc-b-otn": 800} and not list(lab.jdir.glob("*.json"))
    assert rec.applied_at.mono_ns <= rec.verified_at.mono_ns <= rec.undone_at.mono_ns  # type: ignore[union-attr]
    assert rec.applied_at.wall_ns <= rec.undone_at.wall_ns and rec.held_s is not None  # type: ignore[union-attr]
    assert rec.details["rate_gbps"] == {"dc-a-otn": 400, "dc-b-otn": 400}


@pytest.mark.parametrize("fault,check", [
    (BitErrors("working", 1e-6), lambda s: s["paths"]["working"]["ber"] == 1e-6),
    (ProtectionSwitch("dci-otn", "force"), lambda s: (s["active"], s["request"]) == ("protection", "force")),
    (ProtectionSwitch("dci-otn", "lockout"), lambda s: (s["active"], s["request"]) == ("working", "lockout")),
    (FiberCut("working"), lambda s: not s["paths"]["working"]["up"] and s["active"] == "protection"),
    (ConvergenceRatio("dci-otn", 16), lambda s: s["shaping"] == {"dc-a-gw": 200_000_000, "dc-b-gw": 200_000_000}),
])
def test_an_exception_in_the_block_undoes_the_fault(lab: Lab, fault, check) -> None:  # type: ignore[no-untyped-def]
    tb = lab.testbed()
    with pytest.raises(RuntimeError, match="test failed"):
        with fault.applied(tb) as rec:
            assert check(lab.s)
            raise RuntimeError("test failed")
    assert check_baseline(tb) == [] and not list(lab.jdir.glob("*.json")) and rec.undone_at is not None


def test_sigterm_in_the_block_undoes_and_the_old_handler_comes_back(lab: Lab) -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as e:
        with BandwidthDrop("dci-otn", 400).applied(lab.testbed()):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):
                pass
            pytest.fail("no exception")
    assert e.value.signum == signal.SIGTERM and isinstance(e.value, KeyboardInterrupt)
    assert lab.s["rate"] == {"dc-a-otn": 800, "dc-b-otn": 800} and not list(lab.jdir.glob("*.json"))
    assert signal.getsignal(signal.SIGTERM) is before
    with interrupts_as_exceptions(), pytest.raises(Interrupted):
        os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.parametrize("when", ["journaled", "journal-written"])
def test_sigterm_just_as_the_journal_entry_is_written_still_undoes_and_clears_it(lab: Lab, when: str,
                                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """bench_robustness found it: a SIGTERM 0.22 s into a BandwidthDrop left its journal entry for
    `lab restore`.  The signal lands right after the entry is on disk (in the journal's own code,
    or in the line after it), before the block that undoes it was entered."""
    tb = lab.testbed()
    real_add, real_log = tb.journal.add, tb.log

    def add(*a, **kw):  # type: ignore[no-untyped-def]
        entry = real_add(*a, **kw)
        if when == "journal-written":
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):
                pass
        return entry

    def log(msg: str) -> None:
        real_log(msg)
        if when == "journaled" and ": journaled " in msg:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):
                pass

    monkeypatch.setattr(tb.journal, "add", add)
    monkeypatch.setattr(tb, "log", log)
    with pytest.raises(Interrupted):
        with BandwidthDrop("dci-otn", 400).applied(tb):
            pytest.fail("the block ran")
    assert lab.s["rate"] == {"dc-a-otn": 800, "dc-b-otn": 800} and not list(lab.jdir.glob("*.json"))


def test_sigterm_during_the_undo_waits_for_every_step_with_a_trials_threads_alive(lab: Lab, tmp_path: Path) -> None:
    """A trial has threads besides the main one (the metrics writer's pump and spool, paramiko's
    transports, job log readers); the kernel may hand a process-directed SIGTERM to any of them.
    The undo must still run every step, and the signal raise only once it is done."""
    from testbed.metrics.writer import MetricsWriter
    writer = MetricsWriter("http://127.0.0.1:9", spool_dir=tmp_path / "spool")   # nothing listens: it spools
    idle = threading.Event()
    reader = threading.Thread(target=idle.wait, name="job-log-reader", daemon=True)
    reader.start()
    steps: list[str] = []

    class Signalling(FakeGear):
        def set_line_rate(self, gbps: int) -> str:
            if gbps == 800:                        # the undo: SIGTERM arrives while its first step runs
                if not steps:
                    os.kill(os.getpid(), signal.SIGTERM)
                    time.sleep(0.2)                # a device call in progress; other threads run meanwhile
                steps.append(self.name)
            return super().set_line_rate(gbps)
    tb = Testbed(load_inventory(EMULATED), connect=lambda inv, n: Signalling(lab.state, n, lab.jdir), journal=lab.jdir)
    try:
        assert threading.active_count() >= 3
        with pytest.raises(Interrupted) as e:
            with BandwidthDrop("dci-otn", 400).applied(tb):
                pass
        assert e.value.signum == signal.SIGTERM
        assert steps == ["dc-a-otn", "dc-b-otn"]                       # both undo steps ran
        assert lab.s["rate"] == {"dc-a-otn": 800, "dc-b-otn": 800} and not list(lab.jdir.glob("*.json"))
    finally:
        idle.set()
        writer.close()


def test_a_rejected_apply_is_undone_and_a_failed_undo_keeps_the_journal(lab: Lab) -> None:
    class Rejecting(FakeGear):
        def set_line_rate(self, gbps: int) -> str:
            if self.name == "dc-b-otn" and gbps == 400:
                raise EditRejected("no", self.name)
            return super().set_line_rate(gbps)
    tb = Testbed(load_inventory(EMULATED), connect=lambda inv, n: Rejecting(lab.state, n, lab.jdir), journal=lab.jdir)
    with pytest.raises(EditRejected):
        with BandwidthDrop("dci-otn", 400).applied(tb):
            pytest.fail("applied")
    assert lab.s["rate"] == {"dc-a-otn": 800, "dc-b-otn": 800} and not list(lab.jdir.glob("*.json"))

    class Stuck(FakeGear):
        def clear_ber(self, path: str) -> str:
            raise EditRejected("device busy", self.name)
    tb = Testbed(load_inventory(EMULATED), connect=lambda inv, n: Stuck(lab.state, n, lab.jdir), journal=lab.jdir)
    with pytest.raises(UndoFailed, match="dcilab lab restore"):
        with BitErrors("working", 1e-6).applied(tb):
            pass
    assert len(list(lab.jdir.glob("*.json"))) == 1            # kept for `lab restore`
    rep = restore(load_inventory(EMULATED), connect=lab.connect, journal=Journal(lab.jdir), log=lambda m: None)
    assert rep.ok and lab.s["paths"]["working"]["ber"] == 0 and not list(lab.jdir.glob("*.json"))


KILLED = textwrap.dedent("""
    import os, signal, sys
    sys.path[:0] = [{root!r}, {tests!r}]
    from test_faults import FakeGear
    from testbed.faults import BandwidthDrop, BitErrors, ProtectionSwitch, Testbed
    from testbed.inventory import load_inventory
    from pathlib import Path
    tb = Testbed(load_inventory({inv!r}), connect=lambda i, n: FakeGear(Path({state!r}), n), journal={jdir!r})
    with BandwidthDrop("dci-otn", 400).applied(tb), BitErrors("working", 1e-6).applied(tb), \\
            ProtectionSwitch("dci-otn", "lockout").applied(tb):
        print("holding", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
""")


def test_restore_replays_the_journal_of_a_sigkilled_process(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    code = KILLED.format(root=str(ROOT), tests=str(ROOT / "tests"), inv=str(EMULATED), state=str(lab.state),
                         jdir=str(lab.jdir))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == -signal.SIGKILL and "holding" in p.stdout, p.stderr
    s = lab.s
    assert s["rate"]["dc-a-otn"] == 400 and s["paths"]["working"]["ber"] == 1e-6 and s["request"] == "lockout"
    assert len(list(lab.jdir.glob("*.json"))) == 3
    inv = load_inventory(EMULATED)
    assert check_baseline(lab.testbed(inv))                     # not at baseline: says why
    dry = restore(inv, connect=lab.connect, journal=Journal(lab.jdir), dry_run=True)
    assert dry.actions == [] and lab.s["rate"]["dc-a-otn"] == 400
    rep = restore(inv, connect=lab.connect, journal=Journal(lab.jdir))
    assert rep.ok, (rep.problems, rep.baseline)
    s = lab.s
    assert s["rate"] == {"dc-a-otn": 800, "dc-b-otn": 800} and s["request"] == "none"
    assert s["paths"]["working"]["ber"] == 0 and not list(lab.jdir.glob("*.json"))
    again = restore(inv, connect=lab.connect, journal=Journal(lab.jdir))   # idempotent: nothing left to do
    assert again.ok and again.actions == []
    out = capsys.readouterr().out
    assert "BandwidthDrop" in out and "baseline reached" in out


def test_restore_checks_the_journal_again_and_one_corrupt_file_does_not_stop_it(lab: Lab) -> None:
    """The journal is a file: restore sends nothing the inventory's allow-list would refuse, and a
    corrupt entry is reported while the others are still replayed."""
    inv = load_inventory(EMULATED)
    j = Journal(lab.jdir)
    s = lab.s
    s["rate"]["dc-a-otn"] = 400                                       # a genuine fault left behind
    lab.state.write_text(json.dumps(s))
    j.add("BandwidthDrop", "dci-otn->400G", [], [Step("dc-a-otn", "set_line_rate", {"gbps": 800})], str(inv.source))
    j.add("Forged", "x", [], [Step("dc-a-gpu1", "set_line_rate", {"gbps": 800})], str(inv.source))   # not allowed
    j.add("Forged", "y", [], [Step("dc-b-otn", "run_shell", {"cmd": "reboot"})], str(inv.source))  # no such op
    j.add("Other", "z", [], [Step("dc-b-otn", "set_line_rate", {"gbps": 800})], "/elsewhere/lab.yaml")
    (lab.jdir / "0-corrupt.json").write_text('{"id": "truncated by a full disk", "undo": [')
    rep = restore(inv, connect=lab.connect, journal=j, log=lambda m: None)
    assert lab.s["rate"] == {"dc-a-otn": 800, "dc-b-otn": 800}       # the genuine entry was replayed
    assert lab.connected.count("dc-a-gpu1") == 0                     # the forged ones sent nothing
    text = "\n".join(rep.problems)
    assert "0-corrupt.json: unreadable" in text
    assert "dc-a-gpu1: not allowed for fault injection" in text
    assert "unknown operation 'run_shell'" in text
    assert "journaled with inventory /elsewhere/lab.yaml" in text
    left = sorted(p.name for p in lab.jdir.glob("*.json"))
    assert len(left) == 4 and "0-corrupt.json" in left               # kept for a human; the replayed one cleared


def test_restore_stops_the_journaled_job_of_a_dead_controller_on_every_node(lab: Lab) -> None:
    """A TrainingJob journals `stop_job` for each node before it starts (testbed/jobs/launcher.py);
    restore TERMs and KILLs the run's processes by its id, and a node still showing them keeps
    the entry.  stop_job is for GPU nodes only."""
    class Node:
        def __init__(self, name: str, left: str = "") -> None:
            self.name, self.left, self.cmds = name, left, []

        def run(self, cmd: str, timeout: float = 60.0) -> Any:
            self.cmds.append(cmd)
            return type("R", (), {"rc": 0, "stdout": self.left if cmd.startswith("pgrep -af") else "", "stderr": ""})()

        def close(self) -> None:
            pass
    nodes = {"dc-a-gpu1": Node("dc-a-gpu1"), "dc-b-gpu1": Node("dc-b-gpu1", "4242 python -m workload.train --run-id r-7")}
    inv = load_inventory(EMULATED)
    j = Journal(lab.jdir)
    j.add("TrainingJob", "r-7", [], [Step(n, "stop_job", {"run_id": "r-7"}) for n in nodes], str(inv.source))
    j.add("TrainingJob", "r-8", [], [Step("dc-a-otn", "stop_job", {"run_id": "r-8"})], str(inv.source))
    j.add("TrainingJob", "r-9", [], [Step("dc-a-gpu2", "stop_job", {"run_id": ".*"})], str(inv.source))
    rep = restore(inv, connect=lambda i, n: nodes[n] if n in nodes else lab.connect(i, n), journal=j,
                  log=lambda m: None)
    for n in nodes.values():
        assert any(c.startswith("pkill -TERM -f") and "r-7" in c for c in n.cmds)
        assert any("pkill -KILL -f" in c for c in n.cmds)
    text = "\n".join(rep.problems)
    assert "processes of run r-7 still there" in text and "4242" in text         # dc-b-gpu1 would not die
    assert "dc-a-otn: stop_job is for GPU nodes" in text
    assert "dc-a-gpu2: run_id '.*' is not a run id" in text                     # a pattern, never sent
    assert len(list(lab.jdir.glob("*.json"))) == 3                              # all three kept


def test_restore_fails_with_the_reason_when_the_baseline_is_not_reached(lab: Lab) -> None:
    s = lab.s
    s["active"], s["request"] = "protection", "force"           # left behind without a journal entry
    lab.state.write_text(json.dumps(s))
    rep = restore(load_inventory(EMULATED), connect=lab.connect, journal=Journal(lab.jdir), log=lambda m: None)
    assert not rep.ok and any("traffic on protection" in b for b in rep.baseline)
    assert any("request forced" in b for b in rep.baseline)


def test_cli_fault_plan_is_a_dry_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fault", "plan", "--inventory", str(EMULATED), "bandwidth-drop", "dci-otn", "400G"]) == 0
    out = capsys.readouterr().out
    assert "dc-a-otn: set_line_rate(gbps=400)" in out and "undo" in out and "nothing is sent" in out
    assert main(["fault", "plan", "-i", str(REAL), "fiber-cut", "working"]) == 1
    assert "not allowed for fault injection" in capsys.readouterr().err
    assert main(["fault", "plan", "-i", str(EMULATED), "bit-errors", "working", "2"]) == 1
    assert main(["fault", "plan", "-i", str(EMULATED), "protection-switch", "dci-otn", "sideways"]) == 1
    assert "force, manual, lockout" in capsys.readouterr().err
