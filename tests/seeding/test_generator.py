"""Tests for the synthetic patient generator (statistics are checked at 20k rows)."""

import collections
import dataclasses
import datetime
import hashlib
import os
import re
import subprocess
import sys
import unicodedata
from collections.abc import Callable

import phonenumbers
import pytest
from faker.providers.person.en_US import Provider as UsNames

from patient_search.seeding.generator import (
    IMPORT_FIELDS,
    REFERENCE_DATE,
    SyntheticPatient,
    generate_patients,
)

N = 20_000
SEED = 20240607
EMAIL_DOMAINS = {"example.com", "example.org", "example.net", "mail.example"}


@pytest.fixture(scope="module")
def patients() -> list[SyntheticPatient]:
    return list(generate_patients(N, seed=SEED))


def share(patients: list[SyntheticPatient], predicate: Callable[[SyntheticPatient], bool]) -> float:
    return sum(1 for p in patients if predicate(p)) / len(patients)


def digits(phone: str) -> str:
    """National significant number, for comparing numbers typed in different formats."""
    return str(phonenumbers.parse(phone, "US").national_number)


def twin_pairs(patients: list[SyntheticPatient]) -> list[tuple[SyntheticPatient, SyntheticPatient]]:
    pairs = []
    for a, b in zip(patients, patients[1:], strict=False):
        if (
            a.last_name == b.last_name
            and a.date_of_birth == b.date_of_birth
            and a.phones == b.phones
            and a.email == b.email
            and a.first_name != b.first_name
        ):
            pairs.append((a, b))
    return pairs


def digest(patients: list[SyntheticPatient]) -> str:
    h = hashlib.sha256()
    for p in patients:
        h.update(repr(p.as_import_row()).encode())
    return h.hexdigest()


# ------------------------------------------------------------------ determinism and shape


def test_same_seed_same_output() -> None:
    assert list(generate_patients(3000, seed=5)) == list(generate_patients(3000, seed=5))


def test_different_seed_different_output() -> None:
    a = list(generate_patients(200, seed=1))
    b = list(generate_patients(200, seed=2))
    assert sum(x.as_import_row() == y.as_import_row() for x, y in zip(a, b, strict=True)) < 5


def test_count_is_exact() -> None:
    for count in [*range(12), 97, 1000]:
        assert sum(1 for _ in generate_patients(count, seed=3)) == count


