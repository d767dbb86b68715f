"""Hostile bearer tokens against every route: 401 for a token that cannot be trusted, 403 for
a missing scope, 404 for another clinic's ids; the secret and the token never reach a log."""

from __future__ import annotations

import base64
import logging
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import jwt
import orjson
import pytest

from patient_search.observability.logs import JsonFormatter
from tests.factories import TEST_SECRET, bearer, new_clinic_id, patient_body
from tests.hardening.nasty import PROBLEM


def _b64(data: object) -> str:
    raw = data if isinstance(data, bytes) else orjson.dumps(data)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _claims(clinic: str, **overrides: object) -> dict[str, object]:
    claims: dict[str, object] = {
        "sub": "mallory",
        "clinic_id": clinic,
        "scope": "patients:read patients:write",
        "exp": int(time.time()) + 600,
    }
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not None}


def _signed(claims: dict[str, object], secret: str = TEST_SECRET, **kwargs: Any) -> str:
    return jwt.encode(claims, secret, **{"algorithm": "HS256", **kwargs})


def _unsigned(claims: dict[str, object], alg: str = "none") -> str:
    return f"{_b64({'alg': alg, 'typ': 'JWT'})}.{_b64(claims)}."


def _hostile_tokens(clinic: str) -> dict[str, str]:
    """Every token here must be refused with 401."""
    now = int(time.time())
    good = _signed(_claims(clinic))
    header, payload, signature = good.split(".")
    other_payload = _b64(_claims(clinic, clinic_id="t-someone-else"))
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        hs512 = _signed(_claims(clinic), algorithm="HS512")
    return {
        "alg-none": _unsigned(_claims(clinic)),
        "alg-None": _unsigned(_claims(clinic), alg="None"),
        "alg-none-with-signature": _unsigned(_claims(clinic)) + signature,
        "wrong-secret": _signed(_claims(clinic), secret="not-the-secret-" + "y" * 40),
        "hs512-same-secret": hs512,
        "signature-stripped": f"{header}.{payload}.",
        "payload-swapped": f"{header}.{other_payload}.{signature}",
        "signature-flipped": f"{header}.{payload}.{flipped}",
        "expired": _signed(_claims(clinic, exp=now - 3600)),
        "expired-just-past-leeway": _signed(_claims(clinic, exp=now - 30)),
        "not-yet-valid": _signed(_claims(clinic, nbf=now + 3600)),
        "no-exp": _signed(_claims(clinic, exp=None)),
        "no-clinic": _signed(_claims(clinic, clinic_id=None)),
        "no-scope": _signed(_claims(clinic, scope=None)),
        "no-sub": _signed(_claims(clinic, sub=None)),
        "clinic-empty": _signed(_claims(clinic, clinic_id="")),
        "clinic-sql": _signed(_claims(clinic, clinic_id="x'; SET ROLE postgres; --")),
        "clinic-traversal": _signed(_claims(clinic, clinic_id="../clinic-1")),
        "clinic-too-long": _signed(_claims(clinic, clinic_id="c" * 65)),
        "clinic-list": _signed(_claims(clinic, clinic_id=[clinic, "clinic-1"])),
        "clinic-number": _signed(_claims(clinic, clinic_id=1)),
        "clinic-nul": _signed(_claims(clinic, clinic_id="c\x00")),
        "scope-list": _signed(_claims(clinic, scope=["patients:read", "patients:write"])),
        "sub-empty": _signed(_claims(clinic, sub="")),
        "sub-huge": _signed(_claims(clinic, sub="s" * 10_000)),
        "sub-object": _signed(_claims(clinic, sub={"id": 1})),
        "not-json": f"{_b64(b'{not json')}.{payload}.{signature}",
        "two-parts": f"{header}.{payload}",
        "garbage": "a.b.c",
        "empty-parts": "..",
        "non-ascii": "ünïcödé.tökén.sïg",
    }


