"""Choose the sub-networks a ``fixed`` run trains, before training: the best of each size on the untrained weights.

Minitron chooses its pruned architectures before it distils them, by their
quality right after pruning: a search over the importance-sorted original
weights finds, for each size, the sub-network that loses least. Training only
those (sampling rule ``fixed``) then spends every step on the networks that
will be deployed. :func:`choose_targets` is that search: LINAS over (quality,
cost), every measurement kept in a store so that an interrupted choice resumes,
and for each size the best measured sub-network whose cost is within it.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

from sliver.config import ConfigError
from sliver.core import BUILTIN, Objective
from sliver.errors import UserError
from sliver.space import Config


def choose_targets(supernet, quality: Callable[[Config], float], sizes: Sequence[float], *, cost: str = "params",
                   budget: int = 48, quality_name: str = "perplexity", lower_is_better: bool = True, store=None,
                   study_name: str = "targets", evaluate_name: str = "targets", seed: int = 0,
                   where: str = "") -> list[Config]:
    """For each of ``sizes`` (fractions of the largest network's ``cost``), the best sub-network within it.

    ``quality(config)`` scores the super-network's current weights with
    ``config`` active (e.g. selection perplexity); ``cost`` is a key of
    ``supernet.costs(config)`` (``params``, ``macs``, ``params_no_embed`` for a
    language model). LINAS searches ``budget`` sub-networks, the largest and
    smallest among them, in ``store`` (a :class:`~sliver.store.ResultStore`;
    None: in memory) under ``study_name`` and ``evaluate_name``, so a rerun
    resumes the search and, once it is finished, measures nothing. Sizes that
    pick the same network give it once; the list runs from the largest size down.
    A size below the smallest network's cost, or a cost the super-network
    does not compute, is a :class:`ConfigError` naming the field (its path
    prefixed by ``where``, e.g. ``"train.sampling.targets."``).
    """
    from sliver.search import Search

    top, bottom = supernet.costs(supernet.max_config()), supernet.costs(supernet.min_config())
    if cost not in top:
        raise ConfigError(f"field '{where}cost': {cost!r} is not a cost of this super-network; it has {sorted(top)}")
    full, least = float(top[cost]), float(bottom[cost])
    for i, size in enumerate(sizes):
        if not 0.0 < size <= 1.0:
            raise ConfigError(f"field '{where}sizes[{i}]': {size} is not a fraction of the largest network in (0, 1]")
        if size * full < least:
            raise ConfigError(f"field '{where}sizes[{i}]': {size} is below the smallest sub-network ({least / full:.3f} of the "
                              f"largest's {cost}); give a larger size")
    objectives = [Objective(quality_name, "min" if lower_is_better else "max", "", "expensive", f"selection {quality_name}"),
                  # measured with the quality (one call per network), yet exact: the additive GP fits it from few points
                  Objective(cost, "min", "", "expensive", BUILTIN[cost].description if cost in BUILTIN else cost,
                            additive=True)]

    def evaluate(config: Config) -> dict[str, float]:
        supernet.activate(config)
        return {quality_name: float(quality(config)), cost: float(supernet.costs(config)[cost])}

    was_training = supernet.training
    supernet.eval()
    try:
        result = Search(supernet.space, objectives, evaluate=evaluate, evaluate_name=evaluate_name, strategy="linas",
                        budget=budget, store=store, study_name=study_name, strategy_options={"extremes": True},
                        seed=seed).run()
    finally:
        supernet.train(was_training)
    measured = [p for p in result.points if p.ok]
    chosen: list[Config] = []
    for size in sorted(sizes, reverse=True):
        best = best_within(measured, cost, size * full, quality_name, lower_is_better)
        if best is None:
            raise UserError(f"no sub-network within {size} of the largest {cost} was measured (failed evaluations: "
                            f"{len(result.points) - len(measured)}); see the search's log, or give a larger budget")
        if best.config not in chosen:
            chosen.append(best.config)
    return chosen


def best_within(points: Iterable, cost: str, limit: float, quality: str, lower_is_better: bool = True):
    """The point (anything with ``config`` and ``values``) with the best ``quality`` among those whose ``cost``
    is at most ``limit``; None when there is none."""
    inside = [p for p in points if p.values[cost] <= limit]
    sign = 1.0 if lower_is_better else -1.0
    return min(inside, key=lambda p: sign * p.values[quality]) if inside else None
