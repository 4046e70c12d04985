"""Training jobs on the inventory's GPU nodes: launch (torchrun per node, c10d), stream iteration
events, watch and classify (completed / interrupted / stalled), and stop for sure.

    with TrainingJob(inv, ["dc-a-gpu1", "dc-a-gpu2", "dc-b-gpu1", "dc-b-gpu2"],
                     ["--model", "test", "--pp", "2", "--dp", "2", "--placement", "pp-remote", "--steps", "20"],
                     run_id="r1", pg_timeout_s=10) as job:
        job.wait_for_iteration_start(5, timeout=60)   # inject a fault here
        outcome = job.wait()
"""

from testbed.jobs.events import (CONNECTION_RESET, NODE_START, PG_TIMEOUT, RANK_EXIT, RENDEZVOUS, STALLED,
                                 STARTUP, IterationEvent, IterationParser, JsonLineParser, MegatronParser,
                                 NodeEvidence, classify, evidence_complete, scan_line)
from testbed.jobs.launcher import (COMPLETED, INTERRUPTED, JobEnded, JobError, JobOutcome, NodeSpec, TrainingJob,
                                   node_specs, torchrun_workers)

__all__ = [
    "COMPLETED", "CONNECTION_RESET", "INTERRUPTED", "NODE_START", "PG_TIMEOUT", "RANK_EXIT", "RENDEZVOUS", "STALLED",
    "STARTUP", "IterationEvent", "IterationParser", "JobEnded", "JobError", "JobOutcome", "JsonLineParser",
    "MegatronParser", "NodeEvidence", "NodeSpec", "TrainingJob", "classify", "evidence_complete", "node_specs",
    "scan_line", "torchrun_workers",
]
