"""The trial's scenarios, found where they are written: the ``@pytest.mark.scenario("NAME")``
markers of the case modules (``test_*.py``) beside the profiles file.

A new scenario is one case module with its marker; the profiles file then gives it parameters
and criteria.  The modules are read, not imported (``ast``), so loading a profiles file runs no
test code and needs no lab.
"""

from __future__ import annotations

import ast
from pathlib import Path

CASES_DIR = Path(__file__).resolve().parents[2] / "cases"


def _marker_name(node: ast.Call) -> str | None:
    """NAME of a call ``*.scenario("NAME")`` (``pytest.mark.scenario``, ``mark.scenario``)."""
    f = node.func
    if isinstance(f, ast.Attribute) and f.attr == "scenario" and len(node.args) == 1:
        arg = node.args[0]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return arg.value
    return None


def scenarios_in(folder: Path) -> dict[str, Path]:
    """Scenario name -> the case module that declares it, for every ``test_*.py`` in ``folder``
    (not recursive).  A module that does not parse is skipped: pytest reports it when it runs."""
    found: dict[str, Path] = {}
    for path in sorted(Path(folder).glob("test_*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        except (OSError, SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and (name := _marker_name(node)):
                found.setdefault(name, path)
    return found


def known_scenarios(profiles_file: Path | None = None) -> dict[str, Path]:
    """The scenarios a profiles file may name: the case modules beside it, then the shipped
    ``cases/`` (so a profiles file kept elsewhere still knows the trial's own)."""
    out: dict[str, Path] = {}
    if profiles_file is not None:
        out.update(scenarios_in(Path(profiles_file).resolve().parent))
    for name, path in scenarios_in(CASES_DIR).items():
        out.setdefault(name, path)
    return out
