"""The web console under `/console/`: server-rendered pages (Jinja2, `templates/`), one route module per
page (`pages/`), plain JavaScript where a page is live, Leaflet and its marker clusters from their Python
packages (xstatic), nothing fetched from the internet. It reads what the store has committed and never
touches the ingest path.

`mount_console` adds it to the API's FastAPI application.
"""

from __future__ import annotations

import asyncio

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from xstatic.pkg import leaflet, leaflet_markercluster

from gateway.console.auth import FailedSignIns
from gateway.console.pages import PAGES, follow
from gateway.console.session import ConsoleError, SignInRequired, error_page
from gateway.console.templating import render

STATIC = __file__.rsplit("/", 1)[0] + "/static"


def mount_console(app: FastAPI) -> None:
    app.state.failed_sign_ins = FailedSignIns()
    app.state.console_stopping = asyncio.Event()  # set by the server when it stops: live streams end
    app.mount("/console/static/leaflet", StaticFiles(directory=leaflet.BASE_DIR), name="leaflet")
    app.mount("/console/static/markercluster", StaticFiles(directory=leaflet_markercluster.BASE_DIR),
              name="markercluster")
    app.mount("/console/static/console", StaticFiles(directory=STATIC), name="console-static")
    for page in PAGES:
        app.include_router(page, prefix="/console", include_in_schema=False)
    app.include_router(follow.router, include_in_schema=False)  # the reporters' page: outside the console

    @app.get("/", include_in_schema=False)
    async def home() -> RedirectResponse:
        return RedirectResponse("/console/", status_code=307)

    app.add_exception_handler(SignInRequired, _to_sign_in)  # type: ignore[arg-type]
    app.add_exception_handler(ConsoleError, _console_error)  # type: ignore[arg-type]


async def _to_sign_in(request: Request, exc: SignInRequired) -> Response:
    return RedirectResponse(f"/console/signin?next={exc.next_path}", status_code=303)


async def _console_error(request: Request, exc: ConsoleError) -> Response:
    return error_page(request, exc)


def console_validation_error(request: Request, exc: RequestValidationError) -> Response:
    """A bad parameter or form field on a console page: the page says what, with a 400."""
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or e['loc'][0]}: {e['msg']}" for e in exc.errors())
    return error_page(request, ConsoleError(400, problems))


__all__ = ["console_validation_error", "mount_console", "render"]
