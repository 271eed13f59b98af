"""Where evaluations run: in this process, in local worker processes, or on a Dask cluster.

An :class:`Executor` measures configs of one evaluator. Every search runs
through one (:class:`sliver.search.Search`, ``executor=``; the in-process
``local`` one when none is given) and records each result in the store the
moment it arrives. The search asks the strategy for one config per free
slot, so with several workers it keeps every one busy, asking for a new
candidate as soon as a worker frees up, with no barrier per generation; the
default in-process executor takes a whole batch and measures it in turn. Workers only measure; the search process alone writes the
store, so a worker needs nothing but the evaluator.

* ``local``: in this process, one evaluation at a time (the default, and the reference);
* ``processes``: ``workers`` local processes (:class:`concurrent.futures.ProcessPoolExecutor`);
* ``dask``: a ``dask.distributed`` cluster: the scheduler at ``address``, or
  a :class:`~distributed.LocalCluster` of ``workers`` on 127.0.0.1.

Each worker loads the evaluator once (a Dask worker plugin, or the process
pool's initializer) from a picklable evaluator or a zero-argument factory such
as ``functools.partial(ModelEvaluator.from_checkpoint, path, target)``.

A worker that dies mid-evaluation surfaces as :class:`WorkerLost`; the search
loop resubmits the evaluation (bounded retries), then records it as failed
with the reason. Evaluations that need the hardware (latency, peak memory) run
only on Dask workers offering the resource :func:`hardware_resource` of the
study's fingerprint, so a mixed cluster measures each target on its own
machine; start such workers with ``dask worker <scheduler> --resources
"sliver-hw-<fingerprint>=1"`` (and, for torch models, without Dask's
``MALLOC_TRIM_THRESHOLD_``: see :class:`DaskExecutor`).
"""

from __future__ import annotations

import abc
import concurrent.futures as cf
import multiprocessing
import os
import sys
import threading
import time
import uuid
from typing import Any, Callable, Iterable

from distributed.diagnostics.plugin import WorkerPlugin

from sliver.errors import SliverError, UserError
from sliver.measure.base import Evaluator, Measured
from sliver.space import Config

EXECUTORS = ("local", "processes", "dask")

#: evaluators loaded on this worker process, by (token, worker id)
_LOADED: dict[tuple[str, str], Evaluator] = {}


class WorkerLost(SliverError, RuntimeError):
    """The worker running an evaluation died or vanished before returning a result."""


def hardware_resource(fingerprint: str) -> str:
    """The Dask worker resource that marks a worker able to measure on hardware ``fingerprint``."""
    return f"sliver-hw-{fingerprint}"


def needs_hardware(evaluator: Evaluator, objectives: Iterable[str]) -> bool:
    """True if any of ``objectives`` is keyed by a hardware fingerprint (it must run on matching hardware)."""
    return any(evaluator.fingerprint_for(n) != "any" for n in objectives)


def measure_on(evaluator: Evaluator, config: Config, objectives: list[str], worker: str = "") -> Measured:
    """Measure ``objectives`` of ``config`` here; never raises for a failing objective (it becomes an error)."""
    from sliver.measure.evaluator import measure_once

    _check_hardware(evaluator, objectives)
    m = measure_once(evaluator, config, objectives)
    m.worker = worker
    return m


def _check_hardware(evaluator: Evaluator, objectives: list[str]) -> None:
    """Refuse to time a model on a machine whose fingerprint is not the study's (a mis-tagged worker)."""
    target = getattr(evaluator, "target", None)
    if target is None or not needs_hardware(evaluator, objectives):
        return
    here = target.fingerprint_hash()
    if here != evaluator.fingerprint:
        raise RuntimeError(
            f"this worker's hardware fingerprint {here} is not the study's {evaluator.fingerprint}; "
            f"give the resource {hardware_resource(evaluator.fingerprint)} only to workers on that machine"
        )


class _Given:
    """A picklable factory of a given evaluator: each worker unpickles its own copy (no shared state)."""

    def __init__(self, evaluator: Evaluator) -> None:
        import cloudpickle

        self.payload = cloudpickle.dumps(evaluator)

    def __call__(self) -> Evaluator:
        import cloudpickle

        return cloudpickle.loads(self.payload)


def _factory(source: Evaluator | Callable[[], Evaluator]) -> Callable[[], Evaluator]:
    if isinstance(source, Evaluator):
        return _Given(source)
    if callable(source):
        return source
    raise TypeError(f"an executor needs an evaluator or a zero-argument factory of one, got {type(source).__name__}")


def _load(token: str, worker_id: str, factory: Callable[[], Evaluator], threads: int) -> None:
    _LOADED[(token, worker_id)] = factory()
    if "torch" in sys.modules:  # one worker per core: torch's own threads would oversubscribe the machine
        sys.modules["torch"].set_num_threads(threads)


