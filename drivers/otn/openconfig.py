"""OTN terminal, OpenConfig personality (terminal-device, line-protection): the line rate is the
optical channel's operational mode, PM is the optical channel's and the OTN channel's state, the
1+1 protection is an APS module whose only operator request is ``force-to-port``."""

from __future__ import annotations

import re
import time

from ..errors import Unsupported
from ..facts import DeviceFacts
from .base import OtnTerminal, PathSide, Pm, Protection, SwitchEvent, SwitchKind, flat
from .netconf import NC, EditResult, children, first, local, text

PLAT = "http://openconfig.net/yang/platform"
TD = "http://openconfig.net/yang/terminal-device"
LP = "http://openconfig.net/yang/optical-transport-line-protection"

OCH = "och-1/0/1"
OTN_CHANNEL = "100"
APS_MODULE = "olp-1/3"
ACTIVE = {"PRIMARY": "working", "SECONDARY": "protection"}


def parse_modes(data) -> dict[int, int]:  # type: ignore[no-untyped-def]
    """{rate Gbit/s: mode-id} from /terminal-device/operational-modes (rate from the
    description's 'bit-rate:TRIB_RATE_<n>G', as vendors publish it)."""
    out: dict[int, int] = {}
    for m in children(first(data, "terminal-device", "operational-modes"), "mode"):
        desc = text(first(m, "state", "description"))
        mid = text(first(m, "mode-id")) or text(first(m, "state", "mode-id"))
        r = re.search(r"TRIB_RATE_(\d+)G", desc)
        if r and mid.isdigit():
            out.setdefault(int(r.group(1)), int(mid))
    return dict(sorted(out.items()))


def rate_of_class(value: str) -> int:
    m = re.search(r"TRIB_RATE_(\d+)(?:\.\d+)?G", value)
    if not m:
        raise ValueError(f"not a rate class: {value!r}")
    return int(m.group(1))


def _num(el, default: float = 0.0) -> float:  # type: ignore[no-untyped-def]
    t = text(el)
    return float(t) if t else default


def parse_pm(data) -> Pm:  # type: ignore[no-untyped-def]
    och_state = None
    for c in children(first(data, "components"), "component"):
        if text(first(c, "name")) == OCH:
            och_state = first(c, "optical-channel", "state")
    otn = None
    for ch in children(first(data, "terminal-device", "logical-channels"), "channel"):
        if text(first(ch, "index")) == OTN_CHANNEL:
            otn = first(ch, "otn", "state")
    src = otn if first(otn, "pre-fec-ber") is not None else och_state

    def inst(parent, name):  # type: ignore[no-untyped-def]
        el = first(parent, name, "instant")
        return float(text(el)) if text(el) else None

    return Pm(
        pre_fec_ber=inst(src, "pre-fec-ber") or 0.0,
        post_fec_ber=inst(src, "post-fec-ber") or 0.0,
        q_db=inst(src, "q-value"),
        osnr_db=inst(och_state, "osnr"),
        esnr_db=inst(src, "esnr"),
        uncorrectable_blocks=int(_num(first(otn, "fec-uncorrectable-blocks"))),
        errored_seconds=int(_num(first(otn, "errored-seconds"))),
        severely_errored_seconds=int(_num(first(otn, "severely-errored-seconds"))),
        unavailable_seconds=int(_num(first(otn, "unavailable-seconds"))),
        interface=f"{OCH}/channel-{OTN_CHANNEL}",
    )


def parse_protection(data) -> Protection:  # type: ignore[no-untyped-def]
    mod = next((m for m in children(first(data, "aps", "aps-modules"), "aps-module")
                if text(first(m, "name")) == APS_MODULE), None)
    st = flat(first(mod, "state")) if mod is not None and first(mod, "state") is not None else {}
    active = st.get("active-path", "").split(":")[-1]
    force = st.get("force-to-port", "NONE").split(":")[-1]
    return Protection(ACTIVE.get(active, "unknown"), "none" if force in ("", "NONE") else "forced", st)


