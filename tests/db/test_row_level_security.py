"""Tenant isolation is enforced by PostgreSQL itself, for the service's role."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from patient_search.db.logins import APP_ROLE
from tests.factories import bearer, new_clinic_id

TENANT_TABLES = (
    "clinics",
    "patients",
    "patient_phones",
    "emergency_contacts",
    "insurance_policies",
)


@pytest.fixture
async def two_clinics(create_patient: Callable[..., Any]) -> tuple[str, str]:
    first, second = new_clinic_id(), new_clinic_id()
    await create_patient(bearer(first))
    await create_patient(bearer(second))
    return first, second


def _count_as_app(conn: psycopg.Connection[Any], table: str, clinic_id: str | None) -> int:
    with conn.transaction():
        conn.execute(f"SET LOCAL ROLE {APP_ROLE}")
        if clinic_id is not None:
            conn.execute("SELECT set_config('app.clinic_id', %s, true)", (clinic_id,))
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608 - fixed names
        assert row is not None
        return int(row[0])


async def test_no_clinic_set_sees_nothing(
    superuser_conn: psycopg.Connection[Any], two_clinics: tuple[str, str]
) -> None:
    for table in TENANT_TABLES:
        assert _count_as_app(superuser_conn, table, None) == 0, table


async def test_a_clinic_sees_only_its_own_rows(
    superuser_conn: psycopg.Connection[Any], two_clinics: tuple[str, str]
) -> None:
    first, _ = two_clinics
    assert _count_as_app(superuser_conn, "clinics", first) == 1
    assert _count_as_app(superuser_conn, "patients", first) == 1
    assert _count_as_app(superuser_conn, "patient_phones", first) == 1
    assert _count_as_app(superuser_conn, "insurance_policies", first) == 1


async def test_writing_another_clinics_row_is_refused(
    superuser_conn: psycopg.Connection[Any], two_clinics: tuple[str, str]
) -> None:
    first, second = two_clinics
    with pytest.raises(psycopg.errors.InsufficientPrivilege), superuser_conn.transaction():
        superuser_conn.execute(f"SET LOCAL ROLE {APP_ROLE}")
        superuser_conn.execute("SELECT set_config('app.clinic_id', %s, true)", (first,))
        superuser_conn.execute(
            "INSERT INTO patients (clinic_id, id, mrn, last_name) "
            "VALUES (%s, gen_random_uuid(), 'X', 'Y')",
            (second,),
        )


async def test_the_role_is_bound_by_policies(superuser_conn: psycopg.Connection[Any]) -> None:
    row = superuser_conn.execute(
        "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = %s", (APP_ROLE,)
    ).fetchone()
    assert row == (False, False)
    forced = superuser_conn.execute(
        "SELECT relname FROM pg_class WHERE relname = ANY(%s) "
        "AND relrowsecurity AND relforcerowsecurity",
        (list(TENANT_TABLES),),
    ).fetchall()
    assert {name for (name,) in forced} == set(TENANT_TABLES)


async def test_pooled_connections_run_as_the_app_role(app: Any) -> None:
    pool = app.state.services.pool
    async with pool.connection() as conn:
        cursor = await conn.execute("SELECT current_user AS who")
        assert (await cursor.fetchone())["who"] == APP_ROLE
