"""The Huawei VRP dialect of the emulated gateway (netmiko ``huawei``): one module, all of it.

Commands are matched word by word like VRP: every keyword may be abbreviated to any unique prefix
(``dis int b`` is ``display interface brief``); ``q`` is ``quit``.  A line that does not parse gets
VRP's error marker with a caret under the offending word and changes nothing::

    <GW-A>display foo
                  ^
    Error: Unrecognized command found at '^' position.

What is configured really happens where it can: ``qos lr outbound cir <kbit/s> [cbs <bytes>]`` on
an interface puts a tc token bucket (tbf) on the Linux link the port maps to (at the CIR times the
lab's ``bandwidth_scale``: the CIR is the real rate, as on real gear), and ``undo qos lr
outbound`` removes it.  PFC (``dcb pfc`` view with ``priority <n>``, interface ``dcb pfc enable
mode {auto|manual}``) and ECN (``drop-profile`` view with ``color green low-limit .. high-limit ..
discard-percentage ..``, interface ``qos queue <q> wred <profile>`` and ``qos queue <q> ecn``) are
stored and shown.  ``save`` writes the configuration as VRP text; a new Gateway replays it.
``display version`` and ``display esn`` say what the device is in VRP's words, with the vendor,
serial and dcilab version of :mod:`emulator.identity`, so nobody mistakes it for real gear.

The framework's side of the same dialect is :mod:`drivers.gateway.dialects.huawei_vrp`.
"""

from __future__ import annotations

import json
import time
from functools import partial
from typing import Any

from emulator.identity import VENDOR, serial_number, software_version

from ..device import STAT_NAMES, DeviceConfig, DeviceError, DropProfile, Gateway, PortConfig, port_speed_kbps
from ..grammar import REST, CliError, Fail, compile_table, int_range, interface, matching
from ..session import Session, replay_indented, uptime
from . import Dialect, register

VERSION = "V200R022C00SPC500"
MODEL = "DCILAB-AIGW"
MAX_LINE = 510
"""Characters in one command line (VRP: "each command can contain a maximum of 510 characters")."""

# ------------------------------------------------------------------------------------ grammar

ALL = frozenset({"user", "system", "interface", "dcb-pfc", "drop-profile"})
CONF = ALL - {"user"}
USER = frozenset({"user"})
SYS = frozenset({"system"})
IFV = frozenset({"interface"})

PARAMS: dict[str, Any] = {
    "cir": int_range(8, 400_000_000),
    "cbs": int_range(10_000, 4_294_967_295),
    "prio": int_range(0, 7),
    "queue": int_range(0, 7),
    "pct": int_range(0, 100),
    "low": int_range(0, 100),
    "high": int_range(0, 100),
    "name": matching(r"[A-Za-z0-9_.-]{1,31}"),
    "sysname": matching(r"[A-Za-z0-9_.-]{1,64}"),
    "if": interface,                # resolved against the port map by the parser
    "zero": int_range(0, 512),
    "text": REST,
}

