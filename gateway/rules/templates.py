"""Incident titles and descriptions: `{name}` and `{device.name}` placeholders filled from the rule's
context (the reading's fields, the device, the zone). A missing value shows as `?`, never an error."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_PLACEHOLDER = re.compile(r"\{([a-zA-Z_][\w.]*)(?::([^{}]*))?\}")


def render(template: str, context: Mapping[str, Any]) -> str:
    def replace(match: re.Match[str]) -> str:
        value: Any = context
        for part in match.group(1).split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
            if value is None:
                return "?"
        spec = match.group(2)
        try:
            return format(value, spec) if spec else str(value)
        except (TypeError, ValueError):
            return str(value)

    return _PLACEHOLDER.sub(replace, template)
