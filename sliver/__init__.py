"""sliver: train one elastic super-network, find the sub-networks that are
Pareto-optimal for a device, and cut them out as standalone models."""

__version__ = "0.1.0"

from sliver.space import Config, DepthGate, Dimension, SearchSpace, SpaceError  # noqa: E402

__all__ = ["Config", "DepthGate", "Dimension", "SearchSpace", "SpaceError", "__version__", "elastify", "load_model"]


def __getattr__(name: str):
    # `sliver.load_model` without importing torch when only the search side is used
    if name == "load_model":
        from sliver.export import load_model

        return load_model
    if name == "elastify":  # bring your own model
        from sliver.elastic.auto import elastify

        return elastify
    raise AttributeError(f"module 'sliver' has no attribute {name!r}")