def _die_with_parent(parent: int) -> None:
    """End this worker process when ``parent`` dies, instead of living on reparented and idle.

    On Linux the kernel sends SIGKILL at the parent's death (``prctl(PR_SET_PDEATHSIG)``); elsewhere, or
    if that call fails, a daemon thread polls the parent's pid once a second.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(1, signal.SIGKILL, 0, 0, 0) == 0:  # 1 = PR_SET_PDEATHSIG
                if os.getppid() != parent:  # the parent died before the call: nobody will signal
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="sliver-parent-watch", daemon=True).start()


def _process_init(parent: int, token: str, factory: Callable[[], Evaluator], threads: int) -> None:
    _die_with_parent(parent)
    _load(token, "process", factory, threads)


def _loaded(token: str, worker_id: str) -> Evaluator:
    try:
        return _LOADED[(token, worker_id)]
    except KeyError:
        raise RuntimeError(f"the evaluator is not loaded on worker {worker_id}; did its loading fail?") from None


# ------------------------------------------------------------------ executors
class Executor(abc.ABC):
    """Runs measurements of one evaluator; ``slots`` evaluations may be in flight at once.

    ``retries`` is how many times the search loop resubmits an evaluation whose
    worker was lost; ``timeout_s`` bounds the wait for one evaluation, after
    which it is recorded as failed.
    """

    name = "base"

    def __init__(self, workers: int = 1, retries: int = 2, timeout_s: float = 1800.0, threads_per_worker: int = 1) -> None:
        if workers < 1:
            raise UserError(f"executor workers must be at least 1, got {workers}")
        if retries < 0:
            raise UserError(f"executor retries must be >= 0, got {retries}")
        if timeout_s <= 0:
            raise UserError(f"executor timeout_s must be positive, got {timeout_s}")
        self.workers, self.retries, self.timeout_s, self.threads = workers, retries, float(timeout_s), threads_per_worker
        self.evaluator: Evaluator | None = None

    @property
    def slots(self) -> int:
        """How many evaluations to keep in flight: the search asks the strategy for one config per free slot."""
        return self.workers

    def start(self, evaluator: Evaluator, factory: Callable[[], Evaluator] | None = None) -> None:
        """Load ``evaluator`` on every worker (from ``factory`` when given: nothing heavy is pickled).

        Starting again with the same evaluator keeps the running workers (so a
        caller can start them before a timed search).
        """
        if self.evaluator is evaluator:
            return
        if self.evaluator is not None:
            raise RuntimeError(f"this {self.name} executor already runs another evaluator; use one executor per evaluator")
        self.evaluator = evaluator
        self._start(factory)

    @abc.abstractmethod
    def _start(self, factory: Callable[[], Evaluator] | None) -> None:
        """Bring the workers up, each loading ``factory``'s evaluator (without one, a copy of ``self.evaluator``)."""

    def _worker_factory(self, factory: Callable[[], Evaluator] | None) -> Callable[[], Evaluator]:
        """What a worker calls to load the evaluator: ``factory``, or one unpickling a copy of ``self.evaluator``."""
        return _factory(factory or self.evaluator)  # type: ignore[arg-type]

    @abc.abstractmethod
    def submit(self, config: Config, objectives: list[str]) -> Any:
        """Start measuring ``objectives`` of ``config``; returns a future."""

    @abc.abstractmethod
    def wait(self, futures: list[Any], timeout: float) -> list[Any]:
        """The futures among ``futures`` that are done, waiting up to ``timeout`` seconds for the first."""

    @abc.abstractmethod
    def result(self, future: Any) -> Measured:
        """The measurement of a done future; raises :class:`WorkerLost` if its worker died."""

    def cancel(self, future: Any) -> None:
        """Stop waiting for ``future`` (a running measurement may still finish on its worker)."""
        future.cancel()

    def worker_pids(self) -> list[int]:
        """Process ids of the workers (for monitoring and fault injection)."""
        return [os.getpid()]

    def close(self) -> None:
        """Shut the workers down."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalExecutor(Executor):
    """Measures in this process, each config when it is submitted, one after the other.

    ``slots`` configs are taken per ask of the strategy: one for ``local`` by
    name, which then streams exactly as a pool of one worker (the reference the
    parallel executors are compared with); the search's batch size for the
    default executor of a :class:`~sliver.search.Search`, so that a strategy
    proposes a batch at once and is told after it. ``timeout_s`` cannot
    interrupt a measurement in this thread, so it is never reached.
    """

    name = "local"

    def __init__(self, retries: int = 2, timeout_s: float = 1800.0, slots: int = 1) -> None:
        super().__init__(1, retries, timeout_s)
        if slots < 1:
            raise UserError(f"executor slots must be at least 1, got {slots}")
        self._slots = int(slots)

    @property
    def slots(self) -> int:
        return self._slots

    def _start(self, factory: Callable[[], Evaluator] | None) -> None:
        return None  # the search's own evaluator is used as it is: nothing is pickled

    def submit(self, config: Config, objectives: list[str]) -> cf.Future:
        from sliver.measure.evaluator import measure_once

        # no hardware check (measure_on): the evaluator's fingerprint was taken on this machine
        m = measure_once(self.evaluator, config, objectives)  # type: ignore[arg-type]
        m.worker = "local"
        f: cf.Future = cf.Future()
        f.set_result(m)
        return f

    def wait(self, futures: list[Any], timeout: float) -> list[Any]:
        return [f for f in futures if f.done()]

    def result(self, future: cf.Future) -> Measured:
        return future.result()


def _process_measure(token: str, config: Config, objectives: list[str]) -> Measured:
    return measure_on(_loaded(token, "process"), config, objectives, f"pid {os.getpid()}")


class ProcessExecutor(Executor):
    """``workers`` local processes (spawned, so no forked torch state), each loading the evaluator once.

    Workers die with this process, even when it is killed (a parent-death
    signal, see :func:`_die_with_parent`); the search closes the pool on every
    way out of its loop.

    A process that dies breaks the whole pool (that is how
    :class:`~concurrent.futures.ProcessPoolExecutor` works): every evaluation in
    flight is reported lost, and the pool is rebuilt for the resubmissions.
    """

    name = "processes"

    def __init__(self, workers: int = 2, retries: int = 2, timeout_s: float = 1800.0, threads_per_worker: int = 1) -> None:
        super().__init__(workers, retries, timeout_s, threads_per_worker)
        self._pool: cf.ProcessPoolExecutor | None = None
        self._token = uuid.uuid4().hex

    def _start(self, factory: Callable[[], Evaluator] | None) -> None:
        self._factory = self._worker_factory(factory)
        self._new_pool()

    def _new_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = cf.ProcessPoolExecutor(
            self.workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_process_init, initargs=(os.getpid(), self._token, self._factory, self.threads),
        )

    def submit(self, config: Config, objectives: list[str]) -> cf.Future:
        try:
            return self._pool.submit(_process_measure, self._token, config, objectives)  # type: ignore[union-attr]
        except cf.process.BrokenProcessPool:
            self._new_pool()
            return self._pool.submit(_process_measure, self._token, config, objectives)  # type: ignore[union-attr]

    def wait(self, futures: list[Any], timeout: float) -> list[Any]:
        done, _ = cf.wait(futures, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        return list(done)

    def result(self, future: cf.Future) -> Measured:
        try:
            return future.result()
        except cf.process.BrokenProcessPool as exc:
            raise WorkerLost(f"a worker process died ({exc})") from None

    def worker_pids(self) -> list[int]:
        # ProcessPoolExecutor keeps its processes in a private dict; only fault-injection tests need them
        return [p.pid for p in (self._pool._processes or {}).values()] if self._pool is not None else []  # type: ignore[union-attr]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self.evaluator = None


def _dask_measure(token: str, config: Config, objectives: list[str]) -> Measured:
    from distributed import get_worker

    worker = get_worker()
    return measure_on(_loaded(token, worker.address), config, objectives, worker.address)


class _LoadEvaluator(WorkerPlugin):
    """Dask worker plugin: loads the evaluator once per worker, again on every worker that joins or restarts."""

    def __init__(self, token: str, factory: Callable[[], Evaluator], threads: int) -> None:
        import cloudpickle

        self.name = f"sliver-evaluator-{token}"
        self.token, self.threads = token, threads
        # bytes, so that workers sharing a process (processes=False) each unpickle their own copy
        self.payload = cloudpickle.dumps(factory)

    def setup(self, worker) -> None:
        import cloudpickle

        _load(self.token, worker.address, cloudpickle.loads(self.payload), self.threads)

    def teardown(self, worker) -> None:
        _LOADED.pop((self.token, worker.address), None)


class DaskExecutor(Executor):
    """Evaluations as tasks on a ``dask.distributed`` cluster.

    With ``address`` it connects to a running scheduler; without, it starts a
    :class:`~distributed.LocalCluster` of ``workers`` on 127.0.0.1 (worker
    processes unless ``processes=False``, dashboard off). Its workers offer the
    hardware resource of the evaluator's fingerprint, since they run on this
    machine; the scheduler's own retries are turned off there
    (``allowed-failures: 0``), so a task on a worker that dies fails at once
    and the search loop's bounded retries apply.
    """

    name = "dask"

    def __init__(self, workers: int = 2, address: str | None = None, retries: int = 2, timeout_s: float = 1800.0,
                 threads_per_worker: int = 1, processes: bool = True) -> None:
        super().__init__(workers, retries, timeout_s, threads_per_worker)
        self.address, self.processes = address, processes
        self.client = None
        self._cluster = None
        self._token = uuid.uuid4().hex
        self._resource: str | None = None

    @property
    def slots(self) -> int:
        if self.client is None:
            return self.workers
        # a connected cluster may have more (or fewer) workers than asked for
        return max(1, sum(w.get("nthreads", 1) for w in self.client.scheduler_info()["workers"].values()))

    def _start(self, factory: Callable[[], Evaluator] | None) -> None:
        import dask
        from distributed import Client, LocalCluster

        fp = self.evaluator.fingerprint  # type: ignore[union-attr]
        self._resource = hardware_resource(fp)
        if self.address:
            self.client = Client(self.address, timeout=30)
            self._check_resource()
        else:
            # worker processes listen on 127.0.0.1 only; in-process workers talk over inproc:// (no socket at all)
            where = {"host": "127.0.0.1"} if self.processes else {}
            # Dask starts workers with MALLOC_TRIM_THRESHOLD_=65536; setting it turns off glibc's dynamic mmap
            # threshold, so every tensor over 128 KiB is mmapped and unmapped again, and accuracy runs drown in
            # page faults. Workers keep glibc's default.
            environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
            environ.pop("MALLOC_TRIM_THRESHOLD_", None)
            settings = {"distributed.scheduler.allowed-failures": 0, "distributed.nanny.pre-spawn-environ": environ}
            with dask.config.set(settings):
                self._cluster = LocalCluster(
                    n_workers=self.workers, threads_per_worker=self.threads, processes=self.processes,
                    dashboard_address=None, resources={self._resource: 1}, silence_logs=40, **where,
                )
            self.client = Client(self._cluster)
        self.client.register_plugin(_LoadEvaluator(self._token, self._worker_factory(factory), self.threads))

    def _check_resource(self) -> None:
        """Fail in one line, instead of queueing for ever, when no worker can measure on the study's hardware."""
        workers = self.client.scheduler_info()["workers"].values()  # type: ignore[union-attr]
        if not any(self._resource in w.get("resources", {}) for w in workers):
            raise UserError(
                f"no worker of the Dask cluster at {self.address} offers resource {self._resource}: start a worker on the "
                f"target machine with  dask worker {self.address} --resources \"{self._resource}=1\""
            )

    def submit(self, config: Config, objectives: list[str]) -> Any:
        hardware = needs_hardware(self.evaluator, objectives)  # type: ignore[arg-type]
        return self.client.submit(  # type: ignore[union-attr]
            _dask_measure, self._token, config, objectives, pure=False,
            key=f"sliver-measure-{uuid.uuid4().hex}", resources={self._resource: 1} if hardware else None,
        )

    def wait(self, futures: list[Any], timeout: float) -> list[Any]:
        from distributed import wait

        if futures and timeout > 0:
            try:
                wait(futures, timeout=timeout, return_when="FIRST_COMPLETED")
            except TimeoutError:
                pass
        return [f for f in futures if f.done()]

    def result(self, future: Any) -> Measured:
        from distributed import KilledWorker

        try:
            return future.result()
        except KilledWorker as exc:
            raise WorkerLost(f"the Dask worker running it died ({exc})") from None
        except cf.CancelledError as exc:  # the scheduler forgot the task (e.g. lost connection)
            raise WorkerLost(f"the Dask task was cancelled ({exc})") from None

    def cancel(self, future: Any) -> None:
        future.cancel()

    def worker_pids(self) -> list[int]:
        return list(self.client.run(os.getpid).values()) if self.client is not None else []

    def busy_worker_pids(self) -> list[int]:
        """Process ids of the workers running a task now (fault injection kills one of them)."""
        if self.client is None:
            return []
        busy = {addr for addr, keys in self.client.processing().items() if keys}
        return [pid for addr, pid in self.client.run(os.getpid).items() if addr in busy]

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None
        self.evaluator = None


def make_executor(kind: str = "local", **options: Any) -> Executor:
    """An executor by name: ``local``, ``processes`` or ``dask`` (options: workers, address, retries, timeout_s, ...)."""
    classes = {"local": LocalExecutor, "processes": ProcessExecutor, "dask": DaskExecutor}
    if kind not in classes:
        raise UserError(f"executor '{kind}' is unknown; choose one of {list(EXECUTORS)}")
    try:
        return classes[kind](**options)
    except TypeError as exc:
        raise UserError(f"executor '{kind}': bad option ({exc})") from None
