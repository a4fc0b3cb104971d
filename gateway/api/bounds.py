"""The bounds every API parameter is held to, so that what a client sends is refused with a 4xx and a
message instead of overflowing Python's date arithmetic or PostgreSQL's types further down (a 500).

Times must fall in [EARLIEST, LATEST): the store holds nothing older than the first and the defaults
computed from a time (a 30-day window before it, …) stay representable. A time without an offset is UTC.
Text that PostgreSQL cannot store (a NUL character, a lone UTF-16 surrogate from a JSON escape) or that
XML 1.0 cannot carry (the other control characters, for the Open311 `.xml` answers) is refused, as are
ids beyond a bigint.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
MAX_ID = 2**63 - 1  # PostgreSQL bigint
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def bounded_time(value: datetime, name: str = "the time") -> datetime:
    """The time as an aware datetime, or ValueError with a message naming the parameter."""
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    if not EARLIEST <= value < LATEST:
        raise ValueError(f"{name} must be from {EARLIEST:%Y-%m-%d} up to {LATEST:%Y-%m-%d}")
    return value


def storable_text(value: str, name: str = "text") -> str:
    """The text if PostgreSQL can store it and XML can carry it, else ValueError."""
    if _CONTROL.search(value):
        raise ValueError(f"{name} may not contain control characters other than tab and newline")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{name} is not valid Unicode (a lone surrogate)") from None
    return value


# For pydantic models and FastAPI parameters: the validators' ValueError becomes a 422 with its message.
Time = Annotated[datetime, AfterValidator(bounded_time)]
Text = Annotated[str, AfterValidator(storable_text)]
