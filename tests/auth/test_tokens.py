"""Bearer tokens: every way a token can be wrong is a 401, a missing scope a 403."""

from __future__ import annotations

import base64
import time
import uuid

import httpx
import jwt
import orjson
import pytest

from patient_search.auth import tokens
from patient_search.auth.tokens import (
    LEEWAY_S,
    InvalidToken,
    TokenVerifier,
    issue_token,
    verify_token,
)
from tests.factories import TEST_SECRET, bearer


def _claims(**overrides: object) -> dict[str, object]:
    claims: dict[str, object] = {
        "sub": "u1",
        "clinic_id": "c1",
        "scope": "patients:read",
        "exp": int(time.time()) + 60,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()


class TestVerify:
    def test_exactly_the_four_claims_are_enough(self) -> None:
        principal = verify_token(jwt.encode(_claims(), TEST_SECRET, "HS256"), TEST_SECRET)
        assert principal.user_id == "u1"
        assert principal.clinic_id == "c1"
        assert principal.scopes == frozenset({"patients:read"})

    @pytest.mark.parametrize("missing", ["sub", "clinic_id", "scope", "exp"])
    def test_each_claim_is_required(self, missing: str) -> None:
        token = jwt.encode(_claims(**{missing: None}), TEST_SECRET, "HS256")
        with pytest.raises(InvalidToken, match=missing):
            verify_token(token, TEST_SECRET)

    def test_expired(self) -> None:
        token = jwt.encode(_claims(exp=int(time.time()) - 60), TEST_SECRET, "HS256")
        with pytest.raises(InvalidToken, match="expired"):
            verify_token(token, TEST_SECRET)

    def test_not_yet_valid(self) -> None:
        token = jwt.encode(_claims(nbf=int(time.time()) + 600), TEST_SECRET, "HS256")
        with pytest.raises(InvalidToken, match="not valid yet"):
            verify_token(token, TEST_SECRET)

    def test_wrong_signature(self) -> None:
        token = jwt.encode(_claims(), "another-secret-" + "y" * 40, "HS256")
        with pytest.raises(InvalidToken, match="signature"):
            verify_token(token, TEST_SECRET)

    def test_alg_none_is_refused(self) -> None:
        token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims())}."
        with pytest.raises(InvalidToken):
            verify_token(token, TEST_SECRET)

    def test_malformed_clinic_id(self) -> None:
        token = jwt.encode(_claims(clinic_id="../etc"), TEST_SECRET, "HS256")
        with pytest.raises(InvalidToken, match="clinic_id"):
            verify_token(token, TEST_SECRET)

    def test_non_string_claims(self) -> None:
        for claims in (_claims(sub=5), _claims(scope=["patients:read"])):
            with pytest.raises(InvalidToken):
                verify_token(jwt.encode(claims, TEST_SECRET, "HS256"), TEST_SECRET)

    def test_issuer_and_audience_when_configured(self) -> None:
        token = jwt.encode(_claims(iss="idp", aud="ps"), TEST_SECRET, "HS256")
        assert verify_token(token, TEST_SECRET, issuer="idp", audience="ps").user_id == "u1"
        with pytest.raises(InvalidToken):
            verify_token(token, TEST_SECRET, issuer="other")

    def test_issue_refuses_a_bad_clinic_id(self) -> None:
        with pytest.raises(ValueError, match="clinic id"):
            issue_token(TEST_SECRET, clinic_id="no spaces", user_id="u")


class TestHttp:
    async def test_missing_and_malformed_headers_are_401(self, client: httpx.AsyncClient) -> None:
        url = f"/v1/patients/{uuid.uuid4()}"
        for headers in (
            {},
            {"Authorization": "Basic abc"},
            {"Authorization": "Bearer "},
            {"Authorization": "Bearer not.a.jwt"},
        ):
            response = await client.get(url, headers=headers)
            assert response.status_code == 401, headers
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert response.headers["content-type"] == "application/problem+json"

    async def test_expired_token_is_401(self, client: httpx.AsyncClient) -> None:
        token = jwt.encode(_claims(exp=int(time.time()) - 60), TEST_SECRET, "HS256")
        response = await client.get(
            f"/v1/patients/{uuid.uuid4()}", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 401
        assert token not in response.text

    async def test_missing_scope_is_403(self, client: httpx.AsyncClient, clinic: str) -> None:
        read_only = bearer(clinic, scopes="patients:read")
        response = await client.post("/v1/patients", json={}, headers=read_only)
        assert response.status_code == 403
        assert "patients:write" in response.json()["detail"]
        no_scope = bearer(clinic, scopes="")
        response = await client.get(f"/v1/patients/{uuid.uuid4()}", headers=no_scope)
        assert response.status_code == 403


class TestTokenVerifier:
    def test_a_remembered_token_is_verified_again_once_it_expires(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        verifier = TokenVerifier(TEST_SECRET)
        token = issue_token(TEST_SECRET, clinic_id="c-1", user_id="desk", ttl_s=60)
        assert verifier.verify(token).clinic_id == "c-1"
        checks: list[str] = []

        def expired(*args: object) -> None:
            checks.append("verified")
            raise InvalidToken("the token has expired")

        monkeypatch.setattr(tokens, "_verify", expired)
        assert verifier.verify(token).user_id == "desk"  # still valid: from memory
        assert checks == []
        later = time.time() + 60 + LEEWAY_S + 1
        monkeypatch.setattr(time, "time", lambda: later)
        with pytest.raises(InvalidToken, match="expired"):
            verifier.verify(token)
        assert checks == ["verified"]

    def test_a_token_of_another_secret_is_never_remembered_as_valid(self) -> None:
        verifier = TokenVerifier(TEST_SECRET)
        forged = issue_token("another-secret-of-enough-length-000", clinic_id="c-1", user_id="x")
        for _ in range(2):
            with pytest.raises(InvalidToken):
                verifier.verify(forged)
