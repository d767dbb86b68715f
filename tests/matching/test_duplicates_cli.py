"""`patient-search duplicates`: the suspected pairs of a clinic, once each, best first, as CSV."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from patient_search import cli
from patient_search.settings import Settings
from tests.factories import new_clinic_id

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


def _clinic(tmp_path: Path) -> str:
    clinic = new_clinic_id()
    source = tmp_path / "patients.csv"
    source.write_text(ROWS, encoding="utf-8")
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
