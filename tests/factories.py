"""Small factories for test data: clinics, tokens and patient bodies."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid

from patient_search.auth.tokens import issue_token

TEST_SECRET = "test-secret-" + "x" * 40


def new_clinic_id() -> str:
    """A clinic id no other test uses."""
    return f"t-{uuid.uuid4().hex[:16]}"


def bearer(
    clinic_id: str, scopes: str = "patients:read patients:write", user: str = "tester"
) -> dict[str, str]:
    """Authorization headers for a user of `clinic_id`."""
    token = issue_token(TEST_SECRET, clinic_id=clinic_id, user_id=user, scopes=scopes)
    return {"Authorization": f"Bearer {token}"}


_BODIES = itertools.count(1)


def patient_body(**overrides: object) -> dict[str, object]:
    """A valid POST body. Unless given, the MRN is unique, and so are the date of birth,
    phone and email: two bodies are two people to the duplicate check, namesakes at most.

    Consecutive bodies differ in both the year and the day of birth, so their dates are
    never "near" (one digit, a transposition, day and month swapped), which would make
    namesakes a probable duplicate."""
    unique = next(_BODIES)
    born = dt.date(1930 + unique % 70, 6, 1 + unique % 28)
    body: dict[str, object] = {
        "mrn": f"MRN-{uuid.uuid4().hex[:10]}",
        "first_name": "Ada",
        "middle_name": "Maria",
        "last_name": "Lovelace",
        "date_of_birth": born.isoformat(),
        "sex": "female",
        "status": "active",
        "phones": [f"(415) 555-{unique % 10_000:04d}"],
        "email": f"Ada.Lovelace.{unique % 1_000_000}@Example.com",
        "emergency_contacts": [
            {"name": "Charles Babbage", "relationship": "friend", "phone": "415-555-0199"}
        ],
        "insurance": [{"payer": "Acme Health", "member_id": "XZ-123"}],
    }
    body.update(overrides)
    return body
