"""``dcilab trial`` on several testbeds at once (issue 18 item 3), without a lab: the refusals
before anything starts, the exit code from the children's, the options each child gets, Ctrl-C
forwarded once to each child, and a real two-testbed dry run end to end (a report folder per
testbed, testbeds.json, the group's index.html and the history under reports/)."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from testbed.trial import testbeds
from testbed.trial.cli import add_parser

ROOT = Path(__file__).resolve().parents[1]
EMULATED = ROOT / "inventory" / "emulated.yaml"
SECOND = ROOT / "inventory" / "emulated-2.yaml"


def copy_of(tmp_path: Path, name: str | None = None, state_dir: str | None = None, file: str = "copy.yaml") -> Path:
    """inventory/emulated.yaml under another name and/or state folder (its relative paths made absolute)."""
    text = EMULATED.read_text().replace("python: ../.venv/bin/python", f"python: {ROOT / '.venv' / 'bin' / 'python'}")
    if name:
        text, n = re.subn(r"(?m)^name: .*$", f"name: {name}", text)
        assert n == 1
    if state_dir:       # the state folder, and the lab's key and known_hosts in it
        assert "state_dir: /run/dcilab/emulated-dci\n" in text
        text = text.replace("/run/dcilab/emulated-dci", state_dir)
    f = tmp_path / file
    f.write_text(text)
    return f


def second_lab(tmp_path: Path) -> Path:
    """The second testbed: inventory/emulated-2.yaml (its own name, prefix, addresses and ports)."""
    return SECOND


def dcilab(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("dcilab")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "testbed.cli"]
    return subprocess.run([*cmd, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def trial_args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_parser(p.add_subparsers())
    return p.parse_args(["trial", *argv])


# ------------------------------------------------------------------------------ refused up front


def test_an_inventory_that_does_not_load_is_refused_before_anything_starts(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: Not A Name\nsites: []\n")
    r = dcilab("trial", "--inventory", EMULATED, "--inventory", bad, "--dry-run", "--report-dir", tmp_path / "g")
    assert r.returncode == 4, r.stdout + r.stderr
    assert f"{bad}: does not load" in r.stderr and f"dcilab inventory check {bad}" in r.stderr
    assert "nothing was started" in r.stderr and not (tmp_path / "g").exists()


def test_the_same_file_twice_is_refused(tmp_path: Path) -> None:
    other_spelling = ROOT / "inventory" / ".." / "inventory" / "emulated.yaml"
    r = dcilab("trial", "--inventory", EMULATED, "--inventory", other_spelling, "--dry-run",
               "--report-dir", tmp_path / "g")
    assert r.returncode == 4, r.stdout + r.stderr
    assert f"{EMULATED} and {other_spelling} are the same file" in r.stderr and not (tmp_path / "g").exists()


def test_two_inventories_of_one_name_are_refused(tmp_path: Path) -> None:
    twin = copy_of(tmp_path, state_dir="/run/dcilab/emulated-dci-twin")     # same name, own lease
    r = dcilab("trial", "--inventory", EMULATED, "--inventory", twin, "--dry-run", "--report-dir", tmp_path / "g")
    assert r.returncode == 4, r.stdout + r.stderr
    assert f"{EMULATED} and {twin} both name the testbed 'emulated-dci'" in r.stderr
    assert "share the lease" not in r.stderr and not (tmp_path / "g").exists()


def test_two_inventories_sharing_a_lease_are_refused(tmp_path: Path) -> None:
    """Another name, the same emulated lab's state folder: the same lease (testbed.lock.lock_path)."""
    from testbed.inventory import load_inventory
    from testbed.lock import lock_path

    alias = copy_of(tmp_path, name="alias")
    r = dcilab("trial", "--inventory", EMULATED, "--inventory", alias, "--dry-run", "--report-dir", tmp_path / "g")
    assert r.returncode == 4, r.stdout + r.stderr
    assert f"{EMULATED} and {alias} share the lease {lock_path(load_inventory(EMULATED))}" in r.stderr
    assert "both name the testbed" not in r.stderr and not (tmp_path / "g").exists()
    invs = [(p, load_inventory(p)) for p in (EMULATED, alias, second_lab(tmp_path))]
    msgs = testbeds._check_distinct(invs)
    assert msgs and all(str(alias) in m for m in msgs)            # the second lab clashes with neither
    assert testbeds._check_distinct([invs[0], invs[2]]) == []


def test_two_emulated_labs_that_would_fight_over_this_machine_are_refused(tmp_path: Path) -> None:
    """Own name, own state folder and lease, but the first lab's prefix, addresses and ports."""
    same_lab = copy_of(tmp_path, name="emulated-dci-b", state_dir="/run/dcilab/emulated-dci-b")
    r = dcilab("trial", "--inventory", EMULATED, "--inventory", same_lab, "--dry-run", "--report-dir", tmp_path / "g")
    assert r.returncode == 4, r.stdout + r.stderr
    assert f"{EMULATED} and {same_lab} are two emulated labs that cannot run on this machine at once" in r.stderr
    for field in ("emulation.prefix", "management networks overlap", "metrics.url", "emulation.slurm_port",
                  "inventory/emulated-2.yaml"):
        assert field in r.stderr, field
    assert not (tmp_path / "g").exists()


