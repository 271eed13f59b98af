"""Exactly once under faults and concurrent writers (issue #22).

A fault injected at a trial write stands in for a kill between writes; threads
with one store each stand in for concurrent search processes. The PostgreSQL
cases run when ``SLIVER_TEST_POSTGRES_URL`` names a server (``.ci/postgres
start`` prints one) and skip without it.
"""

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import event, text
from test_search import ToyEvaluator

from sliver.core import BUILTIN
from sliver.search import Search
from sliver.space import Dimension, SearchSpace
from sliver.store import ResultStore

PG_URL = os.environ.get("SLIVER_TEST_POSTGRES_URL")
TESTS = Path(__file__).resolve().parent


class Fault(BaseException):
    """Stands in for a kill: nothing in sliver catches it."""


def fail_at_trial_write(store: ResultStore, n: int) -> None:
    """Make the ``n``-th INSERT into the trials table raise :class:`Fault` (the writes before it succeed)."""
    seen = 0

    @event.listens_for(store.engine, "before_cursor_execute")
    def _hook(conn, cursor, statement, params, context, executemany):
        nonlocal seen
        if statement.lstrip().upper().startswith("INSERT INTO TRIALS"):
            seen += 1
            if seen == n:
                raise Fault(f"killed at trial write {n}")


def measured_configs(store: ResultStore) -> int:
    with store.engine.connect() as c:
        return c.execute(text("SELECT COUNT(DISTINCT config_key) FROM measurements")).scalar_one()


@pytest.mark.parametrize("executor", [None, "local"], ids=["serial", "streaming"])
def test_a_kill_at_a_trial_write_pays_for_nothing_twice(tmp_path, executor):
    url = f"sqlite:///{tmp_path / 's.db'}"

    def search(ev, store):
        return Search(ev.space, ev, ["accuracy", "latency_ms"], "random", budget=6, seed=0, store=store,
                      study_name="s", executor=executor)

    store = ResultStore(url)
    fail_at_trial_write(store, 3)
    with pytest.raises(Fault):
        search(ToyEvaluator(), store).run()
    store.close()

    store = ResultStore(url)
    result = search(ToyEvaluator(), store).run()
    trials = store.trials(store.get_study("s").id)
    # the killed config's measurement went with its trial: nothing orphaned is served as a free cache hit
    assert result.n_evaluations == 6 and result.n_cache_hits == 0
    assert len(trials) == 6 and all(t.origin == "search" and not t.cached for t in trials)
    assert measured_configs(store) == 6


def test_concurrent_writers_number_trials_without_conflicts_or_losses(store_url):
    space = SearchSpace([Dimension("w", tuple(range(1000)))])
    name, writers, each = f"race-{uuid.uuid4().hex[:8]}", 8, 12
    stores = [ResultStore(store_url) for _ in range(writers)]
    study = stores[0].get_or_create_study(name, space, [BUILTIN["accuracy"]], "net", "fp")
    start, errors, seqs = threading.Barrier(writers), [], []
    for s in stores:
        # widen the window between choosing a trial number and inserting it, so a race shows every time
        event.listen(s.engine, "before_cursor_execute",
                     lambda *a: time.sleep(0.005) if a[2].lstrip().upper().startswith("INSERT INTO TRIALS") else None)

    def write(i: int) -> None:
        start.wait()
        for j in range(each):
            # writers 0 and 1 add the same configs too: a config is one trial, whoever adds it first
            w = j if i < 2 else i * each + j
            try:
                seqs.append(stores[i].add_trial(study.id, space.key({"w": w}), {"w": w}, {"accuracy": 1.0}, {}, cached=False))
            except Exception as exc:  # noqa: BLE001 - any escape is the failure this test looks for
                errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    trials = stores[0].trials(study.id)
    for s in stores:
        s.close()
    assert errors == []
    n = (writers - 1) * each
    assert [t.seq for t in trials] == list(range(1, n + 1))
    assert len({t.config_key for t in trials}) == n and len(seqs) == writers * each


SLOW_SEARCH = r"""
import sys
from sliver.search import Search
from sliver.store import ResultStore
from test_parallel import SlowToy

ev = SlowToy(delay=60)  # one measurement outlasts the claim's ttl many times over
Search(ev.space, ev, ["accuracy", "latency_ms"], "random", budget=2, store=ResultStore(sys.argv[1]), study_name="s",
       executor="local", claim_ttl_s=1.5).run()
"""


def claims(store: ResultStore) -> list[tuple[str, float]]:
    with store.engine.connect() as c:
        return [tuple(r) for r in c.execute(text("SELECT owner, expires FROM claims"))]