GRAMMAR: list[tuple[frozenset[str], str, str]] = [
    (ALL, "display version", "display_version"),
    (ALL, "display esn", "display_esn"),
    (ALL, "display interface", "display_interface"),
    (ALL, "display interface brief", "display_interface_brief"),
    (ALL, "display interface <if>", "display_interface"),
    (ALL, "display current-configuration", "display_current"),
    (ALL, "display current-configuration interface <if>", "display_current_if"),
    (ALL, "display saved-configuration", "display_saved"),
    (CONF, "display this", "display_this"),
    (ALL, "display dcb pfc interface", "display_pfc"),
    (ALL, "display dcb pfc interface <if>", "display_pfc"),
    (ALL, "display qos lr outbound interface", "display_lr"),
    (ALL, "display qos lr outbound interface <if>", "display_lr"),
    (ALL, "display drop-profile", "display_drop_profile"),
    (ALL, "display drop-profile <name>", "display_drop_profile"),
    (ALL, "save", "save"),
    (ALL, "quit", "quit"),
    (CONF, "return", "return_"),
    (USER, "screen-length <zero> temporary", "screen_length"),
    (USER, "undo screen-length temporary", "screen_length"),
    (USER, "system-view", "system_view"),
    (SYS, "sysname <sysname>", "sysname"),
    (CONF, "interface <if>", "interface"),
    (SYS, "dcb pfc", "dcb_pfc_view"),
    (SYS, "undo dcb pfc", "undo_dcb_pfc"),
    (SYS, "drop-profile <name>", "drop_profile_view"),
    (SYS, "undo drop-profile <name>", "undo_drop_profile"),
    (frozenset({"dcb-pfc"}), "priority <prio>", "pfc_priority"),
    (frozenset({"dcb-pfc"}), "undo priority <prio>", "undo_pfc_priority"),
    (frozenset({"drop-profile"}), "color green low-limit <low> high-limit <high> discard-percentage <pct>",
     "wred_color"),
    (frozenset({"drop-profile"}), "undo color green", "undo_wred_color"),
    (IFV, "description <text>", "description"),
    (IFV, "undo description", "undo_description"),
    (IFV, "qos lr outbound cir <cir>", "qos_lr"),
    (IFV, "qos lr outbound cir <cir> cbs <cbs>", "qos_lr"),
    (IFV, "undo qos lr outbound", "undo_qos_lr"),
    (IFV, "dcb pfc enable mode mode=auto", "pfc_enable"),
    (IFV, "dcb pfc enable mode mode=manual", "pfc_enable"),
    (IFV, "undo dcb pfc enable", "undo_pfc_enable"),
    (IFV, "qos queue <queue> wred <name>", "queue_wred"),
    (IFV, "undo qos queue <queue> wred", "undo_queue_wred"),
    (IFV, "qos queue <queue> ecn", "queue_ecn"),
    (IFV, "undo qos queue <queue> ecn", "undo_queue_ecn"),
]

COMMANDS = compile_table(GRAMMAR, PARAMS, aliases={"quit": ("q",)})    # VRP's single-letter quit

# ------------------------------------------------------------------------------ configuration

def render_config(cfg: DeviceConfig, updated: float | None = None) -> str:
    lines = [f"!Software Version {VERSION}"]
    if updated:
        lines.append("!Last configuration was updated at "
                     + time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(updated)))
    lines += ["#", f"sysname {cfg.sysname}", "#"]
    if cfg.pfc_view or cfg.pfc_priorities:
        lines.append("dcb pfc")
        lines += [f" priority {p}" for p in sorted(cfg.pfc_priorities)]
        lines.append("#")
    for name, dp in cfg.drop_profiles.items():
        lines.append(f"drop-profile {name}")
        if dp.green:
            lo, hi, pct = dp.green
            lines.append(f" color green low-limit {lo} high-limit {hi} discard-percentage {pct}")
        lines.append("#")
    for name, pc in cfg.ports.items():
        lines += [f"interface {name}"] + [" " + c for c in port_lines(pc)] + ["#"]
    lines.append("return")
    return "\n".join(lines)


def port_lines(pc: PortConfig) -> list[str]:
    out = []
    if pc.description:
        out.append(f"description {pc.description}")
    if pc.lr_cir_kbps is not None:
        out.append(f"qos lr outbound cir {pc.lr_cir_kbps}" + (f" cbs {pc.lr_cbs}" if pc.lr_cbs else ""))
    if pc.pfc_mode:
        out.append(f"dcb pfc enable mode {pc.pfc_mode}")
    for q in sorted(set(pc.queue_wred) | pc.queue_ecn):
        if q in pc.queue_wred:
            out.append(f"qos queue {q} wred {pc.queue_wred[q]}")
        if q in pc.queue_ecn:
            out.append(f"qos queue {q} ecn")
    return out


# ----------------------------------------------------------------------------------- session

BANNER = ("\r\nInfo: The max number of VTY users is {max}, and the number\r\n"
          "      of current VTY users on line is {n}.\r\n"
          "      The current login time is {t}.\r\n")


