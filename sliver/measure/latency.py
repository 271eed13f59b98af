"""Latency of a plain model on a hardware target: PyTorch eager, ONNX Runtime or OpenVINO, on the CPU, CUDA or a remote worker.

The timing protocol is :func:`~sliver.measure.timing.time_runs` on every backend
(see :mod:`sliver.measure.timing`, the torch-free half that a measurement worker
runs). A run is timed with ``time.perf_counter_ns`` on the CPU, and with CUDA
events (and a synchronisation) for PyTorch on a GPU, whose kernels run
asynchronously to the Python code that launches them. ONNX Runtime and OpenVINO
time the model's ONNX export; a target with ``remote`` sends that export to its
worker (:mod:`sliver.device`) and gets the statistics back.
"""

from __future__ import annotations

import copy
import io
import warnings
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn

from sliver.measure.hardware import HardwareTarget
from sliver.measure.timing import LatencyResult, protocol, time_onnx, time_runs, wall_ns


def cuda_ns(fn) -> int:
    """Nanoseconds of the GPU work of one call of ``fn``, between two CUDA events, after waiting for it to finish."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return int(start.elapsed_time(end) * 1e6)  # elapsed_time is in milliseconds


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Pin PyTorch's intra-op thread count for a block and restore it afterwards."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def torch_latency(model: nn.Module, example: torch.Tensor, target: HardwareTarget,
                  prepare: Callable[[nn.Module, torch.Tensor], Callable[[], object]] | None = None) -> LatencyResult:
    """Latency of one batch through ``model`` in eager mode under ``torch.inference_mode``, on the target's device.

    On CUDA a copy of the model runs (the caller's stays on the CPU) and the input
    is on the GPU already: the time is the GPU's, between CUDA events.
    ``prepare(model, example)``, when given, runs first (untimed, on the device, in
    inference mode) and returns the call to time instead of ``model(example)``,
    e.g. one decoding step after a prompt has filled a KV cache.
    """
    target.require_available()
    model.eval()
    timer = wall_ns
    if target.device == "cuda":
        model, example, timer = copy.deepcopy(model).to("cuda"), example.to("cuda"), cuda_ns
    with torch_threads(target.threads), torch.inference_mode():
        run = (lambda: model(example)) if prepare is None else prepare(model, example)
        return time_runs(run, **protocol(target), timer=timer)


def export_onnx(model: nn.Module, example: torch.Tensor, opset: int = 17,
                dynamic_axes: dict[int, str] | None = None) -> bytes:
    """The model exported to ONNX (TorchScript exporter) as bytes, with one input ``input`` and one output ``output``.

    The input shape is fixed to ``example``'s unless ``dynamic_axes`` names input
    axes that may vary, e.g. ``{0: "batch", 1: "sequence"}`` for token ids; a
    dynamic batch axis (0) is dynamic in the output too.
    """
    axes = None
    if dynamic_axes:
        axes = {"input": dict(dynamic_axes)}
        if 0 in dynamic_axes:
            axes["output"] = {0: dynamic_axes[0]}
    return onnx_graph(model, (example,), ["input"], ["output"], axes, opset)


def onnx_graph(model: nn.Module, args: tuple, input_names: list[str], output_names: list[str],
               dynamic_axes: dict[str, dict[int, str]] | None = None, opset: int = 17) -> bytes:
    """``model(*args)`` exported to ONNX as bytes with named inputs and outputs and ``dynamic_axes`` per name
    (torch's ``dynamic_axes`` argument): the one place sliver calls the exporter."""
    buf = io.BytesIO()
    model.eval()
    # the TorchScript exporter warns that it is legacy; it is the one that needs no onnxscript
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model, args, buf, input_names=input_names, output_names=output_names,
            opset_version=opset, dynamo=False, dynamic_axes=dynamic_axes,
        )
    return buf.getvalue()


def onnx_latency(onnx_model: bytes, example: torch.Tensor, target: HardwareTarget,
                 fingerprint: str | None = None) -> LatencyResult:
    """Latency of one batch through an ONNX model on the target's runtime (ONNX Runtime or OpenVINO).

    With ``target.remote`` the model and the batch go to that worker, which times
    them on its own machine; ``fingerprint`` is then the hash its fingerprint must
    have (a study's), and a worker with another is refused with a
    :class:`~sliver.errors.UserError`.
    """
    inputs = example.detach().cpu().numpy()
    if target.remote:
        from sliver.device import remote_latency

        return remote_latency(onnx_model, inputs, target, fingerprint)
    return time_onnx(onnx_model, inputs, target)


def measure_latency(model: nn.Module, example: torch.Tensor, target: HardwareTarget,
                    fingerprint: str | None = None) -> LatencyResult:
    """Latency of ``model`` on ``target``'s backend (exporting to ONNX when the backend needs it).

    ``fingerprint``: for a target on a remote worker, the hash the worker's fingerprint must have (see :func:`onnx_latency`).
    """
    if target.backend == "torch":
        return torch_latency(model, example, target)
    target.require_available()  # before the export, which is the slow part
    with torch_threads(target.threads):
        onnx_model = export_onnx(model, example)
    return onnx_latency(onnx_model, example, target, fingerprint)
