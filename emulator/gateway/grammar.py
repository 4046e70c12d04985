"""The command-grammar engine every gateway dialect uses: a table of commands in, a parser out.

A dialect writes its commands as text, one line per form, with the views they are allowed in and
the session handler they run::

    (IFV, "qos lr outbound cir <cir> cbs <cbs>", "qos_lr")

``<name>`` is a parameter checked by the dialect's converter of that name (``<if>`` is an
interface, resolved against the device's ports; a converter that is :data:`REST` takes the rest
of the line as typed), ``key=word`` is a keyword recorded as argument ``key``.  :func:`compile_table`
turns the table into :class:`Cmd` patterns and :func:`parse` matches a typed line against them the
way vendor CLIs do: every keyword may be abbreviated to a unique prefix, and a line that does not
parse raises :class:`CliError` with the column of the offending word (the dialect prints the caret
and the message in its own words).  Nothing here knows any vendor's syntax.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

# CliError kinds (VRP's words, which the VRP dialect prints as they are; another dialect maps them)
UNRECOGNIZED = "Unrecognized command"
INCOMPLETE = "Incomplete command"
WRONG_PARAMETER = "Wrong parameter"
AMBIGUOUS = "Ambiguous command"
TOO_MANY = "Too many parameters"


class CliError(Exception):
    """A line that does not parse: ``kind`` is one of the kinds above, ``pos`` the column to mark."""

    def __init__(self, kind: str, pos: int) -> None:
        super().__init__(kind)
        self.kind = kind
        self.pos = pos


class Fail(Exception):
    """A command that parsed but cannot be done; the message is printed as is."""


@dataclass
class Kw:
    word: str
    key: str | None = None          # record the chosen keyword under this argument name
    aliases: tuple[str, ...] = ()   # abbreviations that win even when ambiguous (VRP's `q`)


@dataclass
class Param:
    key: str
    conv: Callable[[str], Any]      # returns the value or raises ValueError


@dataclass
class Rest:
    key: str                        # the rest of the line, as typed


@dataclass
class Cmd:
    views: frozenset[str]
    pattern: list[Kw | Param | Rest]
    handler: str


def REST(tok: str) -> str:
    """The converter that marks a parameter as free text: the rest of the line, as typed."""
    return tok


Table = Iterable[tuple[frozenset[str], str, str]]


def int_range(lo: int, hi: int) -> Callable[[str], int]:
    """A decimal integer in [lo, hi] (at most 10 digits: no sign, no hex, no exponent)."""
    def conv(tok: str) -> int:
        if not re.fullmatch(r"\d{1,10}", tok):
            raise ValueError(tok)
        v = int(tok)
        if not lo <= v <= hi:
            raise ValueError(tok)
        return v
    return conv


def matching(regex: str) -> Callable[[str], str]:
    """A word that fully matches ``regex``, kept as typed."""
    def conv(tok: str) -> str:
        if not re.fullmatch(regex, tok):
            raise ValueError(tok)
        return tok
    return conv


def interface(tok: str) -> str:
    """``<if>``: kept as typed here; :func:`parse` resolves it against the device's ports."""
    return tok


def spec(text: str, params: dict[str, Callable[[str], Any]]) -> list[Kw | Param | Rest]:
    """'display interface <if>' -> tokens; <name> refers to ``params``; 'key=word' records the keyword."""
    out: list[Kw | Param | Rest] = []
    for w in text.split():
        if w.startswith("<"):
            key = w.strip("<>")
            out.append(Rest(key) if params[key] is REST else Param(key, params[key]))
        elif "=" in w:
            key, word = w.split("=")
            out.append(Kw(word, key=key))
        else:
            out.append(Kw(w))
    return out


