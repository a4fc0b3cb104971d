"""A bound on request bodies: larger ones are refused with 413 before they are read into memory, in
Open311's error format under its prefix."""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.api import open311


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int, multipart_paths: tuple[str, ...] = (),
                 multipart_max_bytes: int = 0) -> None:
        """`multipart_paths`: path prefixes where a multipart body (a report with its photo) may be up to
        `multipart_max_bytes`."""
        self.app = app
        self.max_bytes = max_bytes
        self.multipart_paths = multipart_paths
        self.multipart_max_bytes = multipart_max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        limit = self.max_bytes
        if headers.get(b"content-type", b"").startswith(b"multipart/form-data") and \
                str(scope.get("path", "")).startswith(self.multipart_paths or ("\0",)):
            limit = max(limit, self.multipart_max_bytes)
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _too_large(scope, receive, send, limit)
            return
        seen = 0
        refused = False

        async def counting_receive() -> Message:
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    refused = True
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, counting_receive, send)
        except _BodyTooLarge:
            if refused:
                await _too_large(scope, receive, send, limit)


class _BodyTooLarge(Exception):
    pass


async def _too_large(scope: Scope, receive: Receive, send: Send, max_bytes: int) -> None:
    message = f"request body larger than {max_bytes} bytes"
    path: str = scope.get("path", "")
    if path.startswith(open311.router.prefix + "/"):
        error = open311.Open311Error(413, message)
        await open311.error_response(error, "xml" if path.endswith(".xml") else "json")(scope, receive, send)
        return
    body: dict[str, Any] = {"detail": message}
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})
