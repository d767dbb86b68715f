"""Patient address: the postal address as registered, and its postal code as a search key.

- patients.address: jsonb {"lines": [...], "city", "state", "postal_code", "country"}, each
  part optional (validated by the API and the importer), NULL when none was given;
- patients.postal_code_key: the postal code upper-cased with everything but letters and
  digits removed ("sw1a 1aa" and "SW1A1AA" agree), generated from the address, with a B-tree
  on (clinic_id, postal_code_key): an equality on it is leakproof, so usable under RLS.

Revision ID: 0004_address
Revises: 0003_access_audit
Create Date: 2026-12-04
"""

from alembic import op

revision = "0004_address"
down_revision = "0003_access_audit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE patients
            ADD COLUMN address jsonb,
            ADD COLUMN postal_code_key text COLLATE "C" GENERATED ALWAYS AS (
                NULLIF(upper(regexp_replace(address->>'postal_code', '[^[:alnum:]]', '', 'g')), '')
            ) STORED;
        CREATE INDEX patients_postal_code ON patients (clinic_id, postal_code_key)
            WHERE postal_code_key IS NOT NULL;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP INDEX patients_postal_code;
        ALTER TABLE patients DROP COLUMN postal_code_key, DROP COLUMN address;
        """
    )
