"""The one interface both OTN terminal personalities (OpenConfig, OpenROADM) implement, and the
typed results they return; the faults and the trial suite only see this."""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from .. import SshTarget
from ..errors import Timeout, Unsupported
from ..facts import DeviceFacts
from .netconf import EditResult, NetconfDevice

SwitchKind = Literal["force", "manual", "lockout", "release"]
PathSide = Literal["working", "protection"]
REQUEST_STATES = ("none", "forced", "manual", "lockout", "signal-fail", "wtr")


@dataclass(frozen=True)
class Pm:
    """Current PM of the line receiver, as numbers.  ``derived`` names fields the driver computed
    (e.g. Q from the pre-FEC BER where the device does not report Q); None = not reported."""

    pre_fec_ber: float
    post_fec_ber: float
    q_db: float | None
    osnr_db: float | None
    esnr_db: float | None
    uncorrectable_blocks: int
    errored_seconds: int
    severely_errored_seconds: int | None = None
    unavailable_seconds: int | None = None
    interface: str = ""
    derived: tuple[str, ...] = ()


@dataclass(frozen=True)
class Protection:
    """1+1 protection state; ``active_path`` 'working'|'protection'|'unknown', ``request_state``
    one of REQUEST_STATES; the device's own values are kept in ``raw``."""

    active_path: str
    request_state: str
    raw: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SwitchEvent:
    """One protection switch notification: where traffic went, and the device's own fields."""

    active_path: str
    received_at: float
    raw: dict[str, str] = field(default_factory=dict)


def q_from_ber(ber: float) -> float | None:
    """Q (dB) from a BER: 20 log10(sqrt(2) erfcinv(2 BER)), the usual test-set definition."""
    if not 0 < ber < 0.5:
        return None
    lo, hi = 0.0, 10.0
    for _ in range(80):  # erfc is decreasing: bisection for erfcinv
        mid = (lo + hi) / 2
        if math.erfc(mid) > 2 * ber:
            lo = mid
        else:
            hi = mid
    return 20 * math.log10(math.sqrt(2) * (lo + hi) / 2)


def check_rate(gbps: int, supported: tuple[int, ...], device: str | None = None) -> None:
    """Refuse a rate the device cannot run before anything is sent."""
    if gbps not in supported:
        raise Unsupported("line rate (Gbit/s)", f"{gbps}G", [f"{r}G" for r in supported], device)


class OtnTerminal(ABC):
    """An OTN terminal (transponder/muxponder) with a 1+1 protected line, over NETCONF."""

    personality: str = ""
    SWITCH_KINDS: tuple[str, ...] = ("force", "manual", "lockout", "release")
    MODULES: tuple[str, ...] = ()   # YANG modules the device must advertise for this driver

    def __init__(self, target: SshTarget, rpc_timeout_s: float = 30.0, confirm_timeout_s: int = 30) -> None:
        self.nc = NetconfDevice(target, rpc_timeout_s)
        self.name = self.nc.name
        self.nc.require_modules(self.personality, self.MODULES)
        self.confirm_timeout_s = confirm_timeout_s

    def close(self) -> None:
        self.nc.close()

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abstractmethod
    def facts(self) -> DeviceFacts:
        """Vendor, model, software version, serial and YANG modules, as the device reports them."""

    # --- line rate -----------------------------------------------------------------------------
    @abstractmethod
    def line_rate_gbps(self) -> int:
        """The rate the line runs now (read from the device's state, not its config)."""

    @abstractmethod
    def supported_rates_gbps(self) -> tuple[int, ...]:
        """Rates this terminal can be set to, ascending."""

    @abstractmethod
    def _rate_config(self, gbps: int) -> str:
        """The <config> that sets the line rate."""

    def set_line_rate(self, gbps: int, confirm: bool = True) -> EditResult:
        """Set the line rate; refused with Unsupported before sending anything if the device
        cannot run it; read back before the confirming commit (a mismatch rolls back)."""
        check_rate(gbps, self.supported_rates_gbps(), self.name)

        def verify() -> str | None:
            got = self.line_rate_gbps()
            return None if got == gbps else f"line runs {got}G, not {gbps}G"

        return self.nc.edit(self._rate_config(gbps), verify=verify, confirm_timeout_s=self.confirm_timeout_s,
                            confirm=confirm)

    # --- PM and protection -----------------------------------------------------------------------
    @abstractmethod
    def pm(self) -> Pm:
        """PM of the line receiver in use."""

    @abstractmethod
    def protection(self) -> Protection:
        """The protection group's state."""

    @abstractmethod
    def request_switch(self, kind: SwitchKind, to: PathSide = "protection") -> EditResult:
        """An operator protection request; 'release' clears any request (``to`` ignored)."""

    @abstractmethod
    def _switch_event(self, el) -> SwitchEvent | None:  # type: ignore[no-untyped-def]
        """A notification element as a SwitchEvent, or None if it is not a switch event."""

    def _check_kind(self, kind: str, to: str) -> None:
        if kind not in self.SWITCH_KINDS:
            raise Unsupported("protection request", kind, self.SWITCH_KINDS, self.name)
        if to not in ("working", "protection"):
            raise Unsupported("switch target", to, ("working", "protection"), self.name)

    # --- notifications --------------------------------------------------------------------------------
    def subscribe(self) -> None:
        """Start queueing notifications now (call before the action whose event you await)."""
        self.nc.subscribe()

    def notifications(self, timeout: float) -> Iterator[SwitchEvent]:
        """Switch events as they arrive, until ``timeout`` seconds have passed."""
        self.subscribe()
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            el = self.nc.next_notification(left)
            if el is None:
                return
            ev = self._switch_event(el)
            if ev is not None:
                yield ev

    def wait_switch(self, timeout: float) -> SwitchEvent:
        """The next switch event, or Timeout naming how long we waited."""
        for ev in self.notifications(timeout):
            return ev
        raise Timeout(f"no protection switch notification within {timeout:g} s", self.name)


def flat(el) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Leaf children of an element as {local-name: text}."""
    from .netconf import local, text
    return {local(c): text(c) for c in el if isinstance(c.tag, str) and len(c) == 0}
