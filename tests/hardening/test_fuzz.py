"""Property-based fuzzing of every operation in the service's own OpenAPI document.

Schemathesis generates valid and invalid requests from the document, sends them
authenticated to the real server, and checks every answer: never a 5xx; status code, content
type, headers and body as documented; invalid input refused, a missing token refused.
`make test` runs FUZZ_EXAMPLES (default 25) examples per operation and phase; `make fuzz` many
more.
"""

from __future__ import annotations

import os
import uuid

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from patient_search.app import create_app
from tests.conftest import TEST_DATABASE, database_url_for, make_settings
from tests.factories import bearer, new_clinic_id, patient_body

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
# Generated patients go to a clinic of their own.
FUZZ_CLINIC = new_clinic_id()
KNOWN_PATIENTS = 8

# The document the app serves; nothing connects until a lifespan starts.
OPENAPI = create_app(make_settings(database_url_for(TEST_DATABASE))).openapi()
schema = schemathesis.openapi.from_dict(
    OPENAPI,
    config=schemathesis.Config.from_dict(
        {
            "headers": bearer(FUZZ_CLINIC),
            "checks": {
                # The document cannot say everything the API checks (a phone has 7-15 digits, a
                # birth date is not in the future): "valid" examples may be refused with 422.
                "positive_data_acceptance": {
                    "expected-statuses": ["2xx", "400", "404", "409", "422"]
                },
            },
        }
    ),
).exclude(path_regex="^/dev/")  # the dev sign-in exists only with ENV=dev, never in production


@pytest.fixture(scope="package")
def known_patient_ids(live_server: str) -> list[str]:
    """Patients of the fuzz clinic, so that id routes are fuzzed on real records too."""
    ids = []
    for _ in range(KNOWN_PATIENTS):
        response = httpx.post(
            f"{live_server}/v1/patients", json=patient_body(), headers=bearer(FUZZ_CLINIC)
        )
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


def _aim_at_a_known_patient(case: schemathesis.Case, known: list[str]) -> None:
    # Random UUIDs are all 404; three in four well-formed ones are swapped for a real patient,
    # chosen from the generated value so that Hypothesis replays the same request.
    generated = (case.path_parameters or {}).get("patient_id")
    try:
        number = uuid.UUID(str(generated)).int
    except ValueError:
        return  # a malformed id is what this example tests
    # Archiving is for good: DELETE gets patients of its own, the other operations keep theirs.
    pool = known[:2] if case.method.upper() == "DELETE" else known[2:]
    if number % 4:
        case.path_parameters["patient_id"] = pool[number % len(pool)]


def test_the_fuzzed_document_is_the_served_one(live_server: str) -> None:
    assert httpx.get(f"{live_server}/openapi.json").json() == OPENAPI


@schema.parametrize()
@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_conforms_and_never_fails(
    case: schemathesis.Case, live_server: str, known_patient_ids: list[str]
) -> None:
    _aim_at_a_known_patient(case, known_patient_ids)
    case.call_and_validate(base_url=live_server)
