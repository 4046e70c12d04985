"""What dcilab writes to the metrics store: measurements, tags and fields, and their line protocol.

Four measurements, designed for dashboards that line iteration times up with faults:

``dcilab_iteration``  one point per training iteration (timestamp = the iteration's start)
    tags    run_id (required), case, scenario, placement, layout, model, testbed
    fields  duration_s (float), tokens_per_s (float), loss (float, omitted when None),
            step (int), warmup (bool)
``dcilab_fault``      one point per fault event (timestamp = the fault's start)
    tags    run_id (required), kind (required), target (required), case, scenario, testbed
    fields  start_ns (int), end_ns (int), duration_s (float); the last two omitted while the fault is open
``dcilab_probe``      one point per probe result (timestamp = the end of the probe window)
    tags    run_id (required), case, scenario, testbed, probe
    fields  sdt_loss_ms, sdt_gap_ms (float), lost, dup, ooo, tx, rx (int); any may be None (omitted)
``dcilab_case``       one point per concluded case (timestamp = the case's end)
    tags    run_id (required), case, scenario, placement, testbed, verdict
    fields  iterations (int, always written, so that a case without metrics still has its verdict),
            equivalent_compute, mean_efficiency, worst_efficiency, baseline_s, median_s,
            disruption_ms (float), affected_iterations (int); any but iterations may be None (omitted);
            median_s is the case's steady median (in a fault case: before the fault)

Tags are bounded by construction: only the keys above are accepted, so a per-point value (step,
UUID, timestamp) can never become a tag and blow up the series count.  ``run_id`` is a tag because
runs number in the hundreds and every dashboard filters on it.

Timestamps are nanoseconds since the epoch, supplied by the caller from one clock
(``time.time_ns()`` on the process that owns the run); nothing here reads a clock.  InfluxDB keeps
them to the nanosecond; VictoriaMetrics truncates them to milliseconds (two points of one series in
the same millisecond collide there), and stores every field as float64 (``start_ns`` keeps ~256 ns).

Float fields are always written as floats (an int is converted), int fields always as ints, so
InfluxDB never sees a "field type conflict" between runs.  Every check raises ``SchemaError`` (a ``ValueError``)
naming ``measurement.field``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from influxdb_client import Point, WritePrecision

ITERATION = "dcilab_iteration"
FAULT = "dcilab_fault"
PROBE = "dcilab_probe"
CASE = "dcilab_case"

#: Earliest and latest plausible timestamps (ns): 2001-09-09 .. 2286-11-20.  Catches seconds,
#: milliseconds and microseconds passed by mistake.
MIN_TIME_NS = 1_000_000_000 * 1_000_000_000
MAX_TIME_NS = 9_999_999_999 * 1_000_000_000
MAX_TAG_LEN = 256

_ESCAPE_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ "})
_ESCAPE_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})


class SchemaError(ValueError):
    """A record that cannot be written; the message starts with ``measurement.field``."""


# --------------------------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class Iteration:
    """One training iteration.  ``time_ns`` is the iteration's start (max over ranks is the caller's job)."""

    MEASUREMENT: ClassVar[str] = ITERATION
    TAGS: ClassVar[tuple[str, ...]] = ("run_id", "case", "scenario", "placement", "layout", "model", "testbed")
    REQUIRED_TAGS: ClassVar[tuple[str, ...]] = ("run_id",)

    time_ns: int
    step: int
    duration_s: float
    tokens_per_s: float
    loss: float | None = None
    warmup: bool = False
    run_id: str | None = None
    case: str | None = None
    scenario: str | None = None
    placement: str | None = None
    layout: str | None = None
    model: str | None = None
    testbed: str | None = None

    def field_values(self) -> dict[str, Any]:
        m = self.MEASUREMENT
        return {
            "duration_s": _float(m, "duration_s", self.duration_s, minimum=0.0),
            "loss": None if self.loss is None else _float(m, "loss", self.loss),
            "step": _int(m, "step", self.step, minimum=0),
            "tokens_per_s": _float(m, "tokens_per_s", self.tokens_per_s, minimum=0.0),
            "warmup": _bool(m, "warmup", self.warmup),
        }


@dataclass(frozen=True, slots=True)
class FaultEvent:
    """One fault: ``start_ns`` is the point's timestamp; ``end_ns`` None while the fault is still open."""

    MEASUREMENT: ClassVar[str] = FAULT
    TAGS: ClassVar[tuple[str, ...]] = ("run_id", "case", "scenario", "testbed", "kind", "target")
    REQUIRED_TAGS: ClassVar[tuple[str, ...]] = ("run_id", "kind", "target")

    start_ns: int
    end_ns: int | None
    kind: str | None = None
    target: str | None = None
    run_id: str | None = None
    case: str | None = None
    scenario: str | None = None
    testbed: str | None = None

    @property
    def time_ns(self) -> int:
        return self.start_ns

    def field_values(self) -> dict[str, Any]:
        m = self.MEASUREMENT
        start = _time(m, "start_ns", self.start_ns)
        out: dict[str, Any] = {"start_ns": start}
        if self.end_ns is not None:
            end = _time(m, "end_ns", self.end_ns)
            if end < start:
                raise SchemaError(f"{m}.end_ns: must be >= start_ns ({start}), got {end}")
            out["duration_s"] = (end - start) / 1e9
            out["end_ns"] = end
        return dict(sorted(out.items()))


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One probe result (e.g. the switchover probe): service disruption time, loss, duplicates, reordering."""

    MEASUREMENT: ClassVar[str] = PROBE
    TAGS: ClassVar[tuple[str, ...]] = ("run_id", "case", "scenario", "testbed", "probe")
    REQUIRED_TAGS: ClassVar[tuple[str, ...]] = ("run_id",)

    time_ns: int
    sdt_loss_ms: float | None = None
    sdt_gap_ms: float | None = None
    lost: int | None = None
    dup: int | None = None
    ooo: int | None = None
    tx: int | None = None
    rx: int | None = None
    run_id: str | None = None
    case: str | None = None
    scenario: str | None = None
    testbed: str | None = None
    probe: str | None = None

    def field_values(self) -> dict[str, Any]:
        m = self.MEASUREMENT
        out: dict[str, Any] = {}
        for name in ("sdt_gap_ms", "sdt_loss_ms"):
            value = getattr(self, name)
            if value is not None:
                out[name] = _float(m, name, value, minimum=0.0)
        for name in ("dup", "lost", "ooo", "rx", "tx"):
            value = getattr(self, name)
            if value is not None:
                out[name] = _int(m, name, value, minimum=0)
        if not out:
            raise SchemaError(f"{m}: no field set (need at least one of sdt_loss_ms, sdt_gap_ms, lost, dup, ooo, tx, rx)")
        return dict(sorted(out.items()))


@dataclass(frozen=True, slots=True)
class CaseResult:
    """A concluded case's result, so dashboards can show the trial's metric (equivalent compute) per case
    without recomputing it from iterations.  ``time_ns`` is the case's end; ``verdict`` is a tag (a handful
    of values: pass, fail, error, ...) so that panels can filter and colour by it."""

    MEASUREMENT: ClassVar[str] = CASE
    TAGS: ClassVar[tuple[str, ...]] = ("run_id", "case", "scenario", "placement", "testbed", "verdict")
    REQUIRED_TAGS: ClassVar[tuple[str, ...]] = ("run_id",)
    FLOAT_FIELDS: ClassVar[tuple[str, ...]] = ("baseline_s", "disruption_ms", "equivalent_compute",
                                               "mean_efficiency", "median_s", "worst_efficiency")

    time_ns: int
    iterations: int = 0
    equivalent_compute: float | None = None
    mean_efficiency: float | None = None
    worst_efficiency: float | None = None
    baseline_s: float | None = None
    median_s: float | None = None
    affected_iterations: int | None = None
    disruption_ms: float | None = None
    run_id: str | None = None
    case: str | None = None
    scenario: str | None = None
    placement: str | None = None
    testbed: str | None = None
    verdict: str | None = None

    @classmethod
    def from_metrics(cls, metrics: Mapping[str, Any], *, time_ns: int, **tags: str | None) -> CaseResult:
        """The trial's metrics dict of a case (``CaseContext.conclude``'s) as a record: known fields only;
        a value that is None, not a number, negative or non-finite is left out, so that recording a
        result never fails a case.  ``tags``: run_id, case, scenario, placement, testbed, verdict."""
        vals: dict[str, Any] = {}
        for name in cls.FLOAT_FIELDS:
            v = metrics.get(name)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0:
                vals[name] = float(v)
        for name in ("iterations", "affected_iterations"):
            v = metrics.get(name)
            if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63:
                vals[name] = v
        return cls(time_ns=time_ns, **vals, **tags)

    def field_values(self) -> dict[str, Any]:
        m = self.MEASUREMENT
        out: dict[str, Any] = {"iterations": _int(m, "iterations", self.iterations, minimum=0)}
        for name in self.FLOAT_FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = _float(m, name, value, minimum=0.0)
        if self.affected_iterations is not None:
            out["affected_iterations"] = _int(m, "affected_iterations", self.affected_iterations, minimum=0)
        return dict(sorted(out.items()))


Record = Iteration | FaultEvent | ProbeResult | CaseResult
RECORD_TYPES: tuple[type, ...] = (Iteration, FaultEvent, ProbeResult, CaseResult)

#: Every tag key any measurement accepts (default tags must be among these).
ALL_TAGS: frozenset[str] = frozenset(t for cls in RECORD_TYPES for t in cls.TAGS)


# --------------------------------------------------------------------------------------------- checks


def _float(m: str, name: str, value: Any, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SchemaError(f"{m}.{name}: must be a number, got {type(value).__name__} {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise SchemaError(f"{m}.{name}: must be finite (line protocol has no NaN/inf), got {v}"
                         + ("; pass loss=None for a non-finite loss" if name == "loss" else ""))
    if minimum is not None and v < minimum:
        raise SchemaError(f"{m}.{name}: must be >= {minimum}, got {v}")
    return v


def _int(m: str, name: str, value: Any, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SchemaError(f"{m}.{name}: must be an int, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise SchemaError(f"{m}.{name}: must be >= {minimum}, got {value}")
    if value >= 2**63:
        raise SchemaError(f"{m}.{name}: does not fit in int64, got {value}")
    return int(value)


def _bool(m: str, name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise SchemaError(f"{m}.{name}: must be a bool (or 0/1), got {type(value).__name__} {value!r}")


def _time(m: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SchemaError(f"{m}.{name}: must be an int of nanoseconds since the epoch (time.time_ns()), "
                         f"got {type(value).__name__} {value!r}")
    if not MIN_TIME_NS <= value <= MAX_TIME_NS:
        raise SchemaError(f"{m}.{name}: {value} is not nanoseconds since the epoch (seconds, ms or µs passed "
                         "by mistake?); use time.time_ns()")
    return int(value)


def _tag_value(m: str, key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise SchemaError(f"{m}.{key}: tag must be a str, got {type(value).__name__} {value!r}")
    if not value:
        raise SchemaError(f"{m}.{key}: tag must not be empty (leave it None to omit it)")
    if len(value) > MAX_TAG_LEN:
        raise SchemaError(f"{m}.{key}: tag longer than {MAX_TAG_LEN} characters")
    if any(c in value for c in "\n\r\t\\") or not value.isprintable():
        raise SchemaError(f"{m}.{key}: tag has a control character or backslash: {value!r}")
    return value


def check_default_tags(default_tags: dict[str, str] | None) -> dict[str, str]:
    """Validate a writer's default tags: only known (bounded) keys, non-empty printable values."""
    out: dict[str, str] = {}
    for key, value in (default_tags or {}).items():
        if key not in ALL_TAGS:
            raise SchemaError(f"default tag {key!r} is not a dcilab tag (allowed: {', '.join(sorted(ALL_TAGS))}); "
                             "per-point values such as step or a UUID must be fields, not tags")
        if value is not None:
            out[key] = _tag_value("default_tags", key, value)
    return out


