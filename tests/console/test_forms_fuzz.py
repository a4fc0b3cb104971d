"""Whatever a browser (or anything else) sends to the console's forms and pages, the answer is a page
below 500: hypothesis over every form's fields and every page's parameters, derandomized (the same run
every time; `./run fuzz` explores the API, not these)."""

from __future__ import annotations

import re
from contextlib import closing

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.console.conftest import Console
from tests.console.test_accounts import signed_in

RUN = settings(max_examples=40, derandomize=True, database=None, deadline=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
text = st.text(st.characters(exclude_categories=["Cs"]), max_size=300)  # surrogates: not UTF-8
value = st.one_of(text, st.integers(-10**20, 10**20).map(str), st.floats(allow_nan=True).map(str),
                  st.sampled_from(["", "0", "-1", "1e309", "open", "assign", "container_full", "2026-11-31", "..",
                                   "%00", "<script>", "9" * 40]))
FORMS = {
    "/console/incidents/new": ["service_code", "description", "address", "lat", "lon", "caller_name",
                               "caller_phone", "channel"],
    "/console/incidents/1/action": ["action", "note", "assignee", "public"],
    "/console/incidents/1/comment": ["note", "public"],
    "/console/incidents/1/duplicate": ["of"],
    "/console/incidents/1/reassign": ["organisation", "reason"],
    "/console/signin": ["name", "password", "next"],
}
PAGES = {
    "/console/incidents": ["status", "service_code", "source", "assignee", "age", "text", "sort", "page"],
    "/console/devices": ["q", "kind", "status"],
    "/console/devices/C-1": ["range", "day"],
    "/console/devices/C-1/route.json": ["day"],
    "/console/stats": ["period"],
}


def fields(names: list[str]) -> st.SearchStrategy[dict[str, str]]:
    return st.dictionaries(st.sampled_from(names), value, max_size=len(names))


def csrf(client: httpx.Client) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/console/incidents").text)
    assert found
    return found.group(1)


def test_forms_and_pages_never_answer_500(console: Console) -> None:
    with closing(signed_in(console, "olga")) as client:
        token = csrf(client)
        client.post("/console/incidents/new", data={"csrf_token": token, "service_code": "container_full",
                                                    "address": "Mallorca 1"})

        @RUN
        @given(path=st.sampled_from(sorted(FORMS)), data=st.data(), with_token=st.booleans())
        def post_forms(path: str, data: st.DataObject, with_token: bool) -> None:
            body = data.draw(fields(FORMS[path]))
            if with_token:
                body["csrf_token"] = token
            answer = client.post(path, data=body)
            assert answer.status_code < 500, (path, body, answer.text[:300])

        @RUN
        @given(path=st.sampled_from(sorted(PAGES)), data=st.data())
        def get_pages(path: str, data: st.DataObject) -> None:
            params = data.draw(fields(PAGES[path]))
            answer = client.get(path, params=params)
            assert answer.status_code < 500, (path, params, answer.text[:300])
            if 400 <= answer.status_code < 500 and "json" not in answer.headers.get("content-type", ""):
                assert 'id="error-message"' in answer.text  # the page says what was wrong

        post_forms()
        get_pages()


def test_the_reporters_forms_and_updates_never_answer_500(console: Console) -> None:
    """The follow page's forms (the token in the path is their only key) and Open311's update POST."""
    created = httpx.post(f"{console.url}/open311/v2/requests.json", data={
        "api_key": "k", "service_code": "container_full", "lat": "41.4036", "long": "2.1744",
        "email": "fuzz@example.org"})
    incident = int(created.json()[0]["service_request_id"])
    link = _follow_link(console, incident)
    forms = {f"{link}/comment": ["note"], f"{link}/rating": ["score", "comment"],
             f"{link.rsplit('/', 1)[0]}/wrong-token/comment": ["note"],
             "/open311/v2/servicerequestupdates.json": ["api_key", "service_request_id", "description", "email",
                                                        "jurisdiction_id"]}
    with httpx.Client(base_url=console.url) as client:
        @RUN
        @given(path=st.sampled_from(sorted(forms)), data=st.data())
        def post(path: str, data: st.DataObject) -> None:
            body = data.draw(fields(forms[path]))
            answer = client.post(path, data=body)
            assert answer.status_code < 500, (path, body, answer.text[:300])

        post()


def _follow_link(console: Console, incident: int) -> str:
    import asyncio

    import psycopg

    from gateway.organisation.follow import follow_key, follow_path

    async def key() -> bytes:
        async with await psycopg.AsyncConnection.connect(console.settings.database_url) as conn:
            return await follow_key(conn)

    return follow_path(asyncio.run(key()), incident)
