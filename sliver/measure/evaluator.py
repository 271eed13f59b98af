"""Store-aware evaluation: measure only what the store does not already hold.

:func:`evaluate` measures one config outside a search loop (``sliver
measure``, the multitask controller, the demo's baseline, a search's cheap
metrics). It canonicalises the config, serves every objective it can from the
:class:`~sliver.store.ResultStore` (keyed by config, super-network and the
objective's hardware fingerprint), asks the
:class:`~sliver.measure.base.Evaluator` for the rest, records each result
(failures with their message) and, given a study, appends the config to its
trials. A :class:`~sliver.search.Search` measures through an executor instead,
whose workers call :func:`measure_once`, and writes the same rows.

No torch here: tabular evaluators use this too.
"""

from __future__ import annotations

import time

from sliver.errors import UserError
from sliver.measure.base import EvalResult, Evaluator, Measured
from sliver.space import Config
from sliver.store import Measurement, Origin, ResultStore, Status


def evaluate(
    evaluator: Evaluator,
    config: Config,
    store: ResultStore | None = None,
    study_id: int | None = None,
    objectives: list[str] | None = None,
    origin: Origin = Origin.SEARCH,
    batch: int = 0,
    retry_failed: bool = False,
) -> EvalResult:
    """Evaluate ``config`` on ``evaluator``, paying only for objectives the store lacks.

    ``objectives`` defaults to all of the evaluator's. A stored failure is
    served like a stored value unless ``retry_failed``. A failing objective
    never raises: it lands in ``EvalResult.errors`` (and in the store).
    ``cached`` is True when nothing had to be measured. With ``study_id`` the
    config is also the study's trial, written with its new measurements in one
    transaction. Without a ``store`` an in-memory one is used, so there is one
    path whether or not the caller keeps the results.
    """
    known = [o.name for o in evaluator.objectives]
    names = list(objectives) if objectives is not None else known
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UserError(f"objective '{unknown[0]}' is not measured by this evaluator; it measures {known}")
    if study_id is not None and store is None:
        raise ValueError("study_id given without a store; pass store= to record trials")
    if store is None:
        store = ResultStore("sqlite://")

    space = evaluator.space
    config = space.canonical(config)
    key = space.key(config)
    fp_for = {n: evaluator.fingerprint_for(n) for n in names}

    result = EvalResult(config=config, key=key)
    found = store.get_measurements(key, evaluator.supernet_hash, fp_for)
    for name, m in found.items():
        if m.status == Status.OK:
            result.values[name] = float(m.value)  # type: ignore[arg-type]
        elif not retry_failed:
            result.errors[name] = m.error or "failed"
        if name in result.values or name in result.errors:
            result.stats[name] = m.stats
    result.measured = [n for n in names if n not in result.values and n not in result.errors]

    new: list[Measurement] = []
    if result.measured:
        m = measure_once(evaluator, config, result.measured)
        result.wall = m.wall
        result.values.update(m.values)
        result.errors.update(m.errors)
        result.seconds.update(m.seconds)
        result.stats.update(m.stats)
        new = m.measurements(result.measured, fp_for)

    if study_id is not None:
        # one transaction: a kill leaves the measurements and the trial that paid for them, or neither
        store.add_trial(study_id, key, config, result.values, result.errors, cached=result.cached, origin=origin,
                        batch=batch, measurements=new, supernet_hash=evaluator.supernet_hash)
    else:
        for m in new:
            store.put_measurement(key, config, evaluator.supernet_hash, m.fingerprint, m.objective, value=m.value,
                                  status=m.status, error=m.error, stats=m.stats, seconds=m.seconds)
    return result


def measure_once(evaluator: Evaluator, config: Config, objectives: list[str]) -> Measured:
    """Measure ``objectives`` of ``config`` now; never raises for a failing objective (it becomes an error)."""
    t0 = time.perf_counter()
    try:
        out = evaluator.measure(config, objectives)
    except Exception as exc:  # the evaluator itself broke (e.g. extraction): every objective failed
        out = {n: exc for n in objectives}
    return Measured.of(out, objectives, time.perf_counter() - t0)
