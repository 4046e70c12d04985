"""Fuzz the optical line's control plane: ``LineService.handle`` in-process with requests of every
JSON shape (every op, known fields with values of every type, unknown fields, non-objects), and
the control socket (JSON lines over a Unix socket) with random bytes, invalid UTF-8, deep nesting
and over-long lines.

Properties: every request gets a reply that is a JSON object with ``ok``; a refusal names what
is wrong in the service's own words (never "internal error", which means a value reached code
that did not expect it) and changes nothing (rate, paths, protection settings, outage); the
service answers ``get`` after anything; on the socket every line gets exactly one reply line, an
over-long line gets an error and the connection is closed, and another connection is served.
"""

from __future__ import annotations

import copy
import json
import socket
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator.line.control import MAX_LINE, ControlServer, LineService
from emulator.line.forwarder import Shared
from emulator.line.model import LineConfig

from .support import fuzz

CONFIG = {
    "name": "dci-line", "control_socket": "/run/dcilab/fuzz/line.sock",
    "ends": [{"netns": "dcl-a", "ifname": "wan0"}, {"netns": "dcl-b", "ifname": "wan0"}],
    "mtu": 9000, "rate_bps": 1_000_000_000, "buffer_ms": 50,
    "paths": [{"name": "working", "length_km": 329}, {"name": "protection", "length_km": 352},
              {"name": "restoration", "length_km": 611}],
    "active_path": "working",
}
FIELDS = ["rate_bps", "path", "ber", "up", "ms", "mode", "working", "protection", "hold_off_ms", "switch_ms",
          "revertive", "wtr_s", "ason", "restoration", "restoration_ms", "request", "to", "since"]


def service() -> LineService:
    cfg = LineConfig.from_dict(copy.deepcopy(CONFIG))
    return LineService(cfg, Shared(len(cfg.paths)))


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-3, 5), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, 2, 3, -1, 0.5, 1e-9, 1e-3, 1.0, 3_600_000, 3_600_001, 2**63, 10**30, 10**400, 1e308,
                     "working", "protection", "restoration", "sncp", "none", "force", "manual", "lockout", "release",
                     "", "0", "NaN"]),
    st.text(max_size=12),
)
json_values = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c,
                                                                                          max_size=4), max_leaves=12)


OP_FIELDS = {
    "ping": [], "get": [], "reset_counters": [], "set_rate": ["rate_bps"], "set_ber": ["path", "ber"],
    "set_active_path": ["path"], "set_path_up": ["path", "up"], "outage": ["ms"], "events": ["since"],
    "protection_switch": ["request", "to"],
    "configure_protection": ["mode", "working", "protection", "hold_off_ms", "switch_ms", "revertive", "wtr_s",
                             "ason", "restoration", "restoration_ms"],
}


@st.composite
def request(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 7)) == 0:
        return draw(json_values)                                         # anything at all
    if draw(st.booleans()):                                              # an op with (some of) its own fields
        op = draw(st.sampled_from(sorted(OP_FIELDS)))
        names = draw(st.lists(st.sampled_from(OP_FIELDS[op]), unique=True)) if OP_FIELDS[op] else []
        return {"op": op, **{n: draw(st.one_of(scalars, scalars, json_values)) for n in names}}
    req: dict[str, Any] = {}
    if draw(st.integers(0, 9)):
        req["op"] = draw(st.one_of(st.sampled_from(LineService.OPS), json_values))
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=5, unique=True)):
        req[name] = draw(st.one_of(scalars, json_values))
    if draw(st.integers(0, 9)) == 0:
        req[draw(st.text(max_size=6))] = draw(scalars)
    return req


def as_config(svc: LineService) -> dict[str, Any]:
    """The line's state written as its config file: what the control plane accepts, the config must."""
    st_ = svc.state()
    return {**CONFIG, "rate_bps": st_["rate_bps"], "active_path": st_["active_path"],
            "paths": [{"name": p["name"], "length_km": p["length_km"], "ber": p["ber"], "up": p["up"]}
                      for p in st_["paths"]]}


def settings_of(svc: LineService) -> Any:
    """What only a request may change (the rest moves with time: counters, timers, events)."""
    return (svc.rate_bps, copy.deepcopy(svc.paths), svc.logic.cfg, svc.outage_end)


@fuzz(400)
@given(reqs=st.lists(request(), min_size=1, max_size=8))
def test_every_request_gets_a_json_reply_and_a_refusal_changes_nothing(reqs: list[Any]) -> None:
    svc = service()
    for req in reqs:
        before = settings_of(svc)
        reply = svc.handle(req)
        assert isinstance(reply, dict) and isinstance(reply.get("ok"), bool)
        assert json.loads(json.dumps(reply)) is not None                    # what the socket sends
        if not reply["ok"]:
            assert isinstance(reply["error"], str) and reply["error"]
            assert not reply["error"].startswith("internal error"), (req, reply)
            assert settings_of(svc) == before, req
        assert svc.handle({"op": "get"})["ok"]
        LineConfig.from_dict(as_config(svc))


# ------------------------------------------------------------------------------------ the socket

@pytest.fixture(scope="module")
def control(tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = str(tmp_path_factory.mktemp("line-control") / "line.sock")
    srv = ControlServer(path, service())
    srv.start()
    try:
        yield path
    finally:
        srv.stop()


def exchange(path: str, data: bytes) -> list[bytes]:
    """The replies to ``data``.  After an over-long line the line closes with our bytes unread, which
    a Unix socket reports to us as a reset (after the replies already sent), not as an end."""
    out = b""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(path)
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            while chunk := s.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
    return out.splitlines()


line_bytes = st.one_of(
    request().map(lambda r: json.dumps(r).encode()),
    st.binary(max_size=200).map(lambda b: b.replace(b"\n", b"")),
    st.sampled_from([b"{", b"}", b"[]", b'"x"', b"NaN", b'{"op": "ping"', b"\xff\xfe", b'{"op": "\xed\xa0\x80"}',
                     b"\x00", b" ", b"{}" * 3]),
    st.integers(1, 30_000).map(lambda n: b"[" * n + b"]" * n),            # nesting deeper than json likes
    st.integers(1, 10_000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),  # (each line within MAX_LINE)
)


@fuzz(60)
@given(lines=st.lists(line_bytes, min_size=1, max_size=6), long=st.booleans())
def test_every_line_gets_one_reply_and_another_connection_is_served(control: str, lines: list[bytes],
                                                                   long: bool) -> None:
    data = b"".join(line + b"\n" for line in lines)
    if long:
        data += b"x" * (MAX_LINE + 10) + b"\n" + b'{"op": "ping"}\n'            # refused, then closed
    replies = exchange(control, data)
    expected = sum(1 for line in lines if line.strip()) + (1 if long else 0)
    assert len(replies) == expected, (lines, replies[-3:])
    for r in replies:
        reply = json.loads(r)
        assert isinstance(reply, dict) and isinstance(reply["ok"], bool)
        if not reply["ok"]:
            assert not reply["error"].startswith("internal error"), reply
    if long:
        assert "longer than" in json.loads(replies[-1])["error"]
    assert json.loads(exchange(control, b'{"op": "ping"}\n')[0])["ok"]
