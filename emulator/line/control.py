"""Control plane of the line: JSON lines over a Unix stream socket, plus a small client.

Device emulators (the OTN transponders' management side) and tests steer the line through
this socket: switch the active path, cut a path, inject an outage, change rate or BER, and
read counters. One request per line ``{"op": ...}``; one reply per line, ``{"ok": true, ...}``
or ``{"ok": false, "error": "..."}``. A connection may carry any number of requests.

The line also protects itself (``protection.LineLogic``): ``configure_protection`` sets up
1+1 SNCP and/or ASON restoration, ``protection_switch`` takes operator requests (force,
manual, lockout, release), and ``events`` reads the log of everything that changed. A timer
thread moves the state machine along at its deadlines; the switches themselves are
programmed into the data plane ahead of time (see forwarder.Shared.set_program).
"""

from __future__ import annotations

import json
import os
import socket
import socketserver
import threading
import time
from typing import Any

from .forwarder import (COUNTERS, DIRECTIONS, MAX_PATHS, NC, P_BUFFER_S, P_OUTAGE_UNTIL, P_QPERR_AT,
                        P_QPERR_CAUSE, P_QPERR_N, P_QPERR_STALLED, P_RATE, Shared)
from .model import LineConfig, ProtectionConfig, check_ber, propagation_delay_s
from .protection import REQUESTS, LineLogic, Refused
from .transport import CAUSES

MAX_LINE = 65536
MAX_OUTAGE_MS = 3_600_000
MAX_RATE_BPS = 10**13
"""What the line's config accepts as rate_bps (LineConfig): set_rate takes no more."""
BOOKKEEPING_LAG_S = 0.05
"""How long after a programmed switch's start or end the timer thread catches up with it (logs
it, commits it). The data plane switches on time by itself; waking this process exactly then
would compete for a CPU with the forwarders and the traffic's endpoints at the very instant
traffic resumes (seen as ~2-3 ms late first frames on a 2-core box). Every op catches up first,
so replies never show stale state; event timestamps are the scheduled instants."""


class RequestError(ValueError):
    """A request the line refuses; its message goes back to the client verbatim."""


def _ms(s: float) -> float:
    return round(s * 1000.0, 6)


class LineService:
    """The line's state as seen by the control plane; every change is written through to
    the shared parameters the forwarding children read."""

    OPS = ("ping", "get", "set_rate", "set_ber", "set_active_path", "set_path_up", "outage",
           "reset_counters", "configure_protection", "protection_switch", "events")

    def __init__(self, cfg: LineConfig, shared: Shared) -> None:
        self.cfg = cfg
        self.shared = shared
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._timer: threading.Thread | None = None
        self._stopping = False
        self.rate_bps = cfg.rate_bps
        self.paths = [{"name": p.name, "length_km": p.length_km, "ber": p.ber, "up": p.up}
                      for p in cfg.paths]
        self.outage_start = 0.0
        self.outage_end = 0.0
        self._baseline = [0] * (2 * MAX_PATHS * NC)
        sp = shared.params
        sp[P_RATE] = float(cfg.rate_bps)
        sp[P_BUFFER_S] = cfg.buffer_ms / 1000.0
        sp[P_OUTAGE_UNTIL] = 0.0
        for i, p in enumerate(self.paths):
            shared.set_path(i, propagation_delay_s(p["length_km"]), p["ber"], p["up"])
        self.logic = LineLogic([p["name"] for p in self.paths], [p["up"] for p in self.paths],
                               cfg.active_index, cfg.protection, now=time.monotonic())
        self._program: tuple[int, int, float, float, float] | None = None
        self._qp_errors = [0, 0]
        self._sync()

    @property
    def active(self) -> int:
        return self.logic.active

    def _catch_up_transport(self) -> None:
        """Log a QP error the forwarders declared (the transport model's retry budget ran out, or
        the calibrated sustained-loss rule): the devices and the trial read it from the events."""
        p = self.shared.params
        for d, dname in enumerate(DIRECTIONS):
            n = int(p[P_QPERR_N + d])
            if n != self._qp_errors[d]:
                self._qp_errors[d] = n
                tc = self.cfg.transport
                self.logic.events.append(
                    "qp-error", p[P_QPERR_AT + d], cause=CAUSES.get(int(p[P_QPERR_CAUSE + d]), "unknown"),
                    direction=dname, stalled_ms=_ms(p[P_QPERR_STALLED + d]),
                    retry_budget_ms=_ms(tc.budget_s) if tc is not None else None,
                    active_path=self.paths[self.active]["name"])

    def _sync(self) -> None:
        """Publish the state machine's switch program to the data plane if it changed."""
        prog = self.logic.program()
        if prog != self._program:
            self.shared.set_program(*prog)
            self._program = prog

    # --- the protection timer ---

    def start(self) -> None:
        """Start the thread that runs the state machine at its deadlines (call after forking)."""
        if self._timer is None:
            self._stopping = False
            self._timer = threading.Thread(target=self._run_timer, name="line-protection", daemon=True)
            self._timer.start()

    def stop(self) -> None:
        if self._timer is not None:
            with self._cond:
                self._stopping = True
                self._cond.notify_all()
            self._timer.join(2.0)
            self._timer = None

    def _run_timer(self) -> None:
        with self._cond:
            while not self._stopping:
                self.logic.advance(time.monotonic())
                self._sync()
                self._catch_up_transport()
                deadline = self.logic.next_deadline(BOOKKEEPING_LAG_S)
                wait = 1.0 if deadline is None else min(1.0, max(0.0, deadline - time.monotonic()))
                self._cond.wait(wait)

    # --- request handling ---

    def handle(self, req: Any) -> dict[str, Any]:
        """Answer one decoded request; never raises."""
        try:
            if not isinstance(req, dict):
                raise RequestError("request must be a JSON object like {\"op\": \"get\"}")
            op = req.get("op")
            if op not in self.OPS:
                raise RequestError(f"unknown op {op!r} (ops: {', '.join(self.OPS)})")
            with self._cond:
                self.logic.advance(time.monotonic())
                self._catch_up_transport()
                try:
                    return {"ok": True, **getattr(self, f"_op_{op}")(req)}
                finally:
                    self._sync()
                    self._cond.notify_all()
        except RequestError as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:  # noqa: BLE001 - report, keep serving
            return {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"}

    @staticmethod
    def _fields(req: dict[str, Any], *names: str) -> list[Any]:
        op = req["op"]
        extra = sorted(set(req) - {"op", *names})
        if extra:
            raise RequestError(f"{op}: unknown field {extra[0]!r} (expected: {', '.join(names) or 'none'})")
        missing = [n for n in names if n not in req]
        if missing:
            raise RequestError(f"{op}: missing field {missing[0]!r}")
        return [req[n] for n in names]

    @staticmethod
    def _optional(req: dict[str, Any], required: tuple[str, ...], optional: tuple[str, ...]) -> dict[str, Any]:
        op = req["op"]
        allowed = (*required, *optional)
        extra = sorted(set(req) - {"op", *allowed})
        if extra:
            raise RequestError(f"{op}: unknown field {extra[0]!r} (expected: {', '.join(allowed)})")
        missing = [n for n in required if n not in req]
        if missing:
            raise RequestError(f"{op}: missing field {missing[0]!r}")
        return {k: v for k, v in req.items() if k != "op"}

    def _path(self, op: str, ref: Any) -> int:
        names = ", ".join(p["name"] for p in self.paths)
        if isinstance(ref, bool):
            raise RequestError(f"{op}: path must be a path name or index, got {ref!r}")
        if isinstance(ref, int):
            if 0 <= ref < len(self.paths):
                return ref
            raise RequestError(f"{op}: path index {ref} out of range (0..{len(self.paths) - 1})")
        for i, p in enumerate(self.paths):
            if p["name"] == ref:
                return i
        raise RequestError(f"{op}: unknown path {ref!r} (paths: {names})")

    def _op_ping(self, req: dict[str, Any]) -> dict[str, Any]:
        self._fields(req)
        return {"name": self.cfg.name, "pid": os.getpid(), "now_monotonic": time.monotonic()}

    def _op_get(self, req: dict[str, Any]) -> dict[str, Any]:
        self._fields(req)
        return self.state()

    def _op_set_rate(self, req: dict[str, Any]) -> dict[str, Any]:
        (rate,) = self._fields(req, "rate_bps")
        # Compared, never converted first: float(10**400) raises, and NaN fails every comparison.
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= MAX_RATE_BPS \
                or rate != int(rate):
            raise RequestError(f"set_rate: rate_bps must be a whole number in [0, {MAX_RATE_BPS:.0e}] "
                               f"(0 = unlimited), got {rate!r}")
        prev, self.rate_bps = self.rate_bps, int(rate)
        self.shared.params[P_RATE] = float(self.rate_bps)
        if prev != self.rate_bps:
            self.logic.events.append("rate", time.monotonic(), cause="operator", rate_bps=self.rate_bps,
                                     previous=prev, active_path=self.paths[self.active]["name"])
        return {"rate_bps": self.rate_bps, "previous": prev}

    def _op_set_ber(self, req: dict[str, Any]) -> dict[str, Any]:
        ref, ber = self._fields(req, "path", "ber")
        i = self._path("set_ber", ref)
        try:
            ber = check_ber(ber, "set_ber: ber")
        except ValueError as exc:
            raise RequestError(str(exc)) from None
        prev, self.paths[i]["ber"] = self.paths[i]["ber"], ber
        self._write_path(i)
        if prev != ber:
            self.logic.events.append("ber", time.monotonic(), cause="operator", path=self.paths[i]["name"],
                                     ber=ber, previous=prev, active_path=self.paths[self.active]["name"])
        return {"path": self.paths[i]["name"], "ber": ber, "previous": prev}

    def _op_set_active_path(self, req: dict[str, Any]) -> dict[str, Any]:
        (ref,) = self._fields(req, "path")
        i = self._path("set_active_path", ref)
        prev = self.active
        self.logic.set_active(i, time.monotonic())
        return {"active_path": self.paths[i]["name"], "previous": self.paths[prev]["name"]}

    def _op_set_path_up(self, req: dict[str, Any]) -> dict[str, Any]:
        ref, up = self._fields(req, "path", "up")
        i = self._path("set_path_up", ref)
        if not isinstance(up, bool):
            raise RequestError(f"set_path_up: up must be true or false, got {up!r}")
        prev, self.paths[i]["up"] = self.paths[i]["up"], up
        now = time.monotonic()  # the instant of the cut: protection timing counts from here
        self._write_path(i, at=now)
        self.logic.set_path_up(i, up, now)
        return {"path": self.paths[i]["name"], "up": up, "previous": prev}

    def _op_outage(self, req: dict[str, Any]) -> dict[str, Any]:
        (ms,) = self._fields(req, "ms")
        if isinstance(ms, bool) or not isinstance(ms, (int, float)) or not 0 < ms <= MAX_OUTAGE_MS:
            raise RequestError(f"outage: ms must be a number in (0, {MAX_OUTAGE_MS}], got {ms!r}")
        now = time.monotonic()
        self.outage_start, self.outage_end = now, now + ms / 1000.0
        self.shared.set_outage(now, self.outage_end)
        self.logic.events.append("outage", now, cause="operator", outage_ms=ms, start_mono=now,
                                 end_mono=self.outage_end, active_path=self.paths[self.active]["name"])
        return {"ms": ms, "start_monotonic": now, "end_monotonic": self.outage_end}

    def _op_reset_counters(self, req: dict[str, Any]) -> dict[str, Any]:
        # The children own their counters; a reset is a new baseline, so nothing races.
        self._fields(req)
        self._baseline = self.shared.counter_values()
        return {}

    def _op_configure_protection(self, req: dict[str, Any]) -> dict[str, Any]:
        fields = self._optional(req, ("mode",), tuple(sorted(ProtectionConfig.FIELDS - {"mode"})))
        try:
            pc = ProtectionConfig.from_dict(fields, [p["name"] for p in self.paths],
                                            default_working=self.logic.cfg.working)
        except ValueError as exc:
            raise RequestError(f"configure_protection: {exc}") from None
        now = time.monotonic()
        self.logic.configure(pc, now)
        return {"protection": self.logic.state(now)}

    def _op_protection_switch(self, req: dict[str, Any]) -> dict[str, Any]:
        fields = self._optional(req, ("request",), ("to",))
        request = fields["request"]
        if request not in REQUESTS:
            raise RequestError(f"protection_switch: request must be one of {', '.join(REQUESTS)}, got {request!r}")
        to = fields.get("to")
        if to is not None:
            to = self._path("protection_switch", to)
        elif request in ("force", "manual"):
            raise RequestError(f"protection_switch: {request} needs field 'to' (the path to switch to)")
        if request in ("lockout", "release"):
            to = None  # accepted (a valid path), not used
        try:
            ev = self.logic.request_switch(request, to, time.monotonic())
        except Refused as exc:
            raise RequestError(f"protection_switch: {exc}") from None
        return {"event": dict(ev)}

    def _op_events(self, req: dict[str, Any]) -> dict[str, Any]:
        since = self._optional(req, (), ("since",)).get("since", 0)
        if isinstance(since, bool) or not isinstance(since, int) or since < 0:
            raise RequestError(f"events: since must be a whole number >= 0, got {since!r}")
        return self.logic.events.since(since)

    def _write_path(self, i: int, at: float | None = None) -> None:
        p = self.paths[i]
        self.shared.set_path(i, propagation_delay_s(p["length_km"]), p["ber"], p["up"], at)

    # --- state ---

    def counters(self) -> dict[str, dict[str, dict[str, int]]]:
        raw = self.shared.counter_values()
        base = self._baseline
        out: dict[str, dict[str, dict[str, int]]] = {}
        for d, dname in enumerate(DIRECTIONS):
            out[dname] = {}
            for i, p in enumerate(self.paths):
                o = (d * MAX_PATHS + i) * NC
                out[dname][p["name"]] = {c: raw[o + j] - base[o + j] for j, c in enumerate(COUNTERS)}
        return out

    def state(self) -> dict[str, Any]:
        now = time.monotonic()
        active = self.outage_end > now
        return {
            "name": self.cfg.name,
            "pid": os.getpid(),
            "now_monotonic": now,
            "ends": [{"netns": e.netns, "ifname": e.ifname} for e in self.cfg.ends],
            "mtu": self.cfg.mtu,
            "rate_bps": self.rate_bps,
            "buffer_ms": self.cfg.buffer_ms,
            "active_path": self.paths[self.active]["name"],
            "paths": [{"name": p["name"], "length_km": p["length_km"],
                       "delay_ms": _ms(propagation_delay_s(p["length_km"])), "ber": p["ber"],
                       "up": p["up"], "active": i == self.active}
                      for i, p in enumerate(self.paths)],
            "protection": self.logic.state(now),
            "outage": {"active": active,
                       "remaining_ms": _ms(self.outage_end - now) if active else 0.0,
                       "start_monotonic": self.outage_start or None,
                       "end_monotonic": self.outage_end or None},
            "counters": self.counters(),
            "transport": self.cfg.transport.to_dict() if self.cfg.transport is not None else {"model": "none"},
            "qp_errors": sum(self._qp_errors),
        }


# --- server ---------------------------------------------------------------------------------------


class _Handler(socketserver.StreamRequestHandler):
    server: ControlServer

    def handle(self) -> None:
        while True:
            try:
                line = self.rfile.readline(MAX_LINE + 1)
            except OSError:
                return
            if not line:
                return
            if len(line) > MAX_LINE:
                self._reply({"ok": False, "error": f"request longer than {MAX_LINE} bytes"})
                return
            if not line.strip():
                continue
            try:
                req = json.loads(line)
            except (ValueError, UnicodeDecodeError) as exc:
                reply = {"ok": False, "error": f"request is not valid JSON: {exc}"}
            except RecursionError:  # json recurses once per level: '[' * 30000 fits in MAX_LINE
                reply = {"ok": False, "error": "request is nested too deeply (a request is one flat object)"}
            else:
                reply = self.server.service.handle(req)
            if not self._reply(reply):
                return

    def _reply(self, reply: dict[str, Any]) -> bool:
        try:
            self.wfile.write(json.dumps(reply).encode() + b"\n")
            self.wfile.flush()
            return True
        except OSError:
            return False


class ControlServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """Serves ``service`` on ``path`` from background threads.

    The socket is bound under a temporary name and renamed into place once listening, so
    its appearance at ``path`` means the line is ready to take requests.
    """

    daemon_threads = True
    allow_reuse_address = False

    def __init__(self, path: str, service: LineService) -> None:
        self.path = path
        self.service = service
        _clear_stale_socket(path)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}.tmp")
        if os.path.lexists(tmp):
            os.unlink(tmp)
        super().__init__(tmp, _Handler)
        self._tmp = tmp
        self._ino: int | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="line-control", daemon=True)
        self._thread.start()
        os.rename(self._tmp, self.path)
        self._ino = os.stat(self.path).st_ino

    def stop(self) -> None:
        if self._thread is not None:
            self.shutdown()
        self.server_close()
        for p in (self.path, self._tmp):
            try:
                if p == self._tmp or os.stat(p).st_ino == self._ino:  # never remove a successor's socket
                    os.unlink(p)
            except FileNotFoundError:
                pass


