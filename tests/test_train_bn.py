"""BN recalibration: re-estimated statistics are a cumulative average and fix a sub-network's accuracy."""

import pytest
import torch
import torch.nn.functional as F
from test_train_toy import ToyNet, digits, run_config

from sliver.data import loader
from sliver.train import Trainer, accuracy, recalibrate_bn


def test_running_stats_are_the_cumulative_average_of_the_batches():
    torch.manual_seed(0)
    net = ToyNet()
    data = digits()
    config = {"w": 8, "d": 1, "k": 3}
    batches = list(loader(data.calib, 32))[:3]
    before = net.bns[0].running_mean.clone()
    out = recalibrate_bn(net, config, batches, batches=3)
    assert out == config and net.active_config == config and not net.training
    expected = torch.stack([F.conv2d(x, net.convs[0].weight[:8], padding=1).mean((0, 2, 3)) for x, _ in batches]).mean(0)
    assert torch.allclose(net.bns[0].running_mean[:8], expected, atol=1e-5)
    assert not torch.allclose(net.bns[0].running_mean[:8], before[:8])
    assert net.bns[0].momentum == 0.1  # the layer's own momentum is restored


def test_recalibration_restores_a_subnetworks_accuracy(tmp_path):
    data = digits()
    torch.manual_seed(0)
    trainer = Trainer(run_config(epochs=3), tmp_path, supernet=ToyNet(), data=data, progress=False)
    trainer.fit()
    net = trainer.supernet
    val = loader(data.val, 256)
    # the shared running statistics after training were written by every sub-network in turn; a
    # 1x1-kernel two-layer network feeds its second BN inputs unlike those of most others
    sub = {"w": 8, "d": 2, "k": 1}
    net.activate(sub)
    stale = accuracy(net, val)
    before = net.bns[1].running_var[:8].clone()
    recalibrate_bn(net, sub, loader(data.calib, 64), batches=10)
    assert not torch.allclose(net.bns[1].running_var[:8], before)
    fresh = accuracy(net, val)
    assert fresh > stale + 10, (stale, fresh)
    assert fresh > 70


def test_empty_loader_and_bad_batches_are_clear_errors():
    net = ToyNet()
    with pytest.raises(ValueError, match="gave no batches"):
        recalibrate_bn(net, net.max_config(), [], batches=2)
    with pytest.raises(ValueError, match="batches must be a positive integer"):
        recalibrate_bn(net, net.max_config(), [], batches=0)


def test_a_network_without_batch_norm_is_not_run_at_all():
    from test_transformer import tiny_vit

    class Untouchable:  # a calibration loader that must not be read: there are no statistics to estimate
        def __iter__(self):
            raise AssertionError("recalibrate_bn read the loader of a network without batch norm")

    net = tiny_vit()
    net.train()
    config = net.min_config()
    assert recalibrate_bn(net, config, Untouchable(), batches=20) == net.space.validate(config)
    assert not net.training
