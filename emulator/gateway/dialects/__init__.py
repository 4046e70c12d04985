"""The CLI dialects an emulated gateway can speak, by the name an inventory's ``driver:`` gives them.

A dialect is one module: its command table and handlers (a :class:`~emulator.gateway.session.Session`
subclass), how it writes and replays a configuration, and a :func:`register` call.  The built-in
``vrp`` (:mod:`.vrp`) is imported on first use; a dialect of your own registers itself when its
module is imported, which ``python -m emulator.gateway`` does for every entry of ``DCILAB_PLUGINS``
(:mod:`emulator.plugins`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..device import DeviceConfig, Gateway
    from ..session import Session

DEFAULT = "vrp"
BUILTIN = {"vrp": f"{__name__}.vrp"}
"""Dialects shipped here: name -> module, imported when first asked for."""


@dataclass(frozen=True)
class Dialect:
    """What the device and the SSH server need of a dialect."""

    name: str                                              # the inventory's driver: name
    session: type[Session]                                 # a terminal: commands, handlers, prompts, words
    render_config: Callable[[DeviceConfig, float | None], str]   # the configuration as text (shown, saved)
    replay: Callable[[Gateway, str], list[str]]            # run a saved text; the refused lines, with why
    port_hint: str = "an interface name like 100GE1/0/1"   # ends "port name 'x' is not ..."
    lab_ports: tuple[str, str, str] = ("400GE1/0/1", "400GE1/0/2", "MEth0/0/0")
    """The names the emulated lab gives its WAN, fabric and management ports, in this dialect's
    words (the WAN port faces the OTN terminal's 400G client ports, as in the trial)."""


class UnknownDialect(ValueError):
    """A dialect name nobody registered."""


_DIALECTS: dict[str, Dialect] = {}


def register(name: str, dialect: Dialect) -> Dialect:
    """Make ``dialect`` the one called ``name`` (replacing one of the same name)."""
    _DIALECTS[name] = dialect
    return dialect


def names() -> list[str]:
    """Every dialect name: the built-in ones, then those registered."""
    return list(dict.fromkeys([*BUILTIN, *_DIALECTS]))


def get(name: str) -> Dialect:
    """The dialect called ``name``, importing a built-in one on first use."""
    if name not in _DIALECTS and name in BUILTIN:
        importlib.import_module(BUILTIN[name])
    try:
        return _DIALECTS[name]
    except KeyError:
        raise UnknownDialect(
            f"unknown gateway dialect {name!r} (known: {', '.join(names())}); a dialect of your own is "
            "registered by its module: name the module in DCILAB_PLUGINS") from None
