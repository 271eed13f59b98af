"""Once-for-All super-networks as cheap large-space problems: OFA's published accuracy predictors, exact MACs.

Two problems, each a space of 10^13 to 10^20 sub-networks, scored in
microseconds each, so a search can be judged on a space the size of a real
super-network's and a long reference search (``benchmarks/reference_fronts_ofa.py``)
can stand in for the unknowable true front:

* :class:`OFAMobileNetV3`: OFA's MobileNetV3 super-network at width 1.2
  (5 stages x 4 blocks; kernel {3,5,7}, expand {3,4,6}, depth {2,3,4} per
  stage), accuracy from ``<data>/ofa/acc_predictor.pth``.
* :class:`OFAResNet50`: OFA's ResNet50 super-network (stem block kept or
  skipped, 0-2 extra blocks per stage, bottleneck expand {0.2,0.25,0.35}, width
  multiplier {0.65,0.8,1.0} for the two stem convolutions and each stage),
  accuracy from ``<data>/ofa/ofa_resnet50_acc_predictor.pth``.

Accuracy is the predictor's top-1 (%) on ImageNet, with the predictor's own
input encoding (reproduced from OFA's code: for MobileNetV3 the tutorial's
128-d one-hot, for ResNet50 ``ResNetArchEncoder``). The resolutions are the
ones each predictor encodes: the MobileNetV3 predictor bins the resolution by
16 pixels from 112 (``(r - 112) // 16``), so only {160, 176, 192, 208, 224}, the
resolutions OFA's own search used, are distinct for it; finer steps would add
networks with more MACs and the same predicted accuracy. MACs and parameters
are exact counts of the plain sub-network (convolutions and linear layers;
batch-norm scale and shift counted as parameters), computed analytically with
OFA's channel rounding, vectorised over a population.

Scoring: objectives are normalised by the predicted accuracy and the MACs (and
parameters) of the space's smallest and largest networks, and the reference
point is 1.1 in every normalised objective; the hypervolume ratio divides by
the hypervolume of the committed reference front
(``sliver/bench/data/ofa_<problem>_front.json``). Everything here is fixed in
code, so a ratio is comparable across runs; above 1 means a search beat the
reference front.

The predictors are torch state dicts: torch is imported only to read them.
"""

from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path

import numpy as np

from sliver.bench.nb201 import data_root
from sliver.core import BUILTIN, Objective
from sliver.errors import UserError
from sliver.search.hv import hypervolume, nondominated
from sliver.space import Config, DepthGate, Dimension, SearchSpace

#: where the committed reference fronts live
FRONTS = Path(__file__).resolve().parent / "data"
#: reference point of the hypervolume, in every normalised objective
REFERENCE = 1.1
#: ImageNet classes of both networks
N_CLASSES = 1000

ACCURACY = Objective("accuracy", "max", "%", "expensive", "ImageNet top-1 predicted by OFA's published accuracy predictor")


def make_divisible(value: float, divisor: int = 8) -> int:
    """OFA's channel rounding: nearest multiple of ``divisor``, never more than 10 % below ``value``."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def conv_costs(cin: int, cout: int, k: int, size_out: int, groups: int = 1, bn: bool = True,
               bias: bool = False) -> tuple[int, int]:
    """(parameters, MACs) of a ``k x k`` convolution producing a ``size_out`` square map (with its batch norm)."""
    weights = cout * (cin // groups) * k * k
    return weights + (2 * cout if bn else 0) + (cout if bias else 0), weights * size_out * size_out


def conv_size(size: int, stride: int) -> int:
    """Output side of a convolution (or pool) with padding ``k // 2`` and this stride."""
    return (size - 1) // stride + 1


def load_mlp(path: Path) -> tuple[list[tuple[np.ndarray, np.ndarray]], float]:
    """The Linear layers (weight, bias) of an OFA predictor's state dict, in order, and its ``base_acc`` (0 if none).

    Weights are float64: the reference fronts' hypervolume must come out the
    same however a population is batched.
    """
    import torch  # only to read the pickle

    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    base = float(state["base_acc"].reshape(-1)[0]) if "base_acc" in state else 0.0
    names = [k[: -len(".weight")] for k in state if k.endswith(".weight")]
    layers = []
    for name in names:
        w = state[f"{name}.weight"].double().numpy()
        b = state[f"{name}.bias"].double().numpy() if f"{name}.bias" in state else np.zeros(len(w))
        layers.append((w, b))
    return layers, base


