"""Training a multi-task super-network: sandwich rule, configuration-invariant distillation (CI-KD), task balancing.

Each step trains the largest, the smallest and ``n`` random joint
encoder/decoder configs (:class:`sliver.train.sampling.SandwichRule`) and
accumulates their gradients into one optimiser step. Every config is trained
on the task losses. Every config but the largest is also distilled from the
largest one on the same batch (its outputs and features detached, so students
never pull the teacher towards themselves), which makes a sub-network behave
like the full network whatever widths run it:

* CI-KD on features (ECMT): ``ci_kd`` times the mean squared difference between
  its shared features and the first channels of the largest encoder's features,
  so every decoder can rely on the same representation;
* in-place distillation of outputs: for tasks with a ``distill`` loss (the
  classifier: the teacher's soft labels), a share ``distill_weight`` of the
  task loss is taken against the largest network's output instead of the target.

Task losses are summed with fixed weights or with uncertainty weighting
(Kendall et al., 2018: ``exp(-s_t) L_t + s_t`` with a learned ``s_t`` per task).

The generic :class:`sliver.train.Trainer` does not host this loop: it assumes
one logits tensor per forward pass and a label-only loss (see the report of
issue 11 for what it would need). This loop reuses its sampling rule,
optimiser, schedule, BN recalibration and atomic checkpoints, and resumes
exactly at epoch boundaries (the data order of an epoch is seeded by the run's
seed and the epoch; the rule's generator state is checkpointed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Literal

import torch
import torch.nn.functional as F
import yaml
from pydantic import Field, PositiveInt, model_validator
from torch import nn

from sliver.config import ConfigError, StrictModel, read_yaml, validate
from sliver.data import loader
from sliver.elastic.multitask import ElasticMultiTask
from sliver.multitask.evaluate import measure_config, task_scores
from sliver.multitask.tasks import MultiTaskData, Task, as_batch, get_task, heads_for, load_multitask_data
from sliver.space import Config
from sliver.train.checkpoint import load_checkpoint, load_weights, remove_stale_temporaries, save_checkpoint
from sliver.train.sampling import SandwichRule
from sliver.train.schedule import Segment, WarmupCosine, make_optimizer

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"


# ----------------------------------------------------------------------- config
class DataSection(StrictModel):
    """Arguments of :func:`sliver.multitask.tasks.load_multitask_data`."""

    name: str = "mnist5k"
    seed: int = 0
    noise_std: float = Field(0.2, gt=0)
    low_res: PositiveInt = 14
    val_fraction: float = Field(0.15, gt=0, lt=1)
    calib_fraction: float = Field(0.1, gt=0, lt=1)


class NetSection(StrictModel):
    """Constructor arguments of :class:`ElasticMultiTask` (heads come from ``tasks``, image size from the data)."""

    family: Literal["multitask"] = "multitask"
    encoder_widths: list[PositiveInt] = Field([16, 32, 32], min_length=1)
    encoder_strides: list[Literal[1, 2]] | None = None
    width_mults: list[float] = Field([0.25, 0.5, 0.75, 1.0], min_length=1)
    decoder_width: PositiveInt = 32
    decoder_mults: list[float] = Field([0.25, 0.5, 0.75, 1.0], min_length=1)


class TrainSection(StrictModel):
    """Optimisation of a multi-task run."""

    epochs: PositiveInt = 10
    batch_size: PositiveInt = 64
    optimizer: Literal["sgd", "adamw", "adam"] = "adamw"
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    warmup_epochs: float = Field(0.5, ge=0)
    #: random configs per step besides the largest and the smallest (sandwich rule)
    n: int = Field(2, ge=0)
    #: weight of the CI-KD loss on encoder features (0 turns it off). The loss is a raw MSE of post-BN features;
    #: at 1.0 it outweighed the dense tasks' losses (about 0.01 each) and traded their PSNR for accuracy,
    #: a net loss on the small networks; 0.1 keeps it a regulariser
    ci_kd: float = Field(0.1, ge=0)
    #: share of a sub-network's task loss taken against the largest network's output, for tasks with a
    #: ``distill`` loss (in-place distillation; 0 turns it off)
    distill_weight: float = Field(0.5, ge=0, le=1)
    #: "uncertainty" (learned) or a fixed weight per task
    task_weights: Literal["uncertainty"] | dict[str, float] = "uncertainty"
    #: batches of the calibration split that re-estimate BN statistics before each evaluation
    bn_batches: PositiveInt = 10
    seed: int = 0
    #: torch intra-op threads (default: leave torch's setting)
    threads: PositiveInt | None = None


class MultiTaskRunConfig(StrictModel):
    """A whole multi-task training config (``examples/multitask_mnist.yaml``)."""

    tasks: list[str] = Field(["cls", "denoise", "sr"], min_length=1)
    supernet: NetSection = Field(default_factory=NetSection)
    data: DataSection = Field(default_factory=DataSection)
    train: TrainSection = Field(default_factory=TrainSection)

    @model_validator(mode="after")
    def _weights_name_tasks(self) -> "MultiTaskRunConfig":
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"'tasks' lists a task twice: {self.tasks}")
        w = self.train.task_weights
        if isinstance(w, dict) and set(w) != set(self.tasks):
            raise ValueError(f"'train.task_weights' must give one weight for each task {self.tasks}, got {sorted(w)}")
        if isinstance(w, dict) and any(v < 0 for v in w.values()):
            raise ValueError("'train.task_weights' must be non-negative")
        return self


def load_run_config(path: str | Path) -> tuple[MultiTaskRunConfig, str]:
    """Read and validate a multi-task training YAML; returns the config and its text."""
    return validate(MultiTaskRunConfig, read_yaml(path), str(path)), Path(path).read_text()


def build_supernet(run: MultiTaskRunConfig, data: MultiTaskData) -> ElasticMultiTask:
    """The super-network a run config describes, for the tasks' heads and the data's image size."""
    for t in run.tasks:
        get_task(t)  # unknown task -> one-line error
    args = run.supernet.model_dump(exclude={"family"}, exclude_none=True)
    try:
        return ElasticMultiTask(heads_for(run.tasks), in_channels=1, image_size=data.image_size, **args)
    except ValueError as exc:
        raise ConfigError(f"supernet: {exc}") from None


# ----------------------------------------------------------------------- losses
def ci_kd_loss(features: torch.Tensor, full_features: torch.Tensor) -> torch.Tensor:
    """CI-KD: mean squared difference between a config's features and the full encoder's first channels (detached)."""
    return F.mse_loss(features, full_features[:, : features.shape[1]].detach())


def ci_kd(supernet: ElasticMultiTask, x: torch.Tensor, config: Config) -> torch.Tensor:
    """The CI-KD loss of ``config`` on batch ``x`` (zero for the largest config); leaves ``config`` active."""
    supernet.activate(supernet.max_config())
    full = supernet.encode(x).detach()
    supernet.activate(config)
    return ci_kd_loss(supernet.encode(x), full)


class TaskWeighting(nn.Module):
    """Sums task losses with fixed weights, or with learned uncertainty weights ``exp(-s_t) L_t + s_t``."""

    def __init__(self, tasks: list[str], weights: Literal["uncertainty"] | dict[str, float]) -> None:
        super().__init__()
        self.tasks = list(tasks)
        self.uncertainty = weights == "uncertainty"
        if self.uncertainty:
            self.log_vars = nn.Parameter(torch.zeros(len(self.tasks)))
        else:
            self.register_buffer("fixed", torch.tensor([float(weights[t]) for t in self.tasks]))

    def forward(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        stacked = torch.stack([losses[t] for t in self.tasks])
        if self.uncertainty:
            return (torch.exp(-self.log_vars) * stacked + self.log_vars).sum()
        return (self.fixed * stacked).sum()

    def weights(self) -> dict[str, float]:
        """The current weight of each task's loss."""
        w = torch.exp(-self.log_vars) if self.uncertainty else self.fixed
        return {t: float(v) for t, v in zip(self.tasks, w.detach())}


