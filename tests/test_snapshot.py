"""The testbed snapshot (testbed/snapshot.py) against real servers on loopback, without
namespaces: the emulated OTN terminals (OpenConfig and OpenROADM) and a ROADM on NETCONF, steering
a real line control plane on a Unix socket; the VRP gateway CLI over SSH; Debian's OpenSSH as a GPU
node.  Every device is reached through ``testbed.connect`` from an inventory, with the host keys
pinned in a known_hosts file, exactly as for real gear.  Plus a device on a closed port, and one
that accepts the TCP connection but never speaks: each gets an error entry, within the deadline,
while the others are read."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest

from emulator.gateway.device import Gateway
from emulator.gateway.server import GatewayServer, load_authorized_keys
from emulator.identity import VENDOR, serial_number, software_version
from emulator.line.control import ControlServer, LineService
from emulator.line.forwarder import Shared
from emulator.line.model import LineConfig
from emulator.optical import make_device, parse_config
import testbed.connect as tc
from drivers.errors import Unsupported
from testbed.inventory.model import Inventory
from testbed.snapshot import snapshot, write_snapshot

ROOT = Path(__file__).resolve().parents[1]
SSHD = "/usr/sbin/sshd"
PATHS = [{"name": "working", "kind": "working", "length_km": 329, "roadms": ["dc-a-roadm", "ila-roadm", "dc-b-roadm"]},
         {"name": "protection", "kind": "protection", "length_km": 352, "roadms": ["dc-a-roadm", "dc-b-roadm"]}]


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_banner(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing answers SSH on 127.0.0.1:{port}")
        time.sleep(0.05)


class Bench:
    """The loopback testbed: keys, known_hosts and the servers, stopped at the end."""

    def __init__(self, d: Path) -> None:
        self.d = d
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "id_ed25519")], check=True)
        (d / "authorized_keys").write_text((d / "id_ed25519.pub").read_text())
        self.known_hosts = d / "known_hosts"
        self.known_hosts.write_text("")
        self.stops: list[Any] = []
        self.ports: dict[str, int] = {}

    def trust(self, name: str, port: int, key: paramiko.PKey) -> None:
        self.ports[name] = port
        with self.known_hosts.open("a") as f:
            f.write(f"[127.0.0.1]:{port} {key.get_name()} {key.get_base64()}\n")

    def line(self) -> str:
        cfg = LineConfig.from_dict({
            "name": "dci-line", "control_socket": str(self.d / "line.sock"),
            "ends": [{"netns": "dcl-dc-a-gw", "ifname": "wan0"}, {"netns": "dcl-dc-b-gw", "ifname": "wan0"}],
            "mtu": 9000, "rate_bps": 1_000_000_000, "buffer_ms": 50, "active_path": "working",
            "paths": [{"name": p["name"], "length_km": p["length_km"]} for p in PATHS]})
        srv = ControlServer(str(self.d / "line.sock"), LineService(cfg, Shared(len(cfg.paths))))
        srv.start()
        self.stops.append(srv.stop)
        return srv.path

    def optical(self, name: str, role: str, personality: str, line_sock: str, end: str = "a") -> None:
        key = paramiko.ECDSAKey.generate()
        key.write_private_key_file(str(self.d / f"{name}.key"))
        cfg: dict[str, Any] = {
            "name": name, "role": role, "personality": personality, "site": None,
            "listen": {"address": "127.0.0.1", "port": 0}, "host_key": str(self.d / f"{name}.key"),
            "auth": {"username": "admin", "authorized_keys": str(self.d / "authorized_keys")},
            "line_socket": line_sock, "paths": PATHS, "bandwidth_scale": 0.00125}
        if role == "otn_terminal":
            cfg["service"] = {"name": "dci-otn", "line_rate_gbps": 800, "client_ports": {"count": 2, "rate_gbps": 400},
                              "working": "working", "protection": "protection", "end": end}
        dev = make_device(parse_config(cfg)).start()
        self.stops.append(dev.stop)
        self.trust(name, dev.port, key)

    def gateway(self, name: str) -> None:
        key = paramiko.ECDSAKey.generate()
        gw = Gateway(name, {"100GE1/0/1": "lo", "MEth0/0/0": "lo"})   # real links (sysfs); tc is never called
        srv = GatewayServer(gw, key, "127.0.0.1", 0, authorized_keys=load_authorized_keys(self.d / "authorized_keys"),
                            key_user="admin").start()
        self.stops.append(srv.stop)
        self.trust(name, srv.port, key)

    def gpu_node(self, name: str) -> None:
        hk = self.d / f"{name}_host"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(hk)], check=True)
        port = free_port()
        (self.d / f"{name}.sshd").write_text("\n".join([
            f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {hk}", f"PidFile {self.d}/{name}.pid",
            f"AuthorizedKeysFile {self.d}/authorized_keys", "PermitRootLogin prohibit-password",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no",
            "PrintMotd no", "UseDNS no", ""]))
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.d / f"{name}.sshd")], stderr=subprocess.PIPE)

        def stop() -> None:
            proc.terminate()
            proc.wait(10)
        self.stops.append(stop)
        try:
            wait_banner(port)
        except AssertionError:
            stop()
            raise AssertionError(f"sshd did not start: {proc.stderr.read().decode()[-500:]}") from None  # type: ignore[union-attr]
        self.trust(name, port, paramiko.PKey.from_path(hk))

    def stop(self) -> None:
        for s in reversed(self.stops):
            s()


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    if not os.access(SSHD, os.X_OK) or shutil.which("ssh-keygen") is None:
        pytest.skip("needs Debian's openssh-server and ssh-keygen (setup.sh installs them)")
    b = Bench(tmp_path_factory.mktemp("snap"))
    try:
        sock = b.line()
        b.optical("dc-a-otn", "otn_terminal", "openconfig", sock, "a")
        b.optical("dc-b-otn", "otn_terminal", "openroadm", sock, "z")
        b.optical("ila-roadm", "roadm", "openroadm", sock)
        b.gateway("dc-a-gw")
        b.gpu_node("dc-a-gpu1")
        yield b
    finally:
        b.stop()


def inventory(b: Bench, extra: list[dict[str, Any]] = ()) -> Inventory:  # type: ignore[assignment]
    """An inventory of the loopback servers, written as for real gear (no emulation block): each
    device's ``driver:`` alone makes dc-a-otn OpenConfig and dc-b-otn OpenROADM."""
    cred = {"username": "admin", "ssh_key": {"path": str(b.d / "id_ed25519")}}
    hk = {"known_hosts": str(b.known_hosts)}

    def dev(name: str, kind: str, site: str | None, **kw: Any) -> dict[str, Any]:
        return {"name": name, "kind": kind, "site": site, "mgmt": {"address": "127.0.0.1", "port": b.ports[name]},
                "credentials": cred, "host_key": hk, **kw}

    import getpass
    devices = [dev("dc-a-otn", "otn_terminal", "dc-a", driver="openconfig"),
               dev("dc-b-otn", "otn_terminal", "dc-b", driver="openroadm"),
               dev("ila-roadm", "roadm", None, driver="openroadm"), dev("dc-a-gw", "gateway", "dc-a", driver="vrp"),
               {**dev("dc-a-gpu1", "gpu_node", "dc-a", python=str(ROOT / ".venv" / "bin" / "python")),
                "credentials": {"username": getpass.getuser(), "ssh_key": {"path": str(b.d / "id_ed25519")}}},
               *extra]
    return Inventory.model_validate({
        "name": "loopback", "sites": [{"name": "dc-a", "fabric_gbps": 3200}, {"name": "dc-b", "fabric_gbps": 3200}],
        "devices": devices})


