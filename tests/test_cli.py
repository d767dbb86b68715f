"""The `patient-search` command's verbs."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from patient_search import cli
from patient_search.auth.tokens import verify_token
from patient_search.settings import Settings
from tests.factories import TEST_SECRET


@pytest.fixture(autouse=True)
def _cli_uses_test_settings(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    monkeypatch.setattr(cli, "get_settings", lambda: settings)


def test_token_is_verifiable(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        cli.main(
            [
                "token",
                "--clinic",
                "c-9",
                "--user",
                "alice",
                "--scope",
                "patients:read",
                "--ttl",
                "60",
            ]
        )
        == 0
    )
    principal = verify_token(capsys.readouterr().out.strip(), TEST_SECRET)
    assert (principal.clinic_id, principal.user_id) == ("c-9", "alice")
    assert principal.scopes == frozenset({"patients:read"})


def test_bad_clinic_id_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["token", "--clinic", "bad id", "--user", "a"])
    assert exit_info.value.code == 2


def test_token_refuses_in_production_without_a_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    production = Settings(_env_file=None, env="production", jwt_secret="")  # type: ignore[call-arg]
    monkeypatch.setattr(cli, "get_settings", lambda: production)
    assert cli.main(["token", "--clinic", "c", "--user", "a"]) == 2
    assert "PATIENT_SEARCH_JWT_SECRET" in capsys.readouterr().err


def test_seed_loads_every_clinic_and_if_empty_skips(
    capsys: pytest.CaptureFixture[str], superuser_conn: psycopg.Connection[Any]
) -> None:
    superuser_conn.execute("DELETE FROM patients WHERE clinic_id IN ('clinic-1', 'clinic-2')")
    assert cli.main(["seed", "--patients", "301", "--clinics", "2", "--seed", "7"]) == 0
    counts = dict(
        superuser_conn.execute(
            "SELECT clinic_id, count(*) FROM patients WHERE clinic_id IN ('clinic-1', 'clinic-2')"
            " GROUP BY clinic_id"
        ).fetchall()
    )
    assert counts == {"clinic-1": 151, "clinic-2": 150}
    capsys.readouterr()
    assert cli.main(["seed", "--patients", "301", "--clinics", "2", "--if-empty"]) == 0
    assert "already has patients" in capsys.readouterr().out
    assert cli.main(["demo-info", "--clinic", "clinic-1"]) == 0
    out = capsys.readouterr().out
    assert 'curl -s -H "Authorization: Bearer ' in out
    assert "/v1/patients/" in out


def test_invalid_settings_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken() -> Settings:
        raise ValueError("PATIENT_SEARCH_DB_POOL_MAX: not a number")

    monkeypatch.setattr(cli, "get_settings", broken)
    assert cli.main(["migrate"]) == 2
    assert "invalid settings" in capsys.readouterr().err
