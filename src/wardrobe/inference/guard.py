"""``UploadGuard``: the ASGI middleware that bounds requests in flight and the bodies they send."""

from __future__ import annotations

import json
import time

import anyio

from wardrobe.inference.api_schema import error_body


class _BodyRefused(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class Gauge:
    """Requests in flight: counted by UploadGuard (one event loop, so no lock), shown by /healthz."""

    active = 0


class UploadGuard:
    """ASGI middleware in front of every POST: a cap on requests in flight (503 at once past it),
    and the body streamed on to the app within a byte limit (413) and a deadline (408). Nothing is
    buffered here; the multipart parser spools large files to disk."""

    def __init__(self, app, max_bytes: int, max_active: int, timeout_s: float, gauge: "Gauge"):
        self.app, self.max_bytes, self.max_active, self.timeout_s = app, max_bytes, max_active, timeout_s
        self.gauge = gauge

    @staticmethod
    async def _reply(send, status: int, code: str, message: str) -> None:
        body = json.dumps(error_body(code, message)).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]
        if status == 503:
            headers.append((b"retry-after", b"1"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        too_big = f"request body larger than {self.max_bytes:,} bytes"
        if length is not None and not length.isdigit():
            return await self._reply(send, 400, "bad_request", "invalid Content-Length")
        if length is not None and int(length) > self.max_bytes:
            return await self._reply(send, 413, "payload_too_large", too_big)
        if self.gauge.active >= self.max_active:
            return await self._reply(send, 503, "busy", "too many requests in progress; retry shortly")
        self.gauge.active += 1
        deadline = time.monotonic() + self.timeout_s
        total, refused, started = 0, None, False

        async def guarded_receive():
            nonlocal total, refused
            with anyio.move_on_after(max(0.0, deadline - time.monotonic())) as scope_:
                msg = await receive()
            if scope_.cancelled_caught:
                refused = _BodyRefused(408, "upload_timeout",
                                       f"request body not received within {self.timeout_s:g} s")
                raise refused
            if msg["type"] == "http.request":
                total += len(msg.get("body", b""))
                if total > self.max_bytes:
                    refused = _BodyRefused(413, "payload_too_large", too_big)
                    raise refused
            return msg

        async def guarded_send(msg):
            nonlocal started
            if refused is not None:  # the app answered a body it could not read: answer for it
                if msg["type"] == "http.response.start" and not started:
                    started = True
                    await self._reply(send, refused.status, refused.code, refused.message)
                return
            started = started or msg["type"] == "http.response.start"
            await send(msg)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except _BodyRefused as exc:
            if not started:
                await self._reply(send, exc.status, exc.code, exc.message)
        finally:
            self.gauge.active -= 1
