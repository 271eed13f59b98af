"""NAS-Bench-201 as a tabular search problem: accuracy and real latency on 27 devices.

Every one of the 15,625 cells is listed in
``<data>/nb201/nb201_acc_latency.csv`` (see ``../shared/data/README.md``), so
the true Pareto front of (error, latency) and its hypervolume are exact and a
search can be scored by the share of that hypervolume it reaches.

Scoring follows the issue: both objectives (100 - accuracy, latency) are
normalised by their min and max over all rows, and the reference point is 1.1
times the true front's worst value in each objective.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from sliver.core import BUILTIN, Objective
from sliver.errors import UserError
from sliver.search.hv import hypervolume, nondominated
from sliver.space import Config, Dimension, SearchSpace

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
N_EDGES = 6
DATASETS = {"cifar10": "cifar10_test_acc", "cifar100": "cifar100_test_acc", "imagenet16_120": "imagenet16_120_test_acc"}
CSV = Path("nb201") / "nb201_acc_latency.csv"


def data_root(path: str | os.PathLike | None = None) -> Path:
    """The shared data folder: ``path``, else ``$SLIVER_DATA``, else ``<repo>/../shared/data``."""
    if path is not None:
        return Path(path)
    if os.environ.get("SLIVER_DATA"):
        return Path(os.environ["SLIVER_DATA"])
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def nb201_space() -> SearchSpace:
    """The cell space: one op for each of the 6 edges (no inactive genes: every row is its own network)."""
    return SearchSpace([Dimension("ops", OPS, N_EDGES)])


#: the cell's edges as (from node, to node), in the order of the 6 genes
EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))


def live_edges(X: np.ndarray) -> np.ndarray:
    """Boolean ``(n, 6)``: edges whose op is not ``none`` and lies on a path from the input node to the output.

    An edge off every such path computes nothing the output sees: like a
    block beyond a depth gate, it is inactive. With no live edge at all the
    cell is disconnected (10% accuracy, and on some devices nearly zero latency).
    """
    on = np.asarray(X).reshape(-1, N_EDGES) != 0
    fwd = [np.ones(len(on), dtype=bool)] + [np.zeros(len(on), dtype=bool)] * 3
    for k, (a, b) in enumerate(EDGES):  # EDGES is in topological order
        fwd[b] = fwd[b] | (on[:, k] & fwd[a])
    bwd = [np.zeros(len(on), dtype=bool)] * 3 + [np.ones(len(on), dtype=bool)]
    for k, (a, b) in reversed(list(enumerate(EDGES))):
        bwd[a] = bwd[a] | (on[:, k] & bwd[b])
    return np.stack([on[:, k] & fwd[a] & bwd[b] for k, (a, b) in enumerate(EDGES)], axis=1)


#: weight of the "cell is connected" feature in :func:`nb201_features`
CONNECTED_WEIGHT = 4.0
#: the cell's four input-to-output paths, as indices into :data:`EDGES`
PATHS = ((3,), (0, 4), (1, 5), (0, 2, 5))


def path_counts(X: np.ndarray) -> np.ndarray:
    """``(n, 24)``: per live op kind, its count over live edges; per path, whether it is live and its op counts.

    Accuracy follows how much computation lies on the routes from input to
    output (how many convolutions, whether a shortcut bypasses them) more than
    which edge holds which op; a few counts say that in a way a distance-based
    model generalises from (NB201: GP rank correlation 0.77 vs 0.69 from the one-hots alone).
    """
    live_ops = np.where(live_edges(X), X, 0)
    blocks = [np.stack([(live_ops == k).sum(1) for k in range(1, len(OPS))], axis=1)]
    for path in PATHS:
        ops = live_ops[:, list(path)]
        alive = (ops != 0).all(1)
        blocks.append(alive[:, None] * np.stack([(ops == k).sum(1) for k in range(1, len(OPS))], axis=1))
        blocks.append(alive[:, None])
    return np.hstack(blocks).astype(float)


def nb201_features(X: np.ndarray) -> np.ndarray:
    """Predictor features of encoded cells: one-hot ops, one-hot *live* ops (inactive edges zeroed), path counts, connected flag.

    The one-hot alone cannot tell a cell whose output is cut off from one
    that computes; the live-op block says which ops the output depends on,
    the way inactive genes are zeroed in :meth:`SearchSpace.features`; the
    one-hot of every op stays because a dead op may still run on a device.
    :func:`path_counts` summarises the routes to the output. Pass it as
    LINAS's ``features`` option.
    """
    X = np.asarray(X, dtype=np.int64).reshape(-1, N_EDGES)
    n, k = len(X), len(OPS)
    live = live_edges(X)
    onehot = np.zeros((n, N_EDGES * k))
    onehot[np.arange(n)[:, None], np.arange(N_EDGES) * k + X] = 1.0
    live_hot = np.zeros_like(onehot)
    live_hot[np.arange(n)[:, None], np.arange(N_EDGES) * k + np.where(live, X, 0)] = 1.0
    live_hot = live_hot[:, np.arange(N_EDGES * k) % k != 0]  # "none" columns carry nothing new
    # a disconnected cell computes a constant (10% accuracy, near-zero latency on some devices): weighted so
    # that distance-based models (a GP, SVR) see it far from every working cell, not one gene away
    return np.hstack([onehot, live_hot, path_counts(X), CONNECTED_WEIGHT * live.any(1, keepdims=True)])


def parse_arch(arch: str) -> list[str]:
    """``|a~0|+|b~0|c~1|+|d~0|e~1|f~2|`` -> ``[a, b, c, d, e, f]``."""
    return [tok.split("~")[0] for tok in arch.replace("+", "").split("|") if tok]


@dataclass
class NB201:
    """The NB201 table for one accuracy data set and one latency device.

    Raises ``FileNotFoundError`` naming the path when the table is absent and
    ``ValueError`` listing the valid names for an unknown device or data set.
    """

    device: str = "raspi4"
    dataset: str = "cifar10"
    root: str | os.PathLike | None = None

    #: the problem's name in ``sliver bench search --problem``
    name = "nb201"
    #: LINAS's predictor features on this table (see :mod:`sliver.bench.runner`)
    linas_features = staticmethod(nb201_features)

    def __post_init__(self) -> None:
        self.path = data_root(self.root) / CSV
        if not self.path.is_file():
            raise FileNotFoundError(f"NB201 table not found at {self.path}; set SLIVER_DATA or pass the shared data "
                                    "folder (--data of sliver bench search, problem.data in a search YAML)")
        if self.dataset not in DATASETS:
            raise UserError(f"dataset '{self.dataset}' is not one of {sorted(DATASETS)}")
        if self.device not in self.devices:
            raise UserError(f"device '{self.device}' is not in the NB201 table; devices: {', '.join(self.devices)}")

    # ------------------------------------------------------------------ table
    @cached_property
    def table(self) -> pd.DataFrame:
        return _read(str(self.path))

    @cached_property
    def devices(self) -> list[str]:
        header = self.path.open().readline().strip().split(",")
        return [c[len("lat_ms_"):] for c in header if c.startswith("lat_ms_")]

    @property
    def acc_column(self) -> str:
        return DATASETS[self.dataset]

    @property
    def lat_column(self) -> str:
        return f"lat_ms_{self.device}"

    @cached_property
    def space(self) -> SearchSpace:
        return nb201_space()

    @cached_property
    def index(self) -> dict[tuple[str, ...], int]:
        """Row of each cell, keyed by its 6 ops."""
        return {tuple(parse_arch(a)): i for i, a in enumerate(self.table["arch_str"])}

    def row(self, config: Config) -> int:
        ops = tuple(self.space.validate(config)["ops"])
        return self.index[ops]

    def values(self, config: Config) -> dict[str, float]:
        """Accuracy (%) and latency (ms) of one cell."""
        i = self.row(config)
        return {"accuracy": float(self.table[self.acc_column].iat[i]), "latency_ms": float(self.table[self.lat_column].iat[i])}

    # -------------------------------------------------------------- scoring
    @property
    def objectives(self) -> list[Objective]:
        return [BUILTIN["accuracy"], BUILTIN["latency_ms"]]

    @cached_property
    def _raw(self) -> np.ndarray:
        """(error %, latency ms) of every row, both to minimise."""
        return np.column_stack([100.0 - self.table[self.acc_column].to_numpy(float), self.table[self.lat_column].to_numpy(float)])

    @cached_property
    def _bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self._raw.min(0), self._raw.max(0)
        return lo, np.where(hi > lo, hi - lo, 1.0)  # a constant column must not divide by zero

    def normalise(self, values: list[dict[str, float]]) -> np.ndarray:
        """Measured ``{"accuracy", "latency_ms"}`` dicts -> normalised (error, latency) rows."""
        raw = np.array([[100.0 - v["accuracy"], v["latency_ms"]] for v in values], dtype=float).reshape(-1, 2)
        lo, span = self._bounds
        return (raw - lo) / span

    @cached_property
    def normalised_rows(self) -> np.ndarray:
        """Normalised (error, latency) of every row of the table, in row order."""
        return (self._raw - self._bounds[0]) / self._bounds[1]

    @cached_property
    def true_front(self) -> np.ndarray:
        """Row indices of the exact Pareto front (normalised error vs latency)."""
        return np.flatnonzero(nondominated(self.normalised_rows))

    @cached_property
    def ref_point(self) -> np.ndarray:
        return 1.1 * self.normalised_rows[self.true_front].max(0)

    @cached_property
    def true_hv(self) -> float:
        return hypervolume(self.normalised_rows[self.true_front], self.ref_point)

    def hv_ratio(self, values: list[dict[str, float]]) -> float:
        """Share of the true hypervolume reached by measured points."""
        return hypervolume(self.normalise(values), self.ref_point) / self.true_hv

    def evaluator(self) -> "NB201Evaluator":
        return NB201Evaluator(self)


def _file_hash(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_CACHE: dict[str, pd.DataFrame] = {}
_HASHES: dict[str, str] = {}


def _read(path: str) -> pd.DataFrame:
    # the table is read once per process: benchmarks build many problems from it
    if path not in _CACHE:
        _CACHE[path] = pd.read_csv(path)
    return _CACHE[path]


class NB201Evaluator:
    """An :class:`~sliver.measure.base.Evaluator` that looks cells up in the NB201 table.

    The accuracy column plays the super-network (``supernet_hash`` = hash of the
    file and the accuracy column), the device plays the hardware target: an
    accuracy measured for one device is reused for another.
    """

    def __init__(self, problem: NB201):
        self.problem = problem
        self.space = problem.space
        self.objectives = problem.objectives
        if str(problem.path) not in _HASHES:
            _HASHES[str(problem.path)] = _file_hash(str(problem.path))
        digest = _HASHES[str(problem.path)]
        self.supernet_hash = hashlib.sha256(f"nb201:{digest}:{problem.acc_column}".encode()).hexdigest()[:24]
        self.fingerprint = f"nb201-{problem.device}"

    def fingerprint_for(self, objective: str) -> str:
        return "any" if objective == "accuracy" else self.fingerprint

    def measure(self, config: Config, objectives: list[str]) -> dict[str, float | BaseException]:
        row = self.problem.values(config)
        out: dict[str, float | BaseException] = {}
        for name in objectives:
            out[name] = row[name] if name in row else KeyError(f"objective '{name}' is not in the NB201 table (it has {sorted(row)})")
        return out
