"""Benchmark: the gateway's WAN shaping, set over SSH with netmiko, against measured TCP throughput.

Builds its own namespaces (`dclg-ba`: the gateway, `dclg-bb`: the far end of the WAN, a host veth
`dclg-bh0` for management), starts `python -m emulator.gateway` inside the gateway namespace, sets
`qos lr outbound cir` on 100GE1/0/1 (wan0) with plain netmiko `ConnectHandler(device_type="huawei")`
and measures iperf3 TCP goodput across the WAN for each rate and MTU.  Target: within 5 % of the
set rate.  The shaper counts Ethernet frames (as VRP's `qos lr` counts the frame), so goodput sits
below the rate by the header overhead: (MTU-52)/(MTU+14) with TCP timestamps, 0.7 % at the lab's
MTU 9000 and 4.4 % at 1500; the "L2" column adds that back.  Everything is removed at the end.

    sudo .venv/bin/python bench/bench_gateway.py [--rates 100,250,500] [--mtus 9000,1500] [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GW, FAR, HOST_IF = "dclg-ba", "dclg-bb", "dclg-bh0"
GW_MGMT, HOST_MGMT = "198.19.245.1", "198.19.245.2"
GW_WAN, FAR_WAN = "198.19.244.1", "198.19.244.2"
PASSWORD = "dclg-bench"


def sh(*args: str, check: bool = True) -> str:
    p = subprocess.run(list(args), capture_output=True, text=True, timeout=60, check=False)
    if check and p.returncode != 0:
        raise SystemExit(f"{' '.join(args)}: {p.stderr.strip()}")
    return p.stdout


def cleanup() -> None:
    for ns in (GW, FAR):
        for pid in sh("ip", "netns", "pids", ns, check=False).split():
            try:
                os.kill(int(pid), 9)
            except (ProcessLookupError, ValueError):
                pass
        sh("ip", "netns", "del", ns, check=False)
    sh("ip", "link", "del", HOST_IF, check=False)


def build() -> None:
    cleanup()
    for ns in (GW, FAR):
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "-n", GW, "link", "add", "wan0", "type", "veth", "peer", "name", "wan0", "netns", FAR)
    sh("ip", "-n", GW, "addr", "add", f"{GW_WAN}/30", "dev", "wan0")
    sh("ip", "-n", FAR, "addr", "add", f"{FAR_WAN}/30", "dev", "wan0")
    sh("ip", "-n", GW, "link", "add", "fab0", "type", "veth", "peer", "name", "fabx", "netns", FAR)
    for ns in (GW, FAR):
        sh("ip", "-n", ns, "link", "set", "wan0", "up")
    sh("ip", "-n", GW, "link", "set", "fab0", "up")
    sh("ip", "link", "add", HOST_IF, "type", "veth", "peer", "name", "mgmt0", "netns", GW)
    sh("ip", "addr", "add", f"{HOST_MGMT}/30", "dev", HOST_IF)
    sh("ip", "link", "set", HOST_IF, "up")
    sh("ip", "-n", GW, "addr", "add", f"{GW_MGMT}/30", "dev", "mgmt0")
    sh("ip", "-n", GW, "link", "set", "mgmt0", "up")


def set_mtu(mtu: int) -> None:
    for ns in (GW, FAR):
        sh("ip", "-n", ns, "link", "set", "wan0", "mtu", str(mtu))


def start_gateway(work: Path) -> subprocess.Popen[bytes]:
    cfg = work / "gw.json"
    cfg.write_text(json.dumps({
        "hostname": "GW-A", "listen": {"address": GW_MGMT, "port": 22}, "host_key": str(work / "host_key"),
        "auth": {"username": "admin", "password_env": "DCLG_BENCH_PASSWORD"},
        "ports": {"100GE1/0/1": "wan0", "100GE1/0/2": "fab0", "MEth0/0/0": "mgmt0"},
        "saved_config": str(work / "vrpcfg.cfg")}))
    log = open(work / "gw.log", "ab")
    proc = subprocess.Popen(["ip", "netns", "exec", GW, sys.executable, "-m", "emulator.gateway", "--config", str(cfg)],
                            env=dict(os.environ, DCLG_BENCH_PASSWORD=PASSWORD, PYTHONPATH=str(REPO)),
                            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gateway exited: {(work / 'gw.log').read_text()[-400:]}")
        try:
            socket.create_connection((GW_MGMT, 22), timeout=0.5).close()
            return proc
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the gateway never listened")


def iperf(seconds: int) -> float:
    srv = subprocess.Popen(["ip", "netns", "exec", FAR, "iperf3", "-s", "-1", "-B", FAR_WAN],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            res = subprocess.run(["ip", "netns", "exec", GW, "iperf3", "-c", FAR_WAN, "-t", str(seconds), "-O", "1",
                                  "-J"], capture_output=True, text=True, timeout=seconds + 30, check=False)
            try:
                return float(json.loads(res.stdout)["end"]["sum_received"]["bits_per_second"])
            except (ValueError, KeyError):
                if time.monotonic() > deadline or srv.poll() is not None:
                    raise SystemExit(f"iperf3 failed: {res.stdout[-300:]}{res.stderr[-300:]}") from None
                time.sleep(0.05)
    finally:
        srv.kill()
        srv.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rates", default="100,250,500", help="Mbit/s, comma-separated")
    ap.add_argument("--mtus", default="9000,1500")
    ap.add_argument("--seconds", type=int, default=5)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_gateway: needs root (network namespaces)", file=sys.stderr)
        return 2
    from netmiko import ConnectHandler

    rates = [int(r) for r in args.rates.split(",")]
    mtus = [int(m) for m in args.mtus.split(",")]
    worst = 0.0
    proc = None
    try:
        build()
        with tempfile.TemporaryDirectory(prefix="dclg-bench-") as tmp:
            proc = start_gateway(Path(tmp))
            conn = ConnectHandler(device_type="huawei", host=GW_MGMT, username="admin", password=PASSWORD)
            print(f"{'MTU':>5} {'set Mbit/s':>10} {'TCP Mbit/s':>11} {'error %':>8} {'L2 Mbit/s':>10} {'L2 err %':>9}")
            for mtu in mtus:
                set_mtu(mtu)
                l2 = (mtu + 14) / (mtu - 52)
                for rate in rates:
                    out = conn.send_config_set(["interface 100GE1/0/1", f"qos lr outbound cir {rate * 1000}"])
                    if "Error" in out:
                        raise SystemExit(out)
                    bps = iperf(args.seconds) / 1e6
                    err = 100 * (bps - rate) / rate
                    worst = max(worst, abs(err))
                    print(f"{mtu:>5} {rate:>10} {bps:>11.1f} {err:>+8.2f} {bps * l2:>10.1f} "
                          f"{100 * (bps * l2 - rate) / rate:>+9.2f}", flush=True)
            conn.send_config_set(["interface 100GE1/0/1", "undo qos lr outbound"])
            conn.disconnect()
    finally:
        if proc and proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)
        cleanup()
    verdict = "PASS" if worst <= 5.0 else "FAIL"
    print(f"worst |TCP error| {worst:.2f} % (target 5 %): {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
