"""Write dcilab's metrics to an InfluxDB-compatible store without ever slowing or stopping training.

``MetricsWriter.write()`` validates a record, turns it into line protocol (~20 µs) and appends it to
a queue; a pump thread hands the lines to influxdb-client's batching ``WriteApi`` (its Rx pipeline
costs 50-250 µs a point, kept off the caller's thread), which batches by ``batch_size`` or
``flush_interval`` and retries a few times, giving up within seconds.  ``write()`` never blocks on
the network and never raises (unless ``strict=True`` and the record is invalid).

No point is lost when the store is down, slow or refuses the token:

* a batch the client gives up on reaches ``error_callback`` with its line protocol, which goes to
  the on-disk spool (:mod:`testbed.metrics.spool`: fsync'd segments, renamed into place);
* from the first retry or error on, new points skip the client and go straight to the spool
  (so no backlog of doomed batches builds up in the client's memory while the store is down);
* a background thread checks the store's ``/health`` (VictoriaMetrics, InfluxDB 2/3) or ``/ping``
  (InfluxDB 1.8/3) and, when it answers, replays the spool segment by segment with synchronous
  writes, deleting a segment only after the store accepted it;
* every line handed to the client is remembered until the client reports it delivered or failed;
  whatever the client still holds when ``close()`` gives up waiting (``max_close_wait``), or at
  interpreter exit without ``close()``, is spooled too;
* HTTP 401/403 (and 404: no such bucket/org) is not retried: the batch is spooled, the error is
  logged once, new points are spooled, and the store is tried again only every ``auth_recheck_s``;
* HTTP 400/413/422 (malformed data) would fail forever: such batches go to ``<spool>/rejected/``.

A store that received a batch but whose answer was lost may receive it again from the spool.
InfluxDB overwrites an identical point (same series and timestamp), so a replay is idempotent
there; VictoriaMetrics keeps both samples unless it runs with ``-dedup.minScrapeInterval=1ms``.
"""

from __future__ import annotations

import atexit
import collections
import logging
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from influxdb_client import InfluxDBClient, WriteOptions, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from reactivex.scheduler import ThreadPoolScheduler

from testbed.metrics.schema import Record, check_default_tags, to_line
from testbed.metrics.spool import Spool, store_id
from testbed.redact import redact_url

logger = logging.getLogger("dcilab.metrics")

DEFAULT_SPOOL_DIR = Path.home() / ".local" / "state" / "dcilab" / "metrics-spool"
#: Points kept in memory while the spool cannot be written (disk full); beyond this they are dropped.
MAX_BUFFERED = 1_000_000

# kinds of failure
DOWN = "down"          # connection refused/reset/timeout, 429, 5xx: retry later
REFUSED = "refused"    # 401/403/404: credentials or bucket wrong; retrying will not help soon
REJECTED = "rejected"  # 400/413/422: the data itself was refused; never retried


def classify(exc: BaseException) -> tuple[str, int | None, str]:
    """(kind, HTTP status or None, one-line message) for an exception from a write."""
    status = getattr(exc, "status", None)
    if isinstance(status, int) and status > 0:
        reason = getattr(exc, "reason", "") or ""
        detail = getattr(exc, "message", None)
        if isinstance(detail, bytes):
            detail = detail.decode(errors="replace")
        text = f"HTTP {status} {reason}".strip() + (f": {str(detail).strip()[:200]}" if detail else "")
        if status in (401, 403):
            return REFUSED, status, f"{text} (token missing, invalid or without write access to the bucket)"
        if status == 404:
            return REFUSED, status, f"{text} (no such bucket/org, or the URL is not an InfluxDB v2 write API)"
        if status in (400, 413, 422):
            return REJECTED, status, f"{text} (the store refused the data itself)"
        return DOWN, status, text
    return DOWN, None, f"{type(exc).__name__}: {exc}"[:300]


