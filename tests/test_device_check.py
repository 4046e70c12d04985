"""``dcilab device check`` (issue 15 item 5) against the loopback servers of tests/test_snapshot.py:
every emulated personality, through an inventory written as for real gear."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testbed.device_check import check_device, render
from testbed.inventory.model import Inventory
from testbed.yang import SHIPPED_DIRS, search_dirs, validate
from tests.test_snapshot import bench, free_port, inventory  # noqa: F401 - the fixture

ROOT = Path(__file__).resolve().parents[1]
YANGLINT = shutil.which("yanglint") is not None


def _with(inv: Inventory, name: str, **fields: object) -> Inventory:
    return Inventory.model_validate({**inv.model_dump(mode="json", exclude_none=True), "devices": [
        {**d.model_dump(mode="json", exclude_none=True), **(fields if d.name == name else {})} for d in inv.devices]})


def test_every_device_is_ready_and_what_the_driver_reads_is_valid(bench) -> None:  # noqa: F811
    inv = _with(inventory(bench), "dc-a-gw", wan_port="100GE1/0/1")   # the bench gateway's WAN port
    for name, fits in (("dc-a-otn", ["openconfig"]), ("dc-b-otn", ["openroadm"]), ("ila-roadm", ["openroadm"]),
                       ("dc-a-gw", ["vrp"]), ("dc-a-gpu1", ["openssh"])):
        r = check_device(inv, name, timeout_s=30)
        print(render(r))
        assert r.reachable and r.problems == [], render(r)
        assert r.drivers_that_fit == fits
        assert r.identity.get("vendor") == "dcilab-emulator" or name == "dc-a-gpu1"
        assert [x.name for x in r.reads if x.ok] == [x.name for x in r.reads]
        if name in ("dc-a-otn", "dc-b-otn", "ila-roadm"):
            assert r.schemas_listed == len(r.modules) == len(r.schemas_served) and not r.schemas_not_served
            netconf_reads = [x for x in r.reads if x.validated != "not validated: no NETCONF read"]
            assert netconf_reads and all(x.validated == ("valid" if YANGLINT else "not validated: no yanglint")
                                         for x in netconf_reads), render(r)


def test_a_wrong_driver_is_named_with_the_one_that_fits_and_nothing_is_read(bench) -> None:  # noqa: F811
    r = check_device(_with(inventory(bench), "dc-a-otn", driver="openroadm"), "dc-a-otn", timeout_s=30)
    assert r.reachable and r.missing == ["org-openroadm-device"] and r.drivers_that_fit == ["openconfig"]
    assert r.reads == [] and r.problems == ["the openroadm driver needs org-openroadm-device, which the device "
                                            "does not advertise"]
    assert "drivers that fit: openconfig" in render(r)


def test_a_gateway_without_the_wan_port_the_driver_uses_is_a_problem(bench) -> None:  # noqa: F811
    r = check_device(inventory(bench), "dc-a-gw", timeout_s=30)   # the dialect's 400GE1/0/1: not on this gateway
    assert r.reachable and [x.name for x in r.reads if not x.ok] == ["counters", "shaping_kbps", "pfc_priorities"]
    assert "command refused" in r.problems[0] and "Wrong parameter" in r.problems[0]
    assert "note: WAN port 400GE1/0/1" in render(r)


def test_an_unreachable_device_is_said_so_within_its_timeout(bench) -> None:  # noqa: F811
    silent = socket.socket()        # accepts TCP, never speaks SSH
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    try:
        inv = _with(inventory(bench), "dc-b-otn", mgmt={"address": "127.0.0.1", "port": silent.getsockname()[1]},
                    host_key={"fingerprint": "SHA256:" + "A" * 43})
        t0 = time.monotonic()
        r = check_device(inv, "dc-b-otn", timeout_s=3)
        took = time.monotonic() - t0
    finally:
        silent.close()
    assert not r.reachable and r.error and "dc-b-otn" in r.error, r
    assert took < 3 * 3 + 5, took       # the SSH banner, auth and channel timeouts at most
    assert render(r).startswith("dc-b-otn (otn_terminal, driver openroadm): NOT REACHABLE: ")
    closed = free_port()
    r = check_device(_with(inventory(bench), "dc-a-gw", mgmt={"address": "127.0.0.1", "port": closed},
                           host_key={"fingerprint": "SHA256:" + "A" * 43}), "dc-a-gw", timeout_s=3)
    assert not r.reachable and "Connection refused" in (r.error or "")


def test_the_cli_exits_non_zero_for_an_unknown_device_and_an_unreachable_one(tmp_path: Path) -> None:
    inv = ROOT / "inventory" / "lab.example.yaml"
    r = subprocess.run([sys.executable, "-m", "testbed.cli", "device", "check", "no-such-otn", "-i", str(inv)],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "no device 'no-such-otn'" in r.stderr and "dc-a-otn" in r.stderr
    # lab.example.yaml with its gateway on a local port nobody listens on (never a packet off this machine)
    closed = free_port()
    text = inv.read_text().replace("mgmt: {address: 192.0.2.21}", f"mgmt: {{address: 127.0.0.1, port: {closed}}}", 1)
    (tmp_path / "lab.yaml").write_text(text)
    r = subprocess.run([sys.executable, "-m", "testbed.cli", "device", "check", "dc-a-gw", "-i", str(tmp_path / "lab.yaml"),
                        "--timeout", "2"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                       env={"PATH": "/usr/bin:/bin", "DCILAB_GATEWAY_PASSWORD": "x"})
    assert r.returncode == 2, r.stdout + r.stderr
    assert "dc-a-gw (gateway, driver vrp): NOT REACHABLE: " in r.stdout and "Connection refused" in r.stdout
    r = subprocess.run([sys.executable, "-m", "testbed.cli", "device", "check", "dc-a-gw", "-i", str(tmp_path / "lab.yaml"),
                        "--json"], cwd=ROOT, capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 2 and '"error_kind": "SecretUnavailable"' in r.stdout   # the password's variable unset


@pytest.mark.skipif(not YANGLINT, reason="install libyang2-tools (yanglint)")
def test_validation_names_what_the_published_model_refuses() -> None:
    dirs = search_dirs(*SHIPPED_DIRS)
    dev = next(p for d in dirs for p in d.glob("org-openroadm-device.yang"))
    good = (b'<org-openroadm-device xmlns="http://org/openroadm/device"><info><node-id>xponder-a1</node-id>'
            b'<openroadm-version>18.0.0</openroadm-version></info></org-openroadm-device>')
    assert validate(good, [dev], dirs, kind="get") is None
    err = validate(good.replace(b"18.0.0", b"18.0"), [dev], dirs, kind="get")
    assert err is not None and "18.0" in err and "openroadm-version" in err
