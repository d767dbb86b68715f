"""Foundation schema: clinics, patients and their contacts, with forced row-level security.

Revision ID: 0001_foundation
Revises:
Create Date: 2026-12-01
"""

from alembic import op

revision = "0001_foundation"
down_revision = None
branch_labels = None
depends_on = None

TENANT_TABLES = ("patients", "patient_phones", "emergency_contacts", "insurance_policies")

# NULLIF: after a transaction-local set_config ends the setting reads as '' (not NULL),
# and no clinic id is empty, so "no clinic set" matches no row either way.
CURRENT_CLINIC = "NULLIF(current_setting('app.clinic_id', true), '')"


def upgrade() -> None:
    op.execute(
        """
        DO $$ BEGIN
            CREATE ROLE patient_search_app NOLOGIN NOSUPERUSER NOBYPASSRLS;
        EXCEPTION WHEN duplicate_object THEN NULL;
        END $$;
        GRANT patient_search_app TO CURRENT_USER;
        """
    )
    op.execute(
        """
        CREATE TABLE clinics (
            id text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_-]{1,64}$'),
            name text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE patients (
            clinic_id text NOT NULL REFERENCES clinics (id),
            id uuid NOT NULL,
            mrn text NOT NULL CHECK (length(mrn) BETWEEN 1 AND 64),
            first_name text,
            middle_name text,
            last_name text NOT NULL CHECK (length(last_name) BETWEEN 1 AND 200),
            date_of_birth date,
            sex text CHECK (sex IN ('female', 'male', 'other', 'unknown')),
            status text NOT NULL DEFAULT 'active'
                CHECK (status IN ('active', 'inactive', 'deceased')),
            email text,
            email_normalized text,
            version integer NOT NULL DEFAULT 1,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            deleted_at timestamptz,
            PRIMARY KEY (clinic_id, id),
            CONSTRAINT patients_mrn_unique_per_clinic UNIQUE (clinic_id, mrn)
        );

        -- Child tables lead with (clinic_id, patient_id): the primary key is also the
        -- foreign key's index, and the composite FK makes a cross-clinic link impossible.
        CREATE TABLE patient_phones (
            clinic_id text NOT NULL,
            patient_id uuid NOT NULL,
            position smallint NOT NULL,
            raw text NOT NULL,
            e164 text,
            PRIMARY KEY (clinic_id, patient_id, position),
            FOREIGN KEY (clinic_id, patient_id) REFERENCES patients (clinic_id, id)
                ON DELETE CASCADE
        );

        CREATE TABLE emergency_contacts (
            clinic_id text NOT NULL,
            patient_id uuid NOT NULL,
            position smallint NOT NULL,
            name text NOT NULL,
            relationship text,
            phone text,
            phone_e164 text,
            PRIMARY KEY (clinic_id, patient_id, position),
            FOREIGN KEY (clinic_id, patient_id) REFERENCES patients (clinic_id, id)
                ON DELETE CASCADE
        );

        CREATE TABLE insurance_policies (
            clinic_id text NOT NULL,
            patient_id uuid NOT NULL,
            position smallint NOT NULL,
            payer text NOT NULL,
            member_id text NOT NULL,
            PRIMARY KEY (clinic_id, patient_id, position),
            FOREIGN KEY (clinic_id, patient_id) REFERENCES patients (clinic_id, id)
                ON DELETE CASCADE
        );
        """
    )
    op.execute(
        f"""
        ALTER TABLE clinics ENABLE ROW LEVEL SECURITY;
        ALTER TABLE clinics FORCE ROW LEVEL SECURITY;
        CREATE POLICY tenant_isolation ON clinics
            USING (id = {CURRENT_CLINIC}) WITH CHECK (id = {CURRENT_CLINIC});
        GRANT SELECT, INSERT ON clinics TO patient_search_app;
        """
    )
    for table in TENANT_TABLES:
        op.execute(
            f"""
            ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
            ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
            CREATE POLICY tenant_isolation ON {table}
                USING (clinic_id = {CURRENT_CLINIC})
                WITH CHECK (clinic_id = {CURRENT_CLINIC});
            """
        )
    # Patients are archived, never deleted; their list children are replaced on update.
    op.execute(
        """
        GRANT SELECT, INSERT, UPDATE ON patients TO patient_search_app;
        GRANT SELECT, INSERT, UPDATE, DELETE
            ON patient_phones, emergency_contacts, insurance_policies TO patient_search_app;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE insurance_policies, emergency_contacts, patient_phones, patients, clinics;
        -- The role is cluster-wide: another database of the cluster may still use it.
        DO $$ BEGIN
            DROP ROLE patient_search_app;
        EXCEPTION WHEN dependent_objects_still_exist THEN NULL;
        END $$;
        """
    )
