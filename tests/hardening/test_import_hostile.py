"""Hostile import files: every good row loads, every bad row is reported with its line, and an
import killed half way leaves whole batches that a rerun completes."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from patient_search import cli
from patient_search.importing.service import BATCH_SIZE
from patient_search.settings import Settings
from tests.factories import TEST_SECRET, new_clinic_id

HEADER = "mrn,last_name,first_name,middle_name,date_of_birth,sex,status,phone,email"
LAST_NAMES = ["Smith", "Núñez", "García-López", "O'Brien", "Nguyễn", "Okafor", "Müller", "Kowalski"]
FIRST_NAMES = ["Ann", "José", "Chidi", "Zoë", "Wei", "Siobhán", "Ivan", "Fatima"]
PATIENT_SEARCH = Path(sys.executable).parent / "patient-search"


@pytest.fixture(scope="module", autouse=True)
def _a_database_in_use(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Two clinics of patients, analysed, as autovacuum leaves a database in use.

    An empty database loads in one transaction, all or nothing (docs/decisions/
    0009-bulk-initial-load.md); these tests are about loading batch by batch. Without
    statistics PostgreSQL believes a clinic holds one row and checks each new row's foreign
    keys through the wrong index, which makes the first batches quadratic (see the report).
    """
    path = tmp_path_factory.mktemp("seed") / "seed.csv"
    _write_file(path, 2_000, bad_every=10**9)
    for _ in range(2):
        assert cli.import_file(settings, path, new_clinic_id()) == 0
    with psycopg.connect(str(settings.database_url), autocommit=True) as conn:
        conn.execute("ANALYZE")


