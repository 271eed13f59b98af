"""Search the quantisation policy together with the architecture (SimQ-NAS), on real ONNX Runtime models.

:func:`quantization_space` adds to a super-network's space one precision gene
(``int8`` or ``fp32``) per quantisable layer group of the sub-network, plus
global choices (per-channel or per-tensor weights; symmetric, asymmetric or
dynamic activations). For :class:`~sliver.elastic.mobilenet.ElasticMobileNet`
the genes are::

    q_stem        stem convolution and the fixed first block
    q             one per inverted-residual block (gated by the stage depth ``d``,
                  like ``ks`` and ``e``: genes of dropped blocks are inactive)
    q_head        final 1x1 expansion, pooling and the feature-mix convolution
    q_classifier  the linear classifier
    q_weights     per_channel | per_tensor
    q_act         asymmetric (uint8) | symmetric (int8) static activations, or dynamic

The architecture dimensions are unchanged, so the architecture of a config is
the sub-dict of the super-network's dimensions (:func:`split_config`).

:class:`QuantEvaluator` measures a config on the quantised model itself: the
sub-network is recalibrated (batch norm) and extracted exactly as
:class:`~sliver.measure.model.ModelEvaluator` does, exported to ONNX, then
quantised by ``onnxruntime.quantization`` (static QDQ calibrated on a seeded
sample of the calibration split, or dynamic) with the nodes of every ``fp32``
gene excluded by name. Calibration ranges are cached per sub-network, so
policies of the same architecture calibrate once per run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Literal

import numpy as np
from pydantic import Field

from sliver.config import StrictModel
from sliver.core import Objective, get_objective
from sliver.errors import UserError
from sliver.space import Config, DepthGate, Dimension, SearchSpace

PRECISIONS = ("int8", "fp32")
WEIGHT_MODES = ("per_channel", "per_tensor")
ACT_MODES = ("asymmetric", "symmetric", "dynamic")
#: precision genes of a MobileNet beside the per-block list ``q``
MOBILENET_SCALAR_GENES = ("q_stem", "q_head", "q_classifier")
GLOBAL_GENES = ("q_weights", "q_act")
DEFAULT_OBJECTIVES = ("accuracy", "latency_ms", "model_size", "macs", "params")
#: objectives measured on the quantised ONNX model (the others come from the architecture)
MODEL_OBJECTIVES = frozenset({"accuracy", "latency_ms", "model_size"})
#: a re-measured accuracy of an exported model must agree with the stored one to rounding
ACCURACY_TOLERANCE = 1e-6

_BLOCK_NODE = re.compile(r"^/blocks/blocks\.(\d+)/")


class QuantError(UserError):
    """A quantisation setting or input does not work; the message says what to change."""


# ------------------------------------------------------------------ the space
def quantization_space(
    supernet: Any,
    precisions: tuple[str, ...] = PRECISIONS,
    weight_modes: tuple[str, ...] = WEIGHT_MODES,
    act_modes: tuple[str, ...] = ACT_MODES,
) -> SearchSpace:
    """The super-network's space plus precision genes (choices ``precisions``) and global quantisation genes.

    Pass single choices to pin a gene, e.g. ``precisions=("int8",)`` for the
    "every layer int8" baseline or ``("fp32",)`` for float sub-networks.
    """
    _check_family(supernet)
    for name, values, allowed in (("precisions", precisions, PRECISIONS), ("weight_modes", weight_modes, WEIGHT_MODES),
                                  ("act_modes", act_modes, ACT_MODES)):
        bad = [v for v in values if v not in allowed]
        if not values or bad:
            raise QuantError(f"quantization '{name}' must be a non-empty subset of {list(allowed)}, got {list(values)}")
    base: SearchSpace = supernet.space
    n_blocks = base["ks"].length
    dims = list(base.dimensions) + [
        Dimension("q_stem", tuple(precisions)),
        Dimension("q", tuple(precisions), n_blocks),
        Dimension("q_head", tuple(precisions)),
        Dimension("q_classifier", tuple(precisions)),
        Dimension("q_weights", tuple(weight_modes)),
        Dimension("q_act", tuple(act_modes)),
    ]
    # the block genes share the depth gate of the kernel/expand genes: a dropped block has no layers to quantise
    gates = [DepthGate(g.depth, g.groups, g.dims + ("q",)) if "ks" in g.dims else g for g in base.gates]
    return SearchSpace(dims, gates)


def split_config(supernet: Any, config: Config) -> tuple[Config, Config]:
    """``(architecture, policy)``: the super-network's dimensions, and the quantisation genes."""
    arch_names = set(supernet.space.names)
    arch = {k: v for k, v in config.items() if k in arch_names}
    policy = {k: v for k, v in config.items() if k not in arch_names}
    return arch, policy


