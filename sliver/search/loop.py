"""The search loop: spend a budget of unique real evaluations, record everything, resume after a kill.

``Search.run`` has one loop whatever measures: it asks the strategy for as
many configs as the executor has free slots (:mod:`sliver.parallel`; the
default, in this process, takes a batch and measures it in turn), settles each from the store when
it can (a cache hit is never paid for again), otherwise claims it and has the
executor measure it, writes each result to the store with its trial the moment
it arrives, and tells the strategy the results just before asking again. On
restart with the same study name, the study's trials are replayed into the
strategy first, so the budget accounting continues where it stopped.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from sliver.core import BUILTIN, Constraint, Objective
from sliver.errors import UserError
from sliver.measure.base import Evaluator, Measured
from sliver.measure.evaluator import measure_once
from sliver.search.base import Outcome, Strategy, make_strategy
from sliver.search.hv import hypervolume, nondominated
from sliver.search.problem import Problem
from sliver.space import Config, SearchSpace
from sliver.store import Origin, Status


@dataclass
class Point:
    """One evaluated config as the search saw it."""

    config: Config
    key: str
    values: dict[str, float]
    errors: dict[str, str]
    feasible: bool
    #: SEARCH (measured now), CACHE (from the store, free), WARM (warm start), FILTERED (failed a cheap constraint)
    origin: Origin
    batch: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class SearchResult:
    """Measured points, the fronts, the hypervolume history and the accounting of a search."""

    objectives: list[Objective]
    points: list[Point]
    #: (unique evaluations so far, hypervolume, front size) after each batch
    hv_history: list[tuple[int, float, int]]
    reference: np.ndarray
    n_evaluations: int
    n_cache_hits: int
    n_warm: int
    n_filtered: int
    n_failed: int
    eval_seconds: float
    search_seconds: float
    stopped: str
    log: list[str] = field(default_factory=list)

    def _front(self, feasible_only: bool) -> list[Point]:
        pts = [p for p in self.points if p.ok and p.origin != Origin.FILTERED and (p.feasible or not feasible_only)]
        if not pts:
            return []
        F = np.array([[p.values[o.name] * o.sign for o in self.objectives] for p in pts])
        return [p for p, keep in zip(pts, nondominated(F)) if keep]

    @property
    def front(self) -> list[Point]:
        """Non-dominated measured points (constraints ignored)."""
        return self._front(False)

    @property
    def feasible_front(self) -> list[Point]:
        """Non-dominated measured points that satisfy every constraint."""
        return self._front(True)

    @property
    def hypervolume(self) -> float:
        return self.hv_history[-1][1] if self.hv_history else 0.0


def _function_evaluator(space: SearchSpace, evaluate, objectives: Sequence[str | Objective],
                        constraints: Sequence[Constraint], name: str | None) -> Evaluator:
    """A :class:`~sliver.measure.function.FunctionEvaluator` measuring ``objectives`` and the constrained metrics."""
    from sliver.measure.function import FunctionEvaluator

    declared = [o if isinstance(o, Objective) else _builtin(o) for o in objectives]
    names = {o.name for o in declared}
    # a constrained metric's direction is never used: only its bound is
    extra = [BUILTIN.get(c.metric) or Objective(c.metric, "min") for c in constraints if c.metric not in names]
    return FunctionEvaluator(space, evaluate, declared + list({o.name: o for o in extra}.values()), name)


def _builtin(name: str) -> Objective:
    if name not in BUILTIN:
        raise UserError(f"objective '{name}' is not built in; declare it, e.g. Objective('{name}', 'min') "
                        "(see sliver.core.Objective)")
    return BUILTIN[name]


class Search:
    """A multi-objective search over ``space`` measured by ``evaluator``, or by a plain function.

    ``objectives`` are names of the evaluator's objectives (or
    :class:`Objective` objects). Instead of an evaluator, ``evaluate`` takes a
    function ``config -> {metric: value}`` (or an object with such an
    ``evaluate`` method): ``Search(space, objectives, evaluate=fn)``. Its
    objectives are built-in names or the user's own :class:`Objective`
    declarations (direction, cost, ``additive``); ``evaluate_name`` is its
    identity in the store (default: the function's ``module.qualname``), by
    which a rerun resumes and reuses its results, so change it when the
    function changes (see :class:`~sliver.measure.function.FunctionEvaluator`).
    ``strategy`` a name or a :class:`Strategy`;
    ``budget`` the number of unique real evaluations; ``constraints`` strings
    like ``"latency_ms <= 5"``; ``store`` a :class:`~sliver.store.ResultStore`
    (None: an in-memory one, so every search runs the same way); ``warm_start`` tells the strategy every
    compatible measurement already in the store before it asks anything.
    ``study_settings`` are recorded with the study when it is created, next to
    the strategy, budget and constraints that every study records (the
    dashboard shades the constraints); :func:`~sliver.search.config.build_search`
    records the YAML's path (``search_yaml``) and problem kind (``problem``) there,
    so the dashboard can offer a ``sliver export`` command that runs as shown.

    ``executor`` (a name of :data:`sliver.parallel.EXECUTORS` with
    ``executor_options``, or an :class:`~sliver.parallel.Executor`; None: a
    :class:`~sliver.parallel.LocalExecutor` that measures each batch in this
    process) is where configs are measured; the loop asks the strategy for one
    config per free slot, so with several workers it streams, one per freed slot. ``evaluator_factory`` (a picklable
    zero-argument callable) lets workers build the evaluator themselves instead
    of receiving a pickled copy. A named executor is closed when ``run`` ends,
    a given one is left to its owner. ``claim_ttl_s``: a claim on a config in the
    store lapses this long after the owner's last heartbeat (a thread beats every
    third of it, see :meth:`~sliver.store.ResultStore.heartbeat`), so a dead
    process's configs are taken over that many seconds later.
    """

    def __init__(
        self,
        space: SearchSpace,
        evaluator: Evaluator | Sequence[str | Objective] | None = None,
        objectives: Sequence[str | Objective] | None = None,
        strategy: str | Strategy = "linas",
        budget: int = 100,
        constraints: Sequence[str | Constraint] = (),
        store=None,
        study_name: str | None = None,
        warm_start: bool = False,
        batch_size: int | None = None,
        seed: int = 0,
        reference: dict[str, float] | None = None,
        progress: bool = False,
        on_batch: Callable[[list[Point]], bool] | None = None,
        strategy_options: dict | None = None,
        executor=None,
        executor_options: dict | None = None,
        evaluator_factory: Callable[[], Evaluator] | None = None,
        claim_ttl_s: float = 15.0,
        evaluate=None,
        evaluate_name: str | None = None,
        study_settings: dict | None = None,
    ):
        if budget is None or int(budget) <= 0:
            raise UserError(f"budget must be a positive number of evaluations, got {budget}")
        self.constraints = [c if isinstance(c, Constraint) else Constraint.parse(c) for c in constraints]
        if evaluate is not None:
            if objectives is None and isinstance(evaluator, (list, tuple)):  # Search(space, objectives, evaluate=fn)
                evaluator, objectives = None, evaluator
            if evaluator is not None:
                raise UserError("Search: give either an evaluator or evaluate=function, not both")
            evaluator = _function_evaluator(space, evaluate, objectives or (), self.constraints, evaluate_name)
        if not isinstance(evaluator, Evaluator):
            raise UserError("Search: give an evaluator (sliver.measure.Evaluator) or evaluate=function")
        if not objectives:
            raise UserError("Search: objectives are missing; name one to four, e.g. ['accuracy', 'latency_ms']")
        known = {o.name: o for o in evaluator.objectives}
        self._known = known
        self.objectives = [self._objective(o, known) for o in objectives]
        for c in self.constraints:
            if c.metric not in known:
                raise UserError(f"constraint '{c}': metric '{c.metric}' is not measured by this evaluator; it measures {sorted(known)}")
        self.space, self.evaluator, self.budget = space, evaluator, int(budget)
        self.strategy = strategy if isinstance(strategy, Strategy) else make_strategy(strategy, **(strategy_options or {}))
        if store is None:  # as Optuna's in-memory storage: one pipeline whether or not the user keeps the results
            from sliver.store import ResultStore

            store = ResultStore("sqlite://")
        self.store, self.study_name, self.warm_start = store, study_name, warm_start
        self.study_settings = dict(study_settings or {})
        self.batch_size = batch_size or self.strategy.default_batch
        self.seed, self.reference, self.progress, self.on_batch = seed, reference, progress, on_batch
        # measured together: the objectives plus any constrained metric that is not an objective
        names = [o.name for o in self.objectives]
        self._extra = [c.metric for c in self.constraints if c.metric not in names]
        self._cheap_metrics = sorted({n for n in names + self._extra if known[n].cost == "cheap"})
        self._measure = list(dict.fromkeys(names + self._extra))
        self._cheap_cache: dict[str, dict[str, float]] = {}
        self.executor, self._own_executor = executor, False
        if executor is None:  # serial, in this process: ask a batch, measure it in turn, then tell it
            from sliver.parallel import LocalExecutor

            self.executor, self._own_executor = LocalExecutor(slots=self.batch_size), True
        elif isinstance(executor, str):
            from sliver.parallel import make_executor

            self.executor, self._own_executor = make_executor(executor, **(executor_options or {})), True
        self.evaluator_factory, self.claim_ttl_s = evaluator_factory, float(claim_ttl_s)

    @staticmethod
    def _objective(o: str | Objective, known: dict[str, Objective]) -> Objective:
        name = o.name if isinstance(o, Objective) else o
        if name not in known:
            raise UserError(f"objective '{name}' is not measured by this evaluator; it measures {sorted(known)}")
        return known[name]

    # ------------------------------------------------------------------ cheap
    def _cheap(self, config: Config) -> dict[str, float]:
        # computed, not stored: strategies ask for the cheap metrics of far more candidates than are ever measured,
        # and a store round trip costs more than the computation (a measured config's are stored with its trial)
        key = self.space.key(config)
        if key not in self._cheap_cache:
            self._cheap_cache[key] = dict(measure_once(self.evaluator, config, self._cheap_metrics).values)
        return self._cheap_cache[key]

    def _cheap_vectors(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """The cheap metrics of encoded rows in one call of the evaluator's ``measure_vectors``."""
        return self.evaluator.measure_vectors(X, self._cheap_metrics)  # type: ignore[attr-defined]

    # -------------------------------------------------------------------- run
    def run(self) -> SearchResult:
        """Run until the budget is spent (or the strategy has nothing new); see :class:`SearchResult`."""
        t_start = time.perf_counter()
        problem = Problem(
            self.space, self.objectives, self.constraints,
            cheap=self._cheap if self._cheap_metrics else None, cheap_metrics=self._cheap_metrics, seed=self.seed,
            cheap_vectors=self._cheap_vectors if self._cheap_metrics and hasattr(self.evaluator, "measure_vectors") else None,
            metrics=[self._known[n] for n in self._extra],
        )
        self.strategy.setup(problem)
        self._problem = problem
        self._study_id = self._open_study()
        self.points: list[Point] = []
        self._seen: set[str] = set()
        #: results not yet told to the strategy (it is told just before it is asked again)
        self._told: list[Point] = []
        #: configs being measured, by the executor's future; configs another search holds; configs asked and not
        #: yet taken (taken in the order asked: one that another search holds is waited for before those after it)
        self._jobs: dict[Any, _Job] = {}
        self._waiting: list[_Job] = []
        self._queue: list[Config] = []
        self.hv_history: list[tuple[int, float, int]] = []
        self._ref: np.ndarray | None = None
        self.n_eval = self.n_cache = self.n_warm = self.n_filtered = self.n_failed = 0
        self.eval_seconds = 0.0
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._scope = f"{self.evaluator.supernet_hash}:{self.evaluator.fingerprint}"
        self._fp_for = {n: self.evaluator.fingerprint_for(n) for n in self._measure}
        self._last_seq = 0
        self._batch = self._replay()
        # the heartbeat keeps this search's claims alive, however long a measurement or an ask takes
        with self._progress() as bar, self.store.heartbeat(self._owner, self.claim_ttl_s):
            self._bar = bar
            stopped = self._loop()
        self._join_others()
        total = time.perf_counter() - t_start
        return SearchResult(
            self.objectives, self.points, self.hv_history, self._ref if self._ref is not None else np.zeros(0),
            self.n_eval, self.n_cache, self.n_warm, self.n_filtered, self.n_failed,
            self.eval_seconds, max(total - self.eval_seconds, 0.0), stopped, list(self.strategy.log),
        )

    def _loop(self) -> str:
        """Measure through the executor until the budget is spent; returns why the search stopped.

        The strategy is asked for as many configs as there is room for: free
        slots of the executor and budget of the study neither spent nor in
        flight (by any search of it: see :meth:`~sliver.store.ResultStore.spent`). Each result
        is written to the store as it arrives, and the strategy is told every
        result since it was last asked just before it is asked again; so the
        default executor (a batch of slots, measured in turn) works in batches,
        telling the strategy after each, and a parallel one streams, one config
        per freed slot.
        """
        ex = self.executor
        asked = idle = 0  # configs of the last ask; proposals in a row that brought no new evaluation
        before, halt = self.n_eval, False
        try:
            ex.start(self.evaluator, self.evaluator_factory)  # inside: a failed start still closes the workers
            while True:
                self._sync()
                outstanding = len(self._jobs) + len(self._waiting) + len(self._queue)
                # the study's budget, less what every search of it has measured or has in flight
                room = min(ex.slots - outstanding, self.budget - self.store.spent(self._study_id))
                if (asked or self._told) and (room > 0 or not outstanding):
                    self._tell()
                    idle = idle + asked if self.n_eval == before else 0
                    asked = 0
                    if idle >= 100 * self.batch_size:
                        return f"{idle} proposals in a row brought nothing new"
                    halt = halt or (self.on_batch is not None and bool(self.on_batch(self.points)))
                if not self._jobs:
                    if halt:
                        return "stopped by callback"
                    if self.n_eval >= self.budget:
                        return "budget spent"
                if room > 0 and not halt:
                    configs = self.strategy.ask(room)
                    if configs:
                        asked, before = len(configs), self.n_eval
                        self._queue.extend(configs)
                        self._take_queued()
                        continue
                    if not outstanding:
                        return "the strategy has nothing new to propose"
                self._collect()
        finally:
            for future, job in self._jobs.items():
                ex.cancel(future)
                self.store.release(self._scope, job.key, self._owner)
            if self._own_executor:
                ex.close()

    # ------------------------------------------------------------- internals
    def _open_study(self) -> int:
        name = self.study_name or f"search-{self.evaluator.supernet_hash[:8]}-{self.evaluator.fingerprint[:8]}"
        settings = {**self.study_settings, "strategy": self.strategy.name, "budget": self.budget,
                    "constraints": [str(c) for c in self.constraints]}
        study = self.store.get_or_create_study(
            name, self.space, self.objectives, self.evaluator.supernet_hash, self.evaluator.fingerprint, settings,
        )
        return study.id

    def _replay(self) -> int:
        """Tell the strategy the study's earlier trials (resume) and, if asked, the store's (warm start)."""
        batch = 0
        by_batch: dict[int, list] = {}
        for t in self.store.trials(self._study_id):
            by_batch.setdefault(t.batch, []).append(t)
            self._last_seq = max(self._last_seq, t.seq)
        for b in sorted(by_batch):
            cs, os_ = [], []
            for t in by_batch[b]:
                p = self._stored_point(t, b)
                cs.append(p.config)
                os_.append(self._outcome(p))
            self.strategy.tell(cs, os_)
            self._record_hv()
            batch = b + 1
        if self.warm_start:
            fp_for = {n: self.evaluator.fingerprint_for(n) for n in self._measure}
            cs, os_ = [], []
            for config, values in self.store.compatible_results(self.evaluator.supernet_hash, fp_for):
                key = self.space.key(config)
                if key in self._seen:
                    continue
                p = self._point(config, key, values, {}, Origin.WARM, batch)
                self.store.add_trial(self._study_id, key, p.config, values, {}, cached=True, origin=Origin.WARM, batch=batch)
                self.n_warm += 1
                cs.append(p.config)
                os_.append(self._outcome(p))
            if cs:
                self.strategy.tell(cs, os_)
                self._record_hv()
                batch += 1
        return batch

    def _stored_point(self, t, batch: int) -> Point:
        """A point for a trial of the study read from the store, the point the search that wrote it reported,
        counted as it counted it."""
        # a search stores its cache hit as a "search" trial served from the store, and reports it as a CACHE point
        origin = Origin.CACHE if t.origin == Origin.SEARCH and t.cached else t.origin
        p = self._point(t.config, t.config_key, t.values, t.errors, origin, batch)
        self.n_failed += bool(t.errors)
        if t.origin == Origin.SEARCH and not t.cached:
            self.n_eval += 1  # the budget is the study's: a real evaluation counts whichever search paid for it
        elif t.origin == Origin.FILTERED:
            self.n_filtered += 1
        elif t.origin == Origin.WARM:
            self.n_warm += 1
        else:
            self.n_cache += 1
        return p

    def _sync(self) -> None:
        """Tell the strategy the trials other searches of this study have added since the last look."""
        cs, os_ = [], []
        for t in self.store.trials(self._study_id, after=self._last_seq):
            self._last_seq = max(self._last_seq, t.seq)
            if t.config_key not in self._seen:
                p = self._stored_point(t, t.batch)
                cs.append(p.config)
                os_.append(self._outcome(p))
        if cs:
            self.strategy.tell(cs, os_)

    def _join_others(self) -> None:
        """Wait for the measurements other searches have in flight, then take in this study's new trials.

        A search of this study that claims a config after this look also looks
        at the study after its claim, finds the budget spent and measures
        nothing, so the front this search reports is the store's.
        """
        others = {k: o for k, o in self.store.claims(self._scope).items() if o != self._owner}
        while any(self.store.claim_owner(self._scope, k) == o for k, o in others.items()):
            time.sleep(0.05)
        self._sync()

    def _point(self, config, key, values, errors, origin: Origin, batch) -> Point:
        p = Point(self.space.canonical(config), key, dict(values), dict(errors),
                  self._problem.feasible(values) and not errors, origin, batch)
        self._seen.add(key)
        self.points.append(p)
        return p

    def _take_queued(self) -> None:
        """Take the asked configs in order, until one waits for another search (as a serial search would)."""
        while self._queue and not self._waiting:
            self._take(self._queue.pop(0))

    def _take(self, config: Config) -> None:
        """Settle a proposed config at once (filtered, or from the store), or claim and measure it, or wait for
        the search that holds it."""
        key = self.space.key(config)
        if key in self._seen:  # the loop itself never measures a canonical duplicate
            return
        config = self.space.canonical(config)
        if self._cheap_metrics and not self._problem.passes_cheap(config):
            self._filtered(config, key)
            return
        job = _Job(config, key, self._missing(key))
        if not job.missing:
            self._stored(job)
            return
        state = self._acquire(job)
        if state == "measure":
            self._submit(job)
        elif state == "wait":
            self._waiting.append(job)

    def _missing(self, key: str) -> list[str]:
        """The objectives of ``key`` the store holds no result of."""
        found = self.store.get_measurements(key, self.evaluator.supernet_hash, self._fp_for)
        return [n for n in self._measure if n not in found]

    def _acquire(self, job: "_Job") -> str:
        """Claim ``job``'s config: "measure" it, "wait" (another search holds it, or the study's budget is all
        spent or in flight), or "settled" (from the store, or not at all: this study has it)."""
        if not self.store.claim(self._scope, job.key, self._owner, self.claim_ttl_s,
                                study_id=self._study_id, budget=self.budget):
            return "wait"
        # the holder writes its results before releasing, so a config it finished between our look at
        # the store and our claim is found now, instead of being measured a second time
        job.missing = self._missing(job.key)
        # and a search of this study that measured it shows now
        self._sync()
        if job.missing and job.key not in self._seen:
            return "measure"
        self.store.release(self._scope, job.key, self._owner)
        if not job.missing:
            self._stored(job)
        return "settled"

    def _submit(self, job: "_Job") -> None:
        """Hand ``job`` to the executor; a result that is ready at once (the in-process executor's) is recorded now."""
        job.started = time.monotonic()
        try:
            future = self.executor.submit(job.config, job.missing)
        except BaseException:  # raised through the in-process executor (a kill): nothing would release the claim
            self.store.release(self._scope, job.key, self._owner)
            raise
        self._jobs[future] = job
        for done in self.executor.wait([future], 0.0):
            self._done(done)

    def _collect(self) -> None:
        """Wait for a result (a moment, with nothing in flight) and record what came in: results, lost and
        timed-out evaluations, and the configs other searches held."""
        ex = self.executor
        now = time.monotonic()
        done = []
        if self._jobs:
            first_deadline = min(j.started + ex.timeout_s for j in self._jobs.values())
            done = ex.wait(list(self._jobs), timeout=max(0.0, min(1.0, first_deadline - now)))
        else:
            time.sleep(0.05)  # only the store to watch: another search's result, or its claim lapsing
        if done:
            # one result per turn, the others next turn: the strategy hears of each before it is asked again,
            # as from one worker, whatever arrived together
            self._done(done[0])
        now = time.monotonic()
        for future, job in list(self._jobs.items()):
            if future not in done and now - job.started > ex.timeout_s:
                ex.cancel(future)
                del self._jobs[future]
                reason = f"TimeoutError: no result within {ex.timeout_s:g} s on the {ex.name} executor"
                self._finish(job, Measured(errors={n: reason for n in job.missing}, wall=now - job.started))
        for job in list(self._waiting):
            if not self._missing(job.key):  # the other search has measured it
                self._waiting.remove(job)
                self._stored(job)
            else:
                state = self._acquire(job)  # "measure" when the other search died (or budget it held came free)
                if state != "wait":
                    self._waiting.remove(job)
                if state == "measure":
                    self._submit(job)
        self._take_queued()

    def _done(self, future: Any) -> None:
        """Record the result of a finished ``future``, or resubmit it (bounded) when its worker was lost."""
        from sliver.parallel import WorkerLost

        ex = self.executor
        job = self._jobs.pop(future)
        try:
            measured = ex.result(future)
        except WorkerLost as exc:
            job.attempts += 1
            if job.attempts <= ex.retries:
                self.strategy.log.append(f"{ex.name}: retrying {job.key[:12]} (attempt {job.attempts + 1}): {exc}")
                self._submit(job)
                return
            reason = f"worker lost {job.attempts} times: {exc}"
            measured = Measured(errors={n: reason for n in job.missing})
        self._finish(job, measured)

    def _finish(self, job: "_Job", measured: Measured) -> None:
        """Record a measurement in the store (with the study's trial that paid for it) and release the claim."""
        values, errors = dict(measured.values), dict(measured.errors)
        new = measured.measurements(job.missing, self._fp_for)
        # the objectives measured earlier (by this or another search) come from the store
        found = self.store.get_measurements(job.key, self.evaluator.supernet_hash, self._fp_for)
        for n, m in found.items():
            if n not in job.missing:
                if m.status == Status.OK:
                    values[n] = float(m.value)  # type: ignore[arg-type]
                else:
                    errors[n] = m.error or "failed"
        # one transaction: a kill leaves the measurements and the trial that paid for them, or neither
        self.store.add_trial(self._study_id, job.key, job.config, values, errors, cached=False, origin=Origin.SEARCH,
                             batch=self._batch, measurements=new, supernet_hash=self.evaluator.supernet_hash)
        self.store.release(self._scope, job.key, self._owner)
        self.n_eval += 1
        self.n_failed += bool(errors)
        self.eval_seconds += measured.wall
        self._told.append(self._point(job.config, job.key, values, errors, Origin.SEARCH, self._batch))
        self._bar(self)

    def _stored(self, job: "_Job") -> None:
        """Take ``job``'s config from the store, measuring nothing: a cache hit, unless a search of this study
        measured it (then it is that search's trial, and the study's evaluation)."""
        self._sync()  # such a trial was committed with the measurements: it shows now
        if job.key in self._seen:
            return
        found = self.store.get_measurements(job.key, self.evaluator.supernet_hash, self._fp_for)
        values = {n: float(m.value) for n, m in found.items() if m.status == Status.OK}  # type: ignore[arg-type]
        errors = {n: m.error or "failed" for n, m in found.items() if m.status != Status.OK}
        self.store.add_trial(self._study_id, job.key, job.config, values, errors, cached=True, origin=Origin.SEARCH,
                             batch=self._batch)
        self.n_cache += 1
        self.n_failed += bool(errors)
        self._told.append(self._point(job.config, job.key, values, errors, Origin.CACHE, self._batch))

    def _filtered(self, config: Config, key: str) -> None:
        """Record a config that fails a cheap constraint: its cheap metrics only, never measured further."""
        cheap = self._cheap(config)
        self.store.add_trial(self._study_id, key, config, cheap, {}, cached=True, origin=Origin.FILTERED, batch=self._batch)
        self.n_filtered += 1
        p = self._point(config, key, cheap, {}, Origin.FILTERED, self._batch)
        p.feasible = False
        self._told.append(p)

    def _tell(self) -> None:
        """Tell the strategy the results since it was last asked (one batch), and record the hypervolume."""
        told, self._told = self._told, []
        self.strategy.tell([p.config for p in told], [self._outcome(p) for p in told])
        self._record_hv()
        self._bar(self)
        self._batch += 1

    def _outcome(self, p: Point) -> Outcome:
        if p.origin == Origin.FILTERED:
            vio = sum(c.violation(p.values[c.metric]) for c in self.constraints if c.metric in p.values)
            return Outcome(p.values, ok=False, feasible=False, violation=max(vio, 1e-9))
        return Outcome(p.values, ok=p.ok, feasible=p.feasible, violation=self._problem.violation(p.values))

    def _record_hv(self) -> None:
        pts = [p for p in self.points if p.ok and p.feasible and p.origin != Origin.FILTERED]
        if not pts:
            self.hv_history.append((self.n_eval, 0.0, 0))
            return
        F = self._problem.to_min([p.values for p in pts])
        if self._ref is None:
            # fixed once, from the first points: later batches must be comparable
            if self.reference:
                self._ref = np.array([self.reference[o.name] * o.sign for o in self.objectives], dtype=float)
            else:
                lo, hi = F.min(0), F.max(0)
                self._ref = hi + 0.1 * np.where(hi > lo, hi - lo, np.maximum(np.abs(hi), 1.0))
        front = F[nondominated(F)]
        self.hv_history.append((self.n_eval, hypervolume(front, self._ref), len(front)))

    def _progress(self):
        return _Progress(self.budget, enabled=self.progress)


