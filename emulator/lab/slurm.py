"""A real Slurm for the emulated lab: Debian's munged, slurmctld and slurmd.

Why: labs that run such trials hand their GPU nodes to a workload manager; a job the trial
starts through Slurm must meet the same scheduler here.  One munged (its socket is a file, so
every namespace reaches it) and slurmctld run on the controller's side; each GPU node's
namespace runs its own slurmd.  Every daemon has a UTS namespace of its own whose hostname is
the name Slurm knows (slurmctld checks its host name against SlurmctldHost, slurmd finds its
NodeName from it), so several slurmd share one machine without Slurm's multiple-slurmd build.
Everything lives in ``<state_dir>/slurm``; `lab down` stops the daemons (by command line, and
the namespaces' processes) and removes the folder.
"""

from __future__ import annotations

import os
import secrets
import stat
import subprocess
from pathlib import Path

from emulator.lab.plan import LabPlan, SchedulerPlan
from emulator.lab.sys import LabError, stop_pid, tcp_probe, wait_for

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("srun", "squeue", "scontrol", "scancel", "sinfo")
SLURMD_PORT = 6818   # in each node's own namespace; slurmctld's port is the plan's (host-wide)
READY = {"idle", "alloc", "mix", "comp"}


def conf_dir(plan: LabPlan) -> Path:
    return Path(plan.state_dir) / "slurm"


def conf_path(plan: LabPlan) -> Path:
    return conf_dir(plan) / "slurm.conf"


def env(plan: LabPlan) -> dict[str, str]:
    """The environment Slurm's client commands need to reach this lab's Slurm."""
    return {**os.environ, "SLURM_CONF": str(conf_path(plan))}


def _cgroup_plugin() -> str:
    """slurmd initialises a cgroup plugin even with proctrack/linuxproc: name the mounted version
    (autodetect misses a v1 hierarchy mounted on a tmpfs, as containers have it)."""
    return "cgroup/v2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "cgroup/v1"


def config_text(plan: LabPlan, sched: SchedulerPlan) -> str:
    d = conf_dir(plan)
    lines = [
        "# written by dcilab lab up (emulator/lab/slurm.py); removed by lab down",
        f"ClusterName={sched.cluster}",
        f"SlurmctldHost={sched.controller}({sched.controller_address})",
        f"SlurmctldPort={sched.port}", f"SlurmdPort={SLURMD_PORT}",
        "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={d}/munge.sock",
        "SlurmUser=root", "SlurmdUser=root",
        f"StateSaveLocation={d}/ctld", f"SlurmdSpoolDir={d}/spool/%n",
        f"SlurmctldPidFile={d}/slurmctld.pid", f"SlurmdPidFile={d}/slurmd-%n.pid",
        f"SlurmctldLogFile={d}/slurmctld.log", f"SlurmdLogFile={d}/slurmd-%n.log",
        # processes tracked by their parents, no cgroup confinement, no accounting database:
        # a job's state and exit code come from scontrol while the job is recent (MinJobAge)
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none", "JobCompType=jobcomp/none", "MpiDefault=none",
        "SchedulerType=sched/builtin", "SelectType=select/cons_tres",   # CPUs and GPUs (GRES) per job
        "SlurmdParameters=config_overrides",   # the emulated node has the CPUs the inventory gives it
        "ReturnToService=2", "MinJobAge=600", "KillWait=5", "SlurmdTimeout=30",
        # each node's GPUs as a GRES (gres.conf), so a job asks for GPUs as on a GPU cluster and
        # Slurm refuses more than a node has
        "GresTypes=gpu",
    ]
    for n in sched.nodes:
        lines.append(f"NodeName={n.name} NodeAddr={n.address} CPUs={n.cpus} Gres=gpu:{n.cpus} State=UNKNOWN")
    lines.append(f"PartitionName={sched.partition} Nodes={','.join(n.name for n in sched.nodes)} Default=YES "
                 "MaxTime=INFINITE State=UP")
    return "\n".join(lines) + "\n"


def conf_current(plan: LabPlan) -> bool:
    """Whether the running Slurm's slurm.conf is the one this code writes for the plan."""
    assert plan.scheduler is not None
    try:
        return conf_path(plan).read_text() == config_text(plan, plan.scheduler)
    except OSError:
        return False