def _check_family(supernet: Any) -> None:
    family = supernet.supernet_config().get("family")
    if family != "mobilenet":
        raise QuantError(f"quantization search supports the mobilenet family, not {family!r}")


# ------------------------------------------------------------- node mapping
def node_genes(supernet: Any, config: Config, node_names: list[str]) -> dict[str, str]:
    """The precision gene (``q_stem``, ``q[j]``, ``q_head``, ``q_classifier``) each ONNX node belongs to.

    Node names come from the TorchScript exporter, which names each node after
    the module path of the extracted :class:`~sliver.elastic.mobilenet.MobileNet`
    (``/blocks/blocks.3/depthwise/depthwise.0/Conv``). Block ``i`` of the
    extracted model is the ``i``-th active block; block ``0`` is the fixed first
    block (grouped with the stem). Unscoped nodes (the global pooling) belong
    to the head, ``Flatten`` to the classifier.
    """
    active = _active_blocks(supernet, config)
    out: dict[str, str] = {}
    for name in node_names:
        m = _BLOCK_NODE.match(name)
        if m:
            i = int(m.group(1))
            if i > len(active):
                raise QuantError(f"ONNX node {name!r} names block {i}, but the sub-network has {len(active)} blocks")
            out[name] = "q_stem" if i == 0 else f"q[{active[i - 1]}]"
        elif name.startswith("/stem/"):
            out[name] = "q_stem"
        elif name.startswith(("/classifier/", "/Flatten")):
            out[name] = "q_classifier"
        elif name.startswith(("/final_expand/", "/feature_mix/", "/ReduceMean")):
            out[name] = "q_head"
        else:
            raise QuantError(f"ONNX node {name!r} belongs to no quantisation gene (was the model exported by export_float_onnx?)")
    return out


def fp32_nodes(supernet: Any, config: Config, node_names: list[str]) -> list[str]:
    """Names of the nodes whose gene is ``fp32`` (they are excluded from quantisation)."""
    genes = node_genes(supernet, config, node_names)
    return [n for n, g in genes.items() if _gene_value(config, g) == "fp32"]


def _gene_value(config: Config, gene: str) -> str:
    m = re.fullmatch(r"q\[(\d+)\]", gene)
    return config["q"][int(m.group(1))] if m else config[gene]


def _active_blocks(supernet: Any, config: Config) -> list[int]:
    """Positions (in the ``ks``/``e``/``q`` lists) of the blocks the config runs, in order."""
    groups = next(g.groups for g in supernet.space.gates if "ks" in g.dims)
    out, start = [], 0
    for n, depth in zip(groups, config["d"]):
        out += list(range(start, start + depth))
        start += n
    return out


