"""The ast.parse guard against CPython's cross-thread AST recursion-depth race (python/cpython#106905)."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap

from testbed import astguard

# Eight threads parse one dcilab module over and over while every garbage collection runs Python
# code (which lets another thread take the GIL in the middle of a parse).  On Python 3.11.7 this
# raised the SystemError 6 times in about a second without the guard.
RACE = textwrap.dedent("""
    import ast, difflib, gc, random, sys, threading
    from pathlib import Path
    from testbed import astguard
    if sys.argv[1] == "guarded":
        assert astguard.install(force=True)
    def during_gc(phase, info):
        a = [f"{random.randint(0, 9)}\\n" for _ in range(50)]
        list(difflib.unified_diff(a, a[::-1]))
    gc.callbacks.append(during_gc)
    source = Path(astguard.__file__).with_name("pytest_plugin.py").read_text()
    errors = []
    def parse_often():
        try:
            for _ in range(15):
                ast.parse(source)
        except SystemError as exc:
            errors.append(exc)
    threads = [threading.Thread(target=parse_often) for _ in range(8)]
    for t in threads: t.start()
    for t in threads: t.join()
    print(len(errors), errors[:1])
""")


def race(mode: str) -> int:
    r = subprocess.run([sys.executable, "-c", RACE, mode], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return int(r.stdout.split()[0])


def test_affected_versions() -> None:
    assert astguard.affected((3, 11, 2))            # Debian 12
    assert astguard.affected((3, 11, 7))
    assert not astguard.affected((3, 11, 8))
    assert astguard.affected((3, 12, 1))
    assert not astguard.affected((3, 12, 2))
    assert not astguard.affected((3, 13, 0))


def test_guarded_parses_in_many_threads_never_fail() -> None:
    assert race("guarded") == 0


def test_the_plugin_installs_the_guard_where_this_python_needs_it() -> None:
    # this process loaded testbed.pytest_plugin, as `dcilab trial` and `pytest cases/` do
    assert astguard.installed() == astguard.affected()
    if astguard.installed():
        assert ast.parse("x = 1").body[0].targets[0].id == "x"
        assert ast.parse.__name__ == "parse"
