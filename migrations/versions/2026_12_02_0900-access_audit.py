"""Access audit: an append-only record of who viewed or changed which patient, and when.

- access_audit: one row per profile view, summary view and write (clinic, patient, token
  sub, action, request id, time), under the same forced row-level security as the rest;
- the service role may only INSERT and SELECT; a statement trigger refuses UPDATE, DELETE
  and TRUNCATE for every role, the owner's included (only DDL — dropping the trigger or the
  table — can remove entries, and that is a schema change, not something the service does);
- no foreign keys: an entry must outlive whatever it is about.

Revision ID: 0003_access_audit
Revises: 0002_search
Create Date: 2026-12-02
"""

from alembic import op

revision = "0003_access_audit"
down_revision = "0002_search"
branch_labels = None
depends_on = None

CURRENT_CLINIC = "NULLIF(current_setting('app.clinic_id', true), '')"


def upgrade() -> None:
    op.execute(
        f"""
        CREATE TABLE access_audit (
            clinic_id text NOT NULL,
            id bigint GENERATED ALWAYS AS IDENTITY,
            at timestamptz NOT NULL DEFAULT now(),
            patient_id uuid NOT NULL,
            actor text NOT NULL CHECK (length(actor) BETWEEN 1 AND 256),
            action text NOT NULL
                CHECK (action IN ('view', 'summary', 'create', 'update', 'archive')),
            request_id text CHECK (length(request_id) <= 128),
            PRIMARY KEY (clinic_id, id)
        );
        -- `patient-search audit --patient`: one index range per clinic, in time order.
        CREATE INDEX access_audit_patient ON access_audit (clinic_id, patient_id, at);

        ALTER TABLE access_audit ENABLE ROW LEVEL SECURITY;
        ALTER TABLE access_audit FORCE ROW LEVEL SECURITY;
        CREATE POLICY tenant_isolation ON access_audit
            USING (clinic_id = {CURRENT_CLINIC}) WITH CHECK (clinic_id = {CURRENT_CLINIC});
        REVOKE ALL ON access_audit FROM PUBLIC;
        GRANT SELECT, INSERT ON access_audit TO patient_search_app;

        CREATE FUNCTION access_audit_refuse_change() RETURNS trigger
            LANGUAGE plpgsql
            AS $$
            BEGIN
                RAISE EXCEPTION 'access_audit is append-only (% refused)', TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END
            $$;
        -- FOR EACH STATEMENT: refused even when no row matches, and TRUNCATE too.
        CREATE TRIGGER access_audit_append_only
            BEFORE UPDATE OR DELETE OR TRUNCATE ON access_audit
            FOR EACH STATEMENT EXECUTE FUNCTION access_audit_refuse_change();
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE access_audit;
        DROP FUNCTION access_audit_refuse_change();
        """
    )
