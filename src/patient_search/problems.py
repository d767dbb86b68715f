"""Every error leaves the service as application/problem+json (RFC 9457)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg import OperationalError
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from patient_search.errors import ProblemError

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("patient_search.problems")


def problem_response(
    status: int, title: str, detail: str, headers: dict[str, str] | None = None, **extra: object
) -> JSONResponse:
    """A problem document; `detail` must never contain patient data."""
    body = {"type": "about:blank", "status": status, "title": title, "detail": detail, **extra}
    return JSONResponse(
        body,
        status_code=status,
        media_type=PROBLEM_JSON,
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return problem_response(exc.status, exc.title, exc.detail, exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Pydantic's errors carry the offending input; only its location and the rule go out.
    errors = [
        {"loc": [str(part) for part in error.get("loc", ())], "msg": error.get("msg", "invalid")}
        for error in exc.errors()
    ]
    where = ", ".join(".".join(e["loc"]) or "request" for e in errors[:5])
    reasons = "; ".join(e["msg"] for e in errors[:3])
    # A body that does not validate is 422; a malformed URL, query or header is 400.
    in_body = any(e["loc"][:1] == ["body"] for e in errors)
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
    return problem_response(exc.status_code, detail, detail, dict(exc.headers or {}))


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


def install_problem_handlers(app: FastAPI) -> None:
    """Route every error type to its problem document."""
    app.add_exception_handler(ProblemError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(PoolTimeout, _pool_timeout)
    app.add_exception_handler(OperationalError, _database_down)
