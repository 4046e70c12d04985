"""The emulated AI gateway: its VRP-style CLI (unit) and the real thing in namespaces with netmiko (lab).

The unit tests drive the VRP dialect (emulator.gateway.dialects.vrp) with a fake link reader and a fake tc, so they need
neither root nor SSH.  The lab tests build their own `dclg-` namespaces (a gateway with a WAN veth
toward a far end, and a management veth toward the host), start `python -m emulator.gateway`
inside the gateway's namespace and use plain netmiko `ConnectHandler(device_type="huawei")`;
they check the effect (tc qdisc, iperf3 throughput, link counters), not just the replies.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest

from emulator.gateway.device import STAT_NAMES, Gateway
from emulator.gateway.dialects.vrp import COMMANDS, VrpSession, render_config
from emulator.gateway.grammar import parse
from emulator.gateway.server import GatewayServer, password_checker

REPO = Path(__file__).resolve().parents[1]
PORTS = {"100GE1/0/1": "wan0", "100GE1/0/2": "fab0", "MEth0/0/0": "mgmt0"}
SSH_PASSWORD = "s3cret"   # admin's login on the in-process test server (ssh_server), made up for these tests


# ------------------------------------------------------------------------------------ fakes

class FakeLinks:
    def __init__(self) -> None:
        self.counters = {name: {k: 0 for k in STAT_NAMES} for name in ("wan0", "fab0", "mgmt0")}
        self.present = {"wan0", "fab0", "mgmt0"}

    def info(self, ifname: str) -> dict[str, Any] | None:
        if ifname not in self.present:
            return None
        return {"operstate": "up", "admin_up": True, "carrier": True, "mtu": 9000,
                "address": "02:00:00:00:00:01", "ifindex": 7, "ipv4": ["198.19.240.1/30"]}

    def stats(self, ifname: str) -> dict[str, int]:
        return dict(self.counters[ifname])


class FakeTc:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.fail = False
        self.roots: dict[str, str] = {}

    def __call__(self, args: list[str]) -> tuple[int, str, str]:
        self.calls.append(args)
        if self.fail:
            return 2, "", "RTNETLINK answers: Operation not permitted"
        if args[:2] == ["qdisc", "replace"]:
            self.roots[args[3]] = "tbf"
        elif args[:2] == ["qdisc", "del"]:
            if not self.roots.pop(args[3], None):
                return 2, "", "Error: Cannot delete qdisc with handle of zero."
        elif "show" in args:
            dev = args[args.index("dev") + 1]
            kind = self.roots.get(dev, "noqueue")
            return 0, json.dumps([{"kind": kind, "handle": "8001:", "bytes": 123, "drops": 4,
                                   "overlimits": 5}]), ""
        return 0, "", ""


@pytest.fixture
def dev(tmp_path: Path) -> tuple[Gateway, FakeLinks, FakeTc]:
    links, tc = FakeLinks(), FakeTc()
    return Gateway("GW-A", PORTS, saved_config=tmp_path / "vrpcfg.cfg", links=links, tc=tc), links, tc


def run(s: VrpSession, *lines: str) -> str:
    return "\n".join(s.handle_line(line) for line in lines)


# ------------------------------------------------------------------------------- unit: views

def test_prompts_follow_the_views_like_vrp(dev: Any) -> None:
    gw, _, _ = dev
    s = VrpSession(gw)
    assert s.prompt == "<GW-A>"
    assert "Enter system view" in s.handle_line("system-view")
    assert s.prompt == "[GW-A]"
    s.handle_line("interface 100GE1/0/1")
    assert s.prompt == "[GW-A-100GE1/0/1]"
    s.handle_line("interface 100GE1/0/2")                 # interface to interface directly
    assert s.prompt == "[GW-A-100GE1/0/2]"
    s.handle_line("quit")
    assert s.prompt == "[GW-A]"
    s.handle_line("dcb pfc")
    assert s.prompt == "[GW-A-dcb-pfc-default]"
    s.handle_line("return")
    assert s.prompt == "<GW-A>"
    assert "Info:" in s.handle_line("screen-length 0 temporary")
    s.handle_line("quit")
    assert s.closed


def test_abbreviations(dev: Any) -> None:
    gw, _, _ = dev
    s = VrpSession(gw)
    assert "VRP (R) software" in s.handle_line("dis ver")
    assert "100GE1/0/2" in s.handle_line("dis int b")
    s.handle_line("sys")
    assert s.prompt == "[GW-A]"
    s.handle_line("int 100ge1/0/1")
    assert s.prompt == "[GW-A-100GE1/0/1]"
    s.handle_line("q")
    s.handle_line("int 100GE 1/0/2")                       # VRP's two-word interface form
    assert s.prompt == "[GW-A-100GE1/0/2]"
    s.handle_line("q")
    s.handle_line("q")
    assert s.prompt == "<GW-A>"
    assert not s.closed


@pytest.mark.parametrize("view_cmds, line, kind, word", [
    ([], "display foo", "Unrecognized command", "foo"),
    ([], "frobnicate", "Unrecognized command", "frobnicate"),
    ([], "display", "Incomplete command", None),
    ([], "display version extra", "Too many parameters", "extra"),
    ([], "display interface 100GE1/0/9", "Wrong parameter", "100GE1/0/9"),
    (["sys"], "d x", "Ambiguous command", "d"),
    (["sys"], "interface", "Incomplete command", None),
    (["sys", "int 100GE1/0/1"], "qos lr outbound cir 0", "Wrong parameter", "0"),
    (["sys", "int 100GE1/0/1"], "qos lr outbound cir fast", "Wrong parameter", "fast"),
    (["sys", "int 100GE1/0/1"], "qos lr outbound cir", "Incomplete command", None),
    (["sys", "int 100GE1/0/1"], "qos lr sideways cir 10", "Unrecognized command", "sideways"),
    (["sys", "dcb pfc"], "priority 8", "Wrong parameter", "8"),
    ([], "system-view now", "Too many parameters", "now"),
    (["sys"], "screen-length 0 temporary", "Unrecognized command", "screen-length"),
])
def test_errors_have_the_vrp_marker_and_a_caret(dev: Any, view_cmds: list[str], line: str, kind: str,
                                                word: str | None) -> None:
    gw, _, tc = dev
    s = VrpSession(gw)
    for c in view_cmds:
        s.handle_line(c)
    before = render_config(gw.config)
    prompt = s.prompt
    out = s.handle_line(line)
    caret, msg = out.split("\n")
    assert msg == f"Error: {kind} found at '^' position."
    col = caret.index("^") - len(prompt)
    expected = line.index(word) if word else len(line) + 1
    assert col == expected, out
    assert render_config(gw.config) == before and s.prompt == prompt
    assert not [c for c in tc.calls if "replace" in c]


def test_refusals_leave_state_unchanged(dev: Any) -> None:
    gw, _, tc = dev
    s = VrpSession(gw)
    run(s, "sys", "int 100GE1/0/1")
    assert "Error:" in s.handle_line("dcb pfc enable mode manual")        # no dcb pfc profile yet
    assert "Error:" in s.handle_line("qos queue 3 ecn")                    # no WRED on the queue
    assert "Error:" in s.handle_line("qos queue 3 wred nosuch")
    assert "Error:" in s.handle_line("qos lr outbound cir 200000000")     # over the port speed
    tc.fail = True
    assert "Error: Failed to apply" in s.handle_line("qos lr outbound cir 100000")
    assert " qos lr" not in render_config(gw.config)
    assert gw.config.ports["100GE1/0/1"].lr_cir_kbps is None


def test_qos_lr_shapes_the_mapped_link_with_tbf(dev: Any) -> None:
    gw, _, tc = dev
    s = VrpSession(gw)
    assert run(s, "sys", "int 100GE1/0/1", "qos lr outbound cir 250000").strip().startswith("Enter system view")
    call = tc.calls[-1]
    assert call[:6] == ["qdisc", "replace", "dev", "wan0", "root", "tbf"]
    assert call[call.index("rate") + 1] == "250000kbit"
    assert int(call[call.index("burst") + 1]) >= 4 * 9000
    assert " qos lr outbound cir 250000" in s.handle_line("display this")
    s.handle_line("qos lr outbound cir 100000 cbs 2000000")
    assert tc.calls[-1][tc.calls[-1].index("burst") + 1] == "2000000"
    out = s.handle_line("display qos lr outbound interface 100GE1/0/1")
    assert "CIR(kbps): 100000" in out and "Passed: 123 bytes" in out
    s.handle_line("undo qos lr outbound")
    assert tc.calls[-1] == ["qdisc", "del", "dev", "wan0", "root"]
    assert "qos lr" not in render_config(gw.config)
    assert "Info:" in s.handle_line("undo qos lr outbound")               # nothing to undo


def test_an_emulated_gateway_shows_the_real_cir_and_shapes_at_the_lab_scale(tmp_path: Path) -> None:
    """Issue 15: the framework sends the real CIR (16:1 of a 3200G fabric: 200G); only the
    emulated gateway knows the lab runs at 0.00125 of the real rates."""
    links, tc = FakeLinks(), FakeTc()
    gw = Gateway("GW-A", {"400GE1/0/1": "wan0", "MEth0/0/0": "mgmt0"}, links=links, tc=tc, bandwidth_scale=0.00125)
    s = VrpSession(gw)
    assert "Error" not in run(s, "sys", "int 400GE1/0/1", "qos lr outbound cir 200000000")
    call = tc.calls[-1]
    assert call[call.index("rate") + 1] == "250000kbit"                  # 250 Mbit/s on the lab's link
    assert "CIR(kbps): 200000000" in s.handle_line("display qos lr outbound interface 400GE1/0/1")
    assert " qos lr outbound cir 200000000" in render_config(gw.config)
    assert "Error:" in s.handle_line("qos lr outbound cir 400000001")     # over the port speed, as on real gear
    with pytest.raises(ValueError, match="bandwidth_scale"):
        Gateway("GW-A", {"400GE1/0/1": "wan0"}, links=links, tc=tc, bandwidth_scale=0)


def test_pfc_and_ecn_are_stored_and_shown(dev: Any) -> None:
    gw, _, _ = dev
    s = VrpSession(gw)
    out = run(s, "sys", "dcb pfc", "priority 3", "priority 4", "undo priority 4", "quit",
              "drop-profile roce", "color green low-limit 20 high-limit 80 discard-percentage 10", "quit",
              "interface 100GE1/0/1", "dcb pfc enable mode manual", "qos queue 3 wred roce", "qos queue 3 ecn",
              "description WAN to dc-b", "return")
    assert "Error" not in out
    cur = s.handle_line("display current-configuration")
    assert "dcb pfc\n priority 3\n#" in cur
    assert "drop-profile roce\n color green low-limit 20 high-limit 80 discard-percentage 10" in cur
    assert ("interface 100GE1/0/1\n description WAN to dc-b\n dcb pfc enable mode manual\n"
            " qos queue 3 wred roce\n qos queue 3 ecn\n#") in cur
    assert cur.endswith("return")
    pfc = s.handle_line("display dcb pfc interface 100GE1/0/1")
    assert re.search(r"100GE1/0/1\s+manual\s+enable\s+3\s", pfc), pfc
    assert re.search(r"Green\s+20\s+80\s+10", s.handle_line("display drop-profile roce"))
    assert "Error:" in run(s, "sys", "undo drop-profile roce")            # still applied
    assert "Error" not in run(s, "interface 100GE1/0/1", "undo qos queue 3 ecn", "undo qos queue 3 wred", "quit",
                              "undo drop-profile roce")
    assert "roce" not in s.handle_line("display current-configuration")


def test_display_interface_reads_the_link_counters(dev: Any) -> None:
    gw, links, _ = dev
    s = VrpSession(gw)
    links.counters["wan0"].update(rx_packets=10, rx_bytes=1000, tx_packets=20, tx_bytes=123456, rx_errors=2)
    out = s.handle_line("display interface 100GE1/0/1")
    assert "100GE1/0/1 current state : UP" in out
    assert "Input:  10 packets, 1000 bytes" in out and "Output: 20 packets, 123456 bytes" in out
    assert "Internet Address is 198.19.240.1/30" in out and "Linux link: wan0" in out
    brief = s.handle_line("display interface brief")
    assert re.search(r"^100GE1/0/1\s+up\s+up\s+\S+%\s+\S+%\s+2\s+0$", brief, re.MULTILINE), brief
    links.present.discard("fab0")
    assert "100GE1/0/2 current state : DOWN" in s.handle_line("display interface 100GE1/0/2")
    assert re.search(r"^100GE1/0/2\s+down\s+down", s.handle_line("dis int b"), re.MULTILINE)


def test_save_asks_and_a_new_gateway_restores_the_config(dev: Any, tmp_path: Path) -> None:
    gw, links, tc = dev
    s = VrpSession(gw)
    run(s, "sys", "sysname GW-X", "dcb pfc", "priority 3", "quit", "int 100GE1/0/1",
        "qos lr outbound cir 400000", "dcb pfc enable mode auto", "return")
    assert s.prompt == "<GW-X>"
    assert "Info: There is no saved configuration." in s.handle_line("display saved-configuration")
    out = s.handle_line("save")
    assert out.endswith("Are you sure to continue?[Y/N]:") and s.prompt == ""
    assert "not saved" in s.handle_line("n")
    assert not (tmp_path / "vrpcfg.cfg").exists()
    s.handle_line("save")
    assert "Save the configuration successfully" in s.handle_line("y")
    assert s.prompt == "<GW-X>"
    assert "qos lr outbound cir 400000" in s.handle_line("display saved-configuration")

    tc2 = FakeTc()
    gw2 = Gateway("GW-A", PORTS, saved_config=tmp_path / "vrpcfg.cfg", links=links, tc=tc2)
    assert gw2.load_saved() == []
    assert render_config(gw2.config) == render_config(gw.config)
    assert VrpSession(gw2).prompt == "<GW-X>"
    assert any(c[:4] == ["qdisc", "replace", "dev", "wan0"] and "400000kbit" in c for c in tc2.calls)


# every break str.splitlines() honours: a saved configuration is replayed line by line
LINE_BREAKS = ["\n", "\r", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


@pytest.mark.parametrize("brk", LINE_BREAKS, ids=lambda c: f"U+{ord(c):04X}")
def test_a_description_cannot_smuggle_a_line_into_the_saved_config(dev: Any, tmp_path: Path, brk: str) -> None:
    gw, links, _ = dev
    s = VrpSession(gw)
    run(s, "sys", "int 100GE1/0/1")
    line = f"description to dc-b{brk} qos lr outbound cir 8"   # indented: replayed in the interface view
    out = s.handle_line(line)
    prompt = "[GW-A-100GE1/0/1]"
    assert out.endswith("\nError: Wrong parameter found at '^' position."), repr(out)
    assert out.index("^") - len(prompt) == line.index(brk)          # the caret is on the break
    assert gw.config.ports["100GE1/0/1"].description is None
    run(s, "description to dc-b", "return", "save", "y")
    gw2 = Gateway("GW-A", PORTS, saved_config=tmp_path / "vrpcfg.cfg", links=links, tc=FakeTc())
    assert gw2.load_saved() == []
    assert gw2.config.ports["100GE1/0/1"].lr_cir_kbps is None
    assert gw2.config.ports["100GE1/0/1"].description == "to dc-b"


@pytest.mark.parametrize("ch", ["\t", "\x00", "\x1b", "\x7f"], ids=lambda c: f"U+{ord(c):04X}")
def test_a_description_refuses_control_characters(dev: Any, ch: str) -> None:
    gw, _, _ = dev
    s = VrpSession(gw)
    run(s, "sys", "int 100GE1/0/1")
    assert "Error: Wrong parameter" in s.handle_line(f"description a{ch}b")
    assert gw.config.ports["100GE1/0/1"].description is None
    assert s.handle_line("description a plain one: d\u00e9j\u00e0 vu") == ""   # any other text is kept
    assert gw.config.ports["100GE1/0/1"].description == "a plain one: d\u00e9j\u00e0 vu"


def test_a_start_without_shaping_removes_a_stale_tbf(dev: Any, tmp_path: Path) -> None:
    _, links, _ = dev
    tc = FakeTc()
    tc.roots["wan0"] = "tbf"                               # left by a crashed run
    Gateway("GW-A", PORTS, saved_config=tmp_path / "none.cfg", links=links, tc=tc).load_saved()
    assert ["qdisc", "del", "dev", "wan0", "root"] in tc.calls
    assert not any("fab0" in c and "del" in c for c in tc.calls)


def test_save_fsyncs_the_file_and_its_folder(dev: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A power cut after `save` leaves the old configuration or the new one, never an empty file."""
    calls: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        calls.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)
    monkeypatch.setattr(os, "fsync", fsync)
    s = VrpSession(dev[0])
    assert "successfully" in run(s, "system-view", "sysname GW-F", "save", "y")
    saved = tmp_path / "vrpcfg.cfg"
    assert "sysname GW-F" in saved.read_text() and not (tmp_path / "vrpcfg.cfg.tmp").exists()
    assert calls == [f"{saved}.tmp", str(tmp_path)]


