"""Elastic super-networks: layers that run a slice of their weights, and families built from them."""

# importing a family's module registers it: "bert", "vit", "llama", "multitask", "auto" and "mobilenet" (family and builder)
from sliver.elastic import bert, llama, multitask, vit  # noqa: F401
from sliver.elastic.auto import AutoSupernet, ElastifyError, elastify
from sliver.elastic.base import Supernet, build_extracted, build_supernet, families, register_builder, register_family
from sliver.elastic.mobilenet import ElasticMobileNet
from sliver.elastic.spec import from_spec, register_spec

__all__ = [
    "AutoSupernet", "ElasticMobileNet", "ElastifyError", "Supernet", "elastify", "build_extracted", "build_supernet", "families", "register_builder", "register_family",
    "from_spec", "register_spec",
]
