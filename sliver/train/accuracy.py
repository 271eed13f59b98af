"""Top-1 accuracy of a model on a labelled data set (optionally a seeded subset, for speed), and the perplexity
of a language model on rows of next-token targets."""

from __future__ import annotations

import time
from typing import Callable, Iterable

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from sliver.errors import UserError


def subset(dataset: Dataset, fraction: float | None, seed: int = 0) -> Dataset:
    """A seeded random ``fraction`` of ``dataset`` (all of it for None or 1.0)."""
    if fraction is None or fraction >= 1.0:
        return dataset
    if not 0.0 < fraction < 1.0:
        raise UserError(f"accuracy subset fraction must be in (0, 1], got {fraction}")
    n = len(dataset)  # type: ignore[arg-type]
    k = max(1, int(round(n * fraction)))
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:k]
    return Subset(dataset, idx.sort().values.tolist())


def top1_accuracy(
    model: nn.Module,
    data: Dataset | Iterable,
    prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
    batch_size: int = 256,
    deadline: float | None = None,
) -> float:
    """Percentage of samples whose arg-max prediction equals the label.

    ``data`` is a dataset (batched here by ``batch_size``) or any iterable of
    ``(x, y)`` batches, e.g. a loader. ``prepare`` adapts each input batch
    (e.g. resizing to the config's resolution); ``deadline`` (a
    ``time.monotonic()`` value) raises :class:`TimeoutError` between batches once passed.
    """
    model.eval()
    correct = total = 0
    batches = DataLoader(data, batch_size=batch_size, shuffle=False) if isinstance(data, Dataset) else data
    with torch.inference_mode():
        for x, y in batches:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"accuracy took longer than its time limit after {total} samples")
            if prepare is not None:
                x = prepare(x)
            correct += int((model(x).argmax(dim=1) == y).sum())
            total += len(y)
    if total == 0:
        raise UserError("accuracy: the validation set is empty")
    return 100.0 * correct / total


def perplexity(model: nn.Module, data: Dataset | Iterable,
               prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
               batch_size: int = 16, deadline: float | None = None) -> float:
    """exp(mean next-token cross-entropy) of a language model over ``(inputs, targets)`` rows of token ids.

    ``data``, ``prepare`` and ``deadline`` as in :func:`top1_accuracy`; every target token counts once.
    """
    import math

    import torch.nn.functional as F

    model.eval()
    nll, count = 0.0, 0
    batches = DataLoader(data, batch_size=batch_size, shuffle=False) if isinstance(data, Dataset) else data
    with torch.inference_mode():
        for x, y in batches:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"perplexity took longer than its time limit after {count} tokens")
            logits = model(prepare(x) if prepare is not None else x)
            nll += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1), reduction="sum"))
            count += y.numel()
    if count == 0:
        raise UserError("perplexity: the validation set is empty")
    return math.exp(nll / count)
