"""Load YAML while remembering which line each value came from.

Inventory errors must point at a line an engineer can jump to; plain ``yaml.safe_load`` forgets
positions, so we compose the node tree once and keep a map from field path to line number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

FieldPath = tuple[str | int, ...]

MAX_VALUES = 100_000
"""Values a file may expand to, each alias (*name) counted at every use.  The shipped inventories
and profiles expand to under a thousand; a 400-byte alias bomb (each level ten aliases of the one
before) passes the limit at its fifth level; each level more took ten times longer to load."""


MAX_DEPTH = 64
"""Collections inside collections a file may have; the shipped inventories and profiles use six.
Composing and constructing recurse once per level, so a deeper file would end in RecursionError
(with no line to show): the depth is measured first on the parser's events, which do not recurse."""


class YamlSourceError(Exception):
    """The file is not readable YAML; carries the line of the first problem."""

    def __init__(self, message: str, line: int | None, fix: str = "correct the YAML at that line") -> None:
        super().__init__(message)
        self.line = line
        self.fix = fix


@dataclass
class YamlSource:
    """Parsed data plus the line (1-based) where each field path starts."""

    path: Path
    data: Any
    lines: dict[FieldPath, int] = field(default_factory=dict)

    def line_of(self, loc: FieldPath) -> int | None:
        """Line of the deepest part of ``loc`` that exists in the file (a missing field
        points at its parent mapping)."""
        loc = tuple(loc)
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return self.lines.get((), None)


def load_yaml(path: Path) -> YamlSource:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise YamlSourceError(f"cannot read the file: {exc.strerror or exc}", None,
                              "check the path; relative paths are from the current directory") from exc
    except UnicodeDecodeError as exc:
        line = exc.object[:exc.start].count(b"\n") + 1
        raise YamlSourceError(f"not UTF-8 text: {exc.reason}", line, "save the file as UTF-8") from exc
    try:
        check_depth(text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise YamlSourceError(f"YAML syntax: {exc.problem or exc}", line) from exc
    except yaml.reader.ReaderError as exc:  # not a MarkedYAMLError: it knows the offset, not the line
        ch = exc.character if isinstance(exc.character, str) else chr(exc.character)
        escaped = ch.encode("unicode_escape").decode()
        raise YamlSourceError(f"YAML: character {ch!r} (U+{ord(ch):04X}) is not allowed in a YAML file",
                              text[:exc.position].count("\n") + 1,
                              f'remove it, or write it as an escape in a double-quoted string ("{escaped}")') from exc
    except yaml.YAMLError as exc:
        raise YamlSourceError(f"YAML syntax: {exc}", None) from exc
    except RecursionError as exc:
        raise _too_deep() from exc
    src = YamlSource(path=path, data=None)
    if node is None:
        return src
    loader = yaml.SafeLoader("")
    try:
        expanded_size(node)  # before anything is expanded: an alias bomb is refused in milliseconds
        src.data = _construct(node, (), src.lines, loader)
    except yaml.MarkedYAMLError as exc:  # e.g. an unknown tag, or a merge key (<<) of a scalar
        mark = exc.problem_mark or exc.context_mark
        raise YamlSourceError(f"YAML: {exc.problem or exc}", mark.line + 1 if mark else None) from exc
    except RecursionError as exc:
        raise _too_deep() from exc
    return src


def check_depth(text: str) -> None:
    """Refuse collections nested more than MAX_DEPTH levels, at the line where it happens."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise YamlSourceError(f"the YAML is nested too deeply to read (more than {MAX_DEPTH} levels)",
                                      event.start_mark.line + 1,
                                      "write the file with fewer levels of nesting (an inventory needs a handful)")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _too_deep() -> YamlSourceError:
    return YamlSourceError("the YAML is nested too deeply to read", None,
                           "write the file with fewer levels of nesting (an inventory needs a handful)")


def expanded_size(root: yaml.Node) -> int:
    """How many values ``root`` expands to once every alias is replaced by what it names.

    Composing keeps one node per anchor, but constructing copies it at each use: ten aliases of
    ten aliases of ... grow tenfold a level.  Counting with a memo by node costs one visit per
    node written; a value that contains itself (``&a [*a]``) would never finish and is refused.
    """
    sizes: dict[int, int] = {}
    return _size(root, sizes, set())


def _size(node: yaml.Node, sizes: dict[int, int], open_: set[int]) -> int:
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_:
        raise YamlSourceError("an alias (*name) refers to a value that contains it", node.start_mark.line + 1,
                              "make the anchor (&name) a value of its own that does not use the alias")
    open_.add(key)
    total = 1
    if isinstance(node, yaml.MappingNode):
        total += sum(_size(k, sizes, open_) + _size(v, sizes, open_) for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        total += sum(_size(item, sizes, open_) for item in node.value)
    open_.discard(key)
    if total > MAX_VALUES:
        raise YamlSourceError(
            f"the aliases (*name) in this value expand to more than {MAX_VALUES} values "
            "(an alias bomb: each level repeats the one before)", node.start_mark.line + 1,
            "write the repeated part out, or use fewer levels of aliases (an inventory expands "
            "to a few thousand values at most)")
    sizes[key] = total
    return total


def _scalar(node: yaml.Node, loader: yaml.SafeLoader) -> Any:
    try:
        return loader.construct_object(node, deep=True)
    except (ValueError, OverflowError) as exc:  # e.g. a date 2024-02-30, or '!!int abc'
        raise YamlSourceError(f"YAML: cannot read {node.value!r} as {node.tag.rsplit(':', 1)[-1]}: {exc}",
                              node.start_mark.line + 1) from exc


def _construct(node: yaml.Node, loc: FieldPath, lines: dict[FieldPath, int], loader: yaml.SafeLoader,
               flattened: set[int] | None = None) -> Any:
    lines.setdefault(loc, node.start_mark.line + 1)
    flattened = set() if flattened is None else flattened
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        # Duplicates written by hand, before merge keys (<<) apply; a node met again through an
        # alias (*name) is already flattened, and its merged keys are not duplicates.
        for key_node, _ in node.value if id(node) not in flattened else ():
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = _scalar(key_node, loader)
            if not isinstance(key, (str, int, float, bool)):
                raise YamlSourceError(f"a mapping key must be a plain scalar, got {key!r}", key_node.start_mark.line + 1)
            if key in seen:
                raise YamlSourceError(
                    f"duplicate key {key!r} in one mapping (the second would silently replace the first)",
                    key_node.start_mark.line + 1,
                )
            seen.add(key)
        loader.flatten_mapping(node)  # merged entries come first, so explicit keys win below
        flattened.add(id(node))
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node, loader)
            child = loc + (str(key),)
            lines[child] = key_node.start_mark.line + 1  # explicit keys come last and win
            out[key] = _construct(value_node, child, lines, loader, flattened)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, loc + (i,), lines, loader, flattened) for i, item in enumerate(node.value)]
    return _scalar(node, loader)