# ------------------------------------------------------------------ ONNX
def export_float_onnx(model: Any, example: Any, opset: int = 17) -> bytes:
    """The float ONNX model of a plain sub-network, with a dynamic batch axis, ready for quantisation.

    The TorchScript exporter shares equal constants (e.g. zero biases of
    folded batch norms) through ``Identity`` nodes; the quantiser expects
    biases to be initialisers, so each shared constant is copied under the
    Identity's output name and the Identity dropped.
    """
    import io
    import warnings

    import onnx
    import torch

    buf = io.BytesIO()
    model.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model, (example,), buf, input_names=["input"], output_names=["output"], opset_version=opset,
            dynamo=False, dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        )
    proto = onnx.load_from_string(buf.getvalue())
    inits = {t.name: t for t in proto.graph.initializer}
    kept = []
    for node in proto.graph.node:
        if node.op_type == "Identity" and node.input[0] in inits:
            copy = onnx.TensorProto()
            copy.CopyFrom(inits[node.input[0]])
            copy.name = node.output[0]
            proto.graph.initializer.append(copy)
        else:
            kept.append(node)
    del proto.graph.node[:]
    proto.graph.node.extend(kept)
    return proto.SerializeToString()


def onnx_node_names(path_or_bytes: str | Path | bytes) -> list[str]:
    """Names of the nodes of an ONNX model, in graph order."""
    import onnx

    proto = onnx.load_from_string(path_or_bytes) if isinstance(path_or_bytes, bytes) else onnx.load(str(path_or_bytes))
    return [n.name for n in proto.graph.node]


class ArrayReader:
    """A ``CalibrationDataReader`` over a list of input batches (numpy, float32)."""

    def __init__(self, batches: list[np.ndarray], input_name: str = "input") -> None:
        self._feeds = iter([{input_name: b} for b in batches])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def quantize_onnx(
    float_path: str | Path,
    out_path: str | Path,
    exclude: list[str],
    weights: str = "per_channel",
    activations: str = "asymmetric",
    calibration: list[np.ndarray] | None = None,
    calibration_cache: str | Path | None = None,
) -> Path:
    """Quantise the ONNX model at ``float_path`` to ``out_path``, leaving the ``exclude`` nodes float.

    Static modes (``asymmetric``: uint8 activations; ``symmetric``: int8 with a
    zero zero-point) insert QuantizeLinear/DequantizeLinear pairs (QDQ format)
    with ranges from ``calibration`` batches, or from ``calibration_cache``
    when that file exists (it is written after the first calibration).
    ``dynamic`` computes activation ranges at run time (no calibration).
    Weights are int8, per output channel or per tensor.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

    if weights not in WEIGHT_MODES:
        raise QuantError(f"quantization 'q_weights' must be one of {list(WEIGHT_MODES)}, got {weights!r}")
    if activations not in ACT_MODES:
        raise QuantError(f"quantization 'q_act' must be one of {list(ACT_MODES)}, got {activations!r}")
    per_channel = weights == "per_channel"
    with _quiet_quantizer():
        if activations == "dynamic":
            # ONNX Runtime's CPU ConvInteger kernel takes uint8 weights only
            quantize_dynamic(str(float_path), str(out_path), per_channel=per_channel, weight_type=QuantType.QUInt8,
                             nodes_to_exclude=list(exclude))
        else:
            cached = calibration_cache is not None and Path(calibration_cache).is_file()
            if calibration is None and not cached:
                raise QuantError("static quantisation needs calibration batches (or an existing calibration cache)")
            symmetric = activations == "symmetric"
            quantize_static(
                str(float_path), str(out_path), None if cached else ArrayReader(calibration),
                quant_format=QuantFormat.QDQ, per_channel=per_channel,
                activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8, weight_type=QuantType.QInt8,
                nodes_to_exclude=list(exclude), calibrate_method=CalibrationMethod.MinMax,
                calibration_cache_path=None if calibration_cache is None else str(calibration_cache),
                extra_options={"ActivationSymmetric": symmetric},
            )
    return Path(out_path)


@contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """The quantiser logs advice (pre-processing, bias initialisers) through the root logger on every call."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def onnx_accuracy(session: Any, batches: Iterator[tuple[np.ndarray, np.ndarray]], deadline: float | None = None) -> float:
    """Top-1 accuracy (percent) of an ONNX Runtime session over ``(inputs, labels)`` batches."""
    name = session.get_inputs()[0].name
    correct = total = 0
    for x, y in batches:
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"accuracy took longer than its time limit after {total} samples")
        logits = session.run(None, {name: x})[0]
        correct += int((logits.argmax(1) == y).sum())
        total += len(y)
    if total == 0:
        raise UserError("accuracy: the validation set is empty")
    return 100.0 * correct / total


