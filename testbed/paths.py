"""Where dcilab finds its files: the repository root and the default inventory.

Its own module so that the command line, its sub-commands and the pytest plugin all read them
without importing one another (``testbed.cli`` imports the sub-commands, not the reverse).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_INVENTORY = REPO_ROOT / "inventory" / "emulated.yaml"


def default_inventory() -> Path:
    """``$DCILAB_INVENTORY``, else the emulated lab's inventory."""
    return Path(os.environ.get("DCILAB_INVENTORY", DEFAULT_INVENTORY))
