"""Latency models of sub-networks from operator lookup tables (learned predictors: :mod:`sliver.predict.latency`).

An :class:`OperatorLUT` holds the measured latency of every distinct operator
(stem, inverted-residual block, head, each with its input resolution and
shapes) that an ``ElasticMobileNet`` can produce, on one hardware target. A
sub-network's predicted latency is the sum over its operators. The table is
keyed by the target's fingerprint and refuses to serve another one: latencies
from different machines or libraries are never mixed. It is kept as YAML and/or
in the :class:`~sliver.store.ResultStore` (a table of kind :data:`STORE_KIND`
under the fingerprint hash). Operator keys spell out every shape, so one table
serves every ElasticMobileNet timed on that target.

:class:`LUTLatencyModel` turns a table into a latency model of configs, with
an optional learned correction: the sum of isolated operators misses what the
whole network does differently (per-call overheads, caches warmed by the
previous layer), so a robust power law ``measured = a * sum ** b``, fitted on
a handful of whole-network measurements, rescales the sum without reordering it.

Torch is imported only inside the functions that build and time operators.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Sequence

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field

from sliver.config import read_yaml, validate
from sliver.errors import UserError

#: the ResultStore table kind under which operator lookup tables are kept
STORE_KIND = "operator_lut"

#: default table name in the store: operator keys carry every shape, so one table per target serves all MobileNets
STORE_NAME = "mobilenet"

#: whole-network measurements needed before the correction is fitted
MIN_CORRECTION_SAMPLES = 3

#: independent copies of an operator timed in turn (the time is per copy). Timed alone, an
#: operator finds its weights in the core's private cache on every run; inside a network the
#: other layers have evicted them. Cycling through copies makes each run fetch its weights from
#: further away, as in the network, which narrows the gap between the sum and the whole network.
COPIES = 8


# ------------------------------------------------------------ operator LUT
def operator_key(kind: str, spec: dict[str, Any]) -> str:
    """Canonical text key of one operator, e.g. ``block:act=relu,expand=1,...,res=56``."""
    return kind + ":" + ",".join(f"{k}={spec[k]}" for k in sorted(spec))


def operators(arch: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """``(key, kind, spec)`` of every operator of a MobileNet ``arch_config``, in execution order."""
    res = arch["resolution"]
    stem = arch["stem"]
    ops = [("stem", {"in": arch["in_channels"], "out": stem["out"], "stride": stem["stride"], "act": stem["act"], "res": res})]
    res = (res - 1) // stem["stride"] + 1  # padding k // 2 with odd kernels
    for b in arch["blocks"]:
        ops.append(("block", {k: b[k] for k in ("in", "mid", "out", "kernel", "stride", "expand", "se_mid", "act")} | {"res": res}))
        res = (res - 1) // b["stride"] + 1
    ops.append(("head", {"in": arch["blocks"][-1]["out"], "final": arch["final_expand_width"], "feature": arch["feature_width"],
                         "classes": arch["num_classes"], "res": res}))
    return [(operator_key(kind, spec), kind, spec) for kind, spec in ops]


def enumerate_operators(supernet) -> dict[str, tuple[str, dict[str, Any]]]:
    """Every distinct operator the super-network can produce: ``key -> (kind, spec)``.

    A block's shapes depend on its position, kernel, expand ratio and the input
    resolution, never on how many blocks run after it; so the deepest config
    with one (kernel, expand) everywhere, at each resolution, contains every
    operator of that (kernel, expand, resolution).
    """
    space = supernet.space
    deepest = space.max_config()
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for r in space["r"].choices:
        for k in space["ks"].choices:
            for e in space["e"].choices:
                config = dict(deepest, r=r, ks=[k] * space["ks"].length, e=[e] * space["e"].length)
                for key, kind, spec in operators(supernet.arch_config(config)):
                    found.setdefault(key, (kind, spec))
    return found


def build_operator(kind: str, spec: dict[str, Any]):
    """The plain PyTorch module of one operator and an example input (batch 1)."""
    import torch
    from torch import nn

    from sliver.elastic.mobilenet import InvertedResidual, conv_bn_act

    module: nn.Module
    if kind == "stem":
        module = conv_bn_act(spec["in"], spec["out"], 3, spec["stride"], spec["act"])
    elif kind == "block":
        module = InvertedResidual(spec)
    elif kind == "head":
        # the same layers as MobileNet's tail: 1x1 expand, pool, 1x1 feature mix, classifier
        module = nn.Sequential(
            conv_bn_act(spec["in"], spec["final"], 1, 1, "h_swish"), nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(spec["final"], spec["feature"], 1, bias=False), nn.Hardswish(), nn.Flatten(),
            nn.Linear(spec["feature"], spec["classes"]),
        )
    else:
        raise UserError(f"operator kind '{kind}' is unknown; expected stem, block or head")
    return module.eval(), torch.randn(1, spec["in"], spec["res"], spec["res"])


class _TableFile(BaseModel):
    """The types of an operator table's fields, checked on loading (a hand-edited or damaged table fails in one line)."""

    model_config = ConfigDict(coerce_numbers_to_str=True)  # an all-digit hash written unquoted reads as a number

    fingerprint: dict[str, Any]
    fingerprint_hash: str
    entries: dict[str, Annotated[float, Field(ge=0, allow_inf_nan=False)]] | None
    unit: Literal["ms"] = "ms"
    #: tables written before operators were timed in copies timed them alone
    copies: int = Field(1, ge=1)


