"""Plain-PyTorch "bring your own model" CNNs for tests of the automatic elastic converter.

These mirror torchvision's module layouts: the same attribute names, the same nesting
(``layer1.0.downsample.0``, ``features.0.0``, ``features.denseblock1.denselayer1.conv1``, ...)
and the same forward code, so state-dict keys and parameter counts match torchvision's and the
torch.fx graphs look like the ones a user's torchvision model would give. Tests therefore never
need torchvision (which must not be imported or installed here).

Written from torchvision's published design, not copied. Differences, all deliberate:

* Initialisation is torch's default (no kaiming / normal re-initialisation), so seeding torch
  is the only thing needed for determinism.
* Constructors take size knobs (``width``, ``in_channels``, setting tables, ...) so tests can
  build tiny, fast versions; the defaults give the real architectures.
* DenseNet's ``_DenseLayer`` has no memory-efficient checkpointing branch (that branch asks
  tensors for ``requires_grad``, which torch.fx cannot trace); its forward is a plain
  ``torch.cat`` over a python list, as torchvision's non-checkpointed path is.

Every model here traces with ``torch.fx.symbolic_trace`` and the traced module gives the same
output as eager mode. The ``tiny_*`` factories (and ``resnext_tiny``) run a forward on a
(2, 3, 32, 32) input (or (2, 1, 28, 28) with ``in_channels=1``) in a few milliseconds.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, List, Optional, Sequence, Type, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "resnet18",
    "resnet50",
    "resnext_tiny",
    "tiny_resnet18",
    "tiny_resnet50",
    "Conv2dNormActivation",
    "ConvBNActivation",
    "ConvBNReLU",
    "InvertedResidual",
    "MobileNetV2",
    "mobilenet_v2",
    "tiny_mobilenet_v2",
    "SqueezeExcitation",
    "SEBasicBlock",
    "tiny_se_resnet",
    "DenseNet",
    "densenet121",
    "tiny_densenet",
    "BasicConv2d",
    "Inception",
    "TinyInception",
    "tiny_inception",
    "FACTORIES",
    "TINY_FACTORIES",
]


# --------------------------------------------------------------------------------------------
# ResNet / ResNeXt (torchvision.models.resnet layout)
# --------------------------------------------------------------------------------------------


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1, dilation: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding, no bias (followed by BatchNorm)."""
    return nn.Conv2d(
        in_planes,
        out_planes,
        kernel_size=3,
        stride=stride,
        padding=dilation,
        groups=groups,
        bias=False,
        dilation=dilation,
    )


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution, no bias."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or projected) shortcut; ResNet-18/34 block."""

    expansion: int = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: Optional[nn.Module] = None,
        groups: int = 1,
        base_width: int = 64,
        dilation: int = 1,
        norm_layer: Optional[Callable[..., nn.Module]] = None,
    ) -> None:
        super().__init__()
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock only supports groups=1 and base_width=64")
        if dilation > 1:
            raise NotImplementedError("Dilation > 1 not supported in BasicBlock")
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x

        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)

        out = self.conv2(out)
        out = self.bn2(out)

        if self.downsample is not None:
            identity = self.downsample(x)

        out += identity
        out = self.relu(out)

        return out


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (stride, groups) -> 1x1 expand (x4); ResNet-50+/ResNeXt block.

    The stride sits on the 3x3 convolution (ResNet V1.5), as in torchvision.
    """

    expansion: int = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: Optional[nn.Module] = None,
        groups: int = 1,
        base_width: int = 64,
        dilation: int = 1,
        norm_layer: Optional[Callable[..., nn.Module]] = None,
    ) -> None:
        super().__init__()
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = norm_layer(width)
        self.conv2 = conv3x3(width, width, stride, groups, dilation)
        self.bn2 = norm_layer(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x

        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)

        out = self.conv2(out)
        out = self.bn2(out)
        out = self.relu(out)

        out = self.conv3(out)
        out = self.bn3(out)

        if self.downsample is not None:
            identity = self.downsample(x)

        out += identity
        out = self.relu(out)

        return out


class ResNet(nn.Module):
    """torchvision's ResNet: conv1 7x7/2, bn1, relu, maxpool, layer1..layer4, avgpool, fc.

    ``width`` is the number of planes of layer1 (64 in torchvision); layer2..4 use 2x, 4x, 8x.
    ``groups`` / ``width_per_group`` give ResNeXt exactly as torchvision's arguments do.
    """

    def __init__(
        self,
        block: Type[Union[BasicBlock, Bottleneck]],
        layers: Sequence[int],
        num_classes: int = 1000,
        in_channels: int = 3,
        width: int = 64,
        groups: int = 1,
        width_per_group: int = 64,
        norm_layer: Optional[Callable[..., nn.Module]] = None,
    ) -> None:
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"layers should have 4 entries, got {list(layers)}")
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        self._norm_layer = norm_layer

        self.inplanes = width
        self.dilation = 1
        self.groups = groups
        self.base_width = width_per_group
        self.conv1 = nn.Conv2d(in_channels, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(block, width * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width * 8 * block.expansion, num_classes)

    def _make_layer(
        self,
        block: Type[Union[BasicBlock, Bottleneck]],
        planes: int,
        blocks: int,
        stride: int = 1,
    ) -> nn.Sequential:
        norm_layer = self._norm_layer
        downsample = None
        previous_dilation = self.dilation
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                norm_layer(planes * block.expansion),
            )

        layers: List[nn.Module] = []
        layers.append(
            block(self.inplanes, planes, stride, downsample, self.groups, self.base_width, previous_dilation, norm_layer)
        )
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(
                block(
                    self.inplanes,
                    planes,
                    groups=self.groups,
                    base_width=self.base_width,
                    dilation=self.dilation,
                    norm_layer=norm_layer,
                )
            )

        return nn.Sequential(*layers)

    def _forward_impl(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)

        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)

        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.fc(x)

        return x

    def forward(self, x: Tensor) -> Tensor:
        return self._forward_impl(x)


def resnet18(num_classes: int = 1000, width: int = 64, in_channels: int = 3) -> ResNet:
    """ResNet-18 (11,689,512 parameters at the defaults, as torchvision's)."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes=num_classes, in_channels=in_channels, width=width)


def resnet50(num_classes: int = 1000, width: int = 64, in_channels: int = 3) -> ResNet:
    """ResNet-50 (25,557,032 parameters at the defaults, as torchvision's)."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes=num_classes, in_channels=in_channels, width=width)


def resnext_tiny(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    """A tiny ResNeXt: Bottleneck blocks, one per stage, cardinality 4.

    width 8, width_per_group 32: the grouped 3x3 convolutions have 16/32/64/128 channels in 4
    groups (4..32 channels a group: grouped, not depthwise), and their width differs from the
    stage's ``planes`` (8/16/32/64), which exercises torchvision's ``base_width`` arithmetic.
    """
    return ResNet(
        Bottleneck,
        [1, 1, 1, 1],
        num_classes=num_classes,
        in_channels=in_channels,
        width=8,
        groups=4,
        width_per_group=32,
    )


def tiny_resnet18(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    """ResNet-18 depth at width 8 (layer1..4: 8/16/32/64 channels); fine on 32x32 inputs."""
    return resnet18(num_classes=num_classes, width=8, in_channels=in_channels)


def tiny_resnet50(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    """ResNet-50 depth at width 8 (block outputs 32/64/128/256 channels); fine on 32x32 inputs."""
    return resnet50(num_classes=num_classes, width=8, in_channels=in_channels)


# --------------------------------------------------------------------------------------------
# MobileNetV2 (torchvision.models.mobilenetv2 layout)
# --------------------------------------------------------------------------------------------


def _make_divisible(v: float, divisor: int, min_value: Optional[int] = None) -> int:
    """Round ``v`` to a multiple of ``divisor``, never going more than 10% below ``v``."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class Conv2dNormActivation(nn.Sequential):
    """Sequential(Conv2d, BatchNorm2d, activation): children ``0``, ``1``, ``2`` as torchvision's.

    The convolution has no bias when a norm layer follows; padding keeps the size ("same").
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: Optional[int] = None,
        groups: int = 1,
        norm_layer: Optional[Callable[..., nn.Module]] = nn.BatchNorm2d,
        activation_layer: Optional[Callable[..., nn.Module]] = nn.ReLU,
        dilation: int = 1,
        inplace: Optional[bool] = True,
        bias: Optional[bool] = None,
    ) -> None:
        if padding is None:
            padding = (kernel_size - 1) // 2 * dilation
        if bias is None:
            bias = norm_layer is None
        layers: List[nn.Module] = [
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride,
                padding,
                dilation=dilation,
                groups=groups,
                bias=bias,
            )
        ]
        if norm_layer is not None:
            layers.append(norm_layer(out_channels))
        if activation_layer is not None:
            params = {} if inplace is None else {"inplace": inplace}
            layers.append(activation_layer(**params))
        super().__init__(*layers)
        self.out_channels = out_channels


# Older torchvision names for the same thing.
ConvBNActivation = Conv2dNormActivation


class ConvBNReLU(Conv2dNormActivation):
    """Conv2dNormActivation with ReLU6 (the old torchvision MobileNetV2 helper name)."""

    def __init__(
        self, in_planes: int, out_planes: int, kernel_size: int = 3, stride: int = 1, groups: int = 1
    ) -> None:
        super().__init__(
            in_planes, out_planes, kernel_size, stride, groups=groups, activation_layer=nn.ReLU6
        )


class InvertedResidual(nn.Module):
    """MobileNetV2 block: [1x1 expand] -> 3x3 depthwise -> 1x1 linear projection (+ residual)."""

    def __init__(
        self,
        inp: int,
        oup: int,
        stride: int,
        expand_ratio: int,
        norm_layer: Optional[Callable[..., nn.Module]] = None,
    ) -> None:
        super().__init__()
        self.stride = stride
        if stride not in (1, 2):
            raise ValueError(f"stride should be 1 or 2 instead of {stride}")
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d

        hidden_dim = int(round(inp * expand_ratio))
        self.use_res_connect = self.stride == 1 and inp == oup

        layers: List[nn.Module] = []
        if expand_ratio != 1:
            # pointwise expansion
            layers.append(
                Conv2dNormActivation(inp, hidden_dim, kernel_size=1, norm_layer=norm_layer, activation_layer=nn.ReLU6)
            )
        layers.extend(
            [
                # depthwise
                Conv2dNormActivation(
                    hidden_dim,
                    hidden_dim,
                    stride=stride,
                    groups=hidden_dim,
                    norm_layer=norm_layer,
                    activation_layer=nn.ReLU6,
                ),
                # pointwise-linear
                nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False),
                norm_layer(oup),
            ]
        )
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup
        self._is_cn = stride > 1

    def forward(self, x: Tensor) -> Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        else:
            return self.conv(x)


_MOBILENET_V2_SETTING: List[List[int]] = [
    # t (expansion), c (channels), n (repeats), s (first stride)
    [1, 16, 1, 1],
    [6, 24, 2, 2],
    [6, 32, 3, 2],
    [6, 64, 4, 2],
    [6, 96, 3, 1],
    [6, 160, 3, 2],
    [6, 320, 1, 1],
]


class MobileNetV2(nn.Module):
    """torchvision's MobileNetV2: ``features`` (stem, inverted residuals, 1x1 to last_channel),
    then adaptive average pool, flatten, ``classifier = Sequential(Dropout, Linear)``.

    Extra knobs beyond torchvision's: ``in_channels`` and ``last_channel``.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        inverted_residual_setting: Optional[List[List[int]]] = None,
        round_nearest: int = 8,
        block: Optional[Callable[..., nn.Module]] = None,
        norm_layer: Optional[Callable[..., nn.Module]] = None,
        dropout: float = 0.2,
        in_channels: int = 3,
        input_channel: int = 32,
        last_channel: int = 1280,
    ) -> None:
        super().__init__()
        if block is None:
            block = InvertedResidual
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        if inverted_residual_setting is None:
            inverted_residual_setting = _MOBILENET_V2_SETTING
        if len(inverted_residual_setting) == 0 or any(len(row) != 4 for row in inverted_residual_setting):
            raise ValueError(
                f"inverted_residual_setting should be a non-empty list of 4-element lists, "
                f"got {inverted_residual_setting}"
            )

        input_channel = _make_divisible(input_channel * width_mult, round_nearest)
        self.last_channel = _make_divisible(last_channel * max(1.0, width_mult), round_nearest)
        features: List[nn.Module] = [
            Conv2dNormActivation(in_channels, input_channel, stride=2, norm_layer=norm_layer, activation_layer=nn.ReLU6)
        ]
        for t, c, n, s in inverted_residual_setting:
            output_channel = _make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                stride = s if i == 0 else 1
                features.append(block(input_channel, output_channel, stride, expand_ratio=t, norm_layer=norm_layer))
                input_channel = output_channel
        features.append(
            Conv2dNormActivation(
                input_channel, self.last_channel, kernel_size=1, norm_layer=norm_layer, activation_layer=nn.ReLU6
            )
        )
        self.features = nn.Sequential(*features)

        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(self.last_channel, num_classes),
        )

    def _forward_impl(self, x: Tensor) -> Tensor:
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, (1, 1))
        x = torch.flatten(x, 1)
        x = self.classifier(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        return self._forward_impl(x)


def mobilenet_v2(num_classes: int = 1000, width_mult: float = 1.0, in_channels: int = 3) -> MobileNetV2:
    """MobileNetV2 (3,504,872 parameters at the defaults, as torchvision's)."""
    return MobileNetV2(num_classes=num_classes, width_mult=width_mult, in_channels=in_channels)


_TINY_MOBILENET_V2_SETTING: List[List[int]] = [
    # t, c, n, s -- has an unexpanded block (t=1), residual blocks (n=2) and three stride-2 stages
    [1, 16, 1, 1],
    [6, 24, 2, 2],
    [6, 32, 2, 2],
    [6, 64, 1, 2],
]


def tiny_mobilenet_v2(num_classes: int = 10, in_channels: int = 3) -> MobileNetV2:
    """A small MobileNetV2: width 0.5 on a 4-row setting table, last_channel 128.

    Stem 16 channels; blocks 8, 16, 16, 16, 16, 32 channels; total stride 16 (32x32 -> 2x2).
    """
    return MobileNetV2(
        num_classes=num_classes,
        width_mult=0.5,
        inverted_residual_setting=_TINY_MOBILENET_V2_SETTING,
        in_channels=in_channels,
        last_channel=128,
    )


# --------------------------------------------------------------------------------------------
# Squeeze-and-excitation ResNet (torchvision.ops.SqueezeExcitation naming)
# --------------------------------------------------------------------------------------------


class SqueezeExcitation(nn.Module):
    """torchvision.ops.SqueezeExcitation: avgpool -> fc1 (1x1) -> activation -> fc2 (1x1) ->
    scale_activation, and the result multiplies the input channel-wise."""

    def __init__(
        self,
        input_channels: int,
        squeeze_channels: int,
        activation: Callable[..., nn.Module] = nn.ReLU,
        scale_activation: Callable[..., nn.Module] = nn.Sigmoid,
    ) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(input_channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, input_channels, 1)
        self.activation = activation()
        self.scale_activation = scale_activation()

    def _scale(self, input: Tensor) -> Tensor:
        scale = self.avgpool(input)
        scale = self.fc1(scale)
        scale = self.activation(scale)
        scale = self.fc2(scale)
        return self.scale_activation(scale)

    def forward(self, input: Tensor) -> Tensor:
        scale = self._scale(input)
        return scale * input


class SEBasicBlock(BasicBlock):
    """BasicBlock with a SqueezeExcitation gate (``se``) on the residual branch before the add."""

    reduction: int = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: Optional[nn.Module] = None,
        groups: int = 1,
        base_width: int = 64,
        dilation: int = 1,
        norm_layer: Optional[Callable[..., nn.Module]] = None,
    ) -> None:
        super().__init__(inplanes, planes, stride, downsample, groups, base_width, dilation, norm_layer)
        self.se = SqueezeExcitation(planes, max(1, planes // self.reduction))

    def forward(self, x: Tensor) -> Tensor:
        identity = x

        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)

        out = self.conv2(out)
        out = self.bn2(out)
        out = self.se(out)

        if self.downsample is not None:
            identity = self.downsample(x)

        out += identity
        out = self.relu(out)

        return out


def tiny_se_resnet(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    """SE-ResNet: ResNet layout with SEBasicBlock, two blocks a stage, width 8 (reduction 4)."""
    return ResNet(SEBasicBlock, [2, 2, 2, 2], num_classes=num_classes, in_channels=in_channels, width=8)


# --------------------------------------------------------------------------------------------
# DenseNet (torchvision.models.densenet layout)
# --------------------------------------------------------------------------------------------


class _DenseLayer(nn.Module):
    """BN-ReLU-Conv1x1 (bn_size * growth) -> BN-ReLU-Conv3x3 (growth) on the concatenation of all
    earlier feature maps of the block. Takes a python list of tensors (or a single tensor)."""

    def __init__(
        self,
        num_input_features: int,
        growth_rate: int,
        bn_size: int,
        drop_rate: float,
        memory_efficient: bool = False,
    ) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(num_input_features)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(num_input_features, bn_size * growth_rate, kernel_size=1, stride=1, bias=False)

        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, kernel_size=3, stride=1, padding=1, bias=False)

        self.drop_rate = float(drop_rate)
        # Kept for attribute parity; checkpointing is not implemented (not fx-traceable).
        self.memory_efficient = memory_efficient

    def bn_function(self, inputs: List[Tensor]) -> Tensor:
        concated_features = torch.cat(inputs, 1)
        bottleneck_output = self.conv1(self.relu1(self.norm1(concated_features)))
        return bottleneck_output

    def forward(self, input: Union[Tensor, List[Tensor]]) -> Tensor:
        # A python-level check on the container type only: traceable (a Proxy is never a list).
        if isinstance(input, (list, tuple)):
            prev_features = list(input)
        else:
            prev_features = [input]

        bottleneck_output = self.bn_function(prev_features)
        new_features = self.conv2(self.relu2(self.norm2(bottleneck_output)))
        if self.drop_rate > 0:
            new_features = F.dropout(new_features, p=self.drop_rate, training=self.training)
        return new_features


class _DenseBlock(nn.ModuleDict):
    """``denselayer1..N``; each layer sees the concatenation of the block input and all earlier
    layers' outputs; the block returns the concatenation of all of them."""

    _version = 2

    def __init__(
        self,
        num_layers: int,
        num_input_features: int,
        bn_size: int,
        growth_rate: int,
        drop_rate: float,
        memory_efficient: bool = False,
    ) -> None:
        super().__init__()
        for i in range(num_layers):
            layer = _DenseLayer(
                num_input_features + i * growth_rate,
                growth_rate=growth_rate,
                bn_size=bn_size,
                drop_rate=drop_rate,
                memory_efficient=memory_efficient,
            )
            self.add_module("denselayer%d" % (i + 1), layer)

    def forward(self, init_features: Tensor) -> Tensor:
        features = [init_features]
        for layer in self.values():
            new_features = layer(features)
            features.append(new_features)
        return torch.cat(features, 1)


class _Transition(nn.Sequential):
    """BN-ReLU-Conv1x1 (halve channels) -> AvgPool 2x2."""

    def __init__(self, num_input_features: int, num_output_features: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(num_input_features)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(num_input_features, num_output_features, kernel_size=1, stride=1, bias=False)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)


class DenseNet(nn.Module):
    """torchvision's DenseNet-BC: ``features`` (conv0, norm0, relu0, pool0, denseblockN,
    transitionN, ..., norm5), then relu, adaptive average pool, flatten, ``classifier`` Linear."""

    def __init__(
        self,
        growth_rate: int = 32,
        block_config: Sequence[int] = (6, 12, 24, 16),
        num_init_features: int = 64,
        bn_size: int = 4,
        drop_rate: float = 0,
        num_classes: int = 1000,
        memory_efficient: bool = False,
        in_channels: int = 3,
    ) -> None:
        super().__init__()

        # First convolution
        self.features = nn.Sequential(
            OrderedDict(
                [
                    ("conv0", nn.Conv2d(in_channels, num_init_features, kernel_size=7, stride=2, padding=3, bias=False)),
                    ("norm0", nn.BatchNorm2d(num_init_features)),
                    ("relu0", nn.ReLU(inplace=True)),
                    ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
                ]
            )
        )

        # Each denseblock
        num_features = num_init_features
        for i, num_layers in enumerate(block_config):
            block = _DenseBlock(
                num_layers=num_layers,
                num_input_features=num_features,
                bn_size=bn_size,
                growth_rate=growth_rate,
                drop_rate=drop_rate,
                memory_efficient=memory_efficient,
            )
            self.features.add_module("denseblock%d" % (i + 1), block)
            num_features = num_features + num_layers * growth_rate
            if i != len(block_config) - 1:
                trans = _Transition(num_input_features=num_features, num_output_features=num_features // 2)
                self.features.add_module("transition%d" % (i + 1), trans)
                num_features = num_features // 2

        # Final batch norm
        self.features.add_module("norm5", nn.BatchNorm2d(num_features))

        # Linear layer
        self.classifier = nn.Linear(num_features, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        features = self.features(x)
        out = F.relu(features, inplace=True)
        out = F.adaptive_avg_pool2d(out, (1, 1))
        out = torch.flatten(out, 1)
        out = self.classifier(out)
        return out


def densenet121(num_classes: int = 1000, in_channels: int = 3) -> DenseNet:
    """DenseNet-121 (7,978,856 parameters at the defaults, as torchvision's)."""
    return DenseNet(32, (6, 12, 24, 16), 64, num_classes=num_classes, in_channels=in_channels)


def tiny_densenet(num_classes: int = 10, in_channels: int = 3) -> DenseNet:
    """Growth 4, two dense blocks of 3 and 2 layers, 8 initial features, bn_size 2.

    Channels: 8 -> denseblock1 -> 20 -> transition1 -> 10 -> denseblock2 -> 18.
    """
    return DenseNet(
        growth_rate=4,
        block_config=(3, 2),
        num_init_features=8,
        bn_size=2,
        num_classes=num_classes,
        in_channels=in_channels,
    )


# --------------------------------------------------------------------------------------------
# Inception-style branches + concatenation (torchvision.models.googlenet naming)
# --------------------------------------------------------------------------------------------


class BasicConv2d(nn.Module):
    """GoogLeNet's conv unit: ``conv`` (no bias) -> ``bn`` (eps 1e-3) -> functional relu."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        x = self.bn(x)
        return F.relu(x, inplace=True)


class Inception(nn.Module):
    """A three-branch inception module, concatenated along channels:

    ``branch1`` 1x1; ``branch2`` 1x1 -> 3x3; ``branch3`` 3x3 max pool (stride 1) -> 1x1.
    (GoogLeNet's module has a fourth branch; the naming and forward pattern are the same.)
    """

    def __init__(self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, pool_proj: int) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            BasicConv2d(in_channels, ch3x3red, kernel_size=1),
            BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1),
        )
        self.branch3 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            BasicConv2d(in_channels, pool_proj, kernel_size=1),
        )

    def _forward(self, x: Tensor) -> List[Tensor]:
        branch1 = self.branch1(x)
        branch2 = self.branch2(x)
        branch3 = self.branch3(x)
        return [branch1, branch2, branch3]

    def forward(self, x: Tensor) -> Tensor:
        outputs = self._forward(x)
        return torch.cat(outputs, 1)


class TinyInception(nn.Module):
    """Stem ``conv1`` (3x3/2) -> ``maxpool1`` -> ``inception3a`` -> ``avgpool`` -> flatten ->
    ``dropout`` -> ``fc`` (GoogLeNet's attribute names)."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        stem_channels: int = 16,
        ch1x1: int = 8,
        ch3x3red: int = 8,
        ch3x3: int = 16,
        pool_proj: int = 8,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.conv1 = BasicConv2d(in_channels, stem_channels, kernel_size=3, stride=2, padding=1)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception3a = Inception(stem_channels, ch1x1, ch3x3red, ch3x3, pool_proj)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(ch1x1 + ch3x3 + pool_proj, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        x = self.maxpool1(x)
        x = self.inception3a(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.dropout(x)
        x = self.fc(x)
        return x


def tiny_inception(num_classes: int = 10, in_channels: int = 3) -> TinyInception:
    """Stem 16 channels, one inception module (8 + 16 + 8 = 32 channels), linear head."""
    return TinyInception(num_classes=num_classes, in_channels=in_channels)


# --------------------------------------------------------------------------------------------

#: Fast models for tests: name -> factory(num_classes=10, in_channels=3).
TINY_FACTORIES = {
    "tiny_resnet18": tiny_resnet18,
    "tiny_resnet50": tiny_resnet50,
    "resnext_tiny": resnext_tiny,
    "tiny_mobilenet_v2": tiny_mobilenet_v2,
    "tiny_se_resnet": tiny_se_resnet,
    "tiny_densenet": tiny_densenet,
    "tiny_inception": tiny_inception,
}

#: Full-size models (torchvision's parameter counts at the defaults).
FACTORIES = {
    "resnet18": resnet18,
    "resnet50": resnet50,
    "mobilenet_v2": mobilenet_v2,
    "densenet121": densenet121,
    **TINY_FACTORIES,
}
