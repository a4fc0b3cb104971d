"""Reads `rules/*.yaml` and `rules/zones/*.geojson` into a RuleSet, or refuses with every problem as
`file:line: rule: field: reason`. A file holds a list of rules, or a mapping with a `rules:` list."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from gateway.rules import KINDS, RuleConfig
from gateway.rules.expressions import ConditionError
from gateway.rules.model import RuleBase
from gateway.rules.zones import ZoneError, load_zones

_ADAPTER: TypeAdapter[Any] = TypeAdapter(RuleConfig)


class RuleFileError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[RuleBase, ...]
    signature: tuple[tuple[str, int, int], ...]

    @property
    def by_id(self) -> dict[str, RuleBase]:
        return {rule.id: rule for rule in self.rules}

    @classmethod
    def merged(cls, sets: Iterable[RuleSet]) -> RuleSet:
        """Several municipalities' rules as one set (their ids are prefixed: none is shared)."""
        found = list(sets)
        return cls(tuple(rule for one in found for rule in one.rules),
                   tuple(entry for one in found for entry in one.signature))


def files_signature(rules_dir: Path) -> tuple[tuple[str, int, int], ...]:
    """What changes when a rule or zone file is edited, added or removed."""
    patterns = ("*.yaml", "zones/*.geojson", "data/*")
    paths = sorted(p for pattern in patterns for p in rules_dir.glob(pattern)) if rules_dir.is_dir() else []
    signature = []
    for path in paths:
        try:
            stat = path.stat()
        except OSError:
            continue
        signature.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(signature)


def load_rules(rules_dir: Path, service_codes: Iterable[str] | None = None,
               organisations: Iterable[str] | None = None, jurisdiction: str = "") -> RuleSet:
    """`service_codes` and `organisations`, when given, are what a rule's incident may name. With a
    `jurisdiction`, each rule applies only to that municipality's devices and its id is prefixed with it
    (`<jurisdiction>/<id>`), so that two cities' rules never share an incident or a state."""
    signature = files_signature(rules_dir)
    problems: list[str] = []
    try:
        zones = load_zones(rules_dir / "zones")
    except ZoneError as exc:
        raise RuleFileError([str(exc)]) from exc
    codes = frozenset(service_codes) if service_codes is not None else None
    known_organisations = frozenset(organisations) if organisations is not None else None
    rules: list[RuleBase] = []
    where_defined: dict[str, str] = {}
    for path in sorted(rules_dir.glob("*.yaml")) if rules_dir.is_dir() else []:
        for line, item in _rule_nodes(path, problems):
            rule_id = item.get("id", "?") if isinstance(item, dict) else "?"
            try:
                config = _ADAPTER.validate_python(item)
            except ValidationError as exc:
                problems.extend(f"{path}:{_line(line, item, error['loc'])}: rule {rule_id}: "
                                f"{_where(error['loc'])}{error['msg']}" for error in exc.errors())
                continue
            if config.id in where_defined:
                problems.append(f"{path}:{line[0]}: rule {config.id}: id already used at {where_defined[config.id]}")
                continue
            where_defined[config.id] = f"{path}:{line[0]}"
            if codes is not None and config.incident.service_code not in codes:
                where = _line(line, item, ("incident", "service_code"))
                problems.append(f"{path}:{where}: rule {config.id}: service_code {config.incident.service_code!r} "
                                "is not in the service catalogue")
                continue
            organisation = config.incident.organisation
            if known_organisations is not None and organisation is not None and organisation not in known_organisations:
                where = _line(line, item, ("incident", "organisation"))
                problems.append(f"{path}:{where}: rule {config.id}: unknown organisation {organisation!r}")
                continue
            try:
                rule = config.build(zones, rules_dir)
            except ConditionError as exc:
                problems.append(f"{path}:{_line_of_value(line, item, exc.source)}: rule {config.id}: {exc}")
                continue
            except ValueError as exc:
                problems.append(f"{path}:{line[0]}: rule {config.id}: {exc}")
                continue
            if config.enabled:
                if jurisdiction:
                    rule.jurisdiction = jurisdiction
                    rule.id = f"{jurisdiction}/{rule.id}"
                rules.append(rule)
    if problems:
        raise RuleFileError(problems)
    return RuleSet(tuple(rules), signature)


