"""The SECURITY DEFINER helpers cannot be pointed at another clinic's rows through pg_temp.

The attack: as the service role, shadow a table the helper reads with a temporary view that
relabels clinic B's rows as clinic A's (`security_invoker`, so the view reads them with the
definer's BYPASSRLS), then call the helper in clinic A.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import psycopg

from patient_search.db.logins import APP_ROLE
from tests.factories import bearer, new_clinic_id

DEFINER_ROLE = "patient_search_definer"


def _surname() -> str:
    """A surname no other test uses, in letters only (it is one search term)."""
    return "Zq" + "".join(chr(97 + int(c, 16)) for c in uuid.uuid4().hex[:10])


def _as_app_in(conn: psycopg.Connection[Any], clinic_id: str, shadow: str | None) -> None:
    """Inside a transaction: become the service role in `clinic_id`, and create `shadow`."""
    conn.execute(f"SET LOCAL ROLE {APP_ROLE}")
    conn.execute("SELECT set_config('app.clinic_id', %s, true)", (clinic_id,))
    if shadow is not None:
        conn.execute(shadow)


async def test_a_temporary_patients_view_does_not_reach_the_name_search(
    superuser_conn: psycopg.Connection[Any], create_patient: Callable[..., Any]
) -> None:
    clinic_a, clinic_b = new_clinic_id(), new_clinic_id()
    surname = _surname()
    own = await create_patient(bearer(clinic_a), last_name=surname)
    other = await create_patient(bearer(clinic_b), last_name=surname)
    term = surname.lower()
    shadow = f"""
        CREATE TEMP VIEW patients WITH (security_invoker = true) AS
            SELECT '{clinic_a}'::text AS clinic_id, id, name_terms, first_key, last_key,
                   date_of_birth, status, deleted_at
            FROM public.patients WHERE clinic_id = '{clinic_b}';
        GRANT SELECT ON patients TO {DEFINER_ROLE}
    """  # noqa: S608 - the test's own ids
    with superuser_conn.transaction(force_rollback=True):
        _as_app_in(superuser_conn, clinic_a, shadow)
        rows = superuser_conn.execute(
            "SELECT id FROM search_name_candidates(%s, %s, %s, 50)",
            ([term], [1], ["active"]),
        ).fetchall()
    found = {str(patient_id) for (patient_id,) in rows}
    assert other["id"] not in found, "the definer function read clinic B through pg_temp"
    assert found == {own["id"]}


async def test_a_temporary_vocabulary_view_does_not_reach_the_similar_terms(
    superuser_conn: psycopg.Connection[Any], create_patient: Callable[..., Any]
) -> None:
    clinic_a, clinic_b = new_clinic_id(), new_clinic_id()
    await create_patient(bearer(clinic_a))
    surname = _surname()
    await create_patient(bearer(clinic_b), last_name=surname)
    shadow = f"""
        CREATE TEMP VIEW search_vocabulary WITH (security_invoker = true) AS
            SELECT '{clinic_a}'::text AS clinic_id, term
            FROM public.search_vocabulary WHERE clinic_id = '{clinic_b}';
        GRANT SELECT ON search_vocabulary TO {DEFINER_ROLE}
    """  # noqa: S608 - the test's own ids
    with superuser_conn.transaction(force_rollback=True):
        _as_app_in(superuser_conn, clinic_a, shadow)
        rows = superuser_conn.execute(
            "SELECT term FROM search_similar_terms(%s, 50)", (surname.lower()[:-1],)
        ).fetchall()
    assert surname.lower() not in {term for (term,) in rows}


def test_every_definer_function_searches_pg_temp_last(
    superuser_conn: psycopg.Connection[Any],
) -> None:
    rows = superuser_conn.execute(
        "SELECT p.oid::regprocedure::text, c.setting FROM pg_proc p"
        " LEFT JOIN LATERAL unnest(p.proconfig) AS c(setting) ON c.setting LIKE 'search_path=%%'"
        " WHERE p.prosecdef AND p.pronamespace = 'public'::regnamespace"
    ).fetchall()
    assert {function.split("(")[0] for function, _ in rows} == {
        "search_name_candidates",
        "search_similar_terms",
    }, "a new SECURITY DEFINER function: pin its search_path and list it here"
    for function, setting in rows:
        assert setting is not None, f"{function} has no search_path of its own"
        path = [part.strip() for part in setting.removeprefix("search_path=").split(",")]
        assert path[0] == "pg_catalog" and path[-1] == "pg_temp", (function, path)
