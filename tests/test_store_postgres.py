"""The result store shared through a database: claims, and two search processes on one study.

The claim tests run on SQLite always and on PostgreSQL when
``SLIVER_TEST_POSTGRES_URL`` names a server (``.ci/postgres start`` prints one);
without it the PostgreSQL cases skip.
"""

import json
import os
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sliver.core import BUILTIN
from sliver.space import Dimension, SearchSpace
from sliver.store import ResultStore

PG_URL = os.environ.get("SLIVER_TEST_POSTGRES_URL")
TESTS = Path(__file__).resolve().parent


def test_postgres_store_round_trip():
    if not PG_URL:
        pytest.skip("no PostgreSQL server: set SLIVER_TEST_POSTGRES_URL (bash .ci/postgres start prints one)")
    space = SearchSpace([Dimension("w", (1, 2, 3))])
    name, net = f"study-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:16]
    with ResultStore(PG_URL) as store:
        study = store.get_or_create_study(name, space, [BUILTIN["accuracy"]], net, "fp", {"budget": 3})
        key = space.key({"w": 2})
        store.put_measurement(key, {"w": 2}, net, "any", "accuracy", value=91.5, stats={"samples": 10})
        store.put_measurement(key, {"w": 2}, net, "any", "accuracy", value=10.0)  # the first ok value is kept
        assert store.add_trial(study.id, key, {"w": 2}, {"accuracy": 91.5}, {}, cached=False, origin="search") == 1
        assert store.add_trial(study.id, key, {"w": 2}, {"accuracy": 91.5}, {}, cached=False) == 1
    with ResultStore(PG_URL) as again:  # a second connection (another process would do the same) sees it all
        m = again.get_measurements(key, net, {"accuracy": "any"})["accuracy"]
        assert (m.value, m.stats) == (91.5, {"samples": 10})
        assert [t.config for t in again.trials(again.get_study(name).id)] == [{"w": 2}]
        with pytest.raises(ValueError, match="already exists with a different space"):
            again.get_or_create_study(name, SearchSpace([Dimension("w", (1, 2))]), [BUILTIN["accuracy"]], net, "fp")


def test_postgres_migrations_build_exactly_the_tables_the_code_uses():
    if not PG_URL:
        pytest.skip("no PostgreSQL server: set SLIVER_TEST_POSTGRES_URL (bash .ci/postgres start prints one)")
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from sliver.store import _Base

    with ResultStore(PG_URL) as store, store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), _Base.metadata) == []


def test_a_claim_is_exclusive_refreshable_and_expires(store_url):
    store = ResultStore(store_url)
    scope = uuid.uuid4().hex
    assert store.claim(scope, "k", "a", ttl_s=0.5)
    assert not store.claim(scope, "k", "b", ttl_s=0.5)
    assert store.claim(scope, "k", "a", ttl_s=0.5)  # the owner refreshes it
    assert store.claim(scope, "other", "b")  # other configs are free
    assert store.claim_owner(scope, "k") == "a"
    time.sleep(0.6)
    assert store.claim_owner(scope, "k") is None
    assert store.claim(scope, "k", "b", ttl_s=5)  # a stale claim is taken over
    store.release(scope, "k", "a")  # not a's any more: left alone
    assert store.claim_owner(scope, "k") == "b"
    store.release(scope, "k", "b")
    assert store.claim(scope, "k", "c")


def test_a_heartbeat_keeps_claims_alive_past_their_ttl_and_they_lapse_when_it_stops(store_url):
    store = ResultStore(store_url)
    scope = uuid.uuid4().hex
    assert store.claim(scope, "k", "a", ttl_s=1.2)
    with store.heartbeat("a", ttl_s=1.2):
        time.sleep(2.5)  # twice the ttl: only the beats (every 0.4 s) keep the claim
        assert store.claim_owner(scope, "k") == "a" and not store.claim(scope, "k", "b", ttl_s=1.2)
    t0 = time.monotonic()  # the owner "dies": no more beats
    while not store.claim(scope, "k", "b", ttl_s=5):
        time.sleep(0.05)
    assert time.monotonic() - t0 < 1.5
    with pytest.raises(ValueError, match="ttl_s must be positive"):
        store.heartbeat("a", 0)


def test_of_many_racing_claimants_exactly_one_wins(store_url):
    scope = uuid.uuid4().hex
    stores = [ResultStore(store_url) for _ in range(6)]
    with ThreadPoolExecutor(6) as pool:
        wins = list(pool.map(lambda i: stores[i].claim(scope, "k", f"owner{i}"), range(6)))
    assert sum(wins) == 1


SEARCH_PROCESS = r"""
import sys
from sliver.search import Search
from sliver.store import ResultStore
from test_parallel import SlowToy

url, log, study = sys.argv[1:4]
ev = SlowToy(log, delay=0.15)
ev.supernet_hash = study  # a database kept between runs must not serve this run's configs from an older one
result = Search(ev.space, ev, ["accuracy", "latency_ms"], "random", budget=8, seed=7, store=ResultStore(url),
                study_name=study, executor="local").run()
print(result.n_evaluations, result.n_cache_hits, result.stopped)
"""


@pytest.mark.slow
def test_two_processes_on_one_study_never_measure_a_config_twice(store_url, tmp_path):
    log = tmp_path / "measured.jsonl"
    study = f"shared-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    # the same seed: both processes propose the same configs in the same order, the worst case for duplicates
    procs = [subprocess.Popen([sys.executable, "-c", SEARCH_PROCESS, store_url, str(log), study], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
        assert out.split()[2:] == ["budget", "spent"], (out, err[-2000:])
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    keys = [r["key"] for r in rows]
    assert len(keys) == len(set(keys)), "a config was measured twice"
    assert len(keys) >= 8, outs
    store = ResultStore(store_url)
    trials = store.trials(store.get_study(study).id)
    assert {t.config_key for t in trials} == set(keys)
    # the budget is the study's: each process counts every unique evaluation of the study, whoever paid for it
    # (both may start their last one at once, so the study can end one evaluation over per extra process)
    assert len(trials) <= 8 + 1
    for out, _ in outs:
        assert int(out.split()[0]) == len(trials), outs
