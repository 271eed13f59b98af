"""Batch-norm recalibration: re-estimate running statistics for one sub-network.

During super-network training every sub-network updates the same running
statistics, so after training they fit no sub-network in particular. Before a
sub-network's accuracy means anything, its statistics must be re-estimated on
a few batches of data with that sub-network active.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from sliver.elastic.base import Supernet
from sliver.errors import UserError
from sliver.space import Config
from sliver.train.accuracy import top1_accuracy


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every batch-norm layer of ``model`` that keeps running statistics, except a frozen teacher's."""
    teacher = getattr(model, "teacher_model", lambda: None)()
    frozen = {id(m) for m in teacher.modules()} if teacher is not None else set()
    return [m for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats and id(m) not in frozen]


@torch.no_grad()
def recalibrate_bn(supernet: Supernet, config: Config, loader: Iterable, batches: int = 20) -> Config:
    """Reset and re-estimate BN running statistics of ``config`` on up to ``batches`` batches of ``loader``.

    Statistics are a cumulative average over the batches (``momentum=None``),
    not an exponential one, so every batch counts equally. The loader should be
    shuffled: the variance is the mean of per-batch variances, which is far too
    small if each batch holds one class (splits sorted by class). The model is
    left in eval mode with ``config`` active; the validated config is returned.
    """
    if batches < 1:
        raise UserError(f"batches must be a positive integer, got {batches}")
    config = supernet.activate(config)
    layers = batchnorm_layers(supernet)
    if not layers:  # e.g. a transformer (layer norm only): nothing to re-estimate, so no forward passes
        supernet.eval()
        return config
    momenta = [bn.momentum for bn in layers]
    for bn in layers:
        bn.reset_running_stats()
        bn.momentum = None
    supernet.train()
    seen = 0
    try:
        for seen, batch in enumerate(loader, start=1):
            x = batch[0] if isinstance(batch, (list, tuple)) else batch
            supernet(supernet.prepare_input(x, config))
            if seen >= batches:
                break
    finally:
        for bn, momentum in zip(layers, momenta):
            bn.momentum = momentum
        supernet.eval()
    if seen == 0:
        raise UserError("recalibrate_bn: the loader gave no batches; pass the calibration split's loader")
    return config


def accuracy(model: nn.Module, loader: Iterable, prepare=None) -> float:
    """Top-1 accuracy in percent of ``model`` (in eval mode) over ``loader``; ``prepare(x)`` adapts inputs."""
    return top1_accuracy(model, loader, prepare)


def evaluate_subnet(supernet: Supernet, config: Config, calib_loader: Iterable, val_loader: Iterable, batches: int = 20) -> float:
    """Accuracy (percent) of sub-network ``config`` on ``val_loader`` after BN recalibration on ``calib_loader``."""
    config = recalibrate_bn(supernet, config, calib_loader, batches)
    return accuracy(supernet, val_loader, lambda x: supernet.prepare_input(x, config))
