"""OTN terminal, OpenConfig personality (terminal-device 1.12, line-protection 0.4.1,
optical-attenuator 0.2.0, platform 0.32).

Paths (namespaces as in optical-models.md):
* ``/components/component[name]`` (platform): client ports ``port-1/1/N`` (with transceiver
  ``enabled``), line port ``port-1/0/1``, optical channel ``och-1/0/1`` whose
  ``optical-channel/config/operational-mode`` (terminal-device ns) selects the line rate
  (modes below) and whose ``optical-channel/state`` carries osnr, pre/post-fec-ber, q-value, esnr
  (instant/avg/min/max/interval/min-time/max-time), input/output power, chromatic dispersion.
* ``/terminal-device/logical-channels/channel[index]``: client channels 11..(10+N)
  (PROT_400GE at TRIB_RATE_400G, assignment to channel 100 with ``allocation`` 400.000) and the
  OTN channel 100 (``rate-class`` TRIB_RATE_800G, PROT_ODUCN, assignment to och-1/0/1 with
  ``allocation`` 800.000); ``otn/state`` of channel 100 holds the PM.  Operational modes under
  ``/terminal-device/operational-modes``.
* ``/aps/aps-modules/aps-module[olp-1/3]`` (only when the service has a protection path; its
  name refers to the platform component ``olp-1/3``, the OLP card):
  ``force-to-port`` NONE|PRIMARY|SECONDARY, ``hold-off-time`` (ms), ``revertive``,
  ``wait-to-restore-time`` (ms); ``state/active-path`` oc-line-protect:PRIMARY|SECONDARY.
* ``/optical-attenuator/attenuators/attenuator[voa-1/2/1]``.
* Identity (state only, :mod:`emulator.identity`): component ``chassis`` (CHASSIS: mfg-name,
  model-name, part-no, serial-no) and ``os`` (OPERATING_SYSTEM: software-version = dcilab's
  version); the hello advertises each module with its revision (``MODULES``).

The line rate is the smallest of: the optical channel's mode rate, channel 100's ``rate-class``,
channel 100's assignment ``allocation``, and the sum of the enabled client channels (admin-state
ENABLED, transceiver enabled); a change is pushed to the line at commit.
"""

from __future__ import annotations

import re

from lxml import etree

from emulator.identity import VENDOR, serial_number, software_version
from emulator.netconf.errors import NC_NS

from .device import BENCH_MODULE, BENCH_NS, invalid, local, sub, text
from .pm import ber18, dec
from .terminal import Terminal, bool_check, dec_check, enum_check, uint_check

PLAT = "http://openconfig.net/yang/platform"
XCVR = "http://openconfig.net/yang/platform/transceiver"
TD = "http://openconfig.net/yang/terminal-device"
TT = "http://openconfig.net/yang/transport-types"
LP = "http://openconfig.net/yang/optical-transport-line-protection"
ATT = "http://openconfig.net/yang/optical-attenuator"

PTYPES = "http://openconfig.net/yang/platform-types"

OCH = "och-1/0/1"
LINE_PORT = "port-1/0/1"
CHASSIS = "chassis"
OS = "os"
MODEL = "DCILAB-OTN-800G-OC"
APS = "olp-1/3"
VOA = "voa-1/2/1"
OTN_CH = 100
MODES = {8001: (800, "DP-16QAM"), 6001: (600, "DP-16QAM"), 4002: (400, "DP-QPSK"), 2001: (200, "DP-QPSK")}
PROTOCOLS = ("PROT_400GE", "PROT_800GE", "PROT_100GE", "PROT_ODUCN", "PROT_OTUCN", "PROT_ODUFLEX_CBR",
             "PROT_FLEXO", "PROT_ODU4", "PROT_OTU4")
ADMIN = ("ENABLED", "DISABLED", "MAINT")


def _child(el, name):
    if el is None:
        return None
    for c in el:
        if isinstance(c.tag, str) and local(c) == name:
            return c
    return None


def _path(el, *names):
    for n in names:
        el = _child(el, n)
    return el


def _entries(el, *names):
    """The entries of the list at ``names`` (last name = list element)."""
    *head, last = names
    parent = _path(el, *head) if head else el
    return [c for c in (parent if parent is not None else []) if isinstance(c.tag, str) and local(c) == last]


