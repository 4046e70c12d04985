"""Inventories: the shipped ones load; every broken one in tests/inventories/ is refused with each of
its problems on the right line, with a field path and a fix, and never a traceback.

Each file in tests/inventories/ starts with comment lines:

    # expect: <a substring of a reported problem: its FILE:LINE line or its fix>   (one or more)
    # expect-line: <N>                              (one for all, or one per expect, in order)

Each expect must be found in a problem reported on its line, and every problem reported must be
one that some expect names: one mistake, one message.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.cli import main
from testbed.inventory import DeviceKind, InventoryError, load_inventory
from testbed.inventory.load import format_loc

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "inventory").glob("*.yaml"))
CORPUS = sorted((ROOT / "tests" / "inventories").glob("*.yaml"))

# "FILE:LINE: [field:] message" then "    fix: ..."
PROBLEM_RE = re.compile(r"^(?P<file>\S+?):(?P<line>\d+): (?P<rest>.+)$")


def _expectations(path: Path) -> list[tuple[str, int]]:
    expects: list[str] = []
    lines: list[int] = []
    for text in path.read_text(encoding="utf-8").splitlines():
        if not text.startswith("#"):
            break
        if m := re.match(r"^# expect: (.+)$", text):
            expects.append(m.group(1).rstrip())
        elif m := re.match(r"^# expect-line: (\d+)\s*$", text):
            lines.append(int(m.group(1)))
    assert expects, f"{path.name}: no '# expect:' line in its leading comments"
    assert len(lines) in (1, len(expects)), f"{path.name}: give one '# expect-line:' or one per '# expect:'"
    if len(lines) == 1:
        lines *= len(expects)
    return list(zip(expects, lines, strict=True))


def _problems(output: str, file: Path) -> list[tuple[int, str, str]]:
    """(line, 'FILE:LINE: ...' text, fix) for each problem printed about ``file``."""
    out = []
    text = output.splitlines()
    for i, line in enumerate(text):
        m = PROBLEM_RE.match(line)
        if m and m.group("file") == str(file):
            fix = text[i + 1] if i + 1 < len(text) else ""
            out.append((int(m.group("line")), line, fix))
    return out


def _check(capsys: pytest.CaptureFixture[str], *files: Path) -> tuple[int, str]:
    rc = main(["inventory", "check", *map(str, files)])
    captured = capsys.readouterr()
    return rc, captured.out + captured.err


# --- the shipped inventories --------------------------------------------------------------

def test_shipped_inventories_are_there() -> None:
    names = {p.name for p in SHIPPED}
    assert {"emulated.yaml", "lab.example.yaml"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_inventory_loads(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inv = load_inventory(path)
    assert inv.source == path.resolve()
    assert len(inv.sites) == 2 and inv.services
    rc, out = _check(capsys, path)
    assert rc == 0, out
    assert out.startswith(f"{path}: OK: {inv.name} ")


def test_example_describes_real_gear() -> None:
    inv = load_inventory(ROOT / "inventory" / "lab.example.yaml")
    assert not inv.is_emulated
    for kind in DeviceKind:
        assert inv.devices_of(kind), f"lab.example.yaml shows no {kind.value}"
    svc = inv.services[0]
    assert svc.line_gbps == 800 and svc.client_ports.gbps == 800
    assert svc.protection_path and svc.restoration_paths
    assert inv.metrics is not None and inv.metrics.token is not None and inv.metrics.token.env


# --- the corpus of broken inventories -----------------------------------------------------

def test_corpus_is_there() -> None:
    assert len(CORPUS) >= 25


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_broken_inventory_is_refused(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expected = _expectations(path)
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    rc, out = _check(capsys, path)
    assert rc == 1, out
    assert "Traceback" not in out
    n = len(info.value.problems)
    assert out.startswith(f"{n} problem{'s' if n != 1 else ''} in {path}:\n"), out
    printed = _problems(out, path)
    assert len(printed) == n, out
    for _, line, fix in printed:
        assert re.match(r"^    fix: \S", fix), f"no fix for: {line}\n{out}"
    matched = set()
    for substring, line_no in expected:
        hits = [i for i, p in enumerate(printed) if p[0] == line_no and substring in p[1] + "\n" + p[2]]
        assert hits, f"expected {substring!r} on line {line_no}; got:\n{out}"
        matched.update(hits)
    extra = [printed[i][1] for i in range(len(printed)) if i not in matched]
    assert not extra, f"problems reported beyond the expected ones: {extra}\n{out}"


def test_cli_as_a_command_checks_every_file() -> None:
    """The real entry point: several files at once, one good; exit 1; no traceback."""
    good = ROOT / "inventory" / "emulated.yaml"
    proc = subprocess.run([sys.executable, "-c", "import sys; from testbed.cli import main; sys.exit(main())",
                           "inventory", "check", str(good), *map(str, CORPUS)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1
    assert "Traceback" not in out
    assert f"{good}: OK: " in proc.stdout
    for path in CORPUS:
        assert re.search(rf"^\d+ problems? in {re.escape(str(path))}:$", proc.stderr, re.M), path.name


def test_unreadable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere.yaml"
    rc, out = _check(capsys, missing)
    assert rc == 1
    assert f"{missing}: cannot read the file" in out and "fix: " in out


# --- properties of the report -------------------------------------------------------------

def test_independent_problems_are_all_reported() -> None:
    """A schema error does not hide consistency problems elsewhere, nor the other way round."""
    path = ROOT / "tests" / "inventories" / "several-problems.yaml"
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    problems = info.value.problems
    assert [p.field for p in problems] == [
        "devices[2].kind",                    # schema: unknown kind
        "devices[4].mgmt.address",            # consistency: outside the emulated management plan
        "devices[5].credentials.password",    # schema: literal secret
        "services[0].client_ports",           # consistency: clients exceed the line
        "emulation.address_plan.line",        # consistency: outside 198.18.0.0/15
    ]
    assert [p.line for p in problems] == sorted(p.line for p in problems)
    assert len({p.line for p in problems}) == 5


def test_field_paths_name_the_list_index() -> None:
    path = ROOT / "tests" / "inventories" / "literal-password.yaml"
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    (problem,) = info.value.problems
    assert problem.field == "devices[3].credentials.password"
    assert str(problem).startswith(f"{path}:{problem.line}: devices[3].credentials.password: a literal secret")
    assert "Huawei@123" not in str(info.value), "the secret itself must not be echoed"
    assert format_loc(("fiber_paths", 0, "roadms", 1)) == "fiber_paths[0].roadms[1]"
    assert format_loc(("emulation", "personalities", "dc-b-gw")) == "emulation.personalities.dc-b-gw"


MERGED = """\
version: 1
name: merge-test
sites:
  - {name: dc-a, fabric_gbps: 3200}
  - {name: dc-b, fabric_gbps: 3200}
