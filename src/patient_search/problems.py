"""Every error leaves the service as application/problem+json (RFC 9457)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg import OperationalError
from psycopg.errors import QueryCanceled
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from patient_search.errors import ProblemError

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("patient_search.problems")
# Names a client invented (unknown parameters and fields) are shown, but never at length,
# and a body of a thousand unknown fields does not get a thousand errors back.
MAX_LOCATION_PART = 64
MAX_REPORTED_ERRORS = 20
# Pydantic quotes the offending character of a bad UUID; the rule alone is enough.
_MESSAGES_QUOTING_INPUT = {
    "uuid_parsing": "Input should be a valid UUID",
    "uuid_type": "Input should be a valid UUID",
}


def problem_response(
    status: int,
    title: str,
    detail: str,
    headers: dict[str, str] | None = None,
    *,
    type_: str = "about:blank",
    **extra: object,
) -> JSONResponse:
    """A problem document; `detail` must never contain patient data."""
    body = {"type": type_, "status": status, "title": title, "detail": detail, **extra}
    return JSONResponse(
        body,
        status_code=status,
        media_type=PROBLEM_JSON,
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return problem_response(
        exc.status, exc.title, exc.detail, exc.headers, type_=exc.type, **exc.extra
    )


def _location(part: object) -> str:
    text = str(part)
    return text if len(text) <= MAX_LOCATION_PART else text[:MAX_LOCATION_PART] + "…"


def _is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Pydantic's errors carry the offending input; only its location and the rule go out.
    errors = [
        {
            "loc": [_location(part) for part in error.get("loc", ())],
            "msg": _MESSAGES_QUOTING_INPUT.get(error.get("type", ""), error.get("msg", "invalid")),
        }
        for error in exc.errors()[:MAX_REPORTED_ERRORS]
    ]
    in_body = any(e["loc"][:1] == ["body"] for e in errors)
    if in_body and not _is_json(request.headers.get("content-type")):
        # FastAPI does not parse other media types and reports "not an object"; say why.
        return problem_response(
            415, "Unsupported media type", "send the body as JSON (Content-Type: application/json)"
        )
    where = ", ".join(".".join(e["loc"]) or "request" for e in errors[:5])
    reasons = "; ".join(e["msg"] for e in errors[:3])
    # A body that does not validate is 422; a malformed URL, query or header is 400.
    status = 422 if in_body else 400
    return problem_response(
        status,
        "Invalid request",
        f"the request does not validate: {where} ({reasons})",
        errors=errors,
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else "request rejected"
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # Starlette names only the first route of the path; RFC 9110 wants all its methods.
        headers["Allow"] = _allowed_methods(request)
    return problem_response(exc.status_code, detail, detail, headers)


def _allowed_methods(request: Request) -> str:
    methods: set[str] = set()
    for route in request.app.router.routes:
        if route.matches(request.scope)[0] is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))


async def _pool_timeout(request: Request, exc: Exception) -> JSONResponse:
    log.warning("db_pool_timeout", extra={"route": request.scope.get("route_path")})
    return problem_response(
        503,
        "Service unavailable",
        "all database connections are busy; retry shortly",
        {"Retry-After": "1"},
    )


async def _database_down(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database_unavailable", extra={"error_type": type(exc).__name__})
    return problem_response(
        503,
        "Service unavailable",
        "the database is unavailable; retry shortly",
        {"Retry-After": "2"},
    )


async def _statement_cancelled(request: Request, exc: Exception) -> JSONResponse:
    # statement_timeout fired: the connection is healthy again, the request is not retried.
    log.warning("db_statement_cancelled", extra={"route": request.scope.get("route_path")})
    return problem_response(
        503,
        "Service unavailable",
        "the database took too long to answer and the query was cancelled; retry shortly",
        {"Retry-After": "1"},
    )


def install_problem_handlers(app: FastAPI) -> None:
    """Route every error type to its problem document."""
    app.add_exception_handler(ProblemError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(PoolTimeout, _pool_timeout)
    app.add_exception_handler(OperationalError, _database_down)
    app.add_exception_handler(QueryCanceled, _statement_cancelled)


PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "status", "title", "detail"],
    "properties": {
        "type": {"type": "string"},
        "status": {"type": "integer"},
        "title": {"type": "string"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["loc", "msg"],
                "properties": {
                    "loc": {"type": "array", "items": {"type": "string"}},
                    "msg": {"type": "string"},
                },
            },
        },
    },
}
_WHEN = {
    400: "Malformed URL, query, header or Content-Length",
    401: "No valid bearer token",
    403: "The token lacks the scope",
    404: "No such patient in your clinic",
    409: "The MRN is taken in your clinic",
    412: "If-Match names a version that is no longer current",
    413: "The body exceeds the size limit",
    415: "The body is not JSON",
    422: "The body does not validate",
    429: "Too many searches by this user; retry after Retry-After",
    503: "The database is busy or unavailable; retry after Retry-After",
}
# Any route may answer these (the size limit and the database apply to every request).
_EVERY_ROUTE = (400, 401, 403, 413, 422, 503)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for a route: its problem documents besides the common ones."""
    return {
        status: {
            "description": _WHEN[status],
            "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}},
        }
        for status in sorted({*_EVERY_ROUTE, *statuses})
    }
