"""`patient-search duplicates`: the suspected pairs of a clinic, once each, best first, as CSV."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import random
import string
from pathlib import Path

import httpx
import psycopg
import pytest
from fastapi import FastAPI

from patient_search import cli
from patient_search.db.statements import NullObserver, StatementRunner
from patient_search.db.tenant import clinic_transaction
from patient_search.matching import service as match_service
from patient_search.matching.batch import MIN_ESTIMATION_PATIENTS
from patient_search.matching.model import DEFAULT_MODEL, MatchModel, NameWeight
from patient_search.matching.repository import MatchRepository
from patient_search.settings import Settings
from tests.factories import bearer, new_clinic_id

ROWS = (
    "mrn,last_name,first_name,date_of_birth,postal_code,address_line1,city\n"
    "A1,Green,Mitchell,1956-04-09,2119,7 Wallaby Place,Cleveland\n"
    "A2,Grene,Mitchel,1956-04-09,2119,7 Wallaby Pl,Cleveland\n"
    "A3,Green,Mitchell,1956-04-09,2119,7 Wallaby Place,Cleveland\n"
    "B1,Mason,Madeline,1981-11-28,4881,54 Hoseason Street,Granville\n"
    "C1,Green,Michael,1956-04-09,2119,7 Wallaby Place,Cleveland\n"
)


@pytest.fixture(autouse=True)
def _cli_uses_test_settings(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    monkeypatch.setattr(cli, "get_settings", lambda: settings)


def _strangers(count: int) -> str:
    """CSV rows of `count` unrelated people: enough for the scan to estimate its weights."""
    rng = random.Random(count)

    def word() -> str:
        return "".join(rng.choices(string.ascii_lowercase, k=7)).capitalize()

    cities = [word() for _ in range(30)]
    rows = []
    for i in range(count):
        born = dt.date(1930, 1, 1) + dt.timedelta(days=rng.randrange(30_000))
        rows.append(
            f"S{i},{word()},{word()},{born},{rng.randrange(1000, 9999)},"
            f"{rng.randrange(1, 200)} {word()} Street,{rng.choice(cities)}\n"
        )
    return "".join(rows)


def _clinic(tmp_path: Path, strangers: int = 0) -> str:
    clinic = new_clinic_id()
    source = tmp_path / "patients.csv"
    source.write_text(ROWS + _strangers(strangers), encoding="utf-8")
    assert cli.main(["import", str(source), "--clinic", clinic]) == 0
    return clinic


def test_each_suspected_pair_once_best_first(tmp_path: Path) -> None:
    clinic = _clinic(tmp_path)
    out = tmp_path / "pairs.csv"
    assert cli.main(["duplicates", "--clinic", clinic, "--out", str(out)]) == 0
    with out.open(encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["patient_id_a", "patient_id_b", "mrn_a", "mrn_b", "grade", "score"]
    pairs = [frozenset((row[2], row[3])) for row in rows[1:]]
    assert len(pairs) == len(set(pairs))
    assert {frozenset(("A1", "A2")), frozenset(("A1", "A3")), frozenset(("A2", "A3"))} <= set(pairs)
    assert not any("B1" in pair for pair in pairs)  # a stranger
    scores = [float(row[5]) for row in rows[1:]]
    assert scores == sorted(scores, reverse=True)
    grades = {frozenset((row[2], row[3])): row[4] for row in rows[1:]}
    assert grades[frozenset(("A1", "A3"))] == "certain"
    # The twin (same surname, date, address, another first name) is never certain.
    assert all(grade != "certain" for pair, grade in grades.items() if "C1" in pair)


def test_min_grade_certain_keeps_only_certain_pairs(tmp_path: Path) -> None:
    clinic = _clinic(tmp_path)
    out = tmp_path / "pairs.csv"
    args = ["duplicates", "--clinic", clinic, "--out", str(out), "--min-grade", "certain"]
    assert cli.main(args) == 0
    with out.open(encoding="utf-8") as handle:
        grades = [row["grade"] for row in csv.DictReader(handle)]
    assert grades and set(grades) == {"certain"}


def test_bad_arguments_exit_2(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as bad_grade:
        cli.main(["duplicates", "--clinic", "c", "--out", "x.csv", "--min-grade", "maybe"])
    assert bad_grade.value.code == 2
    missing = tmp_path / "no-such-dir" / "pairs.csv"
    assert cli.main(["duplicates", "--clinic", new_clinic_id(), "--out", str(missing)]) == 2


async def test_the_scan_stores_the_clinics_weights_for_the_duplicate_check(
    tmp_path: Path,
    app: FastAPI,
    client: httpx.AsyncClient,
    superuser_conn: psycopg.Connection[tuple[object, ...]],
) -> None:
    # The CLI runs its own event loop; MIN_ESTIMATION_PATIENTS strangers make weights worth it.
    clinic = await asyncio.to_thread(_clinic, tmp_path, MIN_ESTIMATION_PATIENTS)
    out = tmp_path / "pairs.csv"
    assert (
        await asyncio.to_thread(cli.main, ["duplicates", "--clinic", clinic, "--out", str(out)])
        == 0
    )
    pool = app.state.services.pool
    async with clinic_transaction(pool, clinic, "read") as conn:
        stored = await MatchRepository(StatementRunner(conn, NullObserver())).clinic_model()
    assert stored is not None
    model = MatchModel.from_json(stored)
    assert model.source == "estimated" and model.prior_bits is not None
    assert set(model.fields) == set(DEFAULT_MODEL.fields)
    # Row-level security: another clinic has no model, and its checks keep the defaults.
    async with clinic_transaction(pool, new_clinic_id(), "read") as conn:
        repo = MatchRepository(StatementRunner(conn, NullObserver()))
        assert await repo.clinic_model() is None
    # The clinic's duplicate check now weighs with its own model, and still finds A1.
    body = {"first_name": "Mitchell", "last_name": "Grene", "date_of_birth": "1956-04-09"}

    async def scores() -> dict[str, float]:
        response = await client.post("/v1/patients/match", json=body, headers=bearer(clinic))
        assert response.status_code == 200
        return {item["patient"]["mrn"]: item["score"] for item in response.json()["items"]}

    estimated = await scores()
    assert {"A1", "A2", "A3"} <= estimated.keys()
    # Without the stored model (and the worker's copy of it), the defaults weigh differently.
    superuser_conn.execute("DELETE FROM match_models WHERE clinic_id = %s", (clinic,))
    match_service._MODELS.clear()
    default = await scores()
    assert estimated != default


def test_a_stored_model_round_trips_and_lacks_nothing() -> None:
    stored = MatchModel(
        {"first_name": {"exact": NameWeight(1.0, -0.5)}, "last_name": {}},
        {"date_of_birth": {"exact": 11.0}},
        -12.5,
        "estimated",
    )
    model = MatchModel.from_json(stored.to_json())
    assert model.names["first_name"]["exact"] == NameWeight(1.0, -0.5)
    assert model.names["first_name"]["typo"] == DEFAULT_MODEL.names["first_name"]["typo"]
    assert model.fields["date_of_birth"]["exact"] == 11.0
    assert (
        model.fields["date_of_birth"]["different"]
        == DEFAULT_MODEL.fields["date_of_birth"]["different"]
    )
    assert model.prior_bits == -12.5


def test_a_small_clinic_is_graded_with_the_default_weights(
    tmp_path: Path, superuser_conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    clinic = _clinic(tmp_path)
    out = tmp_path / "pairs.csv"
    assert cli.main(["duplicates", "--clinic", clinic, "--out", str(out)]) == 0
    stored = superuser_conn.execute(
        "SELECT count(*) FROM match_models WHERE clinic_id = %s", (clinic,)
    ).fetchone()
    assert stored == (0,)


def test_an_unwritable_output_is_refused_before_the_scan(tmp_path: Path) -> None:
    clinic = _clinic(tmp_path)
    as_directory = tmp_path / "pairs.csv"
    as_directory.mkdir()
    assert cli.main(["duplicates", "--clinic", clinic, "--out", str(as_directory)]) == 2
