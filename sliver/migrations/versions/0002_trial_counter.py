"""Version 2: each study counts its trials in ``studies.last_seq``, the counter a new trial locks and bumps.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04

Version 1 numbered a new trial max(seq) + 1, which two PostgreSQL writers
could both take (an IntegrityError on ``uq_trial_seq``). The counter starts at
each study's highest trial number, and the ``meta`` row says 2 so that sliver
of version 1, which would not bump it, refuses the store.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("studies", sa.Column("last_seq", sa.Integer, nullable=False, server_default="0"))
    op.execute(
        "UPDATE studies SET last_seq = (SELECT COALESCE(MAX(trials.seq), 0) FROM trials WHERE trials.study_id = studies.id)"
    )
    op.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
