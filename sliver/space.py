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

    @property
    def n_genes(self) -> int:
        return 1 if self.length is None else self.length

    def index(self, value: Any, position: int | None = None) -> int:
        """Index of ``value`` among the choices, or a :class:`SpaceError`."""
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
        if not isinstance(config, dict):
            raise SpaceError(f"a config must be a dict of dimension -> value, got {type(config).__name__}")
        unknown = sorted(set(config) - set(self._by_name))
        if unknown:
            raise SpaceError(f"unknown dimension '{unknown[0]}'; the space has {self.names}")
        out: Config = {}
        for d in self.dimensions:
            if d.name not in config:
                raise SpaceError(f"missing dimension '{d.name}' (allowed values {list(d.choices)})")
            value = config[d.name]
            if d.length is None:
                out[d.name] = d.choices[d.index(value)]
            else:
                if isinstance(value, (str, bytes)) or not isinstance(value, Sequence | np.ndarray):
                    raise SpaceError(f"dimension '{d.name}': expected a list of {d.length} values from {list(d.choices)}, got {value!r}")
                if len(value) != d.length:
                    raise SpaceError(f"dimension '{d.name}': expected {d.length} values, got {len(value)}")
                out[d.name] = [d.choices[d.index(v, i)] for i, v in enumerate(value)]
        return out

    # ---------------------------------------------------------------- encoding
    def encode(self, config: Config) -> np.ndarray:
        """Integer vector of choice indices, one per gene."""
        config = self.validate(config)
        vec = np.empty(self._n_genes, dtype=np.int64)
        for d in self.dimensions:
            o = self._offsets[d.name]
            values = [config[d.name]] if d.length is None else config[d.name]
            for i, v in enumerate(values):
                vec[o + i] = d.index(v, i)
        return vec

    def decode(self, vector: Iterable[int]) -> Config:
        """Inverse of :meth:`encode`."""
        vec = np.asarray(list(vector) if not isinstance(vector, np.ndarray) else vector)
        if vec.shape != (self._n_genes,):
            raise SpaceError(f"an encoded config has {self._n_genes} genes, got shape {vec.shape}")
        vec = np.rint(vec).astype(np.int64)
        card = self.gene_cardinalities
        bad = np.flatnonzero((vec < 0) | (vec >= card))
        if bad.size:
            name, pos = self._gene_name(int(bad[0]))
            raise SpaceError(f"dimension '{name}': gene {pos} has index {vec[bad[0]]}, allowed 0..{card[bad[0]] - 1}")
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

    # ------------------------------------------------------ activity and keys
    def active_mask(self, config: Config) -> dict[str, list[bool] | bool]:
        """For each dimension, whether each of its values changes the network."""
        config = self.validate(config)
        mask: dict[str, list[bool] | bool] = {
            d.name: (True if d.length is None else [True] * d.length) for d in self.dimensions
        }
        for gate in self.gates:
            depths = config[gate.depth]
            depths = [depths] if self[gate.depth].length is None else depths
            block_active: list[bool] = []
            for n_blocks, depth in zip(gate.groups, depths):
                block_active += [j < depth for j in range(n_blocks)]
            for k, name in enumerate(gate.dims):
                gene_mask = cast(list[bool], mask[name])  # gated dimensions are lists
                owners = gate.gene_owners(k, len(gene_mask))
                mask[name] = [a and (o < 0 or block_active[o]) for a, o in zip(gene_mask, owners)]
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
        config = self.validate(config)
        mask = self.active_mask(config)
        out: Config = {}
        for d in self.dimensions:
            if d.length is None:
                out[d.name] = config[d.name]
            else:
                out[d.name] = [v if a else d.choices[0] for v, a in zip(config[d.name], cast(list[bool], mask[d.name]))]
        return out

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
        (returns shape ``(n, n_features)``).
        """
        if isinstance(config, dict):
            return self._features_one(config)
        return np.stack([self._features_one(c) for c in config]) if len(config) else np.zeros((0, self.n_features))

    def _features_one(self, config: Config) -> np.ndarray:
        vec = self.encode(config)
        mask = self.active_mask(config)
        flat_mask: list[bool] = []
        for d in self.dimensions:
            m = mask[d.name]
            flat_mask += m if isinstance(m, list) else [m]
        card = self.gene_cardinalities
        starts = np.concatenate([[0], np.cumsum(card)[:-1]])
        out = np.zeros(int(card.sum()), dtype=np.float64)
        active = np.asarray(flat_mask, dtype=np.bool_)
        out[(starts + vec)[active]] = 1.0
        return out

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
