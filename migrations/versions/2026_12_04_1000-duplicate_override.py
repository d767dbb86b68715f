"""The audit action of a registration made against a duplicate warning.

access_audit.action gains 'create_duplicate': a patient created with ?allow_duplicate=true
although the duplicate check suspected an existing one.

Revision ID: 0005_duplicate_override
Revises: 0004_address
Create Date: 2026-12-04
"""

from alembic import op

revision = "0005_duplicate_override"
down_revision = "0004_address"
branch_labels = None
depends_on = None


def _actions(actions: str) -> str:
    return f"""
        ALTER TABLE access_audit DROP CONSTRAINT access_audit_action_check,
            ADD CONSTRAINT access_audit_action_check CHECK (action IN ({actions}));
    """


def upgrade() -> None:
    op.execute(_actions("'view', 'summary', 'create', 'update', 'archive', 'create_duplicate'"))


def downgrade() -> None:
    # Entries are append-only (no UPDATE, no DELETE): overrides stay, the check skips them.
    op.execute(
        _actions("'view', 'summary', 'create', 'update', 'archive'").replace("));", ")) NOT VALID;")
    )
