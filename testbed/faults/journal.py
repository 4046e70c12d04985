"""The journal of active faults: one JSON file per fault, written (and fsynced) before the fault
is applied, holding its undo steps as data; removed once the undo is verified.  After a crash or
a SIGKILL, ``dcilab lab restore`` replays what is left (see :mod:`testbed.faults.restore`)."""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from testbed.inventory import Inventory


@dataclass(frozen=True)
class Step:
    """One action on one device, as data: ``op`` is a name :mod:`testbed.faults.ops` knows."""

    device: str
    op: str
    args: dict[str, Any] = field(default_factory=dict)
    summary: str = ""          # what goes on the wire, for --dry-run and the journal's reader

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Step:
        return cls(d["device"], d["op"], dict(d.get("args") or {}), d.get("summary", ""))

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.args.items())
        return f"{self.device}: {self.op}({args})" + (f"  -- {self.summary}" if self.summary else "")


def journal_dir(inv: Inventory) -> Path:
    """The emulated lab's ``state_dir/journal``; for real gear
    ``$XDG_STATE_HOME/dcilab/<name>/journal`` (``~/.local/state/...`` by default)."""
    if inv.emulation is not None:
        return Path(inv.emulation.state_dir) / "journal"
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "dcilab" / inv.name / "journal"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class Entry:
    """One active fault as journaled."""

    id: str
    kind: str
    target: str
    undo: list[Step]
    apply: list[Step]
    inventory: str
    pid: int
    host: str
    created_wall_ns: int
    state: str = "applying"    # applying -> applied -> undoing
    path: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k not in ("path", "undo", "apply")}
        d["apply"] = [s.to_dict() for s in self.apply]
        d["undo"] = [s.to_dict() for s in self.undo]
        return d


class Journal:
    def __init__(self, directory: Path | str) -> None:
        self.dir = Path(directory)

    def _write(self, path: Path, data: dict[str, Any]) -> None:
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(self.dir)

    def add(self, kind: str, target: str, apply: list[Step], undo: list[Step], inventory: str) -> Entry:
        """Write the entry durably (fsync of the file and the folder) and return it."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        now = time.time_ns()
        eid = f"{now}-{os.getpid()}-{kind.lower()}"
        e = Entry(eid, kind, target, list(undo), list(apply), inventory, os.getpid(), socket.gethostname(), now)
        e.path = self.dir / f"{eid}.json"
        self._write(e.path, e.to_dict())
        return e

    def mark(self, e: Entry, state: str) -> None:
        e.state = state
        assert e.path is not None
        self._write(e.path, e.to_dict())

    def remove(self, e: Entry) -> None:
        assert e.path is not None
        try:
            e.path.unlink()
        except FileNotFoundError:
            pass
        _fsync_dir(self.dir)

    def entries(self) -> list[Entry]:
        """Every readable journaled fault, oldest first (see :meth:`scan` for the unreadable ones)."""
        return self.scan()[0]

    def scan(self) -> tuple[list[Entry], list[tuple[Path, str]]]:
        """Every journaled fault, oldest first, and every file that is not a readable entry with
        why: one corrupt file must not stop the restore of the others."""
        if not self.dir.is_dir():
            return [], []
        out, broken = [], []
        for p in sorted(self.dir.glob("*.json")):
            try:
                d = json.loads(p.read_text(encoding="utf-8"))
                e = Entry(str(d["id"]), str(d["kind"]), str(d["target"]), [Step.from_dict(s) for s in d["undo"]],
                          [Step.from_dict(s) for s in d.get("apply", [])], str(d.get("inventory", "")),
                          int(d.get("pid", 0)), str(d.get("host", "")), int(d.get("created_wall_ns", 0)),
                          str(d.get("state", "applying")))
                if not all(isinstance(s.device, str) and isinstance(s.op, str) for s in e.undo):
                    raise TypeError("an undo step's device or op is not a string")
            except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
                broken.append((p, f"{type(exc).__name__}: {exc}"))
                continue
            e.path = p
            out.append(e)
        return sorted(out, key=lambda e: e.created_wall_ns), broken
