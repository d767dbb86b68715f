"""`patient-search explain` on 100,000 seeded patients: every shape is index-driven."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from patient_search import cli
from patient_search.search.explain import summarize
from tests.conftest import make_settings, recreate_database

EXPLAIN_PATIENTS = 100_000


@pytest.fixture(scope="module")
def seeded_settings() -> Any:
    url = recreate_database("patient_search_explain_test")
    settings = make_settings(url)
    cli.migrate(settings)
    assert cli.seed(settings, EXPLAIN_PATIENTS, 1, 5, if_empty=False) == 0
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return settings


def test_every_shape_uses_an_index_at_100k(
    seeded_settings: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "get_settings", lambda: seeded_settings)
    code = cli.main(["explain", "--clinic", "clinic-1"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "all index-driven" in out
    for shape in (
        "patient.get",
        "search.name_candidates",
        "search.term_pages",
        "search.prefix_page",
        "search_name_candidates() inner query",
    ):
        assert shape in out
    assert "patients_name_terms_gin" in out
    assert "patient_name_terms_ordered" in out


def test_an_empty_clinic_cannot_be_explained(
    seeded_settings: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "get_settings", lambda: seeded_settings)
    assert cli.main(["explain", "--clinic", "nobody-here"]) == 2
    assert "no patients" in capsys.readouterr().err


def test_a_sequential_scan_of_a_tenant_table_fails_the_check() -> None:
    plan = {
        "Plan": {
            "Node Type": "Limit",
            "Plans": [{"Node Type": "Seq Scan", "Relation Name": "patients"}],
        },
        "Execution Time": 12.5,
    }
    report = summarize("shape", plan)
    assert not report.ok
    assert report.sequential_scans == ["patients"]
    harmless = {"Plan": {"Node Type": "Seq Scan", "Relation Name": "pg_class"}}
    assert summarize("catalog", harmless).ok