def test_snapshot_reads_every_device_from_the_device(bench: Bench, tmp_path: Path) -> None:
    snap = snapshot(inventory(bench), timeout_s=60)
    devs = snap["devices"]
    assert not [n for n, e in devs.items() if "error" in e], devs
    ver = software_version()
    oc, orm, roadm, gw, node = (devs[n] for n in ("dc-a-otn", "dc-b-otn", "ila-roadm", "dc-a-gw", "dc-a-gpu1"))
    # OpenConfig: chassis + operating-system components; modules from the hello
    assert (oc["vendor"], oc["model"], oc["software_version"], oc["serial"]) == (
        VENDOR, "DCILAB-OTN-800G-OC", ver, serial_number("dc-a-otn"))
    assert oc["modules"]["openconfig-terminal-device"] == "2026-01-14"
    assert oc["modules"]["openconfig-platform"] == "2025-07-15"
    assert oc["modules"]["dcilab-emulator-bench"] == "2026-12-06"
    # OpenROADM terminal and ROADM: the info container
    assert (orm["vendor"], orm["model"], orm["software_version"], orm["serial"]) == (
        VENDOR, "DCILAB-XPDR-800G-OR", ver, serial_number("dc-b-otn"))
    assert orm["details"] == {"node-id": "dc-b-otn", "node-type": "xpdr", "openroadm-version": "18.0.0"}
    assert orm["modules"]["org-openroadm-device"] == "2025-09-26"
    assert "org-openroadm-prot-otn-linear-aps" in orm["modules"] and "openconfig-platform" not in orm["modules"]
    assert (roadm["vendor"], roadm["model"], roadm["serial"]) == (VENDOR, "DCILAB-ROADM-CDC", serial_number("ila-roadm"))
    # the IETF NETCONF modules the server itself implements come on top
    assert roadm["details"]["node-type"] == "rdm" and {m for m in roadm["modules"] if not m.startswith("ietf-")} == {
        "org-openroadm-device", "org-openroadm-interfaces", "org-openroadm-pm", "dcilab-emulator-bench"}
    # VRP gateway: display version + display esn, through the dialect's regexes
    assert (gw["vendor"], gw["model"], gw["software_version"], gw["serial"]) == (
        VENDOR, "DCILAB-AIGW", "V200R022C00SPC500", serial_number("dc-a-gw"))
    assert gw["details"]["vrp_version"] == "5.170" and gw["modules"] == {}
    # GPU node: what the inventory's interpreter reports
    import torch
    assert node["python_executable"] == str(ROOT / ".venv" / "bin" / "python")
    assert node["torch"] == str(torch.__version__) and node["kernel"] == os.uname().release
    assert node["hostname"] == socket.gethostname() and node["gloo"] is True
    assert node["backend"] == ("nccl" if node["cuda_available"] and node["nccl"] else "gloo")
    # the rest of the snapshot
    assert snap["inventory"]["name"] == "loopback" and len(snap["inventory"]["devices"]) == 5
    assert snap["inventory"]["devices"][0]["credentials"]["ssh_key"]["path"].endswith("id_ed25519")
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=False).stdout.strip()
    assert snap["dcilab"]["version"] == ver and snap["dcilab"]["git_revision"] == (head or None)
    assert snap["controller"]["hostname"] == socket.gethostname() and snap["taken_at"].endswith("Z")
    out = write_snapshot(snap, tmp_path / "report" / "testbed.json")
    assert json.loads(out.read_text()) == snap
    assert [p.name for p in out.parent.iterdir()] == ["testbed.json"]   # no temp file left


