"""Fuzz the NETCONF framer (RFC 6242): both framings, any split of the input into reads, valid
streams, mutated and truncated ones, random bytes, messages over the size limit.

Properties: a valid stream reads back message for message however it is split; anything else
ends in messages, end of stream or FramingError (never another exception); no message is longer
than the limit; what the framer buffers stays under the limit plus one read; a flood of bytes
without an end marker costs memory bounded by the limit (tracemalloc peak).
"""

from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator.netconf.framing import EOM, Framer, FramingError

from .support import fuzz

RECV = 65536            # what Framer asks of one recv()


class Pieces:
    """A stream that hands out ``data`` in reads of the given sizes (cycled), like a socket."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self.data, self.sizes, self.at, self.i = data, sizes or [RECV], 0, 0

    def recv(self, n: int) -> bytes:
        size = min(n, self.sizes[self.i % len(self.sizes)])
        self.i += 1
        out = self.data[self.at:self.at + size]
        self.at += len(out)
        return out


def chunked(msg: bytes, cuts: list[int]) -> bytes:
    """``msg`` as chunks cut at the given offsets (RFC 6242 4.2), then end-of-chunks."""
    bounds = sorted({c % (len(msg) + 1) for c in cuts} - {0, len(msg)})
    parts = [msg[a:b] for a, b in zip([0, *bounds], [*bounds, len(msg)], strict=True)]
    return b"".join(b"\n#%d\n" % len(p) + p for p in parts if p) + b"\n##\n"


def read_all(fr: Framer, limit: int) -> tuple[list[bytes], str]:
    """Every message until the end or a framing error, checking the buffers after each read."""
    out: list[bytes] = []
    for _ in range(10_000):
        try:
            msg = fr.read_message()
        except FramingError:
            return out, "framing-error"
        assert len(fr._buf) + len(fr._msg) <= limit + RECV
        if msg is None:
            return out, "eof"
        assert len(msg) <= limit
        out.append(msg)
    raise AssertionError("the framer never reached the end of a finite stream")


sizes = st.lists(st.integers(1, 5000), min_size=1, max_size=8)
# base:1.0 cannot carry a message whose end joins the marker (b"a]]>" + EOM reads as b"a"): RFC 6242 3
plain = st.binary(max_size=3000).filter(lambda b: (b + EOM).find(EOM) == len(b))


@fuzz(150)
@given(msgs=st.lists(plain, max_size=5), split=sizes)
def test_base10_stream_reads_back_as_sent(msgs: list[bytes], split: list[int]) -> None:
    fr = Framer(Pieces(b"".join(m + EOM for m in msgs), split))
    assert read_all(fr, fr.max_message) == (msgs, "eof")


@fuzz(150)
@given(msgs=st.lists(st.binary(min_size=1, max_size=3000), max_size=5),
       cuts=st.lists(st.integers(0, 3000), max_size=6), split=sizes)
def test_chunked_stream_reads_back_as_sent(msgs: list[bytes], cuts: list[int], split: list[int]) -> None:
    fr = Framer(Pieces(b"".join(chunked(m, cuts) for m in msgs), split))
    fr.use_chunked()
    assert read_all(fr, fr.max_message) == (msgs, "eof")


@st.composite
def hostile(draw: st.DrawFn) -> bytes:
    """A framed stream, then broken: bytes flipped, inserted or cut, markers forged, or just noise."""
    kind = draw(st.sampled_from(["noise", "mutated", "headers"]))
    if kind == "noise":
        return draw(st.binary(max_size=6000))
    if kind == "headers":                                   # forged chunk headers and end markers
        parts = draw(st.lists(st.sampled_from([
            b"\n#", b"\n##\n", b"\n#0\n", b"\n#1\n", b"\n#4294967295\n", b"\n#4294967296\n", b"\n#99999999999\n",
            b"\n#01\n", b"\n#-1\n", b"\n# 5\n", b"\n#5", b"abc", b"]]>]]>", b"\n", b"#", b"\x00", b"\xff",
        ]), max_size=30))
        return b"".join(parts)
    msgs = draw(st.lists(st.binary(min_size=1, max_size=800), min_size=1, max_size=4))
    data = bytearray(b"".join(chunked(m, draw(st.lists(st.integers(0, 800), max_size=4))) for m in msgs)
                     if draw(st.booleans()) else b"".join(m + EOM for m in msgs))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if op == "flip":
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=20))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 20))]
        else:
            del data[at:]
    return bytes(data)


@fuzz(300)
@given(data=hostile(), chunked_mode=st.booleans(), split=sizes, limit=st.integers(64, 4096))
def test_a_hostile_stream_ends_in_messages_eof_or_a_framing_error(data: bytes, chunked_mode: bool,
                                                                   split: list[int], limit: int) -> None:
    fr = Framer(Pieces(data, split), max_message=limit, max_chunks=64)
    if chunked_mode:
        fr.use_chunked()
    read_all(fr, limit)


class Flood:
    """``total`` bytes of ``unit`` repeated, produced as read (the test holds none of it)."""

    def __init__(self, head: bytes, unit: bytes, total: int) -> None:
        self.head, self.unit, self.left, self.pos = head, unit, total, 0

    def recv(self, n: int) -> bytes:
        if self.head:
            out, self.head = self.head, b""
            return out
        k = min(n, self.left)
        start = self.pos % len(self.unit)
        out = (self.unit[start:] + self.unit * (k // len(self.unit) + 1))[:k]
        self.pos += k
        self.left -= k
        return out


LIMIT = 1 << 20


@pytest.mark.parametrize("mode,head,unit", [
    ("base10", b"", b"<rpc>" + b"x" * 59),                      # no end-of-message marker, ever
    ("chunked", b"\n#4294967295\n", b"x" * 64),                 # one chunk announced at 4 GiB
    ("chunked", b"", b"\n#1\nx"),                               # a flood of one-byte chunks
    ("chunked", b"", b"\n#65536\n" + b"y" * 65536),             # 64 KiB chunks past the limit
])
def test_a_flood_without_an_end_costs_memory_bounded_by_the_limit(mode: str, head: bytes, unit: bytes) -> None:
    fr = Framer(Flood(head, unit, 16 * LIMIT), max_message=LIMIT)
    if mode == "chunked":
        fr.use_chunked()
    tracemalloc.start()
    try:
        with pytest.raises(FramingError):
            while fr.read_message() is not None:
                pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * LIMIT, f"peak {peak} bytes for a {LIMIT}-byte limit"
