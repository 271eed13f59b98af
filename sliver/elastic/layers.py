"""Elastic layers: each holds the weights of its largest shape and runs a slice of them.

A layer reads the number of *input* channels/features from its input (the
previous layer decided it) and takes its active *output* size, kernel size etc.
from attributes that the owning super-network sets before ``forward``. The
forward pass slices the full parameters (views, no copies); ``to_plain`` copies
the active slice into a standard ``torch.nn`` layer for extraction.

Slicing always keeps the *first* channels, so sub-networks share the most
important channels once the super-network's channels are sorted by importance
(see ``ElasticMobileNet.reorder_channels``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sliver.errors import UserError


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of ``divisor`` (MobileNet rule: never more than 10% down)."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def _check_positive(**values: int) -> None:
    for name, v in values.items():
        if not isinstance(v, int) or v < 1:
            raise UserError(f"'{name}' must be a positive integer, got {v!r}")


class ElasticConv2d(nn.Module):
    """2-D convolution with elastic kernel size and elastic in/out channels.

    ``depthwise=True`` makes a depthwise convolution (one filter per channel, the
    channel count follows the input). A smaller kernel is the centre crop of the
    largest one; with ``kernel_transform=True`` each crop is further mixed by a
    learnable ``k*k x k*k`` matrix (OFA's kernel transformation), chained from the
    largest kernel down, so small kernels can differ from a plain crop. Padding is
    ``k // 2`` ("same" for stride 1).

    Set ``active_kernel`` and ``active_out`` before calling; the input decides
    the active input channels.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_sizes: int | tuple[int, ...] = 1,
        stride: int = 1,
        depthwise: bool = False,
        bias: bool = False,
        kernel_transform: bool = False,
    ) -> None:
        super().__init__()
        kernel_sizes = (kernel_sizes,) if isinstance(kernel_sizes, int) else tuple(sorted(set(kernel_sizes)))
        _check_positive(in_channels=in_channels, out_channels=out_channels, stride=stride)
        if not kernel_sizes or any(not isinstance(k, int) or k < 1 or k % 2 == 0 for k in kernel_sizes):
            raise UserError(f"'kernel_sizes' must be odd positive integers, got {list(kernel_sizes)}")
        if depthwise and in_channels != out_channels:
            raise ValueError(f"a depthwise convolution needs in_channels == out_channels, got {in_channels} and {out_channels}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_sizes, self.stride, self.depthwise = kernel_sizes, stride, depthwise
        k = kernel_sizes[-1]
        self.weight = nn.Parameter(torch.empty(out_channels, 1 if depthwise else in_channels, k, k))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        # fan-out init, as MobileNet/OFA do for convolutions
        nn.init.kaiming_normal_(self.weight, mode="fan_out")
        self.transforms = nn.ParameterDict()
        if kernel_transform:
            for small, big in zip(kernel_sizes[:-1], kernel_sizes[1:]):
                # identity start: the transformed crop equals the plain crop until trained
                self.transforms[f"{big}to{small}"] = nn.Parameter(torch.eye(small * small))
        self.active_kernel = k
        self.active_out = out_channels

    @property
    def kernel_transform(self) -> bool:
        return len(self.transforms) > 0

    def kernel(self, k: int) -> torch.Tensor:
        """The ``k x k`` kernel for all channels (a view of the weight unless transformed)."""
        if k not in self.kernel_sizes:
            raise ValueError(f"kernel size {k} is not one of this layer's kernel sizes {list(self.kernel_sizes)}")
        weight = self.weight
        if not self.kernel_transform:
            start = (self.kernel_sizes[-1] - k) // 2
            return weight[:, :, start:start + k, start:start + k]
        for small, big in zip(reversed(self.kernel_sizes[:-1]), reversed(self.kernel_sizes[1:])):
            if big <= k:
                break
            start = (big - small) // 2
            crop = weight[:, :, start:start + small, start:start + small]
            # F.linear mixes the k*k taps of every filter with the shared matrix
            mixed = F.linear(crop.reshape(-1, small * small), self.transforms[f"{big}to{small}"])
            weight = mixed.reshape(weight.shape[0], weight.shape[1], small, small)
        return weight

    def active_weight(self, in_channels: int) -> torch.Tensor:
        """Weight slice for ``in_channels`` inputs at the active kernel and output size."""
        k = self.kernel(self.active_kernel)
        if self.depthwise:
            return k[:in_channels]
        return k[: self.active_out, :in_channels]

    def _bias(self, out: int) -> torch.Tensor | None:
        return None if self.bias is None else self.bias[:out]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        weight = self.active_weight(c)
        groups = c if self.depthwise else 1
        return F.conv2d(x, weight, self._bias(weight.shape[0]), self.stride, self.active_kernel // 2, 1, groups)

    def to_plain(self, in_channels: int) -> nn.Conv2d:
        """A ``nn.Conv2d`` with a copy of the active slice for ``in_channels`` inputs."""
        with torch.no_grad():
            weight = self.active_weight(in_channels).detach().clone()
            out = weight.shape[0]
            conv = nn.Conv2d(
                in_channels, out, self.active_kernel, self.stride, self.active_kernel // 2,
                groups=in_channels if self.depthwise else 1, bias=self.bias is not None,
            )
            conv.weight.copy_(weight)
            if self.bias is not None:
                conv.bias.copy_(self.bias[:out])
        return conv

    def extra_repr(self) -> str:
        kind = "depthwise, " if self.depthwise else ""
        return (f"{self.in_channels}, {self.out_channels}, {kind}kernel_sizes={list(self.kernel_sizes)}, "
                f"stride={self.stride}, kernel_transform={self.kernel_transform}")


def momentum_factor(bn: nn.modules.batchnorm._BatchNorm) -> float:
    """The running-statistics update factor of one forward pass, counting the batch as ``nn.BatchNorm`` does
    (``momentum=None``: a cumulative average)."""
    if bn.training and bn.track_running_stats:
        bn.num_batches_tracked.add_(1)
        return 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    return 0.0 if bn.momentum is None else bn.momentum


class ElasticBatchNorm2d(nn.BatchNorm2d):
    """Batch norm over the first ``C`` channels, ``C`` taken from the input.

    In train mode it normalises with the batch statistics of the slice and
    updates that slice of the running statistics (so BN recalibration of a
    sub-network works as for a plain ``nn.BatchNorm2d``, which this subclasses).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if c == self.num_features:
            return super().forward(x)
        self._check_input_dim(x)
        factor = momentum_factor(self)
        use_batch_stats = self.training or self.running_mean is None
        track = self.running_mean is not None and (not self.training or self.track_running_stats)
        return F.batch_norm(
            x,
            self.running_mean[:c] if track else None,  # a view: F.batch_norm updates it in place
            self.running_var[:c] if track else None,
            self.weight[:c] if self.affine else None,
            self.bias[:c] if self.affine else None,
            use_batch_stats, factor, self.eps,
        )

    def to_plain(self, channels: int) -> nn.BatchNorm2d:
        """A ``nn.BatchNorm2d`` with copies of the first ``channels`` parameters and statistics."""
        bn = nn.BatchNorm2d(channels, self.eps, self.momentum, self.affine, self.track_running_stats)
        with torch.no_grad():
            if self.affine:
                bn.weight.copy_(self.weight[:channels])
                bn.bias.copy_(self.bias[:channels])
            if self.track_running_stats:
                bn.running_mean.copy_(self.running_mean[:channels])
                bn.running_var.copy_(self.running_var[:channels])
                bn.num_batches_tracked.copy_(self.num_batches_tracked)
        return bn


class ElasticLinear(nn.Module):
    """Linear layer with elastic input (from the input) and output (``active_out``) features."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        _check_positive(in_features=in_features, out_features=out_features)
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        # the same init as nn.Linear, so a full-size ElasticLinear trains like one
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(in_features)
            nn.init.uniform_(self.bias, -bound, bound)
        self.active_out = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[-1]
        bias = None if self.bias is None else self.bias[: self.active_out]
        return F.linear(x, self.weight[: self.active_out, :c], bias)

    def to_plain(self, in_features: int) -> nn.Linear:
        """A ``nn.Linear`` with a copy of the active slice for ``in_features`` inputs."""
        lin = nn.Linear(in_features, self.active_out, bias=self.bias is not None)
        with torch.no_grad():
            lin.weight.copy_(self.weight[: self.active_out, :in_features])
            if self.bias is not None:
                lin.bias.copy_(self.bias[: self.active_out])
        return lin

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"


class ElasticLayerNorm(nn.LayerNorm):
    """Layer norm over the first ``C`` features of the last dimension, ``C`` taken from the input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[-1]
        if (c,) == tuple(self.normalized_shape):
            return super().forward(x)
        weight = None if self.weight is None else self.weight[:c]
        bias = None if self.bias is None else self.bias[:c]
        return F.layer_norm(x, (c,), weight, bias, self.eps)

    def to_plain(self, features: int) -> nn.LayerNorm:
        """A ``nn.LayerNorm`` with copies of the first ``features`` parameters."""
        ln = nn.LayerNorm(features, self.eps, elementwise_affine=self.weight is not None, bias=self.bias is not None)
        with torch.no_grad():
            if self.weight is not None:
                ln.weight.copy_(self.weight[:features])
            if self.bias is not None:
                ln.bias.copy_(self.bias[:features])
        return ln
