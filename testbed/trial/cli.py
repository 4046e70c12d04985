"""``dcilab trial``: the field-trial suite (pytest underneath) against an inventory.

    dcilab trial --inventory inventory/emulated.yaml --profile quick [--report-dir DIR] [-k EXPR]
    dcilab trial --inventory A.yaml --inventory B.yaml ...      several testbeds at once

On an emulated inventory the lab is brought up if it is not up, and brought down afterwards
(left up if it was up before).  Then the run is compared with the previous run of its profile and
with the pinned reference (``dcilab history pin``), its report.html is rendered and the history
index under reports/ rebuilt.  Exit codes: pytest's (0 every case passed or was skipped with a
reason, 1 a case failed, 2 interrupted, 4 bad input: inventory, profile, run id), except that a run whose
cases regressed against the previous or reference run exits 3 where pytest said 0 or 1, and a run
refused because another run holds the testbed exits 75 (testbed/lock.py).

With ``--inventory`` given twice or more, one child ``dcilab trial`` per testbed runs in parallel,
each a whole session of its own (lease, lab, baseline, report, history), into one group folder with
an index: testbed/trial/testbeds.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def add_parser(sub: Any) -> None:
    p = sub.add_parser("trial", help="run the field-trial suite (cases/) against an inventory and write a report",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--inventory", type=Path, action="append", default=None,
                   help="testbed inventory (default: $DCILAB_INVENTORY or inventory/emulated.yaml); give it "
                        "several times to run on several testbeds at once, a report each and one index")
    p.add_argument("--profile", default="quick", help="quick | full | nightly | scale | degraded (cases/profiles.yaml)")
    p.add_argument("--profiles-file", type=Path, default=None, help="profiles and criteria file")
    p.add_argument("--report-dir", type=Path, default=None,
                   help="default: reports/<run-id> (several testbeds: the group folder, a run folder per testbed)")
    p.add_argument("--run-id", default=None, help="default: UTC time + a random suffix")
    p.add_argument("-k", dest="keyword", default=None, help="only cases matching this pytest -k expression")
    p.add_argument("--dry-run", action="store_true", help="plan every case; connect to nothing")
    p.add_argument("--no-single-site", action="store_true",
                   help="skip the single-site baseline job (one job of the layout in one site, before the cases)")
    p.add_argument("--wait-lease", type=float, default=0.0, metavar="SECONDS",
                   help="wait this long for another run to release the testbed (default: refuse at once, exit 75)")
    p.add_argument("--no-compare", action="store_true",
                   help="do not compare with earlier runs (the report and history index are still written)")
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, help="after --: more pytest arguments")
    p.set_defaults(func=run_trial)


def pytest_args(a: argparse.Namespace) -> list[str]:
    from testbed.paths import default_inventory
    from testbed.pytest_plugin import new_run_id

    run_id = a.run_id or new_run_id()
    report = a.report_dir or ROOT / "reports" / run_id
    inventory = a.inventory[0] if a.inventory else default_inventory()
    args = [str(ROOT / "cases"), "--inventory", str(inventory), "--profile", a.profile,
            "--run-id", run_id, "--report-dir", str(report), "--junitxml", str(Path(report) / "junit.xml"),
            "-p", "no:cacheprovider", "-rA", "--rootdir", str(ROOT)]
    if a.profiles_file:
        args += ["--profiles-file", str(a.profiles_file)]
    if a.keyword:
        args += ["-k", a.keyword]
    if a.dry_run:
        args.append("--dry-run")
    if a.no_single_site:
        args.append("--no-single-site")
    if a.wait_lease:
        args += ["--wait-lease", str(a.wait_lease)]
    extra = list(a.pytest_args or [])
    if extra[:1] == ["--"]:
        extra = extra[1:]
    return args + extra


def run_trial(a: argparse.Namespace) -> int:
    if a.inventory and len(a.inventory) > 1:
        from testbed.trial.testbeds import run_testbeds
        return run_testbeds(a, list(a.inventory))
    import pytest

    args = pytest_args(a)
    report = Path(args[args.index("--report-dir") + 1])
    print(f"dcilab trial: pytest {' '.join(args)}", flush=True)
    rc = int(pytest.main(args))
    if not (report / "summary.json").exists():
        print(f"dcilab trial: no report written (pytest exit {rc}: see the messages above)", flush=True)
        return rc
    from testbed.report.finish import finish_run
    from testbed.report.history_cli import EXIT_REGRESSION, print_comparisons

    done = finish_run(report, compare_runs=not (a.no_compare or a.dry_run))
    if not (a.no_compare or a.dry_run):
        print_comparisons(done.comparisons)
    for problem in done.problems:
        print(f"dcilab trial: {problem}", flush=True)
    written = [n for n in ("report.html", "report.pdf", "summary.json", "comparison.json", "junit.xml",
                           "iterations.jsonl", "faults.jsonl", "testbed.json") if (report / n).exists()]
    print(f"dcilab trial: report in {report} ({', '.join(written)})", flush=True)
    if done.regressions and rc in (0, 1):
        print(f"dcilab trial: exit {EXIT_REGRESSION}: {len(done.regressions)} regression(s): "
              + "; ".join(done.regressions), flush=True)
        return EXIT_REGRESSION
    return rc
