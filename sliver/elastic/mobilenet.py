"""ElasticMobileNet: an OFA-style MobileNetV3 super-network, and the plain model it extracts.

Layout (MobileNetV3, as in Once-for-All): a stem convolution, one fixed
depthwise-separable block, then stages of inverted-residual blocks, a final 1x1
expansion, global average pooling, a 1x1 "feature mix" convolution and the
classifier. Elastic per sub-network:

* ``ks`` -- depthwise kernel size of every block (list, one per block),
* ``e``  -- expand ratio of every block (list, one per block),
* ``d``  -- number of blocks run in each stage (list, one per stage; the first
  ``d`` blocks run, so ``ks``/``e`` of the others are inactive),
* ``r``  -- input resolution (scalar; ``prepare_input`` resizes a batch).

The first block of a stage changes stride and width; the others keep the shape
and add a residual. Channel widths come from the stage table times
``width_mult``, rounded to multiples of 8.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sliver.elastic.base import Supernet, build_extracted, register_builder, register_family
from sliver.elastic.layers import ElasticBatchNorm2d, ElasticConv2d, make_divisible
from sliver.errors import UserError
from sliver.space import Config, DepthGate, Dimension, SearchSpace

ACTIVATIONS = {"relu": nn.ReLU, "h_swish": nn.Hardswish}

#: constructor arguments of the named presets (see ``ElasticMobileNet.from_preset``)
PRESETS: dict[str, dict[str, Any]] = {
    # OFA MobileNetV3 (w1.0; width_mult=1.2 gives OFA's w1.2): 5 stages x 4 blocks, ImageNet
    "imagenet": dict(
        in_channels=3, num_classes=1000, stem_width=16, stem_stride=2, first_block_width=16,
        stages=[
            dict(width=24, blocks=4, stride=2, act="relu", se=False),
            dict(width=40, blocks=4, stride=2, act="relu", se=True),
            dict(width=80, blocks=4, stride=2, act="h_swish", se=False),
            dict(width=112, blocks=4, stride=1, act="h_swish", se=True),
            dict(width=160, blocks=4, stride=2, act="h_swish", se=True),
        ],
        final_expand_width=960, feature_width=1280,
        kernel_sizes=[3, 5, 7], expand_ratios=[3, 4, 6], depths=[2, 3, 4],
        resolutions=list(range(128, 225, 4)), dropout=0.1,
    ),
    # MNIST-5k (28x28x1): small enough to train in minutes on two CPU cores
    "tiny": dict(
        in_channels=1, num_classes=10, stem_width=8, stem_stride=1, first_block_width=8,
        stages=[
            dict(width=16, blocks=3, stride=2, act="relu", se=False),
            dict(width=24, blocks=3, stride=2, act="h_swish", se=True),
            dict(width=32, blocks=3, stride=2, act="h_swish", se=True),
        ],
        final_expand_width=128, feature_width=256,
        kernel_sizes=[3, 5, 7], expand_ratios=[3, 4, 6], depths=[1, 2, 3],
        resolutions=[20, 24, 28], dropout=0.0,
    ),
    # scikit-learn digits (8x8x1)
    "digits": dict(
        in_channels=1, num_classes=10, stem_width=8, stem_stride=1, first_block_width=8,
        stages=[
            dict(width=16, blocks=2, stride=1, act="relu", se=False),
            dict(width=24, blocks=2, stride=2, act="h_swish", se=True),
            dict(width=32, blocks=2, stride=2, act="h_swish", se=True),
        ],
        final_expand_width=96, feature_width=128,
        kernel_sizes=[3, 5, 7], expand_ratios=[3, 4, 6], depths=[1, 2],
        resolutions=[6, 8], dropout=0.0,
    ),
}

STAGE_KEYS = {"width", "blocks", "stride", "act", "se"}


# ---------------------------------------------------------------- plain model
class SqueezeExcite(nn.Module):
    """Squeeze-and-excite: channel gates from pooled features (ReLU, then hard sigmoid)."""

    def __init__(self, channels: int, mid: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, mid, 1, bias=True)
        self.expand = nn.Conv2d(mid, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * F.hardsigmoid(self.expand(F.relu(self.reduce(s))))


class InvertedResidual(nn.Module):
    """MobileNetV3 block: [1x1 expand, BN, act], depthwise kxk, BN, act, [SE], 1x1 project, BN, [+x]."""

    def __init__(self, arch: dict[str, Any]) -> None:
        super().__init__()
        cin, mid, cout, k = arch["in"], arch["mid"], arch["out"], arch["kernel"]
        act = ACTIVATIONS[arch["act"]]
        self.expand = None
        if arch["expand"]:
            self.expand = nn.Sequential(nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), act())
        self.depthwise = nn.Sequential(
            nn.Conv2d(mid, mid, k, arch["stride"], k // 2, groups=mid, bias=False), nn.BatchNorm2d(mid), act()
        )
        self.se = SqueezeExcite(mid, arch["se_mid"]) if arch["se_mid"] else None
        self.project = nn.Sequential(nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.residual = arch["stride"] == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x if self.expand is None else self.expand(x)
        y = self.depthwise(y)
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        return x + y if self.residual else y


class MobileNet(nn.Module):
    """A plain MobileNetV3-style network described by an ``arch_config`` dict (no elastic code)."""

    def __init__(self, arch: dict[str, Any]) -> None:
        super().__init__()
        stem = arch["stem"]
        self.stem = conv_bn_act(arch["in_channels"], stem["out"], 3, stem["stride"], stem["act"])
        self.blocks = nn.Sequential(*[InvertedResidual(b) for b in arch["blocks"]])
        last = arch["blocks"][-1]["out"]
        self.final_expand = conv_bn_act(last, arch["final_expand_width"], 1, 1, "h_swish")
        self.feature_mix = nn.Sequential(nn.Conv2d(arch["final_expand_width"], arch["feature_width"], 1, bias=False), nn.Hardswish())
        self.dropout = nn.Dropout(arch["dropout"])
        self.classifier = nn.Linear(arch["feature_width"], arch["num_classes"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.final_expand(self.blocks(self.stem(x)))
        x = self.feature_mix(x.mean((2, 3), keepdim=True))
        return self.classifier(self.dropout(torch.flatten(x, 1)))


@register_builder("mobilenet")
def build_mobilenet(arch: dict[str, Any]) -> MobileNet:
    """Rebuild the plain model of an ``arch_config`` (weights are loaded separately)."""
    return MobileNet(arch)


def conv_bn_act(cin: int, cout: int, k: int, stride: int, act: str) -> nn.Sequential:
    """Convolution (same padding, no bias), batch norm and the activation ``act``: the stem and head of a MobileNet."""
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), ACTIVATIONS[act]())


# -------------------------------------------------------------- elastic block
class ElasticInvertedResidual(nn.Module):
    """Inverted-residual block with elastic depthwise kernel and expand ratio.

    ``expand_ratios=(1,)`` gives a depthwise-separable block without the 1x1
    expansion (MobileNetV3's first block). Set the active kernel/ratio with
    :meth:`set_active`.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_sizes, expand_ratios, stride: int,
                 act: str, se: bool, kernel_transform: bool = False) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.kernel_sizes = tuple(sorted(kernel_sizes))
        self.expand_ratios = tuple(sorted(expand_ratios))
        self.act_name, self.has_se = act, se
        self.has_expand = self.expand_ratios != (1,)
        max_mid = self.mid_channels(self.expand_ratios[-1])
        if self.has_expand:
            self.expand_conv = ElasticConv2d(in_channels, max_mid, 1)
            self.expand_bn = ElasticBatchNorm2d(max_mid)
        self.dw_conv = ElasticConv2d(max_mid, max_mid, self.kernel_sizes, stride, depthwise=True,
                                     kernel_transform=kernel_transform)
        self.dw_bn = ElasticBatchNorm2d(max_mid)
        if se:
            self.se_reduce = ElasticConv2d(max_mid, self.se_channels(max_mid), 1, bias=True)
            self.se_expand = ElasticConv2d(self.se_channels(max_mid), max_mid, 1, bias=True)
        self.project_conv = ElasticConv2d(max_mid, out_channels, 1)
        self.project_bn = ElasticBatchNorm2d(out_channels)
        self.act = ACTIVATIONS[act]()
        self.residual = stride == 1 and in_channels == out_channels
        self.set_active(self.kernel_sizes[-1], self.expand_ratios[-1])

    def mid_channels(self, expand_ratio: float) -> int:
        """Expanded width for a ratio (OFA: rounded to a multiple of 8)."""
        return self.in_channels if not self.has_expand else make_divisible(round(self.in_channels * expand_ratio))

    @staticmethod
    def se_channels(mid: int) -> int:
        return make_divisible(mid // 4)

    def set_active(self, kernel: int, expand_ratio: float) -> None:
        """Select the kernel size and expand ratio that ``forward`` runs."""
        self.active_kernel, self.active_expand = kernel, expand_ratio
        mid = self.mid_channels(expand_ratio)
        self.dw_conv.active_kernel = kernel
        if self.has_expand:
            self.expand_conv.active_out = mid
        if self.has_se:
            self.se_reduce.active_out = self.se_channels(mid)
            self.se_expand.active_out = mid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.expand_bn(self.expand_conv(x))) if self.has_expand else x
        y = self.act(self.dw_bn(self.dw_conv(y)))
        if self.has_se:
            s = y.mean((2, 3), keepdim=True)
            y = y * F.hardsigmoid(self.se_expand(F.relu(self.se_reduce(s))))
        y = self.project_bn(self.project_conv(y))
        return x + y if self.residual else y

    def arch(self) -> dict[str, Any]:
        """Description of the active block for :class:`InvertedResidual`."""
        mid = self.mid_channels(self.active_expand)
        return {
            "in": self.in_channels, "mid": mid, "out": self.out_channels, "kernel": self.active_kernel,
            "stride": self.stride, "act": self.act_name, "expand": self.has_expand,
            "se_mid": self.se_channels(mid) if self.has_se else 0,
        }

    def extract(self) -> InvertedResidual:
        """The active block as a plain :class:`InvertedResidual` with copied weights."""
        arch = self.arch()
        mid, cin = arch["mid"], self.in_channels
        parts: dict[str, nn.Module] = {
            "depthwise.0": self.dw_conv.to_plain(mid), "depthwise.1": self.dw_bn.to_plain(mid),
            "project.0": self.project_conv.to_plain(mid), "project.1": self.project_bn.to_plain(self.out_channels),
        }
        if self.has_expand:
            parts["expand.0"] = self.expand_conv.to_plain(cin)
            parts["expand.1"] = self.expand_bn.to_plain(mid)
        if self.has_se:
            parts["se.reduce"] = self.se_reduce.to_plain(mid)
            parts["se.expand"] = self.se_expand.to_plain(arch["se_mid"])
        block = InvertedResidual(arch)
        block.load_state_dict({f"{name}.{k}": v for name, m in parts.items() for k, v in m.state_dict().items()})
        return block

    @torch.no_grad()
    def reorder_channels(self) -> None:
        """Sort expanded channels (and SE channels) by importance, largest first (OFA).

        Importance is the L1 norm of the weights that read a channel. The whole
        block is permuted consistently, so the largest sub-network computes the
        same function; smaller expand ratios then keep the most important channels.
        """
        if self.has_se:
            order = self.se_expand.weight.abs().sum((0, 2, 3)).argsort(descending=True)
            self.se_expand.weight.copy_(self.se_expand.weight[:, order])
            self.se_reduce.weight.copy_(self.se_reduce.weight[order])
            self.se_reduce.bias.copy_(self.se_reduce.bias[order])
        if not self.has_expand:
            return
        order = self.project_conv.weight.abs().sum((0, 2, 3)).argsort(descending=True)
        self.project_conv.weight.copy_(self.project_conv.weight[:, order])
        for conv in (self.dw_conv, self.expand_conv):
            conv.weight.copy_(conv.weight[order])
        for bn in (self.dw_bn, self.expand_bn):
            for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
                t.copy_(t[order])
        if self.has_se:
            self.se_reduce.weight.copy_(self.se_reduce.weight[:, order])
            self.se_expand.weight.copy_(self.se_expand.weight[order])
            self.se_expand.bias.copy_(self.se_expand.bias[order])


