"""The CloudWatch Embedded Metric Format sink writes valid EMF lines with the alarms' metrics."""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

import pytest

from patient_search.app import create_app
from patient_search.observability import emf as emf_module
from patient_search.observability.emf import EmfSink
from patient_search.observability.metrics import record_cache
from tests.conftest import asgi_client, make_settings
from tests.factories import bearer, new_clinic_id


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def _assert_valid_emf(line: dict[str, Any], namespace: str) -> None:
    """The EMF specification's rules that CloudWatch rejects a line for breaking."""
    directive = line["_aws"]
    assert isinstance(directive["Timestamp"], int)
    for metric_set in directive["CloudWatchMetrics"]:
        assert metric_set["Namespace"] == namespace
        for dimension_set in metric_set["Dimensions"]:
            assert len(dimension_set) <= 30
            for dimension in dimension_set:
                assert isinstance(line[dimension], str)
        for metric in metric_set["Metrics"]:
            value = line[metric["Name"]]
            values = value if isinstance(value, list) else [value]
            assert 0 < len(values) <= 100
            assert all(isinstance(v, int | float) for v in values)
            assert metric["Unit"] in {"Milliseconds", "Count", "Percent"}


def _by_metric(lines: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [line for line in lines if name in line]


def test_flush_writes_each_family_as_valid_emf() -> None:
    stream = io.StringIO()
    sink = EmfSink("PatientSearchTest", slow_query_ms=100, stream=stream)
    for _ in range(250):
        sink.observe("search.term_pages", 0.004, 20)
    sink.observe("search.term_pages", 0.150, 20)
    sink.observe("patient.get", 0.001, 1)
    sink.record_request("GET", "/v1/patients", 200, 0.012)
    sink.record_request("GET", "/v1/patients", 503, 0.300)
    sink.record_pool(in_use=5, max_size=10, waiting=0)
    sink.record_pool(in_use=10, max_size=10, waiting=3)
    for _ in range(3):
        record_cache("profile", "hit")
    record_cache("profile", "miss")
    assert sink.flush() == len(_lines(stream))
    lines = _lines(stream)
    for line in lines:
        _assert_valid_emf(line, "PatientSearchTest")
    pages = [line for line in lines if line.get("Operation") == "search.term_pages"]
    assert sum(len(line["QueryDuration"]) for line in pages) == 251  # chunked by 100
    assert max(max(line["QueryDuration"]) for line in pages) == 150.0
    assert sum(line.get("SlowQueries", 0) for line in pages) == 1
    route = _by_metric(lines, "Requests")[0]
    assert (route["Route"], route["Requests"], route["Errors5xx"]) == ("GET /v1/patients", 2, 1)
    cache = next(line for line in lines if line.get("Cache") == "profile")
    assert (cache["CacheHits"], cache["CacheMisses"], cache["CacheHitRatio"]) == (3, 1, 75.0)
    service = next(line for line in lines if "Up" in line)
    assert service["PoolWaiters"] == 3
    assert service["PoolUtilization"] == 75.0
    assert service["SlowQueries"] == 1
    # The next window starts empty: only the heartbeat.
    stream.truncate(0)
    stream.seek(0)
    sink.flush()
    assert [sorted(k for k in line if k not in {"_aws", "Service"}) for line in _lines(stream)] == [
        ["PoolWaiters", "SlowQueries", "Up"]
    ]


def test_a_busy_window_keeps_a_bounded_uniform_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(emf_module, "MAX_VALUES_PER_WINDOW", 50)
    stream = io.StringIO()
    sink = EmfSink("PatientSearchTest", slow_query_ms=100, stream=stream)
    for index in range(1000):
        sink.record_request("GET", "/v1/patients/{patient_id}", 200, index / 1000)
    sink.flush()
    route = [line for line in _lines(stream) if "RequestDuration" in line]
    assert len(route) == 1
    assert route[0]["Requests"] == 1000  # the count stays exact
    assert len(route[0]["RequestDuration"]) == 50
    assert max(route[0]["RequestDuration"]) > 500  # not just the first 50


async def test_the_service_emits_emf_on_stdout(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    app = create_app(
        make_settings(database_url, cloudwatch_emf=True, cloudwatch_namespace="PSTest")
    )
    async with app.router.lifespan_context(app):
        async with asgi_client(app) as client:
            await client.get(f"/v1/patients/{uuid.uuid4()}", headers=bearer(new_clinic_id()))
    # The lifespan's shutdown flushed the window.
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert lines
    for line in lines:
        _assert_valid_emf(line, "PSTest")
    operations = {line.get("Operation") for line in lines}
    assert "patient.get" in operations
    routes = {line.get("Route") for line in lines}
    assert "GET /v1/patients/{patient_id}" in routes
    assert any(line.get("Up") == 1 for line in lines)
