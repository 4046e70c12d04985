"""dcilab's metrics: the schema of what goes to the InfluxDB-compatible store, and a writer that
never slows training and never loses a point (disk spool + replay).

    from testbed.metrics import Iteration, MetricsWriter
    with MetricsWriter(url, org, bucket, token, spool_dir, default_tags={"run_id": rid, "testbed": tb}) as w:
        w.write(Iteration(time_ns=t0, step=k, duration_s=dt, tokens_per_s=tps, loss=loss, warmup=k < 3))
"""

from testbed.metrics.schema import (
    CASE,
    FAULT,
    ITERATION,
    PROBE,
    CaseResult,
    FaultEvent,
    Iteration,
    ProbeResult,
    SchemaError,
    schema,
    to_line,
    to_point,
)
from testbed.metrics.spool import Spool
from testbed.metrics.writer import MetricsWriter, Pending, ReplayResult, health, replay

__all__ = [
    "CASE", "FAULT", "ITERATION", "PROBE", "CaseResult", "FaultEvent", "Iteration", "MetricsWriter", "Pending", "ProbeResult",
    "ReplayResult", "SchemaError", "Spool", "health", "replay", "schema", "to_line", "to_point",
]
