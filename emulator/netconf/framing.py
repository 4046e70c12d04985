"""NETCONF over SSH message framing (RFC 6242) and the hello exchange (RFC 6241 section 8.1)."""

from __future__ import annotations

import re

from lxml import etree

from .errors import NC_NS, qn

BASE_10 = "urn:ietf:params:netconf:base:1.0"
BASE_11 = "urn:ietf:params:netconf:base:1.1"
EOM = b"]]>]]>"
END_OF_CHUNKS = b"\n##\n"
MAX_CHUNK = 4294967295
_CHUNK_SIZE_RE = re.compile(rb"[1-9][0-9]{0,9}")


class FramingError(Exception):
    """The peer broke the framing; the session must be closed (RFC 6242 section 4.2)."""


class Framer:
    """Reads and writes NETCONF messages on a byte stream (a paramiko Channel or anything with recv/sendall).

    Starts in end-of-message mode; :meth:`use_chunked` switches both directions to chunked framing.
    Robust to partial reads: bytes left over after a message stay buffered for the next one.
    """

    def __init__(self, stream, *, max_message: int = 64 * 1024 * 1024, max_chunks: int = 65536):
        self.stream = stream
        self.chunked = False
        self.max_message = max_message
        self.max_chunks = max_chunks
        """Chunks in one message: a client splits a message into a few (ncclient: one); a million
        one-byte chunks is an attack on the reader's CPU, refused (RFC 6242 sets no minimum size)."""
        self._buf = bytearray()
        self._scan = 0  # EOM search resumes here
        self._msg = bytearray()     # the chunks of the message being read, joined as they come
        self._chunks = 0

    def use_chunked(self) -> None:
        self.chunked = True

    # --- reading -----------------------------------------------------------------------------
    def read_message(self) -> bytes | None:
        """Returns the next complete message, or None at end of stream.  Raises FramingError."""
        while True:
            msg = self._parse_chunked() if self.chunked else self._parse_eom()
            if msg is not None:
                return msg
            data = self.stream.recv(65536)
            if not data:
                return None
            self._buf += data
            if len(self._buf) + len(self._msg) > self.max_message:
                raise FramingError("message too large")

    def _parse_eom(self) -> bytes | None:
        idx = self._buf.find(EOM, self._scan)
        if idx < 0:
            self._scan = max(0, len(self._buf) - len(EOM) + 1)
            return None
        msg = bytes(self._buf[:idx])
        del self._buf[: idx + len(EOM)]
        self._scan = 0
        return msg

    def _parse_chunked(self) -> bytes | None:
        """Chunks are copied into one buffer as they come (memory = the payload) and the input is
        consumed once per call (not once per chunk, which is quadratic in the chunk count)."""
        buf = self._buf
        pos = 0
        try:
            while True:
                n = len(buf) - pos
                if n == 0:
                    return None
                # every frame starts with "\n#"
                head = bytes(buf[pos:pos + 2])
                if head != b"\n#"[: len(head)]:
                    raise FramingError(f"bad chunk header {bytes(buf[pos:pos + 16])!r}")
                if n < 3:
                    return None
                if buf[pos + 2:pos + 3] == b"#":  # end-of-chunks
                    if n < 4:
                        return None
                    if buf[pos + 3:pos + 4] != b"\n":
                        raise FramingError("bad end-of-chunks marker")
                    pos += 4
                    if not self._chunks:
                        raise FramingError("end-of-chunks without a chunk")
                    msg = bytes(self._msg)
                    self._msg, self._chunks = bytearray(), 0
                    return msg
                nl = buf.find(b"\n", pos + 2, pos + 14)
                if nl < 0:
                    if n >= 13:
                        raise FramingError("chunk size too long")
                    partial = bytes(buf[pos + 2:])
                    if not partial.isdigit() or partial[:1] == b"0":
                        raise FramingError(f"bad chunk size {partial!r}")
                    return None
                digits = bytes(buf[pos + 2:nl])
                if not _CHUNK_SIZE_RE.fullmatch(digits) or int(digits) > MAX_CHUNK:
                    raise FramingError(f"bad chunk size {digits!r}")
                size = int(digits)
                if size + len(self._msg) > self.max_message:
                    raise FramingError("chunk too large")
                if len(buf) < nl + 1 + size:
                    return None
                if self._chunks >= self.max_chunks:
                    raise FramingError(f"more than {self.max_chunks} chunks in one message")
                self._msg += buf[nl + 1:nl + 1 + size]
                self._chunks += 1
                pos = nl + 1 + size
        finally:
            if pos:
                del buf[:pos]

    # --- writing -----------------------------------------------------------------------------
    def frame(self, data: bytes) -> bytes:
        if self.chunked:
            return b"\n#%d\n" % len(data) + data + END_OF_CHUNKS
        return data + EOM

    def write_message(self, data: bytes) -> None:
        self.stream.sendall(self.frame(data))


def build_hello(capabilities, session_id: int | None = None) -> bytes:
    hello = etree.Element(qn("hello"), nsmap={None: NC_NS})
    caps = etree.SubElement(hello, qn("capabilities"))
    for c in capabilities:
        etree.SubElement(caps, qn("capability")).text = c
    if session_id is not None:
        etree.SubElement(hello, qn("session-id")).text = str(session_id)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + etree.tostring(hello)


def parse_hello(data: bytes) -> tuple[list[str], str | None]:
    """Returns (capabilities, session-id text or None).  Raises ValueError if it is not a hello."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=True)
    root = etree.fromstring(data.strip(), parser)
    if root.tag != qn("hello"):
        raise ValueError(f"expected <hello>, got {root.tag}")
    caps = [(c.text or "").strip() for c in root.iter(qn("capability"))]
    sid = root.find(qn("session-id"))
    return caps, (sid.text if sid is not None else None)