def test_deterministic_across_processes_and_hash_seeds() -> None:
    code = (
        "import hashlib;"
        "from patient_search.seeding.generator import generate_patients;"
        "h = hashlib.sha256();"
        "[h.update(repr(p.as_import_row()).encode())"
        " for p in generate_patients(2000, seed=11, mrn_prefix='X')];"
        "print(h.hexdigest())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == digest(list(generate_patients(2000, seed=11, mrn_prefix="X")))


def test_negative_count_rejected() -> None:
    with pytest.raises(ValueError):
        generate_patients(-1)


def test_mrns_unique_and_prefixed(patients: list[SyntheticPatient]) -> None:
    assert len({p.mrn for p in patients}) == N
    assert all(re.fullmatch(r"\d{8}", p.mrn) for p in patients)
    prefixed = list(generate_patients(50, seed=SEED, mrn_prefix="CLN2-"))
    assert all(p.mrn.startswith("CLN2-") for p in prefixed)
    assert len({p.mrn for p in prefixed}) == 50


def test_fast_constructor_matches_dataclass(patients: list[SyntheticPatient]) -> None:
    for p in patients[:50]:
        rebuilt = SyntheticPatient(**{f.name: getattr(p, f.name) for f in dataclasses.fields(p)})
        assert rebuilt == p
    with pytest.raises(dataclasses.FrozenInstanceError):
        patients[0].mrn = "changed"  # type: ignore[misc]


# ------------------------------------------------------------------ field values


def test_phones_are_valid_us_numbers(patients: list[SyntheticPatient]) -> None:
    for p in patients:
        assert 0 <= len(p.phones) <= 3
        nationals = set()
        for phone in p.phones:
            number = phonenumbers.parse(phone, "US")
            assert phonenumbers.is_valid_number(number), phone
            assert phonenumbers.region_code_for_number(number) == "US", phone
            national = str(number.national_number)
            assert national[3:6] != "555" and national[4:6] != "11", phone
            nationals.add(national)
        assert len(nationals) == len(p.phones), p.phones  # no number listed twice


def test_phones_use_mixed_human_formats(patients: list[SyntheticPatient]) -> None:
    shapes = collections.Counter(re.sub(r"\d", "9", ph) for p in patients for ph in p.phones)
    for shape in [
        "(999) 999-9999",
        "999-999-9999",
        "999.999.9999",
        "9999999999",
        "+9 999 999 9999",  # +1 415 555 0134
        "9-999-999-9999",  # 1-415-555-0134
    ]:
        assert shapes[shape] > 0, shape
    assert share(patients, lambda p: not p.phones) < 0.12


def test_dates_of_birth_in_range(patients: list[SyntheticPatient]) -> None:
    oldest = REFERENCE_DATE.replace(year=REFERENCE_DATE.year - 101)
    for p in patients:
        assert oldest < p.date_of_birth <= REFERENCE_DATE <= datetime.date.today()
    ages = [(REFERENCE_DATE - p.date_of_birth).days / 365.2425 for p in patients]
    adults = sum(a >= 18 for a in ages) / N
    assert 0.70 < adults < 0.90
    assert sum(a < 1 for a in ages) > 0 and sum(a >= 90 for a in ages) > 0


def test_as_of_on_leap_day() -> None:
    as_of = datetime.date(2000, 2, 29)
    for p in generate_patients(3000, seed=4, as_of=as_of):
        assert datetime.date(1899, 2, 28) < p.date_of_birth <= as_of


def test_sex_and_status_proportions(patients: list[SyntheticPatient]) -> None:
    sexes = collections.Counter(p.sex for p in patients)
    assert set(sexes) == {"female", "male", "other", "unknown"}
    assert 0.004 < (sexes["other"] + sexes["unknown"]) / N < 0.02
    status = collections.Counter(p.status for p in patients)
    assert set(status) == {"active", "inactive", "deceased"}
    assert 0.87 < status["active"] / N < 0.93
    assert 0.06 < status["inactive"] / N < 0.10
    assert 0.01 < status["deceased"] / N < 0.035


def test_first_names_match_sex(patients: list[SyntheticPatient]) -> None:
    female = set(UsNames.first_names_female) - set(UsNames.first_names_male)
    male = set(UsNames.first_names_male) - set(UsNames.first_names_female)
    for sex, own, other in [("female", female, male), ("male", male, female)]:
        names = [p.first_name for p in patients if p.sex == sex]
        hits = sum(n in own for n in names)
        misses = sum(n in other for n in names)
        assert hits > 1000 and misses < hits * 0.01


def test_emails_use_example_domains(patients: list[SyntheticPatient]) -> None:
    with_email = [p.email for p in patients if p.email]
    for email in with_email:
        local, _, domain = email.partition("@")
        assert domain in EMAIL_DOMAINS, email
        assert re.fullmatch(r"[A-Za-z0-9._+]+", local) and local[0] != ".", email
    assert 0.12 < 1 - len(with_email) / N < 0.19
    assert any(e != e.lower() for e in with_email)  # some typed with capitals
    assert any("." in e.partition("@")[0] for e in with_email)


# ------------------------------------------------------------------ realism


def test_accented_and_compound_names(patients: list[SyntheticPatient]) -> None:
    def accented(p: SyntheticPatient) -> bool:
        text = unicodedata.normalize("NFD", p.first_name + p.last_name + (p.middle_name or ""))
        return any(unicodedata.combining(c) for c in text) or any(c in text for c in "łŁđĐß")

    assert 0.03 < share(patients, accented) < 0.15
    letters = "".join(p.first_name + p.last_name for p in patients)
    for ch in "ñéüóç":
        assert ch in letters, ch
    assert 0.025 < share(patients, lambda p: "-" in p.last_name) < 0.06
    assert 0.01 < share(patients, lambda p: " " in p.last_name) < 0.035
    particles = {"de", "del", "la", "van", "der", "da", "dos", "le", "von", "los", "du"}
    assert any(set(p.last_name.lower().split()[:-1]) & particles for p in patients)
    assert any("'" in p.last_name for p in patients)  # O'Brien and friends
    assert all(p.last_name == p.last_name.strip() and "  " not in p.last_name for p in patients)


def test_middle_names(patients: list[SyntheticPatient]) -> None:
    assert 0.35 < share(patients, lambda p: p.middle_name is not None) < 0.46
    initials = share(patients, lambda p: p.middle_name is not None and len(p.middle_name) <= 2)
    assert 0.05 < initials < 0.15


def test_common_names_collide(patients: list[SyntheticPatient]) -> None:
    names = collections.Counter((p.first_name, p.last_name) for p in patients)
    assert names.most_common(1)[0][1] >= 4
    lasts = collections.Counter(p.last_name for p in patients)
    assert lasts.most_common(1)[0][0] == "Smith"


def test_twins(patients: list[SyntheticPatient]) -> None:
    pairs = twin_pairs(patients)
    assert 0.003 < 2 * len(pairs) / N < 0.008
    for a, b in pairs:
        assert int(b.mrn) == int(a.mrn) + 1


def test_shared_emails_are_households(patients: list[SyntheticPatient]) -> None:
    by_email: dict[str, list[SyntheticPatient]] = collections.defaultdict(list)
    for p in patients:
        if p.email:
            by_email[p.email.lower()].append(p)
    groups = [g for g in by_email.values() if len(g) > 1]
    sharing = sum(len(g) for g in groups) / N
    assert 0.07 < sharing < 0.14
    for group in groups:
        # Every household shares one number, possibly typed differently by each member.
        common = set.intersection(*({digits(ph) for ph in p.phones} for p in group))
        assert common, [p.phones for p in group]
        assert len(group) <= 5
    # Household members are registered at different times, not in adjacent rows.
    spread = [max(int(p.mrn) for p in g) - min(int(p.mrn) for p in g) for g in groups]
    assert sorted(spread)[len(spread) // 2] > 100


# ------------------------------------------------------------------ import rows


def test_as_import_row(patients: list[SyntheticPatient]) -> None:
    for p in patients[:2000]:
        row = p.as_import_row()
        assert tuple(row) == IMPORT_FIELDS
        assert all(isinstance(v, str) for v in row.values())
        assert row["mrn"] == p.mrn
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", row["date_of_birth"])
        assert datetime.date.fromisoformat(row["date_of_birth"]) == p.date_of_birth
        assert row["middle_name"] == (p.middle_name or "")
        assert row["email"] == (p.email or "")
        assert row["phone"] == ";".join(p.phones)
        assert row["sex"] in {"female", "male", "other", "unknown"}
        assert row["status"] in {"active", "inactive", "deceased"}
        assert all(";" not in v for k, v in row.items() if k != "phone")
