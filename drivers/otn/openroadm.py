"""OTN terminal, OpenROADM device model: the line rate is the network ODUCn's n x 100G, PM is the
15-min current PM of the network OTUCn in use, protection is the ODU SNCP group with its
``odu-sncp-protection-switch`` RPC (force, manual, lockout, release)."""

from __future__ import annotations

import time

from ..errors import EditRejected
from ..facts import DeviceFacts
from .base import OtnTerminal, PathSide, Pm, Protection, SwitchEvent, SwitchKind, flat, q_from_ber
from .netconf import NC, EditResult, NetconfDevice, children, first, local, text

DEV = "http://org/openroadm/device"
ODU = "http://org/openroadm/otn-odu-interfaces"
OTU = "http://org/openroadm/otn-otu-interfaces"
OTSI = "http://org/openroadm/optical-channel-tributary-signal-interfaces"
OCHT = "http://org/openroadm/common-optical-channel-types"   # where the otsi-rate identities live
APS = "http://org/openroadm/prot/otn-linear-aps"
PMNS = "http://org/openroadm/pm"

PG = "ODU-SNCP-PG-1"
NETWORKS = {"working": 1, "protection": 2}
REQUEST_STATE = {"NR-NE": "none", "FS-NE": "forced", "MS-NE": "manual", "LO-NE": "lockout",
                 "SF-NE": "signal-fail", "WTR-NE": "wtr"}
COMMAND = {"force": "Force-Switch", "manual": "Manual-Switch", "lockout": "Lock-Out-Protect", "release": "Release"}


def net(n: int, kind: str) -> str:
    return f"XPDR1-NETWORK{n}-{kind}"


def parse_rate(data, networks: tuple[int, ...] = (1, 2)) -> int:  # type: ignore[no-untyped-def]
    """The line rate: the smallest n x 100G over the network OTUCn (as the hardware runs it)."""
    ns = []
    for i in children(first(data, "org-openroadm-device"), "interface"):
        name = text(first(i, "name"))
        if name in [net(k, "OTUCn") for k in networks]:
            v = text(first(i, "otu", "otucn-n-rate"))
            if v.isdigit():
                ns.append(int(v))
    if not ns:
        raise ValueError("no network OTUCn interface with otucn-n-rate")
    return 100 * min(ns)


def parse_pm(data, ifname: str) -> Pm:  # type: ignore[no-untyped-def]
    values: dict[str, str] = {}
    for e in children(first(data, "current-pm-list"), "current-pm-entry"):
        if f"'{ifname}'" not in text(first(e, "pm-resource-instance")):
            continue
        for c in children(e, "current-pm"):
            values[text(first(c, "type"))] = text(first(c, "measurement", "pmParameterValue"))
    if not values:
        raise ValueError(f"no current PM for {ifname}")

    def f(k: str) -> float:
        return float(values.get(k) or 0)

    pre = f("preFECbitErrorRate")
    return Pm(pre_fec_ber=pre, post_fec_ber=f("bitErrorRate"), q_db=q_from_ber(pre), osnr_db=None, esnr_db=None,
              uncorrectable_blocks=int(f("FECUncorrectableBlocks")), errored_seconds=int(f("erroredSeconds")),
              severely_errored_seconds=int(f("severelyErroredSeconds")),
              unavailable_seconds=int(f("unavailableSeconds")), interface=ifname, derived=("q_db",))


def parse_protection(data) -> Protection:  # type: ignore[no-untyped-def]
    pg = next((p for p in children(first(data, "org-openroadm-device", "protection-grps"), "odu-sncp-pg")
               if text(first(p, "name")) == PG), None)
    raw = flat(pg) if pg is not None else {}
    active = raw.get("active-if", "")
    path = "working" if active == net(1, "ODUCn") else "protection" if active == net(2, "ODUCn") else "unknown"
    return Protection(path, REQUEST_STATE.get(raw.get("request-state", ""), "unknown"), raw)


INFO_DETAILS = ("node-id", "node-type", "openroadm-version", "software-build", "clli")


