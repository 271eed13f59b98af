"""ONNX side of quantisation: the float export, onnxruntime's static (QDQ) or dynamic quantiser, accuracy of a session."""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from sliver.errors import UserError
from sliver.quant.space import ACT_MODES, WEIGHT_MODES, QuantError


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
