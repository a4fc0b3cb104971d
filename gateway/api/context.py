"""What the API's routers share: the database pool, the service catalogue, settings and the clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from fastapi import Request
from psycopg_pool import AsyncConnectionPool

from gateway.catalogue import Catalogue
from gateway.profiles.loader import ProfileSet
from gateway.settings import Settings


@dataclass
class ApiContext:
    settings: Settings
    pool: AsyncConnectionPool
    catalogue: Catalogue
    profiles: ProfileSet
    clock: Callable[[], datetime]


def context(request: Request) -> ApiContext:
    found: ApiContext = request.app.state.context
    return found
