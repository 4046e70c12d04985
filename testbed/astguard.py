"""One ``ast.parse`` at a time, on the Pythons whose AST constructor is not thread-safe.

CPython 3.11.0-3.11.7 and 3.12.0-3.12.1 keep the AST constructor's recursion depth in
interpreter-wide state; a garbage collection inside one thread's ``ast.parse`` can hand the GIL
to another thread that parses too, and one of them fails with ``SystemError: AST constructor
recursion depth mismatch`` (python/cpython#106905, fixed in 3.11.8 and 3.12.2).  Debian 12 ships
3.11.2.

A dcilab run parses in several threads at once without asking for it: pytest's assertion
rewriting parses every dcilab module on its first import (all of them, since they come with the
``pytest11`` plugin's distribution, and again in every process when bytecode is not written), and
Python 3.11's traceback module parses source lines to place its ``^^^`` markers, and paramiko's
transport thread formats a traceback when an SSH session to a hung device gives up.  A CI run lost
a case to the SystemError while pytest rewrote ``workload.train`` on its first import, with the
frozen gateway's SSH sessions failing in the background (the likely other parser).

:func:`install` wraps ``ast.parse`` in a lock (callers look it up at call time, pytest and the
traceback module included).  It does nothing on a Python that has the fix.
"""

from __future__ import annotations

import ast
import functools
import sys
import threading
from typing import Any

_lock = threading.RLock()   # re-entrant: a collection inside a parse may run code that parses


def affected(version: tuple[int, ...] = tuple(sys.version_info[:3])) -> bool:
    """Whether this Python's AST constructor has the cross-thread recursion-depth race."""
    return (3, 11, 0) <= version < (3, 11, 8) or (3, 12, 0) <= version < (3, 12, 2)


def installed() -> bool:
    return getattr(ast.parse, "__dcilab_guarded__", False)


def install(force: bool = False) -> bool:
    """Serialise ``ast.parse`` across threads if this Python needs it (``force``: regardless).
    Idempotent; returns whether the guard is in place."""
    if installed():
        return True
    if not (force or affected()):
        return False
    parse = ast.parse

    @functools.wraps(parse)
    def guarded_parse(*args: Any, **kwargs: Any) -> Any:
        with _lock:
            return parse(*args, **kwargs)

    guarded_parse.__dcilab_guarded__ = True  # type: ignore[attr-defined]
    ast.parse = guarded_parse
    return True
