"""``dcilab trial`` on several testbeds at once: one child ``dcilab trial`` per inventory, in parallel.

    dcilab trial --inventory A.yaml --inventory B.yaml --profile quick [--report-dir G]

Each testbed's run is a whole session of its own: its lease, its lab brought up and down, its
single-site baseline, its report and its comparison with that testbed's earlier runs.  So each
runs as a separate ``dcilab trial`` process (``python -m testbed.cli trial --inventory X --run-id
<run-id>-<name> --report-dir G/<name>``), not as pytest-xdist items of one session, which would
share one session's fixtures (one lease, one lab, one report) across testbeds.  Each writes its
output to ``G/<name>.log``, which is echoed line by line, prefixed ``[<name>] ``: a file, not a
pipe, so that a child whose parent was killed outright runs on to its end and restores its lab
with every line written (through a pipe with no reader its first print would fail).

G (``--report-dir``, default ``reports/<run-id>``) is a group folder: ``testbeds.json`` (the run id,
profile, times and per testbed: inventory, run folder, exit code, verdict counts, status) marks it,
``index.html`` links each testbed's report, and each testbed's run folder is ``G/<name>``.  The
history under reports/ lists those runs as ``G/<name>`` and compares each only with runs of its own
testbed (testbed/report/history.py).

Before anything starts, the inventories are checked: each must load, and no two may be the same
file, have the same name or share a lease (exit 4, naming the files).  Ctrl-C or SIGTERM sends
SIGTERM to every child still running (each restores its own lab) and waits for them: exit 2.
Otherwise the exit code is the worst child's: any code other than these first, then 4, 2, 75, 3,
1, 0.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from testbed.inventory import Inventory, InventoryError, load_inventory

EXIT_BAD_INPUT = 4
EXIT_INTERRUPTED = 2
PRECEDENCE = (4, 2, 75, 3, 1)
"""Children's exit codes, the worst first (after any code not listed here, e.g. 5 or 130)."""


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def _check_distinct(invs: list[tuple[Path, Inventory]]) -> list[str]:
    """Why these testbeds cannot run side by side (one message each, naming the files); [] when
    they can.  Checks: two arguments are the same file, two inventories have the same name (their
    run folders G/<name> and run ids would collide), two share a lease (testbed.lock.lock_path:
    they are the same testbed, or would lock each other out), two emulated labs would fight over
    this machine (emulator.lab.plan.clashes: prefix, state folder, management network, ports)."""
    from emulator.lab.plan import clashes
    from testbed.emulated_lab import lab_plan
    from testbed.lock import lock_path

    out: list[str] = []
    for i, (pa, a) in enumerate(invs):
        for pb, b in invs[i + 1:]:
            if _same_file(pa, pb):
                out.append(f"{pa} and {pb} are the same file: a testbed runs once per trial\n"
                           f"    fix: give each testbed's inventory once")
                continue
            if a.name == b.name:
                out.append(f"{pa} and {pb} both name the testbed {a.name!r}: its run folder and run id "
                           f"would be the same\n    fix: give each inventory its own name: (or, if they are "
                           f"the same testbed, run it once)")
            la, lb = lock_path(a), lock_path(b)
            if la == lb:
                out.append(f"{pa} and {pb} share the lease {la}: they are one testbed, or one would lock the "
                           f"other out\n    fix: give each emulated lab its own emulation.state_dir (and "
                           f"prefix), or each real testbed its own name: / lease.dir")
            if a.emulation is not None and b.emulation is not None:
                fight = clashes(lab_plan(a), lab_plan(b))
                if fight:
                    out.append(f"{pa} and {pb} are two emulated labs that cannot run on this machine at once: "
                               + "; ".join(fight) + "\n    fix: give the second its own values for those fields "
                               "(inventory/emulated-2.yaml runs beside inventory/emulated.yaml)")
    return out


def load_all(paths: list[Path]) -> tuple[list[tuple[Path, Inventory]], list[str]]:
    """Each inventory loaded as the CLI loads it; the messages of those that do not load."""
    invs, problems = [], []
    for p in paths:
        try:
            invs.append((p, load_inventory(p)))
        except InventoryError as exc:
            problems.append(f"{p}: does not load:\n{exc}\n    fix: `dcilab inventory check {p}` lists every problem")
    return invs, problems


def group_exit(codes: list[int]) -> int:
    """The parent's exit code from its children's: any unlisted non-zero code first, then 4, 2,
    75, 3, 1, else 0."""
    other = [c for c in codes if c != 0 and c not in PRECEDENCE]
    if other:
        return other[0]
    return next((c for c in PRECEDENCE if c in codes), 0)