def mlp_forward(layers: list[tuple[np.ndarray, np.ndarray]], base: float, F: np.ndarray) -> np.ndarray:
    """OFA's predictor: Linear + ReLU layers, a last Linear, plus ``base``; one matrix product per layer."""
    h = np.asarray(F, dtype=np.float64)
    for w, b in layers[:-1]:
        h = np.maximum(h @ w.T + b, 0.0)
    w, b = layers[-1]
    return (h @ w.T + b)[:, 0] + base


class OFAProblem:
    """Common part of the OFA problems: objectives, values of a config or a population, scoring.

    A subclass sets ``name``, ``predictor_file``, ``front_file`` and defines
    ``space``, :meth:`features` (the predictor's input) and :meth:`costs_batch`.
    ``objectives`` chooses ``("accuracy", "macs")`` (default) or
    ``("accuracy", "macs", "params")``. Raises ``FileNotFoundError`` naming the
    path when the predictor is absent.
    """

    name = ""
    predictor_file = ""
    front_file = ""
    OBJECTIVE_SETS = (("accuracy", "macs"), ("accuracy", "macs", "params"))
    #: LINAS uses the space's one-hot features: inactive genes zeroed, as in the predictors' own inputs (plus the depths)
    linas_features = None

    def __init__(self, objectives=("accuracy", "macs"), root: str | os.PathLike | None = None):
        self.objective_names = tuple(objectives)
        if self.objective_names not in self.OBJECTIVE_SETS:
            raise UserError(f"{self.name} objectives must be one of {[list(s) for s in self.OBJECTIVE_SETS]}, "
                            f"got {list(self.objective_names)}")
        self.path = data_root(root) / "ofa" / self.predictor_file
        if not self.path.is_file():
            raise FileNotFoundError(f"OFA predictor not found at {self.path}; set SLIVER_DATA or pass the shared data "
                                    "folder (--data of sliver bench search)")
        self._layers, self._base = load_mlp(self.path)

    # ------------------------------------------------------------- subclass
    @property
    def space(self) -> SearchSpace:
        """The problem's search space (a subclass's cached property)."""
        raise NotImplementedError

    def features(self, X: np.ndarray) -> np.ndarray:
        """The predictor's input rows for encoded configs ``X`` (one row of gene indices each)."""
        raise NotImplementedError

    def costs_batch(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(MACs, parameters) of encoded configs, as int64 arrays."""
        raise NotImplementedError

    def active_blocks(self, X: np.ndarray) -> np.ndarray:
        """Boolean ``(n, blocks)``: which blocks of each encoded config run."""
        raise NotImplementedError

    #: the per-block dimensions a stage's depth gates
    gated: tuple[str, ...] = ("e",)

    # ---------------------------------------------------------------- values
    @cached_property
    def columns(self) -> dict[str, slice]:
        """The genes of each dimension in an encoded config."""
        out, start = {}, 0
        for d in self.space.dimensions:
            out[d.name] = slice(start, start + d.n_genes)
            start += d.n_genes
        return out

    def accuracy_batch(self, X: np.ndarray) -> np.ndarray:
        """Predicted top-1 (%) of encoded configs."""
        return 100.0 * mlp_forward(self._layers, self._base, self.features(X))

    def values_batch(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """``accuracy`` (%), ``macs`` and ``params`` of a population of encoded configs, one entry per row."""
        X = np.atleast_2d(np.asarray(X, dtype=np.int64))
        macs, params = self.costs_batch(X)
        return {"accuracy": self.accuracy_batch(X), "macs": macs.astype(float), "params": params.astype(float)}

    def values(self, config: Config) -> dict[str, float]:
        """``accuracy`` (%), ``macs`` and ``params`` of one config."""
        v = self.values_batch(self.space.encode(config)[None])
        return {k: float(a[0]) for k, a in v.items()}

    def __call__(self, config: Config) -> dict[str, float]:
        return self.values(config)

    @property
    def objectives(self) -> list[Objective]:
        known = {"accuracy": ACCURACY, "macs": BUILTIN["macs"], "params": BUILTIN["params"]}
        return [known[n] for n in self.objective_names]

    def evaluator(self):
        """A :class:`~sliver.measure.function.FunctionEvaluator` measuring every objective of this problem."""
        from sliver.measure.function import FunctionEvaluator

        return FunctionEvaluator(self.space, self.values, self.objectives, name=f"sliver.bench.{self.name}",
                                 vectors=self.values_batch)

    def min_config(self) -> Config:
        """Every gene at its smallest choice: the network with the fewest MACs."""
        return self.space.decode(np.zeros(self.space.n_genes, dtype=np.int64))

    def max_config(self) -> Config:
        """Every gene at its largest choice: the network with the most MACs."""
        return self.space.decode(self.space.gene_cardinalities - 1)

    # --------------------------------------------------------------- scoring
    def minimised(self, values: dict[str, np.ndarray]) -> np.ndarray:
        """Rows of the chosen objectives as quantities to minimise (accuracy negated)."""
        return np.column_stack([np.asarray(values[o.name], dtype=float) * o.sign for o in self.objectives])

    @cached_property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(low, span) of each minimised objective: its values at the largest and smallest networks."""
        ends = np.stack([self.space.encode(self.min_config()), self.space.encode(self.max_config())])
        F = self.minimised(self.values_batch(ends))
        lo, hi = F.min(0), F.max(0)
        return lo, hi - lo

    @property
    def ref_point(self) -> np.ndarray:
        return np.full(len(self.objective_names), REFERENCE)

    def normalise_array(self, F: np.ndarray) -> np.ndarray:
        """Minimised objective rows (see :meth:`minimised`) scaled by :attr:`bounds`."""
        lo, span = self.bounds
        return (np.asarray(F, dtype=float).reshape(-1, len(lo)) - lo) / span

    def normalise(self, values: list[dict[str, float]]) -> np.ndarray:
        """Measured value dicts -> normalised rows (0 at the best end of the space's range, 1 at the worst)."""
        cols = {n: np.array([v[n] for v in values], dtype=float) for n in self.objective_names}
        return self.normalise_array(self.minimised(cols))

    @cached_property
    def reference(self) -> dict:
        """The committed reference front for the chosen objectives (``values``, ``configs``, how it was made)."""
        path = FRONTS / self.front_file
        if not path.is_file():
            raise FileNotFoundError(f"reference front {path} is missing; run python benchmarks/reference_fronts_ofa.py")
        fronts = json.loads(path.read_text())["fronts"]
        key = ",".join(self.objective_names)
        if key not in fronts:
            raise UserError(f"{path.name} has no front for objectives {key}; it has {sorted(fronts)}")
        return fronts[key]

    @cached_property
    def reference_points(self) -> np.ndarray:
        """Normalised rows of the reference front."""
        ref = self.reference
        return self.normalise_array(self.minimised({n: np.asarray(ref["values"][n]) for n in self.objective_names}))

    @cached_property
    def true_hv(self) -> float:
        """Hypervolume of the reference front (the best known; the true front is unknown in a space this size)."""
        return hypervolume(self.reference_points, self.ref_point)

    def hv_ratio_array(self, F: np.ndarray) -> float:
        """Share of the reference hypervolume reached by normalised rows ``F``."""
        return hypervolume(F, self.ref_point) / self.true_hv

    def hv_ratio(self, values: list[dict[str, float]]) -> float:
        """Share of the reference front's hypervolume reached by measured points."""
        return self.hv_ratio_array(self.normalise(values))

    @staticmethod
    def genes_to_text(X: np.ndarray) -> list[str]:
        """Compact form of encoded configs (each gene index is one digit) for the reference front files."""
        return ["".join(map(str, row)) for row in np.asarray(X, dtype=np.int64)]

    @staticmethod
    def text_to_genes(rows: list[str]) -> np.ndarray:
        return np.array([[int(c) for c in row] for row in rows], dtype=np.int64)

    def front_mask(self, values: dict[str, np.ndarray]) -> np.ndarray:
        """Which rows of a population are non-dominated in the chosen objectives."""
        return nondominated(self.minimised(values))


# ---------------------------------------------------------------- MobileNetV3
#: OFA MobileNetV3 stages at width 1.0: (width, stride, squeeze-excite); activations do not change costs
MBV3_STAGES = ((24, 2, False), (40, 2, True), (80, 2, False), (112, 1, True), (160, 2, True))
MBV3_RESOLUTIONS = (160, 176, 192, 208, 224)


class OFAMobileNetV3(OFAProblem):
    """OFA-MobileNetV3 at width 1.2 (``ofa_mbv3_d234_e346_k357_w1.2``): ~1.1 x 10^20 sub-networks.

    Configs are ElasticMobileNet's: ``ks`` and ``e`` per block (20), ``d`` per
    stage (5), resolution ``r``; a :class:`DepthGate` makes the genes of
    dropped blocks inactive.
    """

    name = "ofa-mbv3"
    predictor_file = "acc_predictor.pth"
    front_file = "ofa_mbv3_front.json"
    width_mult = 1.2
    blocks_per_stage = 4
    gated = ("ks", "e")

    @cached_property
    def space(self) -> SearchSpace:
        n = self.blocks_per_stage * len(MBV3_STAGES)
        return SearchSpace(
            [Dimension("ks", (3, 5, 7), n), Dimension("e", (3, 4, 6), n), Dimension("d", (2, 3, 4), len(MBV3_STAGES)),
             Dimension("r", MBV3_RESOLUTIONS)],
            [DepthGate("d", (self.blocks_per_stage,) * len(MBV3_STAGES), ("ks", "e"))],
        )

    def active_blocks(self, X: np.ndarray) -> np.ndarray:
        """Boolean ``(n, 20)``: block ``j`` of a stage runs iff ``j`` < the stage's depth."""
        depth = np.asarray(self.space["d"].choices)[X[:, self.columns["d"]]]
        position = np.tile(np.arange(self.blocks_per_stage), len(MBV3_STAGES))
        return position[None, :] < np.repeat(depth, self.blocks_per_stage, axis=1)

    def features(self, X: np.ndarray) -> np.ndarray:
        """OFA's tutorial encoding (128): one-hot kernel per block (60), one-hot expand (60), resolution bin (8).

        A dropped block's kernel and expand slots are all zero; the resolution
        slot is ``(r - 112) // 16``.
        """
        X = np.atleast_2d(np.asarray(X, dtype=np.int64))
        n, blocks = len(X), self.blocks_per_stage * len(MBV3_STAGES)
        active = self.active_blocks(X)
        F = np.zeros((n, 6 * blocks + 8))
        rows, slots = np.nonzero(active)
        F[rows, 3 * slots + X[:, self.columns["ks"]][rows, slots]] = 1.0
        F[rows, 3 * blocks + 3 * slots + X[:, self.columns["e"]][rows, slots]] = 1.0
        r = np.asarray(MBV3_RESOLUTIONS)[X[:, self.columns["r"]].ravel()]
        F[np.arange(n), 6 * blocks + (r - 112) // 16] = 1.0
        return F

    def arch(self) -> dict:
        """Channel widths of the w1.2 network (OFA's rounding), for the cost tables and the tests."""
        width = lambda c: make_divisible(c * self.width_mult)  # noqa: E731 - one rounding rule for every width
        return {"stem": width(16), "first": width(16), "stages": [width(w) for w, _, _ in MBV3_STAGES],
                "final_expand": width(960), "feature": width(1280)}

    @cached_property
    def _tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.int64]:
        """Per-block (MACs, params) for every (kernel, expand, resolution), and the fixed layers' per resolution."""
        a, ks, es = self.arch(), self.space["ks"].choices, self.space["e"].choices
        n_blocks = self.blocks_per_stage * len(MBV3_STAGES)
        macs = np.zeros((n_blocks, len(ks), len(es), len(MBV3_RESOLUTIONS)), dtype=np.int64)
        params = np.zeros((n_blocks, len(ks), len(es)), dtype=np.int64)
        fixed_macs = np.zeros(len(MBV3_RESOLUTIONS), dtype=np.int64)
        fixed_params = 0
        for ri, r in enumerate(MBV3_RESOLUTIONS):
            size = conv_size(r, 2)
            stem = [conv_costs(3, a["stem"], 3, size),  # stem conv, stride 2
                    conv_costs(a["stem"], a["stem"], 3, size, groups=a["stem"]),  # first block: depthwise 3x3
                    conv_costs(a["stem"], a["first"], 1, size)]  # and its projection
            cin, i = a["first"], 0
            for (_, stride, se), cout in zip(MBV3_STAGES, a["stages"]):
                for j in range(self.blocks_per_stage):
                    s = stride if j == 0 else 1
                    out = conv_size(size, s)
                    for ki, k in enumerate(ks):
                        for ei, e in enumerate(es):
                            p, m = mbconv_costs(cin, cout, make_divisible(round(cin * e)), k, s, se, size)
                            macs[i, ki, ei, ri], params[i, ki, ei] = m, p
                    # a stage's later blocks see its output size whatever its depth: only its first block strides
                    size, cin, i = out, cout, i + 1
            tail = [conv_costs(cin, a["final_expand"], 1, size),
                    conv_costs(a["final_expand"], a["feature"], 1, 1, bn=False),  # on the pooled 1x1 map
                    conv_costs(a["feature"], N_CLASSES, 1, 1, bn=False, bias=True)]  # classifier
            fixed_macs[ri] = sum(m for _, m in stem + tail)
            fixed_params = sum(p for p, _ in stem + tail)
        return macs, params, fixed_macs, np.int64(fixed_params)

    def costs_batch(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        X = np.atleast_2d(np.asarray(X, dtype=np.int64))
        macs_t, params_t, fixed_macs, fixed_params = self._tables
        active = self.active_blocks(X)
        k, e, r = X[:, self.columns["ks"]], X[:, self.columns["e"]], X[:, self.columns["r"]]
        blocks = np.arange(k.shape[1])[None, :]
        macs = fixed_macs[r[:, 0]] + (macs_t[blocks, k, e, r] * active).sum(1)
        params = fixed_params + (params_t[blocks, k, e] * active).sum(1)
        return macs, params


def mbconv_costs(cin: int, cout: int, mid: int, k: int, stride: int, se: bool, size: int) -> tuple[int, int]:
    """(params, MACs) of an OFA inverted-residual block: 1x1 expand, k x k depthwise, squeeze-excite, 1x1 project."""
    out = conv_size(size, stride)
    parts = [conv_costs(cin, mid, 1, size), conv_costs(mid, mid, k, out, groups=mid), conv_costs(mid, cout, 1, out)]
    if se:  # reduce and expand 1x1 convs with biases on the pooled 1x1 map (OFA: mid // 4, rounded)
        se_mid = make_divisible(mid // 4)
        parts += [conv_costs(mid, se_mid, 1, 1, bn=False, bias=True), conv_costs(se_mid, mid, 1, 1, bn=False, bias=True)]
    return sum(p for p, _ in parts), sum(m for _, m in parts)


# -------------------------------------------------------------------- ResNet50
RESNET_BASE_DEPTHS = (2, 2, 4, 2)
RESNET_STAGE_WIDTHS = (256, 512, 1024, 2048)
RESNET_STRIDES = (1, 2, 2, 2)
RESNET_WIDTH_MULTS = (0.65, 0.8, 1.0)
RESNET_EXPANDS = (0.2, 0.25, 0.35)
RESNET_DEPTHS = (0, 1, 2)
#: the resolutions OFA's ResNet50 predictor encodes (its tutorial's ``image_size_list``)
RESNET_RESOLUTIONS = (128, 144, 160, 176, 192, 224, 240, 256)


class OFAResNet50(OFAProblem):
    """OFA-ResNet50 (``ofa_resnet50``): ~2.0 x 10^13 sub-networks.

    A config: ``stem_d`` (2 keeps the stem's middle residual 3x3 convolution, 0
    skips it), ``d`` extra blocks per stage on top of (2, 2, 4, 2), ``e``
    bottleneck expand ratio of each of the 18 blocks (inactive beyond the
    stage's depth), ``w`` width multipliers of the stem's first two
    convolutions, its last convolution and the four stages, resolution ``r``.
    """

    name = "ofa-resnet50"
    predictor_file = "ofa_resnet50_acc_predictor.pth"
    front_file = "ofa_resnet50_front.json"

    @cached_property
    def space(self) -> SearchSpace:
        owners, optional = [], 0
        for base in RESNET_BASE_DEPTHS:
            owners += [-1] * base + [optional, optional + 1]  # the base blocks always run
            optional += 2
        n_stages = len(RESNET_BASE_DEPTHS)
        return SearchSpace(
            [Dimension("stem_d", (0, 2)), Dimension("d", RESNET_DEPTHS, n_stages),
             Dimension("e", RESNET_EXPANDS, len(owners)), Dimension("w", RESNET_WIDTH_MULTS, n_stages + 2),
             Dimension("r", RESNET_RESOLUTIONS)],
            [DepthGate("d", (2,) * n_stages, ("e",), owners=(tuple(owners),))],
        )

    @cached_property
    def stage_of_block(self) -> np.ndarray:
        return np.repeat(np.arange(len(RESNET_BASE_DEPTHS)), np.asarray(RESNET_BASE_DEPTHS) + 2)

    def active_blocks(self, X: np.ndarray) -> np.ndarray:
        """Boolean ``(n, 18)``: block ``j`` of a stage runs iff ``j`` < base depth + the stage's ``d``."""
        d = np.asarray(RESNET_DEPTHS)[X[:, self.columns["d"]]] + np.asarray(RESNET_BASE_DEPTHS)
        pos = np.concatenate([np.arange(b + 2) for b in RESNET_BASE_DEPTHS])
        return pos[None, :] < d[:, self.stage_of_block]

    def features(self, X: np.ndarray) -> np.ndarray:
        """OFA's ``ResNetArchEncoder`` (82): resolution (8), stem kept (2), width per stem/stage (6 x 3), expand per block (18 x 3)."""
        X = np.atleast_2d(np.asarray(X, dtype=np.int64))
        n, rows = len(X), np.arange(len(X))[:, None]
        F = np.zeros((n, 8 + 2 + 18 + 54))
        F[rows, X[:, self.columns["r"]]] = 1.0
        F[rows, 8 + X[:, self.columns["stem_d"]]] = 1.0  # OFA's "input_stem_skip" feature is 1 when the block runs
        F[rows, 10 + 3 * np.arange(6)[None, :] + X[:, self.columns["w"]]] = 1.0
        active = self.active_blocks(X)
        r, slot = np.nonzero(active)
        F[r, 28 + 3 * slot + X[:, self.columns["e"]][r, slot]] = 1.0
        return F

    @staticmethod
    def channels() -> dict[str, list]:
        """Channel widths for each width multiplier (OFA's rounding): stem middle, stem output, each stage."""
        stem = [make_divisible(64 * w) for w in RESNET_WIDTH_MULTS]
        return {"stem_mid": [make_divisible(c // 2) for c in stem], "stem": stem,
                "stages": [[make_divisible(s * w) for w in RESNET_WIDTH_MULTS] for s in RESNET_STAGE_WIDTHS]}

    @cached_property
    def _tables(self) -> dict[str, np.ndarray]:
        """MACs and params of the stem, each block and the classifier, over every choice they depend on."""
        ch, nr, nw, ne = self.channels(), len(RESNET_RESOLUTIONS), len(RESNET_WIDTH_MULTS), len(RESNET_EXPANDS)
        n_blocks = len(self.stage_of_block)
        t = {"stem_m": np.zeros((nw, nw, 2, nr), np.int64), "stem_p": np.zeros((nw, nw, 2), np.int64),
             # a block's cost depends on its input width (the previous stage's or the stem's), its own width, e, r
             "block_m": np.zeros((n_blocks, nw, nw, ne, nr), np.int64), "block_p": np.zeros((n_blocks, nw, nw, ne), np.int64),
             "head_p": np.zeros(nw, np.int64)}
        for ri, r in enumerate(RESNET_RESOLUTIONS):
            s1 = conv_size(r, 2)
            for a in range(nw):
                for b in range(nw):
                    for keep in (0, 1):
                        mid, out = ch["stem_mid"][a], ch["stem"][b]
                        parts = [conv_costs(3, mid, 3, s1), conv_costs(mid, out, 3, s1)]
                        if keep:
                            parts.append(conv_costs(mid, mid, 3, s1))
                        t["stem_m"][a, b, keep, ri] = sum(m for _, m in parts)
                        t["stem_p"][a, b, keep] = sum(p for p, _ in parts)
            size = conv_size(s1, 2)  # 3x3 max pool, stride 2
            i = 0
            for g, (base, stride) in enumerate(zip(RESNET_BASE_DEPTHS, RESNET_STRIDES)):
                widths_in = ch["stem"] if g == 0 else ch["stages"][g - 1]
                for j in range(base + 2):
                    s = stride if j == 0 else 1
                    for a in range(nw):
                        for b in range(nw):
                            cin = widths_in[a] if j == 0 else ch["stages"][g][b]
                            cout = ch["stages"][g][b]
                            for ei, e in enumerate(RESNET_EXPANDS):
                                p, m = bottleneck_costs(cin, cout, make_divisible(round(cout * e)), s, size)
                                t["block_m"][i, a, b, ei, ri], t["block_p"][i, a, b, ei] = m, p
                    size = conv_size(size, s)
                    i += 1
        for b in range(nw):
            t["head_p"][b] = conv_costs(ch["stages"][-1][b], N_CLASSES, 1, 1, bn=False, bias=True)[0]
        return t

    def costs_batch(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        X = np.atleast_2d(np.asarray(X, dtype=np.int64))
        t = self._tables
        w, e, r = X[:, self.columns["w"]], X[:, self.columns["e"]], X[:, self.columns["r"]][:, 0]
        keep = X[:, self.columns["stem_d"]][:, 0]
        macs = t["stem_m"][w[:, 0], w[:, 1], keep, r]
        params = t["stem_p"][w[:, 0], w[:, 1], keep]
        # each block's own width and its input's: the stem's output (w[1]) before stage 0, else the previous stage's
        stage = self.stage_of_block
        w_own = w[:, 2 + stage]
        w_in = np.where(stage[None, :] == 0, w[:, [1]], w[:, np.maximum(1 + stage, 2)])
        blocks = np.arange(len(stage))[None, :]
        active = self.active_blocks(X)
        macs = macs + (t["block_m"][blocks, w_in, w_own, e, r[:, None]] * active).sum(1)
        params = params + (t["block_p"][blocks, w_in, w_own, e] * active).sum(1)
        head = t["head_p"][w[:, -1]]
        # the classifier runs on the pooled 1x1 map: its MACs are its weights, i.e. its params less the bias
        return macs + head - N_CLASSES, params + head


def bottleneck_costs(cin: int, cout: int, mid: int, stride: int, size: int) -> tuple[int, int]:
    """(params, MACs) of an OFA ResNet bottleneck: 1x1, 3x3 (strided), 1x1, and a 1x1 shortcut when the shape changes.

    The shortcut is OFA's ``avgpool_conv``: average pooling by the stride, then
    the 1x1 convolution at the output size.
    """
    out = conv_size(size, stride)
    parts = [conv_costs(cin, mid, 1, size), conv_costs(mid, mid, 3, out), conv_costs(mid, cout, 1, out)]
    if stride != 1 or cin != cout:
        parts.append(conv_costs(cin, cout, 1, out))
    return sum(p for p, _ in parts), sum(m for _, m in parts)


#: the OFA problems by their ``sliver bench search --problem`` name
PROBLEMS = {"ofa-mbv3": OFAMobileNetV3, "ofa-resnet50": OFAResNet50}
