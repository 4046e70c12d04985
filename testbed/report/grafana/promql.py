"""The layout's queries in MetricsQL, for the emulated lab's VictoriaMetrics (Grafana type ``prometheus``).

VictoriaMetrics stores field ``f`` of measurement ``m`` as the series ``m_f`` with the tags as labels.
Every query here is plain PromQL except the fault annotation, which needs MetricsQL's ``step()`` and
``WITH`` (see :func:`annotation`).
"""

from __future__ import annotations

from typing import Any

from testbed.report.grafana.layout import (
    ANNOTATION,
    CASE_VAR,
    CASE_WINDOW,
    RUN_SOURCE,
    RUN_VAR,
    Column,
    EfficiencySeries,
    Panel,
    PerCaseSeries,
    PerCaseValue,
    RunsTable,
    Table,
)

DS_TYPE = "prometheus"
DS_UID = "dcilab-victoriametrics"
DATASOURCE = {"type": DS_TYPE, "uid": DS_UID}
#: Grafana's annotation "min step"; any step gives exact fault windows (see annotation()).
ANNOTATION_STEP = "1s"


def metric(measurement: str, field: str) -> str:
    return f"{measurement}_{field}"


def selector(measurement: str, field: str, per_run: bool = True) -> str:
    flt = f'{{{RUN_VAR}="${RUN_VAR}", {CASE_VAR}=~"${CASE_VAR}"}}' if per_run else ""
    return metric(measurement, field) + flt


def over(fn: str, sel: str, window: str) -> str:
    """``fn_over_time`` of ``sel`` over the view (``[$__range]`` at the range's end) or, for the ``case``
    window, the view or failing that the day after it (a case's result is written at its end)."""
    view = f"{fn}_over_time({sel}[$__range])"
    if window != CASE_WINDOW:
        return view
    return f"({view} or {fn}_over_time({sel}[1d] offset -1d))"


def _table_targets(labels: tuple[str, ...], exprs: list[str]) -> list[dict[str, Any]]:
    return [{"datasource": DATASOURCE, "editorMode": "code", "expr": e, "format": "table", "instant": True,
             "legendFormat": "__auto", "range": False, "refId": _ref(i)} for i, e in enumerate(exprs)]


def _ref(i: int) -> str:
    return chr(ord("A") + i)


def targets(panel: Panel) -> list[dict[str, Any]]:
    q = panel.query
    if isinstance(q, PerCaseSeries):
        expr = f"{q.agg} by ({CASE_VAR}) ({q.agg}_over_time({selector(q.measurement, q.field)}[$__interval]))"
        return [_range_target(expr)]
    if isinstance(q, EfficiencySeries):
        base = f"last_over_time({selector(q.baseline_measurement, q.baseline_field)}[2d] offset -1d)"
        it = f"max_over_time({selector(q.measurement, q.field)}[$__interval])"
        expr = f"max by ({CASE_VAR}) ({base})\n  / on ({CASE_VAR})\nmax by ({CASE_VAR}) ({it})"
        return [_range_target(expr)]
    if isinstance(q, PerCaseValue):
        expr = f"max by ({CASE_VAR}) ({over(q.agg, selector(q.measurement, q.field), CASE_WINDOW)})"
        return [{"datasource": DATASOURCE, "editorMode": "code", "expr": expr, "format": "time_series",
                 "instant": True, "legendFormat": "{{" + CASE_VAR + "}}", "range": False, "refId": "A"}]
    if isinstance(q, Table):
        by = ", ".join(q.labels)
        exprs = []
        for c in q.columns:
            e = f"max by ({by}) ({over('last', selector(q.measurement, c.field), q.window)})"
            if c.divide != 1:
                e = f"{e} / {c.divide:g}"
            if q.require:
                req = over("last", selector(q.measurement, q.require), q.window)
                e = f"({e})\n  and on ({by})\nmax by ({by}) ({req})"
            exprs.append(e)
        return _table_targets(q.labels, exprs)
    if isinstance(q, RunsTable):
        sel = f"{metric(q.measurement, q.field)}[$__range]"
        exprs = [f"(min by ({RUN_VAR}) (tfirst_over_time({sel})) - {q.margin_before_s}) * 1000",
                 f"(max by ({RUN_VAR}) (tlast_over_time({sel})) + {q.margin_after_s}) * 1000",
                 f"sum by ({RUN_VAR}) (count_over_time({sel}))"]
        return _table_targets((RUN_VAR,), exprs)
    raise TypeError(f"no MetricsQL for {q!r}")


