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
from sliver.predict.transfer import MIN_SOURCE_NETWORKS
from sliver.quant import QuantizationSection

NB201_METRICS = ("accuracy", "latency_ms")
OFA_METRICS = ("accuracy", "macs", "params")


class NB201Problem(StrictModel):
    """The NAS-Bench-201 table: accuracy on ``dataset`` and latency on ``device``."""

    kind: Literal["nb201"]
    device: str = "raspi4"
    dataset: str = "cifar10"
    data: str | None = None


class OFAProblemSpec(StrictModel):
    """An OFA yardstick (:mod:`sliver.bench.ofa`): OFA's published ImageNet accuracy predictor, exact MACs and params."""

    kind: Literal["ofa-mbv3", "ofa-resnet50"]
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
    """Few-shot transfer to the searched device or runtime (see :mod:`sliver.predict.transfer`).

    nb201 problems transfer from the table's other ``devices``; supernet problems
    from the hardware targets in ``sources`` (runtimes this machine runs: torch
    eager, ONNX Runtime, OpenVINO), each measured on ``networks`` sub-networks
    (those the store holds, the rest measured before the search).
    """

    #: nb201: source devices (default: every device of the table but the problem's own)
    devices: list[str] | None = Field(None, min_length=1)
    #: nb201: CSV of latencies measured on the searched device (columns ``arch_str``, ``latency_ms``); absent: the prior
    samples: str | None = None
    #: supernet: source hardware targets, e.g. ``[cpu-torch-b1, cpu-ort-b1, cpu-ov-b1]``
    sources: list[str] | None = Field(None, min_length=1)
    #: supernet: sub-networks measured on every source target (at least MIN_SOURCE_NETWORKS)
    networks: int = Field(40, ge=MIN_SOURCE_NETWORKS)


