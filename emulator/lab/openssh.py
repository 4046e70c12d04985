"""The GPU nodes' personality: Debian's real OpenSSH server, one per node namespace.

The lab generates one client key pair (what the inventory's ``ssh_key`` points at), one host key
per node, and a known_hosts file, so the controller verifies host keys exactly as against real
nodes.  Nodes share this machine's filesystem, so the project's .venv is usable on them.
"""

from __future__ import annotations

from pathlib import Path

from emulator.lab.plan import LabPlan, NodePlan
from emulator.lab.sys import LabError, in_netns, read_banner, run, wait_for

SSHD = "/usr/sbin/sshd"


def ensure_keys(plan: LabPlan) -> None:
    """Client key pair and per-node host keys; existing ones are kept (idempotent `up`)."""
    state = Path(plan.state_dir)
    (state / "hostkeys").mkdir(parents=True, exist_ok=True)
    if not Path(plan.key_path).exists():
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"dcilab-{plan.name}", "-f", plan.key_path)
    (state / "authorized_keys").write_text(Path(plan.key_path + ".pub").read_text())
    lines = []
    for node in plan.nodes:
        if node.personality != "openssh":
            continue
        key = state / "hostkeys" / node.name
        if not key.exists():
            run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", node.name, "-f", str(key))
        pub = " ".join(Path(str(key) + ".pub").read_text().split()[:2])
        host = node.mgmt_ip if node.port == 22 else f"[{node.mgmt_ip}]:{node.port}"
        lines.append(f"{host} {pub}\n")
    # Merge: other personalities (NETCONF, gateway CLI) may add their own host keys here.
    path = Path(plan.known_hosts_path)
    ours = {ln.split(" ", 1)[0] for ln in lines}
    kept = [ln for ln in (path.read_text().splitlines(True) if path.exists() else []) if ln.split(" ", 1)[0] not in ours]
    path.write_text("".join(kept + lines))


def config_text(plan: LabPlan, node: NodePlan) -> str:
    state = plan.state_dir
    return "\n".join([
        f"# dcilab emulated GPU node {node.name} (lab {plan.name})",
        f"Port {node.port}",
        f"ListenAddress {node.mgmt_ip}",
        *( [f"ListenAddress {node.data_ip}"] if node.data_ip else [] ),
        f"HostKey {state}/hostkeys/{node.name}",
        f"PidFile {state}/sshd-{node.name}.pid",
        f"AuthorizedKeysFile {state}/authorized_keys",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        "PrintMotd no",
        "UseDNS no",
        "MaxStartups 64:30:128",
        "MaxSessions 64",
        "ClientAliveInterval 15",
        f"SetEnv DCILAB_NODE={node.name} DCILAB_SITE={node.site or ''} DCILAB_LAB={plan.name}",
        "Subsystem sftp internal-sftp",
        "",
    ])


def start(plan: LabPlan, node: NodePlan) -> int:
    """Start sshd in the node's namespace and wait until it answers with its banner."""
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    cfg = Path(plan.state_dir) / f"sshd-{node.name}.conf"
    cfg.write_text(config_text(plan, node))
    run(SSHD, "-t", "-f", str(cfg))  # refuse a bad config before starting anything
    log = Path(plan.state_dir) / f"sshd-{node.name}.log"
    in_netns(node.netns, SSHD, "-f", str(cfg), "-E", str(log))
    pidfile = Path(plan.state_dir) / f"sshd-{node.name}.pid"
    try:
        wait_for(lambda: (read_banner(node.mgmt_ip, node.port, 0.5) or "").startswith("SSH-2.0-"),
                 10, f"sshd on {node.name} ({node.mgmt_ip}:{node.port})")
    except LabError as exc:
        tail = log.read_text()[-500:] if log.exists() else ""
        raise LabError(f"{exc}; sshd log: {tail.strip() or '(empty)'}") from None
    return int(pidfile.read_text().strip())


def client_argv(plan: LabPlan, node: NodePlan, *command: str) -> list[str]:
    """An OpenSSH client command line for a node: the lab key, host key checked strictly."""
    return ["ssh", "-i", plan.key_path, "-o", f"UserKnownHostsFile={plan.known_hosts_path}",
            "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=5", "-p", str(node.port),
            f"root@{node.mgmt_ip}", *command]
