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
    verify_token,
)
from patient_search.errors import Forbidden, NotAuthenticated
from patient_search.state import State

# Declares the scheme in the OpenAPI document; the header is checked below, with our own 401.
_BEARER = HTTPBearer(auto_error=False, description="A JWT from `patient-search token`")


async def current_principal(
    request: Request,
    state: State,
    _declared: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)],
) -> Principal:
    """The caller named by the request's bearer token; 401 when there is no valid one."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthenticated("send 'Authorization: Bearer <token>'")
    settings = state.settings
    try:
        principal = verify_token(
            token.strip(),
            settings.effective_jwt_secret,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
    except InvalidToken as exc:
        raise NotAuthenticated(str(exc)) from exc
    request.state.user_id = principal.user_id
    return principal


CurrentUser = Annotated[Principal, Depends(current_principal)]


def _requiring(scope: str) -> object:
    async def check(principal: CurrentUser) -> Principal:
        if scope not in principal.scopes:
            raise Forbidden(f"this requires the '{scope}' scope")
        return principal

    return Depends(check)


Reader = Annotated[Principal, _requiring(READ_SCOPE)]
Writer = Annotated[Principal, _requiring(WRITE_SCOPE)]
