"""Fuzz the gateway's VRP CLI: every command of the grammar with random abbreviations and
arguments (boundary and out-of-range numbers, odd names, free text with control characters and
line separators, over-long lines), in every view; the terminal's line editor with random keys;
and shells and execs over SSH on a local server (no namespaces: fake links and tc).

Properties: every line gets text back (never an exception); a line answered with an error changes
neither the configuration nor the view; the saved configuration changes only when a ``save`` is
confirmed, and whatever was configured replays from it to the same configuration; the editor's
buffer stays bounded and it makes the same lines of the same keys however they are split into
reads; over SSH a hostile shell gets CLI errors or is closed, its VTY is given back, and another
user's shell and execs keep working.
"""

from __future__ import annotations

import itertools
import re
import time
from pathlib import Path
from typing import Any

import paramiko
import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator.gateway.device import Gateway
from emulator.gateway.dialects.vrp import GRAMMAR, MAX_LINE, VrpSession, render_config
from emulator.gateway.server import GatewayServer, password_checker
from emulator.gateway.terminal import ECHO, LineEditor

from .support import GW_PORTS, PASSWORD, USER, FakeLinks, FakeTc, fuzz, ssh_transport, wait_for

_n = itertools.count()

# ------------------------------------------------------------------------------ the grammar

VIEW_ENTRY = {
    "user": [], "system": ["system-view"], "interface": ["system-view", "interface 100GE1/0/1"],
    "dcb-pfc": ["system-view", "dcb pfc"], "drop-profile": ["system-view", "drop-profile p1"],
}
ODD = ["", "\x00", "\t", "\x1b[A", "\x7f", "\u00a0", "\u2028", "\u0085", "\ufeff", "\U0001F600", "\u0663",
       "\uff15", "'", '"', "^", "#", "!", "return", "quit", "&x;", "%s", "{}", "\\"]
INTS = st.one_of(st.integers(-2, 12), st.sampled_from([99, 100, 101, 511, 512, 9999, 10000, 400_000_000, 400_000_001,
                                                       4294967295, 4294967296, 10**12])).map(str)
WORD = st.one_of(st.sampled_from(["p1", "p2", "GW-B", "x" * 31, "x" * 32, "x" * 64, "x" * 65, "a.b_c-d"]),
                 st.text(max_size=10), st.sampled_from(ODD))
IFNAME = st.sampled_from(["100GE1/0/1", "100ge1/0/2", "100GE 1/0/1", "MEth0/0/0", "meth 0/0/0", "100G1/0/1",
                          "GE1/0/1", "100GE1/0/9", "1/0/1", "100GE1/0/1/", "100GE", "Eth1", "100GE1/0/\u0661"])
FREE = st.one_of(st.text(max_size=40), st.sampled_from(ODD), st.integers(200, 600).map(lambda n: "d" * n),
                 st.tuples(st.text(max_size=10), st.sampled_from(ODD), st.text(max_size=10)).map("".join))


def param(key: str) -> st.SearchStrategy[str]:
    if key == "if":
        return IFNAME
    if key in ("name", "sysname"):
        return WORD
    if key == "text":
        return FREE
    return st.one_of(INTS, st.sampled_from(["0x10", "1e3", "+5", "-0", "\u0663", "\uff15", "", "five"]))


@st.composite
def keyword(draw: st.DrawFn, word: str) -> str:
    how = draw(st.integers(0, 9))
    if how <= 5:
        return word
    if how <= 7:
        return word[:draw(st.integers(1, len(word)))]              # an abbreviation, maybe ambiguous
    if how == 8:
        return word.upper()
    return draw(WORD)                                               # a wrong word


