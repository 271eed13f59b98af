"""Hardware targets: where and how latency is measured, and the fingerprint that keys the results.

A :class:`HardwareTarget` names a backend (PyTorch eager or ONNX Runtime on the
CPU), a thread count, a batch size and the timing protocol. Its
:meth:`~HardwareTarget.fingerprint` records the machine and library versions
too: latencies measured under different fingerprints are never mixed.

Named presets read ``cpu-<backend>-b<batch>[-t<threads>]``, e.g. ``cpu-ort-b1``
(ONNX Runtime, batch 1, 1 thread) or ``cpu-torch-b8-t2``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from sliver.config import ConfigError, StrictModel, load

_PRESET = re.compile(r"^cpu-(ort|onnxruntime|torch)-b(\d+)(?:-t(\d+))?$")


class HardwareTarget(StrictModel):
    """A backend with pinned threads and batch size, plus the repeat protocol of a latency measurement."""

    name: str = "cpu-torch-b1"
    backend: Literal["torch", "onnxruntime"] = "torch"
    threads: int = Field(1, ge=1, description="intra-op threads, pinned for the measurement")
    batch_size: int = Field(1, ge=1)
    warmup: int = Field(5, ge=0, description="untimed runs first (allocation, caches, lazy init)")
    # a few runs are not enough for sub-millisecond models: caches and the CPU clock need a moment to settle
    warmup_s: float = Field(0.2, ge=0, description="keep warming up for at least this many seconds")
    min_repeats: int = Field(20, ge=3)
    max_repeats: int = Field(200, ge=3)
    stability: float = Field(0.05, gt=0, description="stop once IQR / median is below this")
    max_seconds: float = Field(5.0, gt=0, description="cap on the timed loop of one measurement")

    @model_validator(mode="after")
    def _repeats_ordered(self) -> "HardwareTarget":
        if self.max_repeats < self.min_repeats:
            raise ValueError(f"max_repeats ({self.max_repeats}) must be >= min_repeats ({self.min_repeats})")
        return self

    # ------------------------------------------------------------ construction
    @classmethod
    def preset(cls, name: str, **overrides) -> "HardwareTarget":
        """A named preset ``cpu-{ort|torch}-b<batch>[-t<threads>]``, with optional field overrides."""
        m = _PRESET.match(name.strip())
        if not m:
            raise ConfigError(
                f"unknown hardware target '{name}'; use a preset like cpu-ort-b1, cpu-torch-b8 or cpu-ort-b1-t4, "
                "or a YAML file of HardwareTarget fields"
            )
        backend = "torch" if m.group(1) == "torch" else "onnxruntime"
        fields = {"name": name, "backend": backend, "batch_size": int(m.group(2)), "threads": int(m.group(3) or 1)}
        fields.update(overrides)
        return cls(**fields)

    @classmethod
    def parse(cls, spec: "str | HardwareTarget") -> "HardwareTarget":
        """A preset name or the path of a YAML file with HardwareTarget fields."""
        if isinstance(spec, HardwareTarget):
            return spec
        if spec.endswith((".yaml", ".yml")) or Path(spec).is_file():
            return load(cls, spec)
        return cls.preset(spec)

    # ------------------------------------------------------------ identity
    def fingerprint(self) -> dict[str, str | int]:
        """What a latency depends on: machine, library versions, backend, threads and batch size."""
        return {
            **_machine(),
            "backend": self.backend,
            "threads": self.threads,
            "batch_size": self.batch_size,
        }

    def fingerprint_hash(self) -> str:
        """A short stable hash of :meth:`fingerprint`, used as the store key."""
        text = json.dumps(self.fingerprint(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@lru_cache(maxsize=1)
def _machine() -> dict[str, str | int]:
    import onnxruntime
    import torch

    return {
        "cpu": cpu_model(),
        "cores": available_cores(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


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
