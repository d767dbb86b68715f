"""GET / (the front-desk page) and its assets; in dev, a sign-in that mints tokens.

The page is static: no templating, so no request data can ever be rendered into it.
Every asset goes out with a strict Content-Security-Policy (no inline script or style,
requests only to this origin) and without a referrer, so nothing a user typed can leave
the page through a header or an embedded resource.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Annotated

import psycopg
from fastapi import APIRouter, HTTPException, Response
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, Field

from patient_search.auth.tokens import CLINIC_ID, READ_SCOPE, WRITE_SCOPE, issue_token
from patient_search.db.statements import StatementRunner
from patient_search.settings import Settings
from patient_search.state import State
from patient_search.web.repository import ClinicDirectory

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # The page holds no data; not caching it keeps a deploy from mixing old and new assets.
    "Cache-Control": "no-cache",
}
ASSETS: dict[str, str] = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
DEV_TOKEN_TTL_S = 3600
DEV_USER = "dev-front-desk"
MAX_LISTED_CLINICS = 200


@cache
def _static(name: str) -> bytes:
    return resources.files("patient_search.web").joinpath("static", name).read_bytes()


def _asset_response(name: str, media_type: str) -> Response:
    return Response(_static(name), media_type=media_type, headers=SECURITY_HEADERS)


class DevTokenRequest(BaseModel):
    """Body of POST /dev/token."""

    model_config = ConfigDict(extra="forbid")

    clinic_id: Annotated[str, Field(min_length=1, max_length=64, pattern=CLINIC_ID.pattern)]


class DevToken(BaseModel):
    """A short-lived token for the chosen clinic."""

    token: str
    clinic_id: str
    expires_in: int


class Clinic(BaseModel):
    id: str
    name: str


class ClinicList(BaseModel):
    items: list[Clinic]


def _page_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def front_desk_page() -> Response:
        """The search page."""
        return _asset_response("index.html", "text/html; charset=utf-8")

    @router.get("/web/{name}")
    async def front_desk_asset(name: str) -> Response:
        """The page's script and stylesheet; nothing else under /web is served."""
        if name not in ASSETS:
            raise HTTPException(404, "Not Found")
        return _asset_response(name, ASSETS[name])

    return router


def _dev_router() -> APIRouter:
    router = APIRouter(prefix="/dev", tags=["dev"])

    @router.post("/token", response_model=DevToken)
    async def mint_dev_token(body: DevTokenRequest, state: State, response: Response) -> DevToken:
        """A one-hour read/write token for any clinic; only routed when ENV=dev."""
        token = issue_token(
            state.settings.effective_jwt_secret,
            clinic_id=body.clinic_id,
            user_id=DEV_USER,
            scopes=f"{READ_SCOPE} {WRITE_SCOPE}",
            ttl_s=DEV_TOKEN_TTL_S,
        )
        response.headers["Cache-Control"] = "no-store"
        return DevToken(token=token, clinic_id=body.clinic_id, expires_in=DEV_TOKEN_TTL_S)

    @router.get("/clinics", response_model=ClinicList)
    async def list_dev_clinics(state: State, response: Response) -> ClinicList:
        """The clinics to choose from at dev sign-in; only routed when ENV=dev."""
        # The pool's role sees one clinic at a time (RLS), which is right for every
        # request but this one. Dev only: ask as the migration login, on a connection of
        # its own that never enters the pool. (A login bound by RLS sees no clinic here;
        # the page then lets the user type one.)
        async with await psycopg.AsyncConnection.connect(
            state.settings.migration_conninfo,
            row_factory=dict_row,
            autocommit=True,
            connect_timeout=5,
        ) as conn:
            directory = ClinicDirectory(StatementRunner(conn, state.query_observer))
            rows = await directory.list_clinics(MAX_LISTED_CLINICS)
        response.headers["Cache-Control"] = "no-store"
        return ClinicList(items=[Clinic(**row) for row in rows])

    return router


def build_router(settings: Settings) -> APIRouter:
    """The page for everyone; the dev sign-in routes only when `settings.env` is dev."""
    router = APIRouter()
    router.include_router(_page_router())
    if settings.env == "dev":
        router.include_router(_dev_router())
    return router
