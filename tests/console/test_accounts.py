"""Accounts and forms, over HTTP: signing in and out, wrong passwords slowed down and told apart from
nothing, CSRF on every form, roles, and a bad form field answered on the page with a 4xx."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from contextlib import closing

import httpx

from gateway.settings import Settings
from tests.console.conftest import USERS, Console
from tests.support import REPO, scalar


def signin_form(client: httpx.Client) -> str:
    page = client.get("/console/signin")
    assert page.status_code == 200
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found
    return found.group(1)


def signed_in(console: Console, name: str) -> httpx.Client:
    client = httpx.Client(base_url=console.url, follow_redirects=False)
    token = signin_form(client)
    answer = client.post("/console/signin", data={"name": name, "password": USERS[name][1], "csrf_token": token,
                                                  "next": "/console/incidents"})
    assert answer.status_code == 303 and answer.headers["location"] == "/console/incidents"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie
    return client


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found
    return found.group(1)


def test_pages_need_a_sign_in_and_the_root_leads_to_the_console(console: Console) -> None:
    with httpx.Client(base_url=console.url) as client:
        assert client.get("/", follow_redirects=False).headers["location"] == "/console/"
        away = client.get("/console/incidents?status=open", follow_redirects=False)
        assert away.status_code == 303 and away.headers["location"].startswith("/console/signin?next=/console/")


def test_a_wrong_password_is_refused_slowly_and_says_nothing_of_the_account(console: Console) -> None:
    with httpx.Client(base_url=console.url) as client:
        token = signin_form(client)
        answers = []
        for name in ("olga", "nobody"):
            started = time.monotonic()
            answer = client.post("/console/signin", data={"name": name, "password": "wrong", "csrf_token": token})
            answers.append((answer.status_code, time.monotonic() - started, answer.text))
        assert [a[0] for a in answers] == [401, 401]
        assert all(a[1] >= 0.5 for a in answers)  # slowed down, the unknown name as much as the known one
        assert "Wrong name or password." in answers[0][2] and "Wrong name or password." in answers[1][2]
        assert "wastegate_session" not in client.cookies
        again = time.monotonic()
        client.post("/console/signin", data={"name": "olga", "password": "wrong again", "csrf_token": token})
        assert time.monotonic() - again >= 1.0  # the second failure for that name waits longer


def test_a_form_posted_without_its_csrf_token_is_refused(console: Console) -> None:
    with httpx.Client(base_url=console.url) as client:
        signin_form(client)
        forged = client.post("/console/signin", data={"name": "olga", "password": USERS["olga"][1]})
        assert forged.status_code == 403 and "did not come from this console" in forged.text
    with closing(signed_in(console, "olga")) as client:
        for path, data in (("/console/signout", {}), ("/console/incidents/new", {"service_code": "container_full"})):
            refused = client.post(path, data={**data, "csrf_token": "forged"})
            assert refused.status_code == 403, path
        assert scalar(console.settings.database_url, "SELECT count(*) FROM incidents") == 0
        assert client.get("/console/incidents").status_code == 200  # still signed in


def test_signing_out_ends_the_session(console: Console) -> None:
    with closing(signed_in(console, "vera")) as client:
        page = client.get("/console/incidents")
        assert client.post("/console/signout", data={"csrf_token": csrf_of(page)}).status_code == 303
        assert client.get("/console/incidents").status_code == 303
    assert scalar(console.settings.database_url, "SELECT count(*) FROM console_sessions") == 0


def test_a_viewer_cannot_act_and_sees_no_reporter(console: Console) -> None:
    with closing(signed_in(console, "vera")) as client:
        page = client.get("/console/incidents/new")
        assert page.status_code == 403 and "operator" in page.text


def test_bad_input_on_a_console_page_is_a_message_and_a_4xx(console: Console) -> None:
    with closing(signed_in(console, "olga")) as client:
        for path in ("/console/incidents?status=nonsense", "/console/incidents?page=0",
                     "/console/live?after=" + "9" * 30,
                     "/console/incidents/99999999999999999999", "/console/incidents/123"):
            answer = client.get(path)
            assert 400 <= answer.status_code < 500 and 'id="error-message"' in answer.text, path
        form = client.get("/console/incidents/new")
        bad = client.post("/console/incidents/new", data={"csrf_token": csrf_of(form), "service_code": "container_full",
                                                          "lat": "north", "lon": "2.1"})
        assert bad.status_code == 400 and "numbers" in bad.text


def test_the_console_speaks_the_browsers_language(console: Console) -> None:
    with httpx.Client(base_url=console.url) as client:
        catalan = client.get("/console/signin", headers={"Accept-Language": "ca-ES,ca;q=0.9,en;q=0.5"})
        spanish = client.get("/console/signin", headers={"Accept-Language": "es"})
        english = client.get("/console/signin", headers={"Accept-Language": "de, fr;q=0.8"})
    assert '<html lang="ca">' in catalan.text and "Inicia la sessió" in catalan.text
    assert '<html lang="es">' in spanish.text and "Iniciar sesión" in spanish.text
    assert '<html lang="en">' in english.text and "Sign in" in english.text


def test_users_add_reads_the_password_from_stdin(settings: Settings) -> None:
    env = {"WASTEGATE_DATABASE_URL": settings.database_url, "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "-m", "gateway.cli", "users", "add", "ana", "--role", "admin",
                          "--password-stdin"], input="a-long-password\n", capture_output=True, text=True,
                         env=env, cwd=REPO, check=False)
    assert run.returncode == 0, run.stderr
    assert scalar(settings.database_url, "SELECT role FROM users WHERE name = 'ana'") == "admin"
    short = subprocess.run([sys.executable, "-m", "gateway.cli", "users", "add", "bob", "--password-stdin"],
                           input="short\n", capture_output=True, text=True, env=env, cwd=REPO, check=False)
    assert short.returncode == 2 and "at least 8" in short.stderr


def test_a_user_chooses_a_language_that_wins_over_the_browsers(console: Console) -> None:
    with closing(signed_in(console, "vera")) as client:
        page = client.get("/console/incidents", headers={"Accept-Language": "en"})
        chosen = client.post("/console/language", data={"csrf_token": csrf_of(page), "language": "es",
                                                        "back": "/console/incidents"})
        assert chosen.status_code == 303 and chosen.headers["location"] == "/console/incidents"
        spanish = client.get("/console/incidents", headers={"Accept-Language": "en"})
        assert '<html lang="es">' in spanish.text and "Incidencias" in spanish.text
        assert client.post("/console/language", data={"csrf_token": csrf_of(spanish), "language": "xx"}
                           ).status_code == 400
