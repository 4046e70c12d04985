"""One archive of a run to hand to someone who was not in the lab: the report (HTML, PDF,
plots) and the raw evidence behind it (summary, iteration log, fault journal, testbed snapshot,
JUnit XML, per-case logs), under one top folder named after the run, with a ``MANIFEST.json``
that lists every member with its size and SHA-256 and the files the run did not write.

An interrupted run lacks some files: they are listed as missing, which is not an error."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import re
import tarfile
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

from testbed.report.render import render_run, write_pdf
from testbed.report.summary import ReportError, load_json

MANIFEST = "MANIFEST.json"
# Written by the run (testbed/trial/report.py); each may be absent after an interrupted run.
RUN_FILES = ("summary.json", "iterations.jsonl", "faults.jsonl", "testbed.json", "junit.xml")
RUN_DIRS = ("cases",)
# Written after the run only when there was something to compare with: included when present.
OPTIONAL_FILES = ("comparison.json",)
RENDER_INPUTS = ("summary.json", "testbed.json", "comparison.json")


@dataclass
class Member:
    path: str       # relative to the archive's top folder
    size: int
    sha256: str


@dataclass
class Missing:
    path: str
    why: str


@dataclass
class Bundle:
    """What was written: the archive, its members, what was missing and whether it re-rendered."""
    path: Path
    run_id: str
    members: list[Member] = field(default_factory=list)
    missing: list[Missing] = field(default_factory=list)
    rendered: bool = False
    no_pdf: str | None = None

    @property
    def size(self) -> int:
        return self.path.stat().st_size


def run_id_of(run_dir: Path, summary: dict[str, object]) -> str:
    """The summary's run id made safe as a file and folder name; the folder's name otherwise."""
    rid = summary.get("run_id")
    text = rid if isinstance(rid, str) and rid.strip() else run_dir.resolve().name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "run"


def default_path(run_dir: Path, run_id: str) -> Path:
    """``<run-id>.tar.gz`` beside the run folder: ``reports/<run-id>.tar.gz``."""
    return run_dir.resolve().parent / f"{run_id}.tar.gz"


def _stale(report: Path, inputs: list[Path]) -> bool:
    if not report.is_file():
        return True
    t = report.stat().st_mtime
    return any(p.is_file() and p.stat().st_mtime > t for p in inputs)


def _report(run_dir: Path, report_dir: Path, pdf: bool) -> tuple[bool, str | None]:
    """Render unless report.html is newer than what it is made from; print the PDF when it is
    wanted and missing or older than the page.  (rendered?, why there is no PDF)"""
    page = report_dir / "report.html"
    if _stale(page, [run_dir / n for n in RENDER_INPUTS]):
        r = render_run(run_dir, None if report_dir == run_dir else report_dir, pdf=pdf)
        return True, r.no_pdf
    if not _stale(report_dir / "report.pdf", [page]):
        return False, None
    if not pdf:
        return False, "no PDF: not asked for (--no-pdf)"
    return False, write_pdf(page, True)[1]


def _files(report_dir: Path, run_dir: Path) -> tuple[list[tuple[str, Path]], list[Missing]]:
    """(archive name, file) of each member in a stable order, and the expected ones not there."""
    out: list[tuple[str, Path]] = [("report.html", report_dir / "report.html")]
    missing: list[Missing] = []
    pdf = report_dir / "report.pdf"
    if pdf.is_file() and not _stale(pdf, [report_dir / "report.html"]):
        out.append(("report.pdf", pdf))
    out += [(f"plots/{p.name}", p) for p in sorted((report_dir / "plots").glob("*"))
            if p.is_file() and p.suffix in (".png", ".svg")]
    for name in RUN_FILES:
        if (run_dir / name).is_file():
            out.append((name, run_dir / name))
        else:
            missing.append(Missing(name, "not in the run folder (the run was interrupted or never got that far)"))
    out += [(name, run_dir / name) for name in OPTIONAL_FILES if (run_dir / name).is_file()]
    for name in RUN_DIRS:
        top = run_dir / name
        found = sorted(Path(d, f) for d, _, fs in os.walk(top) for f in fs     # os.walk: symlinks not followed
                       if Path(d, f).is_file() and not Path(d, f).is_symlink())
        out += [(p.relative_to(run_dir).as_posix(), p) for p in found]
        if not found:
            missing.append(Missing(f"{name}/", "no per-case logs in the run folder (no case started, "
                                               "or the run was interrupted)"))
    return out, missing


class _Hashing(io.RawIOBase):
    """Reads a file once for the archive and hashes exactly the bytes archived, so the manifest
    matches the archive even if a running trial is still appending to the file."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f, self.h = f, hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        b = self.f.read(n)
        self.h.update(b)
        return b


def _info(name: str, size: int, mtime: float) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode, ti.uid, ti.gid, ti.uname, ti.gname = size, int(mtime), 0o644, 0, 0, "", ""
    return ti


def make_bundle(run_dir: Path, dest: Path | None = None, *, report_dir: Path | None = None,
                pdf: bool = True) -> Bundle:
    """Write the run's archive to ``dest`` (a file, or a folder to put ``<run-id>.tar.gz`` in;
    default :func:`default_path`), rendering the report into ``report_dir`` (default: the run
    folder) first when it is missing or out of date."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir}: no such run folder (give a folder written by `dcilab trial`, "
                          f"e.g. reports/<run-id>)")
    summary = load_json(run_dir / "summary.json")
    run_id = run_id_of(run_dir, summary)
    report_dir = Path(report_dir) if report_dir else run_dir
    rendered, no_pdf = _report(run_dir, report_dir, pdf)
    dest = Path(dest) if dest else default_path(run_dir, run_id)
    if dest.is_dir():
        dest = dest / f"{run_id}.tar.gz"
    b = Bundle(dest, run_id, rendered=rendered, no_pdf=no_pdf)
    files, b.missing = _files(report_dir, run_dir)
    if not any(n == "report.pdf" for n, _ in files):
        b.missing.append(Missing("report.pdf", no_pdf or "no PDF beside report.html"))
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    except OSError as exc:
        raise ReportError(f"{dest}: cannot write the bundle there: {exc} "
                          f"(give a writable path: --bundle PATH)") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            for name, path in files:
                with open(path, "rb") as f:
                    st = os.fstat(f.fileno())
                    hf = _Hashing(f)
                    tar.addfile(_info(f"{run_id}/{name}", st.st_size, st.st_mtime), hf)
                    b.members.append(Member(name, st.st_size, hf.h.hexdigest()))
            manifest = json.dumps(_manifest(b, summary), indent=1).encode() + b"\n"
            tar.addfile(_info(f"{run_id}/{MANIFEST}", len(manifest), dt.datetime.now().timestamp()),
                        io.BytesIO(manifest))
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except OSError as exc:
        raise ReportError(f"{dest}: writing the bundle failed: {exc} (free some space or give another "
                          f"path: --bundle PATH)") from None
    finally:
        tmp.unlink(missing_ok=True)
    return b


def _manifest(b: Bundle, summary: dict[str, object]) -> dict[str, object]:
    return {"run_id": b.run_id, "root": b.run_id, "status": summary.get("status"),
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "note": f"sizes and SHA-256 of every other file under {b.run_id}/; "
                    "'missing' lists what the run or the report did not write",
            "members": [asdict(m) for m in b.members], "missing": [asdict(m) for m in b.missing]}
