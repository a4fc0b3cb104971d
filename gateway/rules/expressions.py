"""Conditions in CEL (Common Expression Language), compiled once when the rule file is loaded.

A condition over a field the reading does not carry cannot be decided: `evaluate` returns None, and the
rule leaves its state as it was (a battery-only message must not clear a "container full" incident).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import cel

from gateway import metrics

log = logging.getLogger(__name__)


class ConditionError(ValueError):
    def __init__(self, message: str, source: str) -> None:
        super().__init__(message)
        self.source = source


class Condition:
    __slots__ = ("_program", "_variables", "source")

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

    def evaluate(self, context: Mapping[str, Any]) -> bool | None:
        """True or False, or None when a value it needs is missing or the expression fails at run time."""
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
