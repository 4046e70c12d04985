"""The dcilab trial dashboard, described once: panels, what each shows, where it sits.

Both dashboards (InfluxDB 2.x with Flux, VictoriaMetrics with MetricsQL) are rendered from this
description by :mod:`.flux` and :mod:`.promql`, so they stay the same dashboard: same panels, titles,
units, layout and column names; only the query language differs.

Queries are described by *what* they read (measurement, field, per-case or per-run), never as query
text.  Two time windows exist:

* ``view``: the dashboard's time range (iterations, faults);
* ``case``: the time range plus up to a day after it, because a case's result (``dcilab_case``) is
  written when the case ends: zoomed in on a fault in the middle of a case, its per-case numbers
  still show.
"""

from __future__ import annotations

from dataclasses import dataclass

from testbed.metrics.schema import CASE, FAULT, ITERATION, PROBE

VIEW, CASE_WINDOW = "view", "case"


# ------------------------------------------------------------------------------------------- queries


@dataclass(frozen=True)
class PerCaseSeries:
    """One iteration field over time, one series per case; ``agg`` picks the worst iteration of each
    interval (max for a duration, min for a rate) so that zooming out never hides a slow iteration."""

    measurement: str
    field: str
    agg: str


@dataclass(frozen=True)
class EfficiencySeries:
    """Equivalent compute of each iteration: the case's baseline (``dcilab_case.baseline_s``) over the
    slowest iteration of each interval, one series per case."""

    measurement: str = ITERATION
    field: str = "duration_s"
    baseline_measurement: str = CASE
    baseline_field: str = "baseline_s"


@dataclass(frozen=True)
class PerCaseValue:
    """One number per case (bar gauge), over the ``case`` window."""

    measurement: str
    field: str
    agg: str  # max or last


@dataclass(frozen=True)
class Column:
    """A numeric column of a table; ``divide`` turns ns into ms for the time columns."""

    field: str
    title: str
    unit: str
    divide: float = 1.0


@dataclass(frozen=True)
class Table:
    """One row per distinct ``labels`` (tags) of a measurement, one column per field."""

    measurement: str
    labels: tuple[str, ...]
    columns: tuple[Column, ...]
    window: str = VIEW
    require: str | None = None  # only rows where this field exists (e.g. closed faults: end_ns)


@dataclass(frozen=True)
class RunsTable:
    """Every run in the panel's time range with its first and last iteration (ms, with a margin) and
    its iteration count; a link on the run id opens the dashboard on that run and its time range."""

    measurement: str = ITERATION
    field: str = "step"
    margin_before_s: int = 30
    margin_after_s: int = 60
    columns: tuple[Column, ...] = (Column("start", "start", "dateTimeAsIso"), Column("end", "end", "dateTimeAsIso"),
                                   Column("iterations", "iterations", "none"))


Query = PerCaseSeries | EfficiencySeries | PerCaseValue | Table | RunsTable


# -------------------------------------------------------------------------------------------- panels


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    kind: str                      # timeseries, bargauge, table
    query: Query
    grid: tuple[int, int, int, int]  # x, y, w, h
    unit: str = "none"
    min: float | None = None
    max: float | None = None
    thresholds: tuple[tuple[str, float | None], ...] = (("green", None),)
    per_run: bool = True           # filtered by $run_id (and $case); False only for the runs list
    time_from: str | None = None   # a relative time of the panel's own (the runs list looks back further)


EQUIVALENT_COMPUTE_THRESHOLDS = (("red", None), ("orange", 0.8), ("green", 0.95))

CASE_COLUMNS = (
    Column("equivalent_compute", "equivalent compute", "percentunit"),
    Column("mean_efficiency", "mean efficiency", "percentunit"),
    Column("worst_efficiency", "worst efficiency", "percentunit"),
    Column("baseline_s", "baseline", "s"),
    Column("median_s", "steady median", "s"),
    Column("affected_iterations", "affected iterations", "none"),
    Column("disruption_ms", "service disruption", "ms"),
    Column("iterations", "iterations", "none"),
)

