"""A search as the user writes it (YAML): the config model, the latency models it names, and the :class:`Search` it builds.

``sliver search``, ``sliver deploy``, the demo and the benchmarks all read a
search through :class:`SearchConfig` and :func:`build_search`.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import Field, field_validator, model_validator

from sliver.config import StrictModel, read_csv
from sliver.core import BUILTIN, Constraint
from sliver.errors import UserError
from sliver.quant import QuantizationSection

NB201_METRICS = ("accuracy", "latency_ms")


class NB201Problem(StrictModel):
    """The NAS-Bench-201 table: accuracy on ``dataset`` and latency on ``device``."""

    kind: Literal["nb201"]
    device: str = "raspi4"
    dataset: str = "cifar10"
    data: str | None = None


class SupernetProblem(StrictModel):
    """A trained super-network checkpoint measured on a hardware target."""

    kind: Literal["supernet"]
    checkpoint: str
    target: str = "cpu-torch-b1"
    #: the seeded fraction of the validation split that accuracy (a language model's perplexity) is measured on
    accuracy_subset: float | None = Field(None, gt=0, le=1)
    #: ``{search: true}`` searches the per-layer int8/fp32 policy with the architecture (SimQ-NAS)
    quantization: QuantizationSection | None = None


class StrategySpec(StrictModel):
    name: Literal["random", "nsga2", "age", "unsga3", "linas", "tpe", "optuna-gp"] = "linas"
    options: dict[str, Any] = Field(default_factory=dict)


class ExecutorSpec(StrictModel):
    """Where evaluations run (see :mod:`sliver.parallel`): in this process, local processes, or a Dask cluster."""

    kind: Literal["local", "processes", "dask"] = "local"
    #: worker processes (processes; dask without an address)
    workers: int = Field(2, ge=1)
    #: a running Dask scheduler, e.g. tcp://10.0.0.5:8786 (default: a LocalCluster on 127.0.0.1)
    address: str | None = None
    #: resubmissions of an evaluation whose worker died, before it is recorded failed
    retries: int = Field(2, ge=0)
    #: seconds to wait for one evaluation before it is recorded failed
    timeout_s: float = Field(1800.0, gt=0)

    @model_validator(mode="after")
    def _fits_kind(self) -> "ExecutorSpec":
        if self.address is not None and self.kind != "dask":
            raise ValueError(f"'address' only applies to kind 'dask', not {self.kind!r}")
        return self

    def options(self) -> dict[str, Any]:
        """Keyword arguments of :func:`sliver.parallel.make_executor` for this kind."""
        opts: dict[str, Any] = {"retries": self.retries, "timeout_s": self.timeout_s}
        if self.kind != "local":
            opts["workers"] = self.workers
        if self.kind == "dask":
            opts["address"] = self.address
        return opts


class TransferStandIn(StrictModel):
    """Few-shot transfer from the NB201 table's other devices (see :mod:`sliver.predict.transfer`)."""

    #: source devices (default: every device of the table but the problem's own)
    devices: list[str] | None = Field(None, min_length=1)
    #: CSV of latencies measured on the searched device (columns ``arch_str``, ``latency_ms``); absent: the prior
    samples: str | None = None


class LatencyModelSpec(StrictModel):
    """A cheap latency model that LINAS uses in place of its latency predictor; the reported front stays measured.

    ``lut``: an operator lookup table (YAML from ``sliver latency build-lut``)
    built on the problem's hardware target (supernet problems). ``transfer``:
    the few-shot transfer model from the table's other devices (nb201 problems).
    """

    lut: str | None = None
    transfer: TransferStandIn | None = None
    #: the metric the model stands in for
    metric: str = "latency_ms"

    @model_validator(mode="after")
    def _one_kind(self) -> "LatencyModelSpec":
        if (self.lut is None) == (self.transfer is None):
            raise ValueError("give exactly one of 'lut' (an operator table YAML) or 'transfer' (the table's other devices)")
        return self

    def build(self, evaluator, nb201=None) -> tuple[Any, str]:
        """The callable on a list of configs for LINAS's ``latency_model`` option, and a line saying what it is."""
        if self.lut is not None:
            return lut_latency_model(Path(self.lut), evaluator)
        assert self.transfer is not None  # the validator admits exactly one of the two
        return transfer_latency_model(self.transfer, nb201)


