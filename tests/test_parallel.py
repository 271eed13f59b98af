"""Executors: local and Dask give the same seeded search; lost workers are retried; timeouts; hardware tags.

The toy evaluator here is imported by worker processes too (spawned children
get this test folder on their path), so it stays light: no torch.
"""

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from test_search import ToyEvaluator

from sliver.measure.base import Measured
from sliver.parallel import DaskExecutor, ProcessExecutor, hardware_resource, make_executor, measure_on, needs_hardware
from sliver.search import Search
from sliver.store import ResultStore

OBJECTIVES = ["accuracy", "latency_ms"]


class SlowToy(ToyEvaluator):
    """The toy evaluator, ``delay`` seconds per measurement, logging each measured key to ``log`` (any process).

    ``crash``: ``"once"`` kills the worker process in the first measurement
    (exactly once across processes, through an exclusive marker file),
    ``"w3"`` kills it on every config with ``w == 3``; ``hang_w``: configs with
    that ``w`` sleep ``hang_s`` seconds.
    """

    def __init__(self, log=None, delay=0.0, crash=None, marker=None, hang_w=None, hang_s=0.0):
        super().__init__()
        self.log, self.delay, self.crash, self.marker = log, delay, crash, marker
        self.hang_w, self.hang_s = hang_w, hang_s

    def measure(self, config, objectives):
        if self.crash == "once" and _first(self.marker):
            os._exit(1)
        if self.crash == "w3" and config["w"] == 3:
            os._exit(1)
        if self.hang_w is not None and config["w"] == self.hang_w:
            time.sleep(self.hang_s)
        time.sleep(self.delay)
        if self.log is not None:
            with open(self.log, "a") as f:
                f.write(json.dumps({"key": self.space.key(config), "pid": os.getpid(), "objectives": objectives}) + "\n")
        return super().measure(config, objectives)


def _first(marker) -> bool:
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def measured_keys(log: Path) -> list[str]:
    return [json.loads(line)["key"] for line in log.read_text().splitlines()] if log.exists() else []


def search(evaluator, executor, budget=10, strategy="random", store=None, **kw):
    return Search(evaluator.space, evaluator, OBJECTIVES, strategy, budget=budget, seed=3,
                  store=store if store is not None else ResultStore("sqlite://"), study_name="s", executor=executor, **kw)


def values_by_key(result):
    return {p.key: {k: round(v, 9) for k, v in p.values.items()} for p in result.points}


# ------------------------------------------------------------------ same results
def test_local_and_dask_give_the_same_seeded_search():
    local = search(ToyEvaluator(), "local", budget=12).run()
    dask = search(ToyEvaluator(), "dask", budget=12, executor_options={"workers": 2, "processes": False}).run()
    assert local.stopped == dask.stopped == "budget spent"
    assert local.n_evaluations == dask.n_evaluations == 12
    assert values_by_key(local) == values_by_key(dask)
    assert local.hypervolume == pytest.approx(dask.hypervolume)


def test_streaming_evolutionary_search_resumes_from_the_store(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    log = tmp_path / "measured.jsonl"
    options = {"workers": 2, "processes": False}
    first = search(SlowToy(log), "dask", budget=8, strategy="nsga2", store=ResultStore(url),
                   strategy_options={"pop_size": 6}, executor_options=options).run()
    assert first.n_evaluations == 8 and first.stopped == "budget spent"
    again = search(SlowToy(log), "dask", budget=14, strategy="nsga2", store=ResultStore(url),
                   strategy_options={"pop_size": 6}, executor_options=options).run()
    assert again.n_evaluations == 14  # 8 replayed from the study, 6 new
    keys = measured_keys(log)
    assert len(keys) == 14 and len(set(keys)) == 14
    trials = ResultStore(url).trials(ResultStore(url).get_study("s").id)
    assert sum(t.origin == "search" and not t.cached for t in trials) == 14


def test_a_timed_out_evaluation_is_recorded_failed_and_the_search_goes_on():
    # the timeout leaves a toy measurement (microseconds) seconds of slack: on a loaded machine a thread
    # worker can wait that long for the GIL, and a timeout there would fail a network that did not hang
    ev = SlowToy(hang_w=3, hang_s=6.0)
    store = ResultStore("sqlite://")
    result = search(ev, "dask", budget=8, store=store,
                    executor_options={"workers": 2, "processes": False, "timeout_s": 2.0}).run()
    assert result.n_evaluations == 8 and result.stopped == "budget spent"
    hung = [p for p in result.points if p.config["w"] == 3]
    assert hung and all("TimeoutError" in p.errors["accuracy"] for p in hung)
    assert all(p.ok for p in result.points if p.config["w"] != 3)
    assert store.count_measurements("failed") == 2 * len(hung)


# ------------------------------------------------------------------ lost workers
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["dask", "processes"])
def test_a_killed_worker_is_retried_and_the_search_completes(tmp_path, kind):
    log = tmp_path / "measured.jsonl"
    ev = SlowToy(log, delay=0.05, crash="once", marker=str(tmp_path / "crashed"))
    store = ResultStore(f"sqlite:///{tmp_path / 'r.db'}")
    s = search(ev, kind, budget=8, store=store, executor_options={"workers": 2, "retries": 2})
    result = s.run()
    assert (tmp_path / "crashed").exists()  # a worker really died
    assert result.stopped == "budget spent" and result.n_evaluations == 8 and result.n_failed == 0
    assert any("retrying" in line for line in result.log)
    keys = measured_keys(log)
    assert len(keys) == len(set(keys)) == 8  # the lost one measured once, elsewhere; nothing measured twice
    assert len(store.trials(store.get_study("s").id)) == 8