@pytest.fixture(autouse=True)
def _cli_uses_test_settings(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    monkeypatch.setattr(cli, "get_settings", lambda: settings)


def _run(path: Path, clinic: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(["import", str(path), "--clinic", clinic])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _rejected_lines(out: str) -> dict[int, str]:
    found = {}
    for text in out.splitlines():
        if text.startswith("rejected line "):
            number, _, reason = text.removeprefix("rejected line ").partition(": ")
            found[int(number)] = reason
    return found


def _loaded(conn: psycopg.Connection[Any], clinic: str) -> dict[str, tuple[Any, ...]]:
    rows = conn.execute(
        "SELECT mrn, last_name, first_name, date_of_birth::text FROM patients WHERE clinic_id = %s",
        (clinic,),
    ).fetchall()
    return {row[0]: tuple(row[1:]) for row in rows}


def _good_row(n: int) -> str:
    last, first = LAST_NAMES[n % len(LAST_NAMES)], FIRST_NAMES[n % len(FIRST_NAMES)]
    phone = f"415-555-{n % 10_000:04d}"
    day = f"19{50 + n % 50}-{1 + n % 12:02d}-{1 + n % 28:02d}"
    return f"M{n:07d},{last},{first},,{day},{'FM'[n % 2]},,{phone},p{n}@example.com"


# Bad rows of every kind; each is one physical line.
BAD_ROWS = [
    "M{n:07d},Smith,Ann,,2023-02-30,,,,",  # impossible date
    "M{n:07d},Smith,Ann,,,robot,,,",  # unknown sex
    "M{n:07d},Smith,Ann",  # too few fields
    "M{n:07d},Smith,Ann,,,,,,,,,",  # too many fields
    'M{n:07d},"Smi"th",Ann,,,,,,',  # a quote closing too early
    "M{n:07d},,Ann,,,,,,",  # no last name
    "M{n:07d},Smith,Ann,,,,,call me,",  # not a phone
    "M{n:07d},Sm\x00ith,Ann,,,,,,",  # NUL
    "M{n:07d},Smith,Ann,,,,,,not-an-email",
    "M{n:07d},Smith,Ann,,1975-03-14T00:00,,,,",  # not a plain date
]


def _write_file(path: Path, rows: int, bad_every: int, unclosed_quotes: int = 0) -> set[int]:
    """A CSV of `rows` records, one in `bad_every` bad; the file lines of the bad ones."""
    bad_lines = set()
    rng = random.Random(7)
    quote_at = set(rng.sample(range(rows // 10, rows - 1), unclosed_quotes))
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(HEADER + "\r\n")
        for n in range(rows):
            line = n + 2
            if n in quote_at:
                out.write(f'M{n:07d},"Unclosed,Ann,,,,,,\r\n')  # swallows what follows
                bad_lines.add(line)
            elif n % bad_every == bad_every - 1:
                out.write(BAD_ROWS[(n // bad_every) % len(BAD_ROWS)].format(n=n) + "\r\n")
                bad_lines.add(line)
            else:
                out.write(_good_row(n) + "\r\n")
    return bad_lines


def test_fifty_thousand_rows_one_percent_bad(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], superuser_conn: psycopg.Connection[Any]
) -> None:
    rows = 50_000
    path = tmp_path / "big.csv"
    bad = _write_file(path, rows, bad_every=100, unclosed_quotes=5)
    clinic = new_clinic_id()
    started = time.perf_counter()
    code, out, _ = _run(path, clinic, capsys)
    elapsed = time.perf_counter() - started
    assert code == 1
    rejected = _rejected_lines(out)
    assert set(rejected) == bad, (sorted(set(rejected) - bad)[:5], sorted(bad - set(rejected))[:5])
    loaded = _loaded(superuser_conn, clinic)
    assert len(loaded) == rows - len(bad)
    assert f"inserted {rows - len(bad)}, updated 0, rejected {len(bad)}" in out
    for n in (0, 1, 4_321, rows - 2):
        if n + 2 not in bad:
            assert loaded[f"M{n:07d}"][:2] == tuple(_good_row(n).split(",")[1:3])
    assert "Núñez" not in out and "Smi" not in out  # reasons name fields, never values
    assert elapsed < 120


def test_malformed_csv_loses_no_good_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], superuser_conn: psycopg.Connection[Any]
) -> None:
    path = tmp_path / "messy.csv"
    path.write_bytes(
        "\ufeff MRN , Last_Name ,first_name,middle_name,date_of_birth,sex,status,phone,email\r\n"
        "G1,Smith,Ann,,,,,,\r\n"  # 2
        'G2,"Smi"th",Bob,,,,,,\n'  # 3: a quote closing too early
        "G3,Okafor,Chidi,,,,,,\r"  # 4: an old Mac line end
        'G4,"Unclosed,Dan,,,,,,\n'  # 5: swallows the lines after it...
        "G5,Jones,Eve,,,,,,\n"  # 6: ...which still load
        '"G6","Multi\nLine",Fay,,,,,,\n'  # 7-8: one record over two lines (then refused)
        "G7,Lee,Gus,,,,,,,\n"  # 9: one field too many
        "G8,Lee\n"  # 10: too few
        "\n"  # 11: blank
        "G9,\\.,Hal,,,,,,\n"  # 12: COPY's end-of-data marker, as a name
        "G10,\\N,Ivy,,,,,,\n"  # 13: COPY's NULL, as a name
        'G11,"Tab\there",Jo,,,,,,\n'.encode()  # 14: a control character
        + b"G12,Caf\xe9,Kim,,,,,,\n"  # 15: Latin-1, not UTF-8
        + b"G13,Ng,Lu,,,,,,\n"  # 16
        + ("G14," + "x" * 200_000 + ",Max,,,,,,\n").encode()  # 17: larger than a CSV field may be
        + b"G15,Last,Ned,,,,,,\n"  # 18
        + b'G16,"Cut off'  # 19: the file ends inside a quoted field
    )
    clinic = new_clinic_id()
    code, out, _ = _run(path, clinic, capsys)
    assert code == 1
    rejected = _rejected_lines(out)
    assert set(_loaded(superuser_conn, clinic)) == {"G1", "G3", "G5", "G9", "G10", "G13", "G15"}
    for line in (3, 5, 7, 9, 10, 14, 15, 17, 19):
        assert line in rejected, (line, rejected)
    assert rejected[3].startswith("not valid CSV")
    assert rejected[9] == "has 10 fields, the header has 9"
    assert rejected[15] == "last_name: not valid UTF-8"
    assert "field larger than field limit" in rejected[17]
    stored = _loaded(superuser_conn, clinic)
    assert stored["G9"][0] == "\\." and stored["G10"][0] == "\\N"


def test_cut_off_jsonl(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], superuser_conn: psycopg.Connection[Any]
) -> None:
    path = tmp_path / "cut.jsonl"
    path.write_bytes(
        b'\xef\xbb\xbf{"mrn": "J1", "last_name": "Ito"}\r\n'
        b'{"mrn": "J2", "last_name": "W\\u0000u"}\n'
        b'{"mrn": "J3", "last_name": "\\ud800"}\n'
        b'{"mrn": "J4", "last_name": "Lee", "date_of_birth": 86400}\n'
        b'{"mrn": "J5", "last_name": "Kim", "phone": "415 555 0100; 415 555 0101"}\n'
        b'{"mrn": "J6", "last_na'
    )
    clinic = new_clinic_id()
    code, out, _ = _run(path, clinic, capsys)
    assert code == 1
    assert set(_rejected_lines(out)) == {2, 3, 4, 6}
    assert set(_loaded(superuser_conn, clinic)) == {"J1", "J5"}


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_a_utf16_file_is_refused_with_a_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], encoding: str
) -> None:
    path = tmp_path / "wide.csv"
    path.write_bytes((HEADER + "\nU1,Núñez,José,,,,,,\n").encode(encoding))
    code, _, err = _run(path, new_clinic_id(), capsys)
    assert code == 2
    assert "UTF-16 or UTF-32" in err


def _count(conn: psycopg.Connection[Any], table: str, clinic: str) -> int:
    row = conn.execute(f"SELECT count(*) FROM {table} WHERE clinic_id = %s", (clinic,)).fetchone()
    assert row is not None
    return int(row[0])


def test_killed_half_way_leaves_whole_batches_and_a_rerun_completes(
    tmp_path: Path, settings: Settings, superuser_conn: psycopg.Connection[Any]
) -> None:
    rows = BATCH_SIZE * 3
    path = tmp_path / "three-batches.csv"
    bad = _write_file(path, rows, bad_every=200)
    good_per_batch = [
        sum(1 for n in range(b * BATCH_SIZE, (b + 1) * BATCH_SIZE) if n + 2 not in bad)
        for b in range(3)
    ]
    whole = {sum(good_per_batch[:k]) for k in range(4)}
    clinic = new_clinic_id()
    # A process of its own, as in production, configured by its environment only.
    env = {
        **os.environ,
        "PATIENT_SEARCH_DATABASE_URL": str(settings.database_url),
        "PATIENT_SEARCH_ENV": "dev",
        "PATIENT_SEARCH_JWT_SECRET": TEST_SECRET,
        "PATIENT_SEARCH_REDIS_URL": "",
    }
    command = [str(PATIENT_SEARCH), "import", str(path), "--clinic", clinic]
    with subprocess.Popen(
        command,
        cwd=tmp_path,  # no .env there
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its validation worker dies with it
    ) as process:
        deadline = time.monotonic() + 120
        while _count(superuser_conn, "patients", clinic) == 0:
            assert process.poll() is None, "the import ended before its first batch was seen"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.killpg(process.pid, signal.SIGKILL)  # kill -9, the worker process too
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    after_kill = _count(superuser_conn, "patients", clinic)
    assert after_kill in whole and after_kill < sum(good_per_batch), (after_kill, whole)
    # Every loaded patient is whole: its phone and its search postings are there.
    assert _count(superuser_conn, "patient_phones", clinic) == after_kill
    indexed = superuser_conn.execute(
        "SELECT count(DISTINCT patient_id) FROM patient_name_terms WHERE clinic_id = %s",
        (clinic,),
    ).fetchone()
    assert indexed == (after_kill,)

    # An operator reruns it later, when autovacuum has analysed what the first run loaded.
    superuser_conn.execute("ANALYZE")
    rerun = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert rerun.returncode == 1, rerun.stderr[-2000:]
    total = sum(good_per_batch)
    assert f"inserted {total - after_kill}, updated {after_kill}, rejected {len(bad)}" in (
        rerun.stdout
    )
    assert set(_rejected_lines(rerun.stdout)) == bad
    assert _count(superuser_conn, "patients", clinic) == total
    assert _count(superuser_conn, "patient_phones", clinic) == total
