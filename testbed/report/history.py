"""The history of runs under ``reports/``: an index of every run folder, the pinned reference run
per profile, and which earlier runs a new run is compared with.

The run folders are the truth; ``index.json`` and ``index.html`` are rebuilt from them after every
run (and by ``dcilab history``), so a deleted or hand-copied folder never leaves the index wrong.
A folder whose summary is unreadable or of another format is listed as such, never dropped.
``reference.json`` holds the pinned run per profile (``dcilab history pin RUN``).

A group folder (one holding ``testbeds.json``: ``dcilab trial`` on several testbeds at once) is not
a run; each of its sub-folders is one testbed's run, listed as ``GROUP/NAME``.  A run is compared
only with runs of its own testbed (``summary.json`` testbed.name): two testbeds sharing reports/
are different gear, and one's numbers say nothing about the other's.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from testbed.report.summary import ReportError, dct, load_json

INDEX = "index.json"
INDEX_HTML = "index.html"
REFERENCE = "reference.json"
GROUP = "testbeds.json"
"""The marker of a group folder: one run of ``dcilab trial`` on several testbeds, a run folder each."""


@dataclass
class RunEntry:
    """One run folder as the index lists it."""
    run_id: str
    path: str  # relative to the reports folder: RUN, or GROUP/NAME for one testbed of a group run
    profile: str | None = None
    compare_with: str | None = None
    started: str | None = None
    ended: str | None = None
    status: str | None = None
    dry_run: bool = False
    testbed: str | None = None
    schema: Any = None
    verdicts: dict[str, int] = field(default_factory=dict)
    regressions: dict[str, list[str]] = field(default_factory=dict)  # role -> case keys
    compared_with: dict[str, str] = field(default_factory=dict)  # role -> run id
    has_report: bool = False
    error: str | None = None

    @property
    def comparable(self) -> bool:
        """A run other runs may be compared with: readable, real (not a dry run), with cases."""
        return self.error is None and not self.dry_run and sum(self.verdicts.values()) > 0


def is_history(folder: Path) -> bool:
    """Whether run folders in ``folder`` form a history: it is named ``reports`` (the default, or
    e.g. /srv/dcilab/reports) or already holds an index or a pinned reference.  A run written with
    ``--report-dir /tmp/x`` is not compared with whatever else lies in /tmp, nor indexes it."""
    folder = Path(folder)
    return folder.name == "reports" or (folder / INDEX).exists() or (folder / REFERENCE).exists()


def is_group(folder: Path) -> bool:
    """Whether ``folder`` is a group folder: several testbeds' runs of one ``dcilab trial``."""
    return (Path(folder) / GROUP).is_file()


def reports_root(run_dir: Path) -> Path | None:
    """The history folder ``run_dir`` belongs to: its parent, or its grandparent when the parent is
    a group folder; None when that folder is not a history (see :func:`is_history`)."""
    parent = Path(run_dir).parent
    if is_group(parent):
        parent = parent.parent
    return parent if is_history(parent) else None


def _rel(reports: Path, run_dir: Path) -> str:
    """``run_dir``'s path in the index: relative to ``reports`` ("RUN" or "GROUP/NAME")."""
    try:
        return Path(run_dir).resolve().relative_to(Path(reports).resolve()).as_posix()
    except ValueError:
        return Path(run_dir).name


def _is_run(d: Path) -> bool:
    return d.is_dir() and ((d / "summary.json").exists() or (d / "junit.xml").exists())


def read_entry(d: Path, path: str | None = None) -> RunEntry:
    """One run folder as the index lists it (``path``: its place in the index, default its name)."""
    e = RunEntry(run_id=d.name, path=path or d.name, has_report=(d / "report.html").exists())
    try:
        s = load_json(d / "summary.json")
    except ReportError as exc:
        e.error = str(exc)
        return e
    prof = s.get("profile")
    e.run_id = str(s.get("run_id") or d.name)
    e.profile = str(dct(prof).get("name") or "") or (prof if isinstance(prof, str) else None)
    e.compare_with = dct(prof).get("compare_with") or e.profile
    e.started, e.ended, e.status = s.get("started"), s.get("ended"), s.get("status")
    e.dry_run = bool(dct(s.get("options")).get("dry_run"))
    e.testbed = dct(s.get("testbed")).get("name")
    e.schema = s.get("schema")
    counts: dict[str, int] = {}
    for c in s.get("cases") or []:
        if isinstance(c, dict):
            counts[str(c.get("verdict"))] = counts.get(str(c.get("verdict")), 0) + 1
    e.verdicts = counts
    try:
        comp = load_json(d / "comparison.json")
        for c in comp.get("comparisons") or []:
            if isinstance(c, dict) and c.get("role"):
                e.compared_with[str(c["role"])] = str(c.get("run_id"))
                e.regressions[str(c["role"])] = [str(k) for k in c.get("regressions") or []]
    except ReportError:
        pass
    return e


def scan(reports: Path) -> list[RunEntry]:
    """Every run folder under ``reports`` (a folder holding summary.json, or an unreadable one),
    and every testbed's run folder in a group folder (path GROUP/NAME), oldest first by start
    time, then by path."""
    reports = Path(reports)
    if not reports.is_dir():
        return []
    entries = []
    for d in sorted(reports.iterdir()):
        if d.is_dir() and is_group(d):
            entries += [read_entry(c, f"{d.name}/{c.name}") for c in sorted(d.iterdir()) if _is_run(c)]
        elif _is_run(d):
            entries.append(read_entry(d))
    return sorted(entries, key=lambda e: (e.started or "", e.path))


def atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def references(reports: Path) -> dict[str, str]:
    """Pinned reference run per profile (``reference.json``; empty when none pinned)."""
    p = Path(reports) / REFERENCE
    if not p.exists():
        return {}
    data = load_json(p)
    return {str(k): str(v) for k, v in data.items() if isinstance(v, str)}


def pin(reports: Path, run_id: str) -> RunEntry:
    """Pin ``run_id`` as the reference of its profile; the run must be a real, readable run."""
    reports = Path(reports)
    entry = next((e for e in scan(reports) if run_id in (e.run_id, e.path)), None)
    if entry is None:
        raise ReportError(f"{reports}: no run folder {run_id!r} (see `dcilab history` for the runs)")
    if not entry.comparable:
        raise ReportError(f"{reports / entry.path}: cannot be a reference: "
                          f"{entry.error or ('a dry run' if entry.dry_run else 'no case was recorded')}")
    refs = references(reports)
    refs[entry.profile or "?"] = entry.path
    atomic_write(reports / REFERENCE, json.dumps(refs, indent=2, sort_keys=True) + "\n")
    return entry


def unpin(reports: Path, profile: str) -> bool:
    refs = references(reports)
    if profile not in refs:
        return False
    del refs[profile]
    atomic_write(Path(reports) / REFERENCE, json.dumps(refs, indent=2, sort_keys=True) + "\n")
    return True


def baselines_for(reports: Path, run_dir: Path) -> list[tuple[str, RunEntry]]:
    """The runs ``run_dir`` is compared with: ("previous", the latest earlier comparable run of the
    profile it compares with, on the same testbed) and ("reference", that profile's pinned run,
    when it ran on the same testbed), each at most once."""
    reports, run_dir = Path(reports), Path(run_dir)
    entries = scan(reports)
    rel = _rel(reports, run_dir)
    me = next((e for e in entries if e.path == rel), None) or read_entry(run_dir, rel)
    lineage = me.compare_with or me.profile
    out: list[tuple[str, RunEntry]] = []
    earlier = [e for e in entries if e.path != me.path and e.comparable and e.profile == lineage
               and e.testbed == me.testbed and (e.started or "") < (me.started or "~")]
    if earlier:
        out.append(("previous", earlier[-1]))
    ref = references(reports).get(lineage or "")
    r = next((e for e in entries if e.path == ref), None) if ref and ref != me.path else None
    if r is not None and r.testbed == me.testbed:
        out.append(("reference", r))
    return out


def write_index(reports: Path) -> list[RunEntry]:
    """Rebuild ``index.json`` and ``index.html`` from the run folders."""
    reports = Path(reports)
    if not reports.is_dir():
        raise ReportError(f"{reports}: no such folder (give the folder that holds the run folders, "
                          f"e.g. reports/, with --reports-dir)")
    entries = scan(reports)
    refs = references(reports)
    data = {"generated": datetime.now(UTC).isoformat(timespec="seconds"),
            "references": refs, "runs": [asdict(e) for e in entries]}
    atomic_write(reports / INDEX, json.dumps(data, indent=1) + "\n")
    atomic_write(reports / INDEX_HTML, _index_html(entries, refs))
    return entries


STYLE = ("body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
         "td,th{border:1px solid #ccc;padding:3px 6px;font-size:90%}.fail{color:#b00}.note{color:#666}")


def html_page(title: str, headers: list[str], rows: list[list[str]], intro: str = "") -> str:
    """A small self-contained page: a title and one table.  ``rows`` hold HTML already escaped
    (:func:`html.escape` every text that came from a file); ``title`` and ``headers`` are escaped here."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>{intro}<table><tr>{head}</tr>"
            + body + "</table></body></html>\n")


def verdicts_html(counts: dict[str, int]) -> str:
    return ", ".join(f"{escape(k)} {v}" for k, v in sorted(counts.items()))


def _index_html(entries: list[RunEntry], refs: dict[str, str]) -> str:
    pinned = set(refs.values())
    rows = []
    for e in reversed(entries):
        # the folder names the run (GROUP/NAME for one testbed of a group); the run id only where it says more
        link = f"<a href='{escape(e.path)}/report.html'>{escape(e.path)}</a>" if e.has_report else escape(e.path)
        if e.run_id not in (e.path, e.path.replace("/", "-")):
            link += f" <span class='note'>{escape(e.run_id)}</span>"
        regs = "; ".join(f"{escape(role)} {escape(e.compared_with.get(role, '?'))}: "
                         + (f"<b class='fail'>{len(keys)} regression(s)</b> ({escape(', '.join(keys))})"
                            if keys else "no regression")
                         for role, keys in e.regressions.items())
        rows.append([f"{link}{' <b>(reference)</b>' if e.path in pinned else ''}", escape(str(e.testbed)),
                     escape(str(e.profile)), escape(str(e.started)),
                     f"{escape(str(e.status))}{' (dry run)' if e.dry_run else ''}", verdicts_html(e.verdicts),
                     regs or "&ndash;", f"<span class='note'>{escape(e.error or '')}</span>"])
    return html_page("dcilab runs", ["run", "testbed", "profile", "started", "status", "verdicts", "compared with",
                                     "problems"], rows)
