"""Wires dcilab's pytest plugin into every suite run from this repository (tests/ and cases/).

An installed dcilab registers the plugin through its ``pytest11`` entry point; registering it
again here would be an error, so this file only does it for a checkout that is not installed
(or when plugin autoloading is switched off).
"""

import os
from importlib.metadata import entry_points

_autoloaded = os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD") is None and any(
    ep.value == "testbed.pytest_plugin" for ep in entry_points(group="pytest11")
)
pytest_plugins = [] if _autoloaded else ["testbed.pytest_plugin"]