def _routes(patient_id: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    return [
        ("GET", "/v1/patients?q=ada", None),
        ("POST", "/v1/patients", patient_body()),
        ("GET", f"/v1/patients/{patient_id}", None),
        ("GET", f"/v1/patients/{patient_id}/summary", None),
        ("PATCH", f"/v1/patients/{patient_id}", {"first_name": "Eve"}),
        ("DELETE", f"/v1/patients/{patient_id}", None),
    ]


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    """Every log record of the process while the test runs, formatted with all its fields."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(JsonFormatter().format(record))

    handler = Collect(level=logging.DEBUG)
    loggers = [logging.getLogger(), logging.getLogger("patient_search")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    yield lines
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


async def test_untrustworthy_tokens_are_401_on_every_route(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    clinic: str,
    create_patient: Callable[..., Any],
    log_lines: list[str],
) -> None:
    patient = await create_patient(auth)
    tokens = _hostile_tokens(clinic)
    for name, token in tokens.items():
        for method, url, body in _routes(str(patient["id"])):
            request = client.build_request(method, url, json=body)
            request.headers["authorization"] = "Bearer " + token
            response = await client.send(request)
            assert response.status_code == 401, (name, method, url, response.text[:200])
            assert response.headers["content-type"] == PROBLEM
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert token not in response.text and TEST_SECRET not in response.text
    # Nothing was changed by any of them.
    current = await client.get(f"/v1/patients/{patient['id']}", headers=auth)
    assert current.status_code == 200 and current.json()["version"] == 1
    logged = "\n".join(log_lines)
    assert TEST_SECRET not in logged
    for token in tokens.values():
        assert token not in logged


async def test_malformed_authorization_headers_are_401(client: httpx.AsyncClient) -> None:
    token = bearer(new_clinic_id())["Authorization"].removeprefix("Bearer ")
    for value in (
        "",
        "Bearer",
        "Bearer    ",
        "Basic " + base64.b64encode(b"admin:admin").decode(),
        "Token " + token,
        token,
        "Bearer " + token + " extra",
        "Bearer\t" + token,
        "Bearer " + "a" * 16_000,
    ):
        response = await client.get("/v1/patients?q=ada", headers={"Authorization": value})
        assert response.status_code == 401, value[:30]
        assert response.headers["content-type"] == PROBLEM


@pytest.mark.parametrize(
    ("scopes", "method", "allowed"),
    [
        ("patients:read", "GET", True),
        ("patients:read", "POST", False),
        ("patients:read", "PATCH", False),
        ("patients:read", "DELETE", False),
        ("patients:write", "GET", False),
        ("patients:write", "POST", True),
        ("", "GET", False),
        ("patients:*", "GET", False),
        ("PATIENTS:READ", "GET", False),
        ("patients:read,patients:write", "POST", False),
        ("admin", "DELETE", False),
    ],
)
async def test_scopes_are_exact(
    client: httpx.AsyncClient,
    clinic: str,
    auth: dict[str, str],
    create_patient: Callable[..., Any],
    scopes: str,
    method: str,
    allowed: bool,
) -> None:
    patient = await create_patient(auth)
    url = "/v1/patients" if method == "POST" else f"/v1/patients/{patient['id']}"
    body = patient_body() if method == "POST" else {"last_name": "X"} if method == "PATCH" else None
    response = await client.request(method, url, json=body, headers=bearer(clinic, scopes=scopes))
    if allowed:
        assert response.status_code < 400, response.text
    else:
        assert response.status_code == 403, response.text
        assert response.headers["content-type"] == PROBLEM


async def test_a_token_for_clinic_a_cannot_touch_clinic_b(
    client: httpx.AsyncClient, create_patient: Callable[..., Any]
) -> None:
    clinic_b = bearer(new_clinic_id())
    theirs = await create_patient(clinic_b, last_name="Bee", mrn="B-SECRET-1")
    clinic_a = bearer(new_clinic_id())
    unknown = str(uuid.uuid4())
    for method, url, body in _routes(str(theirs["id"])):
        if method == "GET" and "?" in url or method == "POST":
            continue  # no id involved; searched and created in clinic A, below
        response = await client.request(method, url, json=body, headers=clinic_a)
        like_unknown = await client.request(
            method, url.replace(str(theirs["id"]), unknown), json=body, headers=clinic_a
        )
        # Indistinguishable from an id that does not exist at all.
        assert response.status_code == like_unknown.status_code == 404, (method, url)
        assert response.json() == like_unknown.json()
    untouched = await client.get(f"/v1/patients/{theirs['id']}", headers=clinic_b)
    assert untouched.status_code == 200
    assert untouched.json()["version"] == 1 and untouched.json()["last_name"] == "Bee"
    # The same MRN is free in clinic A, and creating it there changes nothing in B.
    mine = await client.post("/v1/patients", json=patient_body(mrn="B-SECRET-1"), headers=clinic_a)
    assert mine.status_code == 201
    assert mine.json()["id"] != theirs["id"]