class LatencyModelSpec(StrictModel):
    """A cheap latency model that LINAS uses in place of its latency predictor; the reported front stays measured.

    ``lut``: an operator lookup table (YAML from ``sliver latency build-lut``)
    built on the problem's hardware target (supernet problems). ``transfer``:
    the few-shot transfer model, from the table's other devices (nb201 problems)
    or from other runtimes measured on this machine (supernet problems).
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

    def build(self, evaluator, nb201=None, store=None, seed: int = 0,
              log: Callable[[str], None] | None = None) -> tuple[Any, str]:
        """The callable on a list of configs for LINAS's ``latency_model`` option, and a line saying what it is.

        ``store`` (a supernet problem's transfer) holds the source runtimes' latencies and keeps those measured now;
        ``log`` hears about measurements made before the search.
        """
        if self.lut is not None:
            return lut_latency_model(Path(self.lut), evaluator)
        assert self.transfer is not None  # the validator admits exactly one of the two
        if nb201 is None:
            return runtime_transfer_model(self.transfer, evaluator, store, seed, log)
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


def cost_features(supernet, configs: list):
    """Feature rows of sub-networks for latency models: the one-hot genes, then the exact MACs and parameters
    (resolution and width scale every layer's time, which one-hot genes alone say only through many samples)."""
    import numpy as np

    costs = [supernet.costs(c) for c in configs]
    return np.c_[supernet.space.features(configs), [[c["macs"], c["params"]] for c in costs]]


def runtime_transfer_model(spec: TransferStandIn, evaluator, store=None, seed: int = 0,
                           log: Callable[[str], None] | None = None) -> tuple[Any, str]:
    """Few-shot transfer from the runtimes in ``spec.sources`` to ``evaluator``'s target, and a line saying so.

    Each source target times ``spec.networks`` sub-networks: those ``store`` already
    holds on every source (for this super-network), the rest drawn at random (seeded)
    and measured now, into the store. The searched target's own latencies in the
    store are the transfer's first samples; the search's measurements refit it.
    """
    import numpy as np

    from sliver.measure.evaluator import evaluate
    from sliver.measure.model import ModelEvaluator
    from sliver.predict.transfer import RuntimeTransfer

    space, supernet, h = evaluator.space, evaluator.supernet, evaluator.supernet_hash
    names = spec.sources or []  # SearchConfig's check requires them for a supernet problem
    try:
        sources = [ModelEvaluator(supernet, name, ["latency_ms"], supernet_hash=h) for name in names]
    except UserError as exc:  # a target name that is no preset or file
        raise UserError(f"latency_model.transfer.sources: {exc}") from None
    for name, source in zip(names, sources):
        reason = source.target.unavailable_reason()
        if reason:
            raise UserError(f"latency_model.transfer.sources: '{name}': {reason}")
        if source.fingerprint == evaluator.fingerprint:
            raise UserError(f"latency_model.transfer.sources: '{name}' is the searched target itself; list only other runtimes")
    latency: dict[str, list[float]] = {}  # config key -> latency on each source
    configs: dict[str, Any] = {}
    if store is not None:
        held = [{space.key(c): (c, v["latency_ms"]) for c, v in store.compatible_results(h, {"latency_ms": s.fingerprint})}
                for s in sources]
        for key, (config, _) in held[0].items():
            if all(key in on for on in held) and len(configs) < spec.networks:
                configs[key], latency[key] = config, [on[key][1] for on in held]
    rng = np.random.default_rng(seed)
    todo = spec.networks - len(configs)
    if todo and log is not None:
        log(f"latency model: measuring {todo} sub-networks on {', '.join(names)} for the transfer "
            f"({len(configs)} found in the store)")
    for _ in range(20 * spec.networks):  # a bound: a small space runs out of new networks
        if len(configs) >= spec.networks:
            break
        config = space.sample(rng)
        key = space.key(config)
        if key in configs:
            continue
        results = [evaluate(s, config, store) for s in sources]
        if all(r.ok for r in results):  # a network that fails on a source runtime is left out
            configs[key], latency[key] = config, [r.values["latency_ms"] for r in results]
    samples = []
    if store is not None:
        samples = [(c, v["latency_ms"]) for c, v in store.compatible_results(h, {"latency_ms": evaluator.fingerprint})]
    model = RuntimeTransfer(space, list(configs.values()), np.array(list(latency.values())), names,
                            features=partial(cost_features, supernet), samples=samples, seed=seed)
    return model, (f"latency model: transfer to {evaluator.target.name}, refitted on every latency the search measures; "
                   f"before the search: {model.describe()}")


class SearchConfig(StrictModel):
    """A search: what to measure, under which constraints, with which strategy and budget, stored where."""

    problem: NB201Problem | OFAProblemSpec | SupernetProblem = Field(discriminator="kind")
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
        if isinstance(self.problem, OFAProblemSpec):
            for n in self.objectives + [Constraint.parse(c).metric for c in self.constraints]:
                if n not in OFA_METRICS:
                    raise UserError(f"the {self.problem.kind} problem measures only {list(OFA_METRICS)}, not '{n}'")
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
        transfer = spec.transfer
        if transfer is not None and self.problem.kind == "nb201" and transfer.sources is not None:
            raise UserError("latency_model.transfer.sources: source runtimes apply to a supernet problem; "
                            "for nb201 name the table's other devices in latency_model.transfer.devices")
        if transfer is not None and self.problem.kind == "supernet":
            wrong = next((f for f in ("devices", "samples") if getattr(transfer, f) is not None), None)
            if wrong is not None:
                raise UserError(f"latency_model.transfer.{wrong}: applies to an nb201 problem; a supernet problem transfers "
                                "from latency_model.transfer.sources and learns from the search's own measurements")
            if transfer.sources is None:
                raise UserError("latency_model.transfer.sources: name the hardware targets to transfer from, "
                                "e.g. [cpu-torch-b1, cpu-ort-b1, cpu-ov-b1]")
            if quantization is not None and quantization.search:
                raise UserError("latency_model.transfer: the source runtimes time float networks and cannot stand in for a "
                                "quantisation search; drop problem.quantization.search or latency_model")


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
    if isinstance(cfg.problem, OFAProblemSpec):
        from sliver.bench.ofa import PROBLEMS

        ofa = PROBLEMS[cfg.problem.kind]
        metrics = set(cfg.objectives) | {Constraint.parse(c).metric for c in cfg.constraints}
        # the problem measures accuracy and MACs always, params only when asked (its own objective sets)
        objectives = ("accuracy", "macs", "params") if "params" in metrics else ("accuracy", "macs")
        try:
            evaluator = ofa(objectives, root=cfg.problem.data).evaluator()
        except FileNotFoundError as exc:
            raise UserError(str(exc)) from None
    elif cfg.problem.kind == "nb201":
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
    store = None
    if cfg.store:
        from sliver.store import ResultStore

        store = ResultStore(cfg.store)
    if cfg.latency_model is not None:
        options["latency_model"], note = cfg.latency_model.build(evaluator, nb201, store, cfg.seed, log)
        options["latency_metric"] = cfg.latency_model.metric
        if log is not None:
            log(note)
    search = Search(
        evaluator.space, evaluator, cfg.objectives, cfg.strategy.name, budget=cfg.budget, constraints=cfg.constraints,
        store=store, study_name=cfg.study, warm_start=cfg.warm_start, batch_size=cfg.batch_size, seed=cfg.seed,
        progress=progress, strategy_options=options,
        executor=cfg.executor.kind if cfg.executor else None, executor_options=cfg.executor.options() if cfg.executor else None,
        evaluator_factory=factory,
        study_settings={"problem": cfg.problem.kind, **({"search_yaml": str(Path(path).resolve())} if path else {})},
    )
    return search, store