def test_a_line_longer_than_vrps_510_characters_is_refused_whole(dev: Any) -> None:
    """VRP's editor holds 510 characters; a longer line is refused, not run cut short (nor run whole)."""
    from emulator.gateway.terminal import LINE, LineEditor
    gw, _, _ = dev
    s = VrpSession(gw)
    assert "VRP (R) software" in s.handle_line("display version" + " " * 495)        # 510: fine
    out = s.handle_line("display version" + " " * 496)
    assert out == "Error: The command is longer than 510 characters and was not run."
    run(s, "sys", "int 100GE1/0/1")
    assert "Error:" in s.handle_line("description " + "x" * 499)
    assert gw.config.ports["100GE1/0/1"].description is None and s.prompt == "[GW-A-100GE1/0/1]"
    ed = LineEditor()                                       # the terminal's buffer stays bounded
    echoed = ""
    for _ in range(100):
        for kind, text in ed.feed(b"x" * 10_000):
            echoed += text
            assert kind != LINE
    assert len(ed.buf) == 511 and echoed == "x" * 510 + "\a" * 100
    assert list(ed.feed(b"\r")) == [(LINE, "x" * 511)] and ed.buf == ""


def test_a_line_that_is_not_utf8_is_refused_whole_not_stored_altered(dev: Any) -> None:
    """Issue 16: bytes that are not UTF-8 were turned into U+FFFD and the line run (a description
    stored with it); now the line is refused.  A U+FFFD typed as UTF-8 is text like any other."""
    from emulator.gateway.terminal import ECHO, LINE, LineEditor
    gw, _, _ = dev
    s = VrpSession(gw)
    run(s, "sys", "int 100GE1/0/1")
    ed = LineEditor()
    events = list(ed.feed("description caf".encode() + b"\xe9 \xff\xfe\r"))     # latin-1, not UTF-8
    (line,) = [t for k, t in events if k == LINE]
    assert "".join(t for k, t in events if k == ECHO) == "description caf\ufffd \ufffd\ufffd"
    assert s.handle_line(line) == "Error: The command is not valid UTF-8 and was not run."
    assert gw.config.ports["100GE1/0/1"].description is None
    (line,) = [t for k, t in LineEditor().feed("description caf\u00e9 \ufffd\r".encode()) if k == LINE]
    assert "Error" not in s.handle_line(line)
    assert gw.config.ports["100GE1/0/1"].description == "caf\u00e9 \ufffd"
    split = LineEditor()          # a character split across two reads is still one character
    assert [t for k, t in [*split.feed(b"description \xc3"), *split.feed(b"\xa9t\xc3\xa9\r")] if k == LINE] \
        == ["description \u00e9t\u00e9"]


