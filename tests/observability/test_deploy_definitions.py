"""The alert definitions are valid and tested: promtool for Prometheus, cfn-lint for CloudWatch."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "deploy" / "prometheus"
ALARMS = REPO / "deploy" / "cloudwatch" / "alarms.yaml"
BIN = Path(sys.executable).parent
ALERTS = (
    "PatientSearchLatencyHigh",
    "PatientSearchSlowQueries",
    "PatientSearchCacheHitRateLow",
    "PatientSearchPoolSaturated",
    "PatientSearchErrorsHigh",
    "PatientSearchDown",
)


def _promtool() -> str:
    found = shutil.which("promtool") or shutil.which("promtool", path=str(BIN))
    if found is None:
        pytest.skip("promtool is missing: run scripts/ensure_promtool.sh (make test does)")
    return found


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_prometheus_rules_are_valid() -> None:
    result = _run(_promtool(), "check", "rules", str(PROMETHEUS / "alerts.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_on_bad_series_and_not_on_healthy_ones() -> None:
    result = _run(_promtool(), "test", "rules", str(PROMETHEUS / "alerts_test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    tests = (PROMETHEUS / "alerts_test.yml").read_text()
    for alert in ALERTS:
        cases = re.findall(rf"alertname: {alert}\n        exp_alerts:(.*)", tests)
        assert any(case.strip() == "[]" for case in cases), f"{alert}: no silent case"
        assert any(case.strip() == "" for case in cases), f"{alert}: no firing case"


def test_cloudwatch_alarms_template_passes_cfn_lint() -> None:
    result = _run(str(BIN / "cfn-lint"), str(ALARMS))
    assert result.returncode == 0, result.stdout + result.stderr
    template = ALARMS.read_text()
    for alert in ALERTS:
        assert f"AlarmName: {alert}\n" in template
