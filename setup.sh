#!/usr/bin/env bash
# Install what dcilab needs on Debian 12, as root: the Debian packages the emulated lab runs
# (OpenSSH server, iproute2, iperf3, VictoriaMetrics, ...) and the Python environment in .venv
# at the repository root.  Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")"

DEBS=(openssh-server openssh-client iproute2 iputils-ping iperf3 nftables victoria-metrics python3-venv python3-pip)
# chromium prints report.pdf (`dcilab report`) and runs the report's headless-browser test;
# fonts-dejavu-core gives it fonts to draw text with on a minimal system.
DEBS+=(chromium fonts-dejavu-core)
# yanglint (libyang) validates the emulated gear's NETCONF data against the published models (yang/)
DEBS+=(libyang2-tools)
# a real Slurm for the emulated lab (emulator/lab/slurm.py) and its client commands (testbed/jobs/slurm.py)
DEBS+=(munge slurmctld slurmd slurm-client)
missing=()
for pkg in "${DEBS[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    if [ "$(id -u)" != 0 ]; then
        echo "setup.sh: these Debian packages are missing and installing them needs root: ${missing[*]}" >&2
        exit 1
    fi
    echo "setup.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # policy-rc.d keeps Debian from starting the system sshd/victoria-metrics services: the lab
    # starts its own instances inside namespaces and on loopback.
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
# torch for the GPU nodes' workload: the CPU build (GPU nodes of the emulated lab train with gloo).
if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
    .venv/bin/python -m pip install -q "torch==2.13.0" 2>&1 | grep -v '^WARNING: Location' || true
fi
.venv/bin/python -m pip install -q -e '.[gpu,test]' 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -c 'import testbed, emulator, paramiko, ncclient, netmiko, scapy, influxdb_client, torch' \
    || { echo "setup.sh: the Python environment is incomplete (see pip's output above)" >&2; exit 1; }
echo "setup.sh: ready ($(.venv/bin/python --version), $(.venv/bin/dcilab --help >/dev/null && echo dcilab CLI ok))"
