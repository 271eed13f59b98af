"""The interface between search and measurement.

Search code talks to an :class:`Evaluator` (a super-network on a hardware
target, or a table of published measurements) only through this protocol; the
store-aware :func:`sliver.measure.evaluator.evaluate` wraps it so that nothing
already measured is paid for twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping, Protocol, runtime_checkable

from sliver.core import Objective
from sliver.space import Config, SearchSpace

if TYPE_CHECKING:
    from sliver.store import Measurement


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

    def measure(self, config: Config, objectives: list[str]) -> "Measured | Mapping[str, float | BaseException]":
        """Measure ``objectives`` of ``config``, each failing on its own.

        Return a :class:`Measured` (values or errors, with each objective's
        seconds and statistics), or, for a black-box evaluator, a plain mapping
        of objective to value or to the exception it raised.
        """


@dataclass
class Measured:
    """What measuring one config gave: values of the objectives that worked, one-line errors of the others.

    An evaluator returns it from ``measure`` (filled with :meth:`record`); a
    worker sends it back to the search, which stores it.
    """

    values: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    #: seconds spent per objective, and statistics per objective (latency IQR, runs, ...)
    seconds: dict[str, float] = field(default_factory=dict)
    stats: dict[str, dict] = field(default_factory=dict)
    #: wall seconds of the whole measurement
    wall: float = 0.0
    #: where it was measured ("local", "pid 123", a Dask worker's address)
    worker: str = ""

    @property
    def ok(self) -> bool:
        """True when every objective has a value."""
        return not self.errors

    def record(self, name: str, result: object, seconds: float = 0.0, stats: dict | None = None) -> None:
        """Record ``result`` of objective ``name``: a number, or anything else (an exception) as its error."""
        error = measurement_error(result)
        if error is None:
            self.values[name] = float(result)  # type: ignore[arg-type]
        else:
            self.errors[name] = error
        self.seconds[name] = seconds
        self.stats[name] = dict(stats or {})

    def measurements(self, objectives: list[str], fingerprints: dict[str, str]) -> list[Measurement]:
        """The store's rows of ``objectives``, each keyed by its fingerprint in ``fingerprints``."""
        # imported here: a latency worker imports this package without the store's SQLAlchemy
        from sliver.store import Measurement, Status

        return [Measurement(n, self.values.get(n), Status.OK if n in self.values else Status.FAILED, self.errors.get(n),
                            self.stats.get(n, {}), self.seconds.get(n, 0.0), fingerprints[n]) for n in objectives]

    @classmethod
    def of(cls, out: "Measured | Mapping[str, object]", objectives: list[str], wall: float) -> "Measured":
        """What ``measure`` returned, with a value or an error for every objective asked for.

        A plain mapping's objectives share ``wall`` evenly; an objective the
        evaluator left out is an error.
        """
        if not isinstance(out, Measured):  # a black-box evaluator's values: they share the wall time
            given = cls()
            for name in objectives:
                if name in out:
                    given.record(name, out[name], wall / len(objectives))
            out = given
        m = cls(wall=wall)
        for name in objectives:
            seconds, stats = out.seconds.get(name, wall / len(objectives)), out.stats.get(name)
            if name in out.values:
                m.record(name, out.values[name], seconds, stats)  # checked again: a value set directly may be NaN
            else:
                m.errors[name] = out.errors.get(name, "RuntimeError: the evaluator returned no value")
                m.seconds[name], m.stats[name] = seconds, dict(stats or {})
        return m


def measurement_error(result: object) -> str | None:
    """None for a usable number, else a one-line message saying what went wrong."""
    if isinstance(result, BaseException):
        text = str(result).strip().splitlines()
        return f"{type(result).__name__}: {text[0] if text else ''}".rstrip(": ")
    try:
        value = float(result)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return f"not a number: {result!r}"
    return None if math.isfinite(value) else f"non-finite value {value}"


@dataclass
class EvalResult(Measured):
    """What :func:`~sliver.measure.evaluator.evaluate` gave for one config: a :class:`Measured` of every
    objective asked for, some served from the store, with the config it is of.

    ``seconds`` holds only the objectives measured now; ``wall`` is 0 for a cache hit.
    """

    config: Config = field(default_factory=dict)
    key: str = ""
    #: the objectives measured now (the others came from the store)
    measured: list[str] = field(default_factory=list)

    @property
    def cached(self) -> bool:
        """True when every value came from the store (no model was run)."""
        return not self.measured