# ------------------------------------------------------------------------------------ the parts


def test_the_exit_code_is_the_worst_childs() -> None:
    g = testbeds.group_exit
    assert g([0, 0]) == 0 and g([0, 1]) == 1 and g([1, 3]) == 3 and g([3, 75]) == 75
    assert g([75, 2]) == 2 and g([2, 4]) == 4 and g([0, 143, 4]) == 143 and g([5, 4]) == 5


def test_each_child_gets_the_parents_options_and_its_own_inventory_run_id_and_folder(tmp_path: Path) -> None:
    a = trial_args("--inventory", "a.yaml", "--inventory", "b.yaml", "--profile", "full", "-k", "switchover",
                   "--profiles-file", "p.yaml", "--no-single-site", "--wait-lease", "30", "--no-compare",
                   "--dry-run", "--", "-x", "-q")
    assert a.inventory == [Path("a.yaml"), Path("b.yaml")]
    cmd = testbeds.child_command(a, Path("b.yaml"), "R-lab-b", tmp_path / "G" / "lab-b")
    assert cmd[:4] == [sys.executable, "-m", "testbed.cli", "trial"]
    opts = cmd[4:]
    pairs = {opts[i]: opts[i + 1] for i in range(len(opts) - 1) if opts[i].startswith("-")}
    assert pairs["--inventory"] == str(Path("b.yaml").absolute()) and pairs["--run-id"] == "R-lab-b"
    assert pairs["--report-dir"] == str(tmp_path / "G" / "lab-b") and pairs["--profile"] == "full"
    assert pairs["-k"] == "switchover" and pairs["--profiles-file"] == str(Path("p.yaml").absolute())
    assert pairs["--wait-lease"] == "30.0"
    assert {"--dry-run", "--no-single-site", "--no-compare"} <= set(opts)
    assert opts[-3:] == ["--", "-x", "-q"]
    one = trial_args("--inventory", "a.yaml")           # one inventory: the run as before
    assert one.inventory == [Path("a.yaml")] and trial_args().inventory is None


FAKE_CHILD = '''
import os, signal, sys, time
name, d = sys.argv[1], sys.argv[2]
seen = []
def term(signum, frame):
    seen.append(signum)
    print(f"restoring {name}", flush=True)
    time.sleep(1.0)                      # a clean-up that takes a while: a second signal must not cut it
    open(os.path.join(d, f"signals-{name}"), "w").write(str(len(seen)))
    sys.exit(2)
signal.signal(signal.SIGTERM, term)
print(f"{name} running", flush=True)
open(os.path.join(d, f"ready-{name}"), "w").close()
time.sleep(60)
sys.exit(0)
'''


def test_ctrl_c_sends_each_child_one_sigterm_and_waits_for_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """The children stand in for two trials (each restores its lab on SIGTERM, which takes a
    second); the parent, interrupted twice, forwards one SIGTERM each, waits, and exits 2."""
    script = tmp_path / "child.py"
    script.write_text(FAKE_CHILD)
    monkeypatch.setattr(testbeds, "child_command",
                        lambda a, inv, run_id, report: [sys.executable, str(script), run_id, str(tmp_path)])
    second = second_lab(tmp_path)
    a = trial_args("--inventory", str(EMULATED), "--inventory", str(second), "--run-id", "R",
                   "--report-dir", str(tmp_path / "G"), "--dry-run")

    def interrupt() -> None:
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("ready-*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)          # Ctrl-C
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGINT)          # and again, impatient
    before = signal.getsignal(signal.SIGINT)
    t = threading.Thread(target=interrupt, daemon=True)
    t.start()
    rc = testbeds.run_testbeds(a, [EMULATED, second])
    t.join()
    out = capsys.readouterr().out
    assert rc == 2, out
    assert signal.getsignal(signal.SIGINT) is before               # the parent's own handlers are back
    for f in tmp_path.glob("signals-*"):
        assert f.read_text() == "1", f                              # one SIGTERM each, not two
    assert len(list(tmp_path.glob("signals-*"))) == 2
    assert "interrupted: stopping" in out and "still waiting for the testbeds to restore their labs" in out
    assert "[emulated-dci] restoring R-emulated-dci" in out
    data = json.loads((tmp_path / "G" / "testbeds.json").read_text())
    assert data["interrupted"] is True and data["exit_code"] == 2
    assert [(t["exit_code"], t["status"]) for t in data["testbeds"]] == [(2, "no report"), (2, "no report")]


