"""Modules of the user's own that the emulator imports first: ``DCILAB_PLUGINS``.

A plugin is a module that registers something when imported (a gateway dialect:
:func:`emulator.gateway.dialects.register`).  ``DCILAB_PLUGINS`` holds a list of them separated
like PATH (``:``): each entry is a ``.py`` file (imported from its location, under its file name
as module name, so that ``import NAME`` elsewhere finds the same module) or a dotted module name
on ``sys.path``.  The framework reads the same variable, so one module can serve both sides.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

ENV = "DCILAB_PLUGINS"


class PluginError(ImportError):
    """A ``DCILAB_PLUGINS`` entry that did not import; the message names the entry and the fix."""


def load_plugins(value: str | None = None) -> list[ModuleType]:
    """Import every entry of ``value`` (default: the environment's ``DCILAB_PLUGINS``), in order.
    An entry imported before (this process) is not imported again."""
    value = os.environ.get(ENV, "") if value is None else value
    return [load_plugin(entry.strip()) for entry in value.split(os.pathsep) if entry.strip()]


def _is_path(entry: str) -> bool:
    return entry.endswith(".py") or "/" in entry or os.sep in entry


def load_plugin(entry: str) -> ModuleType:
    """One entry: a .py file or a dotted module name."""
    try:
        return _import_file(Path(entry)) if _is_path(entry) else importlib.import_module(entry)
    except PluginError:
        raise
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - a plugin may fail any way, sys.exit() included
        fix = (f"check that {entry} exists and runs on its own (python {entry})" if _is_path(entry)
               else f"check that {entry} is installed or on PYTHONPATH and imports on its own "
                    f"(python -c 'import {entry}')")
        raise PluginError(f"{ENV}: the plugin {entry!r} failed to import: {type(exc).__name__}: {exc}. "
                          f"Fix: {fix}, or remove it from {ENV}") from exc


def _import_file(path: Path) -> ModuleType:
    path = path.expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no file {path}")
    name = path.stem
    old = sys.modules.get(name)
    if old is not None:
        if getattr(old, "__file__", None) and Path(old.__file__).resolve() == path:  # type: ignore[arg-type]
            return old
        raise PluginError(f"{ENV}: the plugin {str(path)!r} would be module {name!r}, but a module of that name is "
                          f"already loaded (from {getattr(old, '__file__', None) or 'a built-in'}). "
                          f"Fix: rename the file")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path} as a module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module
