"""A gateway dialect of one's own is one module (issue 15): an IOS-like toy CLI, written into a
temporary folder, registers both its emulated gateway (:mod:`emulator.gateway.dialects`) and the
framework's driver dialect (:mod:`drivers.registry`); loaded through ``DCILAB_PLUGINS`` as a lab
would, an emulated gateway speaks it on loopback (fake links and tc: no namespaces, no root) and
the framework's real gateway driver, over SSH and netmiko, sets its WAN shaping, reads it back and
clears it.  A plugin that fails to import is an error naming the variable, the entry and the fix.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import paramiko
import pytest

from drivers import SshTarget, registry, sha256_fingerprint
from drivers.errors import EditRejected
from drivers.gateway.base import Gateway as GatewayDriver
from emulator.gateway import dialects
from emulator.gateway.device import Gateway
from emulator.gateway.server import GatewayServer, password_checker
from emulator.plugins import ENV, PluginError, load_plugins
from tests.fuzz.support import FakeLinks, FakeTc

ROOT = Path(__file__).resolve().parents[1]
PORTS = {"HundredGigE1/0/1": "wan0", "HundredGigE1/0/2": "fab0", "Mgmt0/0/0": "mgmt0"}

TOY = '''
"""A toy IOS-like gateway CLI: the emulated gateway and the framework's driver, in one module."""

from drivers import registry
from drivers.gateway.base import Dialect as DriverDialect
from emulator.gateway import dialects
from emulator.gateway.grammar import compile_table, int_range, interface, matching
from emulator.gateway.session import Session, replay_indented

# ---- the emulated gateway: commands, views, handlers, words
EXEC, CONF, IFV = frozenset({"exec"}), frozenset({"config"}), frozenset({"config-if"})
GRAMMAR = [
    (EXEC | CONF | IFV, "show running-config", "show_run"),
    (EXEC | CONF | IFV, "show running-config interface <if>", "show_run_if"),
    (EXEC, "configure terminal", "configure"),
    (CONF, "hostname <name>", "hostname"),
    (CONF | IFV, "interface <if>", "interface"),
    (IFV, "rate-limit output <cir>", "rate_limit"),
    (IFV, "no rate-limit output", "no_rate_limit"),
    (CONF | IFV, "end", "end"),
    (EXEC | CONF | IFV, "exit", "exit"),
]
PARAMS = {"if": interface, "cir": int_range(8, 400_000_000), "name": matching(r"[A-Za-z0-9-]{1,63}")}


def port_lines(port):
    return [] if port.lr_cir_kbps is None else [f" rate-limit output {port.lr_cir_kbps}"]


def render_config(cfg, updated=None):
    lines = ["!", f"hostname {cfg.sysname}", "!"]
    for name, port in cfg.ports.items():
        lines += [f"interface {name}", *port_lines(port), "!"]
    return "\\n".join([*lines, "end"])


class ToySession(Session):
    commands = compile_table(GRAMMAR, PARAMS)
    start_view = "exec"
    error_marker = "% "
    too_long_text = "% Line longer than {max_line} characters"
    not_utf8_text = "% Line is not UTF-8"

    def view_prompt(self):
        mode = {"exec": "", "config": "(config)", "config-if": "(config-if)"}[self.view]
        return f"{self.gw.config.sysname}{mode}#"

    def parse_error(self, prompt, err):
        return " " * (len(prompt) + err.pos) + "^\\n% Invalid input detected at '^' marker."

    def device_error(self, err):
        return f"% {err}"

    def do_show_run(self):
        return self.gw.running_config()

    def do_show_run_if(self, **a):
        return "\\n".join([f"interface {a['if']}", *port_lines(self.gw.config.ports[a["if"]]), "end"])

    def do_configure(self):
        self.view = "config"
        return "Enter configuration commands, one per line.  End with CNTL/Z."

    def do_hostname(self, name):
        self.gw.config.sysname = name
        self.gw.changed()

    def do_interface(self, **a):
        self.view, self.iface = "config-if", a["if"]

    def do_rate_limit(self, cir):
        self.gw.set_rate_limit(self.iface, cir)

    def do_no_rate_limit(self):
        self.gw.clear_rate_limit(self.iface)

    def do_end(self):
        self.suspend()

    def do_exit(self):
        if self.view == "exec":
            self.closed = True
        self.view, self.iface = {"config-if": "config"}.get(self.view, "exec"), None


