"""A lab's own modules that an emulator process imports first: ``DCILAB_PLUGINS``.

A plugin is a module that registers something when imported (a gateway dialect:
:func:`emulator.gateway.dialects.register`).  ``DCILAB_PLUGINS`` is a list separated like PATH
(``:``) of ``.py`` files and dotted module names; the entry points of group ``dcilab.plugins`` of
the installed distributions are imported too.  The framework loads them with this same function
before it reads an inventory or a profile (``dcilab``, the pytest plugin, ``load_inventory``): one
module may register an emulated dialect and the framework's driver for it, a fault kind, a
driver, each side using what it needs.
A file gets one module name (:func:`module_name`), so a process imports it once.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

ENV = "DCILAB_PLUGINS"
GROUP = "dcilab.plugins"


class PluginError(ImportError):
    """A plugin that did not import; the message names where it was listed, the entry and the fix."""


def load_plugins(value: str | None = None) -> list[ModuleType]:
    """Import every entry of ``value`` (default: the environment's ``DCILAB_PLUGINS``), in order,
    then the ``dcilab.plugins`` entry points.  A module imported before is not imported again."""
    value = os.environ.get(ENV, "") if value is None else value
    mods = [load_plugin(entry.strip()) for entry in value.split(os.pathsep) if entry.strip()]
    for ep in entry_points(group=GROUP):
        mods.append(load_plugin(ep.value.partition(":")[0], f"entry point {ep.name!r} of group {GROUP}"))
    return mods


def _is_path(entry: str) -> bool:
    return entry.endswith(".py") or "/" in entry or os.sep in entry


def module_name(path: Path) -> str:
    """The module name a plugin file is imported under (as ``testbed/plugins.py`` names it)."""
    return f"dcilab_plugin_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"


def load_plugin(entry: str, where: str = ENV) -> ModuleType:
    """One entry: a .py file (imported from its location) or a dotted module name (from sys.path)."""
    try:
        return _import_file(Path(entry)) if _is_path(entry) else importlib.import_module(entry)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - a plugin may fail any way, sys.exit() included
        fix = (f"check that {entry} exists and imports on its own (python {entry})" if _is_path(entry)
               else f"check that {entry} is installed or on PYTHONPATH and imports on its own "
                    f"(python -c 'import {entry}')")
        raise PluginError(f"{where}: the plugin {entry!r} failed to import: {type(exc).__name__}: {exc}; "
                          f"fix: {fix}, or remove it from {where}") from exc


def _import_file(path: Path) -> ModuleType:
    path = path.expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    name = module_name(path)
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"not a Python module: {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