def _clear_stale_socket(path: str) -> None:
    if not os.path.lexists(path):
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(path)
        except OSError:
            os.unlink(path)  # nobody listening: left over from a crashed run
            return
    raise OSError(f"control socket {path} is in use by a running process")


# --- client ---------------------------------------------------------------------------------------


class LineControlError(Exception):
    """Base of the client's errors."""


class LineUnavailable(LineControlError):
    """The line's control socket cannot be reached or did not answer in time."""


class LineRequestError(LineControlError):
    """The line understood the request and refused it; ``str()`` is its error message."""


class LineControl:
    """Client for the control socket; one short connection per request, so it survives
    line restarts and can be shared between threads."""

    def __init__(self, socket_path: str, timeout: float = 5.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request; return the reply (``ok`` true) or raise."""
        data = json.dumps({"op": op, **fields}).encode() + b"\n"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(self.timeout)
            try:
                s.connect(self.socket_path)
                s.sendall(data)
                buf = b""
                while not buf.endswith(b"\n"):
                    chunk = s.recv(65536)
                    if not chunk:
                        raise LineUnavailable(f"line at {self.socket_path} closed the connection "
                                              f"without replying to {op!r}")
                    buf += chunk
            except TimeoutError:
                raise LineUnavailable(f"line at {self.socket_path} did not answer {op!r} "
                                      f"within {self.timeout:g} s") from None
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                raise LineUnavailable(f"line control socket {self.socket_path} is not available: "
                                      f"{exc.strerror}") from None
            except OSError as exc:
                raise LineUnavailable(f"talking to line at {self.socket_path}: {exc}") from None
        try:
            reply = json.loads(buf)
        except ValueError as exc:
            raise LineControlError(f"line sent an unreadable reply to {op!r}: {exc}") from None
        if not isinstance(reply, dict) or not reply.get("ok"):
            err = reply.get("error") if isinstance(reply, dict) else None
            raise LineRequestError(err or f"line refused {op!r} without a reason: {reply!r}")
        return reply

    def wait_ready(self, timeout: float = 10.0) -> dict[str, Any]:
        """Poll ``ping`` until the line answers (it creates its socket only once forwarding)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.ping()
            except LineUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def ping(self) -> dict[str, Any]:
        return self.request("ping")

    def get(self) -> dict[str, Any]:
        return self.request("get")

    def set_rate(self, rate_bps: int) -> dict[str, Any]:
        return self.request("set_rate", rate_bps=rate_bps)

    def set_ber(self, path: str | int, ber: float) -> dict[str, Any]:
        return self.request("set_ber", path=path, ber=ber)

    def set_active_path(self, path: str | int) -> dict[str, Any]:
        return self.request("set_active_path", path=path)

    def set_path_up(self, path: str | int, up: bool) -> dict[str, Any]:
        return self.request("set_path_up", path=path, up=up)

    def outage(self, ms: float) -> dict[str, Any]:
        return self.request("outage", ms=ms)

    def reset_counters(self) -> dict[str, Any]:
        return self.request("reset_counters")

    def configure_protection(self, mode: str, **fields: Any) -> dict[str, Any]:
        """Fields (all optional but mode): working, protection (name or None), hold_off_ms,
        switch_ms, revertive, wtr_s, ason, restoration (list of names), restoration_ms."""
        return self.request("configure_protection", mode=mode, **fields)

    def protection_switch(self, request: str, to: str | int | None = None) -> dict[str, Any]:
        """request: force | manual | lockout | release; ``to`` is needed for force and manual."""
        if to is None:
            return self.request("protection_switch", request=request)
        return self.request("protection_switch", request=request, to=to)

    def events(self, since: int = 0) -> dict[str, Any]:
        """Events with seq >= since, and ``next`` (the since for the following call)."""
        return self.request("events", since=since)
