"""Run a Prometheus-flavoured dashboard's queries against a store the way Grafana would.

"Every panel shows data after a run" cannot be seen from the JSON alone: this expands Grafana's
variables (``$run_id``, ``$case`` with its All value, ``$__interval``, ``$__rate_interval``,
``$__range``, ...), picks the step Grafana's Prometheus data source would, sends each panel target,
each template variable and the fault annotation to the store's Prometheus API, and turns the
annotation's samples into regions with Grafana's own algorithm.  Used by the tests against a
throwaway VictoriaMetrics, and by the lab test after a real trial.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, replace
from typing import Any

#: Grafana's default panel width in data points when it is unknown here (a half-width panel).
MAX_DATA_POINTS = 1000
#: Grafana's Prometheus data source never asks for more points than this per series.
SAFE_RESOLUTION = 11000


@dataclass(frozen=True)
class QueryResult:
    """One query as Grafana would send it and what the store answered."""

    panel: str                       # panel title, "variable <name>" or "annotation <name>"
    query: str                       # the query text after variable substitution
    series: int = 0                  # series (or variable values) returned
    points: int = 0                  # samples over all series
    error: str | None = None
    labels: tuple[dict[str, str], ...] = ()           # each series' labels (variables: {"value": v})
    regions: tuple[tuple[int, int, dict[str, str]], ...] = ()  # annotation: (start ms, end ms, labels)
    kind: str = "panel"              # panel, variable or annotation
    step_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.series > 0

    def line(self) -> str:
        what = f"{self.series} series, {self.points} points" if self.error is None else f"ERROR {self.error}"
        return f"{self.kind} {self.panel!r}: {what}"


# ------------------------------------------------------------------------------------- Grafana's arithmetic

_ROUND = ((15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000), (3500, 2000),
          (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000), (45000, 30000), (90000, 60000),
          (210000, 120000), (450000, 300000), (750000, 600000), (1050000, 900000), (1500000, 1200000),
          (2700000, 1800000), (5400000, 3600000), (9000000, 7200000), (16200000, 10800000),
          (32400000, 21600000), (86400000, 43200000), (604800000, 86400000), (1814400000, 604800000),
          (3628800000, 2592000000))
_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000, "y": 31_536_000_000}


def round_interval(ms: float) -> int:
    """Grafana's ``rangeUtil.roundInterval``: the "nice" interval nearest a raw one (ms)."""
    for limit, nice in _ROUND:
        if ms < limit:
            return nice
    return 31_536_000_000


def interval_ms(text: str) -> int:
    """``"15s"`` -> 15000; ``"1m30s"`` and plain seconds too."""
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return int(float(text) * 1000)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|[smhdwy])", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise ValueError(f"not an interval: {text!r}")
    return int(sum(float(n) * _UNITS_MS[u] for n, u in parts))


def format_interval(ms: int) -> str:
    """Grafana's backend formatting of ``$__interval``: the largest unit that divides it."""
    for unit in ("d", "h", "m", "s"):
        if ms % _UNITS_MS[unit] == 0:
            return f"{ms // _UNITS_MS[unit]}{unit}"
    return f"{ms}ms"


def step_ms(range_ms: int, min_interval: str, max_data_points: int = MAX_DATA_POINTS) -> int:
    """The step (= ``$__interval``) Grafana's Prometheus data source uses for a range query."""
    calculated = max(round_interval(range_ms / max_data_points), interval_ms(min_interval))
    safe = round_interval(range_ms / SAFE_RESOLUTION)
    return max(calculated, safe)


def regex_escape(value: str) -> str:
    """Grafana's ``prometheusSpecialRegexEscape``: a value of a multi-value variable inside ``=~"..."``."""
    value = value.replace("\\", "\\\\\\\\")
    return re.sub(r"[$^*{}\[\]+?.()|]", lambda m: "\\\\" + m.group(0), value)


def plain_escape(value: str) -> str:
    """Grafana's ``prometheusRegularEscape``: a single-value variable."""
    return value.replace("\\", "\\\\").replace("'", "\\\\'")


_VAR = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\[\[(\w+)\]\]|\$(\w+)")


def substitute(text: str, values: dict[str, str]) -> str:
    """Expand ``$x``, ``${x}``, ``${x:fmt}`` and ``[[x]]`` from ``values`` (already escaped); unknown ones stay."""
    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3) or m.group(4)
        return values.get(name, m.group(0))
    return _VAR.sub(one, text)


def regions(samples: list[tuple[int, float]], step: int, use_value_for_time: bool) -> list[tuple[int, int]]:
    """Grafana's Prometheus annotation processing: active samples at most ``step`` ms apart form one region."""
    times = [int(v) if use_value_for_time else t for t, v in samples if use_value_for_time or v > 0]
    out: list[tuple[int, int]] = []
    for ts in times:
        if out and out[-1][1] + step >= ts:
            out[-1] = (out[-1][0], ts)
        else:
            out.append((ts, ts))
    return out