def test_version_and_esn_say_what_the_emulator_is(dev: Any) -> None:
    from emulator.identity import VENDOR, serial_number, software_version
    s = VrpSession(dev[0])
    out = run(s, "display version")
    assert "VRP (R) software, Version 5.170 (DCILAB-AIGW V200R022C00SPC500)" in out
    assert f"\n{VENDOR} DCILAB-AIGW Routing Switch uptime is 0 days, 0 hours, 0 minutes\n" in out
    assert f"(emulated by dcilab {software_version()};" in out
    assert run(s, "dis esn") == f"ESN of slot 1: {serial_number('GW-A')}"
    run(s, "system-view", "sysname GW-X", "return")     # the serial is the device's, not its configured name's
    assert run(s, "display esn") == f"ESN of slot 1: {serial_number('GW-A')}"


def test_parse_is_a_pure_function() -> None:
    cmd, args = parse("dis int 100ge1/0/1", "user", lambda t: t.upper(), COMMANDS)
    assert cmd.handler == "display_interface" and args == {"if": "100GE1/0/1"}


def test_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "gw.json"
    for text in ("{not json", json.dumps({"hostname": "GW-A"}),
                 json.dumps({"hostname": "GW A", "listen": {"address": "127.0.0.1", "port": 1}})):
        bad.write_text(text)
        p = subprocess.run([sys.executable, "-m", "emulator.gateway", "--config", str(bad)], cwd=REPO,
                           capture_output=True, text=True, timeout=30, check=False)
        assert p.returncode == 2, p.stderr
        assert len(p.stderr.strip().splitlines()) == 1 and p.stderr.startswith("emulator.gateway:"), p.stderr