@pytest.mark.slow
def test_a_dead_search_process_loses_its_claims_within_seconds(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    err = tmp_path / "stderr.txt"
    with open(err, "w") as f:
        proc = subprocess.Popen([sys.executable, "-c", SLOW_SEARCH, url], env=env, stderr=f)
    try:
        store, deadline = ResultStore(url), time.monotonic() + 60
        while not claims(store):
            assert proc.poll() is None and time.monotonic() < deadline, err.read_text()[-2000:]
            time.sleep(0.1)
        (owner, _), = claims(store)
        assert owner.split(":")[1] == str(proc.pid)
        time.sleep(4.0)  # measuring for longer than the ttl: its heartbeat keeps the claim
        assert [o for o, expires in claims(store) if expires > time.time()] == [owner]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed = time.monotonic()
    while [o for o, expires in claims(store) if expires > time.time()]:
        time.sleep(0.1)
    assert time.monotonic() - killed < 1.5 + 1.0  # the ttl (and a beat's lag), not the 600 s of old


def store_front(store: ResultStore, study: str) -> set[str]:
    """Keys of the non-dominated trials of ``study`` (accuracy up, latency down), read from the store."""
    from sliver.search.hv import nondominated

    trials = [t for t in store.trials(store.get_study(study).id) if not t.errors and t.origin != "filtered"]
    F = np.array([[-t.values["accuracy"], t.values["latency_ms"]] for t in trials])
    return {t.config_key for t, keep in zip(trials, nondominated(F)) if keep}


def run_concurrently(n: int, url: str, make_search) -> tuple[dict, list[str]]:
    """Run ``make_search(i, store)`` for i < n in threads started together, each on its own store of ``url``.

    Returns the results by i and the repr of anything a run raised.
    """
    start, results, errors = threading.Barrier(n), {}, []

    def run(i: int) -> None:
        store = ResultStore(url)
        search = make_search(i, store)
        start.wait()
        try:
            results[i] = search.run()
        except Exception as exc:  # noqa: BLE001 - any escape is a failure the caller reports
            errors.append(repr(exc))
        store.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results, errors


@pytest.mark.parametrize("executor", [None, "local"], ids=["default", "local"])
@pytest.mark.parametrize("shared_study", [True, False], ids=["same-study", "two-studies"])
def test_concurrent_searches_on_one_store_measure_each_config_once(tmp_path, executor, shared_study):
    from test_parallel import SlowToy, measured_keys

    url, log, budget = f"sqlite:///{tmp_path / 's.db'}", tmp_path / "measured.jsonl", 10
    names = ["s", "s"] if shared_study else ["a", "b"]

    def search(i: int, store: ResultStore) -> Search:
        ev = SlowToy(log=log, delay=0.02)
        # one seed for both: they propose the same configs in the same order, the worst case for duplicates
        return Search(ev.space, ev, ["accuracy", "latency_ms"], "random", budget=budget, seed=0, store=store,
                      study_name=names[i], executor=executor)

    results, errors = run_concurrently(2, url, search)
    assert errors == []
    keys = measured_keys(log)
    assert len(keys) == len(set(keys)), "a config was measured twice"
    store = ResultStore(url)
    paid = [t.config_key for n in set(names) for t in store.trials(store.get_study(n).id) if t.origin == "search" and not t.cached]
    # every measurement has the trial that paid for it, and none was paid twice
    assert sorted(paid) == sorted(keys) and measured_configs(store) == len(keys)
    for i, n in enumerate(names):
        assert {p.key for p in results[i].front} == store_front(store, n)
    if shared_study:  # one budget for the study, whichever search spent it
        assert len(keys) == budget
        assert sum(r.n_cache_hits for r in results.values()) == 0
    else:  # what the other search measured first is a cache hit, not a second payment: each study still gets
        # its budget of real evaluations (the same seed proposes the same configs, so the hits are many)
        hits = [t for n in names for t in store.trials(store.get_study(n).id) if t.cached]
        assert len(keys) == 2 * budget and all(r.n_evaluations == budget for r in results.values())
        assert sum(r.n_cache_hits for r in results.values()) == len(hits) >= budget // 2
    store.close()


@pytest.mark.parametrize("searches", [2, 3, 4])
def test_concurrent_searches_of_one_study_end_with_exactly_its_budget(tmp_path, searches):
    from test_parallel import SlowToy, measured_keys

    url, log, budget = f"sqlite:///{tmp_path / 's.db'}", tmp_path / "measured.jsonl", 10

    def search(i: int, store: ResultStore) -> Search:
        ev = SlowToy(log=log, delay=0.05)
        # different seeds: every search has a config of its own to measure when the budget runs out
        return Search(ev.space, ev, ["accuracy", "latency_ms"], "random", budget=budget, seed=i, store=store,
                      study_name="s", batch_size=3)

    results, errors = run_concurrently(searches, url, search)
    assert errors == []
    keys = measured_keys(log)
    store = ResultStore(url)
    trials = store.trials(store.get_study("s").id)
    # the budget counts the study's real evaluations, measured or in flight, whichever search pays for them
    assert len(keys) == len(set(keys)) == len(trials) == budget
    assert all(r.n_evaluations == budget and r.stopped == "budget spent" for r in results.values())
    store.close()
