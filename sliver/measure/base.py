"""The interface between search and measurement.

Search code talks to an :class:`Evaluator` (a super-network on a hardware
target, or a table of published measurements) only through this protocol; the
store-aware :func:`sliver.measure.evaluator.evaluate` wraps it so that nothing
already measured is paid for twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from sliver.core import Objective
from sliver.space import Config, SearchSpace


@runtime_checkable
class Evaluator(Protocol):
    """Measures objectives of sub-network configs of one super-network on one hardware target."""

    #: the space configs come from
    space: SearchSpace
    #: every objective this evaluator can measure
    objectives: list[Objective]
    #: identity of the model the configs are cut from (e.g. checkpoint content hash, or a table's hash)
    supernet_hash: str
    #: hash of the hardware target fingerprint (objectives that do not depend on hardware may use "any")
    fingerprint: str

    def fingerprint_for(self, objective: str) -> str:
        """The fingerprint a measurement of ``objective`` is keyed by ("any" if hardware does not matter)."""

    def measure(self, config: Config, objectives: list[str]) -> dict[str, float | BaseException]:
        """Measure ``objectives`` of ``config``; a failed objective maps to the exception it raised."""


@dataclass
class EvalResult:
    """Outcome of evaluating one config: values of the objectives that worked, errors of the others."""

    config: Config
    key: str
    values: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    #: True when every value came from the store (no model was run)
    cached: bool = False
    #: wall seconds spent measuring (0 for a cache hit)
    seconds: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors
