"""Latency of a plain model on a hardware target: PyTorch eager or ONNX Runtime on the CPU.

The protocol is the same on both backends: pin the thread count, run
``warmup`` untimed batches (and keep going for at least ``warmup_s``), then time single batches with
``time.perf_counter_ns`` until the relative interquartile range drops below
``stability`` (after at least ``min_repeats`` runs), ``max_repeats`` runs are
done or ``max_seconds`` have passed. The median is reported with the IQR and
the coefficient of variation of the runs.
"""

from __future__ import annotations

import io
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from sliver.measure.hardware import HardwareTarget


@dataclass
class LatencyResult:
    """Summary of the timed runs of one measurement, in milliseconds."""

    median_ms: float
    iqr_ms: float
    mean_ms: float
    cv: float  # standard deviation / mean of the runs
    n_runs: int
    stable: bool  # True if it stopped because IQR / median fell below the threshold

    def to_dict(self) -> dict:
        return asdict(self)


def time_runs(
    fn: Callable[[], object],
    warmup: int = 5,
    warmup_s: float = 0.0,
    min_repeats: int = 20,
    max_repeats: int = 200,
    stability: float = 0.05,
    max_seconds: float = 5.0,
) -> LatencyResult:
    """Time ``fn()`` repeatedly and summarise; see the module docstring for the stopping rule."""
    for _ in range(warmup):
        fn()
    warm_until = time.perf_counter_ns() + int(warmup_s * 1e9)
    while time.perf_counter_ns() < warm_until:
        fn()
    times_ns: list[int] = []
    stable = False
    deadline = time.perf_counter_ns() + int(max_seconds * 1e9)
    while len(times_ns) < max_repeats:
        t0 = time.perf_counter_ns()
        fn()
        t1 = time.perf_counter_ns()
        times_ns.append(t1 - t0)
        n = len(times_ns)
        # checking every few runs keeps the percentile cost out of the timed loop's rhythm
        if n >= min_repeats and n % 5 == 0:
            q1, med, q3 = np.percentile(times_ns, [25, 50, 75])
            if med > 0 and (q3 - q1) / med < stability:
                stable = True
                break
        if t1 > deadline and n >= 3:
            break
    ms = np.asarray(times_ns, dtype=np.float64) / 1e6
    q1, med, q3 = np.percentile(ms, [25, 50, 75])
    mean = float(ms.mean())
    return LatencyResult(
        median_ms=float(med), iqr_ms=float(q3 - q1), mean_ms=mean,
        cv=float(ms.std() / mean) if mean > 0 else 0.0, n_runs=len(ms), stable=stable,
    )


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Pin PyTorch's intra-op thread count for a block and restore it afterwards."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def torch_latency(model: nn.Module, example: torch.Tensor, target: HardwareTarget) -> LatencyResult:
    """Latency of one batch through ``model`` in eager mode under ``torch.inference_mode``."""
    model.eval()
    with torch_threads(target.threads), torch.inference_mode():
        return time_runs(lambda: model(example), **_protocol(target))


def export_onnx(model: nn.Module, example: torch.Tensor, opset: int = 17,
                dynamic_axes: dict[int, str] | None = None) -> bytes:
    """The model exported to ONNX (TorchScript exporter) as bytes.

    The input shape is fixed to ``example``'s unless ``dynamic_axes`` names input
    axes that may vary, e.g. ``{0: "batch", 1: "sequence"}`` for token ids; a
    dynamic batch axis (0) is dynamic in the output too.
    """
    buf = io.BytesIO()
    model.eval()
    axes = None
    if dynamic_axes:
        axes = {"input": dict(dynamic_axes)}
        if 0 in dynamic_axes:
            axes["output"] = {0: dynamic_axes[0]}
    # the TorchScript exporter warns that it is legacy; it is the one that needs no onnxscript
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model, (example,), buf, input_names=["input"], output_names=["output"],
            opset_version=opset, dynamo=False, dynamic_axes=axes,
        )
    return buf.getvalue()


def ort_session(onnx_model: bytes, threads: int = 1):
    """An ONNX Runtime CPU session with pinned intra-op threads (no inter-op parallelism)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3  # warnings about unused initialisers etc. are noise here
    return ort.InferenceSession(onnx_model, sess_options=opts, providers=["CPUExecutionProvider"])


def onnx_latency(onnx_model: bytes, example: torch.Tensor, target: HardwareTarget) -> LatencyResult:
    """Latency of one batch through an ONNX model on the ONNX Runtime CPU execution provider."""
    session = ort_session(onnx_model, target.threads)
    feed = {session.get_inputs()[0].name: example.detach().cpu().numpy()}
    return time_runs(lambda: session.run(None, feed), **_protocol(target))


def measure_latency(model: nn.Module, example: torch.Tensor, target: HardwareTarget) -> LatencyResult:
    """Latency of ``model`` on ``target``'s backend (exporting to ONNX when the backend needs it)."""
    if target.backend == "onnxruntime":
        with torch_threads(target.threads):
            onnx_model = export_onnx(model, example)
        return onnx_latency(onnx_model, example, target)
    return torch_latency(model, example, target)


def _protocol(target: HardwareTarget) -> dict:
    return dict(
        warmup=target.warmup, warmup_s=target.warmup_s, min_repeats=target.min_repeats, max_repeats=target.max_repeats,
        stability=target.stability, max_seconds=target.max_seconds,
    )
