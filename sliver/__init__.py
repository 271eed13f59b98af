"""sliver: train one elastic super-network, find the sub-networks that are
Pareto-optimal for a device, and cut them out as standalone models."""

__version__ = "0.1.0"

from sliver.space import Config, DepthGate, Dimension, SearchSpace, SpaceError  # noqa: E402

__all__ = ["Config", "DepthGate", "Dimension", "SearchSpace", "SpaceError", "__version__"]
