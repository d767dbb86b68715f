"""SECURITY DEFINER functions look in the session's temporary schema last.

A function's search_path that does not name pg_temp searches it *first* for tables and
views. The definer functions run as patient_search_definer (BYPASSRLS), so a session that
may create temporary objects could shadow `patients` or `search_vocabulary` with a temporary
view over another clinic's rows and have the function read them. Naming pg_temp last makes
`patients` always public.patients (functions and operators are never looked up in pg_temp).

TEMP on the database stays granted (through PUBLIC, PostgreSQL's default): the importer's
batches stage their rows in a temporary table as patient_search_app.

Revision ID: 0007_definer_search_path
Revises: 0006_match_models
Create Date: 2026-12-04
"""

from alembic import op

revision = "0007_definer_search_path"
down_revision = "0006_match_models"
branch_labels = None
depends_on = None

# Every SECURITY DEFINER function of the schema (tests/db/test_definer_search_path.py checks
# that the database holds no other).
DEFINER_FUNCTIONS = (
    "search_name_candidates(text[], integer[], text[], integer)",
    "search_similar_terms(text, integer)",
)


def upgrade() -> None:
    for function in DEFINER_FUNCTIONS:
        op.execute(f"ALTER FUNCTION {function} SET search_path = pg_catalog, public, pg_temp")


def downgrade() -> None:
    for function in DEFINER_FUNCTIONS:
        op.execute(f"ALTER FUNCTION {function} SET search_path = pg_catalog, public")