# line numbers of a rule: its first line, and the line of each key path inside it
_Lines = tuple[int, dict[tuple[Any, ...], int]]


MAX_NODES = 100_000  # a rule file is a few hundred; this refuses a document built to exhaust memory


def _rule_nodes(path: Path, problems: list[str]) -> list[tuple[_Lines, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except (OSError, yaml.YAMLError) as exc:
        problems.append(f"{path}: {exc}")
        return []
    except RecursionError:
        problems.append(f"{path}: nested too deep")
        return []
    if root is None:
        return []
    # Rule files may come from the rule lab's editor: an alias (`*name`) is refused, since a few of them
    # nested make a document whose walk never ends (a "billion laughs"); rules have no use for them.
    shared = _first_alias(root)
    if shared is not None:
        problems.append(f"{path}:{shared.start_mark.line + 1}: anchors and aliases (&name, *name) are not allowed "
                        "in rule files")
        return []
    if isinstance(root, yaml.MappingNode):
        listed = [value for key, value in root.value if key.value == "rules"]
        others = [key.value for key, _ in root.value if key.value not in ("rules",)]
        if others:
            problems.append(f"{path}:{root.start_mark.line + 1}: unknown top-level key(s): {', '.join(others)}")
        if not listed:
            problems.append(f"{path}:{root.start_mark.line + 1}: expected a list of rules or a 'rules:' key")
            return []
        root = listed[0]
    if not isinstance(root, yaml.SequenceNode):
        problems.append(f"{path}:{root.start_mark.line + 1}: expected a list of rules")
        return []
    found = []
    for node in root.value:
        try:
            item = yaml.SafeLoader(io.StringIO()).construct_document(node)
        except (yaml.YAMLError, ValueError, TypeError, AttributeError) as exc:  # e.g. `!!timestamp "nope"`
            problems.append(f"{path}:{node.start_mark.line + 1}: {type(exc).__name__}: {exc}")
            continue
        found.append(((node.start_mark.line + 1, _key_lines(node, ())), item))
    return found


def _first_alias(root: yaml.Node) -> yaml.Node | None:
    """A node reached twice (what an alias composes to), or the node past MAX_NODES; None if neither."""
    seen: set[int] = set()
    pending = [root]
    while pending:
        node = pending.pop()
        if id(node) in seen or len(seen) > MAX_NODES:
            return node
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                pending += (key, value)
        elif isinstance(node, yaml.SequenceNode):
            pending += node.value
    return None


def _key_lines(node: yaml.Node, prefix: tuple[Any, ...]) -> dict[tuple[Any, ...], int]:
    lines: dict[tuple[Any, ...], int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = (*prefix, key.value)
            lines[path] = key.start_mark.line + 1
            lines.update(_key_lines(value, path))
    elif isinstance(node, yaml.SequenceNode):
        for index, value in enumerate(node.value):
            path = (*prefix, index)
            lines[path] = value.start_mark.line + 1
            lines.update(_key_lines(value, path))
    return lines


def _line(lines: _Lines, item: Any, loc: Sequence[Any]) -> int:
    start, by_path = lines
    # A discriminated union puts the kind in the location: drop what is not a key of the document.
    path = tuple(part for part in loc if not (isinstance(item, dict) and part == item.get("kind") and part
                                              not in item))
    path = tuple("for" if part == "for_" else part for part in path)
    while path:
        if path in by_path:
            return by_path[path]
        path = path[:-1]
    return start


def _line_of_value(lines: _Lines, item: Any, value: str) -> int:
    """The line of the key holding `value` (a condition's source), else the rule's first line."""
    def find(node: Any, path: tuple[Any, ...]) -> tuple[Any, ...] | None:
        if isinstance(node, str) and node.strip() == value.strip():
            return path
        children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, child in children:
            found = find(child, (*path, key))
            if found is not None:
                return found
        return None

    path = find(item, ())
    return lines[1].get(path, lines[0]) if path else lines[0]


def _where(loc: Sequence[Any]) -> str:
    parts = [str(part) for part in loc if isinstance(part, str | int)]
    parts = [("for" if p == "for_" else p) for p in parts if p not in KINDS]
    return f"{'.'.join(parts)}: " if parts else ""
