"""The logins the service uses: who may run it, and the membership its login needs.

The schema belongs to the migration login. Every other command, the service included, logs in
as `PATIENT_SEARCH_DATABASE_URL`, which in production is an ordinary role whose only privilege
is membership of `patient_search_app`. A superuser or BYPASSRLS login would make row-level
security a convention of the application instead of a wall: a single injected
`RESET ROLE` would read every clinic.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from patient_search.db.pool import APP_ROLE

_PRIVILEGES = "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = session_user"
_ROLE_EXISTS = "SELECT 1 FROM pg_roles WHERE rolname = %s"


def login_of(conninfo: str) -> str:
    """The user a connection string logs in as."""
    return str(conninfo_to_dict(conninfo).get("user") or "")


def with_login(conninfo: str, login: str) -> str:
    """The same server and database (a URL), logged in as `login`, without a password."""
    parts = urlsplit(conninfo)
    host = parts.netloc.rsplit("@", 1)[-1]
    return parts._replace(netloc=f"{login}@{host}").geturl()


def privileged_login(conninfo: str, connect_timeout_s: int = 3) -> str | None:
    """Why the login may not run the service ("a superuser", "a BYPASSRLS role"), or None."""
    with psycopg.connect(conninfo, connect_timeout=connect_timeout_s) as conn:
        row = conn.execute(_PRIVILEGES).fetchone()
    if row is None:
        return None
    superuser, bypasses_rls = row
    if superuser:
        return "a superuser"
    if bypasses_rls:
        return "a BYPASSRLS role"
    return None


def grant_service_login(migration_conninfo: str, service_conninfo: str, create: bool) -> str:
    """Make the service's login a member of the RLS-bound role (creating the login when
    `create`, as dev and tests do); what was done, in words."""
    login = login_of(service_conninfo)
    if not login or login == login_of(migration_conninfo):
        return "the service logs in as the migration login"
    with psycopg.connect(migration_conninfo, autocommit=True) as conn:
        exists = conn.execute(_ROLE_EXISTS, (login,)).fetchone() is not None
        if not exists and not create:
            return f"login {login} does not exist: CREATE ROLE {login} LOGIN, then migrate again"
        if not exists:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(login)))
        conn.execute(
            sql.SQL("GRANT {} TO {}").format(sql.Identifier(APP_ROLE), sql.Identifier(login))
        )
    return f"login {login} is a member of {APP_ROLE}" + ("" if exists else " (created)")
