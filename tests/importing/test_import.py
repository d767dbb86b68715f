"""The `import` command: good rows load, bad rows are reported by line, files are checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from patient_search import cli
from patient_search.settings import Settings
from tests.factories import new_clinic_id

HEADER = "mrn,last_name,first_name,middle_name,date_of_birth,sex,status,phone,email\n"


@pytest.fixture(autouse=True)
def _cli_uses_test_settings(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    monkeypatch.setattr(cli, "get_settings", lambda: settings)


def _patients(conn: psycopg.Connection[Any], clinic_id: str) -> dict[str, dict[str, Any]]:
    rows = conn.execute(
        "SELECT p.mrn, p.first_name, p.last_name, p.status, p.sex, p.version,"
        " p.email_normalized, array_remove(array_agg(ph.e164 ORDER BY ph.position), NULL) AS phones"
        " FROM patients p LEFT JOIN patient_phones ph"
        "   ON ph.clinic_id = p.clinic_id AND ph.patient_id = p.id"
        " WHERE p.clinic_id = %s GROUP BY p.clinic_id, p.id",
        (clinic_id,),
    ).fetchall()
    names = ["mrn", "first_name", "last_name", "status", "sex", "version", "email", "phones"]
    return {row[0]: dict(zip(names, row, strict=True)) for row in rows}


def _run(path: Path, clinic_id: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(["import", str(path), "--clinic", clinic_id])
    return code, capsys.readouterr().out


def test_good_and_bad_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], superuser_conn: psycopg.Connection[Any]
) -> None:
    clinic = new_clinic_id()
    path = tmp_path / "patients.csv"
    path.write_text(
        HEADER
        + "A1,Smith,John,,1975-03-14,M,active,(415) 555-0134;415.555.0199,John@Example.com\n"
        + "A2,Núñez,José,Luis,1980-02-30,m,,,\n"
        + "A3,García-López,María,,1990-01-01,F,,call me,\n"
        + "A1,Again,John,,,,,,\n"
        + "A4,Short,Row\n"
        + '"A5","Multi\nLine",Ann,,,,inactive,,\n'  # one record over lines 7-8
        + "A6,,Nolast,,,,,,\n"
        + "A7,Okafor,Chidi,,,x,deceased,,\n",
        encoding="utf-8",
    )
    code, out = _run(path, clinic, capsys)
    assert code == 1
    assert "rejected line 3: date_of_birth" in out
    assert "rejected line 4: phones" in out
    assert "rejected line 5: duplicate MRN in this file (first at line 2)" in out
    assert "rejected line 6: has 3 fields, the header has 9" in out
    assert "rejected line 7: last_name: Value error, must not contain control characters" in out
    assert "rejected line 9: last_name" in out
    assert "inserted 2, updated 0, rejected 6" in out
    assert "Núñez" not in out and "García" not in out
    rows = _patients(superuser_conn, clinic)
    assert set(rows) == {"A1", "A7"}
    assert rows["A1"]["phones"] == ["+14155550134", "+14155550199"]
    assert rows["A1"]["email"] == "john@example.com"
    assert rows["A1"]["sex"] == "male"
    assert rows["A7"]["sex"] == "other"


def test_an_existing_mrn_is_updated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], superuser_conn: psycopg.Connection[Any]
) -> None:
    clinic = new_clinic_id()
    path = tmp_path / "first.csv"
    path.write_text(HEADER + "B1,Doe,Jane,,,,,2125550100,\n", encoding="utf-8")
    assert _run(path, clinic, capsys)[0] == 0
    path.write_text(HEADER + "B1,Doe,Janet,,,,,3125550100;2125550100,\n", encoding="utf-8")
    code, out = _run(path, clinic, capsys)
    assert code == 0
    assert "inserted 0, updated 1, rejected 0" in out
    row = _patients(superuser_conn, clinic)["B1"]
    assert row["first_name"] == "Janet"
    assert row["version"] == 2
    assert row["phones"] == ["+13125550100", "+12125550100"]


def test_jsonl(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], superuser_conn: psycopg.Connection[Any]
) -> None:
    clinic = new_clinic_id()
    path = tmp_path / "patients.jsonl"
    path.write_text(
        '{"mrn": "J1", "last_name": "Ito", "phone": ["415-555-0100", "212 555 0100"]}\n'
        "\n"
        "{broken\n"
        '["not", "an", "object"]\n'
        '{"mrn": "J2", "last_name": "Wu", "nickname": "x"}\n'
        '{"mrn": "J3", "last_name": "Lee", "date_of_birth": "1999-12-31", "sex": "F"}\n',
        encoding="utf-8",
    )
    code, out = _run(path, clinic, capsys)
    assert code == 1
    assert "rejected line 3: not a valid JSON object" in out
    assert "rejected line 4: not a JSON object" in out
    assert "rejected line 5: unknown fields: nickname" in out
    rows = _patients(superuser_conn, clinic)
    assert set(rows) == {"J1", "J3"}
    assert rows["J1"]["phones"] == ["+14155550100", "+12125550100"]


def test_bom_and_bad_encoding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], superuser_conn: psycopg.Connection[Any]
) -> None:
    clinic = new_clinic_id()
    path = tmp_path / "bom.csv"
    path.write_bytes(
        b"\xef\xbb\xbf" + HEADER.encode() + b"E1,Caf\xe9,Bad,,,,,,\nE2,Good,Row,,,,,,\n"
    )
    code, out = _run(path, clinic, capsys)
    assert code == 1
    assert "rejected line 2: last_name: not valid UTF-8" in out
    assert set(_patients(superuser_conn, clinic)) == {"E2"}


def test_an_archived_patients_mrn_is_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], superuser_conn: psycopg.Connection[Any]
) -> None:
    clinic = new_clinic_id()
    path = tmp_path / "a.csv"
    path.write_text(HEADER + "R1,Roe,Rita,,,,,,\n", encoding="utf-8")
    _run(path, clinic, capsys)
    superuser_conn.execute(
        "UPDATE patients SET deleted_at = now() WHERE clinic_id = %s AND mrn = 'R1'", (clinic,)
    )
    code, out = _run(path, clinic, capsys)
    assert code == 1
    assert "rejected line 2: the MRN belongs to an archived patient" in out


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("p.txt", "whatever", "expected a .csv or .jsonl"),
        ("empty.csv", "", "empty"),
        ("noheader.csv", "first_name\nJohn\n", "lacks the required column(s): mrn, last_name"),
        ("unknown.csv", "mrn,last_name,shoe_size\n1,a,9\n", "unknown column(s): shoe_size"),
        ("twice.csv", "mrn,last_name,mrn\n", "names a column twice"),
        ("only-header.csv", "mrn,last_name\n", "no records"),
    ],
)
def test_unusable_files_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    assert cli.main(["import", str(path), "--clinic", new_clinic_id()]) == 2
    assert message in capsys.readouterr().err


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["import", str(tmp_path / "nope.csv"), "--clinic", "c"]) == 2
    assert "nope.csv" in capsys.readouterr().err


def test_text_survives_copy_escaping(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], superuser_conn: psycopg.Connection[Any]
) -> None:
    clinic = new_clinic_id()
    path = tmp_path / "tricky.jsonl"
    path.write_text(
        '{"mrn": "T\\\\1", "last_name": "O\\"Brien\\\\", "first_name": "{a,b}", '
        '"middle_name": "NULL", "phone": "(415) 555-0134"}\n',
        encoding="utf-8",
    )
    code, out = _run(path, clinic, capsys)
    assert code == 0, out
    row = superuser_conn.execute(
        "SELECT mrn, last_name, first_name, middle_name, name_terms FROM patients"
        " WHERE clinic_id = %s",
        (clinic,),
    ).fetchone()
    assert row is not None
    assert row[:4] == ("T\\1", 'O"Brien\\', "{a,b}", "NULL")
    assert "obrien" in row[4]


async def test_many_batches_through_the_worker_process(
    settings: Settings, superuser_conn: psycopg.Connection[Any]
) -> None:
    from patient_search.db.pool import build_pool
    from patient_search.importing.rows import RawRecord
    from patient_search.importing.service import import_records

    clinic = new_clinic_id()
    fields = {"mrn": "", "last_name": "Batch", "first_name": "Row"}
    records = [RawRecord(n, {**fields, "mrn": f"B{n % 9}"}) for n in range(2, 14)]
    records.append(RawRecord(14, None, "not valid CSV"))
    async with build_pool(settings.model_copy(update={"db_pool_min": 1})) as pool:
        report = await import_records(pool, clinic, records, "US", batch_size=4)
    assert report.inserted == 9
    assert [r.line for r in report.rejections] == [11, 12, 13, 14]
    assert report.rejections[0].reason == "duplicate MRN in this file (first at line 2)"
    count = superuser_conn.execute(
        "SELECT count(*) FROM patients WHERE clinic_id = %s", (clinic,)
    ).fetchone()
    assert count == (9,)
