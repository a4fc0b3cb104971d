"""What the API's routers share: the database pool, the municipalities (each with its service catalogue,
organisations and routing; one on a single-city install), settings and the clock."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from fastapi import Request
from psycopg_pool import AsyncConnectionPool

from gateway.ledger.book import Book
from gateway.organisation.setup import Cities, City
from gateway.plan.routes import Plan
from gateway.profiles.loader import ProfileSet
from gateway.settings import Settings


@dataclass
class ApiContext:
    settings: Settings
    pool: AsyncConnectionPool
    profiles: ProfileSet
    clock: Callable[[], datetime]
    cities: Cities
    # Per municipality, the stops on a collection schedule (the collection ledger's), as the rules say now.
    ledger_books: Callable[[], Mapping[str, Book]] = lambda: {}
    # A municipality's collection plan of a day (`wastegate plan`), with a fill threshold.
    planner: Callable[[date, float, str], Awaitable[Plan]] | None = None
    # The fill_forecast rules' ids (their states hold the forecasts and their errors).
    forecast_rule_ids: Callable[[], list[str]] = lambda: []

    def city(self, jurisdiction: str) -> City:
        """The municipality of a signed-in user or token (who always belongs to one that exists)."""
        found = self.cities.get(jurisdiction)
        if found is None:
            raise LookupError(f"no jurisdiction {jurisdiction!r}")
        return found

    def expected_interval_s(self, profile_name: str | None, attributes: Mapping[str, Any] | None) -> float | None:
        """How often a device should report: its `expected_interval_s` attribute, else its profile's."""
        value = (attributes or {}).get("expected_interval_s")
        if value is None and profile_name is not None and (profile := self.profiles.by_name.get(profile_name)):
            value = profile.config.defaults.expected_interval_s
        return float(value) if isinstance(value, int | float) and value > 0 else None


def context(request: Request) -> ApiContext:
    found: ApiContext = request.app.state.context
    return found
