"""Version 1, the base: studies, measurements, trials, tables, claims and the meta row, as before Alembic.

Revision ID: 0001
Revises:
Create Date: 2026-12-04

Stores made before sliver used Alembic have no ``alembic_version`` table and
may lack the tables that version 1 gained later (``tables``, ``claims``: they
came through ``create_all`` without a version bump). So this revision creates
only what is missing and keeps what is there; the columns are frozen here as
version 1 had them, whatever the models in ``sliver/store.py`` say today.
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    have = set(sa.inspect(op.get_bind()).get_table_names())
    if "meta" not in have:
        meta = op.create_table(
            "meta",
            sa.Column("key", sa.String(64), primary_key=True),
            sa.Column("value", sa.Text, nullable=False),
        )
        op.bulk_insert(meta, [{"key": "schema_version", "value": "1"}])
    if "studies" not in have:
        op.create_table(
            "studies",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("name", sa.String(255), nullable=False, unique=True),
            sa.Column("space_json", sa.Text, nullable=False),
            sa.Column("objectives_json", sa.Text, nullable=False),
            sa.Column("supernet_hash", sa.String(128), nullable=False),
            sa.Column("fingerprint", sa.String(128), nullable=False),
            sa.Column("settings_json", sa.Text, nullable=False),
            sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        )
    if "measurements" not in have:
        op.create_table(
            "measurements",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("config_key", sa.String(64), nullable=False, index=True),
            sa.Column("config_json", sa.Text, nullable=False),
            sa.Column("supernet_hash", sa.String(128), nullable=False, index=True),
            sa.Column("objective", sa.String(64), nullable=False),
            sa.Column("fingerprint", sa.String(128), nullable=False),
            sa.Column("value", sa.Float, nullable=True),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("error", sa.Text, nullable=True),
            sa.Column("stats_json", sa.Text, nullable=False),
            sa.Column("seconds", sa.Float, nullable=False),
            sa.Column("created", sa.DateTime(timezone=True), nullable=False),
            sa.UniqueConstraint("config_key", "supernet_hash", "objective", "fingerprint", name="uq_measurement"),
        )
    if "trials" not in have:
        op.create_table(
            "trials",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("study_id", sa.Integer, sa.ForeignKey("studies.id"), nullable=False, index=True),
            sa.Column("seq", sa.Integer, nullable=False),
            sa.Column("config_key", sa.String(64), nullable=False),
            sa.Column("config_json", sa.Text, nullable=False),
            sa.Column("values_json", sa.Text, nullable=False),
            sa.Column("errors_json", sa.Text, nullable=False),
            sa.Column("cached", sa.Boolean, nullable=False),
            sa.Column("origin", sa.String(64), nullable=False),
            sa.Column("batch", sa.Integer, nullable=False),
            sa.Column("created", sa.DateTime(timezone=True), nullable=False),
            sa.UniqueConstraint("study_id", "config_key", name="uq_trial_config"),
            sa.UniqueConstraint("study_id", "seq", name="uq_trial_seq"),
        )
    if "tables" not in have:
        op.create_table(
            "tables",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("kind", sa.String(64), nullable=False),
            sa.Column("fingerprint", sa.String(128), nullable=False),
            sa.Column("name", sa.String(255), nullable=False),
            sa.Column("data_json", sa.Text, nullable=False),
            sa.Column("created", sa.DateTime(timezone=True), nullable=False),
            sa.UniqueConstraint("kind", "fingerprint", "name", name="uq_table"),
        )
    if "claims" not in have:
        op.create_table(
            "claims",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("scope", sa.String(300), nullable=False),
            sa.Column("config_key", sa.String(64), nullable=False),
            sa.Column("owner", sa.String(255), nullable=False),
            sa.Column("expires", sa.Float, nullable=False),
            sa.UniqueConstraint("scope", "config_key", name="uq_claim"),
        )