def _range_target(expr: str) -> dict[str, Any]:
    return {"datasource": DATASOURCE, "editorMode": "code", "expr": expr, "format": "time_series", "instant": False,
            "legendFormat": "{{" + CASE_VAR + "}}", "range": True, "refId": "A"}


def table_columns(panel: Panel) -> tuple[tuple[str, ...], list[tuple[str, Column]]]:
    """(label columns, [(the column's name in the query result, column)]) of a table panel."""
    q = panel.query
    labels = (RUN_VAR,) if isinstance(q, RunsTable) else q.labels
    return labels, [(f"Value #{_ref(i)}", c) for i, c in enumerate(q.columns)]


def variables() -> list[dict[str, Any]]:
    src = metric(*RUN_SOURCE)
    return [
        _query_variable(RUN_VAR, "run", f"label_values({src}, {RUN_VAR})", sort=2, multi=False,
                        description="The run to show (newest first: run ids start with their UTC start time)."),
        _query_variable(CASE_VAR, "case", f'label_values({src}{{{RUN_VAR}="${RUN_VAR}"}}, {CASE_VAR})', sort=1,
                        multi=True, description="Cases of the selected run (baselines included)."),
    ]


def _query_variable(name: str, label: str, query: str, *, sort: int, multi: bool, description: str) -> dict[str, Any]:
    v: dict[str, Any] = {
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]} if multi else {},
        "datasource": DATASOURCE, "definition": query, "description": description, "hide": 0,
        "includeAll": multi, "label": label, "multi": multi, "name": name, "options": [],
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},  # as the editor saves it
        "refresh": 2, "regex": "", "skipUrlSync": False, "sort": sort, "type": "query",
    }
    if multi:
        v["allValue"] = ".*"
    return v


def annotation_expr() -> str:
    """Each fault's window as a series whose *values* are timestamps (ms) walking from its start to its end.

    Grafana's Prometheus annotations turn a series into region annotations: with "Series value as
    timestamp" (``useValueForTime``) each sample's value is taken as a time, and consecutive times at
    most one query step apart are merged into one region from the first to the last.  At each step t
    on or after the fault's start (seen through ``last_over_time``) the value is ``start + k * step``,
    k the number of whole steps since the start, clamped to ``end``: the first step gives exactly
    ``start``, each next one advances by one step, and once past the end it stays ``end``.  So the
    region is exactly [start, end] to the millisecond, whatever the step, even for a fault shorter
    than one step -- provided the range has a step at or after ``start + ceil((end - start) / step)
    * step``; a fault that ended in the last step or two of the view is drawn up to there.  A fault
    still open (no ``end_ns`` yet) shows nothing.  ``round``: the store keeps ``start_ns`` as a
    float64 (~256 ns off), and Grafana floors the value, which would put the start 1 ms early.
    """
    a = ANNOTATION
    flt = f'{RUN_VAR}="${RUN_VAR}", {CASE_VAR}=~"${CASE_VAR}"'
    return (
        "WITH (\n"
        f"  s = round(last_over_time({metric(a.measurement, a.start_field)}{{{flt}}}[1d]) / 1e6),\n"
        f"  e = round(last_over_time({metric(a.measurement, a.end_field)}{{{flt}}}[1d]) / 1e6),\n"
        "  m = s + clamp_min(floor((time() * 1e3 - s) / (step() * 1e3)), 0) * step() * 1e3\n"
        ")\n"
        "(m - clamp_min(m - e, 0)) and (e >= s)"
    )


def annotation() -> dict[str, Any]:
    a = ANNOTATION
    expr = annotation_expr()
    return {
        "datasource": DATASOURCE, "enable": True, "expr": expr, "hide": False, "iconColor": a.color,
        "name": a.name, "step": ANNOTATION_STEP, "tagKeys": ",".join(a.tag_labels),
        "target": {"expr": expr, "interval": ANNOTATION_STEP, "refId": "Anno"},
        "textFormat": "{{case}}: {{kind}} on {{target}}",
        "titleFormat": " ".join("{{" + x + "}}" for x in a.title_labels), "useValueForTime": True,
    }