class OperatorLUT:
    """Per-operator latency (ms) on one hardware target, identified by its fingerprint."""

    def __init__(self, fingerprint: dict[str, Any], fingerprint_hash: str, entries: dict[str, float] | None = None,
                 copies: int = COPIES) -> None:
        # plain str/int values (torch's version is a str subclass that YAML cannot write)
        self.fingerprint = {str(k): v if type(v) in (int, float, bool) else str(v) for k, v in fingerprint.items()}
        self.fingerprint_hash = fingerprint_hash
        self.entries: dict[str, float] = dict(entries or {})
        self.copies = int(copies)

    @classmethod
    def for_target(cls, target, copies: int = COPIES) -> "OperatorLUT":
        """An empty table for a :class:`~sliver.measure.hardware.HardwareTarget`."""
        return cls(target.fingerprint(), target.fingerprint_hash(), copies=copies)

    def check_target(self, target) -> None:
        """Refuse a target whose fingerprint differs from the table's."""
        if target.fingerprint_hash() != self.fingerprint_hash:
            theirs = target.fingerprint()
            diff = sorted(k for k in set(theirs) | set(self.fingerprint) if theirs.get(k) != self.fingerprint.get(k))
            raise UserError(f"lookup table was built for fingerprint {self.fingerprint_hash}, not {target.fingerprint_hash()} "
                             f"(differs in {', '.join(diff) or 'hash'}); build a table on this target")

    def missing(self, arch: dict[str, Any]) -> list[str]:
        """Keys of ``arch``'s operators that the table lacks."""
        return [key for key, _, _ in operators(arch) if key not in self.entries]

    def predict(self, arch: dict[str, Any]) -> float:
        """Latency (ms) of a MobileNet ``arch_config``: the sum over its operators."""
        missing = self.missing(arch)
        if missing:
            raise UserError(f"lookup table has no entry for operator '{missing[0]}' ({len(missing)} missing); "
                             "rebuild it for this super-network with 'sliver latency build-lut'")
        return float(sum(self.entries[key] for key, _, _ in operators(arch)))

    def to_dict(self) -> dict[str, Any]:
        """The table as plain data: fingerprint, its hash, unit and ``key: ms`` entries."""
        return {"fingerprint": self.fingerprint, "fingerprint_hash": self.fingerprint_hash, "unit": "ms",
                "copies": self.copies, "entries": {k: float(v) for k, v in sorted(self.entries.items())}}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "lookup table", target=None) -> "OperatorLUT":
        """Rebuild a table from :meth:`to_dict`'s data; with ``target``, refuse it unless the fingerprints match."""
        if not isinstance(data, dict):
            raise UserError(f"{source}: expected a mapping with fingerprint, fingerprint_hash and entries; not a sliver lookup table")
        for field in ("fingerprint", "fingerprint_hash", "entries"):
            if field not in data:
                raise UserError(f"{source}: field '{field}' is missing; not a sliver lookup table")
        table = validate(_TableFile, data, source)
        lut = cls(table.fingerprint, table.fingerprint_hash, table.entries or {}, copies=table.copies)
        if target is not None:
            lut.check_target(target)
        return lut

    def save(self, path: str | Path) -> None:
        """Write the table as YAML."""
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def load(cls, path: str | Path, target=None) -> "OperatorLUT":
        """Read a YAML table; with ``target``, refuse it unless the fingerprints match."""
        return cls.from_dict(read_yaml(path, "operator table"), str(path), target)

    def save_to_store(self, store, name: str = STORE_NAME) -> None:
        """Keep the table in a :class:`~sliver.store.ResultStore`, under its fingerprint hash and ``name``."""
        store.put_table(STORE_KIND, self.fingerprint_hash, name, self.to_dict())

    @classmethod
    def from_store(cls, store, target, name: str = STORE_NAME) -> "OperatorLUT | None":
        """The table ``name`` built on ``target`` (looked up by its fingerprint), or None if there is none."""
        data = store.get_table(STORE_KIND, target.fingerprint_hash(), name)
        return None if data is None else cls.from_dict(data, f"store table '{name}'", target)


def in_turn(modules: Sequence[Any]):
    """A module running each of ``modules`` on one input in turn, returning every output.

    Give independently initialised modules, not copies of one: ONNX Runtime
    merges nodes with identical weights and inputs.
    """
    from torch import nn

    class InTurn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.copies = nn.ModuleList(modules)

        def forward(self, x):
            return tuple(m(x) for m in self.copies)  # every output returned, so an exporter prunes none

    return InTurn().eval()


