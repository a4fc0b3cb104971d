"""Builds the FastAPI application from its routers."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from gateway import __version__
from gateway.api import devices, incidents, ledger, open311, photos, rules
from gateway.api.auth import parse_tokens
from gateway.api.context import ApiContext
from gateway.api.health import health_router
from gateway.api.limits import BodySizeLimit
from gateway.console import console_validation_error, mount_console


def create_api(readiness: Callable[[], dict[str, bool]], api_context: ApiContext | None = None) -> FastAPI:
    api = FastAPI(title="Wastegate", version=__version__,
                  description="Open311 GeoReport v2 for citizens; incidents, devices and maps for staff.")
    api.include_router(health_router(readiness))
    if api_context is not None:
        settings = api_context.settings
        api.state.context = api_context
        api.state.tokens = parse_tokens(settings.api_tokens)
        api.include_router(open311.router)
        api.include_router(incidents.router)
        api.include_router(devices.router)
        api.include_router(rules.router)
        api.include_router(photos.router)
        api.include_router(ledger.router)
        api.add_exception_handler(open311.Open311Error, _open311_error)  # type: ignore[arg-type]
        api.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
        api.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
        mount_console(api)
        api.add_middleware(BodySizeLimit, max_bytes=settings.api_max_body_bytes,
                           multipart_paths=(f"{open311.router.prefix}/requests.",
                                            f"{open311.router.prefix}/servicerequestupdates.", "/api/v1/incidents/",
                                            "/console/incidents/", "/follow/"),
                           multipart_max_bytes=2 * settings.photo_max_bytes)  # so a photo too large is told why
        if settings.api_cors_origins:  # closed unless origins are configured
            api.add_middleware(CORSMiddleware, allow_origins=settings.api_cors_origins,
                               allow_methods=["GET", "POST"], allow_headers=["Authorization", "Content-Type"])
    return api


def _format_of(request: Request) -> str:
    return "xml" if request.url.path.endswith(".xml") else "json"


async def _open311_error(request: Request, exc: open311.Open311Error) -> Response:
    return open311.error_response(exc, _format_of(request))


async def _http_error(request: Request, exc: HTTPException) -> Response:
    """Under Open311's prefix the framework's own errors too (an unknown path, a method not allowed, a
    multipart body that does not parse) are in Open311's format."""
    if request.url.path.startswith(open311.router.prefix + "/"):
        response = open311.error_response(open311.Open311Error(exc.status_code, str(exc.detail)), _format_of(request))
        response.headers.update(exc.headers or {})
        return response
    return await http_exception_handler(request, exc)


async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    if request.url.path.startswith("/console/"):
        return console_validation_error(request, exc)
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or e['loc'][0]}: {e['msg']}" for e in exc.errors())
    if request.url.path.startswith(open311.router.prefix):
        return open311.error_response(open311.Open311Error(400, problems), _format_of(request))
    # What was sent is not echoed back: it can be anything, bytes that are not even text among it.
    detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    return JSONResponse({"detail": detail, "message": problems}, status_code=422)