dialects.register("toy", dialects.Dialect(
    name="toy", session=ToySession, render_config=render_config,
    replay=lambda gw, text: replay_indented(gw, text, top_view="config", comments=("!",), ends=("end",)),
    port_hint="an interface name like HundredGigE1/0/1",
    lab_ports=("HundredGigE1/0/1", "HundredGigE1/0/2", "Mgmt0/0/0")))   # WAN, fabric, management in a lab

# ---- the framework's driver: what to send, which prompts to wait for, how to read the replies
DIALECT = DriverDialect(
    name="toy", netmiko_device_type="generic", wan_port="HundredGigE1/0/1",
    enter_config="configure terminal", exit_config="end",
    config_prompt=r"\\)#[^\\S\\n]*$", exec_prompt=r"[\\w.-]#[^\\S\\n]*$", error_re=r"^% .*$",
    commands={"running_config": ["show running-config"],
              "shaping_show": ["show running-config interface {port}"]},
    config={"shaping_set": ["interface {port}", "rate-limit output {cir_kbps}"],
            "shaping_clear": ["interface {port}", "no rate-limit output"]},
    parsers={"shaping_show": {"cir_kbps": r"^ rate-limit output (\\d+)"}})
registry.register("gateway", "toy", f"{__name__}:DIALECT", "a toy IOS-like CLI over SSH (netmiko generic)")
'''


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Registrations made by a test's plugins are undone after it (the registries, sys.modules)."""
    monkeypatch.setitem(registry._DRIVERS, "gateway", dict(registry._DRIVERS["gateway"]))
    monkeypatch.setattr(dialects, "_DIALECTS", dict(dialects._DIALECTS))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith("dcilab_plugin_"):
            del sys.modules[name]


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated: None) -> ModuleType:
    path = tmp_path / "toy_gateway.py"
    path.write_text(TOY)
    monkeypatch.setenv(ENV, str(path))
    (mod,) = load_plugins()
    return mod


def _driver(srv: GatewayServer, key: paramiko.PKey) -> GatewayDriver:
    target = SshTarget(host="127.0.0.1", port=srv.port, username="admin", password="pw",
                       fingerprint=sha256_fingerprint(key), name="toy-gw")
    return GatewayDriver(target, registry.load("gateway", "toy"))


def test_the_toy_dialect_speaks_its_own_syntax(toy: ModuleType) -> None:
    assert "toy" in dialects.names() and "toy" in registry.names("gateway")
    gw = Gateway("TOY-A", PORTS, links=FakeLinks(), tc=FakeTc(), dialect="toy")
    s = gw.session()
    assert s.prompt == "TOY-A#"
    assert s.handle_line("conf t").startswith("Enter configuration commands")
    assert s.handle_line("int hu1/0/1") == "" and s.prompt == "TOY-A(config-if)#"
    assert s.handle_line("rate-limit output 200000") == ""
    out = s.handle_line("rate-limit sideways 1")
    assert out == " " * (len("TOY-A(config-if)#") + len("rate-limit ")) + "^\n% Invalid input detected at '^' marker."
    s.handle_line("end")
    assert s.prompt == "TOY-A#"
    text = gw.running_config()
    assert "interface HundredGigE1/0/1\n rate-limit output 200000\n!" in text
    again = Gateway("TOY-A", PORTS, links=FakeLinks(), tc=FakeTc(), dialect="toy")
    assert again.replay(text) == [] and again.running_config() == text
    with pytest.raises(ValueError, match="is not an interface name like HundredGigE1/0/1"):
        Gateway("TOY-A", {"wan": "wan0"}, dialect="toy")


def test_the_framework_driver_shapes_an_emulated_toy_gateway_over_ssh(toy: ModuleType) -> None:
    tc = FakeTc()
    gw = Gateway("TOY-A", PORTS, links=FakeLinks(), tc=tc, dialect="toy")
    key = paramiko.ECDSAKey.generate()
    srv = GatewayServer(gw, key, "127.0.0.1", 0, check_password=password_checker("admin", "pw")).start()
    try:
        with _driver(srv, key) as drv:
            assert drv.shaping_kbps() is None
            drv.set_wan_shaping(200_000)
            assert drv.shaping_kbps() == 200_000
            assert gw.config.ports["HundredGigE1/0/1"].lr_cir_kbps == 200_000 and tc.roots == {"wan0": "tbf"}
            assert "rate-limit output 200000" in drv.running_config()
            with pytest.raises(EditRejected, match="Invalid input"):
                drv.configure(["interface HundredGigE1/0/1", "rate-limit output 0"])
            drv.clear_wan_shaping()
            assert drv.shaping_kbps() is None and tc.roots == {}
    finally:
        srv.stop()


def test_a_plugin_that_fails_to_import_is_a_clear_error(tmp_path: Path, isolated: None) -> None:
    bad = tmp_path / "broken_dialect.py"
    bad.write_text("from emulator.gateway.grammar import no_such_thing\n")
    with pytest.raises(PluginError) as err:
        load_plugins(str(bad))
    msg = str(err.value)
    assert msg.startswith(f"{ENV}: the plugin {str(bad)!r} failed to import: ImportError: cannot import name")
    assert "fix: check that" in msg and f"or remove it from {ENV}" in msg
    with pytest.raises(PluginError, match=rf"{ENV}: the plugin 'no_such_dcilab_module' failed to import: "
                                          r"ModuleNotFoundError.*fix: check that no_such_dcilab_module is installed"):
        load_plugins(f"{os.pathsep}no_such_dcilab_module")
    with pytest.raises(PluginError, match="no such file"):
        load_plugins(str(tmp_path / "missing.py"))


# ------------------------------------------------------- the process: python -m emulator.gateway

def _gateway_process(tmp_path: Path, plugins: str, dialect: str) -> subprocess.Popen[str]:
    cfg = tmp_path / "gw.json"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    paramiko.ECDSAKey.generate().write_private_key_file(str(tmp_path / "host_key"))
    cfg.write_text(json.dumps({
        "hostname": "TOY-A", "listen": {"address": "127.0.0.1", "port": port}, "host_key": str(tmp_path / "host_key"),
        "auth": {"username": "admin", "password_env": "TOY_GW_PW"}, "ports": {"HundredGigE1/0/1": "lo"}}))
    env = dict(os.environ, TOY_GW_PW="pw", PYTHONPATH=str(ROOT), **{ENV: plugins})
    return subprocess.Popen([sys.executable, "-m", "emulator.gateway", "--config", str(cfg), "--dialect", dialect],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_the_gateway_process_takes_the_dialect_from_a_plugin(tmp_path: Path) -> None:
    (tmp_path / "toy_gateway.py").write_text(TOY)
    proc = _gateway_process(tmp_path, str(tmp_path / "toy_gateway.py"), "toy")
    try:
        port = json.loads((tmp_path / "gw.json").read_text())["listen"]["port"]
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    if s.recv(8).startswith(b"SSH-"):
                        break
            except OSError:
                assert time.monotonic() < deadline, "the gateway never listened"
                time.sleep(0.1)
        cl = paramiko.SSHClient()
        cl.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        cl.connect("127.0.0.1", port, "admin", "pw", look_for_keys=False, allow_agent=False)
        try:
            _, out, _ = cl.exec_command("show running-config")
            assert out.read().decode().startswith("!\r\nhostname TOY-A\r\n") and out.channel.recv_exit_status() == 0
            _, out, _ = cl.exec_command("show nothing")
            assert "% Invalid input" in out.read().decode() and out.channel.recv_exit_status() == 1
        finally:
            cl.close()
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("plugins, dialect, expected", [
    ("{broken}", "vrp", "emulator.gateway: DCILAB_PLUGINS: the plugin '{broken}' failed to import: ZeroDivisionError"),
    ("", "toy", "emulator.gateway: --dialect: unknown gateway dialect 'toy' (known: vrp); a dialect of your own"),
])
def test_the_gateway_process_refuses_a_broken_plugin_or_an_unknown_dialect(tmp_path: Path, plugins: str,
                                                                           dialect: str, expected: str) -> None:
    broken = tmp_path / "broken_dialect.py"
    broken.write_text("1 / 0\n")
    proc = _gateway_process(tmp_path, plugins.format(broken=broken), dialect)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(expected.format(broken=broken)), err
