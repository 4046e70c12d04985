"""Protection switchover: the working fiber is cut and 1+1 protection (ODU SNCP) moves the
traffic to the protection path within the 50 ms class.

Test plan
- Set up: ``pp-remote`` at 8:1 (gateway shaping), as in the trial; the service probe streams
  from a GPU node of one site to one of the other through the steady window and the cut (and a
  second stream through the after window, so that every window carries the probe's load).
- Inject: loss of signal on the working path's first ROADM degree when the iteration after the
  steady window starts; the fault verifies that traffic is on the protection
  path, and stays ``after`` iterations; the repair and revert (another switch, whose hit is set
  aside) come before the after window (on a job of its own: after the job).
- Measure: service disruption time from the probe (gap and loss methods), the new path, the
  affected iterations and the worst iteration's efficiency.
- Reference: < 50 ms switch; only one iteration affected, its efficiency about 56 % lower.
"""

import pytest

pytestmark = [pytest.mark.scenario("switchover"),
              pytest.mark.needs("cross_site", "convergence_shaping", "protection_path", "probe")]


def test_protection_switchover(case, params, baseline, faults, probe):
    base = baseline(params["placement"])
    run = case.run(params["placement"], conditions=[faults.convergence(params["ratio"])],
                   fault=faults.fiber_cut(), hold=None, probe=True)
    case.conclude(run, base, case.fault_metrics(run, base))
