"""Elastic super-networks: layers that run a slice of their weights, and families built from them."""

from sliver.elastic.base import Supernet, build_extracted, build_supernet, families, register_builder, register_family

__all__ = ["Supernet", "build_extracted", "build_supernet", "families", "register_builder", "register_family"]
