"""Hardware targets: where and how latency is measured, and the fingerprint that keys the results.

A :class:`HardwareTarget` names a device (the CPU or a CUDA GPU), a runtime
(PyTorch eager, ONNX Runtime with an execution provider, or OpenVINO), a thread
count, a batch size, an inference precision and the timing protocol. Its
:meth:`~HardwareTarget.fingerprint` records the machine and runtime versions
too: latencies measured under different fingerprints are never mixed.

Named presets read ``<device>-<runtime>[-<provider>]-b<batch>[-t<threads>]``:
``cpu-ort-b1`` (ONNX Runtime, batch 1, 1 thread), ``cpu-torch-b8-t2``,
``cpu-ov-b1`` (OpenVINO), ``cuda-torch-b8``, ``cuda-ort-b1`` (the CUDA execution
provider), ``cuda-ort-tensorrt-b1`` or ``cpu-ort-openvino-b1`` (other ONNX
Runtime execution providers). ``<preset>@<host>:<port>`` (or a ``remote:`` field)
names a measurement worker on another device (``sliver device serve``, see
:mod:`sliver.device`): the ONNX export is timed there, and the fingerprint is
the worker's own.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from sliver.config import ConfigError, StrictModel, load, validate
from sliver.errors import UserError

_PRESET = re.compile(
    r"^(cpu|cuda)-(ort|onnxruntime|torch|ov|openvino)(?:-(cpu|cuda|tensorrt|openvino))?-b(\d+)(?:-t(\d+))?$"
)
_BACKENDS = {"ort": "onnxruntime", "onnxruntime": "onnxruntime", "torch": "torch", "ov": "openvino", "openvino": "openvino"}
#: ONNX Runtime execution providers by their short names, and the device each runs on
PROVIDERS = {
    "cpu": ("CPUExecutionProvider", "cpu"),
    "openvino": ("OpenVINOExecutionProvider", "cpu"),
    "cuda": ("CUDAExecutionProvider", "cuda"),
    "tensorrt": ("TensorrtExecutionProvider", "cuda"),
}
#: the presets ``sliver measure --list-targets`` shows (any batch size and thread count works the same way)
PRESET_EXAMPLES = (
    "cpu-torch-b1", "cpu-ort-b1", "cpu-ov-b1", "cpu-ort-openvino-b1",
    "cuda-torch-b8", "cuda-ort-b1", "cuda-ort-tensorrt-b1",
)


class HardwareTarget(StrictModel):
    """A device and runtime (with its provider and precision) with pinned threads and batch size, plus the repeat protocol of a latency measurement."""

    name: str = "cpu-torch-b1"
    device: Literal["cpu", "cuda"] = "cpu"
    backend: Literal["torch", "onnxruntime", "openvino"] = "torch"
    provider: Literal["cpu", "openvino", "cuda", "tensorrt"] | None = Field(
        None, description="ONNX Runtime execution provider (default: the device's own); onnxruntime only")
    precision: Literal["f32", "bf16", "f16"] = Field(
        "f32", description="inference precision; only OpenVINO runs below f32 (its INFERENCE_PRECISION_HINT)")
    threads: int = Field(1, ge=1, description="intra-op threads, pinned for the measurement")
    batch_size: int = Field(1, ge=1)
    warmup: int = Field(5, ge=0, description="untimed runs first (allocation, caches, lazy init)")
    # a few runs are not enough for sub-millisecond models: caches and the CPU clock need a moment to settle
    warmup_s: float = Field(0.2, ge=0, description="keep warming up for at least this many seconds")
    min_repeats: int = Field(20, ge=3)
    max_repeats: int = Field(200, ge=3)
    stability: float = Field(0.05, gt=0, description="stop once IQR / median is below this")
    max_seconds: float = Field(5.0, gt=0, description="cap on the timed loop of one measurement")
    remote: str | None = Field(
        None, description="http://HOST:PORT of a measurement worker (sliver device serve) that times the ONNX export on its device")

    @field_validator("remote")
    @classmethod
    def _remote_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        url = url.strip().rstrip("/")
        if "://" not in url:
            url = f"http://{url}"
        if not url.startswith("http://") or not re.match(r"^http://[^/:]+:\d+$", url):
            raise ValueError(f"'{url}' is not a worker address; give http://HOST:PORT as printed by 'sliver device serve'")
        return url

    @model_validator(mode="after")
    def _repeats_ordered(self) -> "HardwareTarget":
        if self.max_repeats < self.min_repeats:
            raise ValueError(f"max_repeats ({self.max_repeats}) must be >= min_repeats ({self.min_repeats})")
        return self

    @model_validator(mode="after")
    def _runtime_consistent(self) -> "HardwareTarget":
        if self.provider is not None and self.backend != "onnxruntime":
            raise ValueError(f"provider '{self.provider}' is an ONNX Runtime execution provider; remove it or use backend onnxruntime")
        if self.backend == "onnxruntime" and self.provider is None:
            self.provider = self.device
        if self.provider is not None and PROVIDERS[self.provider][1] != self.device:
            raise ValueError(f"provider '{self.provider}' runs on device '{PROVIDERS[self.provider][1]}', not '{self.device}'")
        if self.backend == "openvino" and self.device != "cpu":
            raise ValueError("backend openvino is measured on the CPU here; use device cpu")
        if self.precision != "f32" and self.backend != "openvino":
            raise ValueError(f"precision '{self.precision}': only backend openvino runs below f32; use f32")
        if self.remote and self.backend == "torch":
            raise ValueError("a remote worker times ONNX models; use backend onnxruntime or openvino (e.g. cpu-ort-b1@HOST:PORT)")
        return self

    # ------------------------------------------------------------ construction
    @classmethod
    def preset(cls, name: str, **overrides) -> "HardwareTarget":
        """A named preset ``<device>-<runtime>[-<provider>]-b<batch>[-t<threads>]``, with optional field overrides."""
        m = _PRESET.match(name.strip())
        if not m:
            raise ConfigError(
                f"unknown hardware target '{name}'; use a preset like cpu-ort-b1, cpu-torch-b8, cpu-ov-b1, cpu-ort-b1-t4 "
                "or cuda-torch-b8, or a YAML file of HardwareTarget fields"
            )
        device, runtime, provider, batch, threads = m.groups()
        fields = {"name": name, "device": device, "backend": _BACKENDS[runtime], "provider": provider,
                  "batch_size": int(batch), "threads": int(threads or 1)}
        fields.update(overrides)
        return validate(cls, fields, f"hardware target '{name}'")

    @classmethod
    def parse(cls, spec: "str | HardwareTarget") -> "HardwareTarget":
        """A preset name, ``<preset>@<host>:<port>`` (measured by that remote worker), or a YAML file of HardwareTarget fields."""
        if isinstance(spec, HardwareTarget):
            return spec
        if spec.endswith((".yaml", ".yml")) or Path(spec).is_file():
            return load(cls, spec)
        if "@" in spec:
            name, remote = spec.split("@", 1)
            return cls.preset(name, remote=remote)
        return cls.preset(spec)

    # ------------------------------------------------------------ identity
    def fingerprint(self) -> dict[str, str | int | dict]:
        """What a latency depends on: machine, library versions, runtime, device, provider, precision, threads, batch.

        Raises a one-line :class:`UserError` if this machine cannot run the target.
        The device, provider and precision are left out where they are the CPU, the
        CPU execution provider and f32: those are what the original CPU targets meant,
        so the latencies stores already hold under them keep their key. A target
        with ``remote`` has the fingerprint its worker reports for it.
        """
        if self.remote:
            from sliver.device import remote_fingerprint

            return remote_fingerprint(self)
        self.require_available()
        fp: dict[str, str | int | dict] = {
            **_machine(),
            "backend": self.backend,
            "threads": self.threads,
            "batch_size": self.batch_size,
        }
        if self.device != "cpu":
            fp.update(device=self.device, **_cuda_device())
        if self.provider not in (None, "cpu"):
            fp["provider"] = PROVIDERS[self.provider][0]
        if self.precision != "f32":
            fp["precision"] = self.precision
        if self.backend == "openvino":
            import openvino

            fp.update(openvino=openvino.__version__, openvino_config=self.openvino_config())
        return fp

    def fingerprint_hash(self) -> str:
        """A short stable hash of :meth:`fingerprint`, used as the store key."""
        text = json.dumps(self.fingerprint(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    # ------------------------------------------------------------ runtime
    def openvino_config(self) -> dict[str, str | int]:
        """OpenVINO compile options, pinned for latency: one request at a time, one stream, our threads and precision."""
        return {
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
            "INFERENCE_NUM_THREADS": self.threads,
            # pinned because OpenVINO's CPU default is bf16 wherever the CPU has it, which changes outputs and latency
            "INFERENCE_PRECISION_HINT": self.precision,
        }

    def ort_provider(self) -> str:
        """The ONNX Runtime execution provider's full name (``CPUExecutionProvider``, ...)."""
        return PROVIDERS[self.provider or "cpu"][0]

    def unavailable_reason(self) -> str | None:
        """Why this machine cannot run the target (a missing device, runtime or provider), or None if it can.

        For a target with ``remote`` it is its worker that answers, when asked for the fingerprint.
        """
        if self.remote:
            return None
        if self.device == "cuda":
            try:
                import torch
            except ImportError:
                return "finding the CUDA device needs torch, which is not installed here; use a cpu-* target"

            if not torch.cuda.is_available():
                return "no CUDA device is available (torch.cuda.is_available() is False); use a cpu-* target"
        if self.backend == "openvino":
            try:
                import openvino  # noqa: F401
            except ImportError:
                return "the openvino runtime is not installed; pip install 'sliver[openvino]'"
        if self.backend == "onnxruntime":
            import onnxruntime

            available = onnxruntime.get_available_providers()
            if self.ort_provider() not in available:
                return (f"ONNX Runtime execution provider {self.ort_provider()} is not available; "
                        f"this onnxruntime has {', '.join(available)}")
        return None

    def require_available(self) -> None:
        """Raise a one-line :class:`UserError` naming the target if this machine cannot run it."""
        reason = self.unavailable_reason()
        if reason:
            raise UserError(f"hardware target '{self.name}': {reason}")


@lru_cache(maxsize=1)
def _machine() -> dict[str, str | int]:
    import onnxruntime

    machine: dict[str, str | int] = {
        "cpu": cpu_model(),
        "cores": available_cores(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }
    torch_version = _installed_torch()
    if torch_version is not None:  # a measurement worker without torch has no torch version to record
        machine["torch"] = torch_version
    machine["onnxruntime"] = onnxruntime.__version__
    return machine


def _installed_torch() -> str | None:
    """torch's version if it can be imported here, read without importing it (a worker must not pay for torch)."""
    try:
        if importlib.util.find_spec("torch") is None:
            return None
    except ImportError:  # an import hook that forbids torch
        return None
    return importlib.metadata.version("torch")  # equal to torch.__version__, e.g. "2.13.0+cpu"


def _cuda_device() -> dict[str, str]:
    import torch

    return {"gpu": torch.cuda.get_device_name(), "cuda": str(torch.version.cuda)}


def cpu_model() -> str:
    """The CPU model name (from /proc/cpuinfo on Linux, else :func:`platform.processor`)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def available_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
