"""Elastic layers: a slice of the full weight, equal to the plain layer they extract to."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sliver.elastic.layers import ElasticBatchNorm2d, ElasticConv2d, ElasticLayerNorm, ElasticLinear, make_divisible


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_make_divisible_follows_the_mobilenet_rule():
    assert make_divisible(16 * 3) == 48
    assert make_divisible(24 * 1.2) == 32  # 28.8 rounds up to a multiple of 8
    assert make_divisible(3) == 8  # never below the divisor
    assert make_divisible(100) == 104 and make_divisible(92) == 96


@pytest.mark.parametrize("k", [3, 5, 7])
def test_conv_kernel_is_the_centre_crop(k):
    conv = ElasticConv2d(6, 10, (3, 5, 7), stride=2)
    conv.active_kernel, conv.active_out = k, 4
    x = torch.randn(2, 5, 11, 11)  # 5 of the 6 input channels
    s = (7 - k) // 2
    expected = F.conv2d(x, conv.weight[:4, :5, s:s + k, s:s + k], stride=2, padding=k // 2)
    torch.testing.assert_close(conv(x), expected)
    plain = conv.to_plain(5)
    assert type(plain) is nn.Conv2d and plain.weight.shape == (4, 5, k, k)
    torch.testing.assert_close(plain(x), conv(x), atol=1e-6, rtol=0)


def test_conv_slices_without_copying():
    conv = ElasticConv2d(8, 8, (3, 5))
    conv.active_kernel, conv.active_out = 3, 4
    w = conv.active_weight(4)
    assert w.shape == (4, 4, 3, 3)
    assert w.untyped_storage().data_ptr() == conv.weight.untyped_storage().data_ptr()


def test_depthwise_conv_follows_the_input_channels():
    conv = ElasticConv2d(12, 12, (3, 5), depthwise=True, bias=True)
    nn.init.normal_(conv.bias)
    conv.active_kernel = 3
    x = torch.randn(3, 7, 9, 9)
    y = conv(x)
    assert y.shape == (3, 7, 9, 9)
    expected = F.conv2d(x, conv.weight[:7, :, 1:4, 1:4], conv.bias[:7], padding=1, groups=7)
    torch.testing.assert_close(y, expected)
    plain = conv.to_plain(7)
    assert plain.groups == 7
    torch.testing.assert_close(plain(x), y, atol=1e-6, rtol=0)


def test_only_the_active_slice_gets_gradients():
    conv = ElasticConv2d(8, 8, (3, 5, 7))
    conv.active_kernel, conv.active_out = 3, 2
    conv(torch.randn(1, 4, 6, 6)).sum().backward()
    grad = conv.weight.grad
    assert grad[:2, :4, 2:5, 2:5].abs().sum() > 0
    mask = torch.ones_like(grad, dtype=torch.bool)
    mask[:2, :4, 2:5, 2:5] = False
    assert grad[mask].abs().sum() == 0


def test_kernel_transform_starts_as_a_crop_and_learns():
    conv = ElasticConv2d(4, 4, (3, 5, 7), depthwise=True, kernel_transform=True)
    assert set(conv.transforms) == {"7to5", "5to3"}
    x = torch.randn(2, 4, 8, 8)
    conv.active_kernel = 3
    crop = F.conv2d(x, conv.weight[:, :, 2:5, 2:5], padding=1, groups=4)
    torch.testing.assert_close(conv(x), crop)  # identity matrices at start
    with torch.no_grad():
        conv.transforms["7to5"].add_(0.1 * torch.randn(25, 25))
    y3 = conv(x)
    assert not torch.allclose(y3, crop)  # the 3x3 kernel is derived through the 7->5 matrix
    torch.testing.assert_close(conv.to_plain(4)(x), y3, atol=1e-6, rtol=0)
    conv.active_kernel = 7  # the largest kernel is never transformed
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, padding=3, groups=4))
    conv.active_kernel = 3
    conv(x).sum().backward()
    assert conv.transforms["5to3"].grad.abs().sum() > 0 and conv.transforms["7to5"].grad.abs().sum() > 0


def test_conv_rejects_bad_arguments():
    with pytest.raises(ValueError, match="kernel_sizes"):
        ElasticConv2d(4, 4, (3, 4))
    with pytest.raises(ValueError, match="depthwise"):
        ElasticConv2d(4, 8, 3, depthwise=True)
    with pytest.raises(ValueError, match="out_channels"):
        ElasticConv2d(4, 0, 3)
    conv = ElasticConv2d(4, 4, (3, 5))
    conv.active_kernel = 7
    with pytest.raises(ValueError, match="kernel size 7"):
        conv(torch.randn(1, 4, 5, 5))


def test_batchnorm_train_mode_uses_and_updates_the_slice():
    bn = ElasticBatchNorm2d(8)
    with torch.no_grad():
        bn.weight.normal_()
        bn.bias.normal_()
    before_mean, before_var = bn.running_mean.clone(), bn.running_var.clone()
    ref = nn.BatchNorm2d(5)
    with torch.no_grad():
        ref.weight.copy_(bn.weight[:5])
        ref.bias.copy_(bn.bias[:5])
    x = torch.randn(4, 5, 6, 6) * 3 + 1
    torch.testing.assert_close(bn(x), ref(x))
    torch.testing.assert_close(bn.running_mean[:5], ref.running_mean)
    torch.testing.assert_close(bn.running_var[:5], ref.running_var)
    assert torch.equal(bn.running_mean[5:], before_mean[5:]) and torch.equal(bn.running_var[5:], before_var[5:])
    assert int(bn.num_batches_tracked) == 1
    bn.eval()
    ref.eval()
    torch.testing.assert_close(bn(x), ref(x))
    torch.testing.assert_close(bn.to_plain(5).eval()(x), ref(x))


def test_batchnorm_cumulative_average_for_recalibration():
    bn = ElasticBatchNorm2d(6, momentum=None)
    bn.reset_running_stats()
    batches = [torch.randn(8, 3, 4, 4) + i for i in range(3)]
    for x in batches:
        bn(x)
    expected = torch.stack([x.mean((0, 2, 3)) for x in batches]).mean(0)
    torch.testing.assert_close(bn.running_mean[:3], expected)
    assert torch.equal(bn.running_mean[3:], torch.zeros(3))


def test_linear_slices_in_and_out():
    lin = ElasticLinear(10, 6)
    lin.active_out = 4
    x = torch.randn(3, 7)
    y = lin(x)
    torch.testing.assert_close(y, x @ lin.weight[:4, :7].T + lin.bias[:4])
    plain = lin.to_plain(7)
    assert type(plain) is nn.Linear and plain.weight.shape == (4, 7)
    torch.testing.assert_close(plain(x), y)
    full = nn.Linear(10, 6)
    full.load_state_dict(lin.state_dict())
    lin.active_out = 6
    z = torch.randn(2, 10)
    torch.testing.assert_close(lin(z), full(z))


def test_layernorm_over_a_feature_slice():
    ln = ElasticLayerNorm(12)
    with torch.no_grad():
        ln.weight.normal_()
        ln.bias.normal_()
    x = torch.randn(2, 5, 9)
    expected = F.layer_norm(x, (9,), ln.weight[:9], ln.bias[:9], ln.eps)
    torch.testing.assert_close(ln(x), expected)
    torch.testing.assert_close(ln.to_plain(9)(x), expected)
    full = torch.randn(2, 12)
    torch.testing.assert_close(ln(full), nn.functional.layer_norm(full, (12,), ln.weight, ln.bias, ln.eps))
