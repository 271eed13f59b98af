"""A tiny elastic super-network used by the training tests (width, depth, kernel), and checks of it.

It follows the ``Supernet`` protocol with plain torch ops, so the training code
is tested independently of the real families; it is registered as family
``toy`` so checkpoints of it can be rebuilt by ``load_supernet``.
"""

import copy

import torch
import torch.nn.functional as F
from torch import nn

from sliver.data import load_dataset
from sliver.elastic.base import Supernet, register_family
from sliver.space import Dimension, SearchSpace
from sliver.train.config import RunConfig


@register_family("toy")
class ToyNet(Supernet):
    """conv3x3-BN-ReLU (x depth) -> 4x4 average pool -> linear; elastic width ``w``, depth ``d``, kernel ``k``."""

    def __init__(self, width: int = 16, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.width, self.num_classes, self.in_channels = width, num_classes, in_channels
        self.convs = nn.ModuleList([nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                                    nn.Conv2d(width, width, 3, padding=1, bias=False)])
        self.bns = nn.ModuleList([nn.BatchNorm2d(width), nn.BatchNorm2d(width)])
        self.fc = nn.Linear(width * 16, num_classes)
        self.space = SearchSpace([Dimension("w", (4, 8, width)), Dimension("d", (1, 2)), Dimension("k", (1, 3))])
        self.activate(self.max_config())

    def _set_active(self, config):
        self.cfg = config

    def forward(self, x):
        w, k = self.cfg["w"], self.cfg["k"]
        for i in range(self.cfg["d"]):
            weight = self.convs[i].weight[:w, : (w if i else self.in_channels)]
            if k == 1:
                weight = weight[:, :, 1:2, 1:2]  # centre of the 3x3 kernel
            x = F.relu(_bn(F.conv2d(x, weight, padding=k // 2), self.bns[i], w, self.training))
        # flattening is channel-major, so the first w*16 features belong to the first w channels
        return F.linear(F.adaptive_avg_pool2d(x, 4).flatten(1), self.fc.weight[:, : w * 16], self.fc.bias)

    def input_shape(self, config, batch_size=1):
        return (batch_size, self.in_channels, 8, 8)

    def arch_config(self, config):
        return {"kind": "toy", **self.space.validate(config)}

    def extract(self, config):
        model = copy.deepcopy(self)
        model.activate(config)
        return model.eval()

    def costs(self, config):
        c = self.space.validate(config)
        per_conv = c["w"] * c["w"] * c["k"] ** 2
        params = c["w"] * c["k"] ** 2 + (c["d"] - 1) * per_conv + c["w"] * 16 * 10 + 10
        return {"params": params, "macs": params * 64}

    def supernet_config(self):
        return {"family": "toy", "width": self.width, "num_classes": self.num_classes, "in_channels": self.in_channels}


def _bn(x, bn, c, training):
    """Batch norm over the first ``c`` channels, with nn.BatchNorm2d's momentum semantics (None = cumulative)."""
    factor = 0.0
    if training:
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    return F.batch_norm(x, bn.running_mean[:c], bn.running_var[:c], bn.weight[:c], bn.bias[:c], training, factor, bn.eps)


_DIGITS = {}


def digits():
    """The digits data set, loaded once per test session."""
    if "d" not in _DIGITS:
        _DIGITS["d"] = load_dataset("digits")
    return _DIGITS["d"]


def run_config(**train) -> RunConfig:
    """A short digits run of the toy net; ``train`` overrides fields of the ``train:`` section."""
    base = {"epochs": 2, "batch_size": 64, "lr": 0.1, "warmup_epochs": 0.2, "bn_batches": 4, "checkpoint_every": 5, "threads": 1}
    base.update(train)
    return RunConfig.model_validate({"supernet": {"family": "toy"}, "data": {"name": "digits"}, "train": base})


def test_toy_subnetworks_share_leading_weights():
    torch.manual_seed(0)
    net = ToyNet()
    x = torch.randn(4, 1, 8, 8)
    net.eval()
    outs = {}
    for w in (4, 8, 16):
        net.activate({"w": w, "d": 2, "k": 3})
        outs[w] = net(x)
    assert outs[4].shape == (4, 10) and not torch.allclose(outs[4], outs[16])
    net.activate({"w": 16, "d": 1, "k": 1})
    assert net(x).shape == (4, 10)
    assert net.costs(net.min_config())["macs"] < net.costs(net.max_config())["macs"]