def parse_info(data, modules: dict[str, str]) -> DeviceFacts:  # type: ignore[no-untyped-def]
    """Identity from ``/org-openroadm-device/info`` (vendor, model, serial-id, softwareVersion:
    config false leaves every OpenROADM device fills in); transponders and ROADMs alike."""
    node = first(data, "org-openroadm-device", "info")
    info = flat(node) if node is not None else {}
    return DeviceFacts(vendor=info.get("vendor") or None, model=info.get("model") or None,
                       software_version=info.get("softwareVersion") or None, serial=info.get("serial-id") or None,
                       modules=modules, details={k: info[k] for k in INFO_DETAILS if info.get(k)})


def read_info(nc: NetconfDevice) -> DeviceFacts:
    return parse_info(nc.get(f'<org-openroadm-device xmlns="{DEV}"><info/></org-openroadm-device>'), nc.modules())


class OpenRoadmTerminal(OtnTerminal):
    personality = "openroadm"
    MODULES = ("org-openroadm-device",)
    RATES = tuple(range(100, 900, 100))   # ODUCn n = 1..8 (Flex-O N x 100G)

    def supported_rates_gbps(self) -> tuple[int, ...]:
        return self.RATES

    def facts(self) -> DeviceFacts:
        return read_info(self.nc)

    def line_rate_gbps(self) -> int:
        return parse_rate(self.nc.get(f'<org-openroadm-device xmlns="{DEV}"><interface/></org-openroadm-device>'))

    def _rate_config(self, gbps: int) -> str:
        n = gbps // 100
        ifs = "".join(
            f"<interface><name>{net(k, 'OTSI')}</name><otsi xmlns='{OTSI}' xmlns:ocht='{OCHT}'>"
            f"<otsi-rate>ocht:R{gbps}G-otsi</otsi-rate></otsi>"
            f"</interface><interface><name>{net(k, 'OTUCn')}</name><otu xmlns='{OTU}'><otucn-n-rate>{n}</otucn-n-rate>"
            f"</otu></interface><interface><name>{net(k, 'ODUCn')}</name><odu xmlns='{ODU}'>"
            f"<oducn-n-rate>{n}</oducn-n-rate></odu></interface>" for k in NETWORKS.values())
        return f'<config xmlns="{NC}"><org-openroadm-device xmlns="{DEV}">{ifs}</org-openroadm-device></config>'

    def pm(self) -> Pm:
        data = self.nc.get(f'<org-openroadm-device xmlns="{DEV}"><protection-grps/></org-openroadm-device>'
                           f'<current-pm-list xmlns="{PMNS}"/>')
        side = parse_protection(data).active_path
        return parse_pm(data, net(NETWORKS.get(side, 1), "OTUCn"))

    def protection(self) -> Protection:
        return parse_protection(self.nc.get(
            f'<org-openroadm-device xmlns="{DEV}"><protection-grps/></org-openroadm-device>'))

    def request_switch(self, kind: SwitchKind, to: PathSide = "protection") -> EditResult:
        """The odu-sncp-protection-switch RPC: an action, not a config edit, so no rollback
        guard; the fault journal must hold its undo (release)."""
        self._check_kind(kind, to)
        t0 = time.monotonic()
        pgi = f"<pg-interface>{net(NETWORKS[to], 'ODUCn')}</pg-interface>" if kind in ("force", "manual") else ""
        reply = self.nc.rpc(f'<odu-sncp-protection-switch xmlns="{APS}"><protection-group>{PG}</protection-group>'
                            f'{pgi}<switch-command>{COMMAND[kind]}</switch-command></odu-sncp-protection-switch>')
        status = next((text(e) for e in reply.iter() if isinstance(e.tag, str) and local(e) == "status"), "")
        if status != "Successful":
            msg = next((text(e) for e in reply.iter() if isinstance(e.tag, str) and local(e) == "status-message"), "")
            raise EditRejected(f"{COMMAND[kind]}: status {status or 'missing'} {msg}".strip(), self.name)
        return EditResult("rpc", False, True, time.monotonic() - t0, "protection switch RPC: undo is 'release'")

    def _switch_event(self, el) -> SwitchEvent | None:  # type: ignore[no-untyped-def]
        if local(el) != "odu-sncp-pg-switch-event":
            return None
        raw = flat(el)
        st = raw.get("switch-status", "")
        side = "protection" if st == "switched-to-protect" else "working" if st == "switched-back-to-working" \
            else "unknown"
        return SwitchEvent(side, time.monotonic(), raw)
