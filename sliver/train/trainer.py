"""The super-network trainer: one optimiser step per batch over the sub-networks a sampling rule picks.

Determinism is what makes resuming exact: the data order of epoch ``e`` is a
permutation seeded by ``(seed, e)``, the sampling rule draws from its own seeded
generator, and a checkpoint holds every state that changes (weights, optimiser,
scheduler, rule, RNGs, step). A run killed at any moment and restarted from its
last checkpoint therefore reaches bit-identical weights to an uninterrupted run.
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch.utils.data import Subset

from sliver.config import ConfigError
from sliver.data import DataBundle, load_dataset, loader
from sliver.elastic.base import Supernet
from sliver.errors import UserError
from sliver.space import Config, SpaceError
from sliver.train.bn import evaluate_subnet
from sliver.train.checkpoint import CheckpointError, load_checkpoint, load_weights, remove_stale_temporaries, save_checkpoint
from sliver.train.config import RunConfig
from sliver.train.sampling import FixedRule, NestedRule, Phase, ProgressiveRule, SamplingRule, SandwichRule, UniformRule, default_phases
from sliver.train.schedule import Segment, WarmupCosine, make_optimizer
from sliver.train.start import prepare_start

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
#: the sub-networks a 'fixed' run with 'targets' chose before training, and the store of that search
TARGETS = "targets.json"
TARGETS_STORE = "targets.db"


def distillation_loss(logits: torch.Tensor, soft_targets: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Cross-entropy of ``logits`` against the teacher's (detached) soft targets, scaled by T² as usual.

    Rows of float logits go through :class:`_SoftCrossEntropy`, which gives the
    same loss and gradient in fewer passes over them (a language model's rows
    are vocabulary-wide); anything else through ``F.cross_entropy``.
    """
    if logits.dim() == 2 and logits.is_floating_point() and not soft_targets.requires_grad:
        return _SoftCrossEntropy.apply(logits, soft_targets, float(temperature))
    return F.cross_entropy(logits / temperature, soft_targets) * temperature**2


