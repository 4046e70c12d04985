"""Validate NETCONF data against YANG modules with libyang's ``yanglint`` (Debian: libyang2-tools).

One call per document: libyang reports the first error of a document, with its data path.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

from lxml import etree

# dcilab's copies of the published modules, and the emulator's own bench module
SHIPPED_DIRS = (Path(__file__).resolve().parents[1] / "yang", Path(__file__).resolve().parents[1] / "emulator" / "yang")


def yanglint() -> str | None:
    return shutil.which("yanglint")


def search_dirs(*roots: Path) -> list[Path]:
    """Each root and every folder under it (yanglint takes one folder per -p)."""
    out: list[Path] = []
    for r in roots:
        if r.is_dir():
            out += [r, *sorted(p for p in r.rglob("*") if p.is_dir())]
    return out


def data_nodes(data: etree._Element) -> bytes:
    """The nodes of a reply's ``<data>`` without the NETCONF wrapper, as yanglint reads them."""
    return b"".join(etree.tostring(c) for c in data if isinstance(c.tag, str))


def validate(document: bytes, modules: Iterable[Path], dirs: Iterable[Path], kind: str = "get",
             timeout_s: float = 60.0) -> str | None:
    """None if ``document`` is valid ``kind`` data (get, getconfig, data, config, edit, notif)
    of ``modules``; else libyang's message.  Every module is made implemented (``-i -i``) so
    that identities of imported modules resolve."""
    exe = yanglint()
    if exe is None:
        raise FileNotFoundError("yanglint is not installed (Debian: apt install libyang2-tools)")
    with tempfile.NamedTemporaryFile(suffix=".xml") as f:
        f.write(document or b"")
        f.flush()
        args = [exe, "-i", "-i", "-f", "xml", "-t", kind]
        for d in dirs:
            args += ["-p", str(d)]
        r = subprocess.run([*args, *map(str, modules), f.name], capture_output=True, text=True, timeout=timeout_s)
    if r.returncode == 0:
        return None
    lines = [ln.strip() for ln in (r.stderr + r.stdout).splitlines() if ln.strip()]
    errors = [ln for ln in lines if "err" in ln.lower()] or lines
    return "; ".join(errors[:3]).replace(f.name, "<reply>")
