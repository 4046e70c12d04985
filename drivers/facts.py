"""What a device says it is and runs, read from the device itself.

A trial report carries these (``testbed/snapshot.py``) so that it shows the software and data
models that really answered, not what the inventory expects: an upgraded transponder, a node
with another torch, a gateway on another release all show up in the report.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import parse_qs


@dataclass(frozen=True)
class DeviceFacts:
    """A network device's identity as it reports it; None where it reports nothing.
    ``modules``: YANG module -> revision from the NETCONF hello ('' when the module is
    advertised without one; empty for CLI devices); ``details``: further identity fields in the
    device's own words (e.g. OpenROADM ``openroadm-version``, VRP platform version)."""

    vendor: str | None
    model: str | None
    software_version: str | None
    serial: str | None = None
    modules: dict[str, str] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class NodeFacts:
    """A GPU node's software as its own Python interpreter reports it.  ``cuda`` is the CUDA
    version torch was built with (None: a CPU build); ``backend`` is the collective backend a
    training job gets there: 'nccl' with usable GPUs and NCCL, else 'gloo', 'none' without torch."""

    hostname: str
    kernel: str
    os: str | None
    python: str
    python_executable: str
    torch: str | None
    cuda: str | None
    cuda_available: bool
    gpus: tuple[str, ...]
    nccl: str | None
    gloo: bool
    backend: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["gpus"] = list(self.gpus)
        return d


def modules_from_capabilities(capabilities: Iterable[str]) -> dict[str, str]:
    """{module: revision} of the YANG modules a NETCONF hello advertises (RFC 6020 5.6.4:
    ``NAMESPACE?module=NAME&revision=DATE``); capabilities without ``module=`` are protocol
    features and are skipped.  YANG 1.1 modules are listed in the yang-library instead."""
    out: dict[str, str] = {}
    for cap in capabilities:
        _, sep, query = cap.partition("?")
        if not sep:
            continue
        q = parse_qs(query, keep_blank_values=True)
        name = (q.get("module") or [""])[0].strip()
        if name:
            out[name] = (q.get("revision") or [""])[0].strip()
    return dict(sorted(out.items()))


FACTS_TAG = "DCILAB-FACTS "

# Run by the node's own interpreter (``python -c``): stdlib only, so it reports even without torch.
NODE_FACTS_SCRIPT = r"""
import json, os, platform, socket, sys
out = {"hostname": socket.gethostname(), "kernel": os.uname().release, "os": None,
       "python": platform.python_version(), "python_executable": sys.executable, "torch": None,
       "cuda": None, "cuda_available": False, "gpus": [], "nccl": None, "gloo": False}
try:
    with open("/etc/os-release") as f:
        kv = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
    out["os"] = kv.get("PRETTY_NAME", "").strip('"') or None
except OSError:
    pass
try:
    import torch
except ImportError:
    torch = None
if torch is not None:
    out["torch"] = str(torch.__version__)
    out["cuda"] = torch.version.cuda
    out["cuda_available"] = bool(torch.cuda.is_available())
    if out["cuda_available"]:
        out["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    import torch.distributed as dist
    if dist.is_available():
        out["gloo"] = bool(dist.is_gloo_available())
        if dist.is_nccl_available() and out["cuda_available"]:
            v = torch.cuda.nccl.version()
            out["nccl"] = ".".join(map(str, v)) if isinstance(v, tuple) else str(v)
print("DCILAB-FACTS " + json.dumps(out))
"""


def parse_node_facts(stdout: str) -> NodeFacts:
    """The NodeFacts in the output of NODE_FACTS_SCRIPT; ValueError naming what is wrong."""
    line = next((ln for ln in reversed(stdout.splitlines()) if ln.startswith(FACTS_TAG)), None)
    if line is None:
        raise ValueError(f"no {FACTS_TAG.strip()} line in the output: {stdout.strip()[-200:]!r}")
    try:
        d = json.loads(line[len(FACTS_TAG):])
        cuda_ok, nccl, gloo = bool(d["cuda_available"]), d["nccl"], bool(d["gloo"])
        backend = "nccl" if cuda_ok and nccl else "gloo" if gloo else "none"
        return NodeFacts(hostname=d["hostname"], kernel=d["kernel"], os=d["os"], python=d["python"],
                         python_executable=d["python_executable"], torch=d["torch"], cuda=d["cuda"],
                         cuda_available=cuda_ok, gpus=tuple(d["gpus"]), nccl=nccl, gloo=gloo, backend=backend)
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"unreadable facts {line[len(FACTS_TAG):][:200]!r}: {exc!r}") from None


__all__ = ["NODE_FACTS_SCRIPT", "DeviceFacts", "NodeFacts", "modules_from_capabilities", "parse_node_facts"]
