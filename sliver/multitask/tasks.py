"""Tasks of a multi-task super-network, and the offline MNIST-5k data they share.

A :class:`Task` says how its decoder looks (``head``, a spec of
:class:`~sliver.elastic.multitask.ElasticMultiTask`), which field of a batch is
its target, its training loss and its per-example metric (with direction and
unit). Users add theirs with :func:`register_task`.

The built-in tasks share one input: a 14x14 down-sampled MNIST digit with
Gaussian noise added at a fixed seed. From it the network

* ``cls`` classifies the digit (cross-entropy; accuracy in %),
* ``denoise`` restores the clean 14x14 image (MSE; PSNR in dB),
* ``sr`` restores the clean 28x28 image, a 2x super-resolution (MSE; PSNR in dB).

Images are in [0, 1], so PSNR is ``10 log10(1 / MSE)`` per image, averaged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from sliver.core import Objective
from sliver.data import load_dataset
from sliver.errors import UserError
from sliver.train.trainer import distillation_loss

#: names of the tensors of a multi-task data set, in order; a batch is a dict with these keys
FIELDS = ("x", "label", "clean", "hr")


@dataclass(frozen=True)
class Task:
    """One task: its decoder head, its target field, loss, per-example metric and the metric's direction."""

    name: str
    head: dict[str, Any]
    target: str
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    #: per-example metric values (a 1-D tensor); the task's score is their mean
    metric: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    metric_name: str
    direction: str = "max"
    unit: str = ""
    description: str = ""
    #: loss of a sub-network's output against the largest network's (detached) output on the same batch, used by
    #: in-place distillation; None: the task learns from its targets only
    distill: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None

    @property
    def objective(self) -> Objective:
        """The objective ``<task>_<metric>`` (e.g. ``cls_accuracy``) that search and the store see."""
        return Objective(f"{self.name}_{self.metric_name}", self.direction, self.unit, "expensive", self.description)


def accuracy_per_example(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """100 for a correct top-1 prediction, 0 otherwise."""
    return (logits.argmax(1) == labels).float() * 100.0


def psnr_per_example(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of each image, for images in [0, 1] (predictions clipped to that range first)."""
    mse = (pred.clamp(0, 1) - target).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))


def _mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(pred, target)


def soft_label_loss(logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of ``logits`` against the teacher's soft labels (the teacher's softmax)."""
    return distillation_loss(logits, F.softmax(teacher_logits, 1))


TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    """Make ``task`` available by name (to configs, the trainer, the controller)."""
    if not task.name.isidentifier():
        raise UserError(f"task name {task.name!r} must be an identifier (letters, digits, _)")
    TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    """A registered task by name, or a one-line error listing them."""
    try:
        return TASKS[name]
    except KeyError:
        raise UserError(f"unknown task '{name}'; registered tasks: {sorted(TASKS)}") from None


register_task(Task("cls", {"type": "classify", "classes": 10}, "label", F.cross_entropy, accuracy_per_example,
                   "accuracy", "max", "%", "digit classification, top-1 on the validation split", soft_label_loss))
# The dense tasks have no distillation loss: their targets are exact, and the largest network's output is only a
# worse copy of them (mixing it in at half weight cost the small networks about 0.2 dB of denoising PSNR in
# 4-epoch trials on two seeds).
register_task(Task("denoise", {"type": "dense", "channels": 1, "scale": 1, "residual": True}, "clean", _mse,
                   psnr_per_example, "psnr", "max", "dB", "denoising of the 14x14 input, PSNR vs the clean image"))
register_task(Task("sr", {"type": "dense", "channels": 1, "scale": 2, "residual": True}, "hr", _mse,
                   psnr_per_example, "psnr", "max", "dB", "2x super-resolution to 28x28, PSNR vs the original"))


# ----------------------------------------------------------------------- data
@dataclass
class MultiTaskData:
    """Train / validation / calibration splits whose tensors are :data:`FIELDS`."""

    train: TensorDataset
    val: TensorDataset
    calib: TensorDataset
    image_size: int
    #: keyword arguments of :func:`load_multitask_data` that rebuild exactly these splits
    spec: dict[str, Any] = field(default_factory=dict)


def as_batch(tensors) -> dict[str, torch.Tensor]:
    """A loader's tuple of tensors as a dict keyed by :data:`FIELDS`."""
    return dict(zip(FIELDS, tensors))


def load_multitask_data(name: str = "mnist5k", seed: int = 0, noise_std: float = 0.2, low_res: int = 14,
                        val_fraction: float = 0.15, calib_fraction: float = 0.1) -> MultiTaskData:
    """The shared-input multi-task set built from a bundled grey-scale data set (offline).

    Splits are those of :func:`sliver.data.load_dataset` (stratified, seeded).
    Each image is brought back to [0, 1], area-down-sampled to ``low_res``, and
    Gaussian noise of ``noise_std`` is added from a generator seeded by ``seed``
    and the split, so every run sees the same noisy inputs.
    """
    if noise_std <= 0:
        raise UserError(f"data 'noise_std' must be positive, got {noise_std}")
    bundle = load_dataset(name, seed=seed, val_fraction=val_fraction, calib_fraction=calib_fraction)
    if bundle.input_shape[0] != 1:
        raise UserError(f"data '{name}': the multi-task set needs grey-scale images, got {bundle.input_shape[0]} channels")
    size = bundle.input_shape[1]
    if not 1 <= low_res < size:
        raise UserError(f"data 'low_res' must be between 1 and the image size {size} (exclusive), got {low_res}")
    mean, std = bundle.mean[0], bundle.std[0]

    def build(split: TensorDataset, index: int) -> TensorDataset:
        images, labels = split.tensors
        hr = (images * std + mean).clamp(0, 1)  # undo the data set's normalisation
        clean = F.interpolate(hr, size=(low_res, low_res), mode="area")
        gen = torch.Generator().manual_seed(seed * 1000 + index)
        noisy = clean + noise_std * torch.randn(clean.shape, generator=gen)
        return TensorDataset(noisy, labels, clean, hr)

    spec = {"name": name, "seed": seed, "noise_std": noise_std, "low_res": low_res,
            "val_fraction": val_fraction, "calib_fraction": calib_fraction}
    return MultiTaskData(build(bundle.train, 0), build(bundle.val, 1), build(bundle.calib, 2), low_res, spec)


def heads_for(tasks: list[str]) -> dict[str, dict[str, Any]]:
    """The ``heads`` argument of :class:`~sliver.elastic.multitask.ElasticMultiTask` for registered tasks."""
    if not tasks:
        raise UserError("'tasks' must name at least one task")
    return {t: dict(get_task(t).head) for t in tasks}
