"""The vocabulary every part of sliver shares, with no torch and no numpy: a config, an objective, a constraint.

A config is a plain JSON-able dict (the only thing that travels between the
search side and the model side). Objectives say what is measured about a
sub-network, in which direction it is better and what it costs: cheap ones
(params, MACs, size) are computed exactly and never predicted; expensive ones
(accuracy, latency) are measured, and predicted during search. A constraint
bounds one metric.
"""

from __future__ import annotations

import operator
import re
from dataclasses import asdict, dataclass
from typing import Any, Literal

from sliver.errors import UserError

#: one sub-network: dimension name -> value (or list of values), JSON-able
Config = dict[str, Any]


@dataclass(frozen=True)
class Objective:
    """A named metric: its direction (``min``/``max``), unit, cost class and role in a search.

    ``cost``: ``"cheap"`` metrics are computed exactly and never predicted;
    ``"expensive"`` ones (the default, as for any black box) are measured and
    predicted during search. ``additive``: the value is close to a sum of the
    costs of the network's parts (latency, energy): LINAS then fits it with the
    additive GP, and a given ``latency_model`` stands in for it. Strategies read
    these declarations, never the name, so a user's own metric is declared as
    ``Objective("energy_mj", "min", "mJ", additive=True)``.
    """

    name: str
    direction: Literal["min", "max"]
    unit: str = ""
    cost: Literal["cheap", "expensive"] = "expensive"
    description: str = ""
    additive: bool = False

    def __post_init__(self) -> None:
        if self.direction not in ("min", "max"):
            raise UserError(f"objective '{self.name}': direction must be 'min' or 'max', got {self.direction!r}")
        if self.cost not in ("cheap", "expensive"):
            raise UserError(f"objective '{self.name}': cost must be 'cheap' or 'expensive', got {self.cost!r}")

    @property
    def sign(self) -> float:
        """Multiply a value by this to get a quantity to minimise."""
        return 1.0 if self.direction == "min" else -1.0

    @property
    def label(self) -> str:
        return f"{self.name} ({self.unit})" if self.unit else self.name

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Objective":
        """An objective from :meth:`to_dict`; a built-in one stored before roles were declared takes its built-in role."""
        if "additive" not in data and data.get("name") in BUILTIN:
            data = {**data, "additive": BUILTIN[data["name"]].additive}
        return cls(**data)


#: objectives every model-based evaluator knows
BUILTIN: dict[str, Objective] = {
    o.name: o
    for o in [
        Objective("accuracy", "max", "%", "expensive", "top-1 on the validation split after BN recalibration"),
        Objective("latency_ms", "min", "ms", "expensive", "median latency of one batch on the hardware target", additive=True),
        Objective("macs", "min", "MACs", "cheap", "multiply-accumulates of conv and linear layers, batch 1"),
        Objective("params", "min", "", "cheap", "number of parameters of the extracted model"),
        Objective("model_size", "min", "bytes", "cheap", "bytes of the serialised fp32 extracted model"),
        Objective("peak_memory", "min", "bytes", "expensive", "peak memory allocated during one inference"),
        # language models (sliver.measure.language)
        Objective("perplexity", "min", "", "expensive", "exp of the mean next-token NLL on the validation split"),
        Objective("prefill_ms", "min", "ms", "expensive",
                  "median latency of a prompt of the super-network's sequence length at the target's batch, "
                  "filling the KV cache", additive=True),
        Objective("decode_ms", "min", "ms", "expensive",
                  "median latency of one decoding step (one new token per row) with a KV cache after such a prompt",
                  additive=True),
        Objective("params_no_embed", "min", "", "cheap", "parameters without the token embedding and the LM head"),
        Objective("kv_bytes_per_token", "min", "bytes", "cheap", "KV-cache bytes each token adds"),
    ]
}


def get_objective(name: str) -> Objective:
    """A built-in objective by name, or a clear error listing the known ones."""
    try:
        return BUILTIN[name]
    except KeyError:
        raise UserError(f"unknown objective '{name}'; known objectives: {sorted(BUILTIN)}") from None


_OPS = {"<=": operator.le, ">=": operator.ge}
_CONSTRAINT_RE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(<=|>=)\s*([-+0-9.eE]+)\s*$")


@dataclass(frozen=True)
class Constraint:
    """``metric <= bound`` or ``metric >= bound`` on a measured or computed metric."""

    metric: str
    op: str
    bound: float

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise UserError(f"constraint on '{self.metric}': operator must be '<=' or '>=', got {self.op!r}")

    @classmethod
    def parse(cls, text: str) -> "Constraint":
        """Parse ``"latency_ms <= 5"`` (a one-line error if it is malformed)."""
        m = _CONSTRAINT_RE.match(str(text))
        if not m:
            raise UserError(f"constraint {text!r}: write it as 'metric <= number' or 'metric >= number'")
        try:
            bound = float(m.group(3))
        except ValueError:
            raise UserError(f"constraint {text!r}: {m.group(3)!r} is not a number") from None
        return cls(m.group(1), m.group(2), bound)

    def violation(self, value: float) -> float:
        """How far ``value`` is on the wrong side of the bound (0 when satisfied), relative to the bound."""
        scale = max(abs(self.bound), 1e-12)
        excess = value - self.bound if self.op == "<=" else self.bound - value
        return max(0.0, excess / scale)

    def ok(self, value: float) -> bool:
        return bool(_OPS[self.op](value, self.bound))

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}"
