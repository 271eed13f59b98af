"""Search spaces: named dimensions with ordered choices, and the configs they describe.

A *config* is a plain JSON-able dict, e.g. for an OFA-style network::

    {"ks": [3, 5, 7, ...], "e": [3, 4, 6, ...], "d": [2, 3, 4, 2, 4], "r": 224}

A dimension is either a scalar (one value) or repeated per block (a list of
``length`` values). Each repetition is one *gene*; a config encodes to an
integer vector of choice indices, one entry per gene.

Some genes can be *inactive*: the kernel size of a block that the stage depth
drops does not change the network. A :class:`DepthGate` declares that rule, and
:meth:`SearchSpace.canonical` replaces inactive values by the first choice, so
two configs that build the same network share one :meth:`SearchSpace.key`.

This module depends on numpy only (no torch), so searches over tabular
benchmarks run without a deep-learning framework.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence, cast, overload

import numpy as np

from sliver.core import Config
from sliver.errors import UserError, one_line


class SpaceError(UserError):
    """A config or a space definition does not fit the search space."""


@dataclass(frozen=True)
class Dimension:
    """One named dimension with ordered choices.

    ``length=None`` makes a scalar dimension; ``length=n`` a list of ``n`` genes
    sharing the same choices (e.g. one kernel size per block).
    """

    name: str
    choices: tuple
    length: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "choices", tuple(self.choices))
        if not self.name or not isinstance(self.name, str):
            raise SpaceError(f"dimension name must be a non-empty string, got {self.name!r}")
        if len(self.choices) == 0:
            raise SpaceError(f"dimension '{self.name}': needs at least one choice")
        if len(set(map(_hashable, self.choices))) != len(self.choices):
            raise SpaceError(f"dimension '{self.name}': choices must be distinct, got {list(self.choices)}")
        if self.length is not None and (not isinstance(self.length, int) or self.length < 1):
            raise SpaceError(f"dimension '{self.name}': length must be a positive integer or None")
        # value -> first index, so that encoding a config is a dict look-up per gene, not a scan of the choices
        lookup: dict = {}
        for i, c in enumerate(self.choices):
            try:
                lookup.setdefault(c, i)
            except TypeError:  # an unhashable choice is found by the scan in index()
                pass
        object.__setattr__(self, "_lookup", lookup)

    @property
    def n_genes(self) -> int:
        return 1 if self.length is None else self.length

    def index(self, value: Any, position: int | None = None) -> int:
        """Index of ``value`` among the choices, or a :class:`SpaceError`."""
        try:
            hit = self._lookup.get(value)  # type: ignore[attr-defined]
        except TypeError:
            hit = None
        if hit is not None and _same(self.choices[hit], value):
            return hit
        for i, choice in enumerate(self.choices):
            if _same(choice, value):
                return i
        where = self.name if position is None else f"{self.name}[{position}]"
        raise SpaceError(f"dimension '{where}': value {value!r} is not one of the allowed values {list(self.choices)}")

    def to_dict(self) -> dict:
        return {"name": self.name, "choices": list(self.choices), "length": self.length}


@dataclass(frozen=True)
class DepthGate:
    """Genes of blocks beyond a group's depth are inactive.

    ``depth`` names the dimension holding one depth per group (a list dimension
    of ``len(groups)`` genes, or a scalar when there is one group); ``groups``
    gives the number of blocks in each group, in order; ``dims`` are the
    per-block dimensions (each of length ``sum(groups)``) that the gate masks.
    Block ``j`` of group ``g`` is active iff ``j < depth[g]``.

    By default gene ``i`` of a gated dimension belongs to block ``i``. ``owners``
    (one tuple per gated dimension) says instead which block each gene belongs
    to, ``-1`` for a gene no block owns (always active); a block may then own
    several genes or none, and the dimension any length. An automatically
    elastified model needs this: a skippable residual block owns the widths of
    the channel groups inside it, however many there are.
    """

    depth: str
    groups: tuple[int, ...]
    dims: tuple[str, ...]
    owners: tuple[tuple[int, ...], ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "groups", tuple(int(g) for g in self.groups))
        object.__setattr__(self, "dims", tuple(self.dims))
        if self.owners is not None:
            object.__setattr__(self, "owners", tuple(tuple(int(o) for o in own) for own in self.owners))

    def gene_owners(self, dim_index: int, length: int) -> tuple[int, ...]:
        """The block owning each gene of the ``dim_index``-th gated dimension (``-1``: none)."""
        return tuple(range(length)) if self.owners is None else self.owners[dim_index]

    def to_dict(self) -> dict:
        out = {"depth": self.depth, "groups": list(self.groups), "dims": list(self.dims)}
        if self.owners is not None:
            out["owners"] = [list(o) for o in self.owners]
        return out


def row_keys(X: np.ndarray) -> list[bytes]:
    """The bytes of each row of an integer matrix, as hashable keys (no canonicalisation: see :meth:`SearchSpace.keys`).

    One numpy call for the whole matrix: each row viewed as one void scalar,
    whose ``tolist()`` is its bytes, so no Python loop runs over a population.
    """
    C = np.ascontiguousarray(X, dtype=np.int64)
    return cast(list[bytes], C.view(np.dtype((np.void, C.dtype.itemsize * C.shape[1]))).ravel().tolist())


@dataclass
class SearchSpace:
    """Named dimensions with ordered choices, plus the rules that make genes inactive."""

    dimensions: list[Dimension]
    gates: list[DepthGate] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.dimensions = list(self.dimensions)
        self.gates = list(self.gates)
        names = [d.name for d in self.dimensions]
        if len(set(names)) != len(names):
            raise SpaceError(f"dimension names must be unique, got {names}")
        self._by_name = {d.name: d for d in self.dimensions}
        offsets, start = {}, 0
        for d in self.dimensions:
            offsets[d.name] = start
            start += d.n_genes
        self._offsets = offsets
        self._n_genes = start
        self._check_gates()
        self._card = self.gene_cardinalities
        self._starts = np.concatenate([[0], np.cumsum(self._card)[:-1]]).astype(np.int64)
        self._gate_rules = [self._gate_rule(g) for g in self.gates]

    def _gate_rule(self, gate: DepthGate) -> tuple[np.ndarray, ...]:
        """A gate as arrays: the depth genes, each depth choice's value, and for each gated gene its group and position.

        A gene owned by block ``j`` of group ``g`` is active iff ``j < depth[g]``;
        genes no block owns are left out (always active).
        """
        depth_dim = self[gate.depth]
        depth_genes = self._offsets[gate.depth] + np.arange(depth_dim.n_genes)
        depth_values = np.array([int(c) for c in depth_dim.choices], dtype=np.int64)
        block_group = np.repeat(np.arange(len(gate.groups)), gate.groups)
        block_pos = np.concatenate([np.arange(n) for n in gate.groups])
        genes, groups, positions = [], [], []
        for k, name in enumerate(gate.dims):
            for i, owner in enumerate(gate.gene_owners(k, self[name].n_genes)):
                if owner >= 0:
                    genes.append(self._offsets[name] + i)
                    groups.append(block_group[owner])
                    positions.append(block_pos[owner])
        as_int = lambda v: np.asarray(v, dtype=np.int64)  # noqa: E731 - tiny local helper
        return depth_genes, depth_values, as_int(genes), as_int(groups), as_int(positions)

    # ------------------------------------------------------------------ basics
    @property
    def names(self) -> list[str]:
        return [d.name for d in self.dimensions]

    def __getitem__(self, name: str) -> Dimension:
        try:
            return self._by_name[name]
        except KeyError:
            raise SpaceError(f"unknown dimension '{name}'; the space has {self.names}") from None

    @property
    def n_genes(self) -> int:
        """Length of the integer encoding."""
        return self._n_genes

    @property
    def gene_cardinalities(self) -> np.ndarray:
        """Number of choices of each gene, in encoding order."""
        return np.array([len(d.choices) for d in self.dimensions for _ in range(d.n_genes)], dtype=np.int64)

    @property
    def n_features(self) -> int:
        """Length of :meth:`features` (one-hot over every gene)."""
        return int(self.gene_cardinalities.sum())

    # -------------------------------------------------------------- validation
    def validate(self, config: Config) -> Config:
        """Check ``config`` against the space and return it with values as the space's choices.

        Raises :class:`SpaceError` naming the dimension for an unknown or missing
        dimension, a list of the wrong length, or a value outside the choices.
        """
        return self._config(self.encode(config))

    # ---------------------------------------------------------------- encoding
    def encode(self, config: Config) -> np.ndarray:
        """Integer vector of choice indices, one per gene (checks ``config`` as :meth:`validate` does)."""
        if not isinstance(config, dict):
            raise SpaceError(f"a config must be a dict of dimension -> value, got {type(config).__name__}")
        unknown = sorted(set(config) - set(self._by_name))
        if unknown:
            raise SpaceError(f"unknown dimension '{unknown[0]}'; the space has {self.names}")
        vec = np.empty(self._n_genes, dtype=np.int64)
        for d in self.dimensions:
            if d.name not in config:
                raise SpaceError(f"missing dimension '{d.name}' (allowed values {list(d.choices)})")
            value, o = config[d.name], self._offsets[d.name]
            if d.length is None:
                vec[o] = d.index(value)
                continue
            if isinstance(value, (str, bytes)) or not isinstance(value, Sequence | np.ndarray):
                raise SpaceError(f"dimension '{d.name}': expected a list of {d.length} values from {list(d.choices)}, got {value!r}")
            if len(value) != d.length:
                raise SpaceError(f"dimension '{d.name}': expected {d.length} values, got {len(value)}")
            vec[o:o + d.length] = [d.index(v, i) for i, v in enumerate(value)]
        return vec

    def encode_many(self, configs: Sequence[Config]) -> np.ndarray:
        """:meth:`encode` of each config, stacked: the genotype matrix ``(n, n_genes)``."""
        if not len(configs):
            return np.zeros((0, self._n_genes), dtype=np.int64)
        return np.stack([self.encode(c) for c in configs])

    def decode(self, vector: Iterable[int]) -> Config:
        """Inverse of :meth:`encode`."""
        vec = np.asarray(list(vector) if not isinstance(vector, np.ndarray) else vector)
        if vec.shape != (self._n_genes,):
            raise SpaceError(f"an encoded config has {self._n_genes} genes, got shape {vec.shape}")
        return self._config(self._rows(vec)[0])

    def _config(self, vec: np.ndarray) -> Config:
        """The config of one in-range index vector (no checks)."""
        config: Config = {}
        for d in self.dimensions:
            o = self._offsets[d.name]
            if d.length is None:
                config[d.name] = d.choices[vec[o]]
            else:
                config[d.name] = [d.choices[i] for i in vec[o:o + d.length]]
        return config

    def _gene_name(self, gene: int) -> tuple[str, int]:
        for d in self.dimensions:
            o = self._offsets[d.name]
            if o <= gene < o + d.n_genes:
                return d.name, gene - o
        raise IndexError(gene)

    # ----------------------------------------------- populations as matrices
    # A population is a genotype matrix: one row per config, one column per gene
    # (:meth:`encode`'s indices). These methods treat every row in one numpy
    # pass; the per-config methods above and below are their one-row case.
    def valid_vectors(self, X: np.ndarray) -> np.ndarray:
        """Boolean mask of the rows of ``X`` that encode a config (whole indices within each gene's choices)."""
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self._n_genes:
            return np.zeros(len(X) if X.ndim else 0, dtype=bool)
        whole = np.all(np.rint(X) == X, axis=1) if X.dtype.kind == "f" else np.ones(len(X), dtype=bool)
        return whole & np.all((X >= 0) & (X < self._card), axis=1)

    def neighbour_vectors(self, X: np.ndarray) -> np.ndarray:
        """Every row one gene away from a row of ``X``: each gene moved to each of its other choices, row by row."""
        X, card = self._rows(X), self._card  # a single vector is one row, for the counts below too
        genes = np.repeat(np.arange(len(card)), card - 1)
        shifts = np.concatenate([np.arange(1, c) for c in card])
        N = np.repeat(X, len(genes), axis=0)
        g, step = np.tile(genes, len(X)), np.tile(shifts, len(X))
        rows = np.arange(len(N))
        N[rows, g] = (N[rows, g] + step) % card[g]
        return N

    def _rows(self, X: np.ndarray) -> np.ndarray:
        """``X`` as an int64 genotype matrix (a single vector becomes one row); a :class:`SpaceError` names a bad gene."""
        X = np.asarray(X)
        if X.ndim == 1:
            X = X[None, :]
        if X.ndim != 2 or X.shape[1] != self._n_genes:
            raise SpaceError(f"an encoded config has {self._n_genes} genes, got shape {X.shape[1:]}")
        if X.dtype.kind == "f":
            X = np.rint(X)
        X = X.astype(np.int64, copy=False)
        bad = np.argwhere((X < 0) | (X >= self._card))
        if len(bad):
            row, gene = (int(v) for v in bad[0])
            name, pos = self._gene_name(gene)
            raise SpaceError(f"dimension '{name}': gene {pos} has index {X[row, gene]}, allowed 0..{self._card[gene] - 1}")
        return X

    def active_vectors(self, X: np.ndarray) -> np.ndarray:
        """Boolean matrix: whether each gene of each row of ``X`` changes the network (the depth gates' rule)."""
        X = self._rows(X)
        active = np.ones(X.shape, dtype=bool)
        for depth_genes, depth_values, genes, groups, positions in self._gate_rules:
            depth = depth_values[X[:, depth_genes]]  # (n, groups): the depth of each group
            active[:, genes] &= depth[:, groups] > positions[None, :]
        return active

    def canonical_vectors(self, X: np.ndarray) -> np.ndarray:
        """Rows of ``X`` with every inactive gene set to 0 (its first choice), as :meth:`canonical` does."""
        X = self._rows(X)
        return np.where(self.active_vectors(X), X, 0)

    def keys(self, X: np.ndarray) -> list[bytes]:
        """A hashable key per row of ``X``, equal for rows that build the same network (the canonical row's bytes).

        For duplicate checks within a process; :meth:`key` is the stable
        identifier that stores and studies record.
        """
        return row_keys(self.canonical_vectors(X))

    def features_vectors(self, X: np.ndarray) -> np.ndarray:
        """:meth:`features` of every row of ``X``: one-hot genes, inactive genes all zero, shape ``(n, n_features)``."""
        X = self._rows(X)
        active = self.active_vectors(X)
        out = np.zeros((len(X), self.n_features))
        rows, genes = np.nonzero(active)
        out[rows, self._starts[genes] + X[rows, genes]] = 1.0
        return out

    # ------------------------------------------------------ activity and keys
    def active_mask(self, config: Config) -> dict[str, list[bool] | bool]:
        """For each dimension, whether each of its values changes the network."""
        active = self.active_vectors(self.encode(config))[0].tolist()
        mask: dict[str, list[bool] | bool] = {}
        for d in self.dimensions:
            o = self._offsets[d.name]
            mask[d.name] = active[o] if d.length is None else active[o:o + d.length]
        return mask

    def inactive(self, config: Config) -> dict[str, list[int]]:
        """Positions of the inactive values of each list dimension (empty lists omitted)."""
        out = {}
        for name, m in self.active_mask(config).items():
            if isinstance(m, list) and not all(m):
                out[name] = [i for i, a in enumerate(m) if not a]
        return out

    def canonical(self, config: Config) -> Config:
        """The config with every inactive value replaced by its dimension's first choice."""
        return self._config(self.canonical_vectors(self.encode(config))[0])

    def key(self, config: Config) -> str:
        """Stable identifier of the network a config builds (equal for canonical duplicates)."""
        text = json.dumps(jsonable(self.canonical(config)), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def count(self) -> int:
        """Exact number of distinct networks (canonical configs) in the space."""
        gated = {name for g in self.gates for name in g.dims} | {g.depth for g in self.gates}
        total = 1
        for d in self.dimensions:
            if d.name not in gated:
                total *= len(d.choices) ** d.n_genes
        for gate in self.gates:
            # the number of distinct settings of each block's own genes
            per_block = [1] * sum(gate.groups)
            for k, name in enumerate(gate.dims):
                d = self[name]
                for owner in gate.gene_owners(k, d.n_genes):
                    if owner < 0:
                        total *= len(d.choices)
                    else:
                        per_block[owner] *= len(d.choices)
            start = 0
            for n_blocks in gate.groups:
                blocks = per_block[start:start + n_blocks]
                total *= sum(int(np.prod(blocks[:depth], dtype=object)) for depth in self[gate.depth].choices)
                start += n_blocks
        return total

    # --------------------------------------------------------------- sampling
    @overload
    def sample(self, rng: np.random.Generator | int | None = None, n: None = None) -> Config: ...
    @overload
    def sample(self, rng: np.random.Generator | int | None, n: int) -> list[Config]: ...

    def sample(self, rng: np.random.Generator | int | None = None, n: int | None = None) -> Config | list[Config]:
        """Draw configs with every gene uniform over its choices (seeded by ``rng``)."""
        rng = np.random.default_rng(rng)
        card = self.gene_cardinalities
        draw = lambda: self.decode(rng.integers(0, card))  # noqa: E731 - tiny local helper
        return draw() if n is None else [draw() for _ in range(n)]

    def max_config(self) -> Config:
        """Every gene at its last choice (choices are ordered small to large)."""
        return self.decode(self.gene_cardinalities - 1)

    def min_config(self) -> Config:
        """Every gene at its first choice."""
        return self.decode(np.zeros(self._n_genes, dtype=np.int64))

    def enumerate(self, limit: int = 1_000_000) -> list[Config]:
        """Every distinct (canonical) config; refuses spaces larger than ``limit``."""
        n = self.count()
        if n > limit:
            raise SpaceError(f"the space has {n} distinct networks, more than limit={limit}")
        seen, out = set(), []
        for vec in np.ndindex(*self.gene_cardinalities):
            cfg = self.canonical(self.decode(np.array(vec)))
            k = self.key(cfg)
            if k not in seen:
                seen.add(k)
                out.append(cfg)
        return out

    # --------------------------------------------------------------- features
    def features(self, config: Config | Sequence[Config]) -> np.ndarray:
        """One-hot feature vector per gene, inactive genes all zero.

        Accepts one config (returns shape ``(n_features,)``) or a list of configs
        (returns shape ``(n, n_features)``); :meth:`features_vectors` takes encoded rows.
        """
        if isinstance(config, dict):
            return self.features_vectors(self.encode(config))[0]
        return self.features_vectors(self.encode_many(config))

    # ------------------------------------------------------------------- JSON
    def to_dict(self) -> dict:
        return {"dimensions": [d.to_dict() for d in self.dimensions], "gates": [g.to_dict() for g in self.gates]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "SearchSpace":
        try:
            dims = [Dimension(d["name"], tuple(d["choices"]), d.get("length")) for d in data["dimensions"]]
            gates = [DepthGate(g["depth"], tuple(g["groups"]), tuple(g["dims"]),
                               None if g.get("owners") is None else tuple(tuple(o) for o in g["owners"]))
                     for g in data.get("gates", [])]
            return cls(dims, gates)
        except SpaceError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a damaged or hand-edited description
            raise SpaceError(f"malformed search-space description: missing or wrong field ({type(exc).__name__}: "
                             f"{one_line(exc)})") from None

    @classmethod
    def from_json(cls, text: str) -> "SearchSpace":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpaceError(f"search-space description is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
        return cls.from_dict(data)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and self.to_dict() == other.to_dict()

    def describe(self) -> list[tuple[str, str, list]]:
        """Rows (name, shape, choices) for display."""
        return [(d.name, "scalar" if d.length is None else f"x{d.length}", list(d.choices)) for d in self.dimensions]

    # ---------------------------------------------------------------- checks
    def _check_gates(self) -> None:
        for gate in self.gates:
            depth = self[gate.depth]
            n_groups = 1 if depth.length is None else depth.length
            if n_groups != len(gate.groups):
                raise SpaceError(f"gate on '{gate.depth}': {len(gate.groups)} groups but the depth dimension has {n_groups} genes")
            if any(not isinstance(c, int) or c < 0 for c in depth.choices):
                raise SpaceError(f"gate on '{gate.depth}': depth choices must be non-negative integers")
            if max(depth.choices) > min(gate.groups):
                # a depth larger than its group would reference blocks that do not exist
                raise SpaceError(f"gate on '{gate.depth}': depth choice {max(depth.choices)} exceeds a group of {min(gate.groups)} blocks")
            if gate.owners is not None:
                if len(gate.owners) != len(gate.dims):
                    raise SpaceError(f"gate on '{gate.depth}': one owners list per gated dimension, got {len(gate.owners)} for {len(gate.dims)}")
                for name, owners in zip(gate.dims, gate.owners):
                    if len(owners) != self[name].n_genes or any(not -1 <= o < sum(gate.groups) for o in owners):
                        raise SpaceError(f"gate on '{gate.depth}': owners of '{name}' must give one block index "
                                         f"(-1..{sum(gate.groups) - 1}) per gene ({self[name].n_genes})")
                continue
            for name in gate.dims:
                if self[name].length != sum(gate.groups):
                    raise SpaceError(f"gate on '{gate.depth}': dimension '{name}' must have length {sum(gate.groups)}")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or (type(a) is type(b) and a == b)
    if isinstance(a, (int, float, np.integer, np.floating)) and isinstance(b, (int, float, np.integer, np.floating)):
        return float(a) == float(b)
    return a == b


def _hashable(v: Any) -> Any:
    return json.dumps(jsonable(v), sort_keys=True)


def jsonable(v: Any) -> Any:
    """``v`` with numpy integers and floats made plain Python numbers (tuples become lists), for ``json.dumps``."""
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v
