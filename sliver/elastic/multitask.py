"""ElasticMultiTask: a width-slimmable shared encoder with one width-slimmable decoder per task (ECMT).

Efficient Controllable Multi-Task Architectures (Aboutalebi et al., ICCV 2023)
train one multi-task network whose total compute and per-task importance can
be changed after deployment: the shared encoder's width sets the budget, each
task decoder's width sets how much capacity its task gets.

Layout: ``len(encoder_widths)`` encoder stages, each a 3x3 convolution, batch
norm and ReLU; then, per task, a head:

* ``classify`` -- two 3x3 convolutions (stride 2), each with BN and ReLU, global
  average pooling, linear classifier;
* ``dense`` -- 3x3 convolution, BN, ReLU, 3x3 convolution to
  ``channels * scale**2`` maps and a pixel shuffle (``scale`` x up-sampling);
  with ``residual`` the input, bilinearly up-sampled, is added (the decoder
  predicts a correction, as image-restoration networks do).

Elastic per sub-network (fractions of the largest width, slicing the first channels):

* ``enc_w`` -- one width multiplier per encoder stage (list),
* ``dec_<task>_w`` -- the width multiplier of that task's decoder (scalar).

``forward`` returns a dict ``task -> output``; :meth:`encode` gives the shared
features, which configuration-invariant distillation compares across widths.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sliver.elastic.base import Supernet, build_extracted, register_builder, register_family
from sliver.elastic.layers import ElasticBatchNorm2d, ElasticConv2d, ElasticLinear
from sliver.errors import UserError
from sliver.space import Config, Dimension, SearchSpace

HEAD_TYPES = ("classify", "dense")
DEFAULT_MULTS = (0.25, 0.5, 0.75, 1.0)


def channels(mult: float, largest: int) -> int:
    """Active channels of a layer with ``largest`` channels at width multiplier ``mult`` (at least 1)."""
    return max(1, int(round(mult * largest)))


def _out_size(size: int, stride: int) -> int:
    return (size - 1) // stride + 1  # 3x3 convolution, padding 1


# ---------------------------------------------------------------- plain model
def _conv_bn_relu(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class Head(nn.Module):
    """A plain task decoder described by one entry of an ``arch_config``'s ``heads``."""

    def __init__(self, arch: dict[str, Any]) -> None:
        super().__init__()
        self.type, self.scale, self.residual = arch["type"], arch.get("scale", 1), arch.get("residual", False)
        w = arch["width"]
        if self.type == "classify":
            self.body = nn.Sequential(_conv_bn_relu(arch["in"], w, 2), _conv_bn_relu(w, w, 2))
        else:
            self.body = nn.Sequential(_conv_bn_relu(arch["in"], w, 1))
        if self.type == "classify":
            self.out = nn.Linear(arch["width"], arch["classes"])
        else:
            self.out = nn.Conv2d(arch["width"], arch["channels"] * self.scale**2, 3, 1, 1, bias=True)

    def forward(self, features: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return _head_forward(self.type, self.body(features), self.out, x, self.scale, self.residual)


def _head_forward(kind: str, hidden: torch.Tensor, out: nn.Module, x: torch.Tensor, scale: int, residual: bool) -> torch.Tensor:
    """The part of a head after its hidden layer, shared by the elastic and the plain model."""
    if kind == "classify":
        return out(hidden.mean((2, 3)))
    y = out(hidden)
    if scale > 1:
        y = F.pixel_shuffle(y, scale)
    if residual:
        up = x if scale == 1 else F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
        y = y + up
    return y


class MultiTaskNet(nn.Module):
    """A plain multi-head network described by an ``arch_config`` dict; ``forward`` returns ``{task: output}``."""

    def __init__(self, arch: dict[str, Any]) -> None:
        super().__init__()
        self.encoder = nn.Sequential(*[_conv_bn_relu(s["in"], s["out"], s["stride"]) for s in arch["encoder"]])
        self.heads = nn.ModuleDict({name: Head(h) for name, h in arch["heads"].items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.encoder(x)
        return {name: head(features, x) for name, head in self.heads.items()}


@register_builder("multitask")
def build_multitask(arch: dict[str, Any]) -> MultiTaskNet:
    """Rebuild the plain model of an ``arch_config`` (weights are loaded separately)."""
    return MultiTaskNet(arch)


# ---------------------------------------------------------------- elastic parts
class ElasticStage(nn.Module):
    """3x3 convolution + BN + ReLU with elastic output channels (``active_out``); inputs decide the rest."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv = ElasticConv2d(cin, cout, 3, stride)
        self.bn = ElasticBatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))

    def extract(self, cin: int) -> nn.Sequential:
        out = self.conv.active_out
        seq = _conv_bn_relu(cin, out, self.conv.stride)
        seq[0].load_state_dict(self.conv.to_plain(cin).state_dict())
        seq[1].load_state_dict(self.bn.to_plain(out).state_dict())
        return seq


class ElasticHead(nn.Module):
    """A task decoder whose hidden width is elastic (see :class:`Head` for the layout)."""

    def __init__(self, spec: dict[str, Any], in_channels: int, width: int) -> None:
        super().__init__()
        self.spec = dict(spec)
        self.type = spec["type"]
        self.scale, self.residual = int(spec.get("scale", 1)), bool(spec.get("residual", False))
        if self.type == "classify":
            self.body = nn.ModuleList([ElasticStage(in_channels, width, 2), ElasticStage(width, width, 2)])
        else:
            self.body = nn.ModuleList([ElasticStage(in_channels, width, 1)])
        if self.type == "classify":
            self.out = ElasticLinear(width, spec["classes"])
        else:
            self.out = ElasticConv2d(width, spec["channels"] * self.scale**2, 3, bias=True)
            # a residual head starts as the identity (its correction is zero), as in image-restoration networks
            if self.residual:
                nn.init.zeros_(self.out.weight)

    @property
    def width(self) -> int:
        """Largest hidden width."""
        return self.body[0].conv.out_channels

    def set_width(self, width: int) -> None:
        for stage in self.body:
            stage.conv.active_out = width

    def forward(self, features: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        for stage in self.body:
            features = stage(features)
        return _head_forward(self.type, features, self.out, x, self.scale, self.residual)

    def extract(self, cin: int) -> Head:
        width = self.body[0].conv.active_out
        head = Head({**self.spec, "in": cin, "width": width})
        head.body = nn.Sequential(*[stage.extract(c) for stage, c in zip(self.body, [cin] + [width] * len(self.body))])
        head.out.load_state_dict(self.out.to_plain(width).state_dict())
        return head


# ---------------------------------------------------------------- supernet
@register_family("multitask")
class ElasticMultiTask(Supernet):
    """Width-slimmable shared encoder plus one width-slimmable decoder per task.

    ``heads`` maps a task name (an identifier) to its head: ``{"type": "classify",
    "classes": K}`` or ``{"type": "dense", "channels": C, "scale": s, "residual": bool}``.
    ``encoder_widths`` are the largest channels of each stage, ``encoder_strides``
    their strides; ``decoder_width`` is every decoder's largest hidden width.
    ``width_mults`` / ``decoder_mults`` are the multiplier choices (fractions in (0, 1]).
    """

    def __init__(
        self,
        heads: dict[str, dict[str, Any]],
        in_channels: int = 1,
        image_size: int = 14,
        encoder_widths: list[int] = (16, 32, 32),
        encoder_strides: list[int] | None = None,
        width_mults: list[float] = DEFAULT_MULTS,
        decoder_width: int = 32,
        decoder_mults: list[float] = DEFAULT_MULTS,
    ) -> None:
        super().__init__()
        encoder_strides = [1] * len(encoder_widths) if encoder_strides is None else list(encoder_strides)
        _check_args(heads, in_channels, image_size, list(encoder_widths), encoder_strides, width_mults, decoder_width, decoder_mults)
        self._args = dict(
            heads={k: dict(v) for k, v in heads.items()}, in_channels=in_channels, image_size=image_size,
            encoder_widths=list(encoder_widths), encoder_strides=encoder_strides, width_mults=sorted(width_mults),
            decoder_width=decoder_width, decoder_mults=sorted(decoder_mults),
        )
        self.in_channels, self.image_size = in_channels, image_size
        self.tasks = list(heads)
        self.encoder = nn.ModuleList()
        cin = in_channels
        for width, stride in zip(encoder_widths, encoder_strides):
            self.encoder.append(ElasticStage(cin, width, stride))
            cin = width
        self.heads = nn.ModuleDict({name: ElasticHead(spec, cin, decoder_width) for name, spec in heads.items()})
        self.space = SearchSpace(
            [Dimension("enc_w", tuple(sorted(width_mults)), len(encoder_widths))]
            + [Dimension(self.decoder_dim(t), tuple(sorted(decoder_mults))) for t in self.tasks]
        )
        self.activate(self.max_config())

    @staticmethod
    def decoder_dim(task: str) -> str:
        """Name of the dimension holding ``task``'s decoder width multiplier."""
        return f"dec_{task}_w"

    def supernet_config(self) -> dict[str, Any]:
        return {"family": "multitask", **copy.deepcopy(self._args)}

    # --- sub-network selection ----------------------------------------------
    def _set_active(self, config: Config) -> None:
        for stage, mult in zip(self.encoder, config["enc_w"]):
            stage.conv.active_out = channels(mult, stage.conv.out_channels)
        for name, head in self.heads.items():
            head.set_width(channels(config[self.decoder_dim(name)], head.width))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Shared features of the active encoder (its last stage's active channels)."""
        self.active_config  # noqa: B018 - makes sure a config is active
        for stage in self.encoder:
            x = stage(x)
        return x

    def decode(self, features: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every task's output from the shared ``features`` (``x`` is the input, for residual heads)."""
        return {name: head(features, x) for name, head in self.heads.items()}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the active sub-network; returns ``{task: output}``."""
        return self.decode(self.encode(x), x)

    def input_shape(self, config: Config, batch_size: int = 1) -> tuple[int, ...]:
        return (batch_size, self.in_channels, self.image_size, self.image_size)

    # --- cutting out ------------------------------------------------------------
    def arch_config(self, config: Config) -> dict[str, Any]:
        """JSON description (``kind: multitask``) of the sub-network, rebuilt by :func:`build_extracted`."""
        config = self.space.validate(config)
        encoder, cin = [], self.in_channels
        for stage, mult in zip(self.encoder, config["enc_w"]):
            out = channels(mult, stage.conv.out_channels)
            encoder.append({"in": cin, "out": out, "stride": stage.conv.stride})
            cin = out
        heads = {
            name: {**head.spec, "in": cin, "width": channels(config[self.decoder_dim(name)], head.width)}
            for name, head in self.heads.items()
        }
        return {"kind": "multitask", "in_channels": self.in_channels, "image_size": self.image_size,
                "encoder": encoder, "heads": heads}

    def extract(self, config: Config) -> MultiTaskNet:
        """The sub-network as a plain :class:`MultiTaskNet` with copied weights, in eval mode, on this device."""
        config = self.space.validate(config)
        arch = self.arch_config(config)
        saved = self._active
        self.activate(config)
        try:
            model = build_extracted(arch)
            for i, stage in enumerate(self.encoder):
                model.encoder[i] = stage.extract(arch["encoder"][i]["in"])
            cin = arch["encoder"][-1]["out"]
            for name, head in self.heads.items():
                model.heads[name] = head.extract(cin)
        finally:
            self.activate(saved)
        return model.to(next(self.parameters()).device).eval()

    def costs(self, config: Config) -> dict[str, int]:
        """Parameters and MACs of ``config``, every decoder included (see :func:`multitask_costs`)."""
        return multitask_costs(self.arch_config(config))


def multitask_costs(arch: dict[str, Any]) -> dict[str, int]:
    """Analytic parameters and MACs (batch 1) of a plain multi-task ``arch_config``.

    ``params`` counts every parameter of the extracted model (weights, biases,
    BN scale and shift; not the running statistics). ``macs`` counts the
    multiply-accumulates of the convolutions and linear layers of the encoder
    and of every decoder; batch norm, ReLU, pooling, pixel shuffle and the
    residual up-sampling are left out, as for the other families.
    """
    params = macs = 0
    size = arch["image_size"]

    def conv(cin: int, cout: int, stride: int, at: int, bias: bool = False, bn: bool = True) -> int:
        nonlocal params, macs
        out = _out_size(at, stride)
        params += cout * cin * 9 + (cout if bias else 0) + (2 * cout if bn else 0)
        macs += cout * cin * 9 * out * out
        return out

    for s in arch["encoder"]:
        size = conv(s["in"], s["out"], s["stride"], size)
    for h in arch["heads"].values():
        if h["type"] == "classify":
            conv(h["width"], h["width"], 2, conv(h["in"], h["width"], 2, size))
            params += h["width"] * h["classes"] + h["classes"]
            macs += h["width"] * h["classes"]
        else:
            conv(h["in"], h["width"], 1, size)
            conv(h["width"], h["channels"] * h["scale"] ** 2, 1, size, bias=True, bn=False)
    return {"params": int(params), "macs": int(macs)}


def _check_args(heads, in_channels, image_size, encoder_widths, encoder_strides, width_mults, decoder_width, decoder_mults) -> None:
    if not isinstance(heads, dict) or not heads:
        raise UserError("multitask 'heads' must map at least one task name to its head, e.g. {cls: {type: classify, classes: 10}}")
    for name, h in heads.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise UserError(f"multitask 'heads': task name {name!r} must be an identifier (letters, digits, _)")
        if not isinstance(h, dict) or h.get("type") not in HEAD_TYPES:
            raise UserError(f"multitask 'heads.{name}.type' must be one of {list(HEAD_TYPES)}, got {h.get('type') if isinstance(h, dict) else h!r}")
        need = {"classify": {"type", "classes"}, "dense": {"type", "channels", "scale", "residual"}}[h["type"]]
        if set(h) != need:
            raise UserError(f"multitask 'heads.{name}' of type {h['type']} needs exactly the keys {sorted(need)}, got {sorted(h)}")
        for key in need - {"type", "residual"}:
            if not isinstance(h[key], int) or h[key] < 1:
                raise UserError(f"multitask 'heads.{name}.{key}' must be a positive integer, got {h[key]!r}")
        if h["type"] == "dense" and h["residual"] and h["channels"] != in_channels:
            raise UserError(f"multitask 'heads.{name}.residual' needs channels == in_channels ({in_channels}), got {h['channels']}")
    if not encoder_widths or any(not isinstance(w, int) or w < 1 for w in encoder_widths):
        raise UserError(f"multitask 'encoder_widths' must be positive integers, got {encoder_widths}")
    if len(encoder_strides) != len(encoder_widths) or any(s not in (1, 2) for s in encoder_strides):
        raise UserError(f"multitask 'encoder_strides' must give 1 or 2 for each of the {len(encoder_widths)} stages, got {encoder_strides}")
    if not isinstance(in_channels, int) or in_channels < 1 or not isinstance(image_size, int) or image_size < 1:
        raise UserError(f"multitask 'in_channels' and 'image_size' must be positive integers, got {in_channels} and {image_size}")
    if not isinstance(decoder_width, int) or decoder_width < 1:
        raise UserError(f"multitask 'decoder_width' must be a positive integer, got {decoder_width!r}")
    for field, mults in (("width_mults", width_mults), ("decoder_mults", decoder_mults)):
        if not mults or any(not 0 < m <= 1 for m in mults):
            raise UserError(f"multitask '{field}' must be fractions in (0, 1], got {list(mults)}")
