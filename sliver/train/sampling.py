"""Sampling rules: which sub-networks one training step trains.

A rule only needs the :class:`~sliver.space.SearchSpace` (choices are ordered
small to large, so the last choice of every gene is the largest network). Each
step it returns a list of :class:`Pick`; the trainer runs them in order,
accumulates their gradients and takes one optimiser step. A pick marked
``teacher`` is trained on the labels and its detached soft outputs teach the
picks after it (in-place distillation), when the rule distils.

* ``sandwich`` (BigNAS): largest + smallest + ``n`` random networks; the
  ``shared`` dimensions (e.g. the input resolution) are drawn once per step
  and given to every pick, as Once-for-All draws one resolution per batch;
* ``progressive`` (Once-for-All): phases that unlock dimensions one after the
  other (full network, then kernel, depth, expand), each with its own epochs
  and learning rate; dimensions no phase names (e.g. resolution) are elastic
  from the start, as in OFA;
* ``uniform`` (SPOS): one random network per step, trained on the labels;
* ``nested`` (SortedNet): a ladder of nested networks from smallest to largest,
  each containing the previous; ``n`` rungs per step, trained in sorted order;
* ``fixed`` (MatFormer's granularities, Minitron's chosen architectures): the
  same listed sub-networks every step, for users who know the sizes they will
  deploy, so each of them gets every step's update instead of the few a random
  draw from a large space would give it.

Random networks are drawn one of two ways (``draw``):

* ``independent``: every gene uniform over its choices, on its own. With many
  genes the cost of the drawn networks crowds around the middle: on the
  6-layer MiniLM space (heads and FFN width per layer) 80% of draws cut
  24-42% of the MACs, and a network with every layer small is almost never
  trained as a whole;
* ``correlated``: one level ``q ~ U(0, 1)`` per network, then every gene's
  choice index ``~ Binomial(choices - 1, q)``. Each gene still takes every
  choice equally often (a uniform mixture of binomials is uniform), but the
  genes move together, so drawn networks spread over the whole cost range
  (on the same space 80% of draws cut 6-57% of the MACs), in the spirit of
  AttentiveNAS's sampling across the FLOPs range without needing a cost model.

Every random draw comes from the rule's own seeded generator, whose state
goes into checkpoints so a resumed run draws the same networks.
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sliver.errors import UserError
from sliver.space import Config, SearchSpace, SpaceError


@dataclass
class Pick:
    """One sub-network to train in a step."""

    config: Config
    #: why it was picked: "max", "min", "random", "nested"
    role: str
    #: trained on the labels; its detached outputs teach the later picks (when the rule distils)
    teacher: bool = False


@dataclass
class Phase:
    """A progressive-shrinking phase: ``unlock`` lists the dimensions that become elastic in it."""

    name: str
    epochs: int
    lr: float
    unlock: list[str]


#: how random networks are drawn (see the module docstring)
DRAWS = ("independent", "correlated")

#: progressive shrinking of the mobilenet family, as in Once-for-All
MOBILENET_PHASES = [("full", []), ("kernel", ["ks"]), ("depth", ["d"]), ("expand", ["e"])]


class SamplingRule(abc.ABC):
    """Chooses the sub-networks of each training step from a search space."""

    name: str = ""
    #: whether non-teacher picks learn from the teacher's soft outputs
    distill: bool = False

    def __init__(self, space: SearchSpace, seed: int = 0, draw: str = "independent") -> None:
        if draw not in DRAWS:
            raise SpaceError(f"sampling draw must be one of {DRAWS}, got {draw!r}")
        self.space, self.draw = space, draw
        self.rng = np.random.default_rng(seed)

    @abc.abstractmethod
    def picks(self, step: int) -> list[Pick]:
        """The sub-networks to train at global step ``step`` (0-based)."""

    def phase(self, step: int) -> str:
        """Name of the training phase ``step`` is in (one phase unless the rule has several)."""
        return self.name

    def state_dict(self) -> dict[str, Any]:
        """The generator state, so a resumed run draws the same networks."""
        return {"rule": self.name, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("rule") != self.name:
            raise UserError(f"the checkpoint was trained with sampling rule {state.get('rule')!r}, the config asks for {self.name!r}")
        self.rng.bit_generator.state = state["rng"]

    def random_config(self, frozen: Collection[str] = frozenset()) -> Config:
        """A random config drawn as ``draw`` says; dimensions in ``frozen`` stay at their largest choice."""
        if self.draw == "correlated":
            card = self.space.gene_cardinalities
            config = self.space.decode(self.rng.binomial(card - 1, self.rng.uniform()))
        else:
            config = self.space.sample(self.rng)
        top = self.space.max_config()
        return {k: (top[k] if k in frozen else v) for k, v in config.items()}


class SandwichRule(SamplingRule):
    """Largest + smallest + ``n`` random sub-networks per step, with in-place distillation from the largest.

    Dimensions named in ``shared`` are drawn once per step and set in every
    pick, so "largest" and "smallest" mean largest and smallest in the other
    dimensions. Without it the smallest network always runs at the smallest
    resolution, so the small kernels and shallow stages it shares with every
    network learn features at that scale only (on MNIST-5k a 6-epoch
    super-network's smallest network loses 14 points at 28 px against 20 px).
    Sharing the resolution makes every network learn both scales, which needs
    a longer schedule: after 3 epochs it was 3 points worse on average.
    """

    name = "sandwich"

    def __init__(self, space: SearchSpace, n: int = 2, distill: bool = True, seed: int = 0, shared: Sequence[str] = (),
                 draw: str = "independent") -> None:
        super().__init__(space, seed, draw)
        for d in shared:
            space[d]  # raises a SpaceError naming the unknown dimension
        self.n, self.distill, self.shared = n, distill, list(shared)

    def picks(self, step: int) -> list[Pick]:
        out = [Pick(self.space.max_config(), "max", teacher=True), Pick(self.space.min_config(), "min")]
        out += [Pick(self.random_config(), "random") for _ in range(self.n)]
        if self.shared:
            drawn = self.space.sample(self.rng)
            out = [Pick({**p.config, **{d: drawn[d] for d in self.shared}}, p.role, p.teacher) for p in out]
        return out


class UniformRule(SamplingRule):
    """One uniformly random sub-network per step, trained on the labels (single-path one-shot)."""

    name = "uniform"

    def picks(self, step: int) -> list[Pick]:
        return [Pick(self.random_config(), "random")]


class NestedRule(SamplingRule):
    """SortedNet: ``levels`` nested sub-networks from smallest to largest; ``n`` of them per step, smallest first.

    Rung ``k`` sets every gene to choice index ``round(k * (choices - 1) / (levels - 1))``,
    so each rung contains the one below it (same leading channels and layers, larger kernels).
    """

    name = "nested"

    def __init__(self, space: SearchSpace, n: int = 1, levels: int | None = None, seed: int = 0) -> None:
        super().__init__(space, seed)
        card = space.gene_cardinalities
        self.levels = int(levels if levels is not None else card.max())
        if self.levels < 2:
            raise SpaceError(f"nested sampling needs at least 2 levels, got {self.levels}")
        if not 1 <= n <= self.levels:
            raise SpaceError(f"nested sampling: n={n} must be between 1 and levels={self.levels}")
        self.n = n
        self.ladder = [space.decode(np.rint(k * (card - 1) / (self.levels - 1))) for k in range(self.levels)]

    def picks(self, step: int) -> list[Pick]:
        rungs = np.sort(self.rng.choice(self.levels, size=self.n, replace=False))
        return [Pick(self.ladder[int(k)], "nested") for k in rungs]


class FixedRule(SamplingRule):
    """The listed sub-networks every step, in the listed order.

    When the rule distils in place (``largest_teaches``, set by the trainer
    when there is no frozen original model to teach), the largest network is
    trained first on the labels and teaches the listed ones; otherwise only the
    listed ones train, each from the frozen teacher.
    """

    name = "fixed"

    def __init__(self, space: SearchSpace, configs: list[Config], distill: bool = True) -> None:
        super().__init__(space)
        if not configs:
            raise SpaceError("fixed sampling needs at least one sub-network in 'configs'")
        self.configs = [space.validate(c) for c in configs]
        self.distill = distill
        self.largest_teaches = distill

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "configs": self.configs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if state.get("configs") != self.configs:
            raise UserError("the checkpoint was trained on other 'configs' than the config lists; list the same "
                            "sub-networks to resume, or train in a new output folder")

    def picks(self, step: int) -> list[Pick]:
        top = self.space.max_config()
        listed = [Pick(c, "fixed") for c in self.configs if not (self.largest_teaches and c == top)]
        return ([Pick(top, "max", teacher=True)] if self.largest_teaches else []) + listed


class ProgressiveRule(SamplingRule):
    """Once-for-All progressive shrinking: phases unlock dimensions in order, in one run.

    In the first phase with nothing unlocked only the largest network trains;
    afterwards each step trains the largest network plus ``n`` random ones in
    which only the unlocked dimensions (and those no phase names) vary, with
    in-place distillation from the largest.
    """

    name = "progressive"

    def __init__(self, space: SearchSpace, phases: list[Phase], steps_per_epoch: int, n: int = 2, distill: bool = True,
                 seed: int = 0, draw: str = "independent") -> None:
        super().__init__(space, seed, draw)
        if not phases:
            raise SpaceError("progressive sampling needs at least one phase")
        named = [d for p in phases for d in p.unlock]
        for d in named:
            space[d]  # raises a SpaceError naming the unknown dimension
        if len(set(named)) != len(named):
            raise SpaceError(f"progressive phases unlock a dimension twice: {named}")
        self.phases, self.steps_per_epoch, self.n, self.distill = phases, steps_per_epoch, n, distill
        self._named = set(named)

    def phase_index(self, step: int) -> int:
        end = 0
        for i, p in enumerate(self.phases):
            end += p.epochs * self.steps_per_epoch
            if step < end:
                return i
        return len(self.phases) - 1

    def phase(self, step: int) -> str:
        return self.phases[self.phase_index(step)].name

    def unlocked(self, step: int) -> list[str]:
        """Dimensions elastic at ``step``: those unlocked so far plus those no phase names."""
        i = self.phase_index(step)
        opened = [d for p in self.phases[: i + 1] for d in p.unlock]
        return [d for d in self.space.names if d in opened or d not in self._named]

    def picks(self, step: int) -> list[Pick]:
        elastic = set(self.unlocked(step))
        out = [Pick(self.space.max_config(), "max", teacher=True)]
        if self.phase_index(step) == 0 and not self.phases[0].unlock:
            return out  # the full network is trained alone first
        frozen = set(self.space.names) - elastic
        return out + [Pick(self.random_config(frozen), "random") for _ in range(self.n)]


def default_phases(space: SearchSpace, epochs: int, lr: float) -> list[Phase]:
    """OFA's phases for spaces with ``ks``, ``d`` and ``e`` (mobilenet): ``epochs`` split evenly, all at ``lr``."""
    missing = [d for _, dims in MOBILENET_PHASES for d in dims if d not in space.names]
    if missing:
        raise SpaceError(
            f"progressive sampling: the space has no dimension '{missing[0]}' for the default phases; "
            f"set train.sampling.phases (the space has {space.names})"
        )
    if epochs < len(MOBILENET_PHASES):
        raise SpaceError(f"progressive sampling: train.epochs={epochs} is fewer than the {len(MOBILENET_PHASES)} default phases")
    share, extra = divmod(epochs, len(MOBILENET_PHASES))
    return [Phase(name, share + (extra if i == 0 else 0), lr, dims) for i, (name, dims) in enumerate(MOBILENET_PHASES)]