# --------------------------------------------------------------- SSH without namespaces (unit)

@pytest.fixture
def ssh_server(dev: Any) -> Iterator[GatewayServer]:
    gw, _, _ = dev
    srv = GatewayServer(gw, paramiko.RSAKey.generate(1024), "127.0.0.1", 0,
                        check_password=password_checker("admin", SSH_PASSWORD)).start()
    try:
        yield srv
    finally:
        srv.stop()


def test_ssh_shell_exec_and_auth(ssh_server: GatewayServer) -> None:
    cl = paramiko.SSHClient()
    cl.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    with pytest.raises(paramiko.AuthenticationException):
        cl.connect("127.0.0.1", ssh_server.port, "admin", "wrong", look_for_keys=False, allow_agent=False)
    cl.close()
    cl = paramiko.SSHClient()
    cl.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    cl.connect("127.0.0.1", ssh_server.port, "admin", SSH_PASSWORD, look_for_keys=False, allow_agent=False)
    try:
        _, out, _ = cl.exec_command("display version")
        assert "VRP (R) software" in out.read().decode() and out.channel.recv_exit_status() == 0
        _, out, _ = cl.exec_command("display nothing")
        assert "Error: Unrecognized command" in out.read().decode() and out.channel.recv_exit_status() == 1
        _, out, _ = cl.exec_command(b"display version\xff")       # type: ignore[arg-type]  # not UTF-8
        assert "not valid UTF-8 and was not run" in out.read().decode() and out.channel.recv_exit_status() == 1
        chan = cl.invoke_shell()
        buf = _read_until(chan, "<GW-A>$")
        assert "Info: The max number of VTY users" in buf
        chan.send("sys\rint 100GE1/0/1\r\x1a")             # CR line ends and Ctrl+Z, like a terminal
        _read_until(chan, r"\[GW-A-100GE1/0/1\]\r\n<GW-A>")
        chan.send("dis fooo\x7f\x7f\x7fxyz\n")               # backspaces edit the line
        out = _read_until(chan, r"Error: .*\r\n<GW-A>")
        assert "dis fooo\b \b\b \b\b \bxyz\r\n" in out
        assert "Error: Unrecognized command found at '^' position." in out
        chan.send("quit\n")
        deadline = time.monotonic() + 5
        while not chan.exit_status_ready() and not chan.closed and time.monotonic() < deadline:
            if chan.recv_ready():
                chan.recv(4096)
            elif chan.recv(4096) == b"":
                break
        assert chan.closed or chan.recv(1) == b""
    finally:
        cl.close()


