"""Optimiser and learning-rate schedule: SGD/Adam(W) with weight-decay exclusions, cosine with warm-up."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from sliver.errors import UserError


def make_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float, momentum: float = 0.9,
                   nesterov: bool = True, no_decay_norm_bias: bool = True) -> torch.optim.Optimizer:
    """An optimiser whose 1-D parameters (norm weights, biases) get no weight decay when ``no_decay_norm_bias``.

    Decaying a norm's scale or a bias only shrinks it towards zero without
    regularising anything, which hurts small networks most.
    """
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if no_decay_norm_bias and p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr)
    raise UserError(f"train.optimizer must be one of ['sgd', 'adamw', 'adam'], got {name!r}")


@dataclass
class Segment:
    """``steps`` optimiser steps with a linear warm-up to ``lr`` then a cosine decay (one per progressive phase)."""

    steps: int
    lr: float


class WarmupCosine:
    """Learning-rate multiplier per step for ``torch.optim.lr_scheduler.LambdaLR``.

    Each segment warms up linearly over ``warmup_steps`` (at most half the
    segment) to its peak ``lr`` and decays along a cosine to
    ``final_lr_ratio * lr``. The multiplier is relative to ``base_lr``, the
    optimiser's initial learning rate. Only plain numbers are stored, so the
    scheduler's state dict stays small and picklable.
    """

    def __init__(self, segments: list[Segment], base_lr: float, warmup_steps: int, final_lr_ratio: float = 0.0) -> None:
        self.segments = [(s.steps, s.lr) for s in segments]
        self.base_lr, self.warmup_steps, self.final_lr_ratio = base_lr, warmup_steps, final_lr_ratio

    def lr(self, step: int) -> float:
        """Learning rate of optimiser step ``step`` (0-based); past the end, the last value."""
        start = 0
        for i, (steps, peak) in enumerate(self.segments):
            if step < start + steps or i == len(self.segments) - 1:
                t = min(step - start, steps - 1)
                warm = min(self.warmup_steps, steps // 2)
                if t < warm:
                    return peak * (t + 1) / (warm + 1)
                progress = (t - warm) / max(1, steps - warm - 1)
                floor = self.final_lr_ratio * peak
                return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * progress))
            start += steps
        raise ValueError("WarmupCosine needs at least one segment")

    def __call__(self, step: int) -> float:
        return self.lr(step) / self.base_lr
