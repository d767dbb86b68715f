"""The observability settings: defaults, environment names and validation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from patient_search.settings import Settings


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_defaults_serve_metrics_on_the_api_port_and_send_nothing_anywhere() -> None:
    settings = _settings()
    assert settings.metrics_enabled is True
    assert settings.metrics_port == 0
    assert settings.alert_webhook_url == ""
    assert (settings.alert_slow_query_threshold, settings.alert_window_s) == (20, 60)
    assert settings.alert_min_interval_s == 300
    assert settings.cloudwatch_emf is False
    assert settings.cloudwatch_namespace == "PatientSearch"


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATIENT_SEARCH_METRICS_ENABLED", "false")
    monkeypatch.setenv("PATIENT_SEARCH_METRICS_PORT", "9464")
    monkeypatch.setenv("PATIENT_SEARCH_ALERT_WEBHOOK_URL", "https://hooks.example/alerts")
    monkeypatch.setenv("PATIENT_SEARCH_CLOUDWATCH_EMF", "true")
    settings = _settings()
    assert settings.metrics_enabled is False
    assert settings.metrics_port == 9464
    assert settings.alert_webhook_url == "https://hooks.example/alerts"
    assert settings.cloudwatch_emf is True


@pytest.mark.parametrize(
    "values",
    [
        {"metrics_port": 70000},
        {"alert_webhook_url": "ftp://hooks.example"},
        {"alert_webhook_url": "hooks.example/alerts"},
        {"alert_slow_query_threshold": 0},
        {"alert_window_s": 0},
    ],
)
def test_bad_values_are_refused(values: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        _settings(**values)