FAULT_COLUMNS = (
    Column("start_ns", "start", "dateTimeAsIso", divide=1e6),
    Column("end_ns", "end", "dateTimeAsIso", divide=1e6),
    Column("duration_s", "duration", "s"),
)

PANELS: tuple[Panel, ...] = (
    Panel("Runs", "Every run of the last 30 days with iterations in the store, newest first. Click a run id to "
          "open this dashboard on that run and its time range.",
          "table", RunsTable(), (0, 0, 24, 5), per_run=False, time_from="30d"),
    Panel("Iteration time", "The slowest iteration of each interval, per case (warm-up included). Shaded "
          "regions: faults (kind, target and case in the tooltip).",
          "timeseries", PerCaseSeries(ITERATION, "duration_s", "max"), (0, 5, 24, 9), unit="s"),
    Panel("Equivalent compute per iteration", "The case's baseline iteration time (dcilab_case.baseline_s) over "
          "the slowest iteration of each interval: 100 % is as fast as the unimpaired testbed. Shown once the "
          "case has concluded (its result carries the baseline).",
          "timeseries", EfficiencySeries(), (0, 14, 12, 8), unit="percentunit", min=0,
          thresholds=EQUIVALENT_COMPUTE_THRESHOLDS),
    Panel("Tokens/s", "Training throughput: the slowest iteration of each interval, per case.",
          "timeseries", PerCaseSeries(ITERATION, "tokens_per_s", "min"), (12, 14, 12, 8), unit="suffix: tok/s",
          min=0),
    Panel("Equivalent compute per case", "The trial's metric: baseline iteration time / iteration time while "
          "the fault was on (or the setting's median for a convergence-ratio case), from dcilab_case.",
          "bargauge", PerCaseValue(CASE, "equivalent_compute", "last"), (0, 22, 12, 8), unit="percentunit",
          min=0, max=1.2, thresholds=EQUIVALENT_COMPUTE_THRESHOLDS),
    Panel("Service disruption per case", "Probe traffic between the sites: service disruption time by the loss "
          "method (lost frames / rate), the largest of the case's probe results (dcilab_probe.sdt_loss_ms).",
          "bargauge", PerCaseValue(PROBE, "sdt_loss_ms", "max"), (12, 22, 12, 8), unit="ms", min=0,
          thresholds=(("green", None), ("orange", 50), ("red", 1000))),
    Panel("Cases", "One row per concluded case (dcilab_case): verdict and the trial's metrics.",
          "table", Table(CASE, ("case", "scenario", "placement", "verdict"), CASE_COLUMNS, window=CASE_WINDOW),
          (0, 30, 24, 8)),
    Panel("Faults", "Every fault and condition applied and undone in the time range (dcilab_fault).",
          "table", Table(FAULT, ("case", "kind", "target"), FAULT_COLUMNS, require="end_ns"), (0, 38, 24, 7)),
)


# ------------------------------------------------------------------------------- variables, annotation


@dataclass(frozen=True)
class FaultAnnotation:
    """Fault windows as region annotations: from ``start_ns`` to ``end_ns`` of each ``dcilab_fault`` point."""

    name: str = "Faults"
    measurement: str = FAULT
    start_field: str = "start_ns"
    end_field: str = "end_ns"
    title_labels: tuple[str, ...] = ("kind", "target")
    tag_labels: tuple[str, ...] = ("kind", "case")
    color: str = "rgba(255, 96, 96, 0.35)"


ANNOTATION = FaultAnnotation()

#: The variable listing runs, newest first (run ids start with a UTC timestamp), and the one listing
#: the selected run's cases.
RUN_VAR, CASE_VAR = "run_id", "case"
RUN_SOURCE = (ITERATION, "step")   # a field every iteration has: its series list every run and case

TITLE = "dcilab field trial"
DESCRIPTION = ("dcilab's field-trial metrics for one run: iteration time, equivalent compute, throughput, "
               "service disruption, per-case results and fault windows. Pick the run with the run_id variable "
               "or from the Runs table.")
TAGS = ("dcilab", "field-trial")
TIME_FROM = "now-3h"