def child_command(a: argparse.Namespace, inv_path: Path, run_id: str, report_dir: Path) -> list[str]:
    """One testbed's ``dcilab trial``: the parent's options, its own inventory, run id and folder."""
    cmd = [sys.executable, "-m", "testbed.cli", "trial", "--inventory", str(inv_path.absolute()),
           "--profile", a.profile, "--run-id", run_id, "--report-dir", str(report_dir.absolute())]
    if a.profiles_file:
        cmd += ["--profiles-file", str(Path(a.profiles_file).absolute())]
    if a.keyword:
        cmd += ["-k", a.keyword]
    for flag in ("dry_run", "no_single_site", "no_compare"):
        if getattr(a, flag):
            cmd.append("--" + flag.replace("_", "-"))
    if a.wait_lease:
        cmd += ["--wait-lease", str(a.wait_lease)]
    extra = list(a.pytest_args or [])
    if extra[:1] == ["--"]:
        extra = extra[1:]
    return cmd + (["--", *extra] if extra else [])


class _Echo:
    """Each child's output, a line at a time, prefixed with its testbed (one reader thread each)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def say(self, line: str) -> None:
        with self.lock:
            sys.stdout.write(line if line.endswith("\n") else line + "\n")
            sys.stdout.flush()

    def follow(self, proc: subprocess.Popen[bytes], log: Path, prefix: str) -> threading.Thread:
        """Echo what the child writes to its log file until it has ended and the file is read."""
        def read() -> None:
            with open(log, encoding="utf-8", errors="replace") as f:
                part = ""
                while True:
                    chunk = f.readline()
                    if chunk:
                        part += chunk
                        if part.endswith("\n"):
                            self.say(prefix + part)
                            part = ""
                        continue
                    if proc.poll() is not None:
                        rest = part + f.read()
                        for line in rest.splitlines():
                            self.say(prefix + line)
                        return
                    time.sleep(0.1)
        t = threading.Thread(target=read, name=f"echo {prefix.strip()}", daemon=True)
        t.start()
        return t


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _testbed_record(g: Path, path: Path, inv: Inventory, rc: int | None, *, ended: bool = False) -> dict[str, Any]:
    """One testbed in testbeds.json; ``rc`` None: running (or, once the group ended, never started)."""
    from testbed.report.history import read_entry

    d = g / inv.name
    rec: dict[str, Any] = {"name": inv.name, "inventory": str(path.absolute()), "run_dir": inv.name,
                           "log": f"{inv.name}.log", "exit_code": rc, "verdicts": {}, "status": "not started" if ended else "running"}
    if rc is None:
        return rec
    if not (d / "summary.json").exists():
        rec["status"] = "no report"
        return rec
    e = read_entry(d)
    rec.update(run_id=e.run_id, verdicts=e.verdicts, status=e.status or "unreadable", dry_run=e.dry_run,
               regressions={role: keys for role, keys in e.regressions.items() if keys}, error=e.error,
               has_report=e.has_report)
    return rec


def write_group(g: Path, data: dict[str, Any]) -> None:
    """``testbeds.json`` and ``index.html`` of the group folder G."""
    from testbed.report.history import GROUP, atomic_write, html_page, verdicts_html

    atomic_write(g / GROUP, json.dumps(data, indent=1) + "\n")
    rows = []
    for t in data["testbeds"]:
        name = escape(t["name"])
        link = (f"<a href='{escape(t['run_dir'])}/report.html'>{name}</a>" if (g / t["run_dir"] / "report.html").exists()
                else name)
        rc = t["exit_code"]
        regs = "; ".join(f"{escape(role)}: <b class='fail'>{len(keys)} regression(s)</b>"
                         for role, keys in (t.get("regressions") or {}).items())
        log = escape(t["log"])
        rows.append([f"{link} <span class='note'>(<a href='{log}'>output</a>)</span>",
                     f"<span class='note'>{escape(t['inventory'])}</span>",
                     "&ndash;" if rc is None else (f"<b class='fail'>{rc}</b>" if rc else "0"),
                     escape(str(t["status"])) + (" (dry run)" if t.get("dry_run") else ""),
                     verdicts_html(t.get("verdicts") or {}) or "&ndash;", regs or "&ndash;"])
    intro = (f"<p>run {escape(data['run_id'])}, profile {escape(data['profile'])}, started "
             f"{escape(str(data['started']))}, ended {escape(str(data.get('ended') or '-'))}, "
             f"exit code {escape(str(data.get('exit_code', '-')))}</p>")
    atomic_write(g / "index.html", html_page(f"dcilab trial {data['run_id']}: {len(data['testbeds'])} testbeds",
                                             ["testbed", "inventory", "exit code", "status", "verdicts",
                                              "regressions"], rows, intro))


def _run_children(a: argparse.Namespace, invs: list[tuple[Path, Inventory]], run_id: str, g: Path,
                  echo: _Echo) -> tuple[list[tuple[Path, Inventory, subprocess.Popen[bytes]]], bool]:
    """Start a child ``dcilab trial`` per testbed and wait for them all; on Ctrl-C or SIGTERM (a
    KeyboardInterrupt, testbed/cli.py) send each child still running one SIGTERM and wait for it.
    Returns the children and whether the run was interrupted."""
    procs: list[tuple[Path, Inventory, subprocess.Popen[bytes]]] = []
    threads: list[threading.Thread] = []
    interrupted = False
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def again(signum: int, frame: object) -> None:
        echo.say("dcilab trial: still waiting for the testbeds to restore their labs")

    try:
        try:
            for p, inv in invs:
                cmd = child_command(a, p, f"{run_id}-{inv.name}", g / inv.name)
                echo.say(f"[{inv.name}] {' '.join(cmd)}")
                # a session of its own: a Ctrl-C at the terminal reaches the parent alone, which sends
                # each child one SIGTERM (a second signal would cut short the child's own clean-up).
                # Its output goes to a file, not a pipe: a child whose parent died must still be able
                # to write while it restores its lab (a pipe without reader fails every print).
                log = g / f"{inv.name}.log"
                with open(log, "w") as out:
                    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=env, start_new_session=True)
                procs.append((p, inv, proc))
                threads.append(echo.follow(proc, log, f"[{inv.name}] "))
            for _, _, proc in procs:
                proc.wait()
        except BaseException as exc:     # Ctrl-C, SIGTERM, or a child that could not be started
            interrupted = isinstance(exc, KeyboardInterrupt)
            for sig in handlers:
                signal.signal(sig, again)
            running = [(inv, proc) for _, inv, proc in procs if proc.poll() is None]
            echo.say(f"dcilab trial: {'interrupted' if interrupted else exc}: stopping "
                     + (", ".join(inv.name for inv, _ in running) or "nothing") + " (each restores its own testbed)")
            for _, proc in running:
                proc.send_signal(signal.SIGTERM)
            for _, proc in running:
                proc.wait()
            if not interrupted:
                raise
    finally:
        for sig, h in handlers.items():
            signal.signal(sig, h)
    for t in threads:
        t.join(timeout=10)
    return procs, interrupted


def run_testbeds(a: argparse.Namespace, paths: list[Path]) -> int:
    """``dcilab trial`` with two or more inventories (see the module's docstring)."""
    from testbed.paths import REPO_ROOT
    from testbed.pytest_plugin import new_run_id
    from testbed.report.history import GROUP, reports_root, write_index
    from testbed.report.summary import ReportError
    from testbed.runid import RunIdError, check_run_id

    def refuse(problems: list[str]) -> int:
        print("dcilab trial: cannot run these testbeds side by side; nothing was started:", file=sys.stderr)
        for m in problems:
            print("  " + m.replace("\n", "\n  "), file=sys.stderr)
        return EXIT_BAD_INPUT

    invs, problems = load_all(paths)
    if problems:
        return refuse(problems)
    problems = _check_distinct(invs)
    if problems:
        return refuse(problems)
    try:
        run_id = check_run_id(a.run_id or new_run_id())
        for _, inv in invs:
            check_run_id(f"{run_id}-{inv.name}", given_as=f"--run-id plus testbed name {inv.name!r}:")
    except RunIdError as exc:
        return refuse([str(exc)])
    g = Path(a.report_dir) if a.report_dir else REPO_ROOT / "reports" / run_id
    if (g / GROUP).exists():
        return refuse([f"{g} already holds a run on several testbeds ({g / GROUP})\n"
                       f"    fix: give another --report-dir or --run-id"])
    g.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {"run_id": run_id, "profile": a.profile, "started": _now(), "ended": None,
                            "testbeds": [_testbed_record(g, p, inv, None) for p, inv in invs]}
    write_group(g, data)     # before the children start: it makes G a group, their history is reports/

    echo = _Echo()
    echo.say(f"dcilab trial: {len(invs)} testbeds in parallel, run {run_id}, group folder {g}")
    procs, interrupted = _run_children(a, invs, run_id, g, echo)
    codes = [proc.returncode if proc.returncode >= 0 else 128 - proc.returncode for _, _, proc in procs]
    rc = EXIT_INTERRUPTED if interrupted else group_exit(codes)
    started = {inv.name: c for (_, inv, _), c in zip(procs, codes, strict=True)}
    data["testbeds"] = [_testbed_record(g, p, inv, started.get(inv.name), ended=True) for p, inv in invs]
    data.update(ended=_now(), exit_code=rc, interrupted=interrupted)
    write_group(g, data)
    root = reports_root(g / invs[0][1].name)
    if root is not None:    # the children finished together and raced on it: once more, with all of them
        try:
            write_index(root)
        except (ReportError, OSError) as exc:
            echo.say(f"dcilab trial: history index: {exc}")
    for t in data["testbeds"]:
        counts = ", ".join(f"{k} {v}" for k, v in sorted((t.get("verdicts") or {}).items())) or "no case"
        echo.say(f"dcilab trial: {t['name']}: exit {t['exit_code']}, {t['status']}, {counts}: {g / t['run_dir']}")
    echo.say(f"dcilab trial: index of the {len(invs)} testbeds in {g / 'index.html'}; exit {rc}")
    return rc
