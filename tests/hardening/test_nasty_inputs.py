"""Hostile values in every parameter, header and body field: a clear 4xx or a faithful 2xx.

Never a 5xx; errors are problem documents that never quote the input; accepted text is stored
exactly (after trimming) and search treats it as text, never as SQL, LIKE, tsquery or regex.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest

from tests.factories import bearer, new_clinic_id, patient_body
from tests.hardening.nasty import NASTY_JSON, NASTY_TEXT, PROBLEM, assert_clean_answer

SEARCH_PARAMETERS = (
    "q",
    "phone",
    "email",
    "date_of_birth",
    "mrn",
    "status",
    "limit",
    "offset",
    "cursor",
)
# Body fields, as a path into the POST body.
BODY_FIELDS: tuple[tuple[str | int, ...], ...] = (
    ("mrn",),
    ("first_name",),
    ("middle_name",),
    ("last_name",),
    ("date_of_birth",),
    ("sex",),
    ("status",),
    ("phones", 0),
    ("email",),
    ("emergency_contacts", 0, "name"),
    ("emergency_contacts", 0, "relationship"),
    ("emergency_contacts", 0, "phone"),
    ("insurance", 0, "payer"),
    ("insurance", 0, "member_id"),
)
# Fields stored as typed (trimmed) when accepted, and read back the same.
TEXT_FIELDS = {"first_name", "middle_name", "last_name", "mrn"}


def _with(body: dict[str, Any], path: tuple[str | int, ...], value: object) -> dict[str, Any]:
    copy: Any = json.loads(json.dumps(body))
    target = copy
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    result: dict[str, Any] = copy
    return result


@pytest.mark.parametrize("parameter", SEARCH_PARAMETERS)
async def test_search_parameters(
    client: httpx.AsyncClient, auth: dict[str, str], parameter: str
) -> None:
    for name, value in NASTY_TEXT.items():
        params = {parameter: value} if parameter == "q" else {"q": "smith", parameter: value}
        response = await client.get("/v1/patients", params=params, headers=auth)
        assert_clean_answer(response, value)
        if parameter in {"limit", "offset", "cursor", "status", "date_of_birth"}:
            assert response.status_code == 400, (parameter, name)


@pytest.mark.parametrize(
    ("limit", "offset"),
    [(0, 0), (101, 0), (-1, 0), (10**30, 0), (20, -1), (20, 10_001), (20, 10**30), ("1e2", 0)],
)
async def test_out_of_range_paging_is_400(
    client: httpx.AsyncClient, auth: dict[str, str], limit: object, offset: object
) -> None:
    response = await client.get(
        "/v1/patients", params={"q": "smith", "limit": limit, "offset": offset}, headers=auth
    )
    assert response.status_code == 400
    assert_clean_answer(response)


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE", "GET summary"])
async def test_patient_ids(client: httpx.AsyncClient, auth: dict[str, str], method: str) -> None:
    verb, _, suffix = method.partition(" ")
    for value in [*NASTY_TEXT.values(), "00000000-0000-0000-0000-000000000000", "{" + "0" * 36]:
        url = f"/v1/patients/{quote(value, safe='')}" + (f"/{suffix}" if suffix else "")
        body = {"first_name": "X"} if verb == "PATCH" else None
        response = await client.request(verb, url, json=body, headers=auth)
        assert_clean_answer(response, value)
        # An empty id is the collection's URL with a slash: redirected to it.
        assert response.status_code in ({307, 404} if not value else {400, 404, 405}), value[:20]


async def test_if_match_values(
    client: httpx.AsyncClient, auth: dict[str, str], create_patient: Callable[..., Any]
) -> None:
    patient = await create_patient(auth)
    values = [v for v in NASTY_TEXT.values() if v.isprintable() and v.isascii()]
    values += ['"1", "2"', '"99999999999999999999"', '"-1"', 'W/"x"', '"1"junk', '""']
    for value in values:
        response = await client.patch(
            f"/v1/patients/{patient['id']}",
            json={"first_name": "Ada"},
            headers={**auth, "If-Match": value},
        )
        assert_clean_answer(response, value)
        assert response.status_code in {200, 400, 412}, value


@pytest.mark.parametrize("path", BODY_FIELDS, ids=lambda p: ".".join(map(str, p)))
async def test_body_fields_on_create(
    client: httpx.AsyncClient, auth: dict[str, str], path: tuple[str | int, ...]
) -> None:
    values: dict[str, object] = {**NASTY_TEXT, **NASTY_JSON}
    for name, value in values.items():
        body = _with(patient_body(), path, value)
        response = await client.post("/v1/patients", json=body, headers=auth)
        assert_clean_answer(response, value)
        assert response.status_code in {201, 409, 422}, (path, name, response.text[:200])
        if response.status_code == 201 and path[0] in TEXT_FIELDS and isinstance(value, str):
            # Nothing lost: what was accepted reads back as sent, trimmed.
            created = await client.get(response.headers["location"], headers=auth)
            assert created.json()[str(path[0])] == value.strip(), name


@pytest.mark.parametrize("path", BODY_FIELDS, ids=lambda p: ".".join(map(str, p)))
async def test_body_fields_on_update(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    create_patient: Callable[..., Any],
    path: tuple[str | int, ...],
) -> None:
    patient = await create_patient(auth)
    full = patient_body()
    values: dict[str, object] = {**NASTY_TEXT, **NASTY_JSON}
    for name, value in values.items():
        # Lists are replaced whole, so a nested field is patched with its whole list.
        patch = {str(path[0]): _with(full, path, value)[str(path[0])]}
        response = await client.patch(f"/v1/patients/{patient['id']}", json=patch, headers=auth)
        assert_clean_answer(response, value)
        assert response.status_code in {200, 400, 409, 422}, (path, name, response.text[:200])


@pytest.mark.parametrize("escape", ["\\ud800", "a\\udfffb", "\\udc80\\ud800"])
@pytest.mark.parametrize("field", ["mrn", "last_name", "email", "phones"])
async def test_unpaired_surrogates_in_json_are_422(
    client: httpx.AsyncClient, auth: dict[str, str], field: str, escape: str
) -> None:
    # Valid JSON escapes that no UTF-8 string can hold; PostgreSQL could not store them either.
    value = f'["{escape}"]' if field == "phones" else f'"{escape}"'
    fields = {"mrn": '"S1"', "last_name": '"X"', field: value}
    content = "{" + ", ".join(f'"{name}": {raw}' for name, raw in fields.items()) + "}"
    response = await client.post(
        "/v1/patients",
        content=content.encode(),
        headers={**auth, "content-type": "application/json"},
    )
    assert response.status_code == 422, content
    assert_clean_answer(response)


@pytest.mark.parametrize(
    "url",
    [
        "/v1/patients?q=%ff%fe",
        "/v1/patients?q=%ed%a0%80",  # an encoded surrogate
        "/v1/patients?q=%c0%af",  # an overlong slash
        "/v1/patients?q=smith&mrn=%80",
        "/v1/patients/%ff",
        "/v1/patients/%ed%a0%80/summary",
    ],
)
async def test_invalid_utf8_in_the_url_is_400(
    client: httpx.AsyncClient, auth: dict[str, str], url: str
) -> None:
    response = await client.get(url, headers=auth)
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM
    assert "UTF-8" in response.json()["detail"]


@pytest.mark.parametrize(
    "request_line",
    [
        b"GET /v1/patients?q=\xff\xfe HTTP/1.1",  # raw bytes, not even percent-encoded
        b"GET /v1/patients?q=a\x00b HTTP/1.1",
        b"GET /v1/patients/\xc3\x28 HTTP/1.1",
        b"GET /v1/patients?q=" + b"a" * 20_000 + b" HTTP/1.1",
    ],
)
def test_raw_bytes_in_the_request_line(live_server: str, request_line: bytes) -> None:
    """What a real server makes of bytes no client library would send: never a 5xx."""
    address = urlsplit(live_server)
    token = bearer(new_clinic_id())["Authorization"].encode()
    with socket.create_connection((address.hostname, address.port), timeout=10) as conn:
        conn.sendall(
            request_line + b"\r\nHost: test\r\nAuthorization: " + token + b"\r\n"
            b"Connection: close\r\n\r\n"
        )
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    assert 400 <= status < 500, answer[:300]


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b'{"mrn": "C1", "last_name": "X"}', "text/plain", 415),
        (b"mrn=C1&last_name=X", "application/x-www-form-urlencoded", 415),
        (
            b"--b\r\nContent-Disposition: form-data; name=mrn\r\n\r\nC1\r\n--b--",
            "multipart/form-data; boundary=b",
            415,
        ),
        (b"<patient><mrn>C1</mrn></patient>", "application/xml", 415),
        (b'{"mrn": "C1", "last_name": "X"}', None, 415),
        (b"", "application/json", 422),
        (b"null", "application/json", 422),
        (b"[]", "application/json", 422),
        (b'"just a string"', "application/json", 422),
        (b"{not json", "application/json", 422),
        (b"\xef\xbb\xbf{}", "application/json", 422),  # a byte-order mark
        (b"\xff\xfe{\x00}\x00", "application/json", 422),  # UTF-16 "{}": read, then incomplete
        (  # Python's JSON reader detects UTF-16 and -32 (RFC 4627) and decodes them faithfully
            b'{"mrn": "C1", "last_name": "X"}'.decode().encode("utf-16"),
            "application/json; charset=utf-16",
            201,
        ),
        (b"\x00" * 100, "application/json", 422),
        (b"[" * 30_000 + b"]" * 30_000, "application/json", 400),  # too deep to parse
        (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "application/json", 400),
        (b'{"mrn": ' + b"9" * 5_000 + b', "last_name": "X"}', "application/json", 400),
        (b'{"mrn": 1e999999, "last_name": "X"}', "application/json", 422),
        (b'{"mrn": NaN, "last_name": Infinity}', "application/json", 422),
        (
            b'{"mrn": "C1", "mrn": "C2", "last_name": "X", "last_name": "\\u0000"}',
            "application/json",
            422,
        ),
    ],
)
async def test_bodies_that_are_not_a_patient(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    content: bytes,
    content_type: str | None,
    status: int,
) -> None:
    headers = {**auth, **({"content-type": content_type} if content_type else {})}
    response = await client.post("/v1/patients", content=content, headers=headers)
    assert response.status_code == status, response.text[:300]
    assert_clean_answer(response)


async def test_many_unknown_fields_give_a_bounded_answer(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    body = {**patient_body(), **{f"field{n}_{'k' * 200}": n for n in range(200)}}
    response = await client.post("/v1/patients", json=body, headers=auth)
    assert response.status_code == 422
    assert_clean_answer(response)
    assert len(response.content) < 10_000
    assert "k" * 100 not in response.text  # invented names are shortened


@pytest.mark.parametrize("declared", [b"abc", b"-1", b"1.5", b" 12", b"0x10", b"\xd9\xa1"])
async def test_a_content_length_that_is_not_a_number_is_400(
    client: httpx.AsyncClient, auth: dict[str, str], declared: bytes
) -> None:
    request = client.build_request(
        "POST", "/v1/patients", content=b"{}", headers={**auth, "content-type": "application/json"}
    )
    request.headers["content-length"] = declared.decode("latin-1")
    response = await client.send(request)
    assert response.status_code == 400
    assert "Content-Length" in response.json()["detail"]


async def test_oversized_bodies_are_413_declared_or_streamed(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    headers = {**auth, "content-type": "application/json"}
    declared = await client.post("/v1/patients", content=b" " * 70_000, headers=headers)
    assert declared.status_code == 413

    async def chunks() -> Any:
        for _ in range(100):
            yield b" " * 1_000

    streamed = await client.post("/v1/patients", content=chunks(), headers=headers)
    assert streamed.status_code == 413
    big = patient_body(insurance=[{"payer": "p" * 200, "member_id": "m"}] * 5)
    big["emergency_contacts"] = [{"name": "n" * 200, "relationship": "r" * 200}] * 5
    assert len(json.dumps(big)) < 65_536
    ok = await client.post("/v1/patients", json=big, headers=headers)
    assert ok.status_code == 201


async def test_search_text_is_never_syntax(
    client: httpx.AsyncClient, auth: dict[str, str], create_patient: Callable[..., Any]
) -> None:
    """Wildcards and operators find nothing in a clinic of ordinary names: they are text."""
    clinic = bearer(new_clinic_id())
    for last in ("Smith", "Jones", "Garcia"):
        await create_patient(clinic, last_name=last, first_name="Ann")
    syntax = [
        "%",
        "_",
        "\\",
        "%%",
        "_%_",
        ".*",
        "*",
        ":*",
        "!",
        "|",
        "&",
        "'",
    ]
    for text in syntax:
        for parameter in ("q", "mrn", "email"):
            response = await client.get("/v1/patients", params={parameter: text}, headers=clinic)
            assert_clean_answer(response, text)
            if response.status_code == 200:
                assert response.json()["items"] == [], (parameter, text)


async def test_tampered_cursors_are_400(
    client: httpx.AsyncClient, auth: dict[str, str], create_patient: Callable[..., Any]
) -> None:
    for n in range(3):
        await create_patient(auth, last_name="Cursorova", first_name=f"P{n}")
    params = {"q": "cursorova", "limit": 1}
    cursor = (await client.get("/v1/patients", params=params, headers=auth)).json()["next_cursor"]
    assert cursor
    flipped = cursor[:10] + ("A" if cursor[10] != "A" else "B") + cursor[11:]
    tampered = {
        "flipped": flipped,
        "truncated": cursor[:-3],
        "extended": cursor + "AAAA",
        "padded": cursor + "==",
        "doubled": cursor + cursor,
        "reversed": cursor[::-1],
        "garbage": "QUJD",
        "one-char": "A",
        "max-length": "A" * 512,
        "too-long": "A" * 513,
        "plus-and-slash": cursor.replace("-", "+").replace("_", "/") + "+/",
    }
    for name, value in tampered.items():
        response = await client.get(
            "/v1/patients", params={**params, "cursor": value}, headers=auth
        )
        assert response.status_code == 400, name
        assert_clean_answer(response, value)
    # Another query's cursor is refused too, even in the same clinic.
    other = await client.get(
        "/v1/patients", params={"q": "cursorov", "limit": 1, "cursor": cursor}, headers=auth
    )
    assert other.status_code == 400
    # The untouched cursor still works.
    ok = await client.get("/v1/patients", params={**params, "cursor": cursor}, headers=auth)
    assert ok.status_code == 200 and len(ok.json()["items"]) == 1
