"""The quantisation genes of a space: one precision gene per quantisable layer group, plus global choices.

:func:`quantization_space` adds to a super-network's space one precision gene
(``int8`` or ``fp32``) per quantisable layer group of the sub-network, plus
global choices (per-channel or per-tensor weights; symmetric, asymmetric or
dynamic activations). :func:`node_genes` maps the nodes of an exported ONNX
model to those genes. See :mod:`sliver.quant` for the genes of a MobileNet.
"""

from __future__ import annotations

import re
from typing import Any

from sliver.core import Config
from sliver.errors import UserError
from sliver.space import DepthGate, Dimension, SearchSpace

PRECISIONS = ("int8", "fp32")
WEIGHT_MODES = ("per_channel", "per_tensor")
ACT_MODES = ("asymmetric", "symmetric", "dynamic")
#: precision genes of a MobileNet beside the per-block list ``q``
MOBILENET_SCALAR_GENES = ("q_stem", "q_head", "q_classifier")
GLOBAL_GENES = ("q_weights", "q_act")

_BLOCK_NODE = re.compile(r"^/blocks/blocks\.(\d+)/")


class QuantError(UserError):
    """A quantisation setting or input does not work; the message says what to change."""


def quantization_space(
    supernet: Any,
    precisions: tuple[str, ...] = PRECISIONS,
    weight_modes: tuple[str, ...] = WEIGHT_MODES,
    act_modes: tuple[str, ...] = ACT_MODES,
) -> SearchSpace:
    """The super-network's space plus precision genes (choices ``precisions``) and global quantisation genes.

    Pass single choices to pin a gene, e.g. ``precisions=("int8",)`` for the
    "every layer int8" baseline or ``("fp32",)`` for float sub-networks.
    """
    _check_family(supernet)
    for name, values, allowed in (("precisions", precisions, PRECISIONS), ("weight_modes", weight_modes, WEIGHT_MODES),
                                  ("act_modes", act_modes, ACT_MODES)):
        bad = [v for v in values if v not in allowed]
        if not values or bad:
            raise QuantError(f"quantization '{name}' must be a non-empty subset of {list(allowed)}, got {list(values)}")
    base: SearchSpace = supernet.space
    n_blocks = base["ks"].length
    dims = list(base.dimensions) + [
        Dimension("q_stem", tuple(precisions)),
        Dimension("q", tuple(precisions), n_blocks),
        Dimension("q_head", tuple(precisions)),
        Dimension("q_classifier", tuple(precisions)),
        Dimension("q_weights", tuple(weight_modes)),
        Dimension("q_act", tuple(act_modes)),
    ]
    # the block genes share the depth gate of the kernel/expand genes: a dropped block has no layers to quantise
    gates = [DepthGate(g.depth, g.groups, g.dims + ("q",)) if "ks" in g.dims else g for g in base.gates]
    return SearchSpace(dims, gates)


def split_config(supernet: Any, config: Config) -> tuple[Config, Config]:
    """``(architecture, policy)``: the super-network's dimensions, and the quantisation genes."""
    arch_names = set(supernet.space.names)
    arch = {k: v for k, v in config.items() if k in arch_names}
    policy = {k: v for k, v in config.items() if k not in arch_names}
    return arch, policy


def _check_family(supernet: Any) -> None:
    family = supernet.supernet_config().get("family")
    if family != "mobilenet":
        raise QuantError(f"quantization search supports the mobilenet family, not {family!r}")


def node_genes(supernet: Any, config: Config, node_names: list[str]) -> dict[str, str]:
    """The precision gene (``q_stem``, ``q[j]``, ``q_head``, ``q_classifier``) each ONNX node belongs to.

    Node names come from the TorchScript exporter, which names each node after
    the module path of the extracted :class:`~sliver.elastic.mobilenet.MobileNet`
    (``/blocks/blocks.3/depthwise/depthwise.0/Conv``). Block ``i`` of the
    extracted model is the ``i``-th active block; block ``0`` is the fixed first
    block (grouped with the stem). Unscoped nodes (the global pooling) belong
    to the head, ``Flatten`` to the classifier.
    """
    active = _active_blocks(supernet, config)
    out: dict[str, str] = {}
    for name in node_names:
        m = _BLOCK_NODE.match(name)
        if m:
            i = int(m.group(1))
            if i > len(active):
                raise QuantError(f"ONNX node {name!r} names block {i}, but the sub-network has {len(active)} blocks")
            out[name] = "q_stem" if i == 0 else f"q[{active[i - 1]}]"
        elif name.startswith("/stem/"):
            out[name] = "q_stem"
        elif name.startswith(("/classifier/", "/Flatten")):
            out[name] = "q_classifier"
        elif name.startswith(("/final_expand/", "/feature_mix/", "/ReduceMean")):
            out[name] = "q_head"
        else:
            raise QuantError(f"ONNX node {name!r} belongs to no quantisation gene (was the model exported by export_float_onnx?)")
    return out


def fp32_nodes(supernet: Any, config: Config, node_names: list[str]) -> list[str]:
    """Names of the nodes whose gene is ``fp32`` (they are excluded from quantisation)."""
    genes = node_genes(supernet, config, node_names)
    return [n for n, g in genes.items() if _gene_value(config, g) == "fp32"]


def _gene_value(config: Config, gene: str) -> str:
    m = re.fullmatch(r"q\[(\d+)\]", gene)
    return config["q"][int(m.group(1))] if m else config[gene]


def _active_blocks(supernet: Any, config: Config) -> list[int]:
    """Positions (in the ``ks``/``e``/``q`` lists) of the blocks the config runs, in order."""
    groups = next(g.groups for g in supernet.space.gates if "ks" in g.dims)
    out, start = [], 0
    for n, depth in zip(groups, config["d"]):
        out += list(range(start, start + depth))
        start += n
    return out
