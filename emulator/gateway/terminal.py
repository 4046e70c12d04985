"""The gateway's line editor: keystrokes from an SSH pty in, command lines and echo out.

Kept apart from the SSH server so that what a hostile or careless client can do to it (escape
sequences, control characters, a megabyte without a line end) is testable without a socket.
Like VRP's editor, the buffer holds at most ``max_line`` characters (the dialect's
``Session.max_line``, :data:`~emulator.gateway.session.MAX_LINE` by default) and rings the
terminal's bell when keys do not fit (once per burst received, not once per key: a pasted
megabyte must not echo a megabyte of bells); one character more is kept so that the CLI sees the
line was too long and refuses it, instead of running it cut short.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator

from .session import MAX_LINE

# What feed() yields: (kind, text).
ECHO = "echo"          # text to echo back to the terminal
LINE = "line"          # a complete line (Enter), as typed after editing
CANCEL = "cancel"      # Ctrl+C: the line was dropped
SUSPEND = "suspend"    # Ctrl+Z: back to the user view, the line dropped


class LineEditor:
    """One terminal's input state: the line being typed, a half-read escape sequence, a
    half-received UTF-8 character (a recv() may split one), whether the last key was CR."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self.buf = ""
        self._esc = 0                     # 1: ESC seen; 2: inside a CSI sequence
        self._last_cr = False
        # bytes that are not UTF-8 become lone surrogates (U+DC80-U+DCFF): kept in the line, so that
        # the CLI refuses it whole (a U+FFFD in their place would be stored in a description)
        self._decode = codecs.getincrementaldecoder("utf-8")("surrogateescape").decode

    def feed(self, data: bytes) -> Iterator[tuple[str, str]]:
        """Events for the bytes received, in order; consecutive echoes are joined."""
        echo: list[str] = []
        rang = False
        for ch in self._decode(data):
            if self._esc == 1:                              # ESC seen: '[' starts a CSI, else drop one char
                self._esc = 2 if ch == "[" else 0
                continue
            if self._esc == 2:                              # CSI: parameters until a final byte
                if "@" <= ch <= "~":
                    self._esc = 0
                continue
            if ch == "\x1b":
                self._esc = 1
                continue
            if ch == "\n" and self._last_cr:                # CR LF is one Enter
                self._last_cr = False
                continue
            self._last_cr = ch == "\r"
            if ch in "\r\n\x03\x1a":
                if echo:
                    yield ECHO, "".join(echo)
                    echo = []
                line, self.buf = self.buf, ""
                yield {"\x03": (CANCEL, ""), "\x1a": (SUSPEND, "")}.get(ch, (LINE, line))
            elif ch in "\x7f\x08":
                if self.buf:
                    self.buf = self.buf[:-1]
                    echo.append("\b \b")
            elif ch == "\t" or ch < " ":
                continue
            elif len(self.buf) < self.max_line:
                self.buf += ch
                echo.append("\ufffd" if "\udc80" <= ch <= "\udcff" else ch)     # a terminal shows what it cannot read so
            else:
                if len(self.buf) == self.max_line:
                    self.buf += ch                          # not shown: only marks the line too long
                if not rang:
                    echo.append("\a")
                    rang = True
        if echo:
            yield ECHO, "".join(echo)
