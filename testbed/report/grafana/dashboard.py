"""Render :mod:`.layout` into Grafana dashboard JSON for one query dialect (:mod:`.flux` or :mod:`.promql`).

The dialect supplies the data source, the targets of each panel, the variables and the fault
annotation; everything else (panel kinds, units, thresholds, tables' column titles, links) is
built here once, so the two dashboards differ only in their queries.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

from testbed.report.grafana import flux, promql
from testbed.report.grafana.layout import (
    CASE_VAR,
    DESCRIPTION,
    PANELS,
    RUN_VAR,
    TAGS,
    TIME_FROM,
    TITLE,
    Panel,
    RunsTable,
)

SCHEMA_VERSION = 39  # Grafana 10.4 / 11.x


@dataclass(frozen=True)
class Flavor:
    """One of the two dashboards: where it reads from and which dialect writes its queries."""

    name: str            # file stem: grafana/dashboards/dcilab-trial-<name>.json
    uid: str
    store: str           # shown in the title
    dialect: ModuleType


INFLUXDB = Flavor("influxdb", "dcilab-trial-flux", "InfluxDB", flux)
VICTORIAMETRICS = Flavor("victoriametrics", "dcilab-trial-prom", "VictoriaMetrics", promql)
FLAVORS: tuple[Flavor, ...] = (INFLUXDB, VICTORIAMETRICS)


def build(flavor: Flavor) -> dict[str, Any]:
    """The whole dashboard as a dict (``json.dumps(..., indent=2)`` of it is the file)."""
    d = flavor.dialect
    return {
        "annotations": {"list": [_builtin_annotation(), d.annotation()]},
        "description": DESCRIPTION,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,  # shared crosshair: line iteration times up across panels
        "id": None,
        "links": [],
        "panels": [_panel(i + 1, p, flavor) for i, p in enumerate(PANELS)],
        "refresh": "",
        "schemaVersion": SCHEMA_VERSION,
        "tags": list(TAGS),
        "templating": {"list": d.variables()},
        "time": {"from": TIME_FROM, "to": "now"},
        "timepicker": {},
        "timezone": "",
        "title": f"{TITLE} ({flavor.store})",
        "uid": flavor.uid,
        "version": 1,
        "weekStart": "",
    }


def _builtin_annotation() -> dict[str, Any]:
    return {"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True, "hide": True,
            "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard"}


def _thresholds(p: Panel) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in p.thresholds]}


def _defaults(p: Panel, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"unit": p.unit, "thresholds": _thresholds(p), **extra}
    if p.min is not None:
        out["min"] = p.min
    if p.max is not None:
        out["max"] = p.max
    return out


def _panel(pid: int, p: Panel, flavor: Flavor) -> dict[str, Any]:
    x, y, w, h = p.grid
    out: dict[str, Any] = {"datasource": flavor.dialect.DATASOURCE, "description": p.description,
                           "gridPos": {"h": h, "w": w, "x": x, "y": y}, "id": pid, "title": p.title, "type": p.kind}
    if p.time_from:
        out["timeFrom"] = p.time_from
        out["hideTimeOverride"] = False
    if p.kind == "timeseries":
        out["interval"] = "1s"  # iterations last seconds: never average them away below a 1 s step
        out["fieldConfig"] = {"defaults": _defaults(
            p, color={"mode": "palette-classic"}, displayName=f"${{__field.labels.{CASE_VAR}}}",
            custom={"drawStyle": "line", "lineInterpolation": "stepAfter", "lineWidth": 1, "pointSize": 4,
                    "showPoints": "auto", "spanNulls": False, "fillOpacity": 0}), "overrides": []}
        out["options"] = {"legend": {"calcs": ["min", "max", "lastNotNull"], "displayMode": "table",
                                     "placement": "bottom", "showLegend": True},
                          "tooltip": {"mode": "multi", "sort": "desc"}}
    elif p.kind == "bargauge":
        out["fieldConfig"] = {"defaults": _defaults(p, color={"mode": "thresholds"},
                                                    displayName=f"${{__field.labels.{CASE_VAR}}}"), "overrides": []}
        out["options"] = {"displayMode": "gradient", "minVizHeight": 16, "minVizWidth": 0, "namePlacement": "left",
                          "orientation": "horizontal", "showUnfilled": True, "sizing": "auto", "valueMode": "color",
                          "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}
    elif p.kind == "table":
        out.update(_table(p, flavor))
    else:
        raise ValueError(f"{p.title}: unknown panel kind {p.kind!r}")
    out["targets"] = flavor.dialect.targets(p)
    return out


def _table(p: Panel, flavor: Flavor) -> dict[str, Any]:
    labels, columns = flavor.dialect.table_columns(p)
    order = [*labels, *(c.title for _, c in columns)]
    organize = {"excludeByName": {"Time": True},
                "indexByName": {name: i for i, name in enumerate(order)},
                "renameByName": {src: c.title for src, c in columns if src != c.title}}
    transformations: list[dict[str, Any]] = []
    if len(flavor.dialect.targets(p)) > 1:
        transformations.append({"id": "merge", "options": {}})  # one frame per column query: join them on the labels
    transformations.append({"id": "organize", "options": organize})
    overrides = [{"matcher": {"id": "byName", "options": c.title}, "properties": [{"id": "unit", "value": c.unit}]}
                 for _, c in columns if c.unit != "none"]
    if isinstance(p.query, RunsTable):
        overrides.append(_run_link(flavor))
        sort = [{"desc": True, "displayName": "start"}]
    else:
        sort = []
    return {"fieldConfig": {"defaults": {"custom": {"align": "auto", "cellOptions": {"type": "auto"}},
                                         "thresholds": _thresholds(p), "unit": p.unit}, "overrides": overrides},
            "options": {"cellHeight": "sm", "footer": {"show": False, "reducer": ["sum"], "fields": ""},
                        "showHeader": True, "sortBy": sort},
            "transformations": transformations}


def _run_link(flavor: Flavor) -> dict[str, Any]:
    """A click on a run id: this dashboard, that run, all its cases, its time range (with a margin)."""
    extra = getattr(flavor.dialect, "run_link_params", lambda: "")()
    url = (f"/d/{flavor.uid}?var-{RUN_VAR}=${{__value.raw}}&var-{CASE_VAR}=$__all{extra}"
           "&from=${__data.fields.start}&to=${__data.fields.end}")
    return {"matcher": {"id": "byName", "options": RUN_VAR},
            "properties": [{"id": "links", "value": [{"title": "Open this run", "url": url}]}]}


def panel_targets(dashboard: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(panel, target) for every target of every panel, rows' nested panels included."""
    out = []
    for panel in dashboard.get("panels", []):
        for sub in [panel, *panel.get("panels", [])]:
            for t in sub.get("targets", []):
                out.append((sub, t))
    return out