def test_ssh_public_key_auth(dev: Any, tmp_path: Path) -> None:
    from emulator.gateway.server import load_authorized_keys
    gw, _, _ = dev
    user_key, other_key = paramiko.RSAKey.generate(1024), paramiko.RSAKey.generate(1024)
    ak = tmp_path / "authorized_keys"
    ak.write_text(f"# comment\n{user_key.get_name()} {user_key.get_base64()} op@lab\n")
    srv = GatewayServer(gw, paramiko.RSAKey.generate(1024), "127.0.0.1", 0, authorized_keys=load_authorized_keys(ak),
                        key_user="admin").start()
    try:
        for key, ok in ((other_key, False), (user_key, True)):
            cl = paramiko.SSHClient()
            cl.set_missing_host_key_policy(paramiko.AutoAddPolicy())
            try:
                if not ok:
                    with pytest.raises(paramiko.AuthenticationException):
                        cl.connect("127.0.0.1", srv.port, "admin", pkey=key, look_for_keys=False, allow_agent=False)
                    continue
                cl.connect("127.0.0.1", srv.port, "admin", pkey=key, look_for_keys=False, allow_agent=False)
                _, out, _ = cl.exec_command("display interface brief")
                assert "100GE1/0/1" in out.read().decode()
            finally:
                cl.close()
    finally:
        srv.stop()