def parse_facts(data, modules: dict[str, str]) -> DeviceFacts:  # type: ignore[no-untyped-def]
    """Identity from /components, as OpenConfig platform gear reports it: the CHASSIS
    component's mfg-name, model-name (else part-no) and serial-no, and the software-version of
    the OPERATING_SYSTEM component (else the chassis' own)."""
    by_type: dict[str, dict[str, str]] = {}
    for c in children(first(data, "components"), "component"):
        st = first(c, "state")
        if st is not None:
            typ = text(first(st, "type")).split(":")[-1]
            by_type.setdefault(typ, {**flat(st), "name": text(first(c, "name"))})
    ch, os_ = by_type.get("CHASSIS", {}), by_type.get("OPERATING_SYSTEM", {})
    details = {k: ch[k] for k in ("part-no", "hardware-version", "firmware-version", "description") if ch.get(k)}
    if os_.get("name"):
        details["os-component"] = os_["name"]
    return DeviceFacts(vendor=ch.get("mfg-name") or None, model=ch.get("model-name") or ch.get("part-no") or None,
                       software_version=os_.get("software-version") or ch.get("software-version") or None,
                       serial=ch.get("serial-no") or None, modules=modules, details=details)


class OpenConfigTerminal(OtnTerminal):
    personality = "openconfig"
    MODULES = ("openconfig-terminal-device", "openconfig-platform", "openconfig-transport-line-protection")
    SWITCH_KINDS = ("force", "release")   # line-protection has force-to-port only

    _modes: dict[int, int] | None = None

    def _modes_now(self) -> dict[int, int]:
        if self._modes is None:
            self._modes = parse_modes(self.nc.get(f'<terminal-device xmlns="{TD}"><operational-modes/></terminal-device>'))
        return self._modes

    def supported_rates_gbps(self) -> tuple[int, ...]:
        return tuple(self._modes_now())

    def facts(self) -> DeviceFacts:
        return parse_facts(self.nc.get(f'<components xmlns="{PLAT}"><component><name/><state/></component>'
                                       f'</components>'), self.nc.modules())

    def line_rate_gbps(self) -> int:
        data = self.nc.get(f'<terminal-device xmlns="{TD}"><logical-channels><channel><index>{OTN_CHANNEL}</index>'
                           f'</channel></logical-channels></terminal-device>')
        for ch in children(first(data, "terminal-device", "logical-channels"), "channel"):
            if text(first(ch, "index")) == OTN_CHANNEL:
                return rate_of_class(text(first(ch, "state", "rate-class")) or text(first(ch, "config", "rate-class")))
        raise Unsupported("OTN logical channel", OTN_CHANNEL, [], self.name)

    def _rate_config(self, gbps: int) -> str:
        mode = self._modes_now()[gbps]
        return (f'<config xmlns="{NC}"><components xmlns="{PLAT}"><component><name>{OCH}</name>'
                f'<optical-channel xmlns="{TD}"><config><operational-mode>{mode}</operational-mode></config>'
                f'</optical-channel></component></components></config>')

    def pm(self) -> Pm:
        return parse_pm(self.nc.get(
            f'<components xmlns="{PLAT}"><component><name>{OCH}</name></component></components>'
            f'<terminal-device xmlns="{TD}"><logical-channels><channel><index>{OTN_CHANNEL}</index></channel>'
            f'</logical-channels></terminal-device>'))

    def protection(self) -> Protection:
        return parse_protection(self.nc.get(f'<aps xmlns="{LP}"/>'))

    def request_switch(self, kind: SwitchKind, to: PathSide = "protection") -> EditResult:
        """force -> force-to-port PRIMARY/SECONDARY, release -> NONE (a config edit, so it goes
        through the confirmed commit and is read back before confirming)."""
        self._check_kind(kind, to)
        port = "NONE" if kind == "release" else ("PRIMARY" if to == "working" else "SECONDARY")
        cfg = (f'<config xmlns="{NC}"><aps xmlns="{LP}"><aps-modules><aps-module><name>{APS_MODULE}</name>'
               f'<config><force-to-port>{port}</force-to-port></config></aps-module></aps-modules></aps></config>')

        def verify() -> str | None:
            deadline = time.monotonic() + 2.0
            while True:
                p = self.protection()
                want_req = "none" if kind == "release" else "forced"
                if p.request_state == want_req and (kind == "release" or p.active_path == to):
                    return None
                if time.monotonic() > deadline:
                    return f"protection reads active={p.active_path} request={p.request_state}"
                time.sleep(0.01)

        return self.nc.edit(cfg, verify=verify, confirm_timeout_s=self.confirm_timeout_s)

    def _switch_event(self, el) -> SwitchEvent | None:  # type: ignore[no-untyped-def]
        if local(el) != "protection-switch-event":
            return None
        raw = flat(el)
        return SwitchEvent(ACTIVE.get(raw.get("active-path", "").split(":")[-1], raw.get("to", "unknown")),
                           time.monotonic(), raw)