def test_a_real_gear_inventory_connects_each_device_with_the_driver_it_names(bench: Bench) -> None:
    """Issue 15: no emulation block, no defaults: dc-a-otn is read as OpenConfig and dc-b-otn as
    OpenROADM because their driver: says so; the gateway's WAN port is the inventory's."""
    inv = inventory(bench)
    assert inv.emulation is None
    with tc.connect_otn(inv, "dc-a-otn") as a, tc.connect_otn(inv, "dc-b-otn") as b:
        assert (type(a).__name__, type(b).__name__) == ("OpenConfigTerminal", "OpenRoadmTerminal")
        assert a.line_rate_gbps() == b.line_rate_gbps() == 800   # each read through its own models
    with tc.connect_roadm(inv, "ila-roadm") as r:
        assert type(r).__name__ == "Roadm"
    swapped = Inventory.model_validate({**inv.model_dump(mode="json", exclude_none=True), "devices": [
        {**d.model_dump(mode="json", exclude_none=True), "driver": "openroadm"} for d in inv.devices
        if d.name == "dc-a-otn"]})
    with pytest.raises(Unsupported, match=r"dc-a-otn: YANG module org-openroadm-device \(the openroadm driver "
                       r"reads it: is the device's driver: in the inventory right\?\) is not supported \(supported: "
                       r".*openconfig-terminal-device"):   # refused at connect, never misread
        tc.connect_otn(swapped, "dc-a-otn")
    gw_inv = Inventory.model_validate({**inv.model_dump(mode="json", exclude_none=True), "devices": [
        {**d.model_dump(mode="json", exclude_none=True), "wan_port": "MEth0/0/0"} for d in inv.devices
        if d.name == "dc-a-gw"]})
    with tc.connect_gateway(gw_inv, "dc-a-gw") as gw:
        assert gw.wan_port == "MEth0/0/0" and gw.counters().port == "MEth0/0/0"
    with tc.connect_gateway(inv, "dc-a-gw") as gw:
        assert gw.wan_port == "400GE1/0/1"   # the dialect's when the inventory names none


