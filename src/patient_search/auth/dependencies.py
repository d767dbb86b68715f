"""FastAPI dependencies that authenticate the caller and check scopes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from patient_search.auth.tokens import (
    READ_SCOPE,
    WRITE_SCOPE,
    InvalidToken,
    Principal,
)
from patient_search.errors import Forbidden, NotAuthenticated
from patient_search.state import AppState

# Declares the scheme in the OpenAPI document; the header is checked below, with our own 401.
_BEARER = HTTPBearer(auto_error=False, description="A JWT from `patient-search token`")
# For routes that authenticate without `Reader`/`Writer`: the same declaration, by name.
BEARER_REQUIRED: dict[str, object] = {"security": [{_BEARER.scheme_name: []}]}


def authenticate(request: Request, required_scope: str) -> Principal:
    """The caller named by the request's bearer token, holding `required_scope`.

    401 when there is no valid token, 403 when it lacks the scope."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthenticated("send 'Authorization: Bearer <token>'")
    state: AppState = request.app.state.services
    try:
        principal = state.tokens.verify(token.strip())
    except InvalidToken as exc:
        raise NotAuthenticated(str(exc)) from exc
    request.state.user_id = principal.user_id
    if required_scope not in principal.scopes:
        raise Forbidden(f"this requires the '{required_scope}' scope")
    return principal


# One dependency per scope, with no sub-dependencies of its own but the declared scheme:
# FastAPI's dependency solving costs tens of microseconds a node, and on a cached lookup
# the old chain (token, state, scope check, reader) held 28 % of the worker's samples
# (py-spy; decision 0012).
def _requiring(scope: str) -> object:
    async def principal_with_scope(
        request: Request,
        _declared: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)],
    ) -> Principal:
        return authenticate(request, scope)

    return Depends(principal_with_scope)


Reader = Annotated[Principal, _requiring(READ_SCOPE)]
Writer = Annotated[Principal, _requiring(WRITE_SCOPE)]
