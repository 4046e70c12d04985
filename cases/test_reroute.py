"""ASON reroute: the working fiber is cut with 1+1 protection locked out, and the optical control
plane restores the service on a longer restoration path.

Test plan
- Set up: ``pp-remote`` at 8:1 (gateway shaping); protection locked out on the OTN terminal
  for the whole run (so the cut is not absorbed by SNCP); the service probe streams across the
  sites through the steady window and the cut (a second stream through the after window).
- Inject: loss of signal on the working path when the iteration after the
  steady window starts; the fault waits until ASON has restored the service on the restoration
  path, and stays ``after`` iterations before the repair and revert (on a job of its own: until
  the job ends).
- Measure: restoration time (the probe's disruption), the new path's length and delay, the
  affected iterations, the worst iteration, the outcome (completed or interrupted).
- Reference: one iteration affected; in some runs training is interrupted (probably key frames
  lost during the switch).
"""

import pytest

pytestmark = [pytest.mark.scenario("reroute"),
              pytest.mark.needs("cross_site", "convergence_shaping", "restoration_path", "probe")]


def test_ason_reroute(case, params, baseline, faults, probe):
    base = baseline(params["placement"])
    conditions = [faults.convergence(params["ratio"]), faults.protection_lockout()]
    run = case.run(params["placement"], conditions=conditions, fault=faults.fiber_cut(), hold=None, probe=True)
    case.conclude(run, base, case.fault_metrics(run, base))
