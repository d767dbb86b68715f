"""The clinics a development sign-in can choose from."""

from __future__ import annotations

from patient_search.db.statements import Statement, StatementRunner

# The newest clinics, listed by id: a fresh clinic is always offered, the demo's read in order.
LIST_CLINICS = Statement(
    "web.list_clinics",
    """
    SELECT id, name
    FROM (SELECT id, name FROM clinics ORDER BY created_at DESC, id LIMIT %(limit)s) AS recent
    ORDER BY id
    """,
)


class ClinicDirectory:
    """Reads the clinics table across tenants; only the dev sign-in uses it."""

    def __init__(self, db: StatementRunner) -> None:
        self._db = db

    async def list_clinics(self, limit: int) -> list[dict[str, str]]:
        """Up to `limit` of the most recently created clinics, by id."""
        rows = await self._db.fetch_all(LIST_CLINICS, {"limit": limit})
        return [{"id": row["id"], "name": row["name"]} for row in rows]
