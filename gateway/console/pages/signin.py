"""Sign in and sign out."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from gateway.console.auth import (
    SESSION_COOKIE,
    SESSION_DAYS,
    SIGNIN_CSRF_COOKIE,
    FailedSignIns,
    new_token,
    same,
    session_expiry,
    set_cookie,
    slow_down,
    token_digest,
    verify_password,
    verify_unknown,
)
from gateway.console.i18n import negotiate, translations
from gateway.console.session import ConsoleError, Page, check_csrf, context_of, current_user
from gateway.console.templating import render
from gateway.store.users import create_session, end_session, set_language, user_by_name

router = APIRouter()


def _safe_next(path: str | None) -> str:
    """Only a path of the console: never an address elsewhere (an open redirect)."""
    if path and path.startswith("/console/") and not path.startswith("//") and "\\" not in path:
        return path
    return "/console/"


@router.get("/signin")
async def signin_form(request: Request, next: str | None = None) -> Response:
    request.state.language = negotiate(request.headers.get("accept-language"))
    if await current_user(request) is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    token = new_token()
    response = render(request, "signin.html", next=_safe_next(next), signin_csrf=token, error=None, name="")
    set_cookie(response, request, SIGNIN_CSRF_COOKIE, token, 3600)
    return response


@router.post("/signin")
async def signin(request: Request, name: Annotated[str, Form(max_length=64)] = "",
                 password: Annotated[str, Form(max_length=1024)] = "",
                 csrf_token: Annotated[str, Form(max_length=200)] = "",
                 next: Annotated[str, Form(max_length=2000)] = "/console/") -> Response:
    language = request.state.language = negotiate(request.headers.get("accept-language"))
    _ = translations(language).gettext
    cookie = request.cookies.get(SIGNIN_CSRF_COOKIE, "")
    if not cookie or not csrf_token or not same(cookie, csrf_token):
        raise ConsoleError(403, _("The form has expired or did not come from this console. Reload the page and "
                                  "try again."))
    api = context_of(request)
    failures: FailedSignIns = request.app.state.failed_sign_ins
    keys = (f"name:{name.lower()}", f"address:{request.client.host if request.client else '?'}")
    async with api.pool.connection() as conn:
        user = await user_by_name(conn, name) if name else None
    if user is None:
        verify_unknown(password)
    if user is None or user.disabled or not verify_password(user.password_hash, password):
        await slow_down(failures, *keys)
        response = render(request, "signin.html", status_code=401, next=_safe_next(next), signin_csrf=csrf_token,
                          error=_("Wrong name or password."), name=name)
        return response
    failures.succeeded(*keys)
    token = new_token()
    async with api.pool.connection() as conn:
        await create_session(conn, token_digest(token), user.id, new_token(), session_expiry(api.clock()))
    signed_in = RedirectResponse(_safe_next(next), status_code=303)
    set_cookie(signed_in, request, SESSION_COOKIE, token, SESSION_DAYS * 86400)
    signed_in.delete_cookie(SIGNIN_CSRF_COOKIE, path="/console")
    return signed_in


@router.post("/signout")
async def signout(request: Request, user: Page, csrf_token: Annotated[str, Form(max_length=200)] = "") -> Response:
    check_csrf(request, csrf_token)
    api = context_of(request)
    token = request.cookies.get(SESSION_COOKIE, "")
    async with api.pool.connection() as conn:
        await end_session(conn, token_digest(token), api.clock())
    response = RedirectResponse("/console/signin", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/console")
    return response


@router.post("/language")
async def choose_language(request: Request, user: Page, csrf_token: Annotated[str, Form(max_length=200)] = "",
                          language: Annotated[Literal["", "en", "ca", "es"], Form()] = "",
                          back: Annotated[str, Form(max_length=2000)] = "/console/") -> Response:
    """The user's language from now on ("": the browser's)."""
    check_csrf(request, csrf_token)
    api = context_of(request)
    async with api.pool.connection() as conn:
        await set_language(conn, user.id, language or None)
    return RedirectResponse(_safe_next(back), status_code=303)