# ------------------------------------------------------------------------------------------- the store


class _Store:
    def __init__(self, url: str, timeout: float) -> None:
        self.url, self.timeout = url.rstrip("/"), timeout

    def get(self, path: str, params: list[tuple[str, Any]]) -> Any:
        body = urllib.parse.urlencode(params).encode()
        try:
            with urllib.request.urlopen(f"{self.url}{path}", data=body, timeout=self.timeout) as resp:
                doc = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            try:
                detail = json.loads(detail).get("error", detail)
            except ValueError:
                pass
            raise RuntimeError(f"HTTP {exc.code}: {detail.strip()[:500]}") from None
        if doc.get("status") != "success":
            raise RuntimeError(str(doc.get("error") or doc)[:500])
        return doc["data"]

    def flush(self) -> None:
        """VictoriaMetrics shows a new series only after ~10 s unless told to flush; other stores: no-op."""
        try:
            with urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=self.timeout) as resp:
                resp.read()
        except (urllib.error.URLError, OSError):
            pass


_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(?P<match>.+?)\s*,\s*)?(?P<label>\w+)\s*\)\s*$", re.DOTALL)


def _variable_query(var: dict[str, Any]) -> str:
    q = var.get("query")
    return q.get("query", "") if isinstance(q, dict) else str(q or var.get("definition") or "")


# -------------------------------------------------------------------------------------------- the check


def check_queries(dashboard: dict[str, Any], store_url: str, run_id: str, start_ns: int, end_ns: int, *,
                  cases: list[str] | None = None, margin_s: int = 60, max_data_points: int = MAX_DATA_POINTS,
                  annotation_step: str | None = None, scrape_interval: str = "1s", flush: bool = True,
                  timeout: float = 30.0) -> list[QueryResult]:
    """Run every variable, panel target and annotation of a Prometheus-flavoured ``dashboard`` for
    ``run_id`` over ``start_ns``..``end_ns`` (widened by ``margin_s`` each side, as the Runs table's
    links do), with ``$case`` = All (or the given ``cases``), against ``store_url``'s Prometheus API.

    Never raises for a failing query: its ``QueryResult.error`` says why.  ``annotation_step``
    overrides the step Grafana would pick for the annotation (to check that regions do not depend on it).
    ``scrape_interval``: the data source's (the provisioned one's is 1s; Grafana's default 15s).
    Checked to pass on a run that has just ended, with the lab store's ``-search.latencyOffset=30s``.
    """
    store = _Store(store_url, timeout)
    if flush:
        store.flush()
    t0_ms = start_ns // 1_000_000 - margin_s * 1000
    t1_ms = end_ns // 1_000_000 + margin_s * 1000
    templating = dashboard.get("templating", {}).get("list", [])
    scrape = scrape_interval
    values: dict[str, str] = {"run_id": plain_escape(run_id)}
    results: list[QueryResult] = []

    # Variables first: Grafana resolves them before any panel query.
    for var in templating:
        if var.get("type") == "query":
            res, found = _run_variable(store, var, values, t0_ms, t1_ms)
            results.append(res)
            if var["name"] == "run_id" and run_id not in found and res.error is None:
                results[-1] = replace(res, error=f"run {run_id!r} is not among the variable's values {found[:10]}")
            if var["name"] == "case" and cases is not None:
                values["case"] = _alternation(cases)
            elif var.get("multi") or var.get("includeAll"):  # All selected: its custom value, or every value
                values[var["name"]] = var.get("allValue") or _alternation(found)
        elif var.get("type") in ("constant", "textbox", "custom"):
            values.setdefault(var["name"], str(var.get("query", "")))

    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            results.append(_run_target(store, panel, target, values, t0_ms, t1_ms, scrape, max_data_points))

    for anno in dashboard.get("annotations", {}).get("list", []):
        if anno.get("builtIn") or (anno.get("datasource") or {}).get("type") != "prometheus":
            continue
        results.append(_run_annotation(store, anno, values, t0_ms, t1_ms, scrape, max_data_points, annotation_step))
    return results


