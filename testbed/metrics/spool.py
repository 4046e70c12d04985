"""The on-disk spool of line protocol that could not be delivered to the metrics store.

Layout of a spool directory::

    <spool_dir>/<time_ns>-<pid>-<seq>.<store>.lp
                                           a segment: line protocol (ns precision), one point a line,
                                           for the store whose store_id() is <store>; a writer replays
                                           only its own store's (segments of older versions have no
                                           <store>: only `dcilab metrics replay` sends them, to the
                                           store the engineer names)
    <spool_dir>/.tmp-<name>                a segment being written (never read; left only by a crash)
    <spool_dir>/rejected/<name>            segments the store refused as malformed (HTTP 400/413/422);
                                           kept for a person to look at, never replayed
    <spool_dir>/.lock                      flock'd by whoever is replaying

A segment is written to ``.tmp-<name>``, fsync'd, renamed into place and the directory fsync'd, so
after a crash a segment is either complete or absent.  Segments are immutable: a replayer deletes
a segment only after the store accepted all of it (one request per segment).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

SUFFIX = ".lp"
TMP_PREFIX = ".tmp-"
REJECTED = "rejected"
#: Lines per segment at most (one replay request per segment; ~1.5 MB at ~300 bytes a line).
MAX_SEGMENT_LINES = 5000


@dataclass(frozen=True)
class SpoolCount:
    points: int
    segments: int
    rejected_points: int = 0
    stray_tmp: int = 0


def store_id(url: str, org: str, bucket: str) -> str:
    """The destination a segment is for, as 12 hex digits of a hash (no credentials in file names)."""
    return hashlib.sha256(f"{url.rstrip('/')}\n{org}\n{bucket}".encode()).hexdigest()[:12]


def _store_of(name: str) -> str | None:
    parts = name[: -len(SUFFIX)].split(".")
    return parts[1] if len(parts) == 2 else None


class Spool:
    """A directory of line-protocol segments; safe to use from several threads of one process.

    ``store`` (a :func:`store_id`): write segments for that store and read only those (plus the
    segments of no store when ``legacy``); None reads every segment (status, counting)."""

    def __init__(self, directory: str | os.PathLike[str], store: str | None = None, legacy: bool = False):
        self.dir = Path(directory)
        self.store, self.legacy = store, legacy
        self.dir.mkdir(parents=True, exist_ok=True)
        self._seq = itertools.count()
        self._lines: dict[str, int] = {}  # segment name -> line count (segments are immutable)
        self._lock = threading.Lock()

    # -------------------------------------------------------------------------------- writing

    def write(self, lines: Iterable[bytes]) -> int:
        """Append points as new segment(s); returns how many lines were written (fsync'd and renamed)."""
        batch: list[bytes] = []
        written = 0
        for line in lines:
            line = line.strip()
            if line:
                batch.append(line)
            if len(batch) >= MAX_SEGMENT_LINES:
                written += self._write_segment(batch)
                batch = []
        if batch:
            written += self._write_segment(batch)
        return written

    def write_payload(self, data: bytes | str) -> int:
        """Append a line-protocol payload (what influxdb-client's error_callback gets)."""
        if isinstance(data, str):
            data = data.encode()
        return self.write(data.split(b"\n"))

    def _write_segment(self, lines: list[bytes]) -> int:
        store = f".{self.store}" if self.store else ""
        name = f"{time.time_ns():020d}-{os.getpid()}-{next(self._seq):06d}{store}{SUFFIX}"
        tmp = self.dir / (TMP_PREFIX + name)
        try:
            with open(tmp, "wb") as f:
                f.write(b"\n".join(lines) + b"\n")
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, self.dir / name)
        except BaseException:  # a full disk: no partial segment left behind per retry
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        self._fsync_dir()
        with self._lock:
            self._lines[name] = len(lines)
        return len(lines)

    def _fsync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -------------------------------------------------------------------------------- reading

    def segments(self) -> list[Path]:
        """Complete segments, oldest first."""
        try:
            names = sorted(n for n in os.listdir(self.dir) if n.endswith(SUFFIX) and not n.startswith("."))
        except FileNotFoundError:
            return []
        if self.store is not None:
            names = [n for n in names if _store_of(n) == self.store or (self.legacy and _store_of(n) is None)]
        return [self.dir / n for n in names]

    def read(self, segment: Path) -> bytes:
        return segment.read_bytes()

    def lines_in(self, segment: Path) -> int:
        with self._lock:
            n = self._lines.get(segment.name)
        if n is None:
            try:
                n = sum(1 for line in segment.read_bytes().split(b"\n") if line.strip())
            except FileNotFoundError:
                return 0
            with self._lock:
                self._lines[segment.name] = n
        return n

    def count(self) -> SpoolCount:
        segs = self.segments()
        points = sum(self.lines_in(s) for s in segs)
        rej_dir = self.dir / REJECTED
        rejected = 0
        if rej_dir.is_dir():
            rejected = sum(sum(1 for ln in p.read_bytes().split(b"\n") if ln.strip()) for p in rej_dir.glob("*" + SUFFIX))
        stray = sum(1 for n in os.listdir(self.dir) if n.startswith(TMP_PREFIX)) if self.dir.is_dir() else 0
        return SpoolCount(points=points, segments=len(segs), rejected_points=rejected, stray_tmp=stray)

    # -------------------------------------------------------------------------------- removing

    def delete(self, segment: Path) -> None:
        """Forget a segment the store has accepted."""
        with contextlib.suppress(FileNotFoundError):
            segment.unlink()
        self._fsync_dir()
        with self._lock:
            self._lines.pop(segment.name, None)

    def reject(self, segment: Path) -> Path:
        """Move a segment the store refused as malformed out of the replay queue."""
        rej = self.dir / REJECTED
        rej.mkdir(exist_ok=True)
        dest = rej / segment.name
        os.rename(segment, dest)
        self._fsync_dir()
        with self._lock:
            self._lines.pop(segment.name, None)
        return dest

    @contextlib.contextmanager
    def replay_lock(self) -> Iterator[bool]:
        """Non-blocking exclusive lock for a replay round; yields False if another replayer holds it."""
        fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