@st.composite
def command_line(draw: st.DrawFn) -> str:
    """A command of the grammar with random spellings and arguments, or something else entirely."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.one_of(st.text(max_size=60), st.integers(MAX_LINE - 2, MAX_LINE + 3).map(lambda n: "x" * n)))
    _, spec, _ = draw(st.sampled_from(GRAMMAR))
    toks = []
    for w in spec.split():
        if w.startswith("<"):
            toks.append(draw(param(w.strip("<>"))))
        else:
            toks.append(draw(keyword(w.split("=")[-1])))
    cut = draw(st.integers(0, 9))
    if cut == 0 and toks:
        toks = toks[:draw(st.integers(0, len(toks) - 1))]          # incomplete
    elif cut == 1:
        toks.append(draw(WORD))                                      # too many
    sep = draw(st.sampled_from([" ", " ", " ", "  ", "\t", "\u3000"]))
    return draw(st.sampled_from(["", " ", "\t"])) + sep.join(toks) + draw(st.sampled_from(["", " "]))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gateway")


@fuzz(300)
@given(view=st.sampled_from(list(VIEW_ENTRY)), lines=st.lists(
    st.one_of(command_line(), st.sampled_from(["save", "y", "Y", "yes", "n", "return", "quit"])), min_size=1, max_size=12))
def test_every_line_gets_an_answer_errors_change_nothing_and_the_config_replays(
        folder: Path, view: str, lines: list[str]) -> None:
    saved = folder / f"vrpcfg-{next(_n)}.cfg"
    gw = Gateway("GW-A", GW_PORTS, saved_config=saved, links=FakeLinks(), tc=FakeTc())
    s = VrpSession(gw)
    for c in VIEW_ENTRY[view]:
        assert "Error" not in s.handle_line(c)
    for line in lines:
        config, state = render_config(gw.config), (s.view, s.iface, s.profile)
        on_disk = saved.read_bytes() if saved.exists() else None
        confirming = s.prompt == ""
        out = s.handle_line(line)
        assert isinstance(out, str)
        if s.closed:
            break
        if "Error:" in out and not confirming:
            assert render_config(gw.config) == config, line
            assert (s.view, s.iface, s.profile) == state, line
        if not (confirming and line.strip().lower() in ("y", "yes")):
            assert (saved.read_bytes() if saved.exists() else None) == on_disk, line
    text = render_config(gw.config)
    again = Gateway("GW-A", GW_PORTS, links=FakeLinks(), tc=FakeTc())
    assert again.replay(text) == []
    assert render_config(again.config) == text


# ---------------------------------------------------------------------------- the line editor

KEYS = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"\r", b"\n", b"\r\n", b"\n\r", b"\x03", b"\x1a", b"\x7f", b"\x08", b"\t", b"\x1b", b"\x1b[",
                     b"\x1b[1;5A", b"\x1b[200~", b"\x1bO", b"\xc3", b"\xa9", b"\xe2\x80\xa8", b"\xf0\x9f\x98",
                     b"\x80", b"\xff"]),
    st.integers(MAX_LINE - 3, 3 * MAX_LINE).map(lambda n: b"k" * n),
    command_line().map(lambda s: s.encode("utf-8", "surrogatepass")),
)


def events(data: bytes, cuts: list[int]) -> list[tuple[str, str]]:
    ed = LineEditor()
    out: list[tuple[str, str]] = []
    bounds = sorted({c % (len(data) + 1) for c in cuts})
    for a, b in zip([0, *bounds], [*bounds, len(data)], strict=True):
        out += [ev for ev in ed.feed(data[a:b]) if ev[0] != ECHO]
        assert len(ed.buf) <= MAX_LINE + 1
    return out


@fuzz(300)
@given(keys=st.lists(KEYS, max_size=20).map(b"".join), cuts=st.lists(st.integers(0, 10**6), max_size=10))
def test_the_line_editor_is_bounded_and_reads_the_same_however_split(keys: bytes, cuts: list[int]) -> None:
    whole = events(keys, [])
    assert events(keys, cuts) == whole
    for kind, line in whole:
        assert len(line) <= MAX_LINE + 1
        assert not re.search(r"[\x00-\x1f\x7f]", line), (kind, line)


# ------------------------------------------------------------------------------------ over SSH

@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Any:
    d = tmp_path_factory.mktemp("gateway-ssh")
    gw = Gateway("GW-A", GW_PORTS, saved_config=d / "vrpcfg.cfg", links=FakeLinks(), tc=FakeTc())
    srv = GatewayServer(gw, paramiko.RSAKey.generate(1024), "127.0.0.1", 0,
                        check_password=password_checker(USER, PASSWORD)).start()
    witness = ssh_transport(srv.port)
    hostile = ssh_transport(srv.port)
    chan = witness.open_session()
    chan.get_pty()
    chan.invoke_shell()
    read_until(chan, "<GW-A>")
    try:
        yield srv, chan, hostile
    finally:
        witness.close()
        hostile.close()
        srv.stop()


def read_until(chan: paramiko.Channel, pattern: str, timeout: float = 10.0) -> str:
    """Output up to ``pattern``, or to the channel's end ('' pattern); fails after ``timeout``."""
    buf, deadline = b"", time.monotonic() + timeout
    chan.settimeout(0.1)
    while not (pattern and re.search(pattern, buf.decode("utf-8", "replace"))):
        if time.monotonic() > deadline:
            raise AssertionError(f"never saw {pattern!r}: {buf[-300:]!r}")
        try:
            data = chan.recv(65536)
        except TimeoutError:
            continue
        if not data:
            if pattern:
                raise AssertionError(f"channel closed before {pattern!r}: {buf[-300:]!r}")
            break
        buf += data
    return buf.decode("utf-8", "replace")


PROMPT_AFTER_ESN = r"ESN of slot 1[^\r\n]*\r\n<[^\r\n<>]*>$"       # (a hostile `sysname` may rename it)


def witness_works(chan: paramiko.Channel) -> None:
    chan.send(b"display esn\r")
    read_until(chan, PROMPT_AFTER_ESN)


@fuzz(25)
@given(keys=st.lists(st.one_of(KEYS, command_line().map(lambda s: s.encode() + b"\r")), max_size=15))
def test_a_hostile_shell_gets_errors_or_is_closed_and_the_others_go_on(gateway: Any, keys: list[bytes]) -> None:
    srv, witness, transport = gateway
    chan = transport.open_session()
    chan.get_pty()
    chan.invoke_shell()
    read_until(chan, r"<[^\r\n<>]*>$")
    try:
        for k in keys:
            chan.sendall(k)
        # Whatever state the keys left: end an escape sequence, drop the line, answer a pending
        # `save` with no, go back to the user view; then the session must still answer.
        chan.sendall(b"~\x03\r\x1adisplay esn\r")
        read_until(chan, PROMPT_AFTER_ESN)
    except (AssertionError, OSError):
        if not chan.closed and not chan.eof_received:       # a `quit` may have closed it: that is fine
            raise
    finally:
        chan.close()
    witness_works(witness)
    wait_for(lambda: srv.vty_users == 1, what="the hostile shell's VTY given back")


@fuzz(40)
@given(command=st.one_of(command_line(), st.binary(max_size=3000).map(lambda b: b.decode("latin-1"))))
def test_an_exec_of_anything_answers_with_an_exit_status(gateway: Any, command: str) -> None:
    srv, witness, transport = gateway
    chan = transport.open_session()
    chan.exec_command(command.encode("utf-8", "surrogatepass"))
    read_until(chan, "", timeout=10)
    assert chan.recv_exit_status() in (0, 1)
    chan.close()
    witness_works(witness)
    wait_for(lambda: srv.vty_users == 1, what="the exec's VTY given back")