devices:
  - &node
    name: dc-a-gpu01
    kind: gpu_node
    site: dc-a
    mgmt: {address: 192.0.2.11, port: 2222}
    credentials:
      <<: {username: root, ssh_key: {path: keys/id_ed25519}}
      username: dcilab                # overrides the merged one: not a duplicate key
    host_key: {known_hosts: ../shared/known_hosts}
    python: /opt/venv/bin/python
  - <<: *node
    name: dc-b-gpu01
    site: dc-b
    mgmt: {address: 192.0.2.111}
"""


def test_merge_keys_and_relative_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lab = tmp_path / "lab"
    lab.mkdir()
    (lab / "inv.yaml").write_text(MERGED, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    inv = load_inventory("lab/inv.yaml")             # a relative path to the inventory itself
    assert inv.source == lab / "inv.yaml"
    a, b = inv.devices
    assert (b.name, b.site, b.kind) == ("dc-b-gpu01", "dc-b", DeviceKind.GPU_NODE)
    assert b.credentials == a.credentials and b.python == a.python    # merged from the anchor
    assert b.credentials.username == "dcilab"       # a merge inside a merged entry, met twice
    assert (a.port, b.port) == (2222, 22)            # the merge is shallow: b's own mgmt replaces a's whole
    assert inv.resolve_path(b.credentials.ssh_key.path) == lab / "keys" / "id_ed25519"
    assert inv.resolve_path(b.host_key.known_hosts) == tmp_path / "shared" / "known_hosts"
    assert inv.resolve_path("/etc/dcilab/key") == Path("/etc/dcilab/key")
    assert inv.resolve_path("~/.ssh/id_ed25519") == Path.home() / ".ssh" / "id_ed25519"


def test_mistake_in_an_anchor_is_reported_where_it_is_written(tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(MERGED.replace("ssh_key: {path: keys/id_ed25519}}", "password: s3cret}"), encoding="utf-8")
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    anchor_line = MERGED.splitlines().index("      <<: {username: root, ssh_key: {path: keys/id_ed25519}}") + 1
    assert [(p.line, p.field) for p in info.value.problems] == [
        (anchor_line, "devices[0].credentials.password"), (anchor_line, "devices[1].credentials.password")]
    assert all(p.message == "a literal secret is written here" for p in info.value.problems)


# --- alias bombs (issue 16) ------------------------------------------------------------------

def _alias_bomb(levels: int) -> str:
    """Each level names the one before ten times: 10**levels values from a few hundred bytes."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_naming_the_file_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(_alias_bomb(5), encoding="utf-8")   # 10**6 values from 334 bytes
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    assert len(info.value.problems) == 1, str(info.value)[:300]
    [problem] = info.value.problems
    assert problem.file == path and problem.line == 5    # a4: the first value that expands past the limit
    assert "aliases" in problem.message and "expand to more than" in problem.message
    assert "write the repeated part out" in problem.fix
    assert str(path) in str(info.value)


