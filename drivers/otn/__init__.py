"""OTN terminals over NETCONF: one interface (:class:`OtnTerminal`), two personalities."""

from __future__ import annotations

from .. import SshTarget
from ..errors import Unsupported
from .base import OtnTerminal, Pm, Protection, SwitchEvent, check_rate, q_from_ber
from .netconf import EditResult
from .openconfig import OpenConfigTerminal
from .openroadm import OpenRoadmTerminal

PERSONALITIES: dict[str, type[OtnTerminal]] = {"openconfig": OpenConfigTerminal, "openroadm": OpenRoadmTerminal}


def connect_otn(personality: str, target: SshTarget, rpc_timeout_s: float = 30.0,
                confirm_timeout_s: int = 30) -> OtnTerminal:
    """The driver for a terminal of this personality, connected."""
    cls = PERSONALITIES.get(personality)
    if cls is None:
        raise Unsupported("OTN personality", personality, PERSONALITIES, target.label)
    return cls(target, rpc_timeout_s=rpc_timeout_s, confirm_timeout_s=confirm_timeout_s)


__all__ = ["EditResult", "OpenConfigTerminal", "OpenRoadmTerminal", "OtnTerminal", "PERSONALITIES", "Pm",
           "Protection", "SwitchEvent", "check_rate", "connect_otn", "q_from_ber"]
