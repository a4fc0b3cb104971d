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


class Condition:
    __slots__ = ("_literal", "_literal_type", "_operator", "_program", "_simple", "_variables", "source")

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
        self._simple: str | None = None
        self._literal: Any = None
        self._literal_type: type = type(None)
        self._operator = operator.eq
        simple = _SIMPLE.fullmatch(source)
        if simple is not None:
            name, op, literal = simple.groups()
            if literal in ("true", "false"):
                if op in ("==", "!="):
                    self._simple, self._literal, self._literal_type = name, literal == "true", bool
            else:
                self._simple, self._literal, self._literal_type = name, float(literal), float
            self._operator = _COMPARE[op]

    def evaluate(self, context: Mapping[str, Any]) -> bool | None:
        """True or False, or None when a value it needs is missing or the expression fails at run time."""
        if self._simple is not None:
            value = context.get(self._simple)
            if value is None:
                return None
            if type(value) is self._literal_type and value == value:  # CEL does not order a NaN: below
                return bool(self._operator(value, self._literal))
        # Only the variables the expression uses cross into CEL: converting the whole context (the
        # device's attributes, `extra`…) on every call cost more than the evaluation itself.
        activation = {}
        for name in self._variables:
            value = context.get(name)
            if value is None:
                return None
            activation[name] = value
        try:
            result = self._program.execute(activation)
        except (RuntimeError, ValueError, TypeError) as exc:
            metrics.RULE_EVALUATION_ERRORS.inc()
            log.debug("condition %r could not be evaluated: %s", self.source, exc)
            return None
        if not isinstance(result, bool):
            metrics.RULE_EVALUATION_ERRORS.inc()
            return None
        return result
