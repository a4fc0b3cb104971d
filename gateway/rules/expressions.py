"""Conditions in CEL (Common Expression Language), compiled once when the rule file is loaded.

A condition over a field the reading does not carry cannot be decided: `evaluate` returns None, and the
rule leaves its state as it was (a battery-only message must not clear a "container full" incident).
"""

from __future__ import annotations

import logging
import operator
import re
from collections.abc import Callable, Mapping
from typing import Any

import cel

from gateway import metrics

log = logging.getLogger(__name__)


class ConditionError(ValueError):
    def __init__(self, message: str, source: str) -> None:
        super().__init__(message)
        self.source = source


# `name <op> literal` with a double or boolean literal: most conditions (fill_pct >= 80.0, tilted ==
# true). When the value is of the literal's own type (and not NaN, which CEL does not order), CEL's
# answer is Python's, so it is given without crossing into CEL (a fifth of the cost); any other value
# (an integer, a string) goes to CEL, which decides as it always did.
_SIMPLE = re.compile(r"\s*([A-Za-z_]\w*)\s*(>=|<=|==|!=|>|<)\s*(-?(?:\d*\.\d+(?:[eE][+-]?\d+)?)|true|false)\s*")
_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq, "!=": operator.ne,
}


def _conjuncts(source: str) -> list[str] | None:
    """The parts of `a && b && c` at the top level, or None when the expression is not only a conjunction
    there (a top-level `||` or `?:`, which bind looser than `&&`), or holds what this reading of it does
    not follow (a comment, a raw, byte or triple-quoted string): then CEL alone decides."""
    parts, depth, start, quote, i = [], 0, 0, "", 0
    while i < len(source):
        char = source[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = ""
        elif char in "\"'":
            if source.startswith(char * 3, i):
                return None  # a triple-quoted string
            if i and source[i - 1] in "rRbB" and (i < 2 or not (source[i - 2].isalnum() or source[i - 2] in "_.")):
                return None  # a raw or byte string
            quote = char
        elif source.startswith("//", i):
            return None  # a comment
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif depth == 0:
            if source.startswith("||", i) or char == "?":
                return None
            if source.startswith("&&", i):
                parts.append(source[start:i])
                start = i + 2
                i += 1
        i += 1
    parts.append(source[start:])
    return parts if len(parts) > 1 else None


class _Comparison:
    """`name <op> literal`, decided in Python when the value has the literal's type (see `_SIMPLE`)."""

    __slots__ = ("literal", "literal_type", "name", "operator")

    def __init__(self, name: str, op: str, literal: str) -> None:
        self.name = name
        self.operator = _COMPARE[op]
        self.literal: float | bool
        self.literal_type: type
        if literal in ("true", "false"):
            self.literal, self.literal_type = literal == "true", bool
        else:
            self.literal, self.literal_type = float(literal), float

    @classmethod
    def parse(cls, source: str) -> _Comparison | None:
        simple = _SIMPLE.fullmatch(source)
        if simple is None:
            return None
        name, op, literal = simple.groups()
        if literal in ("true", "false") and op not in ("==", "!="):
            return None
        return cls(name, op, literal)

    def decide(self, value: Any) -> bool | None:
        if type(value) is self.literal_type and value == value:  # CEL does not order a NaN
            return bool(self.operator(value, self.literal))
        return None


class Condition:
    __slots__ = ("_false_when", "_program", "_simple", "_variables", "source")

    def __init__(self, source: str, known_variables: frozenset[str]) -> None:
        self.source = source
        try:
            self._program = cel.compile(source)
        except ValueError as exc:
            detail = " ".join(line.strip() for line in str(exc).splitlines()[:2])
            raise ConditionError(f"CEL syntax error in {source!r}: {detail}", source) from None
        variables = set(self._program.variables())
        unknown = variables - known_variables
        if unknown:
            known = ", ".join(sorted(known_variables))
            raise ConditionError(f"{source!r} uses {', '.join(sorted(unknown))}, which is not one of: {known}", source)
        self._variables = tuple(variables)
        simple = _Comparison.parse(source)
        # the whole expression a comparison of a variable with a literal (not `true == true`)
        self._simple = simple if simple is not None and simple.name in variables else None
        # `a && b`: a conjunct that is a simple comparison found false makes the whole false, as in CEL
        # (false && anything is false, even an error), without crossing into CEL (idling: most fixes are
        # of a moving truck, `speed_kmh < 2.0` false).
        parts = _conjuncts(source) if self._simple is None else None
        found = [c for c in (_Comparison.parse(part) for part in parts or ()) if c is not None and c.name in variables]
        self._false_when: tuple[_Comparison, ...] = tuple(found)

    def evaluate(self, context: Mapping[str, Any]) -> bool | None:
        """True or False, or None when a value it needs is missing or the expression fails at run time."""
        simple = self._simple
        if simple is not None:
            value = context.get(simple.name)
            if value is None:
                return None
            decided = simple.decide(value)  # None: a value of another type, or NaN, for CEL below
            if decided is not None:
                return decided
        # Only the variables the expression uses cross into CEL: converting the whole context (the
        # device's attributes, `extra`…) on every call cost more than the evaluation itself.
        activation = {}
        for name in self._variables:
            value = context.get(name)
            if value is None:
                return None
            activation[name] = value
        for comparison in self._false_when:
            if comparison.decide(activation[comparison.name]) is False:
                return False
        try:
            result = self._program.execute(activation)
        except (RuntimeError, ValueError, TypeError, KeyError, IndexError) as exc:  # e.g. a missing map key
            metrics.RULE_EVALUATION_ERRORS.inc()
            log.debug("condition %r could not be evaluated: %s", self.source, exc)
            return None
        if not isinstance(result, bool):
            metrics.RULE_EVALUATION_ERRORS.inc()
            return None
        return result
