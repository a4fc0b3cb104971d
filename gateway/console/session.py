"""Who is asking, in which language, and whether a form is genuine: the dependencies every console page
uses (`Page` for any signed-in user, `page_for(role)` for more), and the CSRF check of forms."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse

from gateway.api.context import ApiContext
from gateway.console.auth import ROLES, SESSION_COOKIE, ConsoleUser, same, token_digest
from gateway.console.i18n import negotiate, translations
from gateway.console.templating import render
from gateway.organisation.scope import scope_of
from gateway.store.organisations import memberships
from gateway.store.users import session_user


class SignInRequired(Exception):
    def __init__(self, next_path: str) -> None:
        self.next_path = quote(next_path, safe="/")


class ConsoleError(Exception):
    """A request the console refuses: shown as a page with the message and the status."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def error_page(request: Request, error: ConsoleError) -> HTMLResponse:
    if not hasattr(request.state, "language"):
        request.state.language = negotiate(request.headers.get("accept-language"))
    return render(request, "error.html", status_code=error.status_code, status=error.status_code,
                  message=error.message)


def context_of(request: Request) -> ApiContext:
    found: ApiContext = request.app.state.context
    return found


async def current_user(request: Request) -> ConsoleUser | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token or len(token) > 200:
        return None
    api = context_of(request)
    async with api.pool.connection() as conn:
        found = await session_user(conn, token_digest(token), api.clock())
        scope = scope_of(await memberships(conn, found[0].id), found[0].jurisdiction) if found else None
    if found is None or scope is None:
        return None
    user, csrf_token = found
    request.state.csrf_token = csrf_token
    return ConsoleUser(user.id, user.name, scope.best_role(user.role), user.language, scope)


def page_for(role: str, city: bool = False) -> Callable[[Request], Awaitable[ConsoleUser]]:
    """`city`: a page about the city as a whole (devices, the rule lab), which does not exist (404) for
    the members of partner entities."""
    needed = ROLES.index(role)

    async def signed_in(request: Request) -> ConsoleUser:
        user = await current_user(request)
        request.state.language = negotiate(request.headers.get("accept-language"), user.language if user else None)
        if user is None:
            raise SignInRequired(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        request.state.user = user
        if context_of(request).cities.get(user.scope.jurisdiction) is None:
            _ = translations(request.state.language).gettext
            raise ConsoleError(403, _("Your account belongs to no municipality served here."))
        if city and not user.scope.is_city:
            _ = translations(request.state.language).gettext
            raise ConsoleError(404, _("There is no such page."))
        if ROLES.index(user.role) < needed:
            _ = translations(request.state.language).gettext
            raise ConsoleError(403, _("This needs the %(role)s role.") % {"role": role})
        return user

    return signed_in


Page = Annotated[ConsoleUser, Depends(page_for("viewer"))]
OperatorPage = Annotated[ConsoleUser, Depends(page_for("operator"))]
CityPage = Annotated[ConsoleUser, Depends(page_for("viewer", city=True))]
CityOperatorPage = Annotated[ConsoleUser, Depends(page_for("operator", city=True))]



def check_csrf(request: Request, submitted: str | None) -> None:
    """Every form of a signed-in user carries the session's token; a post without it is refused."""
    expected = getattr(request.state, "csrf_token", "")
    if not expected or not submitted or not same(expected, submitted):
        _ = translations(getattr(request.state, "language", "en")).gettext
        raise ConsoleError(403, _("The form has expired or did not come from this console. Reload the page and "
                                  "try again."))
