"""`dcilab metrics replay|status`: deliver what the metrics writer spooled while the store was down.

The store (url, org, bucket, token reference) comes from the inventory's ``metrics:`` section.
Spool directories, because a lab engineer replays after the fact and may not remember where:

* by default the writer's own default, ``~/.local/state/dcilab/metrics-spool`` (what
  ``MetricsWriter`` and ``TrainingJob`` use when no ``spool_dir`` is given: one spool per user,
  shared by every job);
* ``--spool PATH`` (repeatable) instead: PATH itself when it is a spool directory (it holds
  ``*.lp`` segments, a ``rejected/`` folder or a ``.lock``), otherwise every spool directory found
  below it, so ``--spool reports/`` sweeps the spools that jobs were given under their reports.

Segments name the store they were written for: ``replay`` sends those of the inventory's store and
the segments of older versions (which name none); another store's segments stay for it.
``replay`` exits 0 only when nothing is left to deliver; ``status`` exits 0 only when nothing is
waiting and the store answers.  Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from testbed.inventory import load_inventory
from testbed.inventory.model import Inventory, Metrics
from testbed.redact import redact_url

# Markers of a spool directory (see testbed/metrics/spool.py for the layout).
_SEGMENT_SUFFIX = ".lp"
_MARKERS = ("rejected", ".lock")


class MetricsCliError(Exception):
    """A problem the user can fix; printed as one line, exit code 1."""


@dataclass(frozen=True)
class Store:
    url: str
    org: str
    bucket: str
    token: str | None
    token_error: str | None = None  # the token reference could not be resolved


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``dcilab metrics replay|status`` on the top-level subparsers of ``testbed.cli``."""
    from testbed.paths import DEFAULT_INVENTORY, REPO_ROOT, default_inventory
    from testbed.metrics.writer import DEFAULT_SPOOL_DIR

    inv_help = (f"inventory whose metrics: section names the store (default: $DCILAB_INVENTORY or "
                f"{DEFAULT_INVENTORY.relative_to(REPO_ROOT)})")
    spool_help = (f"a spool directory, or a folder searched for spool directories (e.g. reports/); repeatable "
                  f"(default: the writer's default spool {DEFAULT_SPOOL_DIR}, used by every job not given spool_dir)")
    m = subparsers.add_parser(
        "metrics", help="the metrics store and the spool of points it has not received yet",
        description="Points the metrics writer could not deliver (store down, token refused) wait in spool "
                    "directories; these commands show and deliver them.").add_subparsers(dest="action", required=True)
    rp = m.add_parser("replay", help="deliver spooled points to the inventory's store; exit 0 only when none is left",
                      description="Deliver every spooled segment, oldest first; a segment is deleted only after the "
                                  "store accepted it, so an interrupted replay loses nothing. Exit 0 when nothing is "
                                  "left (also when nothing was spooled: the store is not contacted then), 1 otherwise "
                                  "(store down, token refused, deadline reached, points refused as malformed).")
    rp.add_argument("--inventory", "-i", type=Path, default=default_inventory(), help=inv_help)
    rp.add_argument("--spool", "-s", type=Path, action="append", metavar="DIR", help=spool_help)
    rp.add_argument("--deadline-s", type=float, default=None, metavar="N",
                    help="stop after N seconds (what is not delivered stays in the spool; run again)")
    rp.set_defaults(func=replay_command)
    st = m.add_parser("status", help="points waiting in each spool directory, and whether the store answers",
                      description="Exit 0 when nothing is waiting and the store answers, 1 otherwise.")
    st.add_argument("--inventory", "-i", type=Path, default=default_inventory(), help=inv_help)
    st.add_argument("--spool", "-s", type=Path, action="append", metavar="DIR", help=spool_help)
    st.set_defaults(func=status_command)


# ------------------------------------------------------------------------------------------------ inputs


def store_of(inv: Inventory, *, need_token: bool) -> Store:
    """The inventory's store; the token reference is resolved now (an unresolvable one is an error if needed)."""
    from testbed.connect import SecretUnavailable, resolve_secret

    mc: Metrics | None = inv.metrics
    if mc is None:
        raise MetricsCliError(f"{inv.source or inv.name}: no metrics: section; add metrics: {{url: ..., org: ..., "
                              "bucket: ..., token: {env: VARIABLE}}} (see inventory/README.md)")
    token = error = None
    if mc.token is not None:
        try:
            token = resolve_secret(inv, str(inv.source or inv.name), mc.token, "metrics.token")
        except SecretUnavailable as exc:
            error = str(exc)
            if need_token:
                raise MetricsCliError(error) from None
    return Store(mc.url.rstrip("/"), mc.org, mc.bucket, token, error)


def _is_spool_dir(path: Path) -> bool:
    try:
        names = os.listdir(path)
    except OSError:
        return False
    return any(n.endswith(_SEGMENT_SUFFIX) and not n.startswith(".") for n in names) or any(
        n in _MARKERS for n in names)


def spool_dirs(paths: list[Path] | None) -> list[Path]:
    """The spool directories to look at (see the module docstring); never creates one."""
    from testbed.metrics.writer import DEFAULT_SPOOL_DIR

    if not paths:
        return [DEFAULT_SPOOL_DIR]  # may not exist yet: then nothing was ever spooled
    found: list[Path] = []
    for p in paths:
        if not p.is_dir():
            raise MetricsCliError(f"--spool {p}: no such directory (give a spool directory or a folder holding some)")
        if _is_spool_dir(p):
            found.append(p)
            continue
        below: list[Path] = []
        for d, subdirs, _files in os.walk(p):
            if _is_spool_dir(Path(d)):
                below.append(Path(d))
                subdirs.clear()  # its rejected/ folder is part of it, not another spool
        found.extend(sorted(below) or [p])
    unique: dict[Path, None] = {}
    for d in found:
        unique.setdefault(d.resolve(), None)
    return list(unique)