def write_configs(plan: LabPlan, sched: SchedulerPlan) -> None:
    d = conf_dir(plan)
    for sub in ("ctld", "spool", *(f"spool/{n.name}" for n in sched.nodes)):
        (d / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
    key = d / "munge.key"
    if not key.exists():
        key.write_bytes(secrets.token_bytes(1024))
        key.chmod(0o400)
    conf_path(plan).write_text(config_text(plan, sched))
    # Slurm 22.05 drops a GPU GRES without device files: each node gets stand-in character devices
    # (/dev/null's numbers; Slurm only stats them), one per GPU, as /dev/nvidia0.. are on a GPU node
    gres = []
    for n in sched.nodes:
        dev = d / "dev" / n.name
        dev.mkdir(parents=True, exist_ok=True, mode=0o700)
        for i in range(n.cpus):
            if not (dev / f"gpu{i}").exists():
                os.mknod(dev / f"gpu{i}", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        gres.append(f"NodeName={n.name} Name=gpu File={dev}/gpu{f'[0-{n.cpus - 1}]' if n.cpus > 1 else '0'}\n")
    (d / "gres.conf").write_text("".join(gres))
    (d / "cgroup.conf").write_text(f"CgroupPlugin={_cgroup_plugin()}\nCgroupMountpoint=/sys/fs/cgroup\n")


def _spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as f:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=f, start_new_session=True,
                                close_fds=True)


def _in_uts(hostname: str, *argv: str) -> list[str]:
    """``argv`` run in a UTS namespace of its own, named ``hostname`` (exec keeps the pid)."""
    return ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', hostname, *argv]


def nodes_ready(plan: LabPlan) -> dict[str, str]:
    """Each node's state as sinfo says it ({} when slurmctld does not answer)."""
    try:
        r = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t"], env=env(plan), capture_output=True, text=True,
                           timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if r.returncode:
        return {}
    return dict(line.split(None, 1) for line in r.stdout.splitlines() if len(line.split()) == 2)


def start(plan: LabPlan) -> dict[str, int]:
    """Start munged, slurmctld and every slurmd; returns their pids once every node is idle."""
    sched = plan.scheduler
    assert sched is not None
    host = sched.controller_address
    if tcp_probe(host, sched.port, 0.5) == "open":
        raise LabError(f"{host}:{sched.port} is already in use (another slurmctld?); stop it before lab up, "
                       "or give this lab another emulation.slurm_port")
    write_configs(plan, sched)
    d = conf_dir(plan)
    pids: dict[str, int] = {}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        m = _spawn(["munged", "--foreground", "--force", f"--socket={d}/munge.sock", f"--key-file={d}/munge.key",
                    f"--pid-file={d}/munged.pid", f"--seed-file={d}/munged.seed", f"--log-file={d}/munged.log"],
                   d / "munged.out")
        procs.append(m)
        pids["munged"] = m.pid
        wait_for(lambda: m.poll() is not None or (d / "munge.sock").exists(), 15, "munged to open its socket")
        if m.poll() is not None:
            raise LabError(f"munged exited at start (code {m.returncode}): see {d}/munged.log")
        c = _spawn(_in_uts(sched.controller, "slurmctld", "-D", "-f", str(conf_path(plan))), d / "slurmctld.out")
        procs.append(c)
        pids["slurmctld"] = c.pid
        for n in sched.nodes:
            node = plan.node(n.name)
            s = _spawn(["ip", "netns", "exec", node.netns, *_in_uts(n.name, "slurmd", "-D", "-f", str(conf_path(plan)))],
                       d / f"slurmd-{n.name}.out")
            procs.append(s)
            pids[f"slurmd:{n.name}"] = s.pid
        names = {n.name for n in sched.nodes}

        def ready() -> bool:
            if any(p.poll() is not None for p in procs):
                return True
            st = nodes_ready(plan)
            return names <= set(st) and all(st[x].rstrip("*~#") in READY for x in names)
        wait_for(ready, 60, "every slurmd to register with slurmctld")
        dead = [(k, p) for k, p in zip(pids, procs, strict=True) if p.poll() is not None]
        if dead:
            k, p = dead[0]
            raise LabError(f"{k.split(':')[0]} {k.split(':')[-1] if ':' in k else ''} exited at start "
                           f"(code {p.returncode}): see {d}/{k.replace(':', '-')}.log")
    except BaseException:
        for p in reversed(procs):
            stop_pid(p.pid)
        raise
    return pids


def status(plan: LabPlan) -> tuple[str, str]:
    """("up" | "down", what sinfo says)."""
    sched = plan.scheduler
    assert sched is not None
    st = nodes_ready(plan)
    if not st:
        return "down", "slurmctld does not answer sinfo"
    bad = {n.name: st.get(n.name, "missing") for n in sched.nodes if st.get(n.name, "").rstrip("*~#") not in READY}
    if bad:
        return "down", "nodes not ready: " + ", ".join(f"{k} {v}" for k, v in bad.items())
    return "up", f"partition {sched.partition}: {len(st)} nodes ({', '.join(sorted(set(st.values())))})"
