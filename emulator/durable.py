"""Write a device's saved configuration so that a power cut leaves the old file or the new one.

Shared by every emulator that saves (the NETCONF datastore, the gateway's ``save``): a device
that finds an empty or half-written configuration at boot does not come back up.
"""

from __future__ import annotations

import os


def save_durably(path: str | os.PathLike[str], data: bytes) -> None:
    """Write a temporary file, fsync it, rename it over ``path``, fsync the folder (the rename is
    only durable once the directory entry is).  Callers serialise their own saves."""
    path = os.fspath(path)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