def compile_table(table: Table, params: dict[str, Callable[[str], Any]],
                  aliases: dict[str, tuple[str, ...]] | None = None) -> list[Cmd]:
    """The commands of a dialect's table; ``aliases``: handler -> abbreviations of its first word
    that win even where they are ambiguous (VRP's single-letter ``q`` for ``quit``)."""
    cmds = [Cmd(views, spec(text, params), handler) for views, text, handler in table]
    for c in cmds:
        if aliases and c.handler in aliases and isinstance(c.pattern[0], Kw):
            c.pattern[0].aliases = aliases[c.handler]
    return cmds


def tokenize(line: str) -> list[tuple[str, int]]:
    """Words with their columns; the two-word interface form `100GE 1/0/1` becomes one word."""
    toks = [(m.group(), m.start()) for m in re.finditer(r"\S+", line)]
    out: list[tuple[str, int]] = []
    for tok, pos in toks:
        if out and re.fullmatch(r"\d+(?:/\d+)+", tok) and re.fullmatch(r"\d*[A-Za-z][A-Za-z-]*", out[-1][0]) \
                and len(out) >= 2:
            out[-1] = (out[-1][0] + tok, out[-1][1])
        else:
            out.append((tok, pos))
    return out


def unsafe_char_at(text: str) -> int | None:
    """Where ``text`` holds a control character or a line/paragraph separator, if it does.

    Free text (a description) is saved as one line of the configuration, and a saved configuration
    is replayed with str.splitlines(): a break it honours (\\v, \\f, \\x1c-\\x1e, \\x85, U+2028,
    U+2029 as well as \\r and \\n) would make the rest of the text a command of its own."""
    for i, ch in enumerate(text.rstrip()):
        if unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            return i
    return None


def parse(line: str, view: str, resolve_if: Callable[[str], str],
          commands: list[Cmd]) -> tuple[Cmd, dict[str, Any]]:
    """Match a line against the ``commands`` allowed in ``view``; raises CliError with the caret position."""
    toks = tokenize(line)
    cands: list[tuple[Cmd, dict[str, Any]]] = [(c, {}) for c in commands if view in c.views]
    for i, (tok, pos) in enumerate(toks):
        low = tok.lower()
        exact, prefix, params, rests = [], [], [], []
        had_param = had_overflow = False
        for cmd, args in cands:
            if i >= len(cmd.pattern):
                had_overflow = True
                continue
            sp = cmd.pattern[i]
            if isinstance(sp, Kw):
                if low == sp.word or low in sp.aliases:
                    exact.append((cmd, args, sp))
                elif sp.word.startswith(low):
                    prefix.append((cmd, args, sp))
            elif isinstance(sp, Rest):
                rests.append((cmd, {**args, sp.key: line[pos:].strip()}))
            else:
                had_param = True
                try:
                    val = resolve_if(tok) if sp.key == "if" else sp.conv(tok)
                except ValueError:
                    continue
                params.append((cmd, {**args, sp.key: val}))
        if rests:                                         # free text swallows the rest of the line
            bad = unsafe_char_at(line[pos:])
            if bad is not None:
                raise CliError(WRONG_PARAMETER, pos + bad)
            return rests[0]
        if exact:
            chosen = exact
        elif prefix:
            if len({s.word for _, _, s in prefix}) > 1:
                raise CliError(AMBIGUOUS, pos)
            chosen = prefix
        else:
            chosen = []
        if chosen:
            cands = [(c, {**a, s.key: s.word} if s.key else a) for c, a, s in chosen]
        elif params:
            cands = params
        elif had_param:
            raise CliError(WRONG_PARAMETER, pos)
        elif had_overflow and i > 0:
            raise CliError(TOO_MANY, pos)
        else:
            raise CliError(UNRECOGNIZED, pos)
    complete = [(c, a) for c, a in cands if len(c.pattern) == len(toks)]
    if complete:
        return complete[0]
    end = toks[-1][1] + len(toks[-1][0]) + 1 if toks else 0
    raise CliError(INCOMPLETE, end)