def lut_latency_model(path: Path, evaluator) -> tuple[Any, str]:
    """An operator table (YAML) as the latency model of ``evaluator``'s MobileNet super-network, and a line saying so.

    The table must have been timed on the evaluator's target and cover every operator of the super-network.
    """
    from sliver.elastic.mobilenet import ElasticMobileNet
    from sliver.predict.lut import LUTLatencyModel, OperatorLUT, enumerate_operators

    supernet = evaluator.supernet
    if not isinstance(supernet, ElasticMobileNet):
        raise UserError(f"latency_model.lut: operator tables cover ElasticMobileNet super-networks, not {type(supernet).__name__}; "
                         "drop latency_model to let LINAS learn latency from its measurements")
    if not path.is_file():
        raise FileNotFoundError(f"latency_model.lut: {path} not found; build it with 'sliver latency build-lut <supernet.yaml> "
                                f"--target {evaluator.target.name} -o {path}'")
    try:
        lut = OperatorLUT.load(path, evaluator.target)  # refuses a table timed on another fingerprint
    except ValueError as exc:
        raise UserError(f"latency_model.lut: {exc}") from None
    missing = [k for k in enumerate_operators(supernet) if k not in lut.entries]
    if missing:
        raise UserError(f"latency_model.lut: {path} lacks {len(missing)} of this super-network's operators (e.g. '{missing[0]}'); "
                         f"complete it with 'sliver latency build-lut <supernet.yaml> --target {evaluator.target.name} -o {path}'")
    return LUTLatencyModel(lut, supernet), f"latency model: operator table {path} ({len(lut.entries)} operators, target {lut.fingerprint_hash})"


def transfer_latency_model(spec: TransferStandIn, nb201) -> tuple[Any, str]:
    """Few-shot transfer from the NB201 table's other devices as the latency model of ``nb201``'s device, and a line saying so."""
    import numpy as np
    import pandas as pd

    from sliver.bench.nb201 import OPS, nb201_features, parse_arch
    from sliver.predict.transfer import DeviceTransfer, TransferLatencyModel

    devices = spec.devices or [d for d in nb201.devices if d != nb201.device]
    for d in devices:
        if d not in nb201.devices:
            raise UserError(f"latency_model.transfer.devices: '{d}' is not in the NB201 table; devices: {', '.join(nb201.devices)}")
        if d == nb201.device:
            raise UserError(f"latency_model.transfer.devices: '{d}' is the searched device itself; list only other devices")
    table = nb201.table
    cells = np.array([[OPS.index(op) for op in parse_arch(a)] for a in table["arch_str"]])
    model = DeviceTransfer(table[[f"lat_ms_{d}" for d in devices]].to_numpy(np.float64), features=nb201_features(cells), devices=devices)
    samples: dict[int, float] = {}
    if spec.samples is not None:
        path = Path(spec.samples)
        if not path.is_file():
            raise FileNotFoundError(f"latency_model.transfer.samples: {path} not found")
        frame = read_csv(path, "samples table")
        for col in ("arch_str", "latency_ms"):
            if col not in frame.columns:
                raise UserError(f"latency_model.transfer.samples: {path} has no column '{col}'; columns are {list(frame.columns)}")
        latency = pd.to_numeric(frame["latency_ms"], errors="coerce")
        bad = frame.index[~(latency > 0) | ~np.isfinite(latency)]
        if len(bad):
            raise UserError(f"latency_model.transfer.samples: {path} row {bad[0] + 2}: latency_ms must be a positive number "
                            f"(ms), got {frame['latency_ms'][bad[0]]!r}")
        by_arch = latency.groupby(frame["arch_str"].astype(str)).mean()
        try:
            samples = {nb201.index[tuple(parse_arch(a))]: float(v) for a, v in by_arch.items()}
        except KeyError as exc:
            raise UserError(f"latency_model.transfer.samples: {exc.args[0]} is not an NB201 cell (write arch_str as in the table)") from None
    stand_in = TransferLatencyModel(model, nb201.row, samples)
    return stand_in, (f"latency model: transfer to {nb201.device}, refitted on every latency the search measures; "
                      f"before the search: {stand_in.describe()}")