@pytest.mark.slow
def test_an_evaluation_that_keeps_killing_workers_is_recorded_failed_with_the_reason(tmp_path):
    ev = SlowToy(crash="w3")
    store = ResultStore(f"sqlite:///{tmp_path / 'r.db'}")
    result = search(ev, "dask", budget=6, store=store, executor_options={"workers": 2, "retries": 1}).run()
    assert result.stopped == "budget spent" and result.n_evaluations == 6
    lost = [p for p in result.points if p.config["w"] == 3]
    assert lost and all("worker lost 2 times" in p.errors["accuracy"] for p in lost)
    assert all(p.ok for p in result.points if p.config["w"] != 3)
    assert store.count_measurements("failed") == 2 * len(lost)


# ------------------------------------------------------------------ hardware
def test_latency_runs_only_on_workers_with_the_fingerprint_resource():
    from distributed import Scheduler, SpecCluster, Worker

    ev = ToyEvaluator()  # latency_ms is keyed by fingerprint "cpu"
    tag = hardware_resource(ev.fingerprint)
    cluster = SpecCluster(
        scheduler={"cls": Scheduler, "options": {"protocol": "inproc://", "dashboard_address": None}},
        workers={
            "hw": {"cls": Worker, "options": {"nthreads": 1, "resources": {tag: 1}}},
            "plain": {"cls": Worker, "options": {"nthreads": 1}},
        },
    )
    try:
        hw = [a for a, w in cluster.scheduler.workers.items() if w.resources][0]
        with DaskExecutor(address=cluster.scheduler_address) as ex:
            ex.start(ev)
            futures = [ex.submit(ev.space.canonical(ev.space.sample(np.random.default_rng(i))), ["latency_ms"])
                       for i in range(6)]
            results = [ex.result(f) for f in futures]
            cheap = [ex.result(ex.submit(ev.space.min_config(), ["params"]))]
        assert all(r.worker == hw for r in results)
        assert all(isinstance(r, Measured) and "latency_ms" in r.values for r in results)
        assert cheap[0].values["params"] > 0
    finally:
        cluster.close()


def test_a_cluster_without_the_hardware_resource_is_refused_in_one_line():
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        ex = DaskExecutor(address=cluster.scheduler_address)
        with pytest.raises(ValueError, match="offers resource sliver-hw-cpu") as err:
            ex.start(ToyEvaluator())
        ex.close()
    assert "\n" not in str(err.value)


class _Target:
    def __init__(self, fp):
        self.fp = fp

    def fingerprint_hash(self):
        return self.fp


def test_a_worker_on_other_hardware_refuses_to_time_the_model():
    ev = ToyEvaluator()
    ev.target = _Target("elsewhere")
    assert needs_hardware(ev, ["latency_ms"]) and not needs_hardware(ev, ["params"])
    with pytest.raises(RuntimeError, match="fingerprint elsewhere is not the study's cpu"):
        measure_on(ev, ev.space.min_config(), ["latency_ms"])
    assert measure_on(ev, ev.space.min_config(), ["params"]).values["params"] > 0


def test_measure_on_turns_failures_into_one_line_errors():
    class Broken(ToyEvaluator):
        def measure(self, config, objectives):
            raise ValueError("cannot extract\nsecond line")

    m = measure_on(Broken(), ToyEvaluator().space.min_config(), ["accuracy", "params"])
    assert m.values == {} and m.errors == {"accuracy": "ValueError: cannot extract", "params": "ValueError: cannot extract"}


def test_bad_executor_names_and_options_are_one_line_errors():
    with pytest.raises(ValueError, match="executor 'gpu' is unknown; choose one of"):
        make_executor("gpu")
    with pytest.raises(ValueError, match="executor 'local': bad option"):
        make_executor("local", workers=4)
    with pytest.raises(ValueError, match="workers must be at least 1"):
        ProcessExecutor(workers=0)


PARENT = r"""
import sys, time
from sliver.parallel import ProcessExecutor
from test_parallel import SlowToy

ex = ProcessExecutor(workers=2)
ev = SlowToy(delay=120)
ex.start(ev)
futures = [ex.submit(ev.space.canonical(ev.space.sample(__import__("numpy").random.default_rng(i))), ["accuracy"]) for i in range(2)]
while len(ex.worker_pids()) < 2:
    time.sleep(0.1)
print(" ".join(map(str, ex.worker_pids())), flush=True)
time.sleep(600)
"""


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped is dead)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_worker_processes_die_with_a_killed_parent():
    import signal
    import subprocess
    import sys

    tests = str(Path(__file__).resolve().parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])}
    parent = subprocess.Popen([sys.executable, "-c", PARENT], env=env, stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in parent.stdout.readline().split()]
        time.sleep(1.0)  # both workers are measuring (a 120 s measurement each)
        assert len(pids) == 2 and all(alive(p) for p in pids)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 5.0
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [p for p in pids if alive(p)]
    for p in left:  # do not leave them behind when the test fails
        os.kill(p, signal.SIGKILL)
    assert left == []
