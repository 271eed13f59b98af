"""`QuantEvaluator`: measures quantised sub-networks on ONNX Runtime, built on a :class:`~sliver.measure.model.ModelEvaluator`."""

from __future__ import annotations

import os
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from sliver.core import Config, Objective, get_objective
from sliver.measure.base import Measured
from sliver.quant.quantize import export_float_onnx, onnx_accuracy, onnx_node_names, quantize_onnx
from sliver.quant.space import MOBILENET_SCALAR_GENES, QuantError, fp32_nodes, quantization_space, split_config
from sliver.space import SearchSpace

DEFAULT_OBJECTIVES = ("accuracy", "latency_ms", "model_size", "macs", "params")
#: objectives measured on the quantised ONNX model (the others come from the architecture)
MODEL_OBJECTIVES = frozenset({"accuracy", "latency_ms", "model_size"})


class QuantEvaluator:
    """The :class:`~sliver.measure.base.Evaluator` of quantised sub-networks on an ONNX Runtime target.

    Configs come from ``space`` (default :func:`quantization_space` of the
    super-network). Objectives: ``accuracy`` (ONNX Runtime, validation split
    or a seeded ``accuracy_subset`` of it), ``latency_ms`` (ONNX Runtime on
    ``target``), ``model_size`` (bytes of the quantised ONNX file), ``macs`` and
    ``params`` (of the architecture). Calibration uses ``calib_samples`` images
    of the calibration split, drawn with ``seed``. The float side (target,
    data, seeded accuracy subset, batch-norm re-estimation on ``calib_batches``
    batches of ``batch_size``, time limit, content hash) is a
    :class:`~sliver.measure.model.ModelEvaluator`, :attr:`float_evaluator`,
    whose settings this evaluator reads rather than keeping copies.
    """

    def __init__(
        self,
        supernet: Any,
        data: Any,
        target: Any = "cpu-ort-b1",
        objectives: list[str] | tuple[str, ...] | None = None,
        space: SearchSpace | None = None,
        supernet_hash: str | None = None,
        accuracy_subset: float | None = None,
        seed: int = 0,
        calib_samples: int = 256,
        calib_batches: int = 20,
        batch_size: int = 128,
        timeout_s: float = 300.0,
        workdir: str | Path | None = None,
    ) -> None:
        from sliver.measure.model import ModelEvaluator  # torch: imported when an evaluator is built

        self.space = space if space is not None else quantization_space(supernet)
        missing = [n for n in supernet.space.names + ["q", "q_act", "q_weights"] if n not in self.space.names]
        if missing:
            raise QuantError(f"space: dimension '{missing[0]}' is missing; build it with quantization_space(supernet)")
        #: the float sub-networks: recalibrated and extracted as ModelEvaluator does, and their costs
        self.float_evaluator = ModelEvaluator(
            supernet, target, ["macs", "params"], data=data, supernet_hash=supernet_hash, accuracy_subset=accuracy_subset,
            seed=seed, calib_batches=calib_batches, batch_size=batch_size, timeout_s=timeout_s,
        )
        if self.target.backend != "onnxruntime":
            raise QuantError(f"target '{self.target.name}': quantised models run on ONNX Runtime; use a cpu-ort-* target")
        names = list(objectives) if objectives is not None else list(DEFAULT_OBJECTIVES)
        self.objectives: list[Objective] = [get_objective(n) for n in names]
        unsupported = [n for n in names if n not in DEFAULT_OBJECTIVES]
        if unsupported:
            raise QuantError(f"objective '{unsupported[0]}' is not measured on quantised models; choose from {list(DEFAULT_OBJECTIVES)}")
        if data is None:
            raise QuantError("data: quantisation needs a DataBundle (calibration and validation splits)")
        if calib_samples < 1:
            raise QuantError(f"calib_samples must be a positive integer, got {calib_samples}")
        if len(data.calib) < calib_samples:
            raise QuantError(
                f"calibration split has {len(data.calib)} images, fewer than calib_samples={calib_samples}; "
                "lower calib_samples or raise data calib_fraction"
            )
        self.calib_samples = calib_samples
        # a different calibration gives a different quantised model: it is part of the model's identity
        self.supernet_hash = f"{self.float_evaluator.supernet_hash}+int8-calib{calib_samples}-s{seed}"
        self.fingerprint = self.float_evaluator.fingerprint
        self._tmp = tempfile.TemporaryDirectory(prefix="sliver-quant-") if workdir is None else None
        self.workdir = Path(workdir) if workdir is not None else Path(self._tmp.name)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._float: dict[str, Path] = {}
        #: how many times each objective was really measured; ``calibrations`` counts calibration runs
        self.runs: Counter[str] = Counter()

    # the float evaluator's settings, read where they are kept
    @property
    def supernet(self) -> Any:
        return self.float_evaluator.supernet

    @property
    def target(self) -> Any:
        return self.float_evaluator.target

    @property
    def data(self) -> Any:
        return self.float_evaluator.data

    @property
    def seed(self) -> int:
        return self.float_evaluator.seed

    @property
    def batch_size(self) -> int:
        return self.float_evaluator.batch_size

    @property
    def timeout_s(self) -> float:
        return self.float_evaluator.timeout_s

    @property
    def accuracy_subset(self) -> float | None:
        return self.float_evaluator.accuracy_subset

    @classmethod
    def from_checkpoint(cls, path: str | Path, data: Any = None, **kwargs: Any) -> "QuantEvaluator":
        """A quantisation evaluator of a training checkpoint; the data set is rebuilt from its spec if not given."""
        from sliver.train.checkpoint import checkpoint_data, load_supernet

        supernet, info = load_supernet(path)
        data = data if data is not None else checkpoint_data(info)
        if data is None:
            raise QuantError(f"checkpoint {path} records no data set; pass data=")
        return cls(supernet, data, supernet_hash=info["hash"], **kwargs)

    # ------------------------------------------------------------ protocol
    def fingerprint_for(self, objective: str) -> str:
        """The target's fingerprint for latency; "any" for objectives that do not depend on the hardware."""
        return self.fingerprint if objective == "latency_ms" else "any"

    def measure(self, config: Config, objectives: list[str]) -> Measured:
        """Build the quantised model of ``config`` once (if needed) and measure each objective on its own."""
        config = self.space.validate(config)
        out = Measured()
        path: Path | None = None
        build_error: BaseException | None = None
        build_s = 0.0
        if MODEL_OBJECTIVES & set(objectives):
            t0 = time.perf_counter()
            try:
                path = self.quantized_model(config, self.workdir / f"{self.space.key(config)}.onnx")
            except Exception as exc:  # every model objective fails with it; macs/params still work
                build_error = exc
            build_s = time.perf_counter() - t0
        n_model = len(MODEL_OBJECTIVES & set(objectives)) or 1
        for name in objectives:
            t0 = time.perf_counter()
            self.runs[name] += 1
            stats: dict[str, Any] = {}
            result: float | BaseException
            try:
                if name in MODEL_OBJECTIVES and build_error is not None:
                    raise build_error
                result = float(self._measure_one(name, config, path, stats))
            except Exception as exc:
                result = exc
            # the shared build cost is split over the objectives that needed it
            out.record(name, result, time.perf_counter() - t0 + (build_s / n_model if name in MODEL_OBJECTIVES else 0.0),
                       stats)
        if path is not None:
            path.unlink(missing_ok=True)  # its measurements are taken; only the float models and calibrations are kept
        return out

    def _measure_one(self, name: str, config: Config, path: Path | None, stats: dict[str, Any]) -> float:
        """The value of objective ``name``; what it adds to ``stats`` is stored with it."""
        arch, _ = split_config(self.supernet, config)
        if name in ("macs", "params"):
            return float(self.supernet.costs(arch)[name])
        assert path is not None
        if name == "model_size":
            return float(os.path.getsize(path))
        if name == "accuracy":
            return self.accuracy(path, config, stats)
        if name == "latency_ms":
            from sliver.measure.latency import onnx_latency

            example = self.supernet.example_input(arch, batch_size=self.target.batch_size, seed=self.seed)
            target = self.target.model_copy(update={"max_seconds": min(self.target.max_seconds, self.timeout_s)})
            # on a remote worker: the worker refuses to time it unless its fingerprint is still this evaluator's
            result = onnx_latency(path.read_bytes(), example, target, fingerprint=self.fingerprint)
            stats.update(result.to_dict(), backend="onnxruntime", policy=_policy_summary(config))
            return result.median_ms
        raise QuantError(f"objective '{name}' is not measured on quantised models; choose from {list(DEFAULT_OBJECTIVES)}")

    # ------------------------------------------------------------ models
    def quantized_model(self, config: Config, out_path: str | Path) -> Path:
        """Write the quantised ONNX model of ``config`` (architecture + policy) to ``out_path``."""
        config = self.space.validate(config)
        arch, policy = split_config(self.supernet, config)
        float_path = self.float_model(arch)
        cache = float_path.with_suffix(".calib.json")
        exclude = fp32_nodes(self.supernet, config, onnx_node_names(float_path))
        calibration = None
        if policy["q_act"] != "dynamic" and not cache.is_file():
            calibration = self.calibration_batches(arch)
            self.runs["calibrations"] += 1
        return quantize_onnx(float_path, out_path, exclude, policy["q_weights"], policy["q_act"], calibration, cache)

    def float_model(self, arch: Config) -> Path:
        """The float ONNX file of a sub-network (BN recalibrated, extracted, exported), cached per architecture."""
        key = self.supernet.space.key(arch)
        if key not in self._float:
            import torch

            arch = self.supernet.space.validate(arch)
            self.float_evaluator.recalibrate(arch)
            model = self.supernet.extract(arch).eval().cpu()
            example = self.supernet.example_input(arch, batch_size=1, seed=self.seed).cpu()
            path = self.workdir / f"{key}.float.onnx"
            with torch.no_grad():
                path.write_bytes(export_float_onnx(model, example))
            self._float[key] = path
        return self._float[key]

    def calibration_batches(self, arch: Config, batch: int = 32) -> list[np.ndarray]:
        """``calib_samples`` images of the calibration split (seeded draw) at the architecture's resolution."""
        import torch

        n = len(self.data.calib)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))[: self.calib_samples]
        x = torch.stack([self.data.calib[int(i)][0] for i in order])
        x = self.supernet.prepare_input(x, arch)
        return [x[i:i + batch].numpy().astype(np.float32) for i in range(0, len(x), batch)]

    def accuracy(self, path: str | Path, config: Config, stats: dict[str, Any] | None = None) -> float:
        """Top-1 accuracy of the ONNX model at ``path`` on the validation split (or its seeded subset).

        ``stats``, if given, is filled with what the accuracy was measured on.
        """
        from torch.utils.data import DataLoader

        from sliver.measure.timing import ort_session
        from sliver.train.accuracy import subset

        arch, _ = split_config(self.supernet, config)
        val = subset(self.data.val, self.accuracy_subset, self.seed)
        session = ort_session(Path(path).read_bytes(), self.target.threads)
        batches = ((self.supernet.prepare_input(x, arch).numpy(), y.numpy())
                   for x, y in DataLoader(val, batch_size=self.batch_size, shuffle=False))
        acc = onnx_accuracy(session, batches, time.monotonic() + self.timeout_s)
        if stats is not None:
            stats.update(samples=len(val), subset=self.accuracy_subset, calib_samples=self.calib_samples,
                         policy=_policy_summary(config))
        return acc


def _policy_summary(config: Config) -> dict[str, Any]:
    genes = [config[g] for g in MOBILENET_SCALAR_GENES] + list(config["q"])
    return {"int8_genes": sum(g == "int8" for g in genes), "q_weights": config["q_weights"], "q_act": config["q_act"]}