def _client(srv: GatewayServer) -> paramiko.SSHClient:
    cl = paramiko.SSHClient()
    cl.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    cl.connect("127.0.0.1", srv.port, "admin", SSH_PASSWORD, look_for_keys=False, allow_agent=False, timeout=10)
    return cl


def _read_to_end(chan: paramiko.Channel, timeout: float = 5.0) -> str:
    buf, deadline = b"", time.monotonic() + timeout
    chan.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            data = chan.recv(4096)
        except TimeoutError:
            continue
        if not data:
            return buf.decode()
        buf += data
    raise AssertionError(f"the channel stayed open: {buf[-300:]!r}")


def _wait_for(cond: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.05)


ALL_BUSY = "All user interfaces are used, please try later!"


def test_ssh_at_most_ten_vty_users_and_the_eleventh_is_told(ssh_server: GatewayServer) -> None:
    """The banner's "max number of VTY users is 10" holds: an 11th shell or exec is refused in
    VRP's words, and a VTY is free again once its user leaves."""
    users: list[paramiko.SSHClient] = []
    try:
        for i in range(10):
            users.append(_client(ssh_server))
            buf = _read_until(users[-1].invoke_shell(), "<GW-A>$")
            assert f"of current VTY users on line is {i + 1}." in buf
        late = _client(ssh_server)
        users.append(late)
        out = _read_to_end(late.invoke_shell())
        assert ALL_BUSY in out and "<GW-A>" not in out
        _, stdout, _ = late.exec_command("display version")
        assert ALL_BUSY in stdout.read().decode() and stdout.channel.recv_exit_status() == 1
        users.pop(0).close()                                 # one user leaves
        _wait_for(lambda: ssh_server.vty_users == 9)
        chan = late.invoke_shell()
        assert "of current VTY users on line is 10." in _read_until(chan, "<GW-A>$")
        chan.send("display version\r")
        assert "VRP (R) software" in _read_until(chan, r"<GW-A>$")
    finally:
        for cl in users:
            cl.close()
    _wait_for(lambda: ssh_server.vty_users == 0)


def test_the_gateway_driver_logs_out_when_it_closes(ssh_server: GatewayServer) -> None:
    """The framework's driver closes without netmiko's graceful cleanup (a 2 s quiet-channel read
    per session, paid between every two trial cases): what it must still do is end its VTY
    session, so ten drivers opened and closed, twice over, never meet "All user interfaces are
    used", and after each round no VTY is left in use."""
    from drivers import SshTarget, sha256_fingerprint
    from drivers.gateway.base import Gateway as GatewayDriver
    from drivers.gateway.dialects.huawei_vrp import DIALECT

    target = SshTarget("127.0.0.1", ssh_server.port, "admin", password=SSH_PASSWORD,
                       fingerprint=sha256_fingerprint(ssh_server.host_key), name="GW-A")
    for _round in range(2):
        drvs = [GatewayDriver(target, DIALECT, wan_port="100GE1/0/1") for _ in range(10)]
        assert ssh_server.vty_users == 10
        assert all(d.counters().port == "100GE1/0/1" for d in drvs)
        for d in drvs:
            d.close()
        _wait_for(lambda: ssh_server.vty_users == 0)


def test_ssh_an_over_long_line_is_refused_and_the_session_goes_on(ssh_server: GatewayServer) -> None:
    cl = _client(ssh_server)
    try:
        chan = cl.invoke_shell()
        _read_until(chan, "<GW-A>$")
        chan.sendall(("display version" + " " * 100_000 + "\r").encode())
        out = _read_until(chan, r"<GW-A>$")
        assert "Error: The command is longer than 510 characters and was not run." in out
        assert "VRP (R) software" not in out and "\a" in out and len(out) < 2000
        chan.send("display version\r")
        assert "VRP (R) software" in _read_until(chan, r"<GW-A>$")
        _, stdout, _ = cl.exec_command("display version" + " " * 600)
        assert "longer than 510" in stdout.read().decode() and stdout.channel.recv_exit_status() == 1
    finally:
        cl.close()


def test_ssh_a_connection_without_login_or_session_is_closed_and_a_silent_shell_too(dev: Any) -> None:
    """Nothing holds a thread for ever: no login within the login timeout, no session open for the
    idle timeout, a shell silent for the idle timeout (VRP: idle-timeout 10 min by default)."""
    srv = GatewayServer(dev[0], paramiko.RSAKey.generate(1024), "127.0.0.1", 0,
                        check_password=password_checker("admin", SSH_PASSWORD), login_timeout_s=0.5,
                        idle_timeout_s=0.5).start()
    try:
        anon = paramiko.Transport(socket.create_connection(("127.0.0.1", srv.port)))
        anon.start_client(timeout=10)                        # key exchange, and no login
        _wait_for(lambda: not anon.is_active())
        cl = _client(srv)
        _, stdout, _ = cl.exec_command("display esn")
        assert "ESN of slot 1" in stdout.read().decode()     # a session, then none
        _wait_for(lambda: not cl.get_transport().is_active())  # type: ignore[union-attr]
        chan = _client(srv).invoke_shell()
        assert "idle timeout" in _read_to_end(chan)
        _wait_for(lambda: srv.connections == 0 and srv.vty_users == 0)
    finally:
        srv.stop()


