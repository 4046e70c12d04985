"""Bring the emulated lab up, take it down, and say how it is.

`up` converges: a healthy lab built from the same plan is left alone; anything else (a lab of
another plan, leftovers of a crashed run) is removed first and built afresh.  A failed or
interrupted `up` removes what it made.  `down` removes everything the lab can have made, found by
name prefix and process command line, so it also cleans after a partial `up` or a crash.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from emulator.lab import devices, openssh, slurm, store
from emulator.lab.plan import DEFAULT_PREFIX, LabPlan, NodePlan, clashes, owned
from emulator.lab.sys import (
    LabError,
    cmdline,
    host_links,
    host_routes,
    ip,
    list_netns,
    netns_pids,
    pid_alive,
    read_banner,
    require_root_and_netns,
    require_tools,
    run,
    stop_pid,
    sysctl,
    tcp_probe,
    wait_for,
)
from emulator.line.control import LineControl

RUN_ROOT = Path("/run/dcilab")       # state dirs of emulated labs live below here
LINE_MODULE = "emulator.line"


# ----------------------------------------------------------------------------------------- up
def up(plan: LabPlan, log=print) -> str:  # type: ignore[no-untyped-def]
    """Build the lab; returns 'built' or 'already up'."""
    require_root_and_netns()
    require_tools("ip", "ssh-keygen", openssh.SSHD, *( [store.BINARY] if plan.store else [] ),
                  *(("unshare", *slurm.DAEMONS, *slurm.CLIENTS) if plan.scheduler else ()))
    if _healthy_same_plan(plan):
        log(f"lab {plan.name} is already up with this plan; nothing changed")
        return "already up"
    _check_other_labs(plan)
    removed = down(plan, quiet=True)
    if removed:
        log(f"removed leftovers of an earlier lab: {', '.join(removed)}")
    _check_host_clashes(plan)
    t0 = time.monotonic()
    pids: dict[str, int] = {}
    try:
        state = Path(plan.state_dir)
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
        (state / "plan.json").write_text(plan.to_json())
        _build_fabric(plan)
        log(f"namespaces and links: {len(plan.nodes) + len(plan.fabrics)} namespaces ({time.monotonic() - t0:.1f} s)")
        openssh.ensure_keys(plan)
        for node in plan.nodes:
            if node.personality == "openssh":
                pids[f"sshd:{node.name}"] = openssh.start(plan, node)
        log(f"GPU nodes: OpenSSH up on {sum(1 for k in pids if k.startswith('sshd:'))} nodes "
            f"({time.monotonic() - t0:.1f} s)")
        pids["line"] = _start_line(plan)
        _route_over_line(plan)
        log(f"optical line: {len(plan.line.paths)} fiber paths, active {plan.line.active_path}, "
            f"{plan.line.rate_bps / 1e9:g} Gbit/s ({time.monotonic() - t0:.1f} s)")
        started = []
        for node in plan.nodes:   # after the line: a gateway's saved shaping applies to wan0
            if devices.serves(node):
                pids[f"device:{node.name}"] = devices.start(plan, node)
                started.append(f"{node.name} ({node.personality})")
        if started:
            log(f"devices: {', '.join(started)} ({time.monotonic() - t0:.1f} s)")
        if plan.store:
            pids["store"] = store.start(plan, plan.store)
            log(f"metrics store: VictoriaMetrics on http://{plan.store.host}:{plan.store.port} "
                f"({time.monotonic() - t0:.1f} s)")
        if plan.scheduler:
            pids.update(slurm.start(plan))
            log(f"scheduler: Slurm, slurmctld on {plan.scheduler.controller_address}, slurmd on "
                f"{len(plan.scheduler.nodes)} GPU nodes, partition {plan.scheduler.partition} "
                f"(SLURM_CONF={slurm.conf_path(plan)}) ({time.monotonic() - t0:.1f} s)")
        _write_state(plan, pids)
    except BaseException:
        # Also on Ctrl-C: a half-built lab is worse than none.
        log("lab up failed; removing what was made")
        _stop_pids(pids.values())
        down(plan, quiet=True)
        raise
    log(f"lab {plan.name} is up in {time.monotonic() - t0:.1f} s (state in {plan.state_dir})")
    return "built"


def other_labs(plan: LabPlan | None = None) -> list[LabPlan]:
    """The plans of the labs this host has (state folders under /run/dcilab), ``plan``'s own excluded."""
    found = []
    for sd in sorted(RUN_ROOT.glob("*/")) if RUN_ROOT.exists() else []:
        if plan is not None and sd.resolve() == Path(plan.state_dir).resolve():
            continue
        try:
            found.append(LabPlan.from_json((sd / "plan.json").read_text()))
        except (OSError, ValueError, TypeError, KeyError):
            continue
    return found