def test_devices_that_do_not_answer_get_an_error_entry_within_the_deadline(bench: Bench) -> None:
    closed = free_port()   # nothing listens: refused at once
    silent = socket.socket()   # accepts the TCP connection, never sends an SSH banner
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    bench.ports["gone-otn"], bench.ports["silent-gw"] = closed, silent.getsockname()[1]
    try:
        inv = inventory(bench, [
            {"name": "gone-otn", "kind": "otn_terminal", "driver": "openconfig", "site": "dc-a",
             "mgmt": {"address": "127.0.0.1", "port": closed},
             "credentials": {"username": "admin", "ssh_key": {"path": str(bench.d / "id_ed25519")}},
             "host_key": {"fingerprint": "SHA256:" + "A" * 43}},
            {"name": "silent-gw", "kind": "gateway", "driver": "vrp", "site": "dc-a",
             "mgmt": {"address": "127.0.0.1", "port": silent.getsockname()[1]},
             "credentials": {"username": "admin", "ssh_key": {"path": str(bench.d / "id_ed25519")}},
             "host_key": {"fingerprint": "SHA256:" + "A" * 43}}])
        t0 = time.monotonic()
        snap = snapshot(inv, timeout_s=5)
        took = time.monotonic() - t0
    finally:
        silent.close()
    devs = snap["devices"]
    assert took < 5 + 1.0 and snap["elapsed_s"] < 6
    assert devs["gone-otn"] == {"error": f"DeviceUnreachable: gone-otn: cannot connect to 127.0.0.1:{closed}: "
                                         "Connection refused"}
    assert devs["silent-gw"] == {"error": "no answer within 5 s"}
    assert list(devs) == ["dc-a-otn", "dc-b-otn", "ila-roadm", "dc-a-gw", "dc-a-gpu1", "gone-otn", "silent-gw"]
    assert all("error" not in devs[n] for n in list(devs)[:5]), devs
    json.dumps(snap)


def test_a_gpu_node_without_the_interpreter_is_an_error_naming_it(bench: Bench) -> None:
    inv = inventory(bench)
    bad = Inventory.model_validate({**inv.model_dump(mode="json"), "devices": [
        {**d.model_dump(mode="json", exclude_none=True), "python": "/nonexistent/python3"}
        for d in inv.devices if d.name == "dc-a-gpu1"]})
    err = snapshot(bad, timeout_s=30)["devices"]["dc-a-gpu1"]["error"]
    assert err.startswith("DriverError: dc-a-gpu1: /nonexistent/python3 could not report its facts (exit 127)")
    assert "No such file" in err or "not found" in err   # the node's shell says why


@pytest.mark.parametrize("writer", ["testbed.json", "summary.json"])
def test_report_files_are_fsynced_with_their_folder(writer: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A power loss after the run must not leave an empty testbed.json or summary.json: the file
    and the folder holding its new name are fsynced (os.fsync is watched, the write still happens)."""
    from testbed.trial.report import write_json

    synced: list[tuple[str, bool]] = []
    real_fsync = os.fsync

    def watch(fd: int) -> None:
        st = os.fstat(fd)
        synced.append((os.readlink(f"/proc/self/fd/{fd}"), stat.S_ISDIR(st.st_mode)))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", watch)
    path = tmp_path / "run" / writer
    if writer == "testbed.json":
        write_snapshot({"devices": []}, path)
    else:
        write_json(path, {"cases": []})
    assert json.loads(path.read_text()) in ({"devices": []}, {"cases": []})
    assert any(not is_dir and name.startswith(str(path.parent) + "/.") for name, is_dir in synced)   # the temp file
    assert (str(path.parent), True) in synced                                                        # its folder
    assert sorted(p.name for p in path.parent.iterdir()) == [writer]                                 # no temp left
