"""Bounds on what a request may send, enforced before any handler runs."""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from patient_search.problems import problem_response


class Utf8Url:
    """Rejects with 400 a URL whose percent-escapes are not UTF-8.

    Starlette would decode them to U+FFFD and search for that; the client sent something else,
    and only it can say what.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not _is_utf8(scope):
            response = problem_response(
                400, "Invalid request", "the URL is not valid UTF-8 once percent-decoded"
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _is_utf8(scope: Scope) -> bool:
    for raw in (scope.get("raw_path") or b"", scope.get("query_string") or b""):
        try:
            unquote_to_bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            return False
    return True


class BodySizeLimit:
    """Rejects request bodies over `max_bytes` with 413, declared or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and not declared.isdigit():
            # Not a size at all ("abc", "-1"): a malformed request, not a large one.
            response = problem_response(
                400, "Invalid request", "Content-Length must be a number of bytes"
            )
            await response(scope, receive, send)
            return
        if declared is not None and int(declared) > self.max_bytes:
            await self._reject(scope, receive, send)
            return
        received = 0
        started = rejected = False

        async def limited_receive() -> Message:
            nonlocal received, rejected
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Answer now: FastAPI turns an error raised while it reads the body into
                    # its own 400, which `guarded_send` then drops.
                    if not started and not rejected:
                        rejected = True
                        await self._reject(scope, receive, send)
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if not rejected:
                started = True
                await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _BodyTooLarge:
            pass  # already answered

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            413, "Payload too large", f"request bodies are limited to {self.max_bytes} bytes"
        )
        await response(scope, receive, send)


class _BodyTooLarge(Exception):
    pass
