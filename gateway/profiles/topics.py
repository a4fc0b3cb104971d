"""Topic patterns with named placeholders: `trucks/{device_id}/telemetry` ↔ the filter `trucks/+/telemetry`."""

from __future__ import annotations

import re
from dataclasses import dataclass

_PLACEHOLDER = re.compile(r"^\{([a-z_][a-z0-9_]*)\}$")


class TopicPatternError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class TopicPattern:
    """A parsed pattern. Each level is a literal, a named single-level placeholder, or a final `#`."""

    pattern: str
    levels: tuple[str | None, ...]  # None where a placeholder stands
    names: tuple[str | None, ...]  # the placeholder's name at its level
    multi_level_tail: bool

    @classmethod
    def parse(cls, pattern: str, require_device_id: bool = True) -> TopicPattern:
        parts = pattern.split("/")
        levels: list[str | None] = []
        names: list[str | None] = []
        tail = False
        for index, part in enumerate(parts):
            if part == "#":
                if index != len(parts) - 1:
                    raise TopicPatternError(f"'#' must be the last level in {pattern!r}")
                tail = True
                break
            match = _PLACEHOLDER.match(part)
            if match:
                levels.append(None)
                names.append(match.group(1))
            elif any(ch in part for ch in "{}+#"):
                raise TopicPatternError(
                    f"level {part!r} of {pattern!r} must be a literal or a whole placeholder like {{device_id}}"
                )
            else:
                levels.append(part)
                names.append(None)
        named = [n for n in names if n]
        if require_device_id and "device_id" not in named:
            raise TopicPatternError(f"{pattern!r} has no {{device_id}} placeholder")
        if len(set(named)) != len(named):
            raise TopicPatternError(f"{pattern!r} repeats a placeholder")
        return cls(pattern, tuple(levels), tuple(names), tail)

    @property
    def subscription(self) -> str:
        """The MQTT filter that receives every topic this pattern matches."""
        filter_levels = ["+" if lit is None else lit for lit in self.levels]
        if self.multi_level_tail:
            filter_levels.append("#")
        return "/".join(filter_levels)

    def match(self, topic_levels: list[str]) -> dict[str, str] | None:
        """The placeholder values if the (already split) topic matches, else None.

        What a final `#` matched is under the key `#` ("" when it matched nothing: in MQTT, `a/#` also
        matches `a`).
        """
        count = len(self.levels)
        if len(topic_levels) < count or (len(topic_levels) > count and not self.multi_level_tail):
            return None
        found: dict[str, str] = {}
        if self.multi_level_tail:
            found["#"] = "/".join(topic_levels[count:])
        for literal, name, value in zip(self.levels, self.names, topic_levels, strict=False):
            if literal is None:
                if not value:
                    return None
                found[name] = value  # type: ignore[index]
            elif literal != value:
                return None
        return found