def tags_of(record: Record, default_tags: dict[str, str] | None = None) -> dict[str, str]:
    """The record's tags (sorted by key), its own values winning over ``default_tags``."""
    m = record.MEASUREMENT
    tags: dict[str, str] = {}
    for key in record.TAGS:
        value = getattr(record, key)
        if value is None and default_tags:
            value = default_tags.get(key)
        if value is None:
            if key in record.REQUIRED_TAGS:
                raise SchemaError(f"{m}.{key}: required tag is missing (set it on the record or in default_tags)")
            continue
        tags[key] = _tag_value(m, key, value)
    return dict(sorted(tags.items()))


def _check_record(record: Any) -> None:
    if not isinstance(record, RECORD_TYPES):
        raise SchemaError(f"not a dcilab metrics record: {type(record).__name__} "
                         "(expected Iteration, FaultEvent, ProbeResult or CaseResult)")


# --------------------------------------------------------------------------------------------- output


def _format_field(value: Any) -> str:
    # Same encoding as influxdb_client.Point (so to_line() == to_point().to_line_protocol()).
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    s = str(value)
    return s.removesuffix(".0")


def to_line(record: Record, default_tags: dict[str, str] | None = None) -> str:
    """The record as one line of line protocol (ns precision), validated; raises ValueError naming the field."""
    _check_record(record)
    m = record.MEASUREMENT
    tags = tags_of(record, default_tags)
    fvals = {k: v for k, v in record.field_values().items() if v is not None}
    ts = _time(m, "time_ns", record.time_ns)
    head = m.translate(_ESCAPE_MEASUREMENT)
    if tags:
        head += "," + ",".join(f"{k.translate(_ESCAPE_KEY)}={v.translate(_ESCAPE_KEY)}" for k, v in tags.items())
    body = ",".join(f"{k.translate(_ESCAPE_KEY)}={_format_field(v)}" for k, v in sorted(fvals.items()))
    return f"{head} {body} {ts}"


def to_point(record: Record, default_tags: dict[str, str] | None = None) -> Point:
    """The record as an ``influxdb_client.Point`` (ns precision), validated like :func:`to_line`."""
    _check_record(record)
    m = record.MEASUREMENT
    point = Point(m)
    for key, value in tags_of(record, default_tags).items():
        point.tag(key, value)
    for key, value in record.field_values().items():
        if value is not None:
            point.field(key, value)
    return point.time(_time(m, "time_ns", record.time_ns), WritePrecision.NS)


def schema() -> dict[str, dict[str, Any]]:
    """The schema as data (for docs and dashboards): measurement -> tags, required tags, fields."""
    out = {}
    for cls in RECORD_TYPES:
        names = [f.name for f in fields(cls)]
        out[cls.MEASUREMENT] = {
            "tags": list(cls.TAGS), "required_tags": list(cls.REQUIRED_TAGS),
            "fields": [n for n in names if n not in cls.TAGS and n != "time_ns"]
            + (["duration_s"] if cls is FaultEvent else []),
        }
    return out
