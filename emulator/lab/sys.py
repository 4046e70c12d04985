"""Thin, checked wrappers over iproute2, processes and sockets for building the lab.

Every failure raises ``LabError`` with the command and what it printed, so `lab up` can stop,
say what went wrong, and clean up.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path


class LabError(Exception):
    """Building, checking or removing the emulated lab failed; the message says why."""


def run(*args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise LabError(f"{args[0]} is not installed ({exc.filename})") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"`{' '.join(args)}` did not finish in {timeout} s") from None
    if check and proc.returncode != 0:
        raise LabError(f"`{' '.join(args)}` failed: {(proc.stderr or proc.stdout).strip()}")
    return proc


def ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    prefix = ("ip", "-n", netns) if netns else ("ip",)
    return run(*prefix, *args, check=check)


def in_netns(netns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run("ip", "netns", "exec", netns, *args, check=check)


def list_netns() -> list[str]:
    out = run("ip", "-json", "netns", "list", check=False).stdout.strip()
    if not out:
        return []
    return [entry["name"] for entry in json.loads(out)]


def host_links() -> list[str]:
    out = run("ip", "-json", "link", "show").stdout
    return [link["ifname"] for link in json.loads(out)]


def host_routes() -> list[tuple[str, str]]:
    """(destination, device) of every IPv4 route of the host namespace."""
    out = run("ip", "-json", "-4", "route", "show", "table", "all").stdout
    return [(r.get("dst", ""), r.get("dev", "")) for r in json.loads(out or "[]")]


def netns_pids(netns: str) -> list[int]:
    out = run("ip", "netns", "pids", netns, check=False).stdout
    return [int(p) for p in out.split()]


def sysctl(netns: str, **settings: str | int) -> None:
    args = [f"{k.replace('__', '.')}={v}" for k, v in settings.items()]
    in_netns(netns, "sysctl", "-q", "-w", *args)


def require_tools(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None and not Path(t).exists()]
    if missing:
        raise LabError(f"missing on this machine: {', '.join(missing)}; install them with "
                       "`apt-get install -y openssh-server iperf3 iproute2 victoria-metrics` (or run ./setup.sh)")


def require_root_and_netns() -> None:
    if os.geteuid() != 0:
        raise LabError("the emulated lab needs root: it creates network namespaces, links and TAP devices "
                       "(run as root, or with sudo)")
    if not Path("/proc/self/ns/net").exists():
        raise LabError("this kernel has no network namespaces (/proc/self/ns/net is missing)")
    if not Path("/dev/net/tun").exists():
        raise LabError("/dev/net/tun is missing: the optical line needs TUN/TAP (modprobe tun)")
    probe = f"dcl-probe-{os.getpid()}"
    res = run("ip", "netns", "add", probe, check=False)
    if res.returncode != 0:
        raise LabError(f"cannot create a network namespace here: {res.stderr.strip()}")
    run("ip", "netns", "del", probe, check=False)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def stop_pid(pid: int, grace: float = 3.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; returns when the process is gone."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                # reap it if it is our child, so it does not linger as a zombie
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    return
            except ChildProcessError:
                pass
            if not pid_alive(pid) or _is_zombie(pid):
                return
            time.sleep(0.02)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return False


def tcp_probe(host: str, port: int, timeout: float = 1.0) -> str:
    """'open', 'refused' (the address answers, nothing listens) or 'unreachable'."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return "open"
    except ConnectionRefusedError:
        return "refused"
    except OSError as exc:
        if exc.errno == errno.ECONNREFUSED:
            return "refused"
        return "unreachable"


def read_banner(host: str, port: int, timeout: float = 2.0) -> str | None:
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(256).decode(errors="replace").strip() or None
    except OSError:
        return None


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05) -> None:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until true; no fixed sleeps in the lab."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise LabError(f"timed out after {timeout:.0f} s waiting for {what}")
