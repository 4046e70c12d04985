"""Who the emulated gear says it is, on every protocol: one vendor name, dcilab's own version as
the software version, and a serial number derived from the device's name.  A testbed snapshot
read from the emulated lab can then never be mistaken for real gear, and two runs of the same
lab report the same serial numbers."""

from __future__ import annotations

import hashlib
from functools import cache
from importlib.metadata import PackageNotFoundError, version

VENDOR = "dcilab-emulator"


@cache
def software_version() -> str:
    """dcilab's package version ('0+unknown' when run from a tree that was never installed)."""
    try:
        return version("dcilab")
    except PackageNotFoundError:
        return "0+unknown"


def serial_number(name: str) -> str:
    """A stable serial for the device called ``name`` ('EMU' + 12 hex digits)."""
    return "EMU" + hashlib.sha256(name.encode()).hexdigest()[:12].upper()