def _check_other_labs(plan: LabPlan) -> None:
    """Refuse to build over another lab: ``up`` first removes leftovers of its own name, which
    would take the other lab's namespaces, ports or state with them."""
    for other in other_labs(plan):
        problems = clashes(plan, other)
        if problems:
            raise LabError(f"lab {plan.name} cannot be built beside lab {other.name} (state in {other.state_dir}): "
                           + "; ".join(problems) + f". Give this inventory its own values (inventory/emulated-2.yaml "
                           f"is a second lab that coexists with inventory/emulated.yaml), or take {other.name} down "
                           "first (dcilab lab down --inventory <its inventory>, or dcilab lab down --all)")


def _check_host_clashes(plan: LabPlan) -> None:
    """Refuse to shadow networks that the host already uses for something else."""
    ours = {plan.mgmt_bridge, *(plan.host_link(n.index) for n in plan.nodes)}
    for dst, dev in host_routes():
        if not dst or dst == "default" or dev in ours:
            continue
        try:
            net = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            continue
        for known in plan.known_networks:
            if net.overlaps(ipaddress.ip_network(known)) and net.prefixlen > 0:
                owner = next((o.name for o in other_labs(plan) if dev == o.mgmt_bridge), None)
                raise LabError(f"the host already routes {dst} via {dev}"
                               + (f" (emulated lab {owner})" if owner else "")
                               + f", which overlaps the lab's {known}; "
                               "change emulation.address_plan in the inventory or remove that route")


def _build_fabric(plan: LabPlan) -> None:
    mtu = str(plan.mtu)
    bridge = plan.mgmt_bridge
    ip("link", "add", bridge, "type", "bridge")
    _no_ipv6_host(bridge)
    ip("addr", "add", plan.controller_address, "dev", bridge)
    ip("link", "set", bridge, "up")
    for fabric in plan.fabrics:
        run("ip", "netns", "add", fabric.netns)
        sysctl(fabric.netns, net__ipv6__conf__all__disable_ipv6=1, net__ipv6__conf__default__disable_ipv6=1)
        ip("link", "set", "lo", "up", netns=fabric.netns)
        ip("link", "add", "fabric", "mtu", mtu, "type", "bridge", netns=fabric.netns)
        ip("link", "set", "fabric", "up", netns=fabric.netns)
    fabric_of = {f.site: f for f in plan.fabrics}
    for node in plan.nodes:
        ns = node.netns
        run("ip", "netns", "add", ns)
        sysctl(ns, net__ipv6__conf__all__disable_ipv6=1, net__ipv6__conf__default__disable_ipv6=1,
               net__ipv4__conf__all__rp_filter=0, net__ipv4__conf__default__rp_filter=0,
               net__ipv4__ip_forward=1 if node.kind == "gateway" else 0)
        ip("link", "set", "lo", "up", netns=ns)
        host_side = plan.host_link(node.index)
        ip("link", "add", host_side, "type", "veth", "peer", "name", "mgmt0", "netns", ns)
        _no_ipv6_host(host_side)
        ip("link", "set", host_side, "master", bridge, "up")
        ip("addr", "add", node.mgmt_address, "dev", "mgmt0", netns=ns)
        ip("link", "set", "mgmt0", "up", netns=ns)
        if node.data_address and node.site in fabric_of:
            fabric = fabric_of[node.site]
            port = f"p{node.index}"
            ip("link", "add", port, "mtu", mtu, "type", "veth", "peer", "name", "fab0", "netns", ns, "mtu", mtu,
               netns=fabric.netns)
            ip("link", "set", port, "master", "fabric", "up", netns=fabric.netns)
            ip("addr", "add", node.data_address, "dev", "fab0", netns=ns)
            ip("link", "set", "fab0", "up", netns=ns)
    # GPU nodes reach the other site through their own site's gateway.
    for node in plan.nodes:
        if node.kind != "gpu_node" or node.site not in fabric_of:
            continue
        for other in plan.fabrics:
            if other.site != node.site:
                ip("route", "add", other.subnet, "via", fabric_of[node.site].gateway_ip, "dev", "fab0", netns=node.netns)


