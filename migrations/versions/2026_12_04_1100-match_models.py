"""The duplicate check's weights, as estimated from each clinic's own records.

- match_models: one row per clinic, written by `patient-search duplicates` (decision 0019)
  and read by the duplicate check of `/v1/patients/match` and registration.

Revision ID: 0006_match_models
Revises: 0005_duplicate_override
Create Date: 2026-12-04
"""

from alembic import op

revision = "0006_match_models"
down_revision = "0005_duplicate_override"
branch_labels = None
depends_on = None

CURRENT_CLINIC = "NULLIF(current_setting('app.clinic_id', true), '')"


def upgrade() -> None:
    op.execute(
        f"""
        CREATE TABLE match_models (
            clinic_id text PRIMARY KEY REFERENCES clinics (id),
            estimated_at timestamptz NOT NULL DEFAULT now(),
            -- levels' weights in bits, the prior, and the m and u behind them: no patient data
            model jsonb NOT NULL
        );
        ALTER TABLE match_models ENABLE ROW LEVEL SECURITY;
        ALTER TABLE match_models FORCE ROW LEVEL SECURITY;
        CREATE POLICY tenant_isolation ON match_models
            USING (clinic_id = {CURRENT_CLINIC}) WITH CHECK (clinic_id = {CURRENT_CLINIC});
        REVOKE ALL ON match_models FROM PUBLIC;
        GRANT SELECT, INSERT, UPDATE ON match_models TO patient_search_app;
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE match_models")
