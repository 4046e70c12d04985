"""Which transport a run's numbers come from, in words a report reader cannot misread.

On real gear the training traffic is the gear's own RDMA and every effect is measured.  On the
emulated lab the nodes talk TCP and the line imposes the RoCEv2 RC model on it (emulator/line/roce.py):
effects of bit errors and outages are then modelled, and every report must say so.
"""

from __future__ import annotations

from typing import Any

from emulator.line import roce
from testbed.inventory import Inventory


def transport_in_force(inv: Inventory) -> dict[str, Any]:
    """``model`` (``gear`` | ``roce-rc`` | ``none``), ``modelled`` and a one-line ``text``, plus the
    model's parameters on an emulated lab."""
    if inv.emulation is None:
        return {"model": "gear", "modelled": False,
                "text": "the gear's own transport (RoCEv2/NCCL on real GPU nodes): effects are measured"}
    t = inv.emulation.transport
    params = t.model_dump()
    if t.model == "none":
        return {"model": "none", "modelled": False, **params,
                "text": "plain TCP (gloo) over the emulated line, no transport model: bit errors and outages "
                        "act on TCP, not as on the trial's RoCEv2 (emulation.transport.model: none)"}
    t_ack = roce.ack_timeout_s(t.timeout)
    budget = roce.retry_budget_s(t_ack, t.retry_cnt)
    line: dict[str, Any] = {}
    if inv.services:   # the real line the model stands for: dcilab predict and the report's comparison use it
        svc = inv.services[0]
        line = {"line_rate_gbps": svc.line_gbps, "path_km": inv.fiber_path(svc.working_path).length_km}
    return {"model": t.model, "modelled": True, **params, "scale": inv.emulation.bandwidth_scale, **line,
            "ack_timeout_s": t_ack, "retry_budget_s": budget,
            "text": (f"modelled RoCEv2 RC imposed on TCP by the emulated line, not measured RDMA: "
                     f"NCCL_IB_TIMEOUT {t.timeout} (ACK timeout {t_ack:.3g} s), retry_cnt {t.retry_cnt} "
                     f"(QP error after {budget:.3g} s without progress), adaptive retransmission "
                     f"{'on' if t.adaptive_retransmission else 'off'}, MTU {t.mtu}; the 1e-8 interruption "
                     f"is a calibrated rule (go-back-N efficiency < {t.abort_below_efficiency:g})")}
