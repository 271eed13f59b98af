"""ResultStore: studies, measurements keyed by (config, supernet, objective, fingerprint), trials, concurrency."""

import importlib.util
import multiprocessing as mp
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from sliver.core import BUILTIN
from sliver.space import DepthGate, Dimension, SearchSpace
from sliver.store import SCHEMA_VERSION, Origin, ResultStore, Status

SPACE = SearchSpace(
    [Dimension("d", (1, 2)), Dimension("k", (3, 5), length=2)],
    [DepthGate("d", (2,), ("k",))],
)
OBJS = [BUILTIN["accuracy"], BUILTIN["latency_ms"]]


@pytest.fixture
def store(tmp_path):
    with ResultStore(f"sqlite:///{tmp_path / 's.db'}") as s:
        yield s


def test_study_round_trip_and_mismatch(store):
    st = store.get_or_create_study("s1", SPACE, OBJS, "net", "fp", settings={"seed": 1})
    again = store.get_or_create_study("s1", SPACE, OBJS, "net", "fp")
    assert again.id == st.id and again.space == SPACE and [o.name for o in again.objectives] == ["accuracy", "latency_ms"]
    assert again.settings == {"seed": 1} and again.supernet_hash == "net" and again.fingerprint == "fp"
    with pytest.raises(ValueError, match="different fingerprint"):
        store.get_or_create_study("s1", SPACE, OBJS, "net", "other")
    with pytest.raises(ValueError, match="different objectives"):
        store.get_or_create_study("s1", SPACE, OBJS[:1], "net", "fp")
    with pytest.raises(ValueError, match="studies: \\['s1'\\]"):
        store.get_study("nope")
    assert [s.name for s in store.list_studies()] == ["s1"]
    assert store.get_study("s1").id == st.id


def test_exports_are_recorded_per_study_and_a_label_is_replaced(store):
    a = store.get_or_create_study("a", SPACE, OBJS, "net", "fp")
    b = store.get_or_create_study("b", SPACE, OBJS, "net", "fp")
    assert store.exports(a) == {}
    small, large = {"d": 1, "k": [3, 3]}, {"d": 2, "k": [5, 5]}
    store.record_export(a, "fast", small, "accuracy>=90 min latency_ms", "/runs/x/exports/fast")
    store.record_export(a, "accurate", large, "latency_ms<=2 max accuracy", "/runs/x/exports/accurate")
    store.record_export(a, "fast", large, "knee", "/runs/x/exports/fast")  # exported again to the same folder
    got = store.exports(a)
    assert sorted(got) == ["accurate", "fast"] and store.exports(b) == {}
    assert got["fast"]["config"] == large and got["fast"]["rule"] == "knee" and got["fast"]["key"] == SPACE.key(large)
    assert got["accurate"]["out"] == "/runs/x/exports/accurate" and got["accurate"]["exported"]


def test_measurements_keyed_by_fingerprint_and_first_ok_kept(store):
    cfg = {"d": 2, "k": [3, 5]}
    key = SPACE.key(cfg)
    store.put_measurement(key, cfg, "net", "any", "accuracy", 91.5, stats={"n": 10}, seconds=1.5)
    store.put_measurement(key, cfg, "net", "fpA", "latency_ms", 2.0)
    store.put_measurement(key, cfg, "net", "any", "accuracy", 50.0)  # repeat: first ok kept, no error
    got = store.get_measurements(key, "net", {"accuracy": "any", "latency_ms": "fpA"})
    assert got["accuracy"].value == 91.5 and got["accuracy"].stats == {"n": 10} and got["accuracy"].seconds == 1.5
    assert got["latency_ms"].value == 2.0
    # another hardware fingerprint or another supernet sees nothing of the latency
    assert set(store.get_measurements(key, "net", {"accuracy": "any", "latency_ms": "fpB"})) == {"accuracy"}
    assert store.get_measurements(key, "other", {"accuracy": "any"}) == {}
    assert store.count_measurements() == 2


