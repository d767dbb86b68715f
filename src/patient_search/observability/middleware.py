"""Per-request observability as pure ASGI: request id, latency histogram, one JSON log line."""

from __future__ import annotations

import logging
import os
import re
import time
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from patient_search.observability.context import request_id
from patient_search.observability.metrics import HTTP_REQUEST_DURATION

if TYPE_CHECKING:
    from patient_search.observability.emf import EmfSink

log = logging.getLogger("patient_search.http")

# The label of every request no route matched: raw paths would leak ids and explode cardinality.
UNMATCHED: Final = "unmatched"
UNTEMPLATED: Final = "other"
REQUEST_ID_HEADER: Final = b"x-request-id"
# An incoming id is kept only when it is short and plain (it is echoed and logged).
_VALID_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:=-]{1,128}")
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def new_request_id() -> str:
    """A fresh random request id (24 hex digits)."""
    return os.urandom(12).hex()


def route_template(scope: Scope) -> str:
    """The matched route's template (`/v1/patients/{patient_id}`), or a constant."""
    route = scope.get("route")
    if route is None:
        # FastAPI records only its own routes; a plain Starlette route or mount matched.
        return UNTEMPLATED if "endpoint" in scope else UNMATCHED
    path: str | None = getattr(route, "path", None)
    if path is None:
        return UNMATCHED
    return path or "/"  # a Mount at the root has the empty path


class RequestObservability:
    """Times every HTTP request by route template and logs it once, with a request id.

    Accepts a valid incoming `X-Request-ID` (else makes one), returns it on the response and
    exposes it to deeper layers through `observability.context.request_id`. The log line
    carries the route template, never the path or query string.
    """

    def __init__(self, app: ASGIApp, emf: EmfSink | None = None) -> None:
        self.app = app
        self._emf = emf
        self._children: dict[tuple[str, str, int], Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = _incoming_request_id(scope["headers"]) or new_request_id()
        header = (REQUEST_ID_HEADER, rid.encode("ascii"))
        token = request_id.set(rid)
        state: dict[str, Any] | None = scope.get("state")
        if state is None:
            # Request.state writes here, so the auth dependency's user id reaches the log.
            state = scope["state"] = {}
        status = 500  # what the client gets if the application raises before responding

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            request_id.reset(token)
            self._record(scope, state, rid, status, seconds)

    def _record(
        self, scope: Scope, state: dict[str, Any], rid: str, status: int, seconds: float
    ) -> None:
        method: str = scope["method"]
        if method not in _METHODS:
            method = "other"  # the client chooses the method: keep the label set bounded
        route = route_template(scope)
        key = (method, route, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = HTTP_REQUEST_DURATION.labels(method, route, str(status))
        child.observe(seconds)
        if self._emf is not None:
            self._emf.record_request(method, route, status, seconds)
        log.info(
            "request",
            extra={
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
                "request_id": rid,
                "user_id": state.get("user_id"),
            },
        )


def _incoming_request_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == REQUEST_ID_HEADER:
            return value.decode("ascii") if _VALID_REQUEST_ID.fullmatch(value) else None
    return None
