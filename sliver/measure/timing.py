"""The timing protocol and the ONNX runtimes, without torch: what a measurement worker on another device runs.

:func:`time_runs` is the one timing loop of sliver (every backend uses it): pin
the thread count, run ``warmup`` untimed calls (and keep going for at least
``warmup_s``), then time single calls until the relative interquartile range
drops below ``stability`` (after at least ``min_repeats`` runs),
``max_repeats`` runs are done or ``max_seconds`` have passed. The median is
reported with the IQR and the coefficient of variation of the runs.
:func:`time_onnx` times an ONNX model on ONNX Runtime or OpenVINO from numpy
inputs. The torch side (export, eager PyTorch, CUDA events) is
:mod:`sliver.measure.latency`, which builds on this module.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

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
    #: fingerprint hash of the remote worker that timed it (None: timed in this process)
    fingerprint: str | None = None

    def to_dict(self) -> dict:
        # a measurement timed here has no worker fingerprint: its stored statistics stay as they were
        return {k: v for k, v in asdict(self).items() if not (k == "fingerprint" and v is None)}


def wall_ns(fn: Callable[[], object]) -> int:
    """Nanoseconds of one call of ``fn`` on the wall clock."""
    t0 = time.perf_counter_ns()
    fn()
    return time.perf_counter_ns() - t0


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


def protocol(target: HardwareTarget) -> dict:
    """The target's timing settings as keyword arguments of :func:`time_runs`."""
    return dict(
        warmup=target.warmup, warmup_s=target.warmup_s, min_repeats=target.min_repeats, max_repeats=target.max_repeats,
        stability=target.stability, max_seconds=target.max_seconds,
    )


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


def openvino_model(onnx_model: bytes, target: HardwareTarget):
    """The ONNX model compiled by OpenVINO for the CPU with the target's pinned latency options."""
    target.require_available()
    import openvino

    core = openvino.Core()
    return core.compile_model(core.read_model(onnx_model), "CPU", target.openvino_config())


def time_onnx(onnx_model: bytes, inputs: np.ndarray | dict[str, np.ndarray], target: HardwareTarget) -> LatencyResult:
    """Latency of one batch ``inputs`` through an ONNX model on the target's runtime, here.

    ``inputs`` is the array of the model's one input, or a dict of arrays by input
    name (a decoding step's token ids and past keys and values). ONNX Runtime runs
    on the target's execution provider, fed from host memory with the outputs
    returned there, as an application calling ``session.run`` sees it (on a GPU
    provider: copies included); OpenVINO runs one synchronous request at a time.
    """
    target.require_available()
    if target.backend == "openvino":
        request = openvino_model(onnx_model, target).create_infer_request()
        feed_ov = inputs if isinstance(inputs, dict) else {0: inputs}
        return time_runs(lambda: request.infer(feed_ov), **protocol(target))
    if target.backend != "onnxruntime":
        raise ValueError(f"time_onnx runs ONNX Runtime or OpenVINO, not backend {target.backend!r}")
    session = ort_session(onnx_model, target.threads, target.ort_provider())
    feed = inputs if isinstance(inputs, dict) else {session.get_inputs()[0].name: inputs}
    return time_runs(lambda: session.run(None, feed), **protocol(target))
