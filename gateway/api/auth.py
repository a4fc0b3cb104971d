"""Staff API tokens: `WASTEGATE_API_TOKENS` = "token:role[:name[:where]]" entries; roles viewer < operator <
admin. `where` is an organisation's slug, or `jurisdiction/organisation`, or `jurisdiction/` (that
municipality's staff) when the instance serves several. A token of a partner organisation sees and acts on
only the incidents routed to it, with its role there; everything else answers 404.

A missing or unknown token is 401, a token below the role an endpoint needs is 403. The actor recorded in
`incident_events` is the token's name, or its role and a short digest of it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.organisation.scope import CITY, Scope

ROLES = ("viewer", "operator", "admin")
_bearer = HTTPBearer(auto_error=False)


@dataclass(frozen=True)
class Staff:
    role: str
    name: str
    organisation: str | None = None
    jurisdiction: str = ""
    scope: Scope = CITY

    @property
    def actor(self) -> str:
        return f"staff:{self.name}"


def parse_tokens(entries: list[str]) -> dict[str, Staff]:
    tokens = {}
    for entry in entries:
        parts = entry.split(":")
        if len(parts) not in (2, 3, 4) or parts[1] not in ROLES or not parts[0] or "" in parts[2:]:
            raise ValueError(f"API token entries are token:role[:name[:organisation]] with role in {ROLES}; "
                             f"got {entry[:4]}…")
        name = parts[2] if len(parts) >= 3 else f"{parts[1]}-{hashlib.sha256(parts[0].encode()).hexdigest()[:6]}"
        where = parts[3] if len(parts) == 4 else ""
        jurisdiction, _, organisation = where.rpartition("/")
        tokens[parts[0]] = Staff(parts[1], name, organisation or None, jurisdiction)
    return tokens


def requires(role: str, city: bool = False) -> Callable[..., Awaitable[Staff]]:
    """`city`: an endpoint about the city as a whole (devices, the rule lab), which a partner's token
    does not see (404)."""
    needed = ROLES.index(role)

    async def check(request: Request,
                    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Staff:  # noqa: B008
        tokens: dict[str, Staff] = request.app.state.tokens
        if credentials is None:
            raise HTTPException(401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"})
        # As bytes: compare_digest refuses str with non-ASCII characters (a TypeError, so a 500).
        given = credentials.credentials.encode("utf-8", "surrogatepass")
        staff = next((s for t, s in tokens.items() if hmac.compare_digest(t.encode("utf-8"), given)), None)
        if staff is None:
            raise HTTPException(401, "unknown token", headers={"WWW-Authenticate": "Bearer"})
        if staff.organisation is not None or staff.jurisdiction:
            staff = _scoped(request, staff)
        if request.app.state.context.cities.get(staff.scope.jurisdiction) is None:
            raise HTTPException(401, "the token belongs to no jurisdiction served here (token:role:name:jurisdiction/)",
                                headers={"WWW-Authenticate": "Bearer"})
        if city and not staff.scope.is_city:
            raise HTTPException(404, "Not Found")
        if ROLES.index(staff.role) < needed:
            raise HTTPException(403, f"this needs the {role} role; the token is {staff.role}")
        return staff

    return check


def _scoped(request: Request, staff: Staff) -> Staff:
    # Fail closed: a token for a municipality or an organisation that does not exist opens nothing.
    city = request.app.state.context.cities.get(staff.jurisdiction)
    if city is None:
        raise HTTPException(401, f"the token's jurisdiction {staff.jurisdiction!r} does not exist",
                            headers={"WWW-Authenticate": "Bearer"})
    if staff.organisation is None:
        return Staff(staff.role, staff.name, None, staff.jurisdiction, Scope(None, staff.jurisdiction))
    org = city.by_slug.get(staff.organisation)
    if org is None:
        raise HTTPException(401, f"the token's organisation {staff.organisation!r} does not exist",
                            headers={"WWW-Authenticate": "Bearer"})
    roles = None if org.kind == "department" else {org.id: staff.role}
    return Staff(staff.role, staff.name, staff.organisation, staff.jurisdiction, Scope(roles, staff.jurisdiction))

