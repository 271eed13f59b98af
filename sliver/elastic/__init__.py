"""Elastic super-networks: layers that run a slice of their weights, and families built from them."""

from sliver.elastic.base import Supernet, build_extracted, build_supernet, families, register_builder, register_family
from sliver.elastic.mobilenet import ElasticMobileNet  # registers the "mobilenet" family and builder
from sliver.elastic import bert, vit  # noqa: F401  registers the "bert" and "vit" transformer families
from sliver.elastic import llama  # noqa: F401  registers the "llama" decoder family
from sliver.elastic import multitask  # noqa: F401  registers the "multitask" family
from sliver.elastic.auto import AutoSupernet, ElastifyError, elastify  # registers the "auto" family
from sliver.elastic.spec import from_spec, register_spec

__all__ = [
    "AutoSupernet", "ElasticMobileNet", "ElastifyError", "Supernet", "elastify", "build_extracted", "build_supernet", "families", "register_builder", "register_family",
    "from_spec", "register_spec",
]
