"""The result store: every study, trial and measurement, in a database, so nothing is paid for twice.

A *measurement* is one objective of one sub-network, keyed by
``(canonical config key, super-network hash, objective, hardware fingerprint)``;
hardware-independent objectives (accuracy, params, MACs, size) use the
fingerprint ``"any"``. A *study* is one search (its space, objectives,
super-network and target) and its *trials* are the configs it evaluated, in
order. A *table* is a JSON document keyed by ``(kind, fingerprint, name)``,
for models tied to one machine such as operator latency lookup tables, and
for the exports of a study (:meth:`ResultStore.record_export`). A
*claim* marks a config as being measured by one search process, so that
several processes (or machines) sharing a study never measure it twice; the
owner's heartbeat (:meth:`ResultStore.heartbeat`) keeps its claims alive, and a
claim not refreshed within its time-to-live expires, so a dead process's
configs are taken over seconds later. Any SQLAlchemy URL works (PostgreSQL for
a store shared between machines); the default is a local SQLite file, opened in
WAL mode with a busy timeout and a short retry so that several processes can
write to it at once without losing rows.

This module does not import torch: searches over tables use it too.
"""

from __future__ import annotations

import json
import math
import random
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any, Callable, Sequence, TypeVar

from alembic import command as alembic_command
from alembic.config import Config as AlembicConfig
from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from sliver.core import Objective
from sliver.errors import UserError, one_line
from sliver.space import Config, SearchSpace, jsonable

#: version of the table layout below: the number of the newest Alembic revision in ``sliver/migrations``,
#: to which a store is upgraded when it opens. A change to the tables is a new revision and a bump here.
SCHEMA_VERSION = 3
#: key of the PostgreSQL advisory lock that lets one process at a time migrate a store
_MIGRATION_LOCK = 0x51_1E_E5
DEFAULT_URL = "sqlite:///sliver.db"
#: the table kind under which a study's exports are kept (see :meth:`ResultStore.record_export`)
EXPORTS = "exports"

T = TypeVar("T")


# --------------------------------------------------------------------------- tables
class _Base(DeclarativeBase):
    pass


def _now() -> datetime:
    return datetime.now(timezone.utc)


