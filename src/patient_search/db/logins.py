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

# Why a login may not serve, or NULL: it is, or may become (SET ROLE), a role that row-level
# security does not bind or that can grant itself one: a superuser, BYPASSRLS, CREATEROLE, or
# the owner of the tables. A constant, never input.
PRIVILEGED_LOGIN = """
    SELECT CASE
        WHEN r.rolsuper THEN 'a superuser'
        WHEN r.rolbypassrls THEN 'a BYPASSRLS role'
        WHEN r.rolcreaterole THEN 'a CREATEROLE role'
        WHEN EXISTS (SELECT 1 FROM pg_roles o
                     WHERE o.oid <> r.oid AND (o.rolsuper OR o.rolbypassrls OR o.rolcreaterole)
                       AND pg_has_role(r.oid, o.oid, 'MEMBER'))
            THEN 'a member of a superuser, BYPASSRLS or CREATEROLE role'
        WHEN pg_has_role(r.oid, (SELECT relowner FROM pg_class
                                 WHERE oid = to_regclass('patients')), 'MEMBER')
            THEN 'the owner of the tables (or a member of the owner)'
    END AS reason
    FROM pg_roles r WHERE r.rolname = session_user
"""
_ROLE_EXISTS = "SELECT 1 FROM pg_roles WHERE rolname = %s"
# The role every service query runs as. RLS is FORCEd on every table and this role has
# neither BYPASSRLS nor ownership, so the policies bind it.
APP_ROLE = "patient_search_app"


def login_of(conninfo: str) -> str:
    """The user a connection string logs in as."""
    return str(conninfo_to_dict(conninfo).get("user") or "")


def with_login(conninfo: str, login: str) -> str:
    """The same server and database (a URL), logged in as `login`, without a password."""
    parts = urlsplit(conninfo)
    host = parts.netloc.rsplit("@", 1)[-1]
    return parts._replace(netloc=f"{login}@{host}").geturl()


def privileged_login(conninfo: str, connect_timeout_s: int = 3) -> str | None:
    """Why the login may not run the service ("a superuser", ...), or None."""
    with psycopg.connect(conninfo, connect_timeout=connect_timeout_s) as conn:
        row = conn.execute(PRIVILEGED_LOGIN).fetchone()
    return str(row[0]) if row and row[0] else None


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
