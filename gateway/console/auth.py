"""Signing in to the console: argon2id password hashes, a random session token in an HttpOnly, SameSite
cookie (Secure behind TLS), and a CSRF token every form must carry.

- The session token is 32 random bytes; the database keeps only its SHA-256, so a copy of the table signs
  nobody in. Sessions last `SESSION_DAYS`; signing out deletes the row.
- CSRF: forms of a signed-in user carry the session's token (synchronizer pattern); the sign-in form,
  before any session, carries a token that must equal the one in a short-lived cookie (double submit).
- Wrong passwords are slowed down: each failure for a name or an address doubles the wait before the
  answer (from 0.5 s, at most 8 s), and an unknown name costs the same hash as a known one, so neither
  timing nor message tells whether an account exists.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Request, Response

from gateway.organisation.scope import CITY, Scope

ROLES = ("viewer", "operator", "admin")
SESSION_COOKIE = "wastegate_session"
SIGNIN_CSRF_COOKIE = "wastegate_signin_csrf"
SESSION_DAYS = 7
_hasher = PasswordHasher()
# Verified against when a name is unknown, so that costs what a wrong password costs.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def verify_unknown(password: str) -> None:
    verify_password(_DUMMY_HASH, password)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass"))


def session_expiry(now: datetime) -> datetime:
    return now + timedelta(days=SESSION_DAYS)


def behind_tls(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "").lower() == "https"


def set_cookie(response: Response, request: Request, name: str, value: str, max_age_s: int) -> None:
    response.set_cookie(name, value, max_age=max_age_s, httponly=True, samesite="lax", secure=behind_tls(request),
                        path="/console")


@dataclass(frozen=True)
class ConsoleUser:
    id: int
    name: str
    role: str
    language: str | None
    # The whole city, or (a partner's members) only the incidents routed to their organisations.
    scope: Scope = CITY

    def may(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)

    @property
    def actor(self) -> str:
        return f"staff:{self.name}"


class FailedSignIns:
    """Recent failures per name and per client address (bounded), for the wait before answering."""

    def __init__(self, capacity: int = 10_000, forget_after_s: float = 900.0) -> None:
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self.capacity = capacity
        self.forget_after_s = forget_after_s

    def delay_s(self, *keys: str) -> float:
        now = time.monotonic()
        count = 0
        for key in keys:
            failures, at = self._failures.get(key, (0, now))
            if now - at < self.forget_after_s:
                count = max(count, failures)
        return 0.0 if count == 0 else min(0.5 * 2 ** (count - 1), 8.0)

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        for key in keys:
            failures, at = self._failures.pop(key, (0, now))
            self._failures[key] = (failures + 1 if now - at < self.forget_after_s else 1, now)
        while len(self._failures) > self.capacity:
            self._failures.popitem(last=False)

    def succeeded(self, *keys: str) -> None:
        for key in keys:
            self._failures.pop(key, None)


async def slow_down(failures: FailedSignIns, *keys: str) -> None:
    """The wait after a wrong password: at least 0.5 s, doubling with each recent failure."""
    failures.failed(*keys)
    await asyncio.sleep(max(0.5, failures.delay_s(*keys)))
