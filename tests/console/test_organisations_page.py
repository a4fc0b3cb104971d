"""The admin page of the organisation, over HTTP: organisations added and shown, members added and taken
out (and so the partner's scope follows), bad input answered on the page with a 400, admins only."""

from __future__ import annotations

import re
from contextlib import closing

import httpx

from gateway.console.auth import hash_password
from gateway.store.users import upsert_user
from tests.console.conftest import Console
from tests.support import console_client, sql


def _csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found
    return found.group(1)


def test_admins_manage_organisations_and_members(console: Console) -> None:
    url = console.settings.database_url
    upsert_user(url, "ada", hash_password("ada-password-1"), "admin", None)
    upsert_user(url, "pep", hash_password("pep-password-1"), "viewer", None)
    with closing(console_client(console.url, "ada", "ada-password-1")) as ada:
        page = ada.get("/console/organisations")
        assert page.status_code == 200 and 'data-organisation="recollida-nord"' in page.text
        csrf = _csrf(page)
        added = ada.post("/console/organisations", data={
            "csrf_token": csrf, "slug": "neteja-est", "name": "Neteja Est", "kind": "partner",
            "emails": "avisos@neteja-est.example; guardia@neteja-est.example"})
        assert added.status_code == 303
        assert sql(url, "SELECT kind, emails FROM organisations WHERE slug = 'neteja-est'") == [
            ("partner", ["avisos@neteja-est.example", "guardia@neteja-est.example"])]
        bad = ada.post("/console/organisations", data={"csrf_token": csrf, "slug": "x", "kind": "partner",
                                                       "emails": "not an address"})
        assert bad.status_code == 400 and "not an e-mail address" in bad.text
        assert ada.post("/console/organisations", data={"csrf_token": csrf, "slug": "Bad Slug",
                                                        "kind": "partner"}).status_code == 400
        assert ada.post("/console/organisations", data={"csrf_token": "forged", "slug": "y",
                                                        "kind": "partner"}).status_code == 403
        member = ada.post("/console/organisations/members", data={
            "csrf_token": csrf, "organisation": "neteja-est", "user": "pep", "role": "operator"})
        assert member.status_code == 303
        assert 'data-member="pep"' in ada.get("/console/organisations").text
        with closing(console_client(console.url, "pep", "pep-password-1")) as pep:  # now a partner's member only
            assert pep.get("/console/devices").status_code == 404
            assert pep.get("/console/organisations").status_code == 404
        unknown = ada.post("/console/organisations/members", data={
            "csrf_token": csrf, "organisation": "neteja-est", "user": "nobody", "role": "operator"})
        assert unknown.status_code == 400 and "nobody" in unknown.text
        removed = ada.post("/console/organisations/members", data={
            "csrf_token": csrf, "organisation": "neteja-est", "user": "pep", "remove": "true"})
        assert removed.status_code == 303
        with closing(console_client(console.url, "pep", "pep-password-1")) as pep:  # city staff again
            assert pep.get("/console/devices").status_code == 200
            assert pep.get("/console/organisations").status_code == 403  # a viewer, not an admin
