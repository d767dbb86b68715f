"""GET / and its assets: a strict Content-Security-Policy, no inline code, no referrer."""

from __future__ import annotations

import re
import time

import httpx
import jwt

from patient_search.app import create_app
from patient_search.web.router import CONTENT_SECURITY_POLICY
from tests.conftest import asgi_client, make_settings
from tests.factories import TEST_SECRET, bearer, new_clinic_id, patient_body

STRICT_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)


async def test_the_page_is_served_with_a_strict_policy(api: httpx.AsyncClient) -> None:
    response = await api.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["content-security-policy"] == STRICT_CSP == CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


async def test_the_page_has_no_inline_script_or_style(api: httpx.AsyncClient) -> None:
    html = (await api.get("/")).text
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert scripts and all(re.search(r'\bsrc="/web/[\w.]+"', tag) for tag in scripts)
    assert re.search(r"<script\b[^>]*>\s*[^<\s]", html) is None  # no script body
    assert "<style" not in html and " style=" not in html
    assert re.search(r"\son[a-z]+=", html) is None  # no inline event handlers


async def test_assets_have_their_types_and_the_same_headers(api: httpx.AsyncClient) -> None:
    script = await api.get("/web/app.js")
    style = await api.get("/web/app.css")
    assert script.status_code == style.status_code == 200
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert style.headers["content-type"] == "text/css; charset=utf-8"
    assert script.headers["content-security-policy"] == STRICT_CSP
    assert script.headers["x-content-type-options"] == "nosniff"


async def test_nothing_else_is_served_under_web(api: httpx.AsyncClient) -> None:
    for path in ("/web/index.html", "/web/../settings.py", "/web/missing.js"):
        response = await api.get(path)
        assert response.status_code == 404, path


async def test_responses_say_how_long_the_server_took(api: httpx.AsyncClient) -> None:
    response = await api.get(
        "/v1/patients", params={"q": "anyone"}, headers=bearer(new_clinic_id())
    )
    assert response.status_code == 200
    assert re.fullmatch(r"app;dur=\d+\.\d", response.headers["server-timing"])


async def test_dev_token_is_minted_for_the_chosen_clinic(api: httpx.AsyncClient) -> None:
    clinic = new_clinic_id()
    response = await api.post("/dev/token", json={"clinic_id": clinic})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    claims = jwt.decode(body["token"], TEST_SECRET, algorithms=["HS256"])
    assert claims["clinic_id"] == body["clinic_id"] == clinic
    assert set(claims["scope"].split()) == {"patients:read", "patients:write"}
    assert body["expires_in"] == 3600
    assert 3500 < claims["exp"] - time.time() <= 3600
    searched = await api.get(
        "/v1/patients",
        params={"q": "anyone"},
        headers={"Authorization": f"Bearer {body['token']}"},
    )
    assert searched.status_code == 200


async def test_dev_token_rejects_a_malformed_clinic_id(api: httpx.AsyncClient) -> None:
    for body in ({"clinic_id": "no spaces"}, {"clinic_id": ""}, {}, {"clinic_id": "x", "a": 1}):
        response = await api.post("/dev/token", json=body)
        assert response.status_code == 422, body


async def test_dev_clinics_offers_a_clinic_created_just_now(api: httpx.AsyncClient) -> None:
    clinic = new_clinic_id()
    created = await api.post("/v1/patients", json=patient_body(), headers=bearer(clinic))
    assert created.status_code == 201
    response = await api.get("/dev/clinics")
    assert response.status_code == 200
    assert {"id": clinic, "name": clinic} in response.json()["items"]


async def test_dev_routes_do_not_exist_in_production(database_url: str) -> None:
    settings = make_settings(database_url, env="production")
    async with asgi_client(create_app(settings)) as client:
        assert (await client.post("/dev/token", json={"clinic_id": "clinic-1"})).status_code == 404
        assert (await client.get("/dev/clinics")).status_code == 404
        assert (await client.get("/")).status_code == 200