class _SoftCrossEntropy(torch.autograd.Function):
    """``F.cross_entropy(z / T, p) * T²`` (mean over rows) whose gradient, ``(softmax(z / T) - p) * T / rows``,
    is computed in the forward, a block of rows at a time.

    Why: the autograd version makes about twice as many passes over the
    (rows x vocabulary) logits (divide, log-softmax, multiply, sum, and their
    backwards), each a memory-bound pass over hundreds of megabytes for a
    language model; blocks of rows small enough to stay in cache make each
    pass cheaper too. The saved gradient takes the memory the log-softmax
    output would have.
    """

    #: elements per block (16 MiB of float32)
    BLOCK = 1 << 22

    @staticmethod
    def forward(ctx, logits, soft, temperature):  # type: ignore[override]
        n, width = logits.shape
        grad = torch.empty_like(logits)
        total = 0.0
        step = max(1, _SoftCrossEntropy.BLOCK // max(width, 1))
        for i in range(0, n, step):
            z, p, g = logits[i:i + step], soft[i:i + step], grad[i:i + step]
            if temperature != 1.0:
                z = torch.div(z, temperature, out=g)
            lse = torch.logsumexp(z, dim=-1, keepdim=True)
            torch.sub(z, lse, out=g)  # the log-softmax, then the gradient
            total -= float(torch.mul(p, g).sum())  # sum p * (log-sum-exp - z / T), in double across blocks
            g.exp_().sub_(p)
        grad.mul_(temperature / n)
        ctx.save_for_backward(grad)
        return logits.new_tensor(total * temperature**2 / n)

    @staticmethod
    def backward(ctx, grad_output):  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        return grad * grad_output, None, None


def flat(logits: torch.Tensor) -> torch.Tensor:
    """Per-token logits (B, S, V) of a language model as (B * S, V) rows; class logits (B, C) unchanged."""
    return logits.reshape(-1, logits.shape[-1]) if logits.dim() == 3 else logits


def token_schedule(tokens: int, tokens_per_step: int, steps_per_pass: int) -> tuple[int, int]:
    """(epochs, steps per epoch) that spend ``tokens`` training tokens in equal epochs of at most one pass over
    the training split; the steps are rounded up to whole epochs, so at most one step per epoch more than asked."""
    steps = max(1, math.ceil(tokens / tokens_per_step))
    epochs = math.ceil(steps / steps_per_pass)
    return epochs, math.ceil(steps / epochs)


def middle_config(supernet: Supernet) -> Config:
    """The fixed middle sub-network: every gene at its middle choice."""
    return supernet.space.decode((supernet.space.gene_cardinalities - 1) // 2)


class Trainer:
    """Trains a super-network from a :class:`RunConfig`, writing checkpoints and metrics to ``out_dir``.

    If ``out_dir`` already holds a checkpoint, training resumes from it. ``supernet``
    and ``data`` may be given directly (otherwise they are built from the config).
    """

    def __init__(self, config: RunConfig, out_dir: str | Path, *, config_text: str | None = None,
                 supernet: Supernet | None = None, data: DataBundle | None = None, progress: bool = True) -> None:
        self.config, t = config, config.train
        self.out = Path(out_dir)
        self.config_text = config_text or yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
        self.progress = progress
        if t.threads:
            torch.set_num_threads(t.threads)
        torch.manual_seed(t.seed)  # the initial weights depend on the seed only
        if supernet is None:
            from sliver.elastic.spec import from_spec

            supernet = from_spec(config.supernet)
        self.supernet = supernet
        self.data = data if data is not None else load_dataset(**config.data.spec())
        self.checkpoint_path = self.out / CHECKPOINT
        remove_stale_temporaries(self.checkpoint_path)  # no rank saves before every rank has set up
        self.resumed = self.checkpoint_path.exists()
        self._check_fit()
        self.start_info: dict[str, Any] | None = None
        if t.start is not None and not self.resumed:  # a resumed run has these weights in its checkpoint
            self.start_info = prepare_start(self.supernet, self.data.train, probe_examples=t.start.probe_examples,
                                            reorder=t.start.reorder, importance_batches=t.start.importance_batches,
                                            batch_size=t.batch_size, seed=t.seed)
        self.language_model = self.data.task == "causal_lm"
        self.steps_per_epoch = len(self.data.train) // t.batch_size
        x_train = self.data.train.tensors[0]
        text = x_train.ndim == 2 and not torch.is_floating_point(x_train) and not self.language_model  # padded texts
        self._text_lengths = (x_train != getattr(self.supernet, "pad_id", 0)).sum(1) if text else None
        if self.steps_per_epoch == 0:
            raise ConfigError(f"field 'train.batch_size': {t.batch_size} is larger than the {len(self.data.train)} training examples")
        self.epochs = t.epochs
        if t.tokens is not None:
            self.epochs, self.steps_per_epoch = token_schedule(t.tokens, t.batch_size * x_train.shape[1],
                                                                self.steps_per_epoch)
        self.rule, segments = self._make_rule()
        self.teacher = self._frozen_teacher()
        if t.sampling.adapter_rank and getattr(self.supernet, "adapters", None) is None:
            if not hasattr(self.supernet, "add_target_adapters"):
                family = self.supernet.supernet_config().get("family")
                raise ConfigError(f"field 'train.sampling.adapter_rank': the {family} family has no target adapters "
                                  "(the llama family has); remove the field")
            # after the teacher copy and before the optimiser, so the adapters train and a checkpoint restores them
            self.supernet.add_target_adapters(self.rule.configs, t.sampling.adapter_rank, seed=t.seed)
        if isinstance(self.rule, FixedRule):  # the largest teaches only when no frozen original does
            self.rule.largest_teaches = self.rule.distill and self.teacher is None
        self.total_steps = sum(s.steps for s in segments)
        self.total_epochs = self.total_steps // self.steps_per_epoch
        self._freeze(t.freeze)
        self.optimizer = make_optimizer(self.supernet, t.optimizer, t.lr, t.weight_decay, t.momentum, t.nesterov, t.no_decay_norm_bias)
        self.schedule = WarmupCosine(segments, t.lr, round(t.warmup_epochs * self.steps_per_epoch), t.final_lr_ratio)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.schedule)
        self.step = 0
        #: seconds spent in training steps up to ``step``, summed over every process that trained this run
        self.train_seconds = 0.0
        self.metrics_done = 0  # epochs whose metrics line is written
        self._epoch_loss = [0.0, 0]  # running sum and count of the current epoch's step losses
        self.last_picks: list = []
        self.metrics_path = self.out / METRICS
        if self.resumed:
            self._resume()

    # ------------------------------------------------------------ set-up
    def _check_fit(self) -> None:
        """Fail early, in one line, if the data does not fit the super-network."""
        cfg = self.supernet.max_config()
        self.supernet.activate(cfg)
        x = self.data.calib.tensors[0][:2]
        self.supernet.eval()
        try:
            with torch.no_grad():
                out = self.supernet(self.supernet.prepare_input(x, cfg))
        except RuntimeError as exc:
            raise ConfigError(f"the data (images {self.data.input_shape}) does not fit the super-network: {str(exc).splitlines()[0]}") from None
        if out.shape[-1] != self.data.num_classes:
            raise ConfigError(f"the super-network has {out.shape[-1]} outputs but the data has {self.data.num_classes} classes; set supernet.num_classes: {self.data.num_classes}")

    def _freeze(self, prefixes: list[str]) -> None:
        """Leave the parameters named by ``prefixes`` out of training; a prefix that names none is an error."""
        names = dict(self.supernet.named_parameters())
        for prefix in prefixes:
            hit = [n for n in names if n == prefix or n.startswith(prefix + ".")]
            if not hit:
                top = sorted({n.split(".")[0] for n in names})
                raise ConfigError(f"field 'train.freeze': {prefix!r} names no parameter; top-level names are {top}")
            for n in hit:
                names[n].requires_grad_(False)

    def _frozen_teacher(self) -> torch.nn.Module | None:
        """The frozen original model every pick distils from, or None for in-place distillation."""
        s = self.config.train.sampling
        original = getattr(self.supernet, "teacher_model", lambda: None)()
        if s.teacher == "original" and original is None:
            raise ConfigError(f"field 'train.sampling.teacher': the {type(self.supernet).__name__} super-network carries no "
                              "original model; use 'largest' (family auto keeps one unless supernet.teacher is false)")
        if not self.rule.distill or s.teacher == "largest":
            return None
        if s.teacher is None and not getattr(self.supernet, "teacher_knows_task", False):
            return None  # a new classifier: the original model cannot teach these classes
        return original

    def _make_rule(self) -> tuple[SamplingRule, list[Segment]]:
        t, s, space = self.config.train, self.config.train.sampling, self.supernet.space
        one = [Segment(self.epochs * self.steps_per_epoch, t.lr)]
        if s.rule == "sandwich":
            return SandwichRule(space, n=2 if s.n is None else s.n, distill=s.distill, seed=t.seed, shared=s.shared or [],
                                draw=s.draw), one
        if s.rule == "uniform":
            return UniformRule(space, seed=t.seed, draw=s.draw), one
        if s.rule == "nested":
            return NestedRule(space, n=1 if s.n is None else s.n, levels=s.levels, seed=t.seed), one
        if s.rule == "fixed":
            for i, c in enumerate(s.configs or []):
                try:
                    space.validate(c)
                except SpaceError as exc:
                    raise ConfigError(f"field 'train.sampling.configs[{i}]': {exc}") from None
            configs = list(s.configs) if s.configs is not None else self._targets()
            return FixedRule(space, configs, distill=s.distill), one
        if t.tokens is not None:
            raise ConfigError("field 'train.tokens': a progressive run counts epochs per phase; use train.epochs")
        if s.phases:
            phases = [Phase(p.name, p.epochs, p.lr or t.lr, list(p.unlock)) for p in s.phases]
        else:
            phases = default_phases(space, t.epochs, t.lr)
        rule = ProgressiveRule(space, phases, self.steps_per_epoch, n=2 if s.n is None else s.n, distill=s.distill,
                               seed=t.seed, draw=s.draw)
        return rule, [Segment(p.epochs * self.steps_per_epoch, p.lr) for p in phases]

    def _targets(self) -> list[Config]:
        """Rule 'fixed' with 'targets': the sub-networks chosen for its sizes on the start weights (kept in targets.json).

        The choice is a search on the weights training starts from (after
        ``train.start``), so it runs once, before the first step, and is kept
        in the output folder; its measurements are kept in ``targets.db``, so
        a run killed during the choice resumes it.
        """
        from sliver.store import ResultStore
        from sliver.train.targets import choose_targets

        tg = self.config.train.sampling.targets
        assert tg is not None  # the config allows rule 'fixed' only with configs or targets
        path, wanted = self.out / TARGETS, tg.model_dump()
        if path.exists():
            kept = json.loads(path.read_text())
            if kept.get("targets") is not None:  # chosen before the hill climb existed: chosen without one
                kept["targets"].setdefault("refine", 0)
            if kept.get("targets") != wanted:
                raise ConfigError(f"field 'train.sampling.targets': {path} holds sub-networks chosen for "
                                  f"{kept.get('targets')}, not {wanted}; give the same targets or train in a new output folder")
            return kept["configs"]
        if self.resumed:
            raise CheckpointError(f"{path} is missing: the checkpoint in {self.out} trained sub-networks chosen "
                                  "before it; restore the file or train in a new output folder")
        self.out.mkdir(parents=True, exist_ok=True)
        quality = "perplexity" if self.language_model else "accuracy"

        def score(config: Config) -> float:
            return self.evaluate({"c": config}, val_examples=tg.val_examples)["c"]

        configs = choose_targets(self.supernet, score, tg.sizes, cost=tg.cost, budget=tg.budget, refine=tg.refine,
                                 quality_name=quality, lower_is_better=self.language_model, store=ResultStore(f"sqlite:///{self.out / TARGETS_STORE}"),
                                 evaluate_name=f"targets:{quality}:{tg.val_examples}", seed=self.config.train.seed,
                                 where="train.sampling.targets.")
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"targets": wanted, "configs": configs}, indent=1))
        tmp.replace(path)
        if self.progress:
            print(f"targets: {len(configs)} sub-networks chosen for sizes {tg.sizes} of the largest's {tg.cost} "
                  f"(kept in {path})", flush=True)
        return configs

    # ------------------------------------------------------------ training
    def epoch_order(self, epoch: int) -> torch.Tensor:
        """The permutation of training examples in ``epoch`` (seeded by the run's seed and the epoch).

        Token-id data gets length-bucketed batches (:func:`sliver.text.length_bucketed_order`):
        with dynamic padding a batch costs its longest text, so similar lengths per batch
        cut a text step's time without fixing which texts share a batch.
        """
        gen = torch.Generator().manual_seed(self.config.train.seed * 1_000_003 + epoch)
        if self._text_lengths is not None:
            from sliver.text import length_bucketed_order

            return length_bucketed_order(self._text_lengths, self.config.train.batch_size, gen)
        return torch.randperm(len(self.data.train), generator=gen)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """One optimiser step over the rule's picks, gradients accumulated; returns the mean pick loss."""
        t, s = self.config.train, self.config.train.sampling
        self.supernet.train()
        self.optimizer.zero_grad(set_to_none=True)
        picks = self.rule.picks(self.step)
        soft, losses = None, []
        if self.teacher is not None:  # every pick, the largest too, learns from the frozen original model
            with torch.no_grad():
                teacher_logits = self.teacher(self.supernet.prepare_input(x, self.supernet.max_config()))
            soft = F.softmax(flat(teacher_logits) / s.temperature, dim=-1)
        y = y.reshape(-1)  # next-token targets (B, S) -> (B * S,), as flat() does to logits
        for pick, weight in zip(picks, self._loss_weights(picks)):
            config = self.supernet.activate(pick.config)
            logits = flat(self.supernet(self.supernet.prepare_input(x, config)))
            if soft is not None and (not pick.teacher or self.teacher is not None):
                loss = distillation_loss(logits, soft, s.temperature)
                if s.distill_weight < 1:
                    # the labels keep the students learning while the teacher is still poor
                    hard = F.cross_entropy(logits, y, label_smoothing=t.label_smoothing)
                    loss = s.distill_weight * loss + (1 - s.distill_weight) * hard
            else:
                loss = F.cross_entropy(logits, y, label_smoothing=t.label_smoothing)
            if pick.teacher and self.rule.distill and self.teacher is None:
                # detached: the students must not push the teacher towards themselves
                soft = F.softmax(logits.detach() / s.temperature, dim=-1)
            (weight * loss).backward()  # one backward per pick frees its graph before the next forward
            losses.append(float(loss.detach()))
        if t.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.supernet.parameters(), t.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.last_picks = picks
        return sum(losses) / len(losses)

    def _loss_weights(self, picks) -> list[float]:
        """Each pick's loss weight: its cost to the power ``-sampling.size_weight``, the weights averaging 1 (all 1 at 0)."""
        s = self.config.train.sampling
        if not s.size_weight or len(picks) < 2:
            return [1.0] * len(picks)
        cost = s.targets.cost if s.targets is not None else "params"
        raw = [float(self.supernet.costs(p.config)[cost]) ** -s.size_weight for p in picks]
        return [w * len(raw) / sum(raw) for w in raw]

    def fit(self, max_steps: int | None = None) -> dict[str, Any]:
        """Train to the end (or stop after global step ``max_steps`` without saving, as a kill would).

        Returns a summary with the step reached, the checkpoint path and hash, and the last metrics.
        """
        t = self.config.train
        self.out.mkdir(parents=True, exist_ok=True)
        self._trim_metrics()
        x_all, y_all = self.data.train.tensors
        bs, spe = t.batch_size, self.steps_per_epoch
        summary: dict[str, Any] = {"checkpoint": str(self.checkpoint_path), "stopped": False}
        columns = [
            TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[epochs]}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.3f}"), TextColumn("{task.fields[ips]:.0f} ex/s"),
            TimeElapsedColumn(), TimeRemainingColumn(),
        ]
        # a finished run resumed (e.g. by a benchmark going on to its next stage) draws no bar: there is nothing to show
        with Progress(*columns, disable=not self.progress or self.step >= self.total_steps) as bar:
            task = bar.add_task("train", total=self.total_steps, completed=self.step, epoch=self.step // spe + 1,
                                epochs=self.total_epochs, loss=float("nan"), ips=0.0)
            order, order_epoch, epoch_seconds = None, -1, 0.0
            while self.step < self.total_steps:
                epoch = self.step // spe
                if epoch != order_epoch:
                    order, order_epoch, epoch_seconds = self.epoch_order(epoch), epoch, 0.0
                b = self.step % spe
                idx = order[b * bs:(b + 1) * bs]
                start = time.perf_counter()
                loss = self.train_step(x_all[idx], y_all[idx])
                seconds = time.perf_counter() - start
                epoch_seconds += seconds
                self.train_seconds += seconds
                self.step += 1
                self._epoch_loss = [self._epoch_loss[0] + loss, self._epoch_loss[1] + 1]
                bar.update(task, advance=1, epoch=epoch + 1, loss=loss, ips=bs / max(seconds, 1e-9))
                if self.step % spe == 0:
                    record = self._end_epoch(epoch, epoch_seconds)
                    summary["metrics"] = record
                    if self.progress:
                        bar.console.print(_format_record(record, self.metric_prefix))
                elif self.step % t.checkpoint_every == 0:
                    self.save()
                if max_steps is not None and self.step >= max_steps and self.step < self.total_steps:
                    summary["stopped"] = True
                    break
        summary.update(step=self.step, epochs=self.total_epochs, finished=self.step >= self.total_steps,
                       train_seconds=round(self.train_seconds, 1))
        if self.checkpoint_path.exists():
            summary["hash"] = load_checkpoint(self.checkpoint_path)["hash"]
        return summary

    def _end_epoch(self, epoch: int, train_seconds: float) -> dict[str, Any]:
        total, count = self._epoch_loss
        record = {
            "epoch": epoch + 1,
            "step": self.step,
            "phase": self.rule.phase(self.step - 1),
            "lr": self.schedule.lr(self.step - 1),
            "loss": total / max(count, 1),
            **{f"{self.metric_prefix}_{k}": v for k, v in self.evaluate().items()},
            "train_seconds": round(train_seconds, 3),
            "images_per_s": round(count * self.config.train.batch_size / max(train_seconds, 1e-9), 1),
        }
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        self.metrics_done = epoch + 1
        self._epoch_loss = [0.0, 0]
        self.save()
        return record

    # ------------------------------------------------------------ evaluation
    @property
    def metric_prefix(self) -> str:
        """``ppl`` for a language model (perplexity, lower is better), else ``acc`` (top-1 %)."""
        return "ppl" if self.language_model else "acc"

    def epoch_configs(self) -> dict[str, Config]:
        """The sub-networks each epoch's metrics score, by name: the largest, middle and smallest (``max``,
        ``mid``, ``min``) and, under rule ``fixed``, the ones it trains (``fixed1``, ``fixed2``, ... in its order),
        since those are the networks the run is for."""
        net = self.supernet
        configs = {"max": net.max_config(), "mid": middle_config(net), "min": net.min_config()}
        if isinstance(self.rule, FixedRule):
            configs.update({f"fixed{i}": c for i, c in enumerate(self.rule.configs, 1)})
        return configs

    def evaluate(self, configs: dict[str, Config] | None = None, val_examples: int | None = None) -> dict[str, float]:
        """Validation accuracy (percent) of each named sub-network after BN recalibration (default: the
        :meth:`epoch_configs`); for a language model, its validation perplexity. ``val_examples``: score only
        the first that many. A network listed under two names is scored once.

        The super-network's BN buffers are restored afterwards, so evaluating
        never changes what training does next.
        """
        net = self.supernet
        named = configs or self.epoch_configs()
        keys = {name: net.space.key(cfg) for name, cfg in named.items()}
        configs = {keys[name]: cfg for name, cfg in named.items()}  # each distinct network once
        val = self.data.val if val_examples is None else Subset(self.data.val, range(min(val_examples, len(self.data.val))))
        if self.language_model:
            from sliver.train.accuracy import perplexity

            scores = {}
            for key, cfg in configs.items():
                net.activate(cfg)
                scores[key] = perplexity(net, val)
            return {name: scores[keys[name]] for name in named}
        saved = [b.detach().clone() for b in net.buffers()]
        # shuffled: the splits keep the data set's order (often sorted by class), and per-batch
        # variances of one-class batches average to far less than the true variance
        calib = loader(self.data.calib, self.config.train.batch_size, shuffle=True, seed=self.config.train.seed)
        batches = loader(val, 256)
        try:
            scores = {key: evaluate_subnet(net, cfg, calib, batches, self.config.train.bn_batches) for key, cfg in configs.items()}
            return {name: scores[keys[name]] for name in named}
        finally:
            with torch.no_grad():
                for b, s in zip(net.buffers(), saved):
                    b.copy_(s)

    # ------------------------------------------------------------ checkpoints
    def save(self) -> str:
        """Write the checkpoint atomically; returns the weights hash."""
        scheduler = self.scheduler.state_dict()
        scheduler.pop("lr_lambdas", None)  # the schedule itself comes from the config
        np_state = np.random.get_state()
        state = {
            "supernet": self.supernet.supernet_config(),
            "space": self.supernet.space.to_dict(),
            "model": self.supernet.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": scheduler,
            "sampler": self.rule.state_dict(),
            "step": self.step,
            "train_seconds": self.train_seconds,
            "epoch": self.step // self.steps_per_epoch,
            "metrics_done": self.metrics_done,
            "epoch_loss": list(self._epoch_loss),
            "rng": {
                "python": random.getstate(),
                "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
                "torch": torch.get_rng_state(),
            },
            "config_yaml": self.config_text,
            "data": self.data.spec,
            "finished": self.step >= self.total_steps,
        }
        return save_checkpoint(self.checkpoint_path, state)

    def _resume(self) -> None:
        state = load_checkpoint(self.checkpoint_path)
        load_weights(self.supernet, state, str(self.checkpoint_path))
        if state.get("data") != self.data.spec:
            raise CheckpointError(f"{self.checkpoint_path} was trained on data {state.get('data')} but the config asks for {self.data.spec}; use a new output folder")
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            # None keeps the schedule built from the config (see save)
            self.scheduler.load_state_dict({**state["scheduler"], "lr_lambdas": [None] * len(self.scheduler.lr_lambdas)})
            self.rule.load_state_dict(state["sampler"])
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"{self.checkpoint_path}: cannot resume with this config ({exc})") from None
        self.step, self.metrics_done = int(state["step"]), int(state["metrics_done"])
        self.train_seconds = float(state.get("train_seconds", 0.0))  # absent from checkpoints of older versions
        self._epoch_loss = list(state["epoch_loss"])
        rng = state["rng"]
        random.setstate(rng["python"])
        np_state = rng["numpy"]
        np.random.set_state((np_state[0], np.asarray(np_state[1], dtype=np.uint32), *np_state[2:]))
        torch.set_rng_state(rng["torch"])

    def _trim_metrics(self) -> None:
        """Drop metrics lines of epochs the checkpoint has not finished (a kill between writing them and saving)."""
        if not self.metrics_path.exists():
            return
        lines = self.metrics_path.read_text().splitlines()
        keep = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                if number == len(lines):  # a half-written last line: what a kill during the write leaves
                    break
                raise UserError(f"{self.metrics_path}: line {number} is not a JSON record; delete that line to resume") from None
            if not isinstance(record, dict) or record.get("epoch", 0) <= self.metrics_done:
                keep.append(line)
        if len(keep) != len(lines):
            self.metrics_path.write_text("".join(ln + "\n" for ln in keep))


def fixed_scores(record: dict[str, Any], metric: str = "acc") -> list[tuple[str, float]]:
    """``(name, score)`` of each trained network of a ``fixed`` run in an epoch's metrics record (``fixed1``, ...)."""
    return [(k[len(metric) + 1:], v) for k, v in record.items() if k.startswith(f"{metric}_fixed")]


def _format_record(r: dict[str, Any], metric: str = "acc") -> str:
    fixed = "".join(f" {name} {v:.2f}" for name, v in fixed_scores(r, metric))
    return (f"epoch {r['epoch']} [{r['phase']}] loss {r['loss']:.3f} lr {r['lr']:.4f} | {metric} max "
            f"{r[f'{metric}_max']:.2f} mid {r[f'{metric}_mid']:.2f} min {r[f'{metric}_min']:.2f}{fixed} | "
            f"{r['images_per_s']:.0f} examples/s")