# ---------------------------------------------------------------- evaluator
class QuantEvaluator:
    """The :class:`~sliver.measure.base.Evaluator` of quantised sub-networks on an ONNX Runtime target.

    Configs come from ``space`` (default :func:`quantization_space` of the
    super-network). Objectives: ``accuracy`` (ONNX Runtime, validation split
    or a seeded ``accuracy_subset`` of it), ``latency_ms`` (ONNX Runtime on
    ``target``), ``model_size`` (bytes of the quantised ONNX file), ``macs`` and
    ``params`` (of the architecture). Calibration uses ``calib_samples`` images
    of the calibration split, drawn with ``seed``; ``calib_batches`` batches of
    ``batch_size`` re-estimate batch norm first, as in ModelEvaluator.
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
        from sliver.measure.hardware import HardwareTarget
        from sliver.measure.model import supernet_state_hash

        self.supernet = supernet.eval()
        self.space = space if space is not None else quantization_space(supernet)
        missing = [n for n in supernet.space.names + ["q", "q_act", "q_weights"] if n not in self.space.names]
        if missing:
            raise QuantError(f"space: dimension '{missing[0]}' is missing; build it with quantization_space(supernet)")
        self.target = HardwareTarget.parse(target)
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
        if accuracy_subset is not None and not 0.0 < accuracy_subset <= 1.0:
            raise QuantError(f"accuracy_subset must be in (0, 1], got {accuracy_subset}")
        self.data = data
        self.seed, self.calib_samples, self.calib_batches = seed, calib_samples, calib_batches
        self.batch_size, self.timeout_s, self.accuracy_subset = batch_size, timeout_s, accuracy_subset
        base = supernet_hash or supernet_state_hash(supernet)
        # a different calibration gives a different quantised model: it is part of the model's identity
        self.supernet_hash = f"{base}+int8-calib{calib_samples}-s{seed}"
        self.fingerprint = self.target.fingerprint_hash()
        self._tmp = tempfile.TemporaryDirectory(prefix="sliver-quant-") if workdir is None else None
        self.workdir = Path(workdir) if workdir is not None else Path(self._tmp.name)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._float: dict[str, Path] = {}
        #: how many times each objective was really measured; ``calibrations`` counts calibration runs
        self.runs: Counter[str] = Counter()
        self.last_seconds: dict[str, float] = {}
        self.last_stats: dict[str, dict] = {}

    @classmethod
    def from_checkpoint(cls, path: str | Path, data: Any = None, **kwargs: Any) -> "QuantEvaluator":
        """A quantisation evaluator of a training checkpoint; the data set is rebuilt from its spec if not given."""
        from sliver.train.checkpoint import load_supernet

        supernet, info = load_supernet(path)
        if data is None:
            spec = info.get("data") or info.get("dataset")
            if not spec:
                raise QuantError(f"checkpoint {path} records no data set; pass data=")
            from sliver.data import load_dataset

            data = load_dataset(**spec) if isinstance(spec, dict) else load_dataset(spec)
        return cls(supernet, data, supernet_hash=info.get("hash"), **kwargs)

    # ------------------------------------------------------------ protocol
    def fingerprint_for(self, objective: str) -> str:
        """The target's fingerprint for latency; "any" for objectives that do not depend on the hardware."""
        return self.fingerprint if objective == "latency_ms" else "any"

    def measure(self, config: Config, objectives: list[str]) -> dict[str, float | BaseException]:
        """Build the quantised model of ``config`` once (if needed) and measure each objective on its own."""
        config = self.space.validate(config)
        self.last_seconds, self.last_stats = {}, {}
        out: dict[str, float | BaseException] = {}
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
            try:
                if name in MODEL_OBJECTIVES and build_error is not None:
                    raise build_error
                out[name] = float(self._measure_one(name, config, path))
            except Exception as exc:
                out[name] = exc
            # the shared build cost is split over the objectives that needed it
            self.last_seconds[name] = time.perf_counter() - t0 + (build_s / n_model if name in MODEL_OBJECTIVES else 0.0)
        if path is not None:
            path.unlink(missing_ok=True)  # its measurements are taken; only the float models and calibrations are kept
        return out

    def _measure_one(self, name: str, config: Config, path: Path | None) -> float:
        arch, _ = split_config(self.supernet, config)
        if name in ("macs", "params"):
            return float(self.supernet.costs(arch)[name])
        assert path is not None
        if name == "model_size":
            return float(os.path.getsize(path))
        if name == "accuracy":
            return self.accuracy(path, config)
        if name == "latency_ms":
            from sliver.measure.latency import onnx_latency

            example = self.supernet.example_input(arch, batch_size=self.target.batch_size, seed=self.seed)
            target = self.target.model_copy(update={"max_seconds": min(self.target.max_seconds, self.timeout_s)})
            result = onnx_latency(path.read_bytes(), example, target)
            self.last_stats[name] = {**result.to_dict(), "backend": "onnxruntime", "policy": _policy_summary(config)}
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

            from sliver.data import loader
            from sliver.train.bn import recalibrate_bn

            arch = self.supernet.space.validate(arch)
            calib = loader(self.data.calib, self.batch_size, shuffle=True, seed=self.seed)
            recalibrate_bn(self.supernet, arch, calib, batches=self.calib_batches)
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

    def accuracy(self, path: str | Path, config: Config) -> float:
        """Top-1 accuracy of the ONNX model at ``path`` on the validation split (or its seeded subset)."""
        from torch.utils.data import DataLoader

        from sliver.measure.latency import ort_session
        from sliver.train.accuracy import subset

        arch, _ = split_config(self.supernet, config)
        val = subset(self.data.val, self.accuracy_subset, self.seed)
        session = ort_session(Path(path).read_bytes(), self.target.threads)
        batches = ((self.supernet.prepare_input(x, arch).numpy(), y.numpy())
                   for x, y in DataLoader(val, batch_size=self.batch_size, shuffle=False))
        acc = onnx_accuracy(session, batches, time.monotonic() + self.timeout_s)
        self.last_stats["accuracy"] = {"samples": len(val), "subset": self.accuracy_subset, "calib_samples": self.calib_samples,
                                       "policy": _policy_summary(config)}
        return acc


