"""Builds the FastAPI application from its routers."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI

from gateway import __version__
from gateway.api.health import health_router


def create_api(readiness: Callable[[], dict[str, bool]]) -> FastAPI:
    api = FastAPI(title="Wastegate", version=__version__)
    api.include_router(health_router(readiness))
    return api