# ---------------------------------------------------------------- supernet
@register_family("mobilenet")
class ElasticMobileNet(Supernet):
    """OFA-style MobileNetV3 super-network with elastic kernel, expand ratio, depth and resolution.

    Every argument is JSON-able (``supernet_config`` returns them). ``stages``
    is a list of ``{width, blocks, stride, act ("relu"|"h_swish"), se}``; widths
    are multiplied by ``width_mult`` and rounded to multiples of 8. ``depths``
    are the choices of blocks per stage (at most the smallest stage's
    ``blocks``). ``kernel_transform`` adds OFA's learnable kernel-transformation
    matrices to the depthwise convolutions.
    """

    def __init__(
        self,
        stages: list[dict[str, Any]],
        in_channels: int = 3,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        stem_width: int = 16,
        stem_stride: int = 2,
        first_block_width: int = 16,
        final_expand_width: int = 960,
        feature_width: int = 1280,
        kernel_sizes: list[int] = (3, 5, 7),
        expand_ratios: list[float] = (3, 4, 6),
        depths: list[int] = (2, 3, 4),
        resolutions: list[int] = (224,),
        dropout: float = 0.0,
        kernel_transform: bool = False,
    ) -> None:
        super().__init__()
        stages = [dict(s) for s in stages]
        _check_args(stages, kernel_sizes, expand_ratios, depths, resolutions, width_mult)
        self._args = dict(
            stages=stages, in_channels=in_channels, num_classes=num_classes, width_mult=width_mult,
            stem_width=stem_width, stem_stride=stem_stride, first_block_width=first_block_width,
            final_expand_width=final_expand_width, feature_width=feature_width,
            kernel_sizes=sorted(kernel_sizes), expand_ratios=sorted(expand_ratios), depths=sorted(depths),
            resolutions=sorted(resolutions), dropout=dropout, kernel_transform=kernel_transform,
        )
        self.in_channels, self.num_classes = in_channels, num_classes
        width = lambda c: make_divisible(c * width_mult)  # noqa: E731 - one rule for every width
        self.stem_arch = {"out": width(stem_width), "stride": stem_stride, "act": "h_swish"}
        self.stem = conv_bn_act(in_channels, self.stem_arch["out"], 3, stem_stride, "h_swish")
        # the first block is fixed: depthwise-separable, with the first stage's activation and SE
        self.first_block = ElasticInvertedResidual(
            self.stem_arch["out"], width(first_block_width), (3,), (1,), 1, stages[0]["act"], False)
        self.stages = nn.ModuleList()
        cin = width(first_block_width)
        for s in stages:
            cout, blocks = width(s["width"]), nn.ModuleList()
            for j in range(s["blocks"]):
                blocks.append(ElasticInvertedResidual(
                    cin, cout, kernel_sizes, expand_ratios, s["stride"] if j == 0 else 1, s["act"], s["se"], kernel_transform))
                cin = cout
            self.stages.append(blocks)
        self.final_expand_width, self.feature_width = width(final_expand_width), width(feature_width)
        self.final_expand = conv_bn_act(cin, self.final_expand_width, 1, 1, "h_swish")
        self.feature_mix = nn.Sequential(nn.Conv2d(self.final_expand_width, self.feature_width, 1, bias=False), nn.Hardswish())
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.feature_width, num_classes)

        n_blocks = [s["blocks"] for s in stages]
        self.space = SearchSpace(
            [
                Dimension("ks", tuple(sorted(kernel_sizes)), sum(n_blocks)),
                Dimension("e", tuple(sorted(expand_ratios)), sum(n_blocks)),
                Dimension("d", tuple(sorted(depths)), len(stages)),
                Dimension("r", tuple(sorted(resolutions))),
            ],
            [DepthGate("d", tuple(n_blocks), ("ks", "e"))],
        )
        self.activate(self.max_config())

    # --- construction -------------------------------------------------------
    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "ElasticMobileNet":
        """Build a named preset (``imagenet``, ``tiny``, ``digits``), with constructor arguments overridden."""
        if name not in PRESETS:
            raise UserError(f"mobilenet 'preset' must be one of {sorted(PRESETS)}, got {name!r}")
        args = copy.deepcopy(PRESETS[name])
        args.update(overrides)
        return cls(**args)

    def supernet_config(self) -> dict[str, Any]:
        return {"family": "mobilenet", **copy.deepcopy(self._args)}

    # --- sub-network selection ----------------------------------------------
    def _set_active(self, config: Config) -> None:
        i = 0
        for blocks in self.stages:
            for block in blocks:
                block.set_active(config["ks"][i], config["e"][i])
                i += 1
        self._depths = list(config["d"])

    def _active_blocks(self) -> list[ElasticInvertedResidual]:
        self.active_config  # noqa: B018 - makes sure a config is active
        return [self.first_block] + [b for blocks, d in zip(self.stages, self._depths) for b in blocks[:d]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the active sub-network on a batch already at its resolution (see ``prepare_input``)."""
        x = self.stem(x)
        for block in self._active_blocks():  # dropped blocks cost nothing
            x = block(x)
        x = self.final_expand(x)
        x = self.feature_mix(x.mean((2, 3), keepdim=True))
        return self.classifier(self.dropout(torch.flatten(x, 1)))

    # --- inputs ---------------------------------------------------------------
    def input_shape(self, config: Config, batch_size: int = 1) -> tuple[int, ...]:
        r = self.space.validate(config)["r"]
        return (batch_size, self.in_channels, r, r)

    def prepare_input(self, x: torch.Tensor, config: Config) -> torch.Tensor:
        """Resize a batch to the config's resolution (bilinear, ``align_corners=False``)."""
        r = config["r"]
        if tuple(x.shape[-2:]) == (r, r):
            return x
        return F.interpolate(x, size=(r, r), mode="bilinear", align_corners=False)

    # --- cutting out ------------------------------------------------------------
    def arch_config(self, config: Config) -> dict[str, Any]:
        """JSON description (``kind: mobilenet``) of the sub-network, rebuilt by :func:`build_extracted`."""
        config = self.space.validate(config)
        saved = self._active
        self.activate(config)
        try:
            blocks = [b.arch() for b in self._active_blocks()]
        finally:
            if saved is not None:
                self.activate(saved)
        return {
            "kind": "mobilenet", "in_channels": self.in_channels, "num_classes": self.num_classes,
            "resolution": config["r"], "stem": dict(self.stem_arch), "blocks": blocks,
            "final_expand_width": self.final_expand_width, "feature_width": self.feature_width,
            "dropout": self._args["dropout"],
        }

    def extract(self, config: Config) -> MobileNet:
        """The sub-network as a plain :class:`MobileNet` with copied weights, in eval mode.

        It takes inputs already at the config's resolution and sits on the super-network's device.
        """
        config = self.space.validate(config)
        arch = self.arch_config(config)
        saved = self._active
        self.activate(config)
        try:
            state = {}
            for name in ("stem", "final_expand", "feature_mix", "classifier"):
                state.update({f"{name}.{k}": v.detach().clone() for k, v in getattr(self, name).state_dict().items()})
            for i, block in enumerate(self._active_blocks()):
                state.update({f"blocks.{i}.{k}": v for k, v in block.extract().state_dict().items()})
        finally:
            self.activate(saved)
        model = build_extracted(arch)
        model.load_state_dict(state)
        # the copy lives where the super-network lives (e.g. on the GPU it trains on)
        return model.to(self.classifier.weight.device).eval()

    def costs(self, config: Config) -> dict[str, int]:
        """Parameters and MACs of ``config`` (see :func:`mobilenet_costs`)."""
        return mobilenet_costs(self.arch_config(config))

    # --- training helpers -------------------------------------------------------
    @torch.no_grad()
    def reorder_channels(self) -> None:
        """Sort every block's expanded channels by importance (OFA), leaving the largest network's function unchanged."""
        for blocks in self.stages:
            for block in blocks:
                block.reorder_channels()


def mobilenet_costs(arch: dict[str, Any]) -> dict[str, int]:
    """Analytic parameters and MACs of a plain MobileNet ``arch_config``, batch 1.

    ``params`` counts every parameter of the extracted model (conv and linear
    weights and biases, batch-norm scale and shift; not the BN running stats).
    ``macs`` counts the multiply-accumulates of convolutions (including the
    squeeze-excite 1x1 convolutions on the pooled 1x1 map) and of the
    classifier; it leaves out batch norm, activations, pooling, the SE and
    residual element-wise operations and bias additions.
    """
    params = macs = 0
    size = arch["resolution"]

    def conv(cin: int, cout: int, k: int, stride: int, groups: int = 1, bias: bool = False, bn: bool = True) -> None:
        nonlocal params, macs, size
        size = (size - 1) // stride + 1  # padding k // 2 with odd k
        weights = cout * (cin // groups) * k * k
        params += weights + (cout if bias else 0) + (2 * cout if bn else 0)
        macs += weights * size * size

    conv(arch["in_channels"], arch["stem"]["out"], 3, arch["stem"]["stride"])
    for b in arch["blocks"]:
        if b["expand"]:
            conv(b["in"], b["mid"], 1, 1)
        conv(b["mid"], b["mid"], b["kernel"], b["stride"], groups=b["mid"])
        if b["se_mid"]:
            se = 2 * b["mid"] * b["se_mid"]  # reduce and expand 1x1 convs on a 1x1 map
            params += se + b["se_mid"] + b["mid"]
            macs += se
        conv(b["mid"], b["out"], 1, 1)
    conv(arch["blocks"][-1]["out"], arch["final_expand_width"], 1, 1)
    size = 1  # global average pooling
    conv(arch["final_expand_width"], arch["feature_width"], 1, 1, bn=False)
    params += arch["feature_width"] * arch["num_classes"] + arch["num_classes"]
    macs += arch["feature_width"] * arch["num_classes"]
    return {"params": int(params), "macs": int(macs)}


def _check_args(stages, kernel_sizes, expand_ratios, depths, resolutions, width_mult) -> None:
    if not stages:
        raise UserError("mobilenet 'stages' must list at least one stage")
    for i, s in enumerate(stages):
        missing, unknown = STAGE_KEYS - set(s), set(s) - STAGE_KEYS
        if missing or unknown:
            raise UserError(f"mobilenet 'stages[{i}]' needs exactly the keys {sorted(STAGE_KEYS)}; "
                             f"missing {sorted(missing)}, unknown {sorted(unknown)}")
        if s["act"] not in ACTIVATIONS:
            raise UserError(f"mobilenet 'stages[{i}].act' must be one of {sorted(ACTIVATIONS)}, got {s['act']!r}")
        if s["blocks"] < max(depths):
            raise UserError(f"mobilenet 'stages[{i}].blocks' = {s['blocks']} is smaller than the largest depth {max(depths)}")
    if any(d < 1 for d in depths):
        raise UserError(f"mobilenet 'depths' must be positive, got {list(depths)}")
    if any(e <= 0 for e in expand_ratios):
        raise UserError(f"mobilenet 'expand_ratios' must be positive, got {list(expand_ratios)}")
    if any(r < 1 for r in resolutions):
        raise UserError(f"mobilenet 'resolutions' must be positive, got {list(resolutions)}")
    if width_mult <= 0:
        raise UserError(f"mobilenet 'width_mult' must be positive, got {width_mult}")
    if any(not isinstance(k, int) or k % 2 == 0 for k in kernel_sizes):
        raise UserError(f"mobilenet 'kernel_sizes' must be odd integers, got {list(kernel_sizes)}")
