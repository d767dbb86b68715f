"""`patient-search db-report`: top statements, and waits and contention as they happen."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from patient_search import cli
from patient_search.observability import db_report
from patient_search.settings import Settings

LOCK_KEY = 815_204_117  # an advisory lock no other code takes


def test_the_report_shows_statements_lock_waits_and_idle_transactions(
    database_url: str,
) -> None:
    holder = psycopg.connect(database_url, autocommit=True, application_name="obs-holder")
    waiter = psycopg.connect(database_url, autocommit=True, application_name="obs-waiter")
    idler = psycopg.connect(database_url, application_name="obs-idler")
    try:
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        blocked = threading.Thread(
            target=lambda: waiter.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        )
        blocked.start()
        idler.execute("SELECT 1")  # opens a transaction and leaves it idle
        with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
            for _ in range(50):
                report = db_report.collect(conn)
                if report.lock_waits:
                    break
                threading.Event().wait(0.05)
        waits = {row["pid"]: row for row in report.lock_waits}
        assert waiter.info.backend_pid in waits
        assert waits[waiter.info.backend_pid]["blocked_by"] == [holder.info.backend_pid]
        assert waits[waiter.info.backend_pid]["wait_event"] == "advisory"
        assert idler.info.backend_pid in {row["pid"] for row in report.idle_in_transaction}
        assert report.statements_note is None
        assert report.by_total, "pg_stat_statements has rows"
        assert report.connections["used"] >= 3
        assert report.connections["max"] > 0
        text = db_report.format_report(report)
        assert "top statements by total time" in text
        assert f"pid {waiter.info.backend_pid} (obs-waiter" in text
        assert f"blocked by [{holder.info.backend_pid}]" in text
        assert f"pid {idler.info.backend_pid} (obs-idler" in text
        assert "Lock:advisory" in text
        holder.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
        blocked.join(timeout=5)
    finally:
        for conn in (holder, waiter, idler):
            conn.close()


def test_the_command_prints_the_report(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "get_settings", lambda: settings)
    assert cli.main(["db-report", "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "top statements by mean time" in out
    assert "connections:" in out
    assert "lock waits:" in out


def test_a_server_without_the_library_says_so() -> None:
    class NoLibrary:
        def execute(self, query: str, *args: Any) -> Any:
            class Result:
                def fetchone(self) -> Any:
                    return None if "pg_extension" in query else {"v": ""}

            return Result()

    note = db_report._ensure_statements_view(NoLibrary())  # type: ignore[arg-type]
    assert note is not None and "shared_preload_libraries" in note
    assert "unavailable" in db_report.format_report(db_report.DbReport(statements_note=note))
