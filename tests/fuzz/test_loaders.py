"""Fuzz the inventory loader (``testbed.inventory.load_inventory``) and the profiles loader
(``testbed.trial.profile.load_trial``) with the shipped files mutated line by line (values,
indentation, anchors, aliases, tags, truncation, bytes that are not UTF-8), mutated as data
(any node replaced by a value of another type, deep nesting, keys removed, renamed, added) and
with random YAML-like text.

Property: a loader either loads or raises its own error (InventoryError, ProfileError) whose
every problem names the file and a line within it or a field; never a traceback of another
exception type.
"""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from testbed.inventory import InventoryError, load_inventory
from testbed.inventory.load import Problem
from testbed.trial.profile import ProfileError, load_trial

from .support import fuzz

ROOT = Path(__file__).resolve().parents[2]
INVENTORIES = sorted([ROOT / "inventory" / "emulated.yaml", ROOT / "inventory" / "lab.example.yaml",
                      *(ROOT / "tests" / "inventories").glob("*.yaml")])
PROFILES = [ROOT / "cases" / "profiles.yaml"]
TEXT = {p: p.read_bytes() for p in INVENTORIES + PROFILES}
_n = itertools.count()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("loaders")


# ------------------------------------------------------------------------------- strategies

SCALARS = ["~", "null", "true", "no", "0", "-1", "1e400", ".nan", "-.inf", "0x1F", "0o17", "1_000", "2024-02-30",
           "2024-01-01T00:00:00Z", "''", '""', "'x", '"\\x"', "!!int abc", "!!float x", "!!binary ====", "!!python/name:os.system",
           "!custom 1", "*missing", "&a 1", "*a", "{a: 1}", "[1, 2", "[[[[[]]]]]", "{", "}", "- x", "? x", "|", ">-",
           "%YAML 1.2", "---", "...", "<<: *a", "<<: 1", "@x", "`x", "\t", "\x00", "\x85", "\u2028", "\ufeff",
           "198.18.0.256", "198.18.0.0/32", "198.18.0.0/31", "::1/128", "SHA256:" + "A" * 43, "http://user:pw@h",
           "x" * 300]
scalar = st.one_of(st.sampled_from(SCALARS), st.text(max_size=12), st.integers().map(str))


@st.composite
def line_mutation(draw: st.DrawFn, text: bytes) -> bytes:
    lines = text.split(b"\n")
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            lines = [b""]
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["value", "value", "delete", "duplicate", "indent", "insert", "swap", "bytes",
                                   "truncate", "anchor"]))
        line = lines[i]
        if op == "value":
            head, sep, _ = line.partition(b":")
            new = draw(scalar).encode("utf-8", "surrogatepass")
            lines[i] = head + b": " + new if sep else line.split(b"- ")[0] + b"- " + new
        elif op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, line)
        elif op == "indent":
            d = draw(st.integers(-4, 4))
            lines[i] = b" " * d + line if d > 0 else line[-d:]
        elif op == "insert":
            lines.insert(i, draw(st.sampled_from([b"", b"x: 1", b"  - y", b"unknown_field: 3", b"---", b"...", b"&a x: 1",
                                                  b"<<: *gpu", b"? [a]", b"- &b [*b]"])))
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "bytes":
            at = draw(st.integers(0, len(line)))
            lines[i] = line[:at] + draw(st.binary(min_size=1, max_size=4)) + line[at:]
        elif op == "truncate":
            lines = lines[:i] + [line[:draw(st.integers(0, len(line)))]]
        else:
            lines[i] = line.replace(b": ", b": &" + draw(st.sampled_from([b"a", b"gpu", b"x"])) + b" ", 1)
    return b"\n".join(lines)


def deep(depth: int) -> Any:
    v: Any = 1
    for i in range(depth):
        v = [v] if i % 2 else {"k": v}
    return v


values = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10), st.sampled_from(SCALARS),
    st.just(dt.date(2024, 1, 1)), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5),
                                                                                        st.integers(), max_size=3),
    st.integers(1, 900).map(deep), st.builds(lambda: {"env": "X", "file": "/x"}), st.builds(lambda: [None] * 3),
)                                            # (builds, not just: a later mutation may change the value in place)