def task_losses(outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], tasks: list[Task],
                teacher: dict[str, torch.Tensor] | None = None, distill_weight: float = 0.0) -> dict[str, torch.Tensor]:
    """Each task's loss; with ``teacher`` outputs (detached), a share ``distill_weight`` of it is the task's distill loss."""
    losses = {}
    for t in tasks:
        loss = t.loss(outputs[t.name], batch[t.target])
        if teacher is not None and distill_weight > 0 and t.distill is not None:
            loss = (1 - distill_weight) * loss + distill_weight * t.distill(outputs[t.name], teacher[t.name].detach())
        losses[t.name] = loss
    return losses


# ----------------------------------------------------------------------- loops
def _epoch_batches(data: MultiTaskData, batch_size: int, seed: int, epoch: int):
    """The training batches of ``epoch`` (a permutation seeded by the run's seed and the epoch; last partial batch dropped)."""
    n = len(data.train)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    for b in range(n // batch_size):
        idx = order[b * batch_size:(b + 1) * batch_size]
        yield as_batch(t[idx] for t in data.train.tensors)


def _optimiser(model: nn.Module, t: TrainSection, steps_per_epoch: int):
    opt = make_optimizer(model, t.optimizer, t.lr, t.weight_decay)
    schedule = WarmupCosine([Segment(t.epochs * steps_per_epoch, t.lr)], t.lr, round(t.warmup_epochs * steps_per_epoch))
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, schedule)