def _alternation(found: list[str]) -> str:
    """Grafana's multi-value formatting for PromQL: ``(a|b)`` of regex-escaped values."""
    escaped = [regex_escape(v) for v in found]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in dashboard.get("panels", []):
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def _run_variable(store: _Store, var: dict[str, Any], values: dict[str, str], t0_ms: int,
                  t1_ms: int) -> tuple[QueryResult, list[str]]:
    name = f"variable {var['name']}"
    text = substitute(_variable_query(var), values)
    m = _LABEL_VALUES.match(text)
    if not m:
        return QueryResult(name, text, error="not a label_values() query", kind="variable"), []
    params: list[tuple[str, Any]] = [("start", t0_ms / 1000), ("end", t1_ms / 1000)]
    if m.group("match"):
        params.append(("match[]", m.group("match")))
    try:
        found = sorted(store.get(f"/api/v1/label/{m.group('label')}/values", params))
    except (RuntimeError, OSError) as exc:
        return QueryResult(name, text, error=str(exc), kind="variable"), []
    if var.get("regex"):
        found = [v for v in found if re.search(var["regex"].strip("/"), v)]
    return QueryResult(name, text, series=len(found), points=len(found), labels=tuple({"value": v} for v in found),
                       kind="variable"), found


def _panel_range(panel: dict[str, Any], t0_ms: int, t1_ms: int) -> tuple[int, int]:
    tf = panel.get("timeFrom")
    if tf:  # a relative time of the panel's own ("30d"): that long, ending where the dashboard's range ends
        return t1_ms - interval_ms(tf.removeprefix("now-")), t1_ms
    return t0_ms, t1_ms


def _grafana_values(values: dict[str, str], step: int, scrape: str, range_ms: int) -> dict[str, str]:
    sc = interval_ms(scrape)
    return {**values, "__interval": format_interval(step), "__interval_ms": str(step),
            "__rate_interval": format_interval(max(step + sc, 4 * sc)),
            "__range": f"{range_ms // 1000}s", "__range_s": str(range_ms // 1000), "__range_ms": str(range_ms)}


def _run_target(store: _Store, panel: dict[str, Any], target: dict[str, Any], values: dict[str, str], t0_ms: int,
                t1_ms: int, scrape: str, max_data_points: int) -> QueryResult:
    title = f"{panel.get('title', '?')} [{target.get('refId', '?')}]"
    a, b = _panel_range(panel, t0_ms, t1_ms)
    min_interval = target.get("interval") or panel.get("interval") or scrape
    step = step_ms(b - a, min_interval, int(panel.get("maxDataPoints") or max_data_points))
    expr = substitute(target.get("expr", ""), _grafana_values(values, step, scrape, b - a))
    try:
        if target.get("instant") and not target.get("range"):
            data = store.get("/api/v1/query", [("query", expr), ("time", b / 1000)])
            series = data["result"] if data["resultType"] == "vector" else []
            return QueryResult(title, expr, series=len(series), points=len(series),
                               labels=tuple(s["metric"] for s in series), step_s=step / 1000)
        data = _query_range(store, expr, a, b, step)
    except (RuntimeError, OSError, KeyError) as exc:
        return QueryResult(title, expr, error=str(exc), step_s=step / 1000)
    return QueryResult(title, expr, series=len(data), points=sum(len(s["values"]) for s in data),
                       labels=tuple(s["metric"] for s in data), step_s=step / 1000)


def _query_range(store: _Store, expr: str, a: int, b: int, step: int) -> list[dict[str, Any]]:
    start, end = a // step * step, b // step * step  # Grafana floors both ends to the step
    data = store.get("/api/v1/query_range", [("query", expr), ("start", start / 1000), ("end", end / 1000),
                                             ("step", step / 1000)])
    if data["resultType"] != "matrix":
        raise RuntimeError(f"expected a matrix, got {data['resultType']}")
    return data["result"]


def _run_annotation(store: _Store, anno: dict[str, Any], values: dict[str, str], t0_ms: int, t1_ms: int,
                    scrape: str, max_data_points: int, step_override: str | None) -> QueryResult:
    title = f"annotation {anno.get('name', '?')}"
    target = anno.get("target") or {}
    min_step = step_override or target.get("interval") or anno.get("step") or scrape
    step = step_ms(t1_ms - t0_ms, min_step, max_data_points) if step_override is None else interval_ms(min_step)
    expr = substitute(target.get("expr") or anno.get("expr", ""), _grafana_values(values, step, scrape, t1_ms - t0_ms))
    try:
        data = _query_range(store, expr, t0_ms, t1_ms, step)
    except (RuntimeError, OSError, KeyError) as exc:
        return QueryResult(title, expr, error=str(exc), kind="annotation", step_s=step / 1000)
    found: list[tuple[int, int, dict[str, str]]] = []
    for s in data:
        samples = [(int(float(t) * 1000), float(v)) for t, v in s["values"]]
        for r in regions(samples, step, bool(anno.get("useValueForTime"))):
            found.append((r[0], r[1], s["metric"]))
    return QueryResult(title, expr, series=len(data), points=sum(len(s["values"]) for s in data),
                       labels=tuple(s["metric"] for s in data), regions=tuple(sorted(found, key=lambda r: r[:2])),
                       kind="annotation", step_s=step / 1000)
