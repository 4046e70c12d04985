"""Reading ``summary.json`` tolerantly: a report of an interrupted run, an older or newer schema
must still show what is there, so every accessor here survives missing or odd fields."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

KNOWN_SCHEMAS = (1,)


class ReportError(Exception):
    """A run folder that cannot be rendered; the message names the file and the fix."""


def load_json(path: Path) -> dict[str, Any]:
    """The summary as a dict, or a ReportError saying which file and what is wrong with it."""
    if not path.exists():
        raise ReportError(f"{path}: no such file (is this a run folder written by `dcilab trial`?)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg} "
                          f"(the file is corrupt or was cut short)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path}: cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path}: expected a JSON object at the top, found {type(data).__name__}")
    return data


def load_optional(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """A companion file (``testbed.json``): its content, or why it is absent, without failing."""
    try:
        return load_json(path), None
    except ReportError as exc:
        return None, str(exc)


def num(x: Any) -> float | None:
    """A finite number or None (booleans and strings are not numbers here)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


def dct(x: Any) -> dict[str, Any]:
    return x if isinstance(x, dict) else {}


def lst(x: Any) -> list[Any]:
    return x if isinstance(x, list) else []


def cases(summary: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in lst(summary.get("cases")) if isinstance(c, dict)]


def case_label(case: dict[str, Any], index: int) -> str:
    return str(case.get("name") or case.get("id") or f"case {index + 1}")


def series(case: dict[str, Any]) -> list[tuple[int, float, bool]]:
    """(step, duration_s, warmup) of each usable iteration, in step order."""
    out = []
    for i, p in enumerate(lst(case.get("series"))):
        p = dct(p)
        d = num(p.get("duration_s"))
        if d is None:
            continue
        step = p.get("step")
        out.append((step if isinstance(step, int) else i, d, bool(p.get("warmup"))))
    return sorted(out)


def reference_s(case: dict[str, Any]) -> tuple[float | None, str]:
    """The iteration time that efficiency is measured against, and its name."""
    m = dct(case.get("metrics"))
    for key in ("pre_fault_s", "baseline_s", "median_s"):
        if num(m.get(key)) is not None:
            return num(m.get(key)), key
    b = num(dct(case.get("baseline")).get("median_s"))
    return (b, "baseline median") if b is not None else (None, "")


def windows(case: dict[str, Any]) -> list[dict[str, Any]]:
    """Faults and conditions of a case, each marked with its role."""
    out = []
    for key, role in (("conditions", "condition"), ("faults", "fault")):
        for w in lst(case.get(key)):
            if isinstance(w, dict):
                out.append({**w, "role": w.get("role") or role})
    return out