class SearchConfig(StrictModel):
    """A search: what to measure, under which constraints, with which strategy and budget, stored where."""

    problem: NB201Problem | SupernetProblem = Field(discriminator="kind")
    objectives: list[str] = Field(min_length=1, max_length=4)
    constraints: list[str] = Field(default_factory=list)
    strategy: StrategySpec = Field(default_factory=StrategySpec)
    budget: int = Field(gt=0)
    batch_size: int | None = Field(None, gt=0)
    seed: int = 0
    store: str | None = "sqlite:///sliver.db"
    study: str | None = None
    warm_start: bool = False
    #: stream evaluations to workers (no batch barrier); absent: measure in this process, batch by batch
    executor: ExecutorSpec | None = None
    #: a cheap latency model standing in for LINAS's latency predictor (e.g. ``{lut: lut.yaml}``)
    latency_model: LatencyModelSpec | None = None

    @field_validator("objectives")
    @classmethod
    def _known_objectives(cls, names: list[str]) -> list[str]:
        for n in names:
            if n not in BUILTIN:
                raise UserError(f"unknown objective '{n}'; known objectives: {sorted(BUILTIN)}")
        return names

    @field_validator("constraints")
    @classmethod
    def _parse_constraints(cls, items: list[str]) -> list[str]:
        for text in items:
            c = Constraint.parse(text)
            if c.metric not in BUILTIN:
                raise UserError(f"constraint '{text}' is on unknown metric '{c.metric}'; known metrics: {sorted(BUILTIN)}")
        return items

    @model_validator(mode="after")
    def _fits_problem(self) -> "SearchConfig":
        if self.problem.kind == "nb201":
            for n in self.objectives + [Constraint.parse(c).metric for c in self.constraints]:
                if n not in NB201_METRICS:
                    raise UserError(f"the nb201 problem measures only {list(NB201_METRICS)}, not '{n}'")
        if self.latency_model is not None:
            self._check_latency_model(self.latency_model)
        return self

    def _check_latency_model(self, spec: LatencyModelSpec) -> None:
        if self.strategy.name != "linas":
            raise UserError(f"latency_model: only the linas strategy uses a latency model, not {self.strategy.name!r}; "
                             "set strategy.name: linas or drop latency_model")
        if "latency_model" in self.strategy.options or "latency_metric" in self.strategy.options:
            raise UserError("latency_model: give the latency model once, in latency_model, not in strategy.options")
        metrics = self.objectives + [Constraint.parse(c).metric for c in self.constraints]
        if spec.metric not in metrics:
            raise UserError(f"latency_model.metric: '{spec.metric}' is neither an objective nor a constrained metric of this search")
        if spec.lut is not None and self.problem.kind != "supernet":
            raise UserError("latency_model.lut: an operator table applies to a supernet problem; for nb201 use latency_model.transfer")
        quantization = self.problem.quantization if isinstance(self.problem, SupernetProblem) else None
        if spec.lut is not None and quantization is not None and quantization.search:
            raise UserError("latency_model.lut: the operator table times float operators and cannot stand in for a "
                             "quantisation search; drop problem.quantization.search or latency_model")
        if spec.transfer is not None and self.problem.kind != "nb201":
            raise UserError("latency_model.transfer: transfer from the table's other devices applies to an nb201 problem; "
                             "for a super-network use latency_model.lut")


def build_search(cfg: SearchConfig, progress: bool = False, log: Callable[[str], None] | None = None,
                 path: str | Path | None = None):
    """The :class:`~sliver.search.Search` a validated config describes (and its store, or None).

    ``log`` receives the line that says which latency model stands in (when the config has one).
    ``path``, the YAML file ``cfg`` was read from, is recorded with the study
    (absolute, as ``search_yaml``, with the problem kind as ``problem``), so the
    dashboard's export command names the file that ``sliver export`` needs.
    """
    from sliver.search import Search

    factory = nb201 = None
    evaluator: Any
    options = dict(cfg.strategy.options)
    if cfg.problem.kind == "nb201":
        from sliver.bench.nb201 import NB201, nb201_features

        nb201 = NB201(cfg.problem.device, cfg.problem.dataset, cfg.problem.data)
        evaluator = nb201.evaluator()
        if cfg.strategy.name == "linas":
            # the same live-op features `sliver bench search` gives LINAS on this table
            options.setdefault("features", nb201_features)
    else:
        from sliver.measure.model import ModelEvaluator  # torch is needed only for a real super-network

        quant = cfg.problem.quantization
        if quant is not None and quant.search:
            if cfg.problem.accuracy_subset is not None:
                quant = quant.model_copy(update={"accuracy_subset": quant.accuracy_subset or cfg.problem.accuracy_subset})
            evaluator = quant.evaluator_from_checkpoint(cfg.problem.checkpoint, cfg.problem.target)
        else:
            names = list(dict.fromkeys(cfg.objectives + [c.split("<")[0].split(">")[0].strip() for c in cfg.constraints]))
            evaluator = ModelEvaluator.from_checkpoint(cfg.problem.checkpoint, cfg.problem.target, names,
                                                       accuracy_subset=cfg.problem.accuracy_subset)
            # workers load the checkpoint themselves instead of receiving the model pickled
            factory = partial(ModelEvaluator.from_checkpoint, cfg.problem.checkpoint, cfg.problem.target, names,
                              accuracy_subset=cfg.problem.accuracy_subset)
    if cfg.latency_model is not None:
        options["latency_model"], note = cfg.latency_model.build(evaluator, nb201)
        options["latency_metric"] = cfg.latency_model.metric
        if log is not None:
            log(note)
    store = None
    if cfg.store:
        from sliver.store import ResultStore

        store = ResultStore(cfg.store)
    search = Search(
        evaluator.space, evaluator, cfg.objectives, cfg.strategy.name, budget=cfg.budget, constraints=cfg.constraints,
        store=store, study_name=cfg.study, warm_start=cfg.warm_start, batch_size=cfg.batch_size, seed=cfg.seed,
        progress=progress, strategy_options=options,
        executor=cfg.executor.kind if cfg.executor else None, executor_options=cfg.executor.options() if cfg.executor else None,
        evaluator_factory=factory,
        study_settings={"problem": cfg.problem.kind, **({"search_yaml": str(Path(path).resolve())} if path else {})},
    )
    return search, store