def paths(node: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [here]
    if len(here) >= 12:                      # a deep value put in by an earlier mutation: mutate its top only
        return out
    if isinstance(node, dict):
        for k, v in node.items():
            out += paths(v, here + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += paths(v, here + (i,))
    return out


@st.composite
def data_mutation(draw: st.DrawFn, text: bytes) -> bytes:
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError):     # the shipped bad examples (yaml-syntax.yaml, bad-date.yaml) stay text
        return text
    for _ in range(draw(st.integers(1, 3))):
        every = paths(data)
        by_field: dict[str, list[tuple[Any, ...]]] = {}   # every field name as likely as any other: `extends`
        for p in every[1:]:                                # (3 places) as much as a criterion's `id` (14)
            by_field.setdefault(p[-1] if isinstance(p[-1], str) else "[]", []).append(p)
        if by_field and draw(st.booleans()):
            where = draw(st.sampled_from(by_field[draw(st.sampled_from(sorted(by_field)))]))
        else:
            where = draw(st.sampled_from(every))
        if not where:
            data = draw(values)
            continue
        parent = data
        for part in where[:-1]:
            parent = parent[part]
        key = where[-1]
        op = draw(st.sampled_from(["replace", "replace", "wrap", "delete", "rename", "add"]))
        if op == "replace":
            parent[key] = draw(values)
        elif op == "wrap":                  # a list or a mapping where one value belongs: extends: [full]
            parent[key] = draw(st.sampled_from([[parent[key]], {"name": parent[key]}, [parent[key], parent[key]]]))
        elif op == "delete":
            del parent[key]
        elif op == "rename" and isinstance(parent, dict):
            parent[draw(st.one_of(st.text(max_size=8), st.integers(), st.booleans()))] = parent.pop(key)
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(values)
        else:
            parent.append(draw(values))
    try:
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True).encode("utf-8", "surrogatepass")
    except RecursionError:                   # too deep for the dumper itself: write it as flow JSON-ish text
        return repr(data).encode()


yamlish = st.lists(st.sampled_from(["a", ":", " ", "\n", "  ", "- ", "[", "]", "{", "}", ",", "&x ", "*x", "!t ", "!!str ",
                                    "? ", "'", '"', "#", "|", ">", "---", "<<", "name", "sites", "devices", "profiles",
                                    "criteria", "version", "1", "\t", "%", "@", "\\", "\x00", "\xff", "é"]),
                   max_size=80).map(lambda t: "".join(t).encode("utf-8", "surrogatepass"))


def documents(files: list[Path]) -> st.SearchStrategy[tuple[Path, bytes]]:
    return st.sampled_from(files).flatmap(lambda p: st.tuples(st.just(p), st.one_of(
        line_mutation(TEXT[p]), data_mutation(TEXT[p]), data_mutation(TEXT[p]), yamlish, st.binary(max_size=200))))


# ------------------------------------------------------------------------------- properties

def check_problems(problems: list[Problem], path: Path, text: bytes) -> None:
    assert problems
    n_lines = text.count(b"\n") + 1
    for p in problems:
        assert p.file == path and isinstance(p.message, str) and p.message and p.fix
        assert p.line is None or 1 <= p.line <= n_lines + 1, p
        assert p.line is not None or p.field, p
        str(p)


@fuzz(150)
@given(doc=documents(INVENTORIES))
def test_the_inventory_loads_or_names_file_line_and_field(folder: Path, doc: tuple[Path, bytes]) -> None:
    src, text = doc
    path = folder / f"inv-{next(_n)}-{src.name}"
    path.write_bytes(text)
    try:
        load_inventory(path)
    except InventoryError as exc:
        check_problems(exc.problems, path, text)
        str(exc)


@fuzz(150)
@given(doc=documents(PROFILES))
def test_the_profiles_load_or_name_file_line_and_field(folder: Path, doc: tuple[Path, bytes]) -> None:
    src, text = doc
    path = folder / f"prof-{next(_n)}-{src.name}"
    path.write_bytes(text)
    try:
        load_trial(path)
    except ProfileError as exc:
        check_problems(exc.problems, path, text)
        str(exc)
