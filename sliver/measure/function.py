"""A plain Python function (or an object with an ``evaluate`` method) as an :class:`~sliver.measure.base.Evaluator`.

This is what ``Search(space, objectives, evaluate=fn)`` measures with, so a
search runs on any problem: ``fn(config)`` returns a dict of metric values.
A black box has no super-network nor hardware target, so its identity in the
store is its ``name`` (results are reused by it: change it when the function
changes) and every metric is keyed by the fingerprint ``"any"``.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence

import numpy as np

from sliver.core import Config, Objective
from sliver.errors import UserError
from sliver.space import SearchSpace


def _function(evaluate: Any) -> Callable[[Config], dict]:
    """The function to call: ``evaluate`` itself, or its ``evaluate`` method."""
    method = getattr(evaluate, "evaluate", None)
    if callable(method):
        return method
    if callable(evaluate):
        return evaluate
    raise UserError("evaluate: pass a function config -> dict of values, or an object with such an 'evaluate' method")


def default_name(evaluate: Any) -> str:
    """``module.qualname`` of the function, or of the class of the object (or of a bound method's object)."""
    owner = getattr(evaluate, "__self__", None)
    target = type(owner) if owner is not None else evaluate if inspect.isfunction(evaluate) else type(evaluate)
    return f"{target.__module__}.{target.__qualname__}"


class FunctionEvaluator:
    """Measures every objective of a config with one call of a user's function.

    ``evaluate(config)`` returns ``{metric: value}``; a missing metric or a
    raised exception is recorded as that config's failure, never raised into
    the search. ``name`` identifies the function in the store (default:
    :func:`default_name`).
    """

    fingerprint = "any"  # no hardware target: one key for every metric

    def __init__(self, space: SearchSpace, evaluate: Any, objectives: Sequence[Objective], name: str | None = None,
                 vectors: Callable[[np.ndarray], dict[str, np.ndarray]] | None = None):
        self.space, self.objectives = space, list(objectives)
        self._fn = _function(evaluate)
        self._vectors = vectors
        self.name = name or default_name(evaluate)
        self.supernet_hash = f"function:{self.name}"

    def fingerprint_for(self, objective: str) -> str:
        return "any"

    def measure_vectors(self, X: np.ndarray, objectives: list[str]) -> dict[str, np.ndarray]:
        """``objectives`` of a population of encoded configs (rows of ``space.encode``), one array each.

        One call of ``vectors`` when one was given (what lets a search score
        tens of thousands of candidates' cheap metrics at once), else the
        function row by row.
        """
        if self._vectors is not None:
            values = self._vectors(X)
            return {n: np.asarray(values[n], dtype=float) for n in objectives}
        rows = [self._fn(self.space.decode(x)) for x in X]
        return {n: np.array([float(r[n]) for r in rows]) for n in objectives}

    def measure(self, config: Config, objectives: list[str]) -> dict[str, float | BaseException]:
        try:
            values = self._fn(config)
        except Exception as exc:  # recorded as this config's failure, as a model evaluator's would be
            return {n: exc for n in objectives}
        out: dict[str, float | BaseException] = {}
        for n in objectives:
            try:
                out[n] = float(values[n])
            except (KeyError, TypeError, ValueError):
                out[n] = UserError(f"evaluate: the function returned no number for '{n}' (got {values!r:.200})")
        return out