@dataclass
class _Job:
    """A config being measured by the executor (or waiting for another search's claim on it)."""

    config: Config
    key: str
    #: the objectives the store lacks
    missing: list[str]
    started: float = 0.0
    #: worker losses so far
    attempts: int = 0


class _Progress:
    """A rich progress bar with evaluations, current hypervolume and front size (or nothing).

    The hypervolume is the raw one of ``hv_history`` (in the objectives' units, against the reference point
    fixed at the first results), so it only grows; the normalised figure ``sliver search`` prints at the end
    rescales every objective to the range seen so far and would jump about as that range grows. The bar
    says "raw HV" so the two are not taken for one another.
    """

    def __init__(self, budget: int, enabled: bool):
        self.budget, self.enabled = budget, enabled

    def __enter__(self):
        if not self.enabled:
            return lambda search: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(
            TextColumn("search"), BarColumn(), MofNCompleteColumn(), TextColumn("raw HV {task.fields[hv]:.4g}"),
            TextColumn("front {task.fields[front]}"), TimeElapsedColumn(),
        )
        self._bar.__enter__()
        task = self._bar.add_task("search", total=self.budget, hv=0.0, front=0)

        def update(search: Search) -> None:
            hv, front = (search.hv_history[-1][1], search.hv_history[-1][2]) if search.hv_history else (0.0, 0)
            self._bar.update(task, completed=search.n_eval, hv=hv, front=front)

        return update

    def __exit__(self, *exc):
        if self.enabled:
            self._bar.__exit__(*exc)
        return False