def _keyed(el, names, key, value):
    for e in _entries(el, *names):
        if text(_child(e, key)) == str(value):
            return e
    return None


def identity(value: str, what: str, pattern: str | None = None, allowed=None) -> str:
    """An identityref value: ``prefix:NAME`` or ``NAME``; returns NAME."""
    name = value.split(":", 1)[1] if ":" in value else value
    if allowed is not None and name not in allowed:
        raise invalid(f"{what}: {value!r} is not one of {', '.join(allowed)}", element=what)
    if pattern is not None and not re.fullmatch(pattern, name):
        raise invalid(f"{what}: {value!r} is not a valid identity", element=what)
    return name


def rate_of_class(name: str) -> float:
    return float(re.fullmatch(r"TRIB_RATE_(\d+(?:\.\d+)?)G", name).group(1))


def _stats(parent, tag, st: dict, fmt, interval: int):
    c = sub(parent, tag)
    for k in ("instant", "avg", "min", "max"):
        sub(c, k, fmt(st[k]))
    sub(c, "interval", interval)
    sub(c, "min-time", st["min-time"])
    sub(c, "max-time", st["max-time"])
    return c


class OpenConfigTerminal(Terminal):
    NAMESPACES = (PLAT, TD, LP, ATT)
    # the revisions of the published modules in yang/openconfig (tests/test_yang.py holds them
    # equal): a client fetching the schema by revision gets the module the data follows
    MODULES = (("openconfig-platform", PLAT, "2025-07-15"), ("openconfig-platform-types", PTYPES, "2026-05-19"),
               ("openconfig-platform-transceiver", XCVR, "2026-03-25"),
               ("openconfig-terminal-device", TD, "2026-01-14"), ("openconfig-transport-types", TT, "2026-04-24"),
               ("openconfig-transport-line-protection", LP, "2018-11-21"),
               ("openconfig-optical-attenuator", ATT, "2024-07-10"), BENCH_MODULE)
    SCHEMA = {f"{{{TD}}}channel": ("index",), f"{{{TD}}}assignment": ("index",), f"{{{TD}}}mode": ("mode-id",)}

    # --- configuration ---------------------------------------------------------------------------
    def initial_config(self) -> str:
        s = self.svc
        clients = "".join(
            f"<component><name>port-1/1/{i}</name><config><name>port-1/1/{i}</name></config>"
            f"<transceiver xmlns='{XCVR}'><config><enabled>true</enabled></config></transceiver></component>"
            for i in range(1, s.client_count + 1))
        mode = next((m for m, (r, _) in MODES.items() if r == s.line_rate_gbps), 8001)
        client_ch = "".join(
            f"<channel><index>{10 + i}</index><config><index>{10 + i}</index><description>client {i}</description>"
            f"<admin-state>ENABLED</admin-state><rate-class>oc-opt-types:TRIB_RATE_{s.client_rate_gbps}G</rate-class>"
            f"<trib-protocol>oc-opt-types:PROT_{s.client_rate_gbps}GE</trib-protocol>"
            f"<logical-channel-type>oc-opt-types:PROT_ETHERNET</logical-channel-type></config>"
            f"<logical-channel-assignments><assignment><index>1</index><config><index>1</index>"
            f"<assignment-type>LOGICAL_CHANNEL</assignment-type><logical-channel>{OTN_CH}</logical-channel>"
            f"<allocation>{s.client_rate_gbps:.3f}</allocation></config></assignment></logical-channel-assignments>"
            f"</channel>" for i in range(1, s.client_count + 1))
        # a component's key is a leafref to its config/name: the identity components have one too
        ident = "".join(f"<component><name>{n}</name><config><name>{n}</name></config></component>"
                        for n in (CHASSIS, OS))
        aps = olp = ""
        if s.protection:
            # aps-module/name is a leafref to a platform component: the OLP card is one
            olp = f"<component><name>{APS}</name><config><name>{APS}</name></config></component>"
            aps = (f"<aps xmlns='{LP}'><aps-modules><aps-module><name>{APS}</name><config><name>{APS}</name>"
                   f"<revertive>false</revertive><wait-to-restore-time>300000</wait-to-restore-time>"
                   f"<hold-off-time>0</hold-off-time><force-to-port>NONE</force-to-port></config>"
                   f"</aps-module></aps-modules></aps>")
        return (
            f"<data xmlns='{NC_NS}'>"
            f"<components xmlns='{PLAT}'>{ident}{clients}"
            f"<component><name>{LINE_PORT}</name><config><name>{LINE_PORT}</name></config></component>{olp}"
            f"<component><name>{OCH}</name><config><name>{OCH}</name></config>"
            f"<optical-channel xmlns='{TD}'><config><frequency>193100000</frequency>"
            f"<target-output-power>1.00</target-output-power><operational-mode>{mode}</operational-mode>"
            f"<line-port>{LINE_PORT}</line-port></config></optical-channel></component></components>"
            f"<terminal-device xmlns='{TD}' xmlns:oc-opt-types='{TT}'><logical-channels>{client_ch}"
            f"<channel><index>{OTN_CH}</index><config><index>{OTN_CH}</index><description>{s.name} line</description>"
            f"<admin-state>ENABLED</admin-state><rate-class>oc-opt-types:TRIB_RATE_{s.line_rate_gbps}G</rate-class>"
            f"<trib-protocol>oc-opt-types:PROT_ODUCN</trib-protocol>"
            f"<logical-channel-type>oc-opt-types:PROT_OTN</logical-channel-type></config>"
            f"<logical-channel-assignments><assignment><index>1</index><config><index>1</index>"
            f"<assignment-type>OPTICAL_CHANNEL</assignment-type><optical-channel>{OCH}</optical-channel>"
            f"<allocation>{s.line_rate_gbps:.3f}</allocation></config></assignment></logical-channel-assignments>"
            f"</channel></logical-channels></terminal-device>{aps}"
            f"<optical-attenuator xmlns='{ATT}' xmlns:oc-opt-att='{ATT}'><attenuators><attenuator><name>{VOA}</name>"
            f"<config><name>{VOA}</name><attenuation-mode>oc-opt-att:CONSTANT_ATTENUATION</attenuation-mode>"
            f"<attenuation>0.00</attenuation><enabled>true</enabled></config></attenuator></attenuators>"
            f"</optical-attenuator></data>")

    def settings(self, tree) -> dict:
        """The line-relevant settings a (valid) configuration asks for."""
        td = _path(self._top(tree, TD, "terminal-device"))
        och = _keyed(self._top(tree, PLAT, "components"), ["component"], "name", OCH)
        mode = int(text(_path(och, "optical-channel", "config", "operational-mode")) or 8001)
        rates = [float(MODES.get(mode, (self.svc.line_rate_gbps,))[0])]
        ch = _keyed(td, ["logical-channels", "channel"], "index", OTN_CH)
        cfg = _child(ch, "config")
        if text(_child(cfg, "rate-class")):
            rates.append(rate_of_class(identity(text(_child(cfg, "rate-class")), "rate-class")))
        for a in _entries(ch, "logical-channel-assignments", "assignment"):
            al = text(_path(a, "config", "allocation"))
            if al:
                rates.append(float(al))
        if (text(_child(cfg, "admin-state")) or "ENABLED") != "ENABLED":
            rates.append(0.0)
        comps = self._top(tree, PLAT, "components")
        client_sum = 0.0
        for c in _entries(td, "logical-channels", "channel"):
            idx = text(_child(c, "index"))
            if idx == str(OTN_CH) or not idx.isdigit() or int(idx) - 10 not in range(1, self.svc.client_count + 1):
                continue
            port = _keyed(comps, ["component"], "name", f"port-1/1/{int(idx) - 10}")
            xcvr_on = text(_path(port, "transceiver", "config", "enabled")) != "false"
            if (text(_path(c, "config", "admin-state")) or "ENABLED") == "ENABLED" and xcvr_on:
                for a in _entries(c, "logical-channel-assignments", "assignment"):
                    client_sum += float(text(_path(a, "config", "allocation")) or 0)
        rates.append(client_sum)
        aps = _keyed(self._top(tree, LP, "aps"), ["aps-modules", "aps-module"], "name", APS)
        ac = _child(aps, "config")
        return {
            "rate": min(rates),
            "force": text(_child(ac, "force-to-port")) or "NONE",
            "hold_off_ms": float(text(_child(ac, "hold-off-time")) or 0),
            "revertive": text(_child(ac, "revertive")) == "true",
            "wtr_s": float(text(_child(ac, "wait-to-restore-time")) or 300000) / 1000.0,
        }

    @staticmethod
    def _top(tree, ns, name):
        for c in tree:
            if isinstance(c.tag, str) and c.tag == f"{{{ns}}}{name}":
                return c
        return None

    def validate(self, tree) -> None:
        td = self._top(tree, TD, "terminal-device")
        comps = self._top(tree, PLAT, "components")
        for c in _entries(comps, "component"):
            n = text(_child(c, "name"))
            cn = text(_path(c, "config", "name"))
            if cn and cn != n:
                raise invalid(f"component {n}: config/name {cn!r} differs from the key", element="name")
            oc = _path(c, "optical-channel", "config")
            if oc is not None:
                if n != OCH:
                    raise invalid(f"component {n} is not an optical channel", element="optical-channel")
                for leaf in oc:
                    if not isinstance(leaf.tag, str):
                        continue
                    v, ln = text(leaf), local(leaf)
                    if ln == "operational-mode":
                        m = uint_check(v, ln, 0, 65535)
                        if m not in MODES:
                            raise invalid(f"operational-mode {m} is not offered (modes: "
                                          f"{', '.join(str(x) for x in MODES)})", element=ln)
                    elif ln == "frequency":
                        uint_check(v, ln, 191_000_000, 197_000_000)
                    elif ln == "target-output-power":
                        dec_check(v, 2, ln, -20, 10)
                    elif ln == "line-port":
                        if v != LINE_PORT:
                            raise invalid(f"line-port must be {LINE_PORT}", element=ln)
                    else:
                        raise invalid(f"optical-channel/config/{ln} is not supported", element=ln,
                                      tag="unknown-element")
            en = _path(c, "transceiver", "config", "enabled")
            if en is not None:
                bool_check(text(en), "enabled")
        names = {text(_child(c, "name")) for c in _entries(comps, "component")}
        hardware = [OCH, LINE_PORT] + [f"port-1/1/{i}" for i in range(1, self.svc.client_count + 1)]
        for need in hardware + ([APS] if self.svc.protection else []):
            if need not in names:
                raise invalid(f"component {need} is hardware and cannot be removed", element="component",
                              tag="operation-not-supported")
        chans = _entries(td, "logical-channels", "channel")
        idxs = set()
        for ch in chans:
            idx = uint_check(text(_child(ch, "index")), "index")
            idxs.add(idx)
            cfg = _child(ch, "config")
            ci = text(_child(cfg, "index"))
            if ci and ci != str(idx):
                raise invalid(f"channel {idx}: config/index {ci} differs from the key", element="index")
            for leaf in (cfg if cfg is not None else []):
                if not isinstance(leaf.tag, str):
                    continue
                v, ln = text(leaf), local(leaf)
                if ln == "admin-state":
                    enum_check(v, ADMIN, ln)
                elif ln == "rate-class":
                    name = identity(v, ln, r"TRIB_RATE_\d+(\.\d+)?G")
                    r = rate_of_class(name)
                    if idx == OTN_CH and (r % 100 or not 100 <= r <= 800):
                        raise invalid(f"rate-class {name}: the line runs N x 100G up to 800G", element=ln)
                elif ln == "trib-protocol":
                    identity(v, ln, allowed=PROTOCOLS)
                elif ln == "logical-channel-type":
                    identity(v, ln, allowed=("PROT_ETHERNET", "PROT_OTN"))
                elif ln in ("description", "index", "loopback-mode", "test-signal", "client-mapping-mode"):
                    pass
                else:
                    raise invalid(f"logical channel config/{ln} is not supported", element=ln, tag="unknown-element")
            for a in _entries(ch, "logical-channel-assignments", "assignment"):
                uint_check(text(_child(a, "index")), "index")
                acfg = _child(a, "config")
                al = _child(acfg, "allocation")
                if al is not None:
                    dec_check(text(al), 3, "allocation", 0, 800)
                at = _child(acfg, "assignment-type")
                if at is not None:
                    enum_check(text(at), ("LOGICAL_CHANNEL", "OPTICAL_CHANNEL"), "assignment-type")
        for need in [OTN_CH] + [10 + i for i in range(1, self.svc.client_count + 1)]:
            if need not in idxs:
                raise invalid(f"logical channel {need} is fixed on this terminal and cannot be removed",
                              element="channel", tag="operation-not-supported")
        aps = self._top(tree, LP, "aps")
        mods = _entries(aps, "aps-modules", "aps-module")
        for m in mods:
            n = text(_child(m, "name"))
            if n != APS or not self.svc.protection:
                raise invalid(f"no protection module {n!r} on this terminal", element="name")
            for leaf in (_child(m, "config") if _child(m, "config") is not None else []):
                if not isinstance(leaf.tag, str):
                    continue
                v, ln = text(leaf), local(leaf)
                if ln == "force-to-port":
                    enum_check(v, ("NONE", "PRIMARY", "SECONDARY"), ln)
                elif ln == "hold-off-time":
                    uint_check(v, ln, 0, 10000)
                elif ln == "wait-to-restore-time":
                    uint_check(v, ln, 0, 720000)
                elif ln == "revertive":
                    bool_check(v, ln)
                elif ln == "name":
                    if v != n:
                        raise invalid("config/name differs from the key", element=ln)
                elif ln in ("primary-switch-threshold", "primary-switch-hysteresis", "secondary-switch-threshold",
                            "relative-switch-threshold", "relative-switch-threshold-offset"):
                    dec_check(v, 2, ln, -50, 50)
                else:
                    raise invalid(f"aps-module config/{ln} is not supported", element=ln, tag="unknown-element")
        if self.svc.protection and not mods:
            raise invalid(f"aps-module {APS} is hardware and cannot be removed", element="aps-module",
                          tag="operation-not-supported")
        att = self._top(tree, ATT, "optical-attenuator")
        for a in _entries(att, "attenuators", "attenuator"):
            if text(_child(a, "name")) != VOA:
                raise invalid(f"no attenuator {text(_child(a, 'name'))!r} on this terminal", element="name")
            for leaf in (_child(a, "config") if _child(a, "config") is not None else []):
                if not isinstance(leaf.tag, str):
                    continue
                v, ln = text(leaf), local(leaf)
                if ln == "attenuation":
                    dec_check(v, 2, ln, 0, 30)
                elif ln == "attenuation-mode":
                    identity(v, ln, allowed=("CONSTANT_POWER", "CONSTANT_ATTENUATION", "SYSTEM_CONTROLLED"))
                elif ln == "enabled":
                    bool_check(v, ln)
                elif ln in ("target-output-power", "max-output-power", "max-output-power-threshold"):
                    dec_check(v, 2, ln, -30, 30)
                elif ln != "name":
                    raise invalid(f"attenuator config/{ln} is not supported", element=ln, tag="unknown-element")
        self.settings(tree)  # must compute

    # --- commit -> line ----------------------------------------------------------------------------
    def apply(self, old, new) -> None:
        a, b = self.settings(old), self.settings(new)
        if a["rate"] != b["rate"]:
            self.set_rate_gbps(b["rate"])
        if self.svc.protection:
            if (a["hold_off_ms"], a["revertive"], a["wtr_s"]) != (b["hold_off_ms"], b["revertive"], b["wtr_s"]):
                self.configure_protection(b["hold_off_ms"], b["revertive"], b["wtr_s"])
            if a["force"] != b["force"]:
                self._force(b["force"])

    def _force(self, port: str) -> None:
        if port == "NONE":
            self.switch("release", None)
        else:
            self.switch("force", self.svc.working if port == "PRIMARY" else self.svc.protection)

    def sync(self, running) -> None:
        s = self.settings(running)
        st = self.line.get()
        if self.rate_to_bps(s["rate"]) != st.get("rate_bps"):
            self.set_rate_gbps(s["rate"])
        if self.svc.protection:
            if self.protection_differs(st, s["hold_off_ms"], s["revertive"], s["wtr_s"]):
                self.configure_protection(s["hold_off_ms"], s["revertive"], s["wtr_s"])
            if s["force"] != "NONE":
                self._force(s["force"])

    # --- state ---------------------------------------------------------------------------------------
    def state(self, st):
        data = etree.Element(f"{{{NC_NS}}}data", nsmap={None: NC_NS})
        run = self.running()
        rate = self.line_rate_gbps(st)
        comps = sub(data, "components", ns=PLAT)
        pm = self.pm_now(st, "line") if st else None
        ber, length, up = self.path_info(st, None) if st else (0.0, 0.0, False)
        self._identity(comps)
        for i in range(1, self.svc.client_count + 1):
            c = sub(comps, "component")
            sub(c, "name", f"port-1/1/{i}")
            s = sub(c, "state")
            sub(s, "name", f"port-1/1/{i}")
            sub(s, "type", "oc-platform-types:PORT", nsmap={"oc-platform-types": PTYPES})
            sub(s, "oper-status", "oc-platform-types:ACTIVE", nsmap={"oc-platform-types": PTYPES})
        c = sub(comps, "component")
        sub(c, "name", OCH)
        och = sub(c, "optical-channel", ns=TD)
        os_ = sub(och, "state")
        occ = _path(_keyed(self._top(run, PLAT, "components"), ["component"], "name", OCH), "optical-channel", "config")
        for leaf in (occ if occ is not None else []):
            if isinstance(leaf.tag, str):
                sub(os_, local(leaf), text(leaf))
        if pm:
            iv = pm["interval"]
            osnr = {"instant": pm["osnr"], "avg": pm["osnr"], "min": pm["osnr"], "max": pm["osnr"],
                    "min-time": pm["start_ns"], "max-time": pm["start_ns"]}
            _stats(os_, "osnr", osnr, lambda v: dec(v, 2), iv)
            _stats(os_, "pre-fec-ber", pm["pre"], ber18, iv)
            _stats(os_, "post-fec-ber", pm["post"], ber18, iv)
            _stats(os_, "q-value", pm["q"], lambda v: dec(v, 2), iv)
            _stats(os_, "esnr", pm["esnr"], lambda v: dec(v, 2), iv)
            cd = {"instant": 17.0 * length, "avg": 17.0 * length, "min": 17.0 * length, "max": 17.0 * length,
                  "min-time": pm["start_ns"], "max-time": pm["start_ns"]}
            _stats(os_, "chromatic-dispersion", cd, lambda v: dec(v, 2), iv)
        td = sub(data, "terminal-device", ns=TD, nsmap={"oc-opt-types": TT})
        lcs = sub(td, "logical-channels")
        ch = sub(lcs, "channel")
        sub(ch, "index", OTN_CH)
        cs = sub(ch, "state")
        sub(cs, "index", OTN_CH)
        sub(cs, "rate-class", f"oc-opt-types:TRIB_RATE_{rate:g}G")
        sub(cs, "logical-channel-type", "oc-opt-types:PROT_OTN")
        sub(cs, "link-state", "UP" if up else "DOWN")
        if pm:
            ots = sub(sub(ch, "otn"), "state")
            iv = pm["interval"]
            _stats(ots, "pre-fec-ber", pm["pre"], ber18, iv)
            _stats(ots, "post-fec-ber", pm["post"], ber18, iv)
            _stats(ots, "q-value", pm["q"], lambda v: dec(v, 2), iv)
            _stats(ots, "esnr", pm["esnr"], lambda v: dec(v, 2), iv)
            for k, v in (("errored-seconds", pm["es"]), ("severely-errored-seconds", pm["ses"]),
                         ("unavailable-seconds", pm["uas"]), ("code-violations", pm["uncorrectable"]),
                         ("errored-blocks", pm["uncorrectable"]), ("fec-uncorrectable-words", pm["uncorrectable"]),
                         ("fec-uncorrectable-blocks", pm["uncorrectable"]),
                         ("fec-corrected-bits", pm["corrected_bits"]),
                         ("fec-corrected-bytes", pm["corrected_bits"] // 8)):
                sub(ots, k, v)
        for i in range(1, self.svc.client_count + 1):
            ch = sub(lcs, "channel")
            sub(ch, "index", 10 + i)
            cs = sub(ch, "state")
            sub(cs, "index", 10 + i)
            sub(cs, "link-state", "UP" if up else "DOWN")
        modes = sub(td, "operational-modes")
        for mid, (r, fmt) in MODES.items():
            m = sub(modes, "mode")
            sub(m, "mode-id", mid)
            ms = sub(m, "state")
            sub(ms, "mode-id", mid)
            sub(ms, "description", f"bit-rate:TRIB_RATE_{r}G, fec-coding:FEC_O, "
                                   f"modulation-format:MODULATION_FORMAT_{fmt.replace('-', '_')}")
            sub(ms, "vendor-id", "dcilab")
        if self.svc.protection:
            pr = self.protection(st)
            aps = sub(data, "aps", ns=LP, nsmap={"oc-line-protect": LP})
            mod = sub(sub(aps, "aps-modules"), "aps-module")
            sub(mod, "name", APS)
            ms = sub(mod, "state")
            sub(ms, "name", APS)
            active = (st or {}).get("active_path", self.svc.working)
            # the identity is in the leaf's own module, the default namespace here: unprefixed is
            # its qualified XML form (RFC 7950 9.10.3), and a prefix bound to the default
            # namespace's URI would not survive the datastore's merge (lxml reuses the in-scope
            # declaration and drops the prefix)
            sub(ms, "active-path", "SECONDARY" if active == self.svc.protection else "PRIMARY")
            if pr:
                sub(ms, "hold-off-time", int(pr.get("hold_off_ms", 0)))
                sub(ms, "revertive", "true" if pr.get("revertive") else "false")
                sub(ms, "wait-to-restore-time", int(float(pr.get("wtr_s", 300)) * 1000))
            ac = _path(_keyed(self._top(run, LP, "aps"), ["aps-modules", "aps-module"], "name", APS), "config")
            sub(ms, "force-to-port", text(_child(ac, "force-to-port")) or "NONE")
            if st:
                ports = sub(mod, "ports")
                paths = {p["name"]: p for p in st.get("paths", [])}
                for pname, path in (("line-primary-in", self.svc.working), ("line-secondary-in", self.svc.protection)):
                    p = paths.get(path, {})
                    # launch 1 dBm, last span (<= 80 km at 0.22 dB/km) before the receiver; -40 dBm = LOS
                    pw = 1.0 - 0.22 * min(80.0, float(p.get("length_km", 0))) if p.get("up", True) else -40.0
                    port = sub(ports, pname)
                    sub(sub(sub(port, "state"), "optical-power"), "instant", dec(pw, 2))
        att = sub(data, "optical-attenuator", ns=ATT)
        a = sub(sub(att, "attenuators"), "attenuator")
        sub(a, "name", VOA)
        s = sub(a, "state")
        acfg = _path(_keyed(self._top(run, ATT, "optical-attenuator"), ["attenuators", "attenuator"], "name", VOA),
                     "config")
        # a stats container: "if avg/min/max statistics are not supported, just supply the instant value"
        sub(sub(s, "actual-attenuation"), "instant", text(_child(acfg, "attenuation")) or "0.00")
        return data

    def _identity(self, comps) -> None:
        """The chassis (maker, model, serial) and the operating system (software version)
        components, as OpenConfig platform gear reports them."""
        for name, typ, leaves in (
                (CHASSIS, "CHASSIS", [("description", "dcilab emulated OTN terminal (OpenConfig)"),
                                      ("mfg-name", VENDOR), ("model-name", MODEL), ("part-no", MODEL),
                                      ("serial-no", serial_number(self.cfg.name)), ("hardware-version", "emulated")]),
                (OS, "OPERATING_SYSTEM", [("description", "dcilab optical emulator"), ("mfg-name", VENDOR),
                                          ("software-version", software_version()), ("parent", CHASSIS)])):
            c = sub(comps, "component")
            sub(c, "name", name)
            st = sub(c, "state")
            sub(st, "name", name)
            sub(st, "type", f"oc-platform-types:{typ}", nsmap={"oc-platform-types": PTYPES})
            for k, v in leaves:
                sub(st, k, v)
            sub(st, "oper-status", "oc-platform-types:ACTIVE", nsmap={"oc-platform-types": PTYPES})

    # --- events -> notifications ------------------------------------------------------------------------
    def on_event(self, ev: dict) -> None:
        if ev.get("kind") not in ("switch", "restoration"):
            return
        el = etree.Element(f"{{{BENCH_NS}}}protection-switch-event", nsmap={None: BENCH_NS, "oc-line-protect": LP})
        sub(el, "aps-module", APS)
        to = ev.get("to")
        sub(el, "active-path", "oc-line-protect:SECONDARY" if to == self.svc.protection else "oc-line-protect:PRIMARY")
        for k in ("kind", "from", "to", "cause"):
            if ev.get(k) is not None:
                sub(el, k, ev[k])
        if ev.get("outage_ms") is not None:
            sub(el, "outage-ms", dec(float(ev["outage_ms"]), 3))
        self.notify(el)