def _steps_per_epoch(data: MultiTaskData, t: TrainSection) -> int:
    steps = len(data.train) // t.batch_size
    if steps == 0:
        raise ConfigError(f"field 'train.batch_size': {t.batch_size} is larger than the {len(data.train)} training images")
    return steps


def _check_fit(model: nn.Module, data: MultiTaskData, tasks: list[Task]) -> None:
    """Fail early, in one line, if a task's output does not match its target's shape."""
    batch = as_batch(t[:2] for t in data.calib.tensors)
    model.eval()
    with torch.no_grad():
        out = model(batch["x"])
    for t in tasks:
        got, target = tuple(out[t.name].shape), batch[t.target]
        # dense targets must match pixel for pixel; class labels need one row of scores per example
        fits = got == tuple(target.shape) if target.dtype.is_floating_point else got[:1] == tuple(target.shape)
        if not fits:
            raise ConfigError(f"task '{t.name}': output shape {got} does not fit its target {tuple(target.shape)}; "
                              "check data.low_res against the head's scale")


def train_supernet(run: MultiTaskRunConfig, out_dir: str | Path, *, data: MultiTaskData | None = None,
                   config_text: str | None = None, log: Callable[[str], None] | None = None) -> tuple[ElasticMultiTask, Path]:
    """Train (or resume, if ``out_dir`` holds a checkpoint) a multi-task super-network; returns it and its checkpoint.

    After every epoch the largest and smallest configs are evaluated (BN
    recalibrated), a line is appended to ``metrics.jsonl`` and the checkpoint
    is written atomically.
    """
    t = run.train
    if t.threads:
        torch.set_num_threads(t.threads)
    data = data if data is not None else load_multitask_data(**run.data.model_dump())
    torch.manual_seed(t.seed)  # initial weights depend on the seed only
    supernet = build_supernet(run, data)
    tasks = [get_task(n) for n in run.tasks]
    _check_fit(supernet, data, tasks)
    weighting = TaskWeighting(run.tasks, t.task_weights)
    trainable = nn.ModuleDict({"net": supernet, "weighting": weighting})
    steps_per_epoch = _steps_per_epoch(data, t)
    optimizer, scheduler = _optimiser(trainable, t, steps_per_epoch)
    rule = SandwichRule(supernet.space, n=t.n, distill=False, seed=t.seed)
    out = Path(out_dir)
    path, metrics_path = out / CHECKPOINT, out / METRICS
    config_text = config_text or yaml.safe_dump(run.model_dump(mode="json"), sort_keys=False)
    epoch = 0
    remove_stale_temporaries(path)
    if path.exists():
        state = load_checkpoint(path)
        load_weights(supernet, state, str(path))
        if state.get("data") != data.spec:
            raise ConfigError(f"{path} was trained on data {state.get('data')} but the config asks for {data.spec}; use a new output folder")
        weighting.load_state_dict(state["weighting"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict({**state["scheduler"], "lr_lambdas": [None]})
        rule.load_state_dict(state["sampler"])
        epoch = int(state["epoch"])
    step = epoch * steps_per_epoch
    while epoch < t.epochs:
        trainable.train()
        total, count = 0.0, 0
        for batch in _epoch_batches(data, t.batch_size, t.seed, epoch):
            optimizer.zero_grad(set_to_none=True)
            full = teacher = None
            for pick in rule.picks(step):  # the largest config comes first: it is every other config's teacher
                supernet.activate(pick.config)
                features = supernet.encode(batch["x"])
                outputs = supernet.decode(features, batch["x"])
                if pick.role == "max":
                    full, teacher = features.detach(), {k: v.detach() for k, v in outputs.items()}
                    loss = weighting(task_losses(outputs, batch, tasks))
                else:
                    loss = weighting(task_losses(outputs, batch, tasks, teacher, t.distill_weight))
                    if t.ci_kd > 0:
                        loss = loss + t.ci_kd * ci_kd_loss(features, full)
                loss.backward()
                total, count = total + float(loss.detach()), count + 1
            optimizer.step()
            scheduler.step()
            step += 1
        epoch += 1
        record = {"epoch": epoch, "loss": total / max(count, 1), "lr": scheduler.get_last_lr()[0],
                  "weights": weighting.weights()}
        for name, cfg in (("max", supernet.max_config()), ("min", supernet.min_config())):
            record[name] = measure_config(supernet, cfg, data, t.bn_batches)
        save_checkpoint(path, {
            "supernet": supernet.supernet_config(), "model": supernet.state_dict(),
            "weighting": weighting.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"},
            "sampler": rule.state_dict(), "epoch": epoch, "step": step, "config_yaml": config_text,
            "data": data.spec, "tasks": run.tasks, "finished": epoch >= t.epochs,
        })
        with metrics_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if log is not None:
            log(_format_record(record))
    supernet.eval()
    return supernet, path


def train_plain(model: nn.Module, data: MultiTaskData, tasks: list[str], train: TrainSection) -> dict[str, float]:
    """Train a plain multi-task model alone from scratch (the baseline of the quality benchmark); returns its val scores.

    Same optimiser, schedule, data order and task weighting as the super-network,
    one network per step, no distillation.
    """
    if train.threads:
        torch.set_num_threads(train.threads)
    task_objs = [get_task(n) for n in tasks]
    weighting = TaskWeighting(tasks, train.task_weights)
    trainable = nn.ModuleDict({"net": model, "weighting": weighting})
    steps_per_epoch = _steps_per_epoch(data, train)
    optimizer, scheduler = _optimiser(trainable, train, steps_per_epoch)
    for epoch in range(train.epochs):
        trainable.train()
        for batch in _epoch_batches(data, train.batch_size, train.seed, epoch):
            optimizer.zero_grad(set_to_none=True)
            weighting(task_losses(model(batch["x"]), batch, task_objs)).backward()
            optimizer.step()
            scheduler.step()
    return task_scores(model.eval(), loader(data.val, 256), task_objs)


def _format_record(r: dict[str, Any]) -> str:
    fmt = lambda d: " ".join(f"{k} {v:.2f}" for k, v in d.items())  # noqa: E731
    return f"epoch {r['epoch']} loss {r['loss']:.3f} lr {r['lr']:.4f} | max: {fmt(r['max'])} | min: {fmt(r['min'])}"