PARENT = '''
import argparse, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from testbed.trial import testbeds
from testbed.trial.cli import add_parser
script, d, one, two = sys.argv[2:6]
testbeds.child_command = lambda a, inv, run_id, report: [sys.executable, script, run_id, d]
p = argparse.ArgumentParser()
add_parser(p.add_subparsers())
a = p.parse_args(["trial", "--inventory", one, "--inventory", two, "--run-id", "R", "--report-dir", d + "/G",
                  "--dry-run"])
sys.exit(testbeds.run_testbeds(a, [Path(one), Path(two)]))
'''


def test_the_testbeds_of_a_sigkilled_parent_still_write_while_they_restore(tmp_path: Path) -> None:
    """Nothing can catch SIGKILL in the parent; its children (standing in for trials) run on, and
    when they are stopped they can still write their output while they restore their labs: it
    goes to G/<name>.log, not to a pipe whose reader is gone (where the first print would fail)."""
    (tmp_path / "child.py").write_text(FAKE_CHILD)
    (tmp_path / "parent.py").write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(tmp_path / "parent.py"), str(ROOT), str(tmp_path / "child.py"),
                               str(tmp_path), str(EMULATED), str(second_lab(tmp_path))],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("ready-*"))) < 2:
            assert parent.poll() is None and time.monotonic() < deadline, "the stand-in children did not start"
            time.sleep(0.05)
        parent.kill()
        parent.wait(10)
        time.sleep(0.5)
        subprocess.run(["pkill", "-TERM", "-f", str(tmp_path / "child.py")], check=True)   # they ran on
        deadline = time.monotonic() + 30
        while len(list(tmp_path.glob("signals-*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sorted(f.name for f in tmp_path.glob("signals-*")) == ["signals-R-emulated-dci",
                                                                      "signals-R-emulated-dci-2"]
        for name in ("emulated-dci", "emulated-dci-2"):
            assert (tmp_path / "G" / f"{name}.log").read_text().splitlines() == [f"R-{name} running",
                                                                                  f"restoring R-{name}"]
    finally:
        if parent.poll() is None:
            parent.kill()
        subprocess.run(["pkill", "-KILL", "-f", str(tmp_path / "child.py")])


# ------------------------------------------------------------------------------ the real dry run


def test_a_dry_run_on_two_testbeds_writes_a_report_each_and_one_index(tmp_path: Path) -> None:
    """Both testbeds' trials run in parallel as their own `dcilab trial`; the dry run connects to
    nothing (no lease, no lab), so this runs without root and beside a lab in use."""
    from testbed.inventory import load_inventory

    second = second_lab(tmp_path)
    name2 = load_inventory(second).name
    reports = tmp_path / "reports"      # a history folder: the testbeds' runs are indexed in it
    g = reports / "G"
    r = dcilab("trial", "--inventory", EMULATED, "--inventory", second, "--profile", "quick", "--dry-run",
               "--run-id", "R", "--report-dir", g)
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ("emulated-dci", name2):
        d = g / name
        s = json.loads((d / "summary.json").read_text())
        assert s["run_id"] == f"R-{name}" and s["testbed"]["name"] == name and s["options"]["dry_run"] is True
        assert len(s["cases"]) == 13 and {c["verdict"] for c in s["cases"]} == {"planned"}
        assert (d / "report.html").exists() and (d / "junit.xml").exists()
        assert f"[{name}] dcilab trial: report in {d}" in r.stdout        # each child's lines, prefixed
    data = json.loads((g / "testbeds.json").read_text())
    assert data["run_id"] == "R" and data["profile"] == "quick" and data["exit_code"] == 0
    assert data["started"] <= data["ended"]
    assert [(t["name"], t["run_dir"], t["exit_code"], t["status"], t["verdicts"]) for t in data["testbeds"]] == [
        ("emulated-dci", "emulated-dci", 0, "completed", {"planned": 13}),
        (name2, name2, 0, "completed", {"planned": 13})]
    assert data["testbeds"][1]["inventory"] == str(second.absolute())
    page = (g / "index.html").read_text()
    assert "href='emulated-dci/report.html'" in page and f"href='{name2}/report.html'" in page
    for t in data["testbeds"]:     # each child's whole output, linked from the index
        assert f"href='{t['log']}'" in page and "dcilab trial: report in" in (g / t["log"]).read_text()
    assert f"index of the 2 testbeds in {g / 'index.html'}; exit 0" in r.stdout
    index = json.loads((reports / "index.json").read_text())
    assert sorted(x["path"] for x in index["runs"]) == sorted(["G/emulated-dci", f"G/{name2}"])
    assert "href='G/emulated-dci/report.html'" in (reports / "index.html").read_text()
    again = dcilab("trial", "--inventory", EMULATED, "--inventory", second, "--dry-run", "--report-dir", g)
    assert again.returncode == 4 and f"{g} already holds a run on several testbeds" in again.stderr
