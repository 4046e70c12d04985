"""Bandwidth drop: the OTN line rate falls from 800G to 400G during training.

Test plan
- Set up: the unshaped WAN (4:1); ``pp-remote`` and ``dp-remote``.
- Inject: both OTN terminals to 400G (Flex-O step, edit + confirmed commit, read back) when the
  iteration after the steady window starts; it stays ``after`` iterations, then the line goes back
  to 800G (on a job of its own, ``jobs: per-case``: until the job ends).
- Measure: iteration times before, at and after the drop; the affected iterations (slower than
  the steady window's noise band), the worst one's efficiency (steady median / its time), the
  mean efficiency after the drop, recovery time.
- Reference: PP-remote: mean iteration 10.84 s, essentially no impact; DP-remote: one iteration
  rises to 15.25 s (efficiency -38.5 %), then recovers.
"""

import pytest

pytestmark = [pytest.mark.scenario("bandwidth_drop"), pytest.mark.needs("cross_site", "rate_change")]


def test_bandwidth_drop(case, params, baseline, faults):
    base = baseline(params["placement"])
    run = case.run(params["placement"], fault=faults.bandwidth_drop(params["to_gbps"]), hold=None)
    case.conclude(run, base, case.fault_metrics(run, base))
