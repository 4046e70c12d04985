"""One user's terminal on an emulated gateway, whatever dialect it speaks: pure and testable without SSH.

``Session.handle_line`` takes one typed line and returns the text the device prints; the prompt
to show next is ``Session.prompt``.  The machinery is here (views, line limits, parsing against
the dialect's command table, dispatch, questions awaiting an answer, Ctrl+Z); a dialect subclasses
:class:`Session` with its command table (``commands``), its prompts (``view_prompt``), its words
(the class attributes and ``parse_error`` / ``device_error``) and one ``do_<handler>`` method per
handler its table names, which edits the device (:class:`~emulator.gateway.device.Gateway`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from .device import DeviceError
from .grammar import CliError, Cmd, Fail, parse

if TYPE_CHECKING:
    from .device import Gateway

MAX_LINE = 510
"""Characters in one command line unless a dialect says otherwise (VRP's editing buffer)."""


class Session:
    """One terminal on the gateway; subclassed once per dialect."""

    commands: ClassVar[list[Cmd]] = []             # the dialect's compiled table (grammar.compile_table)
    start_view: ClassVar[str] = "user"             # where a login lands and Ctrl+Z returns
    max_line: ClassVar[int] = MAX_LINE
    error_marker: ClassVar[str] = "Error:"         # output holding it failed (exec status, replay)
    too_long_text: ClassVar[str] = "Error: the line is longer than {max_line} characters and was not run."
    not_utf8_text: ClassVar[str] = "Error: the line is not valid UTF-8 and was not run."
    busy_text: ClassVar[str] = "All sessions are in use, try later."
    idle_text: ClassVar[str] = "Closed: idle timeout."

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.view = self.start_view
        self.iface: str | None = None              # the port an interface view edits
        self.profile: str | None = None            # the named object another sub-view edits
        self.closed = False
        self._confirm: Callable[[str], str] | None = None

    # ---- what a dialect says in its own words
    def view_prompt(self) -> str:
        """The prompt of the current view."""
        raise NotImplementedError

    def banner(self, max_vty: int, users: int) -> str:
        """Shown to a shell before the first prompt."""
        return ""

    def parse_error(self, prompt: str, err: CliError) -> str:
        """A line that does not parse: a caret under column ``err.pos`` of what was typed after ``prompt``."""
        return " " * (len(prompt) + err.pos) + f"^\nError: {err.kind.lower()} at '^'."

    def device_error(self, err: DeviceError) -> str:
        """What the device could not do (its :class:`DeviceError`)."""
        return f"Error: {err}"

    # ---- the machinery
    @property
    def prompt(self) -> str:
        return "" if self._confirm else self.view_prompt()

    @property
    def confirming(self) -> bool:
        """A question (``ask``) awaits its answer: the next line is the answer."""
        return self._confirm is not None

    def ask(self, question: str, answer: Callable[[str], str]) -> str:
        """Print ``question``; the next line goes to ``answer`` (stripped), whose text is printed."""
        self._confirm = answer
        return question

    def decline(self) -> str:
        """Answer a pending question with no (an exec has no one to answer it)."""
        return self.handle_line("n")

    def is_error(self, out: str) -> bool:
        return self.error_marker in out

    def suspend(self) -> None:
        """Ctrl+Z: back to the start view."""
        if self.view != self.start_view:
            self.view, self.iface, self.profile = self.start_view, None, None

    def handle_line(self, line: str) -> str:
        """Run one typed line; returns the output text (lines joined by '\\n', no trailing newline)."""
        if self._confirm:
            answer, self._confirm = self._confirm, None
            return answer(line.strip())
        if len(line) > self.max_line:
            # the terminal's editing buffer takes no more (it rings instead) and would run what it
            # holds; a script's over-long line is refused whole rather than run cut short
            return self.too_long_text.format(max_line=self.max_line)
        if any("\udc80" <= ch <= "\udcff" for ch in line):     # bytes that are not UTF-8 (surrogateescape)
            return self.not_utf8_text
        if not line.strip():
            return ""
        prompt = self.prompt
        try:
            cmd, args = parse(line, self.view, self.gw.resolve_if, self.commands)
        except CliError as e:
            return self.parse_error(prompt, e)
        try:
            with self.gw.lock:
                return getattr(self, "do_" + cmd.handler)(**args) or ""
        except Fail as e:
            return str(e)
        except DeviceError as e:
            return self.device_error(e)


def replay_indented(gw: Gateway, text: str, top_view: str, comments: tuple[str, ...] = ("#", "!"),
                    ends: tuple[str, ...] = ("return",)) -> list[str]:
    """Replay a configuration written the usual way (VRP, IOS): a line at column 0 runs in
    ``top_view``, an indented one in the view the line above it entered; comment lines and the
    closing word are skipped.  Returns the refused lines, each with the device's last line of output."""
    s = gw.session()
    s.view, errors = top_view, []
    for raw in text.splitlines():
        if not raw.strip() or raw.lstrip().startswith(comments) or raw.strip() in ends:
            continue
        if not raw.startswith(" "):
            s.view, s.iface, s.profile = top_view, None, None
        out = s.handle_line(raw.strip())
        if s.is_error(out):
            errors.append(f"{raw.strip()}: {out.strip().splitlines()[-1]}")
    return errors


def uptime(gw: Gateway) -> tuple[int, int, int]:
    """Days, hours, minutes since the device started (for a dialect's version text)."""
    up = int(time.time() - gw.started)
    return up // 86400, up % 86400 // 3600, up % 3600 // 60