def test_failed_measurement_recorded_then_replaced_by_success(store):
    cfg = {"d": 1, "k": [5, 3]}
    key = SPACE.key(cfg)
    store.put_measurement(key, cfg, "net", "fp", "latency_ms", status="failed", error="TimeoutError: too slow")
    m = store.get_measurements(key, "net", {"latency_ms": "fp"})["latency_ms"]
    assert m.status == "failed" and m.value is None and "too slow" in m.error
    store.put_measurement(key, cfg, "net", "fp", "latency_ms", 3.0)
    assert store.get_measurements(key, "net", {"latency_ms": "fp"})["latency_ms"].value == 3.0
    with pytest.raises(ValueError, match="record it as failed"):
        store.put_measurement(key, cfg, "net", "fp", "accuracy", float("nan"))


def test_trials_ordered_and_deduplicated(store):
    st = store.get_or_create_study("s", SPACE, OBJS, "net", "fp")
    cfgs = SPACE.enumerate()
    seqs = [store.add_trial(st.id, SPACE.key(c), c, {"accuracy": i}, {}, cached=False, origin="warm", batch=i)
            for i, c in enumerate(cfgs)]
    assert seqs == list(range(1, len(cfgs) + 1))
    assert store.add_trial(st.id, SPACE.key(cfgs[1]), cfgs[1], {}, {}, cached=True) == 2
    trials = store.trials(st.id)
    assert [t.seq for t in trials] == seqs and trials[1].config == cfgs[1] and trials[1].values == {"accuracy": 1}
    assert trials[0].origin is Origin.WARM and trials[2].batch == 2 and trials[0].cached is False


def test_origin_and_status_are_enums_stored_as_their_strings(store):
    st = store.get_or_create_study("s", SPACE, OBJS, "net", "fp")
    cfg = {"d": 2, "k": [3, 5]}
    key = SPACE.key(cfg)
    store.put_measurement(key, cfg, "net", "any", "accuracy", status=Status.FAILED, error="boom")
    store.add_trial(st.id, key, cfg, {}, {"accuracy": "boom"}, cached=False, origin=Origin.FILTERED)
    with store.engine.connect() as conn:  # the columns hold the plain strings older sliver wrote and reads
        assert conn.exec_driver_sql("SELECT origin FROM trials").scalar() == "filtered"
        assert conn.exec_driver_sql("SELECT status FROM measurements").scalar() == "failed"
    assert store.trials(st.id)[0].origin is Origin.FILTERED
    assert store.get_measurements(key, "net", {"accuracy": "any"})["accuracy"].status is Status.FAILED


def test_compatible_results_need_all_objectives_on_their_fingerprints(store):
    a, b = {"d": 1, "k": [3, 3]}, {"d": 2, "k": [5, 5]}
    for cfg, acc, lat_fp in [(a, 90.0, "fp"), (b, 80.0, "other")]:
        store.put_measurement(SPACE.key(cfg), cfg, "net", "any", "accuracy", acc)
        store.put_measurement(SPACE.key(cfg), cfg, "net", lat_fp, "latency_ms", 1.0)
    got = store.compatible_results("net", {"accuracy": "any", "latency_ms": "fp"})
    assert got == [(a, {"accuracy": 90.0, "latency_ms": 1.0})]
    assert len(store.compatible_results("net", {"accuracy": "any"})) == 2


def test_newer_schema_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'new.db'}"
    ResultStore(url).close()
    eng = create_engine(url)
    with eng.begin() as c:
        c.execute(text("UPDATE meta SET value = :v WHERE key = 'schema_version'"), {"v": str(SCHEMA_VERSION + 1)})
    eng.dispose()
    with pytest.raises(ValueError, match=f"schema version {SCHEMA_VERSION + 1}, newer than"):
        ResultStore(url)


V1_SQL = Path(__file__).resolve().parent / "data" / "store_v1.sql"


def v1_store(path: Path, drop: tuple[str, ...] = ()) -> str:
    """A SQLite file holding the version-1 store that sliver made before it used Alembic (less ``drop``)."""
    con = sqlite3.connect(path)
    con.executescript(V1_SQL.read_text())
    for table in drop:
        con.execute(f"DROP TABLE {table}")
    con.commit()
    con.close()
    return f"sqlite:///{path}"


