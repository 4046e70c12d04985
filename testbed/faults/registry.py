"""The kinds of fault dcilab knows, each registered by its own module.

A kind is a :class:`~testbed.faults.catalogue.Fault` subclass that says its CLI name and
arguments, the driver operations its steps name, the capabilities a case needs to use it, its
baseline check and its factories for the trial's ``faults`` fixture.  ``@register`` on the class
is all a new kind needs: the built-in ones are in ``testbed/faults/kinds/``; a lab's own are
loaded from ``DCILAB_PLUGINS`` (:mod:`testbed.plugins`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from .catalogue import Check, Fault
from .ops import OPS, FaultRefused

F = TypeVar("F", bound=type[Fault])

_KINDS: dict[str, type[Fault]] = {}
_OP_OWNER: dict[str, str] = {}


def _norm(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def register(cls: F) -> F:
    """Make a fault kind known (a class decorator).  Re-registering a kind of the same name
    replaces it (a module imported twice); two kinds may not define the same operation."""
    name = _norm(cls.NAME)
    if not name:
        raise ValueError(f"fault kind {cls.__name__}: set NAME (its command-line name, e.g. 'bandwidth-drop')")
    for op, fn in cls.OPS.items():
        owner = _OP_OWNER.get(op)
        if owner is not None and owner != name:
            raise ValueError(f"fault kind {name}: operation {op!r} is already defined by fault kind {owner}; "
                             "give it another name")
        if op in OPS and owner is None:
            raise ValueError(f"fault kind {name}: operation {op!r} is one of the framework's own; rename it")
        OPS[op] = fn
        _OP_OWNER[op] = name
    for cap in cls.CAPABILITIES:
        owner_cls = next((k for k in _KINDS.values() if cap in k.CAPABILITIES and _norm(k.NAME) != name), None)
        if owner_cls is not None:
            raise ValueError(f"fault kind {name}: capability {cap!r} is already defined by fault kind "
                             f"{owner_cls.NAME}; give it another name")
    _KINDS[name] = cls
    return cls


def kinds() -> list[type[Fault]]:
    """The registered kinds, built-in first, in registration order."""
    return list(_KINDS.values())


def names() -> list[str]:
    return list(_KINDS)


def kind(name: str) -> type[Fault]:
    try:
        return _KINDS[_norm(name)]
    except KeyError:
        raise FaultRefused(f"unknown fault kind {name!r}: use one of {', '.join(_KINDS)} (a lab's own kinds are "
                           "loaded from the modules named in DCILAB_PLUGINS)", tuple(_KINDS)) from None


def usage() -> str:
    """Every kind's CLI form, for help texts: ``bandwidth-drop SERVICE RATE | ...``."""
    return " | ".join(f"{n} {k.USAGE}".strip() for n, k in _KINDS.items())


def fault_from_args(name: str, args: list[str]) -> Fault:
    """The CLI form: ``NAME ARG ...`` (``dcilab fault plan``)."""
    cls = kind(name)
    try:
        return cls.from_args(list(args))
    except (ValueError, TypeError):
        raise FaultRefused(f"bad arguments for {cls.NAME}: {' '.join(args) or '(none)'} "
                           f"(usage: {cls.NAME} {cls.USAGE})") from None


def capabilities() -> dict[str, Check]:
    """Every capability a registered kind defines, by the name cases use in ``@needs``."""
    return {cap: check for k in _KINDS.values() for cap, check in k.CAPABILITIES.items()}


def trial_factories() -> dict[str, Callable[..., Any]]:
    """What the trial's ``faults`` fixture offers: ``faults.NAME(...)`` by name."""
    return {n: fn for k in _KINDS.values() for n, fn in k.TRIAL.items()}
