"""Sanity checks for tests/byom_models.py: the torchvision-layout models used by the
"bring your own model" converter tests build, run, trace with torch.fx, and (full size) have
torchvision's parameter counts."""

import byom_models as B
import pytest
import torch
import torch.fx


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(B.TINY_FACTORIES))
def test_tiny_forward_shape_and_fx_trace(name):
    torch.manual_seed(0)
    model = B.TINY_FACTORIES[name](num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        eager = model(x)
        traced = torch.fx.symbolic_trace(model)
        fx_out = traced(x)
    assert eager.shape == (2, 10)
    assert torch.equal(eager, fx_out)


@pytest.mark.parametrize("name", sorted(B.TINY_FACTORIES))
def test_tiny_one_channel_28x28(name):
    torch.manual_seed(0)
    model = B.TINY_FACTORIES[name](num_classes=7, in_channels=1).eval()
    with torch.no_grad():
        out = torch.fx.symbolic_trace(model)(torch.randn(2, 1, 28, 28))
    assert out.shape == (2, 7)


@pytest.mark.parametrize(
    "factory, expected",
    [
        (B.resnet18, 11_689_512),
        (B.resnet50, 25_557_032),
        (B.mobilenet_v2, 3_504_872),
        (B.densenet121, 7_978_856),
    ],
    ids=["resnet18", "resnet50", "mobilenet_v2", "densenet121"],
)
def test_full_size_parameter_counts_match_torchvision(factory, expected):
    assert _n_params(factory()) == expected


def test_state_dict_keys_follow_torchvision_layout():
    r50 = B.resnet50().state_dict()
    assert "layer1.0.downsample.0.weight" in r50 and "layer4.2.bn3.running_var" in r50
    assert len(r50) == 320
    mb = B.mobilenet_v2().state_dict()
    assert "features.0.0.weight" in mb and "features.1.conv.0.0.weight" in mb
    assert "features.18.0.weight" in mb and "classifier.1.weight" in mb
    dn = B.tiny_densenet().state_dict()
    assert "features.denseblock1.denselayer1.conv1.weight" in dn
    assert "features.transition1.conv.weight" in dn and "features.norm5.weight" in dn
    se = B.tiny_se_resnet().state_dict()
    assert "layer1.0.se.fc1.weight" in se and "layer1.0.se.fc2.bias" in se


def test_resnext_tiny_has_grouped_non_depthwise_conv():
    convs = [m for m in B.resnext_tiny().modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    assert convs
    assert all(m.in_channels // m.groups > 1 for m in convs)
