"""Settings refuse to run production without a real secret."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from patient_search.app import create_app
from patient_search.settings import Settings, SettingsError


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_defaults_follow_the_contract() -> None:
    settings = _settings()
    assert settings.env == "production"
    assert (settings.db_pool_min, settings.db_pool_max) == (5, 20)
    assert settings.db_pool_acquire_timeout_s == 30
    assert settings.db_pool_idle_timeout_s == 600
    assert settings.slow_query_ms == 100
    assert settings.phone_region == "US"


@pytest.mark.parametrize("secret", ["", "change-me", "short-but-not-placeholder"])
def test_production_refuses_missing_placeholder_or_short_secrets(secret: str) -> None:
    with pytest.raises(SettingsError, match="PATIENT_SEARCH_JWT_SECRET"):
        create_app(_settings(jwt_secret=secret))


def test_production_accepts_a_long_secret_and_dev_needs_none() -> None:
    _settings(jwt_secret="s" * 32).require_runnable()
    _settings(env="dev").require_runnable()


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATIENT_SEARCH_DB_POOL_MAX", "7")
    monkeypatch.setenv("PATIENT_SEARCH_PHONE_REGION", "GB")
    settings = _settings()
    assert settings.db_pool_max == 7
    assert settings.phone_region == "GB"


def test_inconsistent_pool_bounds_are_rejected() -> None:
    with pytest.raises(ValidationError, match="DB_POOL_MIN"):
        _settings(db_pool_min=10, db_pool_max=5)
