"""Load an inventory file and report *every* problem with file, line, field and a fix.

Validation runs in two passes: the schema (pydantic: types, required fields, literal secrets)
and the testbed's own consistency (references between devices, paths and services, and for an
emulated lab the address plan).  The second pass runs on whatever part of the file survived the
first, so one typo does not hide the rest of the problems.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from testbed.inventory import checks
from testbed.inventory.model import NAME_RE, Device, Emulation, FiberPath, Inventory, Metrics, Scheduler, Service, Site
from testbed.yamlsource import FieldPath, YamlSource, YamlSourceError, load_yaml

DOC = "inventory/README.md"


@dataclass(frozen=True)
class Problem:
    file: Path
    line: int | None
    field: str
    message: str
    fix: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else f"{self.file}"
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}\n    fix: {self.fix}"


class InventoryError(Exception):
    """The inventory is unusable; ``problems`` lists all that was found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        n = len(problems)
        file = problems[0].file if problems else "the inventory"
        super().__init__(f"{n} problem{'s' if n != 1 else ''} in {file}:\n" + "\n".join(map(str, problems)))


def format_loc(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _fix_for(err: dict[str, Any]) -> str:
    ctx = err.get("ctx") or {}
    kind = err["type"]
    last = next((p for p in reversed(err["loc"]) if isinstance(p, str) and not p.startswith("[")), "")
    if "fix" in ctx:
        return str(ctx["fix"])
    if kind == "missing":
        return f"add the field '{last}' (see {DOC})"
    if kind == "extra_forbidden":
        return f"remove '{last}' or correct its spelling; the fields allowed here are listed in {DOC}"
    if kind in ("enum", "literal_error"):
        return f"use one of: {ctx.get('expected', '?')}"
    pattern = str(ctx.get("pattern", ""))
    if kind == "string_pattern_mismatch" and pattern == NAME_RE:
        return "names are lower-case letters, digits and '-', starting with a letter or digit, at most 31 characters"
    if kind == "string_pattern_mismatch" and pattern.startswith("^SHA256:"):
        return "write the host key's fingerprint as 'ssh-keygen -lf KEY.pub' prints it: SHA256: and 43 base64 characters"
    if kind == "string_pattern_mismatch" and pattern.startswith("^[A-Za-z_]"):
        return "write the name of an environment variable: letters, digits and '_', not starting with a digit"
    if kind == "string_pattern_mismatch" and pattern.startswith("^[a-z][a-z0-9]{0,5}$"):
        return ("write 1-6 lower-case letters and digits, starting with a letter, no '-' (e.g. dc2): "
                "it names the lab's namespaces and links, which Linux limits to 15 characters")
    if kind == "string_pattern_mismatch" and pattern.startswith("^https?://"):
        return "write a URL such as http://influxdb.example.net:8086"
    if kind.startswith("ip_") or "ip" in kind and "address" in kind:
        return "write an address such as 198.18.0.11"
    if kind.startswith(("greater", "less")):
        return f"use a value that is {err['msg'].removeprefix('Input should be ')}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"write '{last}' as a mapping of fields (see {DOC})"
    if kind == "list_type":
        return f"write '{last}' as a list ('- item' lines)"
    if kind == "too_short":
        return f"'{last}' needs more entries: {err['msg']}"
    return f"see {DOC} for what this field takes"


def _message(err: dict[str, Any]) -> str:
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        return "unknown field"
    if err["type"] == "missing":
        return "required field is missing"
    return msg.removeprefix("Value error, ")


def _problems_from(exc: ValidationError, src: YamlSource, prefix: FieldPath = ()) -> list[Problem]:
    out = []
    for err in exc.errors(include_url=False):
        loc = prefix + tuple(p for p in err["loc"] if p != "[key]")
        out.append(Problem(src.path, src.line_of(loc), format_loc(loc), _message(err), _fix_for(err)))
    return out


SECTIONS: dict[str, type[BaseModel]] = {
    "sites": Site, "devices": Device, "fiber_paths": FiberPath, "services": Service,
}


def load_inventory(path: str | Path) -> Inventory:
    """Load and validate; raise InventoryError listing every problem found.  The lab's extension
    modules (``DCILAB_PLUGINS``) are imported first: the drivers they add are valid names here."""
    from emulator.plugins import PluginError, load_plugins
    path = Path(path)
    try:
        load_plugins()
    except PluginError as exc:
        raise InventoryError([Problem(path, None, "", str(exc), "see README 'Extending dcilab'")]) from None
    try:
        src = load_yaml(path)
    except YamlSourceError as exc:
        raise InventoryError([Problem(path, exc.line, "", str(exc), exc.fix)]) from None
    if not isinstance(src.data, dict):
        empty = "the file is empty: " if src.data is None else ""
        raise InventoryError([Problem(path, src.lines.get((), 1), "",
                                      f"{empty}the inventory must be a YAML mapping (name:, sites:, devices:, ...)",
                                      f"start from inventory/lab.example.yaml; see {DOC}")])
    problems: list[Problem] = []
    shape_broken = False
    try:
        inv = Inventory.model_validate(src.data)
    except ValidationError as exc:
        problems += _problems_from(exc, src)
        partial = _partial(src)
        shape_broken = any(_section_unreadable(err) for err in exc.errors(include_url=False))
    else:
        partial = checks.Parts(list(enumerate(inv.sites)), list(enumerate(inv.devices)),
                               list(enumerate(inv.fiber_paths)), list(enumerate(inv.services)),
                               inv.metrics, inv.emulation, inv.scheduler)
    raw_names = {sec: {str(item.get("name")) for item in _list(src.data.get(sec)) if isinstance(item, dict)}
                 for sec in SECTIONS}
    # With a section missing, misspelt or not a list, every reference into it would be reported
    # as missing: the consistency checks wait until the file's shape is right.
    for loc, message, fix in () if shape_broken else checks.run(partial, raw_names):
        problems.append(Problem(path, src.line_of(loc), format_loc(loc), message, fix))
    if problems:
        problems.sort(key=lambda p: (p.line or 0))
        raise InventoryError(_dedupe(problems))
    inv._source = path.resolve()
    return inv


def _section_unreadable(err: Any) -> bool:
    loc = err["loc"]
    if len(loc) != 1:
        return False
    if err["type"] == "extra_forbidden":
        return bool(difflib.get_close_matches(str(loc[0]), SECTIONS, n=1))
    return loc[0] in SECTIONS


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _partial(src: YamlSource) -> checks.Parts:
    """The parts of an invalid file that validate on their own, with their indexes kept."""
    data = src.data
    lists: dict[str, list[tuple[int, Any]]] = {}
    for sec, model in SECTIONS.items():
        items = data.get(sec)
        good: list[tuple[int, Any]] = []
        if isinstance(items, list):
            for i, item in enumerate(items):
                try:
                    good.append((i, model.model_validate(item)))
                except ValidationError:
                    pass
        lists[sec] = good
    singles: dict[str, Any] = {}
    for sec, model in (("metrics", Metrics), ("emulation", Emulation), ("scheduler", Scheduler)):
        try:
            singles[sec] = model.model_validate(data[sec]) if data.get(sec) is not None else None
        except ValidationError:
            singles[sec] = checks.INVALID
    return checks.Parts(lists["sites"], lists["devices"], lists["fiber_paths"], lists["services"],
                        singles["metrics"], singles["emulation"], singles["scheduler"])


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple[Any, ...]] = set()
    out = []
    for p in problems:
        key = (p.line, p.field, p.message)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out