def test_ssh_connections_beyond_twice_the_vtys_are_closed_at_accept(ssh_server: GatewayServer) -> None:
    socks = [socket.create_connection(("127.0.0.1", ssh_server.port)) for _ in range(20)]
    try:
        for s in socks:                                      # each is served: the SSH banner comes
            s.settimeout(5)
            assert s.recv(64).startswith(b"SSH-2.0-")
        extra = socket.create_connection(("127.0.0.1", ssh_server.port))
        extra.settimeout(5)
        assert extra.recv(64) == b""                         # the 21st: closed at once
        extra.close()
    finally:
        for s in socks:
            s.close()


def _read_until(chan: paramiko.Channel, pattern: str, timeout: float = 5.0) -> str:
    buf, deadline = "", time.monotonic() + timeout
    chan.settimeout(0.2)
    while not re.search(pattern, buf):
        if time.monotonic() > deadline:
            raise AssertionError(f"never saw {pattern!r}: {buf[-300:]!r}")
        try:
            buf += chan.recv(4096).decode()
        except TimeoutError:
            pass
    return buf


# ------------------------------------------------------------------- lab: namespaces + netmiko

GW_NS, FAR_NS, HOST_IF = "dclg-a", "dclg-b", "dclg-h0"
GW_MGMT, HOST_MGMT = "198.19.241.1", "198.19.241.2"
GW_WAN, FAR_WAN = "198.19.240.1", "198.19.240.2"
PASSWORD = "dclg-test-pw"


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(list(args), capture_output=True, text=True, timeout=30, check=False)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(args)}: {p.stderr.strip()}")
    return p


def remove_namespaces() -> None:
    for ns in (GW_NS, FAR_NS):
        pids = sh("ip", "netns", "pids", ns, check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), 9)
            except (ProcessLookupError, ValueError):
                pass
        sh("ip", "netns", "del", ns, check=False)
    sh("ip", "link", "del", HOST_IF, check=False)


def build_namespaces(mtu: int = 9000) -> None:
    remove_namespaces()
    for ns in (GW_NS, FAR_NS):
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "-n", GW_NS, "link", "add", "wan0", "mtu", str(mtu), "type", "veth", "peer", "name", "wan0",
       "netns", FAR_NS, "mtu", str(mtu))
    sh("ip", "-n", GW_NS, "addr", "add", f"{GW_WAN}/30", "dev", "wan0")
    sh("ip", "-n", FAR_NS, "addr", "add", f"{FAR_WAN}/30", "dev", "wan0")
    for ns in (GW_NS, FAR_NS):
        sh("ip", "-n", ns, "link", "set", "wan0", "up")
    sh("ip", "-n", GW_NS, "link", "add", "fab0", "type", "veth", "peer", "name", "fabx", "netns", FAR_NS)
    sh("ip", "-n", GW_NS, "link", "set", "fab0", "up")
    sh("ip", "-n", FAR_NS, "link", "set", "fabx", "up")
    sh("ip", "link", "add", HOST_IF, "type", "veth", "peer", "name", "mgmt0", "netns", GW_NS)
    sh("ip", "addr", "add", f"{HOST_MGMT}/30", "dev", HOST_IF)
    sh("ip", "link", "set", HOST_IF, "up")
    sh("ip", "-n", GW_NS, "addr", "add", f"{GW_MGMT}/30", "dev", "mgmt0")
    sh("ip", "-n", GW_NS, "link", "set", "mgmt0", "up")