@contextmanager
def _quiet_library_log() -> Iterator[None]:
    """The writer logs a replay that stops; the command prints its own one-line summary instead."""
    log = logging.getLogger("dcilab.metrics")
    handler = logging.NullHandler()
    log.addHandler(handler)
    saved = log.propagate
    log.propagate = False
    try:
        yield
    finally:
        log.propagate = saved
        log.removeHandler(handler)


def _waiting(d: Path) -> tuple[int, int, int, int]:
    """(points, segments, rejected points, unfinished temp files) of a spool directory; zeros if absent."""
    from testbed.metrics.spool import Spool

    if not d.is_dir():
        return 0, 0, 0, 0
    c = Spool(d).count()
    return c.points, c.segments, c.rejected_points, c.stray_tmp


# ------------------------------------------------------------------------------------------------ commands


def replay_command(args: argparse.Namespace) -> int:
    """Deliver every spool directory's segments; exit 0 only when nothing is left to deliver."""
    return _one_line_errors("dcilab metrics replay", _replay, args)


def status_command(args: argparse.Namespace) -> int:
    """Per spool directory what waits, then whether the store answers; exit 0 only if all is delivered and up."""
    return _one_line_errors("dcilab metrics status", _status, args)


def _one_line_errors(name: str, run: Callable[[argparse.Namespace, str], int], args: argparse.Namespace) -> int:
    try:
        return run(args, name)
    except MetricsCliError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a spool directory that cannot be read or written
        print(f"{name}: {exc.filename or ''}: {exc.strerror or exc} (check the spool directory's permissions)",
              file=sys.stderr)
        return 1


def _replay(args: argparse.Namespace, name: str) -> int:
    from testbed.metrics.writer import health, replay

    if args.deadline_s is not None and args.deadline_s < 0:
        raise MetricsCliError(f"--deadline-s {args.deadline_s:g}: give a number of seconds >= 0")
    store = store_of(load_inventory(args.inventory), need_token=True)
    dirs = spool_dirs(args.spool)
    waiting = {d: _waiting(d) for d in dirs}
    total = sum(w[0] for w in waiting.values())
    if total == 0:
        print(f"nothing to replay: no spooled points in {', '.join(map(str, dirs))}")
        return 0
    ok, why = health(store.url, store.token)
    if not ok:
        segs = sum(w[1] for w in waiting.values())
        print(f"{name}: store {redact_url(store.url)} does not answer ({why}); {total} points ({segs} segments) left in "
              f"{', '.join(str(d) for d, w in waiting.items() if w[0])}, nothing sent", file=sys.stderr)
        return 1
    deadline = None if args.deadline_s is None else time.monotonic() + args.deadline_s
    delivered = left = 0
    problems: list[str] = []
    queue = [d for d, w in waiting.items() if w[0]]
    with _quiet_library_log():
        while queue:
            d = queue.pop(0)
            remaining_s = None if deadline is None else max(0.0, deadline - time.monotonic())
            res = replay(d, store.url, store.org, store.bucket, store.token, deadline_s=remaining_s,
                         check_health=False)
            delivered += res.delivered_points
            left += res.remaining_points
            line = (f"{d}: delivered {res.delivered_points} points ({res.delivered_segments} segments), "
                    f"{res.remaining_points} left")
            if res.rejected_points:
                line += f", {res.rejected_points} refused by the store as malformed (kept in {d / 'rejected'})"
                problems.append(f"{res.rejected_points} points refused as malformed, kept in {d / 'rejected'}")
            print(line)
            if res.error is not None:
                hint = " (check metrics.token in the inventory)" if res.error_kind == "refused" else ""
                problems.append(res.error + hint)
                if res.error_kind in ("down", "refused"):  # the other directories would fail the same way
                    left += sum(waiting[q][0] for q in queue)
                    break
    if left and not problems and deadline is not None and time.monotonic() >= deadline:
        problems.append(f"deadline of {args.deadline_s:g} s reached")
    print(f"{delivered} points delivered to {redact_url(store.url)}, {left} left")
    if left or problems:
        why = "; ".join(problems) or "points are left"
        again = f"; {left} points left in the spool (run it again)" if left else ""
        print(f"{name}: {why}{again}", file=sys.stderr)
        return 1
    return 0


def _status(args: argparse.Namespace, name: str) -> int:
    from testbed.metrics.writer import health

    store = store_of(load_inventory(args.inventory), need_token=False)
    total = 0
    for d in spool_dirs(args.spool):
        points, segs, rejected, tmp = _waiting(d)
        total += points
        line = f"{d}: {points} points in {segs} segments waiting"
        if rejected:
            line += f", {rejected} refused as malformed (in {d / 'rejected'}, never replayed)"
        if tmp:
            line += f", {tmp} unfinished .tmp- files (left by a crash; not replayed)"
        if not d.is_dir():
            line += " (directory absent: nothing was ever spooled there)"
        print(line)
    ok, why = health(store.url, store.token)
    print(f"store {redact_url(store.url)}: {'answers' if ok else f'does not answer ({why})'}")
    if store.token_error:
        print(f"{name}: {store.token_error}", file=sys.stderr)
    return 0 if ok and total == 0 and not store.token_error else 1