class VrpSession(Session):
    """One terminal on the gateway, in VRP's views: user <GW-A>, system [GW-A], and the interface,
    dcb pfc and drop-profile views below it."""

    commands = COMMANDS
    start_view = "user"
    max_line = MAX_LINE
    error_marker = "Error:"
    too_long_text = "Error: The command is longer than {max_line} characters and was not run."
    not_utf8_text = "Error: The command is not valid UTF-8 and was not run."
    busy_text = "All user interfaces are used, please try later!"
    idle_text = "Info: The connection was closed by the remote host (idle timeout)."

    def __init__(self, gw: Gateway) -> None:
        super().__init__(gw)
        self.screen_length: int | None = None

    def view_prompt(self) -> str:
        name = self.gw.config.sysname
        if self.view == "user":
            return f"<{name}>"
        if self.view == "system":
            return f"[{name}]"
        if self.view == "interface":
            return f"[{name}-{self.iface}]"
        if self.view == "dcb-pfc":
            return f"[{name}-dcb-pfc-default]"
        return f"[{name}-drop-profile-{self.profile}]"

    def banner(self, max_vty: int, users: int) -> str:
        return BANNER.format(max=max_vty, n=users, t=time.strftime("%Y-%m-%d %H:%M:%S"))

    def parse_error(self, prompt: str, err: CliError) -> str:
        return " " * (len(prompt) + err.pos) + "^\n" + f"Error: {err.kind} found at '^' position."

    def device_error(self, err: DeviceError) -> str:
        if err.what == DeviceError.PORT_ABSENT:
            return f"Error: The interface {err.port} is not present (link {err.ifname} not found)."
        if err.what == DeviceError.APPLY_FAILED:
            return f"Error: Failed to apply the rate limit on {err.port}: {err.detail}"
        if err.what == DeviceError.REMOVE_FAILED:
            return f"Error: Failed to remove the rate limit on {err.port}: {err.detail}"
        if err.what == DeviceError.NOT_SAVABLE:
            return "Error: No configuration file is set for this device; the configuration was not saved."
        return f"Error: {err}"

    # ---- views
    def do_quit(self) -> str:
        if self.view == "user":
            self.closed = True
        elif self.view == "system":
            self.view = "user"
        else:
            self.view, self.iface, self.profile = "system", None, None
        return ""

    def do_return_(self) -> str:
        self.view, self.iface, self.profile = "user", None, None
        return ""

    def do_system_view(self) -> str:
        self.view = "system"
        return "Enter system view, return user view with return command."

    def do_interface(self, **a: Any) -> str:
        self.view, self.iface, self.profile = "interface", a["if"], None
        return ""

    def do_screen_length(self, zero: int | None = None) -> str:
        self.screen_length = zero
        return "Info: The configuration takes effect on the current user terminal interface only."

    def do_sysname(self, sysname: str) -> str:
        self.gw.config.sysname = sysname
        self.gw.changed()
        return ""

    def do_dcb_pfc_view(self) -> str:
        if not self.gw.config.pfc_view:
            self.gw.config.pfc_view = True
            self.gw.changed()
        self.view = "dcb-pfc"
        return ""

    def do_undo_dcb_pfc(self) -> str:
        if any(p.pfc_mode for p in self.gw.config.ports.values()):
            raise Fail("Error: The PFC profile is in use on an interface; undo dcb pfc enable there first.")
        self.gw.config.pfc_view, self.gw.config.pfc_priorities = False, set()
        self.gw.changed()
        return ""

    def do_drop_profile_view(self, name: str) -> str:
        if name not in self.gw.config.drop_profiles:
            if len(self.gw.config.drop_profiles) >= 16:
                raise Fail("Error: The number of drop profiles has reached the upper limit (16).")
            self.gw.config.drop_profiles[name] = DropProfile()
            self.gw.changed()
        self.view, self.profile = "drop-profile", name
        return ""

    def do_undo_drop_profile(self, name: str) -> str:
        if name not in self.gw.config.drop_profiles:
            raise Fail(f"Error: The drop profile {name} does not exist.")
        users = [p for p, pc in self.gw.config.ports.items() if name in pc.queue_wred.values()]
        if users:
            raise Fail(f"Error: The drop profile {name} is applied to {', '.join(users)}.")
        del self.gw.config.drop_profiles[name]
        self.gw.changed()
        return ""

    # ---- dcb pfc / drop-profile views
    def do_pfc_priority(self, prio: int) -> str:
        self.gw.config.pfc_priorities.add(prio)
        self.gw.changed()
        return ""

    def do_undo_pfc_priority(self, prio: int) -> str:
        self.gw.config.pfc_priorities.discard(prio)
        self.gw.changed()
        return ""

    def do_wred_color(self, low: int, high: int, pct: int) -> str:
        if low > high:
            raise Fail("Error: The low-limit must not be greater than the high-limit.")
        assert self.profile is not None
        self.gw.config.drop_profiles[self.profile].green = (low, high, pct)
        self.gw.changed()
        return ""

    def do_undo_wred_color(self) -> str:
        assert self.profile is not None
        self.gw.config.drop_profiles[self.profile].green = None
        self.gw.changed()
        return ""

    # ---- interface view
    @property
    def _port(self) -> PortConfig:
        assert self.iface is not None
        return self.gw.config.ports[self.iface]

    def do_description(self, text: str) -> str:
        if len(text) > 242:
            raise Fail("Error: The description is longer than 242 characters.")
        self._port.description = text
        self.gw.changed()
        return ""

    def do_undo_description(self) -> str:
        self._port.description = None
        self.gw.changed()
        return ""

    def do_qos_lr(self, cir: int, cbs: int | None = None) -> str:
        assert self.iface is not None
        if cir > port_speed_kbps(self.iface):
            raise Fail(f"Error: The CIR exceeds the bandwidth of {self.iface} "
                       f"({port_speed_kbps(self.iface)} kbit/s).")
        self.gw.set_rate_limit(self.iface, cir, cbs)
        return ""

    def do_undo_qos_lr(self) -> str:
        assert self.iface is not None
        if not self.gw.clear_rate_limit(self.iface):
            return "Info: No rate limit is configured on this interface."
        return ""

    def do_pfc_enable(self, mode: str) -> str:
        if not self.gw.config.pfc_view:
            raise Fail("Error: The PFC profile does not exist; run dcb pfc in the system view first.")
        self._port.pfc_mode = mode
        self.gw.changed()
        return ""

    def do_undo_pfc_enable(self) -> str:
        self._port.pfc_mode = None
        self.gw.changed()
        return ""

    def do_queue_wred(self, queue: int, name: str) -> str:
        if name not in self.gw.config.drop_profiles:
            raise Fail(f"Error: The drop profile {name} does not exist.")
        self._port.queue_wred[queue] = name
        self.gw.changed()
        return ""

    def do_undo_queue_wred(self, queue: int) -> str:
        if queue in self._port.queue_ecn:
            raise Fail(f"Error: ECN is enabled on queue {queue}; undo qos queue {queue} ecn first.")
        self._port.queue_wred.pop(queue, None)
        self.gw.changed()
        return ""

    def do_queue_ecn(self, queue: int) -> str:
        if queue not in self._port.queue_wred:
            raise Fail(f"Error: Apply a drop profile to queue {queue} (qos queue {queue} wred) before enabling ECN.")
        self._port.queue_ecn.add(queue)
        self.gw.changed()
        return ""

    def do_undo_queue_ecn(self, queue: int) -> str:
        self._port.queue_ecn.discard(queue)
        self.gw.changed()
        return ""

    # ---- save
    def do_save(self) -> str:
        def answer(reply: str) -> str:
            if reply.lower() in ("y", "yes"):
                with self.gw.lock:
                    try:
                        self.gw.save()
                    except DeviceError as e:
                        return self.device_error(e)
                    except OSError as e:
                        return f"Error: Failed to save the configuration: {e}"
                return ("Now saving the current configuration to the slot 1.\n"
                        "Info: Save the configuration successfully.")
            return "Info: The configuration was not saved."
        return self.ask("Warning: The current configuration will be written to the device.\n"
                        "Are you sure to continue?[Y/N]:", answer)

    # ---- display
    def do_display_version(self) -> str:
        d, h, m = uptime(self.gw)
        return "\n".join([
            "Huawei Versatile Routing Platform Software",
            f"VRP (R) software, Version 5.170 ({MODEL} {VERSION})",
            "Copyright (C) 2000-2024 HUAWEI TECH Co., Ltd.",
            f"{VENDOR} {MODEL} Routing Switch uptime is {d} days, {h} hours, {m} minutes",
            (f"(emulated by dcilab {software_version()}; counters and shaping are those of the Linux links of "
             "this namespace)"),
        ])

    def do_display_esn(self) -> str:
        """The equipment serial number, derived from the name the gateway was started with (stable
        across runs and ``sysname`` changes, like a real ESN)."""
        return f"ESN of slot 1: {serial_number(self.gw.default_sysname)}"

    def do_display_current(self) -> str:
        return self.gw.running_config()

    def do_display_current_if(self, **a: Any) -> str:
        port = a["if"]
        return "\n".join(["#", f"interface {port}"] + [" " + c for c in port_lines(self.gw.config.ports[port])]
                         + ["#", "return"])

    def do_display_this(self) -> str:
        cfg = self.gw.config
        if self.view == "interface":
            assert self.iface is not None
            body = [f"interface {self.iface}"] + [" " + c for c in port_lines(cfg.ports[self.iface])]
        elif self.view == "dcb-pfc":
            body = ["dcb pfc"] + [f" priority {p}" for p in sorted(cfg.pfc_priorities)]
        elif self.view == "drop-profile":
            assert self.profile is not None
            dp = cfg.drop_profiles[self.profile]
            body = [f"drop-profile {self.profile}"]
            if dp.green:
                body.append(" color green low-limit {} high-limit {} discard-percentage {}".format(*dp.green))
        else:
            body = [ln for ln in render_config(cfg).splitlines() if not ln.startswith(("!", "#")) and ln != "return"]
        return "\n".join(["#"] + body + ["#", "return"])

    def do_display_saved(self) -> str:
        p = self.gw.saved_path
        if not p or not p.exists():
            return "Info: The system is now comparing the configuration, please wait.\nInfo: There is no saved configuration."
        return p.read_text().rstrip("\n")

    def do_display_interface_brief(self) -> str:
        out = ["PHY: Physical", "*down: administratively down", "(l): loopback", "(s): spoofing",
               "(b): BFD down", "(e): ETHOAM down", "(d): Dampening Suppressed",
               "InUti/OutUti: input utility/output utility",
               f"{'Interface':<27}{'PHY':<9}{'Protocol':<10}{'InUti':>6}{'OutUti':>7}{'inErrors':>11}{'outErrors':>11}"]
        for port, ifname in self.gw.ports.items():
            info = self.gw.links.info(ifname)
            st = self.gw.links.stats(ifname) if info else {k: 0 for k in STAT_NAMES}
            phy, proto = _states(info)
            rin, rout, _, _ = self.gw.rates(port, st) if info else (0.0, 0.0, 0.0, 0.0)
            speed = port_speed_kbps(port) * 1000
            out.append(f"{port:<27}{phy:<9}{proto:<10}{_uti(rin, speed):>6}{_uti(rout, speed):>7}"
                       f"{st['rx_errors']:>11}{st['tx_errors']:>11}")
        return "\n".join(out)

    def do_display_interface(self, **a: Any) -> str:
        ports = [a["if"]] if "if" in a else list(self.gw.ports)
        return "\n\n".join(self._interface_detail(p) for p in ports)

    def _interface_detail(self, port: str) -> str:
        ifname = self.gw.ports[port]
        info = self.gw.links.info(ifname)
        pc = self.gw.config.ports[port]
        phy, proto = _states(info)
        if info is None:
            return "\n".join([f"{port} current state : DOWN (ifindex: 0)",
                              "Line protocol current state : DOWN",
                              f"Description: {pc.description or ''}",
                              f"Info: The port is not present (link {ifname} is absent)."])
        st = self.gw.links.stats(ifname)
        rin, rout, pin, pout = self.gw.rates(port, st)
        speed = port_speed_kbps(port) * 1000
        state = {"up": "UP", "down": "DOWN"}[phy] if phy in ("up", "down") else "Administratively DOWN"
        mac = info["address"].replace(":", "")
        mac = "-".join(mac[i:i + 4] for i in range(0, 12, 4)) if len(mac) == 12 else info["address"]
        lines = [f"{port} current state : {state} (ifindex: {info['ifindex']})",
                 f"Line protocol current state : {proto.upper()}",
                 f"Description: {pc.description or ''}",
                 f"Route Port,The Maximum Transmit Unit is {info['mtu']}"]
        if info.get("ipv4"):
            lines += [f"Internet Address is {a}" for a in info["ipv4"]]
        else:
            lines.append("Internet protocol processing : disabled")
        lines += [f"IP Sending Frames' Format is PKTFMT_ETHNT_2, Hardware address is {mac}",
                  f"Port Mode: COMMON FIBER, Linux link: {ifname}",
                  f"Speed: {speed // 1_000_000}, Loopback: NONE",
                  "Duplex: FULL, Negotiation: DISABLE",
                  "Mdi: -, Flow-control: DISABLE"]
        if pc.lr_cir_kbps is not None:
            lines.append(f"Outbound rate limit: CIR {pc.lr_cir_kbps} kbit/s"
                         + (f", CBS {pc.lr_cbs} bytes" if pc.lr_cbs else ""))
        lines += [f"Last 300 seconds input rate: {int(rin)} bits/sec, {int(pin)} packets/sec",
                  f"Last 300 seconds output rate: {int(rout)} bits/sec, {int(pout)} packets/sec",
                  f"Input:  {st['rx_packets']} packets, {st['rx_bytes']} bytes",
                  (f"  Unicast:             {max(st['rx_packets'] - st['multicast'], 0)},  "
                   f"Multicast:           {st['multicast']}"),
                  f"  Total Error:         {st['rx_errors']},  CRC: {st['rx_crc_errors']}",
                  f"  Discard:             {st['rx_dropped']}",
                  f"Output: {st['tx_packets']} packets, {st['tx_bytes']} bytes",
                  f"  Total Error:         {st['tx_errors']}",
                  f"  Discard:             {st['tx_dropped']}",
                  f"    Input bandwidth utilization  : {_uti(rin, speed)}",
                  f"    Output bandwidth utilization : {_uti(rout, speed)}"]
        return "\n".join(lines)

    def do_display_pfc(self, **a: Any) -> str:
        ports = [a["if"]] if "if" in a else list(self.gw.ports)
        prios = ",".join(str(p) for p in sorted(self.gw.config.pfc_priorities)) or "-"
        out = [(f"{'Interface':<20}{'Mode':<10}{'Status':<10}{'Priority':<12}{'Received(frames)':>18}"
                f"{'Transmitted(frames)':>21}")]
        for p in ports:
            pc = self.gw.config.ports[p]
            out.append(f"{p:<20}{pc.pfc_mode or '-':<10}{'enable' if pc.pfc_mode else 'disable':<10}"
                       f"{prios if pc.pfc_mode else '-':<12}{0:>18}{0:>21}")
        return "\n".join(out)

    def do_display_lr(self, **a: Any) -> str:
        ports = [a["if"]] if "if" in a else list(self.gw.ports)
        out = []
        for p in ports:
            pc = self.gw.config.ports[p]
            if pc.lr_cir_kbps is None:
                continue
            ifname = self.gw.ports[p]
            rc, txt, _ = self.gw.tc(["-s", "-j", "qdisc", "show", "dev", ifname, "root"])
            sent = dropped = over = 0
            try:
                for q in json.loads(txt or "[]") if rc == 0 else []:
                    if q.get("kind") == "tbf":
                        sent, dropped, over = q.get("bytes", 0), q.get("drops", 0), q.get("overlimits", 0)
            except (ValueError, AttributeError):
                pass
            out += [f"Interface {p}", " Direction: Outbound",
                    f" CIR(kbps): {pc.lr_cir_kbps}, CBS(bytes): {pc.lr_cbs or '-'}",
                    f" Passed: {sent} bytes, Discarded: {dropped} packets, Delayed(overlimits): {over}"]
        return "\n".join(out) if out else "Info: No rate limit is configured."

    def do_display_drop_profile(self, name: str | None = None) -> str:
        profiles = self.gw.config.drop_profiles
        if name is not None and name not in profiles:
            raise Fail(f"Error: The drop profile {name} does not exist.")
        out = []
        for n, dp in profiles.items():
            if name is not None and n != name:
                continue
            lo, hi, pct = dp.green or ("-", "-", "-")
            out += [f"Drop-profile[{n}]", f"{'Color':<8}{'Low-limit':>12}{'High-limit':>12}{'Discard-percentage':>20}",
                    f"{'Green':<8}{lo:>12}{hi:>12}{pct:>20}"]
        return "\n".join(out) if out else "Info: No drop profile exists."


# ------------------------------------------------------------------------------------ helpers

def _states(info: dict[str, Any] | None) -> tuple[str, str]:
    if info is None:
        return "down", "down"
    if not info.get("admin_up", True):
        return "*down", "down"
    up = info.get("operstate") in ("up", "unknown") and info.get("carrier", True)
    return ("up", "up") if up else ("down", "down")


def _uti(bps: float, speed_bps: int) -> str:
    if speed_bps <= 0:
        return "0%"
    pct = 100.0 * bps / speed_bps
    return f"{pct:.2f}%" if 0 < pct < 1 else f"{pct:.0f}%"


# ----------------------------------------------------------------------------------- dialect

DIALECT = register("vrp", Dialect(
    name="vrp", session=VrpSession, render_config=render_config,
    # a saved configuration's top-level lines run in the system view; `#`/`!` lines and `return` are skipped
    replay=partial(replay_indented, top_view="system", comments=("#", "!"), ends=("return",)),
    port_hint="a VRP interface name like 100GE1/0/1"))
