"""ROADM over NETCONF (OpenROADM device model): its degrees and the fibers behind them, the
optical control plane's restoration state and route, and the bench actions that stand in for
lab hardware (a fiber cut, bit errors on a path).

In a real lab the bench actions are done by hardware between the ROADMs, not by the ROADM: a
fiber cut by a programmable optical switch (e.g. a Polatis / Lumentum MEMS OXC port opened) or a
VOA driven to maximum attenuation; bit errors by a VOA lowering the OSNR on the path, or a test
set's error insertion.  :class:`BenchActions` is that interface; the emulated lab implements it
with the ROADM's ``pm-interact`` RPC (namespace ``urn:dcilab:emulator:bench``, like TransportPCE's
simulator back door).  Gear without that RPC raises Unsupported.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from . import SshTarget
from .errors import EditRejected, Unsupported
from .facts import DeviceFacts
from .otn.netconf import NetconfDevice, children, first, local, text
from .otn.openroadm import read_info

DEV = "http://org/openroadm/device"
BENCH = "urn:dcilab:emulator:bench"


@dataclass(frozen=True)
class Degree:
    """One line degree: the fiber path it terminates, the ROADM at the other end, loss of signal."""

    number: int
    path: str | None
    neighbor: str | None
    span_km: float | None
    los: bool
    oper_state: str | None = None


@dataclass(frozen=True)
class Restoration:
    """The optical control plane (SNCP + ASON): state, active path and the ROADMs it crosses."""

    state: str               # idle | restoring | restored | ... as the device says
    active_path: str | None
    route: tuple[str, ...]
    mode: str | None = None
    request_state: str | None = None
    paths_up: dict[str, bool] = field(default_factory=dict)
    raw: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BenchResult:
    action: str
    target: str
    path: str | None
    elapsed_s: float


class BenchActions(ABC):
    """Faults a lab bench injects on the fiber plant.  Real lab: ``cut_fiber``/``repair_fiber`` =
    a programmable optical switch port (or a VOA at max attenuation) on that degree's fiber;
    ``inject_ber``/``clear_ber`` = a VOA/noise loading on the path (OSNR down) or a test set's
    error insertion, calibrated to the post-FEC BER asked."""

    @abstractmethod
    def cut_fiber(self, degree: int) -> BenchResult: ...

    @abstractmethod
    def repair_fiber(self, degree: int) -> BenchResult: ...

    @abstractmethod
    def inject_ber(self, path: str, ber: float) -> BenchResult: ...

    @abstractmethod
    def clear_ber(self, path: str) -> BenchResult: ...


def parse_degrees(data) -> list[Degree]:  # type: ignore[no-untyped-def]
    dev = first(data, "org-openroadm-device")
    oper = {text(first(i, "name")): text(first(i, "operational-state")) for i in children(dev, "interface")}
    out = []
    for d in children(dev, "degree"):
        n = int(text(first(d, "degree-number")))
        f = first(d, "fiber")
        km = text(first(f, "span-length-km"))
        out.append(Degree(n, text(first(f, "path")) or None, text(first(f, "neighbor")) or None,
                          float(km) if km else None, text(first(f, "los")) == "true",
                          oper.get(f"OTS-DEG{n}-TTP-TXRX") or None))
    return sorted(out, key=lambda d: d.number)


def parse_restoration(data) -> Restoration:  # type: ignore[no-untyped-def]
    ocp = first(data, "optical-control-plane")
    if ocp is None:
        raise Unsupported("optical-control-plane state", "restoration", [], None)
    raw = {local(c): text(c) for c in ocp if isinstance(c.tag, str) and len(c) == 0}
    route = tuple(text(r) for r in children(first(ocp, "route"), "roadm"))
    paths = {text(first(p, "name")): text(first(p, "up")) == "true" for p in children(ocp, "path")}
    return Restoration(raw.get("restoration-state", "unknown"), raw.get("active-path") or None, route,
                       raw.get("mode"), raw.get("request-state"), paths, raw)


class Roadm(BenchActions):
    """A ROADM's NETCONF session."""

    MODULES: tuple[str, ...] = ("org-openroadm-device",)   # YANG modules the device must advertise

    def __init__(self, target: SshTarget, rpc_timeout_s: float = 30.0) -> None:
        self.nc = NetconfDevice(target, rpc_timeout_s)
        self.name = self.nc.name
        self.nc.require_modules("openroadm", self.MODULES)

    def close(self) -> None:
        self.nc.close()

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def facts(self) -> DeviceFacts:
        """Vendor, model, software version, serial (OpenROADM ``info``) and YANG modules."""
        return read_info(self.nc)

    def degrees(self) -> list[Degree]:
        return parse_degrees(self.nc.get(f'<org-openroadm-device xmlns="{DEV}"><degree/><interface/>'
                                         f'</org-openroadm-device>'))

    def degree_on(self, path: str) -> Degree:
        """The first degree whose fiber belongs to ``path``."""
        degs = self.degrees()
        for d in degs:
            if d.path == path:
                return d
        raise Unsupported("path", path, sorted({d.path for d in degs if d.path}), self.name)

    def restoration(self) -> Restoration:
        return parse_restoration(self.nc.get(f'<optical-control-plane xmlns="{BENCH}"/>'))

    # --- bench actions (emulated lab: pm-interact) ------------------------------------------------
    def _pm_interact(self, action: str, body: str, what: str) -> BenchResult:
        t0 = time.monotonic()
        try:
            reply = self.nc.rpc(f'<pm-interact xmlns="{BENCH}"><rpc-action>{action}</rpc-action>{body}</pm-interact>')
        except EditRejected as exc:
            if exc.tag == "operation-not-supported" or (exc.tag in ("unknown-element", "unknown-namespace")
                                                        and "pm-interact" in exc.reason):
                raise Unsupported("bench action", what, [], self.name) from None
            raise
        vals = {local(e): text(e) for e in reply.iter() if isinstance(e.tag, str)}
        if vals.get("status") != "Successful":
            raise EditRejected(f"pm-interact {action}: status {vals.get('status') or 'missing'}", self.name)
        return BenchResult(f"{what}:{action}", what, vals.get("path"), time.monotonic() - t0)

    def cut_fiber(self, degree: int) -> BenchResult:
        """Loss of signal on a degree's fiber (real lab: optical switch port open / VOA max)."""
        return self._pm_interact("set", f"<degree-number>{int(degree)}</degree-number>", f"cut-fiber degree {degree}")

    def repair_fiber(self, degree: int) -> BenchResult:
        return self._pm_interact("clear", f"<degree-number>{int(degree)}</degree-number>",
                                 f"repair-fiber degree {degree}")

    def inject_ber(self, path: str, ber: float) -> BenchResult:
        """Post-FEC bit errors on a path (real lab: VOA/ASE loading or test-set error insertion)."""
        if not 0 <= ber <= 1:
            raise Unsupported("BER", ber, ["0 .. 1"], self.name)
        return self._pm_interact("set", f"<path>{path}</path><ber>{ber:.18f}</ber>", f"inject-ber {path}")

    def clear_ber(self, path: str) -> BenchResult:
        return self._pm_interact("clear", f"<path>{path}</path>", f"clear-ber {path}")