def time_operator(kind: str, spec: dict[str, Any], target, copies: int = COPIES) -> float:
    """Median latency (ms) of one operator on ``target`` (batch from the target), per copy of :data:`COPIES`."""
    from sliver.measure.latency import measure_latency

    module, example = build_operator(kind, spec)
    if target.batch_size != 1:
        example = example.expand(target.batch_size, *example.shape[1:]).contiguous()
    if copies > 1:
        module = in_turn([module] + [build_operator(kind, spec)[0] for _ in range(copies - 1)])
    return float(measure_latency(module, example, target).median_ms) / copies


def build_lut(supernet, target, path: str | Path | None = None,
              on_progress: Callable[[int, int], None] | None = None,
              store=None, name: str = STORE_NAME, store_every: int = 25, copies: int = COPIES) -> OperatorLUT:
    """Time every operator of ``supernet`` on ``target`` once; resumes from ``path`` and/or ``store``.

    The YAML at ``path`` is rewritten after each operator, so an interrupted
    build loses at most the operator being timed; the store's copy is written
    every ``store_every`` operators and at the end.
    """
    lut = OperatorLUT.for_target(target, copies)
    earlier: list[OperatorLUT | None] = [OperatorLUT.load(path, target)] if path is not None and Path(path).is_file() else []
    if store is not None:
        earlier.append(OperatorLUT.from_store(store, target, name))
    for table in filter(None, earlier):
        if table.copies != copies:
            raise UserError(f"the lookup table to resume timed {table.copies} copies per operator, this build {copies}; "
                             "timings of the two kinds are not mixed: start a new table")
        lut.entries.update(table.entries)
    todo = {k: v for k, v in enumerate_operators(supernet).items() if k not in lut.entries}
    done = len(enumerate_operators(supernet)) - len(todo)
    total = done + len(todo)
    for i, (key, (kind, spec)) in enumerate(todo.items(), 1):
        lut.entries[key] = time_operator(kind, spec, target, copies)
        done += 1
        if path is not None:
            lut.save(path)
        if store is not None and i % store_every == 0:
            lut.save_to_store(store, name)
        if on_progress is not None:
            on_progress(done, total)
    if path is not None:
        lut.save(path)
    if store is not None:
        lut.save_to_store(store, name)
    return lut


class LUTLatencyModel:
    """Latency (ms) of an ElasticMobileNet's configs: the LUT sum, times a learned correction once fitted.

    Call :meth:`fit` with a handful of configs and their measured whole-network
    latency to learn the correction; until then predictions are the plain sums.
    The instance is callable on a list of configs, so it can stand in for the
    latency objective inside a search (see LINAS's ``latency_model`` option).
    """

    def __init__(self, lut: OperatorLUT, supernet) -> None:
        self.lut = lut
        self.supernet = supernet
        self._correction: tuple[float, float, float] | None = None
        self.n_samples = 0

    @property
    def corrected(self) -> bool:
        return self._correction is not None

    def lut_sum(self, configs: Sequence[dict]) -> np.ndarray:
        """The plain LUT sum (ms) of each config."""
        return np.array([self.lut.predict(self.supernet.arch_config(c)) for c in configs], dtype=np.float64)

    def fit(self, configs: Sequence[dict], latency_ms: Sequence[float]) -> "LUTLatencyModel":
        """Learn the correction from whole-network latencies (ms) measured on the LUT's target.

        The correction is a power law of the sum, ``measured = a * sum ** b``,
        fitted robustly in log space: with a handful of noisy measurements
        more terms overfit, and as long as ``b > 0`` it keeps the LUT's ranking
        (so Kendall tau is the plain sum's) while fixing its level and scale.
        """
        from sklearn.linear_model import HuberRegressor

        y = np.asarray(latency_ms, dtype=np.float64).reshape(-1)
        if len(configs) != y.size:
            raise ValueError(f"correction: {len(configs)} configs but {y.size} latencies")
        if y.size < MIN_CORRECTION_SAMPLES:
            raise UserError(f"correction: needs at least {MIN_CORRECTION_SAMPLES} whole-network measurements, got {y.size}")
        if not np.isfinite(y).all() or (y <= 0).any():
            raise UserError("correction: latencies must be positive finite numbers (ms)")
        log_sum = np.log(self.lut_sum(configs))
        # Huber: one timing disturbed by another process on a shared machine must not bend the fit
        huber = HuberRegressor(alpha=1e-4, max_iter=1000).fit(log_sum[:, None] - log_sum.mean(), np.log(y) - log_sum.mean())
        slope = float(huber.coef_[0])
        if slope <= 0:
            raise UserError(f"correction: measured latency falls as the LUT sum grows (slope {slope:.3g}) over these "
                             f"{y.size} networks; the table does not fit this target (rebuild it) or the timings are too noisy")
        self._correction = (slope, float(huber.intercept_), float(log_sum.mean()))
        self.n_samples = y.size
        return self

    def predict(self, configs: Sequence[dict]) -> np.ndarray:
        """Predicted latency (ms) of each config."""
        configs = list(configs)
        if not configs:
            return np.zeros(0)
        sums = self.lut_sum(configs)
        if self._correction is None:
            return sums
        slope, intercept, centre = self._correction
        return np.exp(centre + intercept + slope * (np.log(sums) - centre))

    __call__ = predict
