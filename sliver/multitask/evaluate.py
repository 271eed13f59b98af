"""Measuring multi-task sub-networks: one score per task, and an Evaluator the search and the store use.

Every task metric of a config is measured after re-estimating the batch-norm
statistics of that config (slimmable networks share BN layers across widths,
so the statistics gathered in training fit no width in particular).
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from sliver.core import BUILTIN, Objective
from sliver.data import loader
from sliver.elastic.multitask import ElasticMultiTask
from sliver.errors import UserError
from sliver.multitask.tasks import MultiTaskData, Task, as_batch, get_task
from sliver.space import Config
from sliver.train.bn import recalibrate_bn


@torch.no_grad()
def task_scores(model: nn.Module, batches: Iterable, tasks: list[Task]) -> dict[str, float]:
    """Mean per-example metric of each task of ``model`` (in eval mode) over ``batches``, keyed by objective name."""
    model.eval()
    sums = {t.name: 0.0 for t in tasks}
    n = 0
    for tensors in batches:
        batch = as_batch(tensors)
        out = model(batch["x"])
        for t in tasks:
            sums[t.name] += float(t.metric(out[t.name], batch[t.target]).sum())
        n += len(batch["x"])
    if n == 0:
        raise UserError("task_scores: the loader gave no examples")
    return {t.objective.name: sums[t.name] / n for t in tasks}


def measure_config(supernet: ElasticMultiTask, config: Config, data: MultiTaskData, bn_batches: int = 10,
                   batch_size: int = 256, seed: int = 0) -> dict[str, float]:
    """Every task's score of ``config`` on the validation split, after BN recalibration on the calibration split."""
    tasks = [get_task(t) for t in supernet.tasks]
    calib = loader(data.calib, batch_size, shuffle=True, seed=seed)
    recalibrate_bn(supernet, config, calib, bn_batches)
    return task_scores(supernet, loader(data.val, batch_size), tasks)


class MultiTaskEvaluator:
    """:class:`~sliver.measure.base.Evaluator` of a multi-task super-network: one objective per task plus costs.

    Objectives are ``<task>_<metric>`` (e.g. ``cls_accuracy``, ``denoise_psnr``,
    ``sr_psnr``), ``macs`` and ``params``. None depends on the hardware, so
    every measurement is keyed by the fingerprint ``"any"``.
    """

    fingerprint = "any"

    def __init__(self, supernet: ElasticMultiTask, data: MultiTaskData, supernet_hash: str,
                 bn_batches: int = 10, batch_size: int = 256, seed: int = 0) -> None:
        self.supernet = supernet.eval()
        self.space = supernet.space
        self.data = data
        self.supernet_hash = supernet_hash
        self.bn_batches, self.batch_size, self.seed = bn_batches, batch_size, seed
        self.task_objectives: list[Objective] = [get_task(t).objective for t in supernet.tasks]
        self.objectives: list[Objective] = self.task_objectives + [BUILTIN["macs"], BUILTIN["params"]]

    def fingerprint_for(self, objective: str) -> str:
        return "any"

    def measure(self, config: Config, objectives: list[str]) -> dict[str, float | BaseException]:
        """Measure ``objectives`` of ``config``; the task scores come from one pass over the validation split."""
        config = self.space.validate(config)
        out: dict[str, float | BaseException] = {}
        task_names = {o.name for o in self.task_objectives}
        if task_names & set(objectives):
            try:
                out.update(measure_config(self.supernet, config, self.data, self.bn_batches, self.batch_size, self.seed))
            except Exception as exc:  # every task score failed together
                out.update({n: exc for n in task_names})
        costs = self.supernet.costs(config)
        out.update({n: float(costs[n]) for n in ("macs", "params")})
        return {n: out[n] for n in objectives}
