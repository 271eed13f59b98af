"""Version 3: a claim names the study it was taken for, so a study's budget counts the configs in flight.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04

Searches of one study each counted only the evaluations already written, so
each could start one last evaluation together and the study overshot its
budget by one per extra search. ``claims.study_id`` (empty for claims taken
before, which lapse within seconds anyway) lets a claim count against its
study's budget. No foreign key: SQLite cannot add one to an existing table.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("claims", sa.Column("study_id", sa.Integer, nullable=True))
    op.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
