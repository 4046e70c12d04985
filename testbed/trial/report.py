"""The run's report folder, written as the run goes so that an interrupted run still says what
completed:

* ``summary.json``: the run (profile, testbed, times, status) and per case: scenario,
  parameters, baseline, per-iteration series, metrics, criteria and verdict, outcome;
* ``iterations.jsonl``: every iteration line as the controller received it (all cases);
* ``faults.jsonl``: every fault and condition with its iterations and timestamps;
* ``testbed.json``: the snapshot (inventory, device software and model versions);
* ``junit.xml``: written by pytest (metrics as properties);
* ``cases/<job>/``: per-rank logs and probe logs of each case.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
from pathlib import Path
from typing import Any

from testbed.durable import write_text_durably

SCHEMA = 1


def utc(ns: int | None = None) -> str:
    t = dt.datetime.now(dt.UTC) if ns is None else dt.datetime.fromtimestamp(ns / 1e9, dt.UTC)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def write_json(path: Path, data: Any) -> None:
    """Atomic and durable: a reader (or a crash, or a power loss) never sees half a file."""
    write_text_durably(path, json.dumps(data, indent=1, default=_default))


def _default(o: Any) -> Any:
    if hasattr(o, "to_dict"):
        return o.to_dict()
    if isinstance(o, (set, tuple)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    return str(o)


class RunReport:
    """``summary.json`` and its companions for one run id."""

    def __init__(self, report_dir: Path, run_id: str, *, profile: dict[str, Any], testbed: dict[str, Any],
                 options: dict[str, Any]) -> None:
        self.dir = Path(report_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.summary: dict[str, Any] = {
            "schema": SCHEMA, "run_id": run_id, "status": "running", "started": utc(), "ended": None,
            "controller": socket.gethostname(), "profile": profile, "testbed": testbed, "options": options,
            "dcilab": _dcilab(), "baselines": {}, "cases": [], "errors": [],
            "files": {"iterations": "iterations.jsonl", "faults": "faults.jsonl", "snapshot": "testbed.json",
                      "junit": "junit.xml"},
        }
        self.save()

    @property
    def path(self) -> Path:
        return self.dir / "summary.json"

    def save(self) -> None:
        with self._lock:
            write_json(self.path, self.summary)

    def add_case(self, record: dict[str, Any]) -> None:
        with self._lock:
            self.summary["cases"] = [c for c in self.summary["cases"] if c.get("id") != record.get("id")] + [record]
        self.save()

    def add_baseline(self, key: str, record: dict[str, Any]) -> None:
        with self._lock:
            self.summary["baselines"][key] = record
        self.save()

    def add_error(self, text: str) -> None:
        with self._lock:
            self.summary["errors"].append({"at": utc(), "error": text})
        self.save()

    def add_faults(self, case: str, windows: list[Any]) -> None:
        with self._lock, open(self.dir / "faults.jsonl", "a") as f:
            for w in windows:
                d = w.to_dict() if hasattr(w, "to_dict") else dict(w)
                d.update(case=case, applied=utc(d["applied_ns"]) if d.get("applied_ns") else None,
                         undone=utc(d["undone_ns"]) if d.get("undone_ns") else None)
                f.write(json.dumps(d, default=_default, separators=(",", ":")) + "\n")

    def set(self, **kw: Any) -> None:
        with self._lock:
            self.summary.update(kw)
        self.save()

    def finish(self, status: str, exit_status: int | None = None) -> None:
        cases = self.summary["cases"]
        counts: dict[str, int] = {}
        for c in cases:
            counts[c.get("verdict", "?")] = counts.get(c.get("verdict", "?"), 0) + 1
        self.set(status=status, ended=utc(), exit_status=exit_status, verdicts=counts)


def _dcilab() -> dict[str, Any]:
    try:
        from testbed.snapshot import dcilab_version
        return dcilab_version()
    except Exception as exc:  # noqa: BLE001 - the report must not fail on a missing git
        return {"error": str(exc)}