@pytest.mark.parametrize("text, line", [
    ("a: &a [*a]\n", 1),                                  # a sequence that contains itself
    ("a: &a {b: 1}\nc: &c {<<: *c, d: 2}\n", 2),         # a merge of the mapping being built
])
def test_recursive_alias_is_refused(tmp_path: Path, text: str, line: int) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    [problem] = info.value.problems
    assert (problem.line, problem.message) == (line, "an alias (*name) refers to a value that contains it")


def test_deep_nesting_is_refused_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    assert "nested too deeply" in info.value.problems[0].message


def test_deep_nesting_and_bytes_that_are_not_utf8_name_their_line(tmp_path: Path) -> None:
    """Found by fuzzing: these were reported with the file alone (the depth as a RecursionError caught
    after the fact, the encoding by the decoder, a control character by YAML's reader with an
    offset), so nobody could find the place in a long file."""
    path = tmp_path / "deep.yaml"
    path.write_text("name: x\nsites:\n  - " + "[" * 70 + "]" * 70 + "\n", encoding="utf-8")
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    [problem] = info.value.problems
    assert problem.line == 3 and "nested too deeply to read (more than 64 levels)" in problem.message
    path.write_bytes(b"name: x\ndescription: caf\xe9\n")
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    [problem] = info.value.problems
    assert problem.line == 2 and "not UTF-8" in problem.message
    path.write_bytes(b"name: x\n\ndescription: a\x08b\n")     # a control character YAML refuses
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    [problem] = info.value.problems
    assert problem.line == 3 and "character '\\x08' (U+0008) is not allowed" in problem.message


@pytest.mark.parametrize("prefix", ["/31", "/32"])
def test_a_management_plan_of_one_or_two_addresses_is_reported_not_a_traceback(tmp_path: Path, prefix: str) -> None:
    """Found by fuzzing: ipaddress gives the hosts of a /32 as a list, not an iterator, and
    next() on it raised TypeError out of the loader."""
    path = tmp_path / "inv.yaml"
    path.write_text((ROOT / "inventory" / "emulated.yaml").read_text().replace(
        "management: 198.18.0.0/24", f"management: 198.18.0.0{prefix}"))
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    assert any(p.field == "devices[0].mgmt.address" and "outside the management plan" in p.message
               for p in info.value.problems), str(info.value)


def test_merge_keys_in_the_shipped_inventories_stay_under_the_limit() -> None:
    import yaml

    from testbed.yamlsource import MAX_VALUES, expanded_size
    for path in [*SHIPPED, ROOT / "cases" / "profiles.yaml"]:
        root = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
        assert expanded_size(root) * 20 < MAX_VALUES, path
