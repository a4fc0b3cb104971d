"""Sends the outbox over SMTP (aiosmtplib): `smtp://user:pass@host:port` (STARTTLS when the server offers
it) or `smtps://` (TLS from the first byte).

- sent: the row says when, and which recipients the server refused (a bounce at SMTP time) with its answer;
- refused for good (a 5xx answer, every recipient refused): `failed`, with the reason, not retried;
- the server unreachable, or answering 4xx (every recipient included: greylisting): retried with a growing
  wait (30 s doubling, at most 1 h), and given up as `failed` with the last error once the message is
  `GIVE_UP_AFTER` old;
- a message that cannot be built (a header it cannot carry): `failed` alone, the others go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any
from urllib.parse import unquote, urlsplit

import aiosmtplib
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from gateway import metrics
from gateway.store.queries import query

log = logging.getLogger(__name__)
GIVE_UP_AFTER = timedelta(days=2)
FIRST_RETRY_S = 30.0
LONGEST_RETRY_S = 3600.0


@dataclass(frozen=True)
class SmtpServer:
    hostname: str
    port: int
    username: str | None
    password: str | None
    use_tls: bool

    @classmethod
    def from_url(cls, url: str) -> SmtpServer:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("WASTEGATE_SMTP_URL is smtp://[user:pass@]host[:port] or smtps://…")
        use_tls = parts.scheme == "smtps"
        return cls(parts.hostname, parts.port or (465 if use_tls else 587),
                   unquote(parts.username) if parts.username else None,
                   unquote(parts.password) if parts.password else None, use_tls)


def email_message(sender: str, row: dict[str, Any], now: datetime) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(row["recipients"])
    message["Subject"] = row["subject"]
    message["Date"] = format_datetime(now)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or "wastegate")
    message["X-Wastegate-Mail-Id"] = str(row["id"])
    message.set_content(row["body_text"])
    message.add_alternative(row["body_html"], subtype="html")
    return message


class MailSender:
    def __init__(self, pool: AsyncConnectionPool, server: SmtpServer, sender: str, clock: Callable[[], datetime],
                 poll_s: float = 2.0, timeout_s: float = 30.0) -> None:
        self.pool = pool
        self.server = server
        self.sender = sender
        self.clock = clock
        self.poll_s = poll_s
        self.timeout_s = timeout_s

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                if await self.send_due():
                    continue
            except Exception:
                log.exception("sending mail failed, trying again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.poll_s)

    async def send_due(self, limit: int = 50) -> int:
        """Sends what is due, over one connection; returns how many messages were tried."""
        now = self.clock()
        async with self.pool.connection() as conn, conn.transaction():
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(query("mail_due"), {"now": now, "limit": limit})
                rows = await cur.fetchall()
            if not rows:
                return 0
            client = aiosmtplib.SMTP(hostname=self.server.hostname, port=self.server.port,
                                     use_tls=self.server.use_tls, timeout=self.timeout_s)
            try:
                await client.connect()
                if self.server.username:
                    await client.login(self.server.username, self.server.password or "")
            except (aiosmtplib.SMTPException, OSError) as exc:
                log.warning("mail server unavailable, mail waits in the outbox",
                            extra={"server": f"{self.server.hostname}:{self.server.port}", "error": str(exc)})
                for row in rows:
                    await self._later(conn, row, f"server unavailable: {exc}", now)
                return len(rows)
            try:
                for row in rows:
                    await self._send_one(conn, client, row, now)
            finally:
                with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                    await client.quit()
        return len(rows)

    async def _send_one(self, conn: Any, client: aiosmtplib.SMTP, row: dict[str, Any], now: datetime) -> None:
        try:
            message = email_message(self.sender, row, now)
        except (ValueError, TypeError) as exc:
            await conn.execute(query("mail_failed"), {"id": row["id"], "error": f"cannot be sent: {exc}",
                                                      "refused": Jsonb({})})
            metrics.MAIL.labels("failed").inc()
            return
        try:
            refused, _answer = await client.send_message(message)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            answers = {r.recipient: f"{r.code} {r.message}" for r in exc.recipients}
            if all(400 <= r.code < 500 for r in exc.recipients):  # mailbox busy, greylisting: later
                await self._later(conn, row, "; ".join(f"{k}: {v}" for k, v in answers.items()), now)
                return
            await conn.execute(query("mail_failed"), {"id": row["id"], "error": "every recipient was refused",
                                                      "refused": Jsonb(answers)})
            metrics.MAIL.labels("failed").inc()
            return
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code >= 500:
                await conn.execute(query("mail_failed"), {"id": row["id"], "error": f"{exc.code} {exc.message}",
                                                          "refused": Jsonb({})})
                metrics.MAIL.labels("failed").inc()
            else:
                await self._later(conn, row, f"{exc.code} {exc.message}", now)
            return
        except (aiosmtplib.SMTPException, OSError) as exc:
            await self._later(conn, row, str(exc) or type(exc).__name__, now)
            return
        answers = {recipient: f"{response.code} {response.message}" for recipient, response in refused.items()}
        await conn.execute(query("mail_sent"), {"id": row["id"], "now": now, "refused": Jsonb(answers)})
        metrics.MAIL.labels("sent").inc()

    async def _later(self, conn: Any, row: dict[str, Any], error: str, now: datetime) -> None:
        attempts = int(row["attempts"]) + 1
        if now - row["created_at"] > GIVE_UP_AFTER:
            await conn.execute(query("mail_failed"), {"id": row["id"], "refused": Jsonb({}),
                                                      "error": f"gave up after {attempts} attempts: {error}"})
            metrics.MAIL.labels("failed").inc()
            return
        wait = min(FIRST_RETRY_S * 2 ** (attempts - 1), LONGEST_RETRY_S)
        await conn.execute(query("mail_retry_later"), {"id": row["id"], "error": error,
                                                       "next_attempt_at": now + timedelta(seconds=wait)})
        metrics.MAIL.labels("retried").inc()
