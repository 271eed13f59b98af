"""The `Supernet` protocol every elastic super-network family follows.

A super-network holds the weights of its largest network. ``activate(config)``
selects a sub-network; ``forward`` then runs that sub-network by slicing the
full weights (no copies). ``extract(config)`` cuts the sub-network out as a
plain PyTorch module with its own, copied weights and no elastic code, which
``arch_config(config)`` + :func:`build_extracted` can rebuild from JSON alone.

A config is a plain dict understood by ``space`` (:class:`sliver.space.SearchSpace`);
it is the only thing that travels between search and model.
"""

from __future__ import annotations

import abc
from typing import Any, Callable

import torch
from torch import nn

from sliver.errors import UserError
from sliver.space import Config, SearchSpace


class Supernet(nn.Module, abc.ABC):
    """Base class of elastic super-networks (CNN, transformer, multi-task)."""

    #: the search space of sub-network configs
    space: SearchSpace
    #: input axes an exported ONNX model leaves free (see :mod:`sliver.export`): any batch size deploys;
    #: text families free the sequence axis too
    onnx_dynamic_axes: dict[int, str] = {0: "batch"}

    def __init__(self) -> None:
        super().__init__()
        self._active: Config | None = None

    # --- selecting a sub-network -------------------------------------------
    def activate(self, config: Config) -> Config:
        """Make ``forward`` run the sub-network ``config``; returns the validated config."""
        config = self.space.validate(config)
        self._set_active(config)
        self._active = config
        return config

    @property
    def active_config(self) -> Config:
        """The config ``forward`` currently runs (the largest one until activated)."""
        if self._active is None:
            self.activate(self.max_config())
        return self._active  # type: ignore[return-value]

    @abc.abstractmethod
    def _set_active(self, config: Config) -> None:
        """Push a validated config down into the elastic layers."""

    def max_config(self) -> Config:
        """The largest sub-network (every dimension at its largest choice)."""
        return self.space.max_config()

    def min_config(self) -> Config:
        """The smallest sub-network."""
        return self.space.min_config()

    # --- inputs -------------------------------------------------------------
    @abc.abstractmethod
    def input_shape(self, config: Config, batch_size: int = 1) -> tuple[int, ...]:
        """Shape of one input batch for ``config`` (e.g. resolution comes from the config)."""

    def example_input(self, config: Config, batch_size: int = 1, seed: int = 0) -> torch.Tensor:
        """A seeded random input batch of the right shape for ``config``."""
        gen = torch.Generator().manual_seed(seed)
        return torch.randn(self.input_shape(config, batch_size), generator=gen)

    def prepare_input(self, x: torch.Tensor, config: Config) -> torch.Tensor:
        """Adapt a batch from the data pipeline to ``config`` (e.g. resize to its resolution)."""
        return x

    # --- cutting out --------------------------------------------------------
    @abc.abstractmethod
    def arch_config(self, config: Config) -> dict[str, Any]:
        """JSON-able description from which :func:`build_extracted` rebuilds the extracted model."""

    @abc.abstractmethod
    def extract(self, config: Config) -> nn.Module:
        """A standalone plain-PyTorch model of ``config`` with copied weights, in eval mode."""

    @abc.abstractmethod
    def costs(self, config: Config) -> dict[str, float]:
        """Cheap analytic costs of ``config``: at least ``params`` and ``macs`` (batch 1)."""

    @abc.abstractmethod
    def supernet_config(self) -> dict[str, Any]:
        """JSON-able constructor arguments, with ``family``, to rebuild it via :func:`build_supernet`."""


def taylor_importance(supernet: Supernet, batches, loss_fn) -> dict[int, torch.Tensor]:
    """First-order Taylor scores ``|w * dL/dw|`` of every parameter (by ``id``), summed over ``batches``
    of the largest network in eval mode (no dropout); the active config and mode are restored."""
    previous, was_training = supernet._active, supernet.training
    supernet.activate(supernet.max_config())
    supernet.eval()
    scores = {id(p): torch.zeros_like(p) for p in supernet.parameters()}
    with torch.enable_grad():
        for x, y in batches:
            supernet.zero_grad(set_to_none=True)
            loss_fn(supernet(x), y).backward()
            for p in supernet.parameters():
                if p.grad is not None:
                    scores[id(p)] += (p.detach() * p.grad).abs()
    supernet.zero_grad(set_to_none=True)
    supernet.train(was_training)
    if previous is not None:
        supernet.activate(previous)
    return scores


# --- rebuilding extracted models without the super-network ---------------------
_BUILDERS: dict[str, Callable[[dict[str, Any]], nn.Module]] = {}
_FAMILIES: dict[str, Callable[..., Supernet]] = {}


def register_builder(kind: str):
    """Register a function that builds a plain model from an ``arch_config`` dict of this ``kind``."""

    def deco(fn: Callable[[dict[str, Any]], nn.Module]):
        _BUILDERS[kind] = fn
        return fn

    return deco


def register_family(name: str):
    """Register a super-network class under a family name used in YAML configs."""

    def deco(cls):
        _FAMILIES[name] = cls
        return cls

    return deco


def build_extracted(arch: dict[str, Any]) -> nn.Module:
    """Rebuild a plain (non-elastic) model from its ``arch_config`` JSON; load weights separately."""
    _import_families()
    kind = arch.get("kind")
    if kind not in _BUILDERS:
        raise UserError(f"arch 'kind' must be one of {sorted(_BUILDERS)}, got {kind!r}")
    return _BUILDERS[kind](arch)


def build_supernet(spec: dict[str, Any]) -> Supernet:
    """Build a super-network from a dict with ``family`` plus that family's constructor arguments."""
    _import_families()
    spec = dict(spec)
    family = spec.pop("family", None)
    if family not in _FAMILIES:
        raise UserError(f"supernet 'family' must be one of {sorted(_FAMILIES)}, got {family!r}")
    return _FAMILIES[family](**spec)


def families() -> list[str]:
    _import_families()
    return sorted(_FAMILIES)


def _import_families() -> None:
    # families register themselves on import
    import sliver.elastic  # noqa: F401
