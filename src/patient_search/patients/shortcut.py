"""Cached profile and summary reads answered before the framework's routing (decision 0016).

A cache hit of `GET /v1/patients/{id}` or `…/summary` is the service's commonest request and
its cheapest: one Redis step. Routing, dependency solving and the endpoint wrappers around it
cost more than the step itself, so this middleware answers hits with the routes' own pieces
(`authenticate`, `PatientLookup`, `record_response`) and hands every other request on
untouched: no or a bad token, another path or form of id, a miss, a tombstone, Redis failing,
any error before a response starts. The routes answer those themselves; a view the
shortcut's read already journaled is not audited again there (`VIEW_JOURNALED`).
"""

from __future__ import annotations

import re
import uuid
from typing import Literal

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from patient_search.auth.dependencies import authenticate
from patient_search.auth.tokens import READ_SCOPE
from patient_search.db.dependencies import ClinicReader
from patient_search.patients.router import VIEW_JOURNALED, lookup_for, record_response, router

# The canonical form only; any other spelling FastAPI accepts goes to the route.
_CACHED_READ = re.compile(
    r"/v1/patients/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(/summary)?"
)
PROFILE_ROUTE = "/v1/patients/{patient_id}"
SUMMARY_ROUTE = "/v1/patients/{patient_id}/summary"


class CachedReadShortcut:
    """Answers cache hits of profile and summary reads; passes everything else on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # The routes' own objects: metrics and logs label a hit by its template, as FastAPI does.
        self._routes: dict[str, APIRoute] = {
            route.path: route
            for route in router.routes
            if isinstance(route, APIRoute)
            and route.path in (PROFILE_ROUTE, SUMMARY_ROUTE)
            and "GET" in (route.methods or ())
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            found = _CACHED_READ.fullmatch(scope["path"])
            if found is not None and not scope.get("query_string"):
                action: Literal["view", "summary"] = "summary" if found.group(2) else "view"
                if await self._answered(scope, receive, send, uuid.UUID(found.group(1)), action):
                    return
        await self.app(scope, receive, send)

    async def _answered(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        patient_id: uuid.UUID,
        action: Literal["view", "summary"],
    ) -> bool:
        request = Request(scope, receive)
        try:
            principal = authenticate(request, READ_SCOPE)
            reader = ClinicReader(request.app.state.services, principal)
            found = await lookup_for(reader).cached(patient_id, action)
        except Exception:  # the route meets the same condition and answers it properly
            return False
        if found.record is None:
            if found.journaled:  # the route's read must not audit this view a second time
                scope.setdefault("state", {})[VIEW_JOURNALED] = True
            return False
        scope["route"] = self._routes[SUMMARY_ROUTE if action == "summary" else PROFILE_ROUTE]
        await record_response(found.record)(scope, receive, send)
        return True
