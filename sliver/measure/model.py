"""`ModelEvaluator`: measures sub-networks of a super-network on one hardware target.

For each config it recalibrates batch norm (only when accuracy is asked for),
extracts the sub-network once as a plain PyTorch model, then measures every
requested objective on that model. A language model (``ElasticLlama``) has
its own objectives (perplexity, prefill and decode latency, parameters without
embeddings, KV-cache bytes), measured by :mod:`sliver.measure.language`. Each
objective fails on its own: its
exception is returned in place of the value, and the others are still
measured. ``measure`` returns a :class:`~sliver.measure.base.Measured` with
each objective's seconds and statistics (latency IQR, runs, ...), which
:func:`sliver.measure.evaluator.evaluate` stores.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from sliver.core import Objective, get_objective
from sliver.elastic.base import Supernet
from sliver.errors import UserError
from sliver.measure import language
from sliver.measure.base import Measured
from sliver.measure.hardware import HardwareTarget
from sliver.measure.latency import measure_latency
from sliver.space import Config
from sliver.train.accuracy import subset, top1_accuracy

#: objectives whose value depends on the hardware target (keyed by its fingerprint); the rest use "any"
HARDWARE_OBJECTIVES = frozenset({"latency_ms", "peak_memory"}) | language.LM_HARDWARE
#: objectives computed from the config alone (``supernet.costs``), without extracting the model
COST_OBJECTIVES = frozenset({"macs", "params"}) | language.LM_COSTS
DEFAULT_OBJECTIVES = ("accuracy", "latency_ms", "macs", "params", "model_size", "peak_memory")


class ModelEvaluator:
    """The :class:`~sliver.measure.base.Evaluator` of a super-network on a :class:`HardwareTarget`.

    ``data`` is a :class:`sliver.data.DataBundle` (needed for ``accuracy`` and
    ``perplexity`` only: BN statistics are re-estimated on ``calib_batches``
    batches of its calibration split, accuracy is top-1 on its validation split,
    or on a seeded ``accuracy_subset`` fraction of it; a language model's
    perplexity is taken on the same rows). ``timeout_s`` bounds each
    measurement: accuracy and perplexity stop between batches, latency caps its
    timed loop. An objective the super-network's kind cannot have (perplexity of
    an image classifier, accuracy of a language model) is a one-line ``UserError``.
    """

    def __init__(
        self,
        supernet: Supernet,
        target: HardwareTarget | str = "cpu-torch-b1",
        objectives: list[str] | tuple[str, ...] | None = None,
        data: Any = None,
        supernet_hash: str | None = None,
        accuracy_subset: float | None = None,
        seed: int = 0,
        calib_batches: int = 20,
        batch_size: int = 128,
        timeout_s: float = 300.0,
        recalibrate: Callable[..., Any] | None = None,
    ) -> None:
        self.supernet = supernet.eval()
        self.target = HardwareTarget.parse(target)
        self.quality = language.quality_objective(supernet)
        defaults = language.DEFAULT_LM_OBJECTIVES if self.quality == "perplexity" else DEFAULT_OBJECTIVES
        names = list(objectives) if objectives is not None else [
            n for n in defaults if n != self.quality or data is not None
        ]
        self.objectives: list[Objective] = [get_objective(n) for n in names]
        language.check_objectives(supernet, names)
        if self.quality in names and data is None:
            raise UserError(f"objective '{self.quality}' needs data (a DataBundle with val and calib splits); pass data=")
        if accuracy_subset is not None and not 0.0 < accuracy_subset <= 1.0:
            raise UserError(f"accuracy_subset must be in (0, 1], got {accuracy_subset}")
        self.space = supernet.space
        self.data = data
        self.supernet_hash = supernet_hash or supernet_state_hash(supernet)
        self.fingerprint = self.target.fingerprint_hash()
        self.accuracy_subset = accuracy_subset
        self.seed = seed
        self.calib_batches = calib_batches
        self.batch_size = batch_size
        self.timeout_s = timeout_s
        self._recalibrate = recalibrate
        #: how many times each objective was really measured, failures included (cache hits do not count)
        self.runs: Counter[str] = Counter()
        #: what :meth:`from_checkpoint` read besides the weights (path, hash, training YAML, data spec), else None
        self.checkpoint: dict[str, Any] | None = None

    @classmethod
    def from_checkpoint(cls, path: str | Path, target: HardwareTarget | str = "cpu-torch-b1",
                        objectives: list[str] | None = None, data: Any = None, **kwargs: Any) -> "ModelEvaluator":
        """An evaluator of a training checkpoint; its data set is rebuilt from the checkpoint's spec if not given."""
        from sliver.train.checkpoint import checkpoint_data, load_supernet

        supernet, info = load_supernet(path)
        quality = language.quality_objective(supernet)
        if data is None and (objectives is None or quality in objectives):
            data = checkpoint_data(info)
            if data is None and objectives is not None:
                raise UserError(f"checkpoint {path} records no data set; pass data= to measure {quality}")
        evaluator = cls(supernet, target, objectives, data=data, supernet_hash=info.get("hash"), **kwargs)
        evaluator.checkpoint = info
        return evaluator

    # ------------------------------------------------------------------ protocol
    def fingerprint_for(self, objective: str) -> str:
        """The target's fingerprint hash for latency (prefill and decode too) and memory, "any" for
        hardware-independent objectives."""
        return self.fingerprint if objective in HARDWARE_OBJECTIVES else "any"

    def measure(self, config: Config, objectives: list[str]) -> Measured:
        """Measure ``objectives`` of ``config``: extract once, then each objective on its own."""
        config = self.space.validate(config)
        out = Measured()
        recal_error: BaseException | None = None
        recal_s = 0.0
        if "accuracy" in objectives:
            t0 = time.perf_counter()
            try:
                self.recalibrate(config)
            except Exception as exc:  # only accuracy depends on the statistics
                recal_error = exc
            recal_s = time.perf_counter() - t0
        model = None
        for name in objectives:
            t0 = time.perf_counter()
            stats: dict[str, Any] = {}
            self.runs[name] += 1
            if model is None and name not in COST_OBJECTIVES:
                # extracted only when an objective needs the model: a search asks for the costs of thousands of
                # candidates, and copying a MiniLM's weights for each one is costly
                model = self.supernet.extract(config).eval()
            result: float | BaseException
            try:
                if name == "accuracy" and recal_error is not None:
                    raise recal_error
                result = float(self._measure_one(name, config, model, stats))
            except Exception as exc:
                result = exc
            # the recalibration is paid for accuracy alone
            out.record(name, result, time.perf_counter() - t0 + (recal_s if name == "accuracy" else 0.0), stats)
        return out

    # ------------------------------------------------------------------ objectives
    def _measure_one(self, name: str, config: Config, model: nn.Module, stats: dict[str, Any]) -> float:
        """The value of objective ``name``; what it adds to ``stats`` is stored with it."""
        if name == "accuracy":
            return self._accuracy(config, model, stats)
        if name == "latency_ms":
            example = self.supernet.example_input(config, batch_size=self.target.batch_size, seed=self.seed)
            target = self.target.model_copy(update={"max_seconds": min(self.target.max_seconds, self.timeout_s)})
            # on a remote worker: the worker refuses to time it unless its fingerprint is still this evaluator's
            result = measure_latency(model, example, target, fingerprint=self.fingerprint)
            stats.update(result.to_dict(), backend=self.target.backend)
            return result.median_ms
        if name in COST_OBJECTIVES:
            return float(self.supernet.costs(config)[name])
        if name == "perplexity":
            val = subset(self.data.val, self.accuracy_subset, self.seed)
            stats.update(rows=len(val), subset=self.accuracy_subset)
            return language.measure_perplexity(model, val, time.monotonic() + self.timeout_s)
        if name in language.LM_HARDWARE:
            prompt = self.supernet.example_input(config, batch_size=self.target.batch_size, seed=self.seed)
            target = self.target.model_copy(update={"max_seconds": min(self.target.max_seconds, self.timeout_s)})
            timed = language.prefill_latency if name == "prefill_ms" else language.decode_latency
            result = timed(model, prompt, target)
            stats.update(result.to_dict(), backend=self.target.backend, prompt=list(prompt.shape))
            return result.median_ms
        if name == "model_size":
            return float(model_size_bytes(model))
        if name == "peak_memory":
            example = self.supernet.example_input(config, batch_size=self.target.batch_size, seed=self.seed)
            return float(peak_memory_bytes(model, example))
        raise UserError(f"objective '{name}' is not measured by ModelEvaluator; it measures {[o.name for o in self.objectives]}")

    def recalibrate(self, config: Config) -> None:
        """Re-estimate the super-network's batch-norm statistics for ``config`` on ``calib_batches`` calibration batches."""
        from sliver.data import loader

        recalibrate = self._recalibrate
        if recalibrate is None:
            from sliver.train.bn import recalibrate_bn as recalibrate
        calib = loader(self.data.calib, self.batch_size, shuffle=True, seed=self.seed)
        recalibrate(self.supernet, config, calib, batches=self.calib_batches)

    def _accuracy(self, config: Config, model: nn.Module, stats: dict[str, Any]) -> float:
        val = subset(self.data.val, self.accuracy_subset, self.seed)
        deadline = time.monotonic() + self.timeout_s
        acc = top1_accuracy(model, val, lambda x: self.supernet.prepare_input(x, config), self.batch_size, deadline)
        stats.update(samples=len(val), subset=self.accuracy_subset, calib_batches=self.calib_batches)
        return acc