@pytest.mark.parametrize("drop", [(), ("claims", "tables")], ids=["v1", "early-v1"])
def test_a_version_1_store_from_before_alembic_opens_and_upgrades(tmp_path, drop):
    # early version-1 stores lack the tables that came later without a version bump
    with ResultStore(v1_store(tmp_path / "v1.db", drop)) as store:
        assert store.schema_version == SCHEMA_VERSION
        study = store.get_study("v1")
        assert study.settings == {"budget": 3} and study.space == SearchSpace([Dimension("w", (1, 2, 3))])
        trials = store.trials(study.id)
        assert [(t.seq, t.config, t.values, t.origin) for t in trials] == [
            (1, {"w": 1}, {"accuracy": 80.0}, "search"), (2, {"w": 3}, {"accuracy": 90.0}, "search")]
        m = store.get_measurements(trials[1].config_key, "net", {"accuracy": "any"})["accuracy"]
        assert (m.value, m.stats, m.seconds) == (90.0, {"n": 5}, 0.5)
        # the study goes on where it stopped, and every table works
        key = study.space.key({"w": 2})
        assert store.add_trial(study.id, key, {"w": 2}, {"accuracy": 85.0}, {}, cached=False) == 3
        assert store.get_table("lut", "fp", "ops") == (None if drop else {"conv": 1.5})
        assert store.claim("net:fp", key, "me")  # the dead owner's claim (if any) expired long ago
    with ResultStore(f"sqlite:///{tmp_path / 'v1.db'}") as again:  # opening an upgraded store changes nothing
        assert again.schema_version == SCHEMA_VERSION and len(again.trials(study.id)) == 3


V2_SQL = Path(__file__).resolve().parent / "data" / "store_v2.sql"


def v2_store(path: Path) -> str:
    """A SQLite file holding a version-2 store (Alembic revision 0002), as sliver made it before claims named a study."""
    con = sqlite3.connect(path)
    con.executescript(V2_SQL.read_text())
    con.commit()
    con.close()
    return f"sqlite:///{path}"


def test_a_version_2_store_opens_and_upgrades(tmp_path):
    with ResultStore(v2_store(tmp_path / "v2.db")) as store:
        assert store.schema_version == SCHEMA_VERSION
        study = store.get_study("v2")
        trials = store.trials(study.id)
        assert [(t.seq, t.config, t.values, t.cached) for t in trials] == [
            (1, {"w": 1}, {"accuracy": 80.0}, False), (2, {"w": 3}, {"accuracy": 90.0}, False)]
        # the dead owner's claim (taken before claims named a study) expired long ago and counts for nothing
        assert store.spent(study.id) == 2
        key = study.space.key({"w": 2})
        assert store.claim("net:fp", key, "me", study_id=study.id, budget=3) and store.spent(study.id) == 3
        assert store.add_trial(study.id, key, {"w": 2}, {"accuracy": 85.0}, {}, cached=False) == 3
        assert store.spent(study.id) == 3 and store.get_table("lut", "fp", "ops") == {"conv": 1.5}
    with ResultStore(f"sqlite:///{tmp_path / 'v2.db'}") as again:  # opening an upgraded store changes nothing
        assert again.schema_version == SCHEMA_VERSION and len(again.trials(study.id)) == 3


