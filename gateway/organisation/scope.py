"""What a signed-in user or an API token may see: their municipality (jurisdiction) as a whole, or, for
the members of partner entities, only the incidents routed to their organisations (with their role in
each). Everything outside a scope answers 404, as if it did not exist."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from psycopg import AsyncConnection

from gateway.store.organisations import Membership
from gateway.store.workflow import IncidentNotFound, incident_owner

ROLES = ("viewer", "operator", "admin")


@dataclass(frozen=True)
class Scope:
    # None: the whole city. Otherwise the organisations' ids, each with the role held in it.
    roles: Mapping[int, str] | None = field(default=None)
    # The municipality ('' on a single-city install): nothing of another is ever in scope.
    jurisdiction: str = ""

    @property
    def is_city(self) -> bool:
        return self.roles is None

    @property
    def organisations(self) -> list[int] | None:
        """For queries: NULL (everything) or the ids an incident's organisation must be among."""
        return None if self.roles is None else sorted(self.roles)

    def covers(self, organisation_id: int | None, jurisdiction: str | None = None) -> bool:
        """Whether an incident routed to `organisation_id`, of `jurisdiction` (when given), is in scope."""
        if jurisdiction is not None and jurisdiction != self.jurisdiction:
            return False
        return self.roles is None or (organisation_id is not None and organisation_id in self.roles)

    def may(self, role: str, organisation_id: int | None, city_role: str) -> bool:
        """Whether the role is held where the incident is: the user's own role city-wide, else the role
        in the incident's organisation."""
        held = city_role if self.roles is None else self.roles.get(organisation_id or -1)
        return held is not None and ROLES.index(held) >= ROLES.index(role)

    def best_role(self, city_role: str) -> str:
        if self.roles is None or not self.roles:
            return city_role
        return max(self.roles.values(), key=ROLES.index)


CITY = Scope()


def scope_of(memberships: Iterable[Membership], jurisdiction: str = "") -> Scope:
    """A member of partner entities only is kept to them; city staff (members of a department, or of no
    organisation) see the whole of their municipality."""
    found = list(memberships)
    if not found or any(m.kind == "department" for m in found):
        return Scope(None, jurisdiction)
    return Scope({m.organisation_id: m.role for m in found}, jurisdiction)


class NotPermitted(PermissionError):
    """In scope, but the role held in the incident's organisation is not enough (HTTP 403)."""


async def require_in_scope(conn: AsyncConnection, incident_id: int, scope: Scope, role: str, city_role: str) -> None:
    """An incident outside the scope does not exist (IncidentNotFound: 404); inside it, the role held in
    its organisation must be enough (NotPermitted: 403)."""
    organisation_id, jurisdiction = await incident_owner(conn, incident_id)
    if not scope.covers(organisation_id, jurisdiction):
        raise IncidentNotFound(f"no incident {incident_id}")
    if not scope.may(role, organisation_id, city_role):
        raise NotPermitted(f"this needs the {role} role in the incident's organisation")