class GatewayProcess:
    """`python -m emulator.gateway` inside the gateway namespace."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.cfg = workdir / "gw.json"
        self.cfg.write_text(json.dumps({
            "hostname": "GW-A", "listen": {"address": GW_MGMT, "port": 22},
            "host_key": str(workdir / "host_key"),
            "auth": {"username": "admin", "password_env": "DCLG_GW_PASSWORD"},
            "ports": PORTS, "saved_config": str(workdir / "vrpcfg.cfg"), "state_dir": str(workdir / "state"),
        }))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = dict(os.environ, DCLG_GW_PASSWORD=PASSWORD, PYTHONPATH=str(REPO))
        self.log = open(self.workdir / "gw.log", "ab")
        self.proc = subprocess.Popen(["ip", "netns", "exec", GW_NS, sys.executable, "-m", "emulator.gateway",
                                      "--config", str(self.cfg)], env=env, stdout=self.log, stderr=self.log,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited: {(self.workdir / 'gw.log').read_text()[-500:]}")
            try:
                socket.create_connection((GW_MGMT, 22), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("the gateway never listened")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                assert self.proc.wait(timeout=10) == 0
            finally:
                if self.proc.poll() is None:
                    self.proc.kill()
                    self.proc.wait()
        if self.proc:
            self.log.close()


@pytest.fixture(scope="module")
def lab_gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(tmp_path_factory.mktemp("gw"))
    try:
        build_namespaces()
        gw.start()
        yield gw
    finally:
        gw.stop()
        remove_namespaces()


def connect(password: str = PASSWORD) -> Any:
    from netmiko import ConnectHandler
    return ConnectHandler(device_type="huawei", host=GW_MGMT, username="admin", password=password,
                          timeout=10, conn_timeout=10)


def tbf_rate_bps(ns: str = GW_NS) -> int | None:
    for q in json.loads(sh("tc", "-j", "-n", ns, "qdisc", "show", "dev", "wan0", "root").stdout or "[]"):
        if q.get("kind") == "tbf":
            return int(q["options"]["rate"])
    return None


def iperf_bps(seconds: int = 3) -> tuple[float, int]:
    """TCP goodput from the gateway to the far end, and bytes sent."""
    srv = subprocess.Popen(["ip", "netns", "exec", FAR_NS, "iperf3", "-s", "-1", "-B", FAR_WAN],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            res = subprocess.run(["ip", "netns", "exec", GW_NS, "iperf3", "-c", FAR_WAN, "-t", str(seconds),
                                  "-O", "1", "-J"], capture_output=True, text=True, timeout=30, check=False)
            try:
                end = json.loads(res.stdout)["end"]
                return end["sum_received"]["bits_per_second"], int(end["sum_sent"]["bytes"])
            except (ValueError, KeyError):
                pass
            if time.monotonic() > deadline or srv.poll() is not None:
                raise AssertionError(f"iperf3 failed: {res.stdout[-300:]}")
            time.sleep(0.05)                               # the server may not listen yet
    finally:
        srv.kill()
        srv.wait()


def out_bytes(text: str) -> int:
    m = re.search(r"^Output: (\d+) packets, (\d+) bytes", text, re.MULTILINE)
    assert m, text
    return int(m.group(2))


@pytest.mark.lab
def test_netmiko_display_and_errors(lab_gw: GatewayProcess) -> None:
    c = connect()
    try:
        assert c.base_prompt == "GW-A"
        brief = c.send_command("display interface brief")
        for port in PORTS:
            assert re.search(rf"^{re.escape(port)}\s+up\s+up", brief, re.MULTILINE), brief
        err = c.send_command("display foo")
        assert "Error: Unrecognized command found at '^' position." in err
        assert "VRP (R) software" in c.send_command("dis ver")
    finally:
        c.disconnect()


@pytest.mark.lab
def test_netmiko_wrong_password_is_refused(lab_gw: GatewayProcess) -> None:
    from netmiko.exceptions import NetmikoAuthenticationException
    with pytest.raises(NetmikoAuthenticationException):
        connect(password="not-it")


@pytest.mark.lab
def test_netmiko_shaping_really_shapes_and_counters_move(lab_gw: GatewayProcess) -> None:
    c = connect()
    try:
        before = out_bytes(c.send_command("display interface 100GE1/0/1"))
        out = c.send_config_set(["interface 100GE1/0/1", "qos lr outbound cir 200000"])
        assert "Error" not in out
        assert tbf_rate_bps() == 200_000_000 // 8
        bps, sent = iperf_bps()
        assert abs(bps - 200e6) / 200e6 < 0.10, f"{bps / 1e6:.1f} Mbit/s for a 200 Mbit/s limit"
        after = out_bytes(c.send_command("display interface 100GE1/0/1"))
        assert after - before >= sent
        out = c.send_config_set(["interface 100GE1/0/1", "undo qos lr outbound"])
        assert "Error" not in out
        assert tbf_rate_bps() is None
        assert "tbf" not in sh("tc", "-n", GW_NS, "qdisc", "show", "dev", "wan0").stdout
        assert "qos lr" not in c.send_command("display current-configuration")
    finally:
        c.disconnect()


@pytest.mark.lab
def test_netmiko_save_survives_a_restart(lab_gw: GatewayProcess) -> None:
    c = connect()
    try:
        out = c.send_config_set(["dcb pfc", "priority 3", "quit", "drop-profile roce",
                                 "color green low-limit 20 high-limit 80 discard-percentage 10", "quit",
                                 "interface 100GE1/0/1", "qos lr outbound cir 150000",
                                 "dcb pfc enable mode manual", "qos queue 3 wred roce", "qos queue 3 ecn"])
        assert "Error" not in out, out
        saved = c.save_config()
        assert "Save the configuration successfully" in saved
        running = c.send_command("display current-configuration")
    finally:
        c.disconnect()
    lab_gw.stop()
    sh("tc", "-n", GW_NS, "qdisc", "del", "dev", "wan0", "root")     # what a reboot would lose
    assert tbf_rate_bps() is None
    lab_gw.start()
    assert tbf_rate_bps() == 150_000_000 // 8
    c = connect()
    try:
        again = c.send_command("display current-configuration")
        assert again == running
        assert re.search(r"100GE1/0/1\s+manual\s+enable\s+3", c.send_command("display dcb pfc interface"))
        assert "qos lr outbound cir 150000" in c.send_command("display saved-configuration")
    finally:
        c.disconnect()
