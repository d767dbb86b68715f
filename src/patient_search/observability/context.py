"""The request id of the request being served, for events logged below the HTTP layer."""

from __future__ import annotations

from contextvars import ContextVar

# Set by the request middleware for the duration of one request; None outside requests.
request_id: ContextVar[str | None] = ContextVar("patient_search_request_id", default=None)