def test_a_claim_counts_against_its_study_budget_until_its_trial_is_written(store):
    study = store.get_or_create_study("b", SPACE, OBJS, "net", "fp")
    other = store.get_or_create_study("other", SPACE, OBJS, "net", "fp")
    store.add_trial(study.id, "done", {"i": 0}, {"accuracy": 1.0}, {}, cached=False)
    store.add_trial(study.id, "free", {"i": 1}, {"accuracy": 1.0}, {}, cached=True)  # a cache hit costs nothing
    assert store.claim("net:fp", "a", "one", study_id=study.id, budget=3)
    assert store.claim("net:fp", "x", "one", study_id=other.id, budget=3)  # another study's budget
    assert store.spent(study.id) == 2
    assert store.claim("net:fp", "b", "two", study_id=study.id, budget=3)
    assert not store.claim("net:fp", "c", "two", study_id=study.id, budget=3)  # 1 measured + 2 in flight
    assert store.claim("net:fp", "a", "one", study_id=study.id, budget=3)  # its owner refreshes a claim
    store.add_trial(study.id, "a", {"i": 2}, {"accuracy": 1.0}, {}, cached=False)
    assert store.spent(study.id) == 3  # the trial counts, the claim no longer does
    store.release("net:fp", "a", "one")
    store.release("net:fp", "b", "two")  # a search that measured nothing gives its budget back
    assert store.spent(study.id) == 2 and store.claim("net:fp", "c", "two", study_id=study.id, budget=3)
    assert not store.claim("net:fp", "d", "three", study_id=other.id, budget=1)  # its one evaluation is "x", in flight
    with pytest.raises(ValueError, match="a budget needs the study_id"):
        store.claim("net:fp", "e", "one", budget=3)


def test_the_migrations_build_exactly_the_tables_the_code_uses(tmp_path):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from sliver.store import _Base

    for url in (f"sqlite:///{tmp_path / 'new.db'}", v1_store(tmp_path / "v1.db"), v2_store(tmp_path / "v2.db")):
        with ResultStore(url) as store, store.engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), _Base.metadata) == []


def _writer(url: str, worker: int, n: int) -> None:
    store = ResultStore(url)
    study = store.get_or_create_study("shared", SPACE, OBJS, "net", "fp")
    for i in range(n):
        key = f"w{worker}-{i}"
        store.put_measurement(key, {"i": i}, "net", "any", "accuracy", float(i))
        store.add_trial(study.id, key, {"i": i}, {"accuracy": float(i)}, {}, cached=False)
    store.close()


@pytest.mark.slow
def test_two_processes_writing_one_sqlite_file_lose_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    n = 40
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(url, w, n)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    store = ResultStore(url)
    assert store.count_measurements() == 2 * n
    trials = store.trials(store.get_study("shared").id)
    assert sorted(t.seq for t in trials) == list(range(1, 2 * n + 1))
    assert len({t.config_key for t in trials}) == 2 * n


@pytest.mark.parametrize("url, says", [
    ("foo://bar", "Can't load plugin"),               # unknown database kind
    ("notaurl", "Could not parse"),                   # not a URL at all
    ("mysql://u@h/x", "No module named"),             # driver not installed
])
def test_bad_store_url_is_one_line_value_error(url, says):
    if url.startswith("mysql") and importlib.util.find_spec("MySQLdb"):
        pytest.skip("a MySQL driver is installed here")
    with pytest.raises(ValueError, match=f"result store URL '{url}' cannot be opened \\({says}.*use a SQLAlchemy URL") as err:
        ResultStore(url)
    assert "\n" not in str(err.value)


def test_unreachable_store_is_one_line_value_error(tmp_path):
    url = f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 's.db'}"  # SQLite cannot create the folders
    with pytest.raises(ValueError, match="cannot connect \\(.*unable to open database file.*check the host") as err:
        ResultStore(url)
    assert "\n" not in str(err.value)


def test_cli_bad_store_url_is_one_line_error_not_traceback():
    from typer.testing import CliRunner

    from sliver.cli import app

    res = CliRunner().invoke(app, ["results", "show", "x", "--db", "foo://bar"])
    assert res.exit_code == 2
    assert "cannot be opened" in res.output and "Traceback" not in res.output


def test_hide_password_masks_every_form_a_store_url_takes():
    from sliver.store import hide_password

    url = "postgresql+psycopg2://alice:S3cr3tPW@127.0.0.1:5433/sliver"
    assert "S3cr3tPW" not in hide_password(url) and "alice" in hide_password(url)
    assert hide_password("sqlite:///runs/sliver.db") == "sqlite:///runs/sliver.db"
    assert hide_password("not a url") == "not a url"
