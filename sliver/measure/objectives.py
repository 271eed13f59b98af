"""Objectives: what is measured about a sub-network, in which direction it is better, and what it costs.

Cheap objectives (params, MACs, size) are computed exactly and never predicted;
expensive ones (accuracy, latency) are measured, and predicted during search.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from sliver.errors import UserError


@dataclass(frozen=True)
class Objective:
    """A named metric with a direction (``min``/``max``), a unit and a cost class."""

    name: str
    direction: Literal["min", "max"]
    unit: str
    cost: Literal["cheap", "expensive"]
    description: str = ""

    def __post_init__(self) -> None:
        if self.direction not in ("min", "max"):
            raise ValueError(f"objective '{self.name}': direction must be 'min' or 'max', got {self.direction!r}")
        if self.cost not in ("cheap", "expensive"):
            raise ValueError(f"objective '{self.name}': cost must be 'cheap' or 'expensive', got {self.cost!r}")

    @property
    def sign(self) -> float:
        """Multiply a value by this to get a quantity to minimise."""
        return 1.0 if self.direction == "min" else -1.0

    @property
    def label(self) -> str:
        return f"{self.name} ({self.unit})" if self.unit else self.name

    def to_dict(self) -> dict:
        return asdict(self)


#: objectives every model-based evaluator knows
BUILTIN: dict[str, Objective] = {
    o.name: o
    for o in [
        Objective("accuracy", "max", "%", "expensive", "top-1 on the validation split after BN recalibration"),
        Objective("latency_ms", "min", "ms", "expensive", "median latency of one batch on the hardware target"),
        Objective("macs", "min", "MACs", "cheap", "multiply-accumulates of conv and linear layers, batch 1"),
        Objective("params", "min", "", "cheap", "number of parameters of the extracted model"),
        Objective("model_size", "min", "bytes", "cheap", "bytes of the serialised fp32 extracted model"),
        Objective("peak_memory", "min", "bytes", "expensive", "peak memory allocated during one inference"),
    ]
}


def get_objective(name: str) -> Objective:
    """A built-in objective by name, or a clear error listing the known ones."""
    try:
        return BUILTIN[name]
    except KeyError:
        raise UserError(f"unknown objective '{name}'; known objectives: {sorted(BUILTIN)}") from None