def health(url: str, token: str | None = None, timeout: float = 2.0) -> tuple[bool, str]:
    """Whether the store answers: ``/health`` (VictoriaMetrics, InfluxDB 2/3), then ``/ping`` (InfluxDB 1.8/3).

    401/403 counts as answering (InfluxDB 3 protects both endpoints; the write will tell).
    """
    why = ""
    for path in ("/health", "/ping"):
        req = urllib.request.Request(url.rstrip("/") + path, method="GET")
        if token:
            req.add_header("Authorization", f"Token {token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                if 200 <= resp.status < 300:
                    return True, ""
                why = f"{path}: HTTP {resp.status}"
        except urllib.error.HTTPError as e:
            if e.code in (401, 403):
                return True, ""
            why = f"{path}: HTTP {e.code}"
        except (OSError, ValueError) as e:
            why = f"{path}: {getattr(e, 'reason', e)}"
            break  # not reachable at all: the other path will not be either
    return False, why


@dataclass(frozen=True)
class ReplayResult:
    delivered_points: int
    delivered_segments: int
    remaining_points: int
    remaining_segments: int
    rejected_points: int = 0
    error: str | None = None
    error_kind: str | None = None  # DOWN, REFUSED, "busy" (another replayer holds the lock)

    @property
    def ok(self) -> bool:
        return self.error is None and self.remaining_points == 0


def _replay_round(spool: Spool, send: Callable[[bytes], Any], deadline: float | None = None,
                  should_stop: Callable[[], bool] | None = None) -> ReplayResult:
    delivered = segs = rejected = 0
    error = kind = None
    with spool.replay_lock() as got:
        if not got:
            error, kind = f"another process is replaying {spool.dir}", "busy"
        else:
            for seg in spool.segments():
                if (should_stop and should_stop()) or (deadline is not None and time.monotonic() > deadline):
                    break
                n = spool.lines_in(seg)
                try:
                    data = spool.read(seg)
                except FileNotFoundError:
                    continue
                try:
                    send(data)
                except Exception as e:  # noqa: BLE001 (any failure keeps the segment)
                    kind, _, error = classify(e)
                    if kind == REJECTED:
                        dest = spool.reject(seg)
                        rejected += n
                        logger.error("metrics: the store refused %d spooled points (%s); moved to %s, not retried",
                                     n, error, dest)
                        error = kind = None
                        continue
                    break
                spool.delete(seg)
                delivered += n
                segs += 1
    left = spool.count()
    return ReplayResult(delivered, segs, left.points, left.segments, rejected, error, kind)


def replay(spool_dir: str | Path, url: str, org: str = "dcilab", bucket: str = "dcilab", token: str | None = None,
           *, timeout_s: float = 10.0, deadline_s: float | None = None, check_health: bool = True) -> ReplayResult:
    """Deliver a spool directory's segments to the store (for ``dcilab metrics replay``).

    Synchronous, one request per segment, oldest first; a segment is deleted only after the store
    accepted it.  Stops at the first failure that is not the data's fault (store down, 401/403),
    or after ``deadline_s``; what is left stays in the spool.
    """
    spool = Spool(spool_dir, store=store_id(url, org, bucket), legacy=True)
    if check_health:
        ok, why = health(url, token, timeout=min(timeout_s, 5.0))
        if not ok:
            left = spool.count()
            return ReplayResult(0, 0, left.points, left.segments, 0, f"store {redact_url(url)} does not answer ({why})",
                                DOWN)
    deadline = None if deadline_s is None else time.monotonic() + deadline_s
    with InfluxDBClient(url=url, token=token, org=org, timeout=int(timeout_s * 1000)) as client:
        api = client.write_api(write_options=SYNCHRONOUS)
        result = _replay_round(spool, lambda data: api.write(bucket, org, data, WritePrecision.NS), deadline)
    if result.error:
        logger.error("metrics replay to %s stopped: %s; %d points left in %s", redact_url(url), result.error,
                     result.remaining_points, spool.dir)
    return result


@dataclass(frozen=True)
class Pending:
    queued: int      # written by the caller, not yet handed to influxdb-client (for < pump_interval)
    in_flight: int   # handed to influxdb-client, not acknowledged yet
    buffered: int    # diverted while the store is down, about to be spooled (in memory for < spool_flush_interval)
    spooled: int     # points in spool segments on disk, waiting for replay
    segments: int    # spool segment files

    @property
    def total(self) -> int:
        return self.queued + self.in_flight + self.buffered + self.spooled


class MetricsWriter:
    """Batched, asynchronous writer of dcilab records with a disk spool; see the module docstring.

    ``token`` None suits VictoriaMetrics (which also ignores org and bucket); InfluxDB 1.8 takes
    ``"user:password"`` with ``bucket="db/rp"``.  Use as a context manager, or call ``close()``.
    """

    def __init__(self, url: str, org: str = "dcilab", bucket: str = "dcilab", token: str | None = None,
                 spool_dir: str | Path | None = None, default_tags: dict[str, str] | None = None, *,
                 batch_size: int = 1000, flush_interval_ms: int = 1000,
                 retry_interval_ms: int = 250, max_retries: int = 3, max_retry_delay_ms: int = 1000,
                 max_retry_time_ms: int = 3000, timeout_ms: int = 5000, max_close_wait_ms: int = 15000,
                 replay_interval_s: float = 2.0, spool_flush_interval_s: float = 0.5, final_replay_s: float = 10.0,
                 auth_recheck_s: float = 60.0, health_timeout_s: float = 2.0, max_in_flight: int = 100_000,
                 pump_interval_s: float = 0.05, strict: bool = False):
        self.url = url.rstrip("/")
        self.shown_url = redact_url(self.url)  # for logs: never a user:password@
        self.org = org
        self.bucket = bucket
        self._token = token
        self._default_tags = check_default_tags(default_tags)
        self._strict = strict
        # segments carry their store: a writer replays only its own store's points (an emulated
        # run's must never reach the production InfluxDB through a shared spool)
        self.spool = Spool(spool_dir or DEFAULT_SPOOL_DIR, store=store_id(self.url, org, bucket))
        self._replay_interval = replay_interval_s
        self._flush_interval = spool_flush_interval_s
        self._final_replay_s = final_replay_s
        self._auth_recheck_s = auth_recheck_s
        self._health_timeout = health_timeout_s
        self._max_in_flight = max_in_flight

        self._lock = threading.RLock()  # re-entrant: close() from a signal handler must not deadlock
        self._inflight: collections.Counter[bytes] = collections.Counter()
        self._in_flight_n = 0
        self._buffer: list[bytes] = []
        self._closing = False
        self._closed = False
        self._finalized = False
        self._down: str | None = None      # why the store is considered down (None: up)
        self._refused: str | None = None   # 401/403/404 message while refused
        self._refused_retry_at = 0.0
        self._reported: set[str] = set()
        self.last_error: str | None = None
        self.counters: collections.Counter[str] = collections.Counter()  # delivered replayed spooled rejected invalid
        self._counters_lock = threading.Lock()

        # Own scheduler: WriteOptions' default write_scheduler is ONE ThreadPoolScheduler created at
        # import time and shared by every WriteApi of the process (a default argument), never shut down.
        self._scheduler = ThreadPoolScheduler(max_workers=1)
        self.write_options = WriteOptions(
            batch_size=batch_size, flush_interval=flush_interval_ms, jitter_interval=0,
            retry_interval=retry_interval_ms, max_retries=max_retries, max_retry_delay=max_retry_delay_ms,
            max_retry_time=max_retry_time_ms, exponential_base=2, max_close_wait=max_close_wait_ms,
            write_scheduler=self._scheduler)
        self._client = InfluxDBClient(url=self.url, token=token, org=org, timeout=timeout_ms)
        self._write_api = self._client.write_api(
            write_options=self.write_options, success_callback=self._on_success,
            error_callback=self._on_error, retry_callback=self._on_retry)
        self._sync_api = self._client.write_api(write_options=SYNCHRONOUS)

        self._queue: collections.deque[bytes] = collections.deque()
        self._pump_interval = pump_interval_s
        self._pump_stop = threading.Event()
        self._pump = threading.Thread(target=self._run_pump, name="dcilab-metrics-pump", daemon=True)
        self._pump.start()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dcilab-metrics-spool", daemon=True)
        self._thread.start()
        # At exit without close(): flush like close() (no replay).  Registered with threading's own
        # exit hooks so that it runs before concurrent.futures stops accepting work (influxdb-client
        # issue #644: an atexit handler is too late, "cannot schedule new futures after interpreter shutdown").
        self._exit_hook = _make_exit_hook(weakref.ref(self))
        try:
            threading._register_atexit(self._exit_hook)  # type: ignore[attr-defined]
        except (AttributeError, RuntimeError):
            atexit.register(self._exit_hook)

    # ------------------------------------------------------------------------------ caller's side

    def write(self, record: Record) -> bool:
        """Validate one record and queue it; never blocks on the store, never raises (unless ``strict``).

        Returns False if the record was invalid (logged once per field, counted in ``counters["invalid"]``).
        The caller's thread only builds the line (~20 µs) and appends it to a queue; a pump thread hands
        it to influxdb-client (whose batching pipeline costs another 50-250 µs per point).
        """
        try:
            line = to_line(record, self._default_tags)
        except Exception as e:  # training must not die of a metrics bug
            if self._strict:
                raise
            self._count("invalid", 1)
            self._log_once("invalid:" + str(e).split(":", 1)[0], logging.ERROR,
                           "metrics: dropped an invalid point: %s", e)
            return False
        return self._enqueue(line.encode())

    def write_line(self, line: str | bytes) -> bool:
        """Queue one raw line of line protocol (ns precision), e.g. from an adapter; minimal checks only."""
        data = line.encode() if isinstance(line, str) else bytes(line)
        data = data.strip()
        if not data or b"\n" in data:
            if self._strict:
                raise ValueError("write_line: need exactly one non-empty line of line protocol")
            self._count("invalid", 1)
            return False
        return self._enqueue(data)

    def _enqueue(self, line: bytes) -> bool:
        with self._lock:
            if not self._closed:
                self._queue.append(line)
                return True
        return self._submit(line)  # after close(): straight to the spool

    def _run_pump(self) -> None:
        while True:
            stopping = self._pump_stop.wait(self._pump_interval)
            self._drain_queue()
            if stopping:
                return

    def _drain_queue(self) -> None:
        q = self._queue
        while q:
            try:
                line = q.popleft()
            except IndexError:
                return
            self._submit(line)

    def _submit(self, line: bytes) -> bool:
        try:
            with self._lock:
                if self._closed:
                    closed = True
                else:
                    closed = False
                    if self._down or self._refused or self._in_flight_n >= self._max_in_flight:
                        if len(self._buffer) < MAX_BUFFERED:
                            self._buffer.append(line)
                        else:
                            self._count("dropped", 1)
                        return True
                    self._inflight[line] += 1
                    self._in_flight_n += 1
            if closed:
                self.spool.write([line])
                self._count("spooled", 1)
                return True
            self._write_api.write(self.bucket, self.org, line, WritePrecision.NS)
            return True
        except Exception as e:  # noqa: BLE001
            self._log_once("submit", logging.ERROR, "metrics: could not queue a point (%s); buffering for the spool", e)
            with self._lock:
                if self._inflight.get(line):
                    self._settle([line])
                if len(self._buffer) < MAX_BUFFERED:
                    self._buffer.append(line)
                else:
                    self._count("dropped", 1)
            return True

    # ------------------------------------------------------------------------------ client callbacks

    def _settle(self, lines: list[bytes]) -> None:
        # under self._lock
        inflight = self._inflight
        for line in lines:
            c = inflight.get(line)
            if c:
                if c == 1:
                    del inflight[line]
                else:
                    inflight[line] = c - 1
                self._in_flight_n -= 1

    def _on_success(self, conf: tuple, data: bytes | str) -> None:
        lines = _split(data)
        with self._lock:
            self._settle(lines)
            self._count("delivered", len(lines))

    def _on_retry(self, conf: tuple, data: bytes | str, exc: BaseException) -> None:
        kind, _, msg = classify(exc)
        if kind == DOWN:
            self._mark_down(msg)

    def _on_error(self, conf: tuple, data: bytes | str, exc: BaseException) -> None:
        lines = _split(data)
        kind, status, msg = classify(exc)
        with self._lock:
            if self._finalized:  # close() already spooled everything unacknowledged
                return
            self._settle(lines)
        self.last_error = msg
        if kind == REJECTED:
            dest = self._spool_lines(lines, rejected=True)
            self._log_once(f"rejected:{status}", logging.ERROR,
                           "metrics: %s refused %d points: %s; kept in %s, not retried", self.shown_url, len(lines), msg, dest)
            return
        self._spool_lines(lines)
        if kind == REFUSED:
            self._mark_refused(msg)
        else:
            self._mark_down(msg)

    # ------------------------------------------------------------------------------ state

    def _mark_down(self, why: str) -> None:
        with self._lock:
            was = self._down
            self._down = why
        if was is None:
            self._log_once(f"down:{why}", logging.WARNING,
                           "metrics: store %s not answering (%s); points go to the spool %s until it is back",
                           self.shown_url, why, self.spool.dir)

    def _mark_refused(self, why: str) -> None:
        with self._lock:
            self._refused = why
            self._refused_retry_at = time.monotonic() + self._auth_recheck_s
        self._log_once(f"refused:{why}", logging.ERROR,
                       "metrics: store %s refused the write for org=%r bucket=%r: %s. Points are kept in the spool "
                       "%s and not retried before %.0f s; fix the credentials, then run `dcilab metrics replay`",
                       self.shown_url, self.org, self.bucket, why, self.spool.dir, self._auth_recheck_s)

    def _count(self, key: str, n: int) -> None:
        with self._counters_lock:
            self.counters[key] += n

    def _log_once(self, key: str, level: int, msg: str, *args: Any) -> None:
        with self._lock:
            first = key not in self._reported
            self._reported.add(key)
        logger.log(level if first else logging.DEBUG, msg, *args)

    def _spool_lines(self, lines: list[bytes], rejected: bool = False) -> Path | None:
        try:
            if rejected:
                dest = Spool(self.spool.dir / "rejected")
                dest.write(lines)
                self._count("rejected", len(lines))
                return dest.dir
            self.spool.write(lines)
            self._count("spooled", len(lines))
            return self.spool.dir
        except OSError as e:
            self._log_once("spool-io", logging.ERROR, "metrics: cannot write the spool %s (%s); keeping points in "
                           "memory", self.spool.dir, e)
            with self._lock:
                room = max(0, MAX_BUFFERED - len(self._buffer))
                self._buffer.extend(lines[:room])
                if len(lines) > room:
                    self._count("dropped", len(lines) - room)
            return None

    def _flush_buffer(self) -> None:
        with self._lock:
            lines, self._buffer = self._buffer, []
        if lines:
            self._spool_lines(lines)

    # ------------------------------------------------------------------------------ background replay

    def _run(self) -> None:
        next_check = 0.0  # check the store at once: unreachable from the start -> spool from the start
        first = True
        while True:
            stopping = self._stop.wait(self._flush_interval)
            try:
                self._flush_buffer()
                if stopping:
                    return
                now = time.monotonic()
                if now >= next_check:
                    next_check = now + self._replay_interval
                    self._replay_if_possible(deadline=None, initial=first)
                    first = False
            except Exception:
                logger.exception("metrics: spool thread error (continuing)")

    def _replay_if_possible(self, deadline: float | None, initial: bool = False) -> ReplayResult | None:
        with self._lock:
            down, refused, retry_at = self._down, self._refused, self._refused_retry_at
        if refused and time.monotonic() < retry_at:
            return None
        has_segments = bool(self.spool.segments())
        if not (down or refused or has_segments):
            # Looks up: confirm once at start so an unreachable store is known before the first batch fails.
            if initial:
                ok, why = health(self.url, self._token, self._health_timeout)
                if not ok:
                    self._mark_down(why)
            return None
        ok, why = health(self.url, self._token, self._health_timeout)
        if not ok:
            if not down:
                self._mark_down(why)
            return None
        if not has_segments:
            self._set_up()
            return None
        result = _replay_round(self.spool, self._send_sync, deadline=deadline,
                               should_stop=lambda: self._stop.is_set() and deadline is None)
        if result.error is None:
            # Up again: new points go to the client from now on; spool what was diverted meanwhile and send it too.
            self._set_up()
            self._flush_buffer()
            more = _replay_round(self.spool, self._send_sync, deadline=deadline,
                                 should_stop=lambda: self._stop.is_set() and deadline is None)
            result = ReplayResult(result.delivered_points + more.delivered_points,
                                  result.delivered_segments + more.delivered_segments, more.remaining_points,
                                  more.remaining_segments, result.rejected_points + more.rejected_points,
                                  more.error, more.error_kind)
        self._count("replayed", result.delivered_points)
        self._count("rejected", result.rejected_points)
        if result.delivered_points:
            logger.info("metrics: replayed %d spooled points to %s (%d left)", result.delivered_points, self.shown_url,
                        result.remaining_points)
        if result.error_kind == REFUSED:
            self.last_error = result.error
            self._mark_refused(result.error or "refused")
        elif result.error_kind == DOWN:
            self.last_error = result.error
            self._mark_down(result.error or "down")
        elif result.error is None:
            self._set_up()
        return result

    def _set_up(self) -> None:
        with self._lock:
            was_down, was_refused = self._down, self._refused
            self._down = self._refused = None
        if was_down or was_refused:
            self._reported = {k for k in self._reported if not k.startswith(("down:", "refused:"))}
            logger.info("metrics: store %s answers again; writing directly", self.shown_url)

    def _send_sync(self, data: bytes) -> None:
        self._sync_api.write(self.bucket, self.org, data, WritePrecision.NS)

    # ------------------------------------------------------------------------------ status and close

    def pending(self) -> Pending:
        with self._lock:
            queued, in_flight, buffered = len(self._queue), self._in_flight_n, len(self._buffer)
        c = self.spool.count()
        return Pending(queued=queued, in_flight=in_flight, buffered=buffered, spooled=c.points, segments=c.segments)

    @property
    def store_down(self) -> str | None:
        return self._down

    @property
    def refused(self) -> str | None:
        """The 401/403/404 message while the store refuses our writes, else None."""
        return self._refused

    def close(self) -> Pending:
        """Flush the client's batches (waits up to ``max_close_wait``), spool what it did not deliver,
        try a last replay (up to ``final_replay_s``), and log what is left in the spool."""
        return self._close(final_replay=True)

    def _close(self, final_replay: bool) -> Pending:
        with self._lock:
            if self._closed or self._closing:
                return self.pending()
            self._closing = True
        t0 = time.monotonic()
        self._pump_stop.set()
        self._pump.join(timeout=30)
        self._drain_queue()  # in case the pump thread is stuck
        with self._lock:
            self._closed = True  # from now on write() goes straight to the spool
        self._drain_queue()
        try:
            self._write_api.close()  # flush() is a no-op in influxdb-client; close() flushes
        except Exception as e:  # noqa: BLE001
            logger.error("metrics: closing the batching writer failed: %s", e)
        with self._lock:
            self._finalized = True
            leftover = list(self._inflight.elements())
            self._inflight.clear()
            self._in_flight_n = 0
        if leftover:
            logger.warning("metrics: %d points not acknowledged by influxdb-client within max_close_wait (%.0f s); "
                           "spooling them", len(leftover), self.write_options.max_close_wait / 1000)
            self._spool_lines(leftover)
        self._stop.set()
        self._thread.join(timeout=30)
        self._flush_buffer()
        if final_replay and self.spool.segments() and not self._refused and self._final_replay_s > 0:
            ok, _why = health(self.url, self._token, self._health_timeout)
            if ok:
                self._replay_if_possible(deadline=time.monotonic() + self._final_replay_s)
        self._scheduler.executor.shutdown(wait=False)
        try:
            self._client.close()
        except Exception as e:  # noqa: BLE001
            logger.debug("metrics: closing the client: %s", e)
        left = self.pending()
        if left.spooled:
            logger.warning("metrics: %d points (%d segments) left undelivered in %s (store %s: %s); deliver them "
                           "later with `dcilab metrics replay`", left.spooled, left.segments, self.spool.dir, self.shown_url,
                           self._refused or self._down or self.last_error or "not answering")
        logger.debug("metrics: writer closed in %.2f s", time.monotonic() - t0)
        return left

    def _at_exit(self) -> None:
        """The interpreter is exiting and close() was not called: flush, spool the rest, no replay."""
        with self._lock:
            if self._closed or self._closing:
                return
        logger.warning("metrics: MetricsWriter not closed before exit; flushing and spooling what is undelivered")
        try:
            self._close(final_replay=False)
        except Exception as e:  # noqa: BLE001
            with self._lock:
                lines = list(self._inflight.elements()) + self._buffer + list(self._queue)
                self._inflight.clear()
                self._buffer = []
                self._queue.clear()
            try:
                self.spool.write(lines)
            except OSError:
                logger.error("metrics: exit: %d points lost (%s)", len(lines), e)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _split(data: bytes | str) -> list[bytes]:
    if isinstance(data, str):
        data = data.encode()
    return [ln for ln in data.split(b"\n") if ln]


def _make_exit_hook(ref: weakref.ref[MetricsWriter]) -> Callable[[], None]:
    def at_exit() -> None:
        w = ref()
        if w is not None:
            w._at_exit()
    return at_exit