# ---------------------------------------------------------------------- helpers
def model_size_bytes(model: nn.Module) -> int:
    """Bytes of the model's fp32 state dict serialised with ``torch.save``."""
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.tell()


def peak_memory_bytes(model: nn.Module, example: torch.Tensor) -> int:
    """Weight bytes plus the largest input + output activation of any single layer, for one batch.

    Measured on a real forward pass with hooks on every leaf module; it is the
    memory the inference cannot do without (a lower bound: allocator overhead
    and tensors kept alive by skip connections are not counted), and it is
    deterministic, unlike the process's resident size on a shared machine.
    """
    peak = 0

    def hook(_module, inputs, output) -> None:
        nonlocal peak
        peak = max(peak, _tensor_bytes(inputs) + _tensor_bytes(output))

    weights = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.inference_mode():
            model(example)
    finally:
        for h in handles:
            h.remove()
    return weights + peak


def _tensor_bytes(obj: Any) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(o) for o in obj)
    return 0


_BN_STATS = ("running_mean", "running_var", "num_batches_tracked")


def supernet_state_hash(supernet: Supernet) -> str:
    """Content hash of a super-network: its constructor config and its weights.

    Batch-norm running statistics are left out: they are re-estimated for every
    sub-network before its accuracy is measured, so they change during
    evaluation without changing what is measured.
    """
    h = hashlib.sha256(json.dumps(supernet.supernet_config(), sort_keys=True, default=str).encode())
    for name, tensor in sorted(supernet.state_dict().items()):
        if name.endswith(_BN_STATS):
            continue
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
