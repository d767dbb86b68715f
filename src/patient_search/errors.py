"""Domain errors with an HTTP status, rendered once as application/problem+json.

Messages are written for staff and operators and never include a patient's data.
"""

from __future__ import annotations


class ProblemError(Exception):
    """An error the API reports as a problem document."""

    status: int = 400
    title: str = "Bad request"
    type: str = "about:blank"

    def __init__(
        self,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, object] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra or {}  # members added to the problem document


class NotAuthenticated(ProblemError):
    status = 401
    title = "Not authenticated"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


class Forbidden(ProblemError):
    status = 403
    title = "Forbidden"


class PatientNotFound(ProblemError):
    status = 404
    title = "Patient not found"

    def __init__(self) -> None:
        super().__init__("no patient with this id in your clinic")


class MrnConflict(ProblemError):
    status = 409
    title = "MRN already in use"

    def __init__(self) -> None:
        super().__init__("another patient in your clinic already has this MRN")


class DuplicateSuspected(ProblemError):
    status = 409
    title = "Possible duplicate patient"
    type = "https://patient-search.invalid/problems/duplicate-suspected"

    def __init__(self, candidates: list[dict[str, object]]) -> None:
        super().__init__(
            "this patient may already be registered: check the candidates, or send the same"
            " request with ?allow_duplicate=true to register a new patient anyway",
            extra={"candidates": candidates},
        )


class VersionMismatch(ProblemError):
    status = 412
    title = "Precondition failed"

    def __init__(self, current_version: int) -> None:
        super().__init__(
            f"the patient has changed (current version {current_version}); "
            "reload it and apply your change again"
        )


class InvalidRequest(ProblemError):
    status = 400
    title = "Invalid request"


class SearchesBusy(ProblemError):
    status = 503
    title = "Service busy"

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            f"too many searches of this clinic at once; retry in {retry_after_s} s",
            headers={"Retry-After": str(retry_after_s)},
        )


class RateLimited(ProblemError):
    status = 429
    title = "Too many requests"

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            f"too many searches by this user; retry in {retry_after_s} s",
            headers={"Retry-After": str(retry_after_s)},
        )
