"""The controller: task priorities + a MACs budget -> a multi-task sub-network, without retraining (ECMT).

Once, the controller measures a seeded sample of configs of a trained
super-network (through the :class:`~sliver.store.ResultStore`, so a second
controller on the same checkpoint and store measures nothing) and fits one
predictor per task score on them. Each request is then a fast exhaustive search
over the predicted scores of every config of the space:

* feasible: MACs (exact, analytic) within the budget, and decoder widths
  ordered like the priorities -- a more important task gets at least as large a
  share of its decoder's largest width as any less important one;
* best: the largest priority-weighted sum of normalised predicted task scores
  (each task's predictions scaled to [0, 1] over the space), ties broken
  towards the larger network.

A budget below the smallest network is refused with the feasible range.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sliver.errors import UserError
from sliver.measure.evaluator import evaluate
from sliver.multitask.evaluate import MultiTaskEvaluator
from sliver.predict.models import Predictor
from sliver.space import Config
from sliver.store import Origin

#: spaces with more distinct configs than this are searched on a seeded sample of that many
MAX_CANDIDATES = 50_000


def parse_priorities(text: str | dict[str, float], tasks: list[str]) -> dict[str, float]:
    """Priorities as ``"cls=0.6,denoise=0.3,sr=0.1"`` (or a dict) -> weights per task summing to 1.

    Tasks left out get weight 0. An unknown task, a malformed item, a negative
    or non-finite weight, or all-zero weights raise a one-line ValueError.
    """
    if isinstance(text, dict):
        items = [(str(k), v) for k, v in text.items()]
    else:
        items = []
        for part in (p.strip() for p in str(text).split(",")):
            if not part:
                continue
            name, sep, value = part.partition("=")
            if not sep or not name.strip():
                raise UserError(f"priorities: {part!r} must be written task=weight, e.g. {tasks[0]}=0.5")
            items.append((name.strip(), value.strip()))
    weights: dict[str, float] = {}
    for name, value in items:
        if name not in tasks:
            raise UserError(f"priorities: unknown task '{name}'; the super-network's tasks are {tasks}")
        if name in weights:
            raise UserError(f"priorities: task '{name}' is given twice")
        try:
            w = float(value)
        except (TypeError, ValueError):
            raise UserError(f"priorities: weight of '{name}' must be a number, got {value!r}") from None
        if not np.isfinite(w) or w < 0:
            raise UserError(f"priorities: weight of '{name}' must be a finite number >= 0, got {value}")
        weights[name] = w
    total = sum(weights.values())
    if total <= 0:
        raise UserError(f"priorities: all weights are zero (or none given); give at least one of {tasks} a positive weight")
    return {t: weights.get(t, 0.0) / total for t in tasks}


@dataclass
class Choice:
    """The configuration the controller picked for one request, with its costs and predicted scores."""

    config: Config
    macs: int
    params: int
    budget_macs: float
    priorities: dict[str, float]
    #: predicted score of each task objective (e.g. ``cls_accuracy``)
    predicted: dict[str, float]
    #: priority-weighted normalised predicted score (0..1)
    score: float
    #: each task decoder's width as a share of its largest width
    decoder_share: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("config", "macs", "params", "budget_macs", "priorities", "predicted", "score", "decoder_share")}


class Controller:
    """Maps (priorities, MACs budget) to a sub-network of a multi-task super-network via fitted predictors.

    ``n_measured`` configs (the largest, the smallest and seeded random ones)
    are measured through ``store`` (pass one to keep the measurements; already
    stored ones are not measured again) and one ``predictor`` per task is fitted on them.
    """

    def __init__(self, evaluator: MultiTaskEvaluator, store=None, n_measured: int = 40, seed: int = 0,
                 predictor: str = "ridge") -> None:
        if n_measured < 3:
            raise UserError(f"n_measured must be at least 3 (the largest, the smallest and one more config), got {n_measured}")
        self.evaluator, self.space = evaluator, evaluator.space
        supernet = evaluator.supernet
        self.tasks = list(supernet.tasks)
        self.names = [o.name for o in evaluator.task_objectives]
        self.measured = self._measure(n_measured, seed, store)
        X = self.space.features([c for c, _ in self.measured])
        self.predictors = {n: Predictor(predictor, seed=seed).fit(X, np.array([v[n] for _, v in self.measured]))
                           for n in self.names}

        self.candidates = self._candidates(seed)
        costs = [supernet.costs(c) for c in self.candidates]
        self.macs = np.array([c["macs"] for c in costs], dtype=np.int64)
        self.params = np.array([c["params"] for c in costs], dtype=np.int64)
        Xc = self.space.features(self.candidates)
        self.predicted = np.stack([self.predictors[n].predict_dist(Xc)[0] for n in self.names], axis=1)
        lo, hi = self.predicted.min(0), self.predicted.max(0)
        self.normalised = (self.predicted - lo) / np.where(hi > lo, hi - lo, 1.0)
        top = {t: max(self.space[supernet.decoder_dim(t)].choices) for t in self.tasks}
        self.share = np.array([[c[supernet.decoder_dim(t)] / top[t] for t in self.tasks] for c in self.candidates])

    @classmethod
    def from_checkpoint(cls, path: str | Path, store=None, data=None, **kwargs: Any) -> "Controller":
        """A controller of a multi-task training checkpoint (its data set is rebuilt from the checkpoint unless given)."""
        supernet, info, data = load_multitask_checkpoint(path, data)
        return cls(MultiTaskEvaluator(supernet, data, info["hash"]), store, **kwargs)

    # ------------------------------------------------------------------ setup
    def _measure(self, n: int, seed: int, store) -> list[tuple[Config, dict[str, float]]]:
        rng = np.random.default_rng(seed)
        configs = [self.space.max_config(), self.space.min_config()]
        keys = {self.space.key(c) for c in configs}
        for _ in range(100 * n):
            if len(configs) >= min(n, self.space.count()):
                break
            c = self.space.sample(rng)
            if self.space.key(c) not in keys:
                keys.add(self.space.key(c))
                configs.append(c)
        out = []
        for c in configs:
            res = evaluate(self.evaluator, c, store, objectives=self.names, origin=Origin.CONTROLLER)
            if res.ok:
                out.append((res.config, res.values))
        if len(out) < 3:
            raise UserError(f"the controller could measure only {len(out)} of {len(configs)} configs; see the store for the errors")
        return out

    def _candidates(self, seed: int) -> list[Config]:
        if self.space.count() <= MAX_CANDIDATES:
            return self.space.enumerate(MAX_CANDIDATES)
        sample = self.space.sample(np.random.default_rng(seed + 1), n=MAX_CANDIDATES)
        return [self.space.max_config(), self.space.min_config()] + sample

    # ------------------------------------------------------------------ requests
    @property
    def feasible_range(self) -> tuple[int, int]:
        """MACs of the smallest and the largest network."""
        return feasible_range(self.evaluator.supernet)

    def configure(self, priorities: str | dict[str, float], budget_macs: float) -> Choice:
        """The best predicted config within ``budget_macs`` whose decoder widths follow ``priorities``."""
        p = parse_priorities(priorities, self.tasks)
        check_budget(self.evaluator.supernet, budget_macs)
        w = np.array([p[t] for t in self.tasks])
        ok = self.macs <= budget_macs
        for i in range(len(self.tasks)):
            for j in range(len(self.tasks)):
                if w[i] > w[j]:
                    ok &= self.share[:, i] >= self.share[:, j]
        score = self.normalised @ w
        idx = np.flatnonzero(ok)
        best = int(idx[np.lexsort((self.macs[idx], score[idx]))[-1]])  # highest score, then most MACs
        return Choice(
            config=self.candidates[best], macs=int(self.macs[best]), params=int(self.params[best]),
            budget_macs=float(budget_macs), priorities=p,
            predicted={n: float(v) for n, v in zip(self.names, self.predicted[best])}, score=float(score[best]),
            decoder_share={t: float(s) for t, s in zip(self.tasks, self.share[best])},
        )


def feasible_range(supernet) -> tuple[int, int]:
    """MACs of the smallest and the largest network (every width grows MACs, so they are the min and max configs)."""
    return supernet.costs(supernet.min_config())["macs"], supernet.costs(supernet.max_config())["macs"]


def check_budget(supernet, budget_macs: float) -> None:
    """Raise a one-line ValueError with the feasible range if no network of ``supernet`` fits ``budget_macs``."""
    lo, hi = feasible_range(supernet)
    if not np.isfinite(budget_macs) or budget_macs < lo:
        raise UserError(f"budget_macs={budget_macs:.4g} is below the smallest network ({lo:,} MACs); "
                         f"feasible budgets are >= {lo:,} (the largest network needs {hi:,})")


def load_multitask_checkpoint(path: str | Path, data=None):
    """``(supernet, info, data)`` of a multi-task training checkpoint, the data rebuilt from its spec unless given."""
    from sliver.elastic.multitask import ElasticMultiTask
    from sliver.multitask.tasks import load_multitask_data
    from sliver.train.checkpoint import CheckpointError, load_supernet

    supernet, info = load_supernet(path)
    if not isinstance(supernet, ElasticMultiTask):
        raise CheckpointError(f"{path} holds a '{info['supernet'].get('family')}' super-network, not a multi-task one")
    if data is None:
        data = load_multitask_data(**info["data"])
    return supernet, info, data