def _no_ipv6_host(ifname: str) -> None:
    path = Path(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6")
    if path.exists():
        path.write_text("1")


def line_config(plan: LabPlan) -> dict:  # type: ignore[type-arg]
    line = plan.line
    return {
        "name": plan.name,
        "control_socket": plan.line_socket,
        "pidfile": f"{plan.state_dir}/line.pid",
        "ends": [{"netns": plan.node(line.a_gateway).netns, "ifname": line.ifname},
                 {"netns": plan.node(line.z_gateway).netns, "ifname": line.ifname}],
        "mtu": plan.mtu,
        "rate_bps": line.rate_bps,
        "buffer_ms": line.buffer_ms,
        "paths": [{"name": p.name, "length_km": p.length_km, "ber": 0.0} for p in line.paths],
        "active_path": line.active_path,
        "protection": protection_config(plan),
        **({"transport": line.transport} if line.transport is not None else {}),
    }


def protection_config(plan: LabPlan) -> dict:  # type: ignore[type-arg]
    """The optical layer's own reflexes at start: 1+1 SNCP onto the protection path, then ASON
    restoration over the restoration paths; the OTN terminals' NETCONF config changes them later."""
    line = plan.line
    protection = line.paths_of("protection")
    restoration = [p.name for p in line.paths_of("restoration")]
    return {
        "mode": "sncp" if protection else "none",
        "working": line.paths_of("working")[0].name,
        "protection": protection[0].name if protection else None,
        "hold_off_ms": 0.0, "switch_ms": line.switch_ms, "revertive": False,
        "ason": bool(restoration), "restoration": restoration, "restoration_ms": line.restoration_ms,
    }


def _start_line(plan: LabPlan) -> int:
    cfg = Path(plan.state_dir) / "line.json"
    cfg.write_text(json.dumps(line_config(plan), indent=2))
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    with open(Path(plan.state_dir) / "line.log", "ab") as log:
        proc = subprocess.Popen([plan.python, "-m", LINE_MODULE, "--config", str(cfg)], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=log, start_new_session=True, close_fds=True, env=env)
    sock = Path(plan.line_socket)
    try:
        wait_for(lambda: proc.poll() is not None or sock.exists(), 15, "the optical line's control socket")
    except LabError:
        proc.kill()
        raise
    if proc.poll() is not None:
        tail = (Path(plan.state_dir) / "line.log").read_text(errors="replace")[-600:]
        raise LabError(f"the optical line exited at start (code {proc.returncode}): {tail.strip()}")
    return proc.pid


def _route_over_line(plan: LabPlan) -> None:
    line = plan.line
    ends = ((line.a_gateway, line.a_address, line.z_address), (line.z_gateway, line.z_address, line.a_address))
    for gw_name, mine, peer in ends:
        gw = plan.node(gw_name)
        ip("addr", "add", mine, "dev", line.ifname, netns=gw.netns)
        ip("link", "set", line.ifname, "up", netns=gw.netns)
        for fabric in plan.fabrics:
            if fabric.site != gw.site:
                ip("route", "add", fabric.subnet, "via", peer.split("/")[0], "dev", line.ifname, netns=gw.netns)


def _write_state(plan: LabPlan, pids: dict[str, int]) -> None:
    state = {"plan": plan.name, "digest": plan.digest, "pids": pids, "created": time.time()}
    (Path(plan.state_dir) / "lab.json").write_text(json.dumps(state, indent=2))


def _read_state(state_dir: Path) -> dict | None:  # type: ignore[type-arg]
    try:
        return json.loads((state_dir / "lab.json").read_text())
    except (OSError, ValueError):
        return None


def _healthy_same_plan(plan: LabPlan) -> bool:
    state = _read_state(Path(plan.state_dir))
    if not state or state.get("digest") != plan.digest:
        return False
    if plan.scheduler and not slurm.conf_current(plan):
        return False            # built by an older dcilab: its Slurm runs another configuration
    return status(plan).ok


# --------------------------------------------------------------------------------------- down
def down(plan: LabPlan | None = None, quiet: bool = False, log=print) -> list[str]:  # type: ignore[no-untyped-def]
    """Remove every namespace, link, process and state file of ``plan``'s lab (its prefix, its
    state folder, its store), leaving other labs alone; with no plan, of every emulated lab.
    Returns what was removed."""
    removed: list[str] = []
    all_dirs = set(RUN_ROOT.glob("*/")) if RUN_ROOT.exists() else set()
    if plan is None:
        state_dirs = all_dirs
        prefixes = {DEFAULT_PREFIX, *(o.prefix for o in other_labs())}
    else:
        # its own folder, and leftovers of an earlier plan of the same prefix (another state_dir)
        state_dirs = {Path(plan.state_dir), *(Path(o.state_dir) for o in other_labs(plan) if o.prefix == plan.prefix)}
        prefixes = {plan.prefix}
    mine = _ownership(plan, state_dirs)
    # 1. Processes in the host namespace: the line, the store, Slurm's controller (by recorded pid, then by scan).
    pids: set[int] = set()
    for sd in state_dirs:
        st = _read_state(sd) or {}
        for name, pid in (st.get("pids") or {}).items():
            if not name.startswith(("sshd:", "slurmd:")) and pid_alive(pid) and mine(pid):
                pids.add(pid)
    pids |= _scan_lab_processes(mine)
    if pids:
        _stop_pids(pids)
        removed.append(f"{len(pids)} processes")
    # 2. Namespaces (their processes first: sshd and its sessions, device servers).
    for ns in list_netns():
        if any(owned(ns, p) for p in prefixes):
            inside = netns_pids(ns)
            _stop_pids(inside)
            run("ip", "netns", "del", ns, check=False)
            removed.append(ns)
    # 3. Host links (veth peers vanish with their namespaces; the bridge stays until removed).
    for link in host_links():
        if any(owned(link, p) for p in prefixes):
            ip("link", "del", link, check=False)
            removed.append(link)
    # 4. State: keys, configs, pid files, sockets, logs.
    for sd in state_dirs:
        if sd.exists():
            shutil.rmtree(sd, ignore_errors=True)
            removed.append(str(sd))
    if RUN_ROOT.exists() and not any(RUN_ROOT.iterdir()):
        RUN_ROOT.rmdir()
    if not quiet:
        log("removed: " + (", ".join(removed) if removed else "nothing (no lab was up)"))
    return removed


def _ownership(plan: LabPlan | None, state_dirs: set[Path]):  # type: ignore[no-untyped-def]
    """A test for 'this host process is one of these labs'': the line, munged and slurmctld name
    their state folder on their command line, the store its data folder."""
    dirs = tuple(f"{d.as_posix().rstrip('/')}/" for d in state_dirs)

    def mine(pid: int) -> bool:
        cmd = cmdline(pid)
        if not _is_lab_process(cmd):
            return False
        if plan is None:
            return True
        if "victoria-metrics" in cmd:
            return plan.store is not None and store.is_ours(pid, plan.store)
        return any(d in cmd for d in dirs)
    return mine


def _is_lab_process(cmd: str) -> bool:
    return (f"-m {LINE_MODULE} --config {RUN_ROOT}/" in cmd
            or ("victoria-metrics" in cmd and "-storageDataPath=/var/lib/dcilab/" in cmd)
            or (cmd.split(" ", 1)[0].rsplit("/", 1)[-1] in ("munged", "slurmctld") and f"{RUN_ROOT}/" in cmd))


def _scan_lab_processes(mine) -> set[int]:  # type: ignore[no-untyped-def]
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid() and mine(int(entry.name)):
            found.add(int(entry.name))
    return found


def _stop_pids(pids) -> None:  # type: ignore[no-untyped-def]
    for pid in list(pids):
        stop_pid(pid)


# ------------------------------------------------------------------------------------- status
@dataclass
class Row:
    name: str
    kind: str
    address: str
    state: str
    detail: str

    @property
    def ok(self) -> bool:
        return self.state == "up"


@dataclass
class LabStatus:
    name: str
    built: bool
    rows: list[Row] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.built and all(r.ok for r in self.rows)


def status(plan: LabPlan) -> LabStatus:
    namespaces = set(list_netns())
    built = (Path(plan.state_dir) / "lab.json").exists()
    st = LabStatus(plan.name, built)
    for node in plan.nodes:
        st.rows.append(_node_row(node, namespaces))
    st.rows.append(_line_row(plan))
    if plan.store:
        ok = store.healthy(plan.store)
        st.rows.append(Row("metrics-store", "victoria-metrics", f"{plan.store.host}:{plan.store.port}",
                           "up" if ok else "down", "answers /health" if ok else "does not answer /health"))
    if plan.scheduler:
        state, detail = slurm.status(plan)
        st.rows.append(Row("scheduler", "slurm", f"{plan.scheduler.controller_address}:{plan.scheduler.port}", state,
                           detail))
    return st


def _node_row(node: NodePlan, namespaces: set[str]) -> Row:
    addr = f"{node.mgmt_ip}:{node.port}"
    if node.netns not in namespaces:
        return Row(node.name, node.kind, addr, "down", f"namespace {node.netns} does not exist")
    banner = read_banner(node.mgmt_ip, node.port)
    if banner and banner.startswith("SSH-2.0-"):
        return Row(node.name, node.kind, addr, "up", f"{node.personality}: {banner}")
    if tcp_probe(node.mgmt_ip, node.port) == "unreachable":
        return Row(node.name, node.kind, addr, "down", "management address does not answer")
    return Row(node.name, node.kind, addr, "down", f"the {node.personality} server does not answer")


def _line_row(plan: LabPlan) -> Row:
    sock = plan.line_socket
    if not Path(sock).exists():
        return Row("optical-line", "line", sock, "down", "control socket missing")
    try:
        state = LineControl(sock, timeout=2.0).get()
    except Exception as exc:  # noqa: BLE001 - any failure means the line does not answer
        return Row("optical-line", "line", sock, "down", f"control does not answer: {exc}")
    active = state.get("active_path")
    paths = {p["name"]: p for p in state.get("paths", [])}
    delay = paths.get(active, {}).get("delay_ms")
    return Row("optical-line", "line", f"{plan.line.a_gateway} <-> {plan.line.z_gateway}", "up",
               f"active {active}, one-way {delay:.3f} ms, {state.get('rate_bps', 0) / 1e9:g} Gbit/s"
               if delay is not None else f"active {active}")


__all__ = ["LabError", "LabStatus", "Row", "down", "line_config", "status", "up"]
