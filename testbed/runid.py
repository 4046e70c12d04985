"""A run id names folders: reports/<run-id>/ on the controller, the jobs' folders and spools on
the nodes.  Anything but a plain name could point a run's files elsewhere (``../../x``) or split a
line of a log or a command (``x\\n``), so it is checked where it is given, before anything runs."""

from __future__ import annotations

import re

RUN_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")  # always fullmatch: `$` matches before a "\n"
RULE = "1-100 letters, digits, '_' and '-', starting with a letter or digit (no '/', '.' or spaces)"


class RunIdError(ValueError):
    """A run id that is not a plain name."""


def check_run_id(run_id: str, given_as: str = "--run-id") -> str:
    """``run_id`` itself when it is a plain name; RunIdError naming the rule otherwise."""
    if not isinstance(run_id, str) or RUN_ID_RE.fullmatch(run_id) is None:
        raise RunIdError(f"{given_as} {run_id!r} is not a run id (it names the run's folders)\n"
                         f"    fix: use {RULE}, or leave it out for a UTC time and a random suffix")
    return run_id
