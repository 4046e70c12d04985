"""The emulated lab, end to end: what `dcilab lab up` promises a lab engineer.

These tests build real namespaces, OpenSSH servers, the optical line and VictoriaMetrics; they
need root.  Tolerances are wide enough for a loaded 2-core machine but fail if a feature is
missing (the precise figures are in bench/).
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import paramiko
import pytest

from emulator.lab import build
from emulator.lab.plan import LabPlan
from emulator.line.control import LineControl
from emulator.line.model import propagation_delay_s
from testbed.inventory import DeviceKind, Inventory

pytestmark = pytest.mark.lab


def ping_rtts_ms(netns: str, target: str, count: int = 20, interval: float = 0.05) -> list[float]:
    out = subprocess.run(["ip", "netns", "exec", netns, "ping", "-n", "-c", str(count), "-i", str(interval), target],
                         capture_output=True, text=True, timeout=30).stdout
    return [float(m) for m in re.findall(r"time=([\d.]+) ms", out)]


def on_fibre(rtts_ms: list[float], fibre_ms: float) -> bool:
    """Pings travel a fibre of round trip ``fibre_ms``: the fastest is no earlier than the fibre allows
    (less ping's rounding to 3 digits) and within 1.5 ms above it.  The fastest, because the fibre is
    its floor while a median also carries the machine's wake-up latency (1.8 ms in a busy CI run)."""
    return bool(rtts_ms) and fibre_ms - 0.05 <= min(rtts_ms) < fibre_ms + 1.5


def iperf_gbps(plan: LabPlan, client: str, server: str, seconds: float = 2.0) -> float:
    srv = plan.node(server)
    proc = subprocess.Popen(["ip", "netns", "exec", srv.netns, "iperf3", "-s", "-B", srv.data_ip],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            res = subprocess.run(["ip", "netns", "exec", plan.node(client).netns, "iperf3", "-c", srv.data_ip,
                                  "-t", str(seconds), "-J"], capture_output=True, text=True, timeout=30)
            if res.returncode == 0:
                received = json.loads(res.stdout).get("end", {}).get("sum_received")
                if received:
                    return received["bits_per_second"] / 1e9
            # the server may not listen yet, or (rarely) iperf3 ends a test without a result
            time.sleep(0.1)
        raise AssertionError(f"iperf3 never gave a result: {res.stdout[-300:]}")
    finally:
        proc.kill()
        proc.wait()


def line_baseline(plan: LabPlan) -> None:
    """Back to 800G on the working path, no request, no cut, no BER, whatever a test did."""
    line = LineControl(plan.line_socket)
    for p in plan.line.paths:
        line.set_path_up(p.name, True)
        line.set_ber(p.name, 0.0)
    line.protection_switch("force", to=plan.line.paths_of("working")[0].name)
    line.protection_switch("release")
    line.set_rate(plan.line.rate_bps)


def gpu_nodes(inventory: Inventory) -> list[str]:
    return [d.name for d in inventory.devices_of(DeviceKind.GPU_NODE)]


def test_status_reports_every_device(emulated_lab: LabPlan, inventory: Inventory) -> None:
    st = build.status(emulated_lab)
    assert st.ok, [r for r in st.rows if not r.ok]
    names = {r.name for r in st.rows}
    assert {d.name for d in inventory.devices} <= names
    assert {"optical-line", "metrics-store"} <= names


def test_every_gpu_node_answers_ssh_with_the_lab_key_and_verified_host_key(
        emulated_lab: LabPlan, inventory: Inventory) -> None:
    for dev in inventory.devices_of(DeviceKind.GPU_NODE):
        client = paramiko.SSHClient()
        client.load_host_keys(str(inventory.resolve_path(dev.host_key.known_hosts)))  # type: ignore[union-attr]
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        key_path = inventory.resolve_path(dev.credentials.ssh_key.path)  # type: ignore[union-attr]
        client.connect(str(dev.mgmt.address), port=dev.port, username=dev.credentials.username,
                       key_filename=str(key_path), look_for_keys=False, allow_agent=False, timeout=10)
        try:
            python = inventory.resolve_path(dev.python)  # type: ignore[arg-type]
            _, out, _ = client.exec_command(
                f"echo $DCILAB_NODE; ip -4 -o addr show fab0; {python} -c 'import paramiko, emulator; print(42)'")
            text = out.read().decode()
            assert out.channel.recv_exit_status() == 0, text
        finally:
            client.close()
        lines = text.split("\n")
        assert lines[0] == dev.name
        assert str(dev.data_address) in lines[1]
        assert lines[2] == "42"


def test_a_wrong_host_key_is_refused(emulated_lab: LabPlan, inventory: Inventory, tmp_path: Path) -> None:
    dev = inventory.devices_of(DeviceKind.GPU_NODE)[0]
    other = inventory.devices_of(DeviceKind.GPU_NODE)[1]
    # known_hosts that pins dev's address to another node's host key
    lines = Path(emulated_lab.known_hosts_path).read_text().splitlines()
    other_key = next(ln for ln in lines if ln.startswith(f"{other.mgmt.address} ")).split(" ", 1)[1]
    (tmp_path / "known_hosts").write_text(f"{dev.mgmt.address} {other_key}\n")
    client = paramiko.SSHClient()
    client.load_host_keys(str(tmp_path / "known_hosts"))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    with pytest.raises(paramiko.BadHostKeyException):
        client.connect(str(dev.mgmt.address), username="root", key_filename=emulated_lab.key_path,
                       look_for_keys=False, allow_agent=False, timeout=10)
    client.close()


def test_cross_site_rtt_follows_the_active_fiber_path(emulated_lab: LabPlan, inventory: Inventory) -> None:
    a, b = emulated_lab.node("dc-a-gpu1"), emulated_lab.node("dc-b-gpu1")
    line = LineControl(emulated_lab.line_socket)
    try:
        for path in ("working", "restoration"):
            line.set_active_path(path)
            expected = 2 * propagation_delay_s(inventory.fiber_path(path).length_km) * 1e3
            rtts = ping_rtts_ms(a.netns, b.data_ip)  # type: ignore[arg-type]
            assert on_fibre(rtts, expected), (path, rtts, expected)
    finally:
        line.set_active_path("working")


def test_site_fabric_traffic_stays_off_the_line(emulated_lab: LabPlan) -> None:
    line = LineControl(emulated_lab.line_socket)
    before = line.get()["counters"]
    rtts = ping_rtts_ms(emulated_lab.node("dc-a-gpu1").netns, emulated_lab.node("dc-a-gpu2").data_ip, count=10)  # type: ignore[arg-type]
    assert len(rtts) == 10 and statistics.median(rtts) < 1.0
    assert line.get()["counters"] == before


def test_cross_site_throughput_follows_the_line_rate(emulated_lab: LabPlan) -> None:
    line = LineControl(emulated_lab.line_socket)
    full = emulated_lab.line.rate_bps / 1e9
    try:
        at_800g = iperf_gbps(emulated_lab, "dc-a-gpu1", "dc-b-gpu1")
        line.set_rate(int(emulated_lab.line.rate_bps / 2))   # 800G -> 400G
        at_400g = iperf_gbps(emulated_lab, "dc-a-gpu1", "dc-b-gpu1")
    finally:
        line.set_rate(int(emulated_lab.line.rate_bps))
    assert 0.7 * full <= at_800g <= 1.05 * full, at_800g
    assert 0.35 * full <= at_400g <= 0.53 * full, at_400g


def test_metrics_store_accepts_influxdb_client_writes(emulated_lab: LabPlan, inventory: Inventory) -> None:
    from influxdb_client import InfluxDBClient, Point, WritePrecision
    from influxdb_client.client.write_api import SYNCHRONOUS

    assert inventory.metrics is not None
    marker = time.time_ns()
    with InfluxDBClient(url=inventory.metrics.url, token="", org=inventory.metrics.org) as client:
        client.write_api(write_options=SYNCHRONOUS).write(
            bucket=inventory.metrics.bucket,
            record=Point("dcilab_selftest").tag("lab", emulated_lab.name).field("marker", float(marker % 10**9))
            .time(marker, WritePrecision.NS))
    query = urllib.parse.urlencode({"match[]": f'dcilab_selftest_marker{{lab="{emulated_lab.name}"}}'})
    deadline = time.monotonic() + 10
    values: list[float] = []
    while time.monotonic() < deadline and float(marker % 10**9) not in values:
        with urllib.request.urlopen(f"{inventory.metrics.url}/api/v1/export?{query}", timeout=5) as resp:
            for line in resp.read().decode().splitlines():
                values += json.loads(line)["values"]
        time.sleep(0.2)
    assert float(marker % 10**9) in values


def test_lab_up_on_a_healthy_lab_changes_nothing(emulated_lab: LabPlan) -> None:
    state = json.loads((Path(emulated_lab.state_dir) / "lab.json").read_text())
    assert build.up(emulated_lab, log=lambda *_: None) == "already up"
    assert json.loads((Path(emulated_lab.state_dir) / "lab.json").read_text()) == state


def test_lab_up_converges_after_a_crash(emulated_lab: LabPlan) -> None:
    state = json.loads((Path(emulated_lab.state_dir) / "lab.json").read_text())
    subprocess.run(["kill", "-9", str(state["pids"]["line"])], check=True)   # the line dies hard
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and build.status(emulated_lab).ok:
        time.sleep(0.1)
    assert not build.status(emulated_lab).ok
    assert build.up(emulated_lab, log=lambda *_: None) == "built"
    assert build.status(emulated_lab).ok
    assert len(ping_rtts_ms(emulated_lab.node("dc-a-gpu1").netns, emulated_lab.node("dc-b-gpu2").data_ip,  # type: ignore[arg-type]
                            count=3)) == 3


def lab_leftovers() -> list[str]:
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    procs = subprocess.run(["ps", "-ewwo", "args"], capture_output=True, text=True).stdout
    left = [ln.split()[0] for ln in netns.splitlines() if ln.startswith("dcl-")]
    left += [ln.split(":")[1].strip().split("@")[0] for ln in links.splitlines() if ln.split(":")[1].strip().startswith("dcl-")]
    left += [p for p in procs.splitlines() if "--config /run/dcilab/" in p
             or "/run/dcilab/" in p and "sshd" in p or "-storageDataPath=/var/lib/dcilab/" in p]
    if Path("/run/dcilab").exists():
        left.append("/run/dcilab")
    return left


def test_lab_down_leaves_nothing_behind(emulated_lab: LabPlan) -> None:
    build.down(emulated_lab, quiet=True)
    assert lab_leftovers() == []
    build.up(emulated_lab, log=lambda *_: None)   # for any test that runs after this one


def test_lab_down_cleans_a_partial_up(emulated_lab: LabPlan) -> None:
    build.down(emulated_lab, quiet=True)
    # what a crash half-way through `up` can leave: a namespace, a bridge, a veth, a state dir
    subprocess.run(["ip", "netns", "add", "dcl-dc-a-gpu1"], check=True)
    subprocess.run(["ip", "link", "add", "dcl-mgmt", "type", "bridge"], check=True)
    subprocess.run(["ip", "link", "add", "dcl-m0", "type", "veth", "peer", "name", "mgmt0", "netns", "dcl-dc-a-gpu1"],
                   check=True)
    Path(emulated_lab.state_dir).mkdir(parents=True)
    assert lab_leftovers() != []
    build.down(emulated_lab, quiet=True)
    assert lab_leftovers() == []
    build.up(emulated_lab, log=lambda *_: None)   # for any test that runs after this one
