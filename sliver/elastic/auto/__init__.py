"""Bring your own model: make an ordinary pre-trained PyTorch CNN an elastic super-network automatically."""

from sliver.elastic.auto import spec  # noqa: F401  registers the YAML section of the "auto" family
from sliver.elastic.auto.graph import ElastifyError
from sliver.elastic.auto.supernet import AutoSupernet, elastify

__all__ = ["AutoSupernet", "ElastifyError", "elastify"]
