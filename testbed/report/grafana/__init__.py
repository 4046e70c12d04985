"""Grafana dashboards for dcilab's metrics: one layout (:mod:`.layout`) rendered for InfluxDB 2.x
(Flux, real labs) and for the emulated lab's VictoriaMetrics (PromQL/MetricsQL), with provisioning
files; ``python -m testbed.report.grafana [--check]`` writes (or checks) ``grafana/``.

:func:`check_queries` runs a Prometheus-flavoured dashboard's queries against a store, as Grafana
would, so a test can tell that every panel shows data after a run.
"""

from testbed.report.grafana.check import QueryResult, check_queries
from testbed.report.grafana.dashboard import FLAVORS, INFLUXDB, VICTORIAMETRICS, Flavor, build
from testbed.report.grafana.files import render, stale, write

__all__ = ["FLAVORS", "INFLUXDB", "VICTORIAMETRICS", "Flavor", "QueryResult", "build", "check_queries", "render",
           "stale", "write"]