class _Meta(_Base):
    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class _Study(_Base):
    __tablename__ = "studies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    space_json: Mapped[str] = mapped_column(Text)
    objectives_json: Mapped[str] = mapped_column(Text)
    supernet_hash: Mapped[str] = mapped_column(String(128))
    fingerprint: Mapped[str] = mapped_column(String(128))
    settings_json: Mapped[str] = mapped_column(Text, default="{}")
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    #: the ``seq`` of the study's newest trial: the counter that numbers the next one (see ``add_trial``)
    last_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class _Measurement(_Base):
    __tablename__ = "measurements"
    __table_args__ = (UniqueConstraint("config_key", "supernet_hash", "objective", "fingerprint", name="uq_measurement"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    config_key: Mapped[str] = mapped_column(String(64), index=True)
    config_json: Mapped[str] = mapped_column(Text)
    supernet_hash: Mapped[str] = mapped_column(String(128), index=True)
    objective: Mapped[str] = mapped_column(String(64))
    fingerprint: Mapped[str] = mapped_column(String(128))
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    stats_json: Mapped[str] = mapped_column(Text, default="{}")
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class _Trial(_Base):
    __tablename__ = "trials"
    __table_args__ = (
        UniqueConstraint("study_id", "config_key", name="uq_trial_config"),
        UniqueConstraint("study_id", "seq", name="uq_trial_seq"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    config_key: Mapped[str] = mapped_column(String(64))
    config_json: Mapped[str] = mapped_column(Text)
    values_json: Mapped[str] = mapped_column(Text)
    errors_json: Mapped[str] = mapped_column(Text)
    cached: Mapped[bool] = mapped_column(Boolean, default=False)
    origin: Mapped[str] = mapped_column(String(64), default="")
    batch: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class _Table(_Base):
    __tablename__ = "tables"
    __table_args__ = (UniqueConstraint("kind", "fingerprint", "name", name="uq_table"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    fingerprint: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(255))
    data_json: Mapped[str] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class _Claim(_Base):
    __tablename__ = "claims"
    __table_args__ = (UniqueConstraint("scope", "config_key", name="uq_claim"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: what is measured, e.g. "<supernet hash>:<fingerprint>": the same config of another model is another claim
    scope: Mapped[str] = mapped_column(String(300))
    config_key: Mapped[str] = mapped_column(String(64))
    owner: Mapped[str] = mapped_column(String(255))
    #: Unix time after which another owner may take the claim over (epoch seconds: no time-zone pitfalls on SQLite)
    expires: Mapped[float] = mapped_column(Float)
    #: the study the config is measured for: until its trial is written, the claim counts against that study's budget
    study_id: Mapped[int | None] = mapped_column(Integer, nullable=True)


# --------------------------------------------------------------------------- records
class Status(StrEnum):
    """How a measurement ended; stored as its string."""

    OK = "ok"
    FAILED = "failed"


class Origin(StrEnum):
    """How a config came into a study's trials or a search's points; stored as its string."""

    #: proposed by a search and measured for it (a trial served from the store says so in ``cached``)
    SEARCH = "search"
    #: a search point whose every value came from the store (its trial is stored as ``search``)
    CACHE = "cache"
    #: a warm start from what compatible studies measured
    WARM = "warm"
    #: rejected by a cheap constraint before measuring
    FILTERED = "filtered"
    #: measured by ``sliver measure --study``
    CLI = "cli"
    #: measured by the multitask controller
    CONTROLLER = "controller"


@dataclass
class Study:
    """One search: what it searched, for which objectives, on which super-network and hardware."""

    id: int
    name: str
    space: SearchSpace
    objectives: list[Objective]
    supernet_hash: str
    fingerprint: str
    settings: dict[str, Any] = field(default_factory=dict)
    created: datetime | None = None


@dataclass
class Measurement:
    """One objective of one config; ``value`` is None when ``status`` is ``FAILED``."""

    objective: str
    value: float | None
    status: Status
    error: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    fingerprint: str = "any"


@dataclass
class Trial:
    """One config a study evaluated, in the order it did (``seq`` increases from 1)."""

    seq: int
    config_key: str
    config: Config
    values: dict[str, float]
    errors: dict[str, str]
    cached: bool
    origin: Origin
    batch: int
    created: datetime | None


# --------------------------------------------------------------------------- the store
#: query parameters that carry a secret (libpq takes ``?password=``; drivers have tokens and passphrases)
_SECRET_PARAMETER = re.compile(r"pass|pwd|secret|token", re.IGNORECASE)


def hide_password(url: str) -> str:
    """``url`` with any password hidden, also one given as a query parameter (``?password=``): the one form a
    store URL takes in a message, log line, model card or report."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # unparseable (e.g. a port that is not a number): still hide user:password@
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
    hidden = {k: "***" for k in parsed.query if _SECRET_PARAMETER.search(k)}
    return parsed.update_query_dict(hidden).render_as_string(hide_password=True).replace("%2A%2A%2A", "***")


class ResultStore:
    """Studies, trials and measurements in the database at ``url`` (any SQLAlchemy URL).

    Opening a store creates its tables or upgrades an older store's (Alembic
    migrations, shipped in ``sliver/migrations``); a store whose schema version
    is newer than this code's is refused with a clear message instead of being
    misread.
    """

    def __init__(self, url: str = DEFAULT_URL, *, busy_timeout_s: float = 30.0, retries: int = 8) -> None:
        self.url = str(url)
        self.retries = retries
        self.is_sqlite = self.url.startswith("sqlite")
        connect_args = {"timeout": busy_timeout_s} if self.is_sqlite else {}
        try:
            self.engine = create_engine(self.url, connect_args=connect_args)
        except (ArgumentError, ValueError, ImportError) as exc:
            # a typo'd URL (a port that is no number is a ValueError) or a database driver that is not installed:
            # the user's to fix, not a traceback
            raise UserError(f"result store URL '{hide_password(self.url)}' cannot be opened ({one_line(exc)}); "
                             f"use a SQLAlchemy URL such as {DEFAULT_URL} or postgresql+psycopg2://user@host/db") from None
        if self.is_sqlite:
            _configure_sqlite(self.engine, busy_timeout_s)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        try:
            self._retry(self._init_schema)
        except OperationalError as exc:
            if "locked" in str(exc).lower():  # busy, not unreachable: _retry already waited
                raise
            raise UserError(f"result store '{hide_password(self.url)}': cannot connect ({one_line(exc.orig or exc)}); "
                             "check the host, database and credentials in the URL") from None
        except DatabaseError as exc:  # e.g. a damaged or truncated SQLite file, or another kind of file
            raise UserError(f"result store '{hide_password(self.url)}' cannot be read ({one_line(exc.orig or exc)}); "
                             "it is damaged or not a sliver store: restore it from a copy or pass another --db") from None

    # ---------------------------------------------------------------- plumbing
    def _init_schema(self) -> None:
        """Bring the store's tables to this code's version with the Alembic migrations in ``sliver/migrations``.

        One transaction holds the version check, the migrations and Alembic's
        version stamp, so of several processes opening a new store at once one
        migrates and the others, waiting on the lock, find it done.
        """
        for attempt in range(3):
            try:
                with self.engine.begin() as conn:  # on SQLite: BEGIN IMMEDIATE, the write lock
                    if conn.dialect.name == "postgresql":
                        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
                    version = _stored_version(conn)
                    if version > SCHEMA_VERSION:
                        raise UserError(
                            f"the result store {hide_password(self.url)} has schema version {version}, newer than "
                            f"this sliver understands ({SCHEMA_VERSION}); upgrade sliver or use another --db"
                        )
                    if version < SCHEMA_VERSION or not inspect(conn).has_table("alembic_version"):
                        config = AlembicConfig()
                        config.set_main_option("script_location", "sliver:migrations")
                        config.attributes["connection"] = conn
                        alembic_command.upgrade(config, "head")
                return
            except (IntegrityError, ProgrammingError):
                # a database without a migration lock: another process created the same tables between our
                # check and our write; the next attempt finds them
                if attempt == 2:
                    raise
                time.sleep(0.1)

    def _retry(self, fn: Callable[[], T]) -> T:
        """Run a transaction, retrying briefly when another process holds the SQLite lock."""
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except OperationalError as exc:
                if "locked" not in str(exc).lower() or attempt == self.retries:
                    raise
                # jittered backoff so that competing writers do not collide again in lockstep
                time.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        with self._session() as s:
            return int(s.get(_Meta, "schema_version").value)  # type: ignore[union-attr]

    # ---------------------------------------------------------------- studies
    def get_or_create_study(
        self,
        name: str,
        space: SearchSpace,
        objectives: list[Objective],
        supernet_hash: str,
        fingerprint: str,
        settings: dict | None = None,
    ) -> Study:
        """The study ``name``, created if new; an existing one must match (else ValueError naming what differs)."""
        wanted = {
            "space": space.to_json(),
            "objectives": _dumps([o.to_dict() for o in objectives]),
            "supernet": supernet_hash,
            "fingerprint": fingerprint,
        }

        def txn() -> Study:
            with self._session.begin() as s:
                row = s.scalars(select(_Study).where(_Study.name == name)).first()
                if row is None:
                    row = _Study(
                        name=name,
                        space_json=wanted["space"],
                        objectives_json=wanted["objectives"],
                        supernet_hash=supernet_hash,
                        fingerprint=fingerprint,
                        settings_json=_dumps(settings or {}),
                    )
                    s.add(row)
                    s.flush()
                return _study(row)

        try:
            study = self._retry(txn)
        except IntegrityError:  # another process created it between our read and write
            study = self._retry(txn)
        have = {
            "space": study.space.to_json(),
            "objectives": _dumps([o.to_dict() for o in study.objectives]),
            "supernet": study.supernet_hash,
            "fingerprint": study.fingerprint,
        }
        differ = [k for k in wanted if wanted[k] != have[k]]
        if differ:
            raise UserError(
                f"study '{name}' already exists with a different {' and '.join(differ)}; "
                "choose another study name or the same settings"
            )
        return study

    def get_study(self, name: str) -> Study:
        """The study ``name``, or a ValueError listing the studies the store holds."""
        with self._session() as s:
            row = s.scalars(select(_Study).where(_Study.name == name)).first()
            if row is None:
                names = [n for (n,) in s.execute(select(_Study.name).order_by(_Study.id))]
                raise UserError(f"no study named '{name}' in {hide_password(self.url)}; studies: {names or 'none'}")
            return _study(row)

    def list_studies(self) -> list[Study]:
        """Every study, oldest first."""
        with self._session() as s:
            return [_study(r) for r in s.scalars(select(_Study).order_by(_Study.id))]

    # ---------------------------------------------------------------- measurements
    def get_measurements(self, config_key: str, supernet_hash: str, fingerprint_for: dict[str, str]) -> dict[str, Measurement]:
        """Stored measurements of ``config_key`` for the objectives in ``fingerprint_for`` (each on its fingerprint)."""
        with self._session() as s:
            rows = s.scalars(
                select(_Measurement).where(
                    _Measurement.config_key == config_key,
                    _Measurement.supernet_hash == supernet_hash,
                    _Measurement.objective.in_(list(fingerprint_for)),
                )
            )
            return {r.objective: _measurement(r) for r in rows if r.fingerprint == fingerprint_for[r.objective]}

    def put_measurement(
        self,
        config_key: str,
        config: Config,
        supernet_hash: str,
        fingerprint: str,
        objective: str,
        value: float | None = None,
        status: Status = Status.OK,
        error: str | None = None,
        stats: dict | None = None,
        seconds: float = 0.0,
    ) -> None:
        """Record one measurement; an existing ok one is kept (idempotent), a failed one is replaced."""
        m = Measurement(objective, value, status, error, dict(stats or {}), float(seconds), fingerprint)

        def txn() -> None:
            with self._session.begin() as s:
                _write_measurement(s, config_key, config, supernet_hash, m)

        try:
            self._retry(txn)
        except IntegrityError:  # inserted concurrently by another process: the first one wins
            pass

    def compatible_results(self, supernet_hash: str, fingerprint_for: dict[str, str]) -> list[tuple[Config, dict[str, float]]]:
        """Every config with ok measurements of all objectives in ``fingerprint_for`` (for warm starts)."""
        with self._session() as s:
            rows = s.execute(
                select(_Measurement.config_key, _Measurement.config_json, _Measurement.objective,
                       _Measurement.fingerprint, _Measurement.value)
                .where(
                    _Measurement.supernet_hash == supernet_hash,
                    _Measurement.status == str(Status.OK),
                    _Measurement.objective.in_(list(fingerprint_for)),
                )
                .order_by(_Measurement.id)
            ).all()
        configs: dict[str, Config] = {}
        values: dict[str, dict[str, float]] = {}
        for key, config_json, objective, fp, value in rows:
            if fp != fingerprint_for[objective]:
                continue
            configs.setdefault(key, json.loads(config_json))
            values.setdefault(key, {})[objective] = value  # type: ignore[assignment]  # an ok measurement has a value
        return [(configs[k], v) for k, v in values.items() if len(v) == len(fingerprint_for)]

    def count_measurements(self, status: Status | None = None) -> int:
        """Number of stored measurements (optionally only ``ok`` or ``failed`` ones)."""
        with self._session() as s:
            q = select(func.count()).select_from(_Measurement)
            if status is not None:
                q = q.where(_Measurement.status == str(status))
            count: int = s.scalar(q)  # type: ignore[assignment]  # COUNT(*) is never NULL
            return count

    # ---------------------------------------------------------------- trials
    def add_trial(
        self,
        study_id: int,
        config_key: str,
        config: Config,
        values: dict[str, float],
        errors: dict[str, str],
        cached: bool,
        origin: Origin = Origin.SEARCH,
        batch: int = 0,
        *,
        measurements: Sequence[Measurement] = (),
        supernet_hash: str = "",
    ) -> int:
        """Append a trial to a study and return its ``seq``; a config already in the study returns its seq.

        ``measurements`` (of ``config_key`` on ``supernet_hash``, kept or replaced
        as :meth:`put_measurement` does) are committed in the same transaction
        as the trial: a kill leaves both or neither, never a measurement that no
        study paid for and a rerun would take as a free cache hit.
        """
        if measurements and not supernet_hash:
            raise ValueError("add_trial: measurements need the supernet_hash they were measured on")

        def txn() -> int:
            with self._session.begin() as s:
                for m in measurements:
                    _write_measurement(s, config_key, config, supernet_hash, m)
                # the study row is the trial counter: locking it (FOR UPDATE; on SQLite, BEGIN IMMEDIATE has
                # locked the whole file already) makes one study's writers take turns, each seeing the trials
                # committed before it, so a number is never taken twice and a config never added twice
                study = s.scalars(select(_Study).where(_Study.id == study_id).with_for_update()).one()
                seq = s.scalar(select(_Trial.seq).where(_Trial.study_id == study_id, _Trial.config_key == config_key))
                if seq is not None:
                    return int(seq)
                study.last_seq += 1
                s.add(_Trial(
                    study_id=study_id, seq=study.last_seq, config_key=config_key, config_json=_dumps(config),
                    values_json=_dumps(values), errors_json=_dumps(errors), cached=bool(cached),
                    origin=str(origin), batch=int(batch),
                ))
                return study.last_seq

        try:
            return self._retry(txn)
        except IntegrityError:
            # another process inserted one of the measurements first: run the transaction again, which keeps
            # the stored measurement (first ok one wins) and still adds the trial
            return self._retry(txn)

    def trials(self, study_id: int, after: int = 0) -> list[Trial]:
        """The trials of a study, in ``seq`` order (those numbered above ``after`` only)."""
        with self._session() as s:
            rows = s.scalars(select(_Trial).where(_Trial.study_id == study_id, _Trial.seq > after).order_by(_Trial.seq))
            return [
                Trial(r.seq, r.config_key, json.loads(r.config_json), json.loads(r.values_json),
                      # "" was the default before origins were named; it meant a search's trial
                      json.loads(r.errors_json), r.cached, Origin(r.origin or Origin.SEARCH), r.batch, r.created)
                for r in rows
            ]

    # ---------------------------------------------------------------- tables
    def put_table(self, kind: str, fingerprint: str, name: str, data: dict) -> None:
        """Store the JSON-able ``data`` under ``(kind, fingerprint, name)``, replacing an earlier one."""
        if not isinstance(data, dict):
            raise ValueError(f"table '{kind}/{name}': data must be a dict, got {type(data).__name__}")
        text = _dumps(data)

        def txn() -> None:
            with self._session.begin() as s:
                row = s.scalars(select(_Table).filter_by(kind=kind, fingerprint=fingerprint, name=name)).first()
                if row is None:
                    s.add(_Table(kind=kind, fingerprint=fingerprint, name=name, data_json=text))
                else:
                    row.data_json, row.created = text, _now()

        try:
            self._retry(txn)
        except IntegrityError:  # created concurrently: write over it (the latest table wins)
            self._retry(txn)

    def get_table(self, kind: str, fingerprint: str, name: str) -> dict | None:
        """The table stored under ``(kind, fingerprint, name)``, or None."""
        with self._session() as s:
            row = s.scalars(select(_Table).filter_by(kind=kind, fingerprint=fingerprint, name=name)).first()
            return None if row is None else json.loads(row.data_json)

    def list_tables(self, kind: str | None = None) -> list[tuple[str, str, str]]:
        """``(kind, fingerprint, name)`` of every stored table (of one ``kind``), oldest first."""
        with self._session() as s:
            q = select(_Table.kind, _Table.fingerprint, _Table.name).order_by(_Table.id)
            if kind is not None:
                q = q.where(_Table.kind == kind)
            return [(k, fp, n) for k, fp, n in s.execute(q)]

    # ---------------------------------------------------------------- exports
    def record_export(self, study: Study, label: str, config: Config, rule: str, out: str) -> None:
        """Note that ``config`` of ``study`` was exported by ``rule`` to the folder ``out``, under ``label``.

        A study's exports are one table, ``(EXPORTS, study fingerprint, study
        name)``: ``{label: {"config", "key", "rule", "out", "exported"}}`` (the
        canonical config key, the pick rule, the folder, UTC time); an export
        under a label already there replaces it. ``sliver export`` (label: the
        folder's name) and the demo record theirs; the dashboard and
        ``sliver report`` mark them on the Pareto plots.
        """
        entry = {"config": config, "key": study.space.key(config), "rule": rule, "out": str(out),
                 "exported": _now().isoformat(timespec="seconds")}
        where = dict(kind=EXPORTS, fingerprint=study.fingerprint, name=study.name)

        def txn() -> None:
            with self._session.begin() as s:  # read and write in one transaction: two exports at once both land
                row = s.scalars(select(_Table).filter_by(**where).with_for_update()).first()
                if row is None:
                    s.add(_Table(**where, data_json=_dumps({label: entry})))
                else:
                    row.data_json, row.created = _dumps({**json.loads(row.data_json), label: entry}), _now()

        try:
            self._retry(txn)
        except IntegrityError:  # the first export of this study, made twice at once: add to the other's row
            self._retry(txn)

    def exports(self, study: Study) -> dict[str, dict]:
        """The exports recorded for ``study`` by :meth:`record_export`, by label (empty when none)."""
        return self.get_table(EXPORTS, study.fingerprint, study.name) or {}

    # ---------------------------------------------------------------- claims
    def claim(self, scope: str, config_key: str, owner: str, ttl_s: float = 600.0, *,
              study_id: int | None = None, budget: int | None = None) -> bool:
        """Claim ``config_key`` in ``scope`` for ``owner`` for ``ttl_s`` seconds; False if another owner holds it,
        or if the claim would take study ``study_id`` past ``budget`` real evaluations (see :meth:`spent`).

        Claiming again as the same owner refreshes the claim; an expired claim of
        another owner is taken over. The take-over is a conditional UPDATE, so of
        two processes racing for one expired claim exactly one wins. With a
        budget the study row is locked first, as :meth:`add_trial` locks it, so
        the searches of one study take their last claims in turn and never
        together overshoot it.
        """
        if ttl_s <= 0:
            raise ValueError(f"claim ttl_s must be positive, got {ttl_s}")
        if budget is not None and study_id is None:
            raise ValueError("claim: a budget needs the study_id it is the budget of")

        def txn() -> bool:
            now = time.time()
            with self._session.begin() as s:
                if budget is not None:
                    s.execute(select(_Study.id).where(_Study.id == study_id).with_for_update())
                row = s.scalars(select(_Claim).filter_by(scope=scope, config_key=config_key)).first()
                if row is not None and row.owner != owner and row.expires > now:
                    return False
                refresh = row is not None and row.owner == owner
                if budget is not None and not refresh and _spent(s, study_id, now) >= budget:  # type: ignore[arg-type]
                    return False
                if row is None:
                    s.add(_Claim(scope=scope, config_key=config_key, owner=owner, expires=now + ttl_s, study_id=study_id))
                    return True
                done = s.execute(
                    update(_Claim)
                    .where(_Claim.id == row.id, _Claim.owner == row.owner, _Claim.expires == row.expires)
                    .values(owner=owner, expires=now + ttl_s, study_id=study_id)
                    .execution_options(synchronize_session=False)
                )
                return done.rowcount == 1  # type: ignore[attr-defined]  # an UPDATE returns a CursorResult

        try:
            return self._retry(txn)
        except IntegrityError:  # another process inserted the claim between our read and write
            return False

    def spent(self, study_id: int) -> int:
        """The study's real evaluations: its trials measured for it (by any search) and the configs claimed for
        it whose trial is not written yet (expired claims, of dead searches, do not count)."""
        with self._session() as s:
            return _spent(s, study_id, time.time())

    def release(self, scope: str, config_key: str, owner: str) -> None:
        """Drop ``owner``'s claim on ``config_key`` (a claim held by someone else is left alone)."""

        def txn() -> None:
            with self._session.begin() as s:
                s.execute(delete(_Claim).where(_Claim.scope == scope, _Claim.config_key == config_key, _Claim.owner == owner))

        self._retry(txn)

    def heartbeat(self, owner: str, ttl_s: float) -> "Heartbeat":
        """Start keeping every claim of ``owner`` alive: a thread pushes their expiry ``ttl_s`` ahead every
        ``ttl_s / 3`` seconds until :meth:`Heartbeat.stop` (or the end of a ``with`` block).

        The heartbeat, not the claimant's loop, keeps claims alive, so a short
        ``ttl_s`` is safe however long a measurement or a strategy's ``ask``
        takes, and the claims of a process that dies (its heartbeat with it)
        are taken over ``ttl_s`` later. An in-memory SQLite store, which no
        other process can see and another thread would see as a new empty
        database, needs no heartbeat and gets none.
        """
        if ttl_s <= 0:
            raise ValueError(f"claim ttl_s must be positive, got {ttl_s}")
        in_memory = self.is_sqlite and self.engine.url.database in (None, "", ":memory:")
        return Heartbeat(None if in_memory else lambda: self._retry(lambda: self._refresh(owner, ttl_s)), ttl_s / 3)

    def _refresh(self, owner: str, ttl_s: float) -> None:
        with self._session.begin() as s:
            s.execute(update(_Claim).where(_Claim.owner == owner).values(expires=time.time() + ttl_s)
                      .execution_options(synchronize_session=False))

    def claims(self, scope: str) -> dict[str, str]:
        """Owner of every unexpired claim in ``scope``, by config key."""
        with self._session() as s:
            rows = s.execute(select(_Claim.config_key, _Claim.owner).where(_Claim.scope == scope, _Claim.expires > time.time()))
            return {k: o for k, o in rows}

    def claim_owner(self, scope: str, config_key: str) -> str | None:
        """Who holds an unexpired claim on ``config_key`` in ``scope`` (None if nobody)."""
        with self._session() as s:
            row = s.scalars(select(_Claim).filter_by(scope=scope, config_key=config_key)).first()
            return row.owner if row is not None and row.expires > time.time() else None


class Heartbeat:
    """A daemon thread calling ``beat`` every ``period_s`` seconds until :meth:`stop` (nothing if ``beat`` is None)."""

    def __init__(self, beat: Callable[[], object] | None, period_s: float) -> None:
        self._stop = threading.Event()
        self._thread = None
        if beat is not None:
            def run() -> None:
                while not self._stop.wait(period_s):
                    try:
                        beat()
                    except Exception:  # noqa: BLE001 - the next beat tries again; until then the claims may lapse
                        pass

            self._thread = threading.Thread(target=run, name="sliver-claims-heartbeat", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop beating (the claims then lapse after their time-to-live unless released)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> "Heartbeat":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- helpers
def _configure_sqlite(engine, busy_timeout_s: float) -> None:
    """WAL (readers never block the writer), a busy timeout, and BEGIN IMMEDIATE.

    pysqlite starts transactions lazily and upgrades a read lock to a write lock
    on the first write, which fails at once with "database is locked" when two
    processes do it together; taking the write lock at BEGIN makes the second
    writer wait for the busy timeout instead.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # let SQLAlchemy's BEGIN below control transactions
        cur = dbapi_connection.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        if engine.url.database not in (None, "", ":memory:"):
            cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _write_measurement(s: Session, config_key: str, config: Config, supernet_hash: str, m: Measurement) -> None:
    """Add ``m`` to session ``s``: an existing ok measurement is kept for good, a failed one is replaced."""
    if m.status not in tuple(Status):
        raise ValueError(f"measurement status must be 'ok' or 'failed', got {m.status!r}")
    if m.status == Status.OK and (m.value is None or not math.isfinite(float(m.value))):
        raise ValueError(f"measurement of '{m.objective}' has status ok but value {m.value!r}; record it as failed")
    fields = dict(
        config_json=_dumps(config),
        value=None if m.value is None else float(m.value),
        status=str(m.status),
        error=m.error,
        stats_json=_dumps(m.stats),
        seconds=float(m.seconds),
    )
    key = dict(config_key=config_key, supernet_hash=supernet_hash, objective=m.objective, fingerprint=m.fingerprint)
    row = s.scalars(select(_Measurement).filter_by(**key)).first()
    if row is None:
        s.add(_Measurement(**key, **fields))
    elif row.status != Status.OK:
        # a failure (e.g. a timeout) may succeed on retry; the first success is kept for good
        for k, v in fields.items():
            setattr(row, k, v)
        row.created = _now()


def _spent(s: Session, study_id: int, now: float) -> int:
    """Real evaluations of a study in session ``s``: measured trials plus live claims without a trial yet."""
    # "" was a search's origin before origins were named (see ``ResultStore.trials``)
    measured = select(func.count()).select_from(_Trial).where(
        _Trial.study_id == study_id, _Trial.cached.is_(False), _Trial.origin.in_([str(Origin.SEARCH), ""]))
    written = select(_Trial.id).where(_Trial.study_id == study_id, _Trial.config_key == _Claim.config_key)
    in_flight = select(func.count()).select_from(_Claim).where(
        _Claim.study_id == study_id, _Claim.expires > now, ~written.exists())
    return int(s.scalar(measured) or 0) + int(s.scalar(in_flight) or 0)


def _stored_version(conn: Connection) -> int:
    """The schema version a store's ``meta`` row records (0 for a new, empty database)."""
    if not inspect(conn).has_table("meta"):
        return 0
    value = conn.execute(select(_Meta.value).where(_Meta.key == "schema_version")).scalar()
    return 0 if value is None else int(value)


def _dumps(obj: Any) -> str:
    return json.dumps(jsonable(obj), sort_keys=True)


def _study(row: _Study) -> Study:
    return Study(
        id=row.id,
        name=row.name,
        space=SearchSpace.from_json(row.space_json),
        objectives=[Objective.from_dict(o) for o in json.loads(row.objectives_json)],
        supernet_hash=row.supernet_hash,
        fingerprint=row.fingerprint,
        settings=json.loads(row.settings_json or "{}"),
        created=row.created,
    )


def _measurement(row: _Measurement) -> Measurement:
    return Measurement(
        objective=row.objective,
        value=row.value,
        status=Status(row.status),
        error=row.error,
        stats=json.loads(row.stats_json or "{}"),
        seconds=row.seconds,
        fingerprint=row.fingerprint,
    )
