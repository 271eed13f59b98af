"""Elastic Vision Transformer (patch embedding, class token, pre-LN encoder, linear classifier).

Family ``vit``: small enough to train from scratch on MNIST-5k on a CPU. Every
dimension of :mod:`sliver.elastic.transformer` is elastic, ``hidden`` included
(the patch embedding, class token, position embedding, layer norms and
classifier are sliced to the first ``hidden`` channels).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sliver.elastic.base import register_builder, register_family
from sliver.elastic.transformer import ElasticTransformer, plain_layers
from sliver.errors import UserError


def _patches(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) images -> (B, N, D) patch tokens."""
    return F.conv2d(x, weight, bias, stride=patch).flatten(2).transpose(1, 2)


def _with_class_token(tokens: torch.Tensor, cls: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    return torch.cat([cls.expand(tokens.shape[0], -1, -1), tokens], dim=1) + pos


@register_family("vit")
class ElasticViT(ElasticTransformer):
    """Elastic ViT classifier for ``image_size`` square images cut into ``patch_size`` patches."""

    family = "vit"

    def __init__(self, image_size: int = 28, patch_size: int = 7, in_channels: int = 1, num_classes: int = 10,
                 hidden: int = 64, num_layers: int = 4, num_heads: int = 4, ffn: int = 128, dropout: float = 0.0,
                 layer_choices: Sequence[int] | None = None, head_choices: Sequence[int] | None = None,
                 ffn_choices: Sequence[int] | None = None, hidden_choices: Sequence[int] | None = None,
                 keep: str = "first", seed: int = 0) -> None:
        if image_size % patch_size:
            raise UserError(f"image_size ({image_size}) must be a multiple of patch_size ({patch_size})")
        if hidden % num_heads:
            raise UserError(f"hidden ({hidden}) must be a multiple of num_heads ({num_heads})")
        # seeded initial weights, without disturbing the caller's random state
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            super().__init__(hidden=hidden, num_layers=num_layers, num_heads=num_heads, head_dim=hidden // num_heads,
                             ffn=ffn, norm_first=True, activation="gelu", eps=1e-6, dropout=dropout,
                             layer_choices=layer_choices, head_choices=head_choices, ffn_choices=ffn_choices,
                             hidden_choices=hidden_choices, keep=keep)
            self.image_size, self.patch_size, self.in_channels, self.num_classes = image_size, patch_size, in_channels, num_classes
            self.n_patches = (image_size // patch_size) ** 2
            self.patch = nn.Conv2d(in_channels, hidden, patch_size, stride=patch_size)
            self.cls_token = nn.Parameter(torch.zeros(1, 1, hidden))
            self.pos_embed = nn.Parameter(torch.randn(1, self.n_patches + 1, hidden) * 0.02)
            self.norm = nn.LayerNorm(hidden, eps=1e-6)
            self.head_fc = nn.Linear(hidden, num_classes)
        self.seed = seed

    def embed(self, x: torch.Tensor, hidden: int) -> tuple[torch.Tensor, None]:
        tokens = _patches(x, self.patch.weight[:hidden], self.patch.bias[:hidden], self.patch_size)
        return _with_class_token(tokens, self.cls_token[..., :hidden], self.pos_embed[..., :hidden]), None

    def head(self, h: torch.Tensor, mask: None, hidden: int) -> torch.Tensor:
        cls = F.layer_norm(h[:, 0], (hidden,), self.norm.weight[:hidden], self.norm.bias[:hidden], self.norm.eps)
        return F.linear(cls, self.head_fc.weight[:, :hidden], self.head_fc.bias)

    def input_shape(self, config, batch_size: int = 1) -> tuple[int, ...]:
        return (batch_size, self.in_channels, self.image_size, self.image_size)

    def seq_len(self) -> int:
        return self.n_patches + 1

    def outer_macs(self, hidden: int, seq_len: int) -> int:
        patch_macs = (seq_len - 1) * hidden * self.in_channels * self.patch_size ** 2
        return patch_macs + hidden * self.num_classes

    def family_arch(self) -> dict[str, Any]:
        return {"image_size": self.image_size, "patch_size": self.patch_size, "in_channels": self.in_channels,
                "num_classes": self.num_classes}

    def supernet_config(self) -> dict[str, Any]:
        return {"family": "vit", "image_size": self.image_size, "patch_size": self.patch_size,
                "in_channels": self.in_channels, "num_classes": self.num_classes, "hidden": self.hidden,
                "num_layers": self.num_layers, "num_heads": self.num_heads, "ffn": self.ffn, "dropout": self.dropout,
                "layer_choices": self.layer_choices, "head_choices": self.head_choices,
                "ffn_choices": self.ffn_choices, "hidden_choices": self.hidden_choices, "keep": self.keep,
                "seed": self.seed}


class ViT(nn.Module):
    """Plain ViT classifier: what :meth:`ElasticViT.extract` returns."""

    def __init__(self, arch: dict[str, Any]) -> None:
        super().__init__()
        d, p = arch["hidden"], arch["patch_size"]
        n = (arch["image_size"] // p) ** 2
        self.patch_size = p
        self.patch = nn.Conv2d(arch["in_channels"], d, p, stride=p)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, d))
        self.layers = plain_layers(arch)
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.head_fc = nn.Linear(d, arch["num_classes"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = _with_class_token(self.patch(x).flatten(2).transpose(1, 2), self.cls_token, self.pos_embed)
        for layer in self.layers:
            h = layer(h, None)
        return self.head_fc(self.norm(h[:, 0]))


@register_builder("vit")
def _build_vit(arch: dict[str, Any]) -> nn.Module:
    return ViT(arch)