def _policy_summary(config: Config) -> dict[str, Any]:
    genes = [config[g] for g in MOBILENET_SCALAR_GENES] + list(config["q"])
    return {"int8_genes": sum(g == "int8" for g in genes), "q_weights": config["q_weights"], "q_act": config["q_act"]}


# ------------------------------------------------------------------ export
def export_quantized(
    evaluator: QuantEvaluator,
    config: Config,
    path: str | Path,
    stored: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Write the quantised ONNX model of ``config`` to ``path`` and verify its accuracy against ``stored``.

    The accuracy is re-measured on the written file; if ``stored`` (the values
    recorded in the store) holds an accuracy that differs, :class:`QuantError`
    is raised and the file is removed. Returns the checks and the excluded nodes;
    a ``<path>.json`` card records them with the config.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    config = evaluator.space.canonical(config)
    evaluator.quantized_model(config, path)
    accuracy = evaluator.accuracy(path, config)
    if stored and "accuracy" in stored and abs(stored["accuracy"] - accuracy) > ACCURACY_TOLERANCE:
        path.unlink(missing_ok=True)
        raise QuantError(
            f"re-measured accuracy {accuracy:.4f} of the quantised model differs from the stored {stored['accuracy']:.4f}: "
            "the checkpoint, data or calibration changed since the search"
        )
    float_path = evaluator.float_model(split_config(evaluator.supernet, config)[0])
    card = {
        "config": config,
        "key": evaluator.space.key(config),
        "accuracy": accuracy,
        "stored": dict(stored or {}),
        "model_size": os.path.getsize(path),
        "fp32_nodes": fp32_nodes(evaluator.supernet, config, onnx_node_names(float_path)),
        "supernet_hash": evaluator.supernet_hash,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }
    Path(f"{path}.json").write_text(json.dumps(card, indent=2))
    return card


# ------------------------------------------------------------------ search
def joint_search(
    evaluator: QuantEvaluator,
    objectives: tuple[str, ...] = ("accuracy", "latency_ms", "model_size"),
    strategy: str = "nsga2",
    budget: int = 50,
    **search_options: Any,
):
    """Search architecture and quantisation policy together with any strategy of :mod:`sliver.search`.

    A thin wrapper over :class:`sliver.search.Search` on ``evaluator.space``:
    ``search_options`` (``store``, ``study_name``, ``constraints``, ``seed``,
    ``strategy_options``, ...) pass through. Returns its ``SearchResult``.
    """
    from sliver.search import Search

    return Search(evaluator.space, evaluator, list(objectives), strategy=strategy, budget=budget, **search_options).run()


class QuantizationSection(StrictModel):
    """The ``quantization:`` section of a search YAML, e.g. ``quantization: {search: true}``.

    ``search: true`` searches the policy with the architecture; ``precisions``,
    ``weight_modes`` and ``act_modes`` narrow the genes (one choice pins it,
    e.g. ``precisions: [int8]`` quantises every layer).
    """

    search: bool = False
    precisions: list[Literal["int8", "fp32"]] = Field(default_factory=lambda: list(PRECISIONS), min_length=1)
    weight_modes: list[Literal["per_channel", "per_tensor"]] = Field(default_factory=lambda: list(WEIGHT_MODES), min_length=1)
    act_modes: list[Literal["asymmetric", "symmetric", "dynamic"]] = Field(default_factory=lambda: list(ACT_MODES), min_length=1)
    calib_samples: int = Field(256, ge=1, description="calibration images drawn (seeded) from the calibration split")
    accuracy_subset: float | None = Field(None, gt=0, le=1)
    seed: int = 0

    def space(self, supernet: Any) -> SearchSpace:
        """The super-network's space with this section's quantisation genes."""
        return quantization_space(supernet, tuple(self.precisions), tuple(self.weight_modes), tuple(self.act_modes))

    def evaluator(self, supernet: Any, data: Any, target: Any = "cpu-ort-b1", **kwargs: Any) -> QuantEvaluator:
        """The :class:`QuantEvaluator` this section describes (its ``space`` is what the search explores)."""
        return QuantEvaluator(supernet, data, target=target, space=self.space(supernet), calib_samples=self.calib_samples,
                              accuracy_subset=self.accuracy_subset, seed=self.seed, **kwargs)

    def evaluator_from_checkpoint(self, path: str | Path, target: Any = "cpu-ort-b1", **kwargs: Any) -> QuantEvaluator:
        """The same, for a training checkpoint (its data set and content hash come from the checkpoint)."""
        from sliver.data import load_dataset
        from sliver.train.checkpoint import load_supernet

        supernet, info = load_supernet(path)
        if not info.get("data"):
            raise QuantError(f"checkpoint {path} records no data set; build the evaluator with evaluator(supernet, data)")
        return self.evaluator(supernet, load_dataset(**info["data"]), target, supernet_hash=info["hash"], **kwargs)
