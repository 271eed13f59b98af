"""Latency of a plain model on a hardware target: PyTorch eager, ONNX Runtime or OpenVINO, on the CPU or CUDA.

The protocol is the same on every backend (:func:`time_runs`): pin the thread count, run
``warmup`` untimed batches (and keep going for at least ``warmup_s``), then time single batches
until the relative interquartile range drops below ``stability`` (after at
least ``min_repeats`` runs), ``max_repeats`` runs are done or ``max_seconds``
have passed. The median is reported with the IQR and the coefficient of
variation of the runs. A run is timed with ``time.perf_counter_ns`` on the CPU,
and with CUDA events (and a synchronisation) for PyTorch on a GPU, whose
kernels run asynchronously to the Python code that launches them.
"""

from __future__ import annotations

import copy
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


def wall_ns(fn: Callable[[], object]) -> int:
    """Nanoseconds of one call of ``fn`` on the wall clock."""
    t0 = time.perf_counter_ns()
    fn()
    return time.perf_counter_ns() - t0


def cuda_ns(fn: Callable[[], object]) -> int:
    """Nanoseconds of the GPU work of one call of ``fn``, between two CUDA events, after waiting for it to finish."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return int(start.elapsed_time(end) * 1e6)  # elapsed_time is in milliseconds


def time_runs(
    fn: Callable[[], object],
    warmup: int = 5,
    warmup_s: float = 0.0,
    min_repeats: int = 20,
    max_repeats: int = 200,
    stability: float = 0.05,
    max_seconds: float = 5.0,
    timer: Callable[[Callable[[], object]], int] = wall_ns,
) -> LatencyResult:
    """Time ``fn()`` repeatedly with ``timer`` and summarise; see the module docstring for the stopping rule."""
    # warm-up runs go through the timer too, so a GPU timer's synchronisation keeps them from piling up
    for _ in range(warmup):
        timer(fn)
    warm_until = time.perf_counter_ns() + int(warmup_s * 1e9)
    while time.perf_counter_ns() < warm_until:
        timer(fn)
    times_ns: list[int] = []
    stable = False
    deadline = time.perf_counter_ns() + int(max_seconds * 1e9)
    while len(times_ns) < max_repeats:
        times_ns.append(timer(fn))
        n = len(times_ns)
        # checking every few runs keeps the percentile cost out of the timed loop's rhythm
        if n >= min_repeats and n % 5 == 0:
            q1, med, q3 = np.percentile(times_ns, [25, 50, 75])
            if med > 0 and (q3 - q1) / med < stability:
                stable = True
                break
        if time.perf_counter_ns() > deadline and n >= 3:
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
    """Latency of one batch through ``model`` in eager mode under ``torch.inference_mode``, on the target's device.

    On CUDA a copy of the model runs (the caller's stays on the CPU) and the input
    is on the GPU already: the time is the GPU's, between CUDA events.
    """
    target.require_available()
    model.eval()
    timer = wall_ns
    if target.device == "cuda":
        model, example, timer = copy.deepcopy(model).to("cuda"), example.to("cuda"), cuda_ns
    with torch_threads(target.threads), torch.inference_mode():
        return time_runs(lambda: model(example), **_protocol(target), timer=timer)


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


def ort_session(onnx_model: bytes, threads: int = 1, provider: str = "CPUExecutionProvider"):
    """An ONNX Runtime session with pinned intra-op threads (no inter-op parallelism) on an execution provider.

    A provider other than the CPU's gets the CPU provider behind it, as deployments
    do, for the operators it does not implement.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3  # warnings about unused initialisers etc. are noise here
    providers = [provider] + (["CPUExecutionProvider"] if provider != "CPUExecutionProvider" else [])
    return ort.InferenceSession(onnx_model, sess_options=opts, providers=providers)


def onnx_latency(onnx_model: bytes, example: torch.Tensor, target: HardwareTarget) -> LatencyResult:
    """Latency of one batch through an ONNX model on ONNX Runtime with the target's execution provider.

    The input is fed from host memory and the output returned there, as an
    application calling ``session.run`` sees it (on a GPU provider: copies included).
    """
    target.require_available()
    session = ort_session(onnx_model, target.threads, target.ort_provider())
    feed = {session.get_inputs()[0].name: example.detach().cpu().numpy()}
    return time_runs(lambda: session.run(None, feed), **_protocol(target))


def openvino_model(onnx_model: bytes, target: HardwareTarget):
    """The ONNX model compiled by OpenVINO for the CPU with the target's pinned latency options."""
    target.require_available()
    import openvino

    core = openvino.Core()
    return core.compile_model(core.read_model(onnx_model), "CPU", target.openvino_config())


def openvino_latency(onnx_model: bytes, example: torch.Tensor, target: HardwareTarget) -> LatencyResult:
    """Latency of one batch through an ONNX model compiled by OpenVINO, one synchronous request at a time."""
    request = openvino_model(onnx_model, target).create_infer_request()
    feed = {0: example.detach().cpu().numpy()}
    return time_runs(lambda: request.infer(feed), **_protocol(target))


def measure_latency(model: nn.Module, example: torch.Tensor, target: HardwareTarget) -> LatencyResult:
    """Latency of ``model`` on ``target``'s backend (exporting to ONNX when the backend needs it)."""
    if target.backend == "torch":
        return torch_latency(model, example, target)
    target.require_available()  # before the export, which is the slow part
    with torch_threads(target.threads):
        onnx_model = export_onnx(model, example)
    if target.backend == "openvino":
        return openvino_latency(onnx_model, example, target)
    return onnx_latency(onnx_model, example, target)


def _protocol(target: HardwareTarget) -> dict:
    return dict(
        warmup=target.warmup, warmup_s=target.warmup_s, min_repeats=target.min_repeats, max_repeats=target.max_repeats,
        stability=target.stability, max_seconds=target.max_seconds,
    )
