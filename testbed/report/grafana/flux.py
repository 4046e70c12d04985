"""The layout's queries in Flux, for InfluxDB 2.x (Grafana type ``influxdb`` in Flux mode).

Every query reads ``from(bucket: "${bucket}")`` (a dashboard variable, default ``dcilab``) over
``v.timeRangeStart``..``v.timeRangeStop`` (widened where a case's result or a fault's start lies
outside the view), filters on ``$run_id`` and on ``$case`` (``${case:json}``: a Flux array of the
selected cases, every case when All is selected).  Fields of different types (int and float) are
cast to float before tables are merged, or Flux refuses the merge ("schema collision").
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

DS_TYPE = "influxdb"
DS_UID = "dcilab-influxdb"
DATASOURCE = {"type": DS_TYPE, "uid": DS_UID}
BUCKET_VAR, BUCKET = "bucket", "dcilab"

RANGE = "range(start: v.timeRangeStart, stop: v.timeRangeStop)"
#: The ``case`` window: a case's result is written when it ends, up to a day after the view.
CASE_RANGE = "range(start: v.timeRangeStart, stop: date.add(d: 1d, to: v.timeRangeStop))"


def _from(rng: str = RANGE) -> str:
    return f'from(bucket: "${{{BUCKET_VAR}}}")\n  |> {rng}'


def _filter(measurement: str, fields: tuple[str, ...] = (), per_run: bool = True) -> str:
    cond = f'r._measurement == "{measurement}"'
    if len(fields) == 1:
        cond += f' and r._field == "{fields[0]}"'
    elif fields:
        cond += " and contains(value: r._field, set: [" + ", ".join(f'"{f}"' for f in fields) + "])"
    out = f"\n  |> filter(fn: (r) => {cond})"
    if per_run:
        out += (f'\n  |> filter(fn: (r) => r.{RUN_VAR} == "${{{RUN_VAR}}}")'
                f"\n  |> filter(fn: (r) => contains(value: r.{CASE_VAR}, set: ${{{CASE_VAR}:json}}))")
    return out


def _q(text: str, imports: tuple[str, ...] = ()) -> str:
    return "".join(f'import "{i}"\n' for i in imports) + ("\n" if imports else "") + text


def targets(panel: Panel) -> list[dict[str, Any]]:
    q = panel.query
    if isinstance(q, PerCaseSeries):
        text = (_from() + _filter(q.measurement, (q.field,))
                + f'\n  |> group(columns: ["{CASE_VAR}"])'
                + f"\n  |> aggregateWindow(every: v.windowPeriod, fn: {q.agg}, createEmpty: false)")
        return [_target(_q(text))]
    if isinstance(q, EfficiencySeries):
        text = ("baseline = " + _from("range(start: date.sub(d: 1d, from: v.timeRangeStart), "
                                      "stop: date.add(d: 1d, to: v.timeRangeStop))")
                + _filter(q.baseline_measurement, (q.baseline_field,))
                + f'\n  |> group(columns: ["{CASE_VAR}"])\n  |> last()'
                + f'\n  |> keep(columns: ["{CASE_VAR}", "_value"])'
                + '\n  |> rename(columns: {_value: "baseline"})\n'
                + "iterations = " + _from() + _filter(q.measurement, (q.field,))
                + f'\n  |> group(columns: ["{CASE_VAR}"])'
                + "\n  |> aggregateWindow(every: v.windowPeriod, fn: max, createEmpty: false)"
                + "\n  |> filter(fn: (r) => r._value > 0.0)\n"
                + f'join(tables: {{it: iterations, base: baseline}}, on: ["{CASE_VAR}"])'
                + f"\n  |> map(fn: (r) => ({{_time: r._time, {CASE_VAR}: r.{CASE_VAR},"
                + " _value: r.baseline / r._value}))"
                + f'\n  |> group(columns: ["{CASE_VAR}"])')
        return [_target(_q(text, ("date",)))]
    if isinstance(q, PerCaseValue):
        text = (_from(CASE_RANGE) + _filter(q.measurement, (q.field,))
                + "\n  |> toFloat()"
                + f'\n  |> group(columns: ["{CASE_VAR}"])\n  |> {q.agg}()'
                + f'\n  |> keep(columns: ["{CASE_VAR}", "_value"])')
        return [_target(_q(text, ("date",)))]
    if isinstance(q, Table):
        return [_target(_q(_table(q), ("date",) if q.window == CASE_WINDOW else ()), fmt="table")]
    if isinstance(q, RunsTable):
        text = (_from() + _filter(q.measurement, (q.field,), per_run=False)
                + f'\n  |> group(columns: ["{RUN_VAR}"])'
                + "\n  |> map(fn: (r) => ({r with t: int(v: r._time) / 1000000}))"
                + "\n  |> reduce(identity: {first: 0, last: 0, n: 0}, fn: (r, accumulator) => ({"
                + "\n      first: if accumulator.n == 0 or r.t < accumulator.first then r.t else accumulator.first,"
                + "\n      last: if r.t > accumulator.last then r.t else accumulator.last,"
                + "\n      n: accumulator.n + 1}))"
                + f"\n  |> map(fn: (r) => ({{{RUN_VAR}: r.{RUN_VAR}, start: r.first - {q.margin_before_s * 1000},"
                + f" end: r.last + {q.margin_after_s * 1000}, iterations: r.n}}))"
                + '\n  |> group()\n  |> sort(columns: ["start"], desc: true)')
        return [_target(_q(text), fmt="table")]
    raise TypeError(f"no Flux for {q!r}")


def _table(q: Table) -> str:
    """One row per point (pivoted on its timestamp) within each combination of ``labels``."""
    names = tuple(dict.fromkeys(c.field for c in q.columns))
    by = ", ".join(f'"{x}"' for x in q.labels)
    text = _from(CASE_RANGE if q.window == CASE_WINDOW else RANGE) + _filter(q.measurement, names)
    if q.window == CASE_WINDOW:
        text += "\n  |> last()"  # the case's result: one point per case; a re-run's wins
    text += "\n  |> toFloat()"
    for divide in sorted({c.divide for c in q.columns if c.divide != 1}):
        scaled = ", ".join(f'"{c.field}"' for c in q.columns if c.divide == divide)
        text += (f"\n  |> map(fn: (r) => ({{r with _value: if contains(value: r._field, set: [{scaled}]) "
                 f"then r._value / {divide:.1f} else r._value}}))")
    text += (f"\n  |> group(columns: [{by}])"
             '\n  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")')
    if q.require:
        text += f"\n  |> filter(fn: (r) => exists r.{q.require})"
    keep = ", ".join(f'"{x}"' for x in (*q.labels, *names))
    text += f"\n  |> group()\n  |> keep(columns: [{keep}])"
    return text


def _target(query: str, fmt: str = "time_series") -> dict[str, Any]:
    t: dict[str, Any] = {"datasource": DATASOURCE, "query": query, "refId": "A"}
    if fmt == "table":
        t["resultFormat"] = "table"
    return t


def table_columns(panel: Panel) -> tuple[tuple[str, ...], list[tuple[str, Column]]]:
    """(label columns, [(the column's name in the query result, column)]) of a table panel."""
    q = panel.query
    if isinstance(q, RunsTable):
        return (RUN_VAR,), [(c.field, c) for c in q.columns]
    return q.labels, [(c.field, c) for c in q.columns]


def run_link_params() -> str:
    """What a link to another run keeps of this dashboard's variables."""
    return f"&var-{BUCKET_VAR}=${{{BUCKET_VAR}}}"


def variables() -> list[dict[str, Any]]:
    m, _ = RUN_SOURCE
    runs = (f'import "influxdata/influxdb/schema"\n\nschema.tagValues(bucket: "${{{BUCKET_VAR}}}", tag: "{RUN_VAR}", '
            f'predicate: (r) => r._measurement == "{m}", start: v.timeRangeStart, stop: v.timeRangeStop)')
    cases = (f'import "influxdata/influxdb/schema"\n\nschema.tagValues(bucket: "${{{BUCKET_VAR}}}", tag: "{CASE_VAR}", '
             f'predicate: (r) => r._measurement == "{m}" and r.{RUN_VAR} == "${{{RUN_VAR}}}", '
             "start: v.timeRangeStart, stop: v.timeRangeStop)")
    return [
        {"current": {"selected": False, "text": BUCKET, "value": BUCKET}, "description":
         "The InfluxDB bucket dcilab writes to (inventory: metrics.bucket).", "hide": 0, "label": "bucket",
         "name": BUCKET_VAR, "options": [{"selected": True, "text": BUCKET, "value": BUCKET}], "query": BUCKET,
         "skipUrlSync": False, "type": "textbox"},
        _query_variable(RUN_VAR, "run", runs, sort=2, multi=False,
                        description="The run to show (newest first: run ids start with their UTC start time)."),
        _query_variable(CASE_VAR, "case", cases, sort=1, multi=True,
                        description="Cases of the selected run (baselines included)."),
    ]


def _query_variable(name: str, label: str, query: str, *, sort: int, multi: bool, description: str) -> dict[str, Any]:
    return {
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]} if multi else {},
        "datasource": DATASOURCE, "definition": query, "description": description, "hide": 0,
        "includeAll": multi, "label": label, "multi": multi, "name": name, "options": [], "query": query,
        "refresh": 2, "regex": "", "skipUrlSync": False, "sort": sort, "type": "query",
    }


def annotation_query() -> str:
    """Each closed fault overlapping the view as one row: ``time`` = start, ``timeEnd`` = end (a region).

    Read from a day before the view so that a fault that started earlier and ends inside still shows."""
    a = ANNOTATION
    return _q(
        _from("range(start: date.sub(d: 1d, from: v.timeRangeStart), stop: v.timeRangeStop)")
        + _filter(a.measurement, (a.start_field, a.end_field))
        + '\n  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")'
        + f"\n  |> filter(fn: (r) => exists r.{a.end_field} and r.{a.end_field} >= int(v: v.timeRangeStart))"
        + "\n  |> map(fn: (r) => ({"
        + f"\n      time: time(v: r.{a.start_field}), timeEnd: time(v: r.{a.end_field}),"
        + '\n      title: r.kind + " on " + r.target,'
        + f'\n      text: (if exists r.{CASE_VAR} then r.{CASE_VAR} + ": " else "") + r.kind + " on " + r.target,'
        + f'\n      tags: r.kind + (if exists r.{CASE_VAR} then "," + r.{CASE_VAR} else "")}}))'
        + "\n  |> group()",
        ("date",))


def annotation() -> dict[str, Any]:
    a = ANNOTATION
    return {
        "datasource": DATASOURCE, "enable": True, "hide": False, "iconColor": a.color, "name": a.name,
        "mappings": {k: {"source": "field", "value": k} for k in ("tags", "text", "time", "timeEnd", "title")},
        "target": {"query": annotation_query(), "refId": "Anno"},
    }
