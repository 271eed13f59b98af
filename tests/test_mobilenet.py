"""ElasticMobileNet: exact extraction, costs, JSON rebuilds, channel reordering, specs."""

import json

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from sliver.config import ConfigError
from sliver.elastic import ElasticMobileNet, build_extracted, build_supernet, from_spec
from sliver.elastic.layers import ElasticBatchNorm2d, ElasticConv2d, ElasticLinear
from sliver.elastic.mobilenet import PRESETS, MobileNet, mobilenet_costs
from sliver.space import SpaceError

ELASTIC = (ElasticConv2d, ElasticBatchNorm2d, ElasticLinear)


def randomise(net: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine parameters, so eval-mode extraction is really tested."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=gen))
                m.running_var.copy_(1 + 0.2 * torch.rand(m.running_var.shape, generator=gen))
    return net.eval()


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return randomise(ElasticMobileNet.from_preset("tiny"))


@pytest.fixture(scope="module")
def imagenet_small():
    """The ImageNet stage table at small resolutions and 10 classes (fast to run)."""
    torch.manual_seed(1)
    return randomise(ElasticMobileNet.from_preset("imagenet", num_classes=10, resolutions=[32, 48]), seed=1)


def assert_extraction_exact(net, config, batch=2):
    x = net.example_input(config, batch, seed=3)
    net.activate(config)
    with torch.no_grad():
        expected = net(x)
        model = net.extract(config)
        got = model(x)
    assert not any(isinstance(m, ELASTIC) for m in model.modules())
    assert not model.training
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert sum(p.numel() for p in model.parameters()) == net.costs(config)["params"]
    return model


def test_min_and_max_extract_exactly_at_every_resolution(tiny):
    for r in tiny.space["r"].choices:
        for config in (tiny.min_config(), tiny.max_config()):
            assert_extraction_exact(tiny, {**config, "r": r})


@settings(max_examples=50, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1))
def test_random_subnetworks_extract_exactly(tiny, seed):
    assert_extraction_exact(tiny, tiny.space.sample(seed), batch=1)


def test_imagenet_table_extracts_exactly(imagenet_small):
    net = imagenet_small
    for config in [net.min_config(), net.max_config(), *net.space.sample(7, n=2)]:
        assert_extraction_exact(net, config, batch=1)


def test_kernel_transform_supernet_extracts_exactly():
    torch.manual_seed(2)
    net = randomise(ElasticMobileNet.from_preset("digits", kernel_transform=True))
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "transforms" in name:
                p.add_(0.05 * torch.randn_like(p))
    for config in [net.min_config(), *net.space.sample(4, n=3)]:
        assert_extraction_exact(net, config)


def test_imagenet_preset_is_ofa_sized():
    net = ElasticMobileNet.from_preset("imagenet")
    assert net.space.count() == (9**2 + 9**3 + 9**4) ** 5 * 25  # 25 resolutions 128..224
    assert net.input_shape(net.max_config(), 4) == (4, 3, 224, 224)
    big, small = net.costs(net.max_config()), net.costs(net.min_config())
    assert 7_000_000 < big["params"] < 8_000_000  # OFA MobileNetV3 w1.0: about 7.7M
    assert small["macs"] < big["macs"] / 10


def test_macs_match_the_flop_counter(tiny, imagenet_small):
    for net, configs in ((tiny, [tiny.min_config(), tiny.max_config(), *tiny.space.sample(11, n=3)]),
                         (imagenet_small, [imagenet_small.space.sample(5)])):
        for config in configs:
            model = net.extract(config)
            with FlopCounterMode(display=False) as counter, torch.no_grad():
                model(net.example_input(config))
            assert counter.get_total_flops() == 2 * net.costs(config)["macs"]


def test_small_subnetworks_cost_less(tiny):
    small, big = tiny.costs(tiny.min_config()), tiny.costs(tiny.max_config())
    assert small["params"] < big["params"] and small["macs"] < big["macs"]
    config = tiny.max_config()
    low_r = {**config, "r": 20}
    assert tiny.costs(low_r)["params"] == big["params"] and tiny.costs(low_r)["macs"] < big["macs"]


def test_dropped_blocks_do_not_run(tiny):
    calls = []
    hooks = [b.register_forward_hook(lambda *_: calls.append(1)) for blocks in tiny.stages for b in blocks]
    try:
        config = tiny.min_config()
        tiny.activate(config)
        with torch.no_grad():
            tiny(tiny.example_input(config))
    finally:
        for h in hooks:
            h.remove()
    assert len(calls) == sum(config["d"])


def test_arch_json_rebuilds_the_extracted_model(tiny):
    config = tiny.space.sample(21)
    model = tiny.extract(config)
    arch = json.loads(json.dumps(tiny.arch_config(config)))
    assert arch["kind"] == "mobilenet" and arch["resolution"] == config["r"]
    rebuilt = build_extracted(arch)
    assert type(rebuilt) is MobileNet
    rebuilt.load_state_dict(model.state_dict())
    x = tiny.example_input(config)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x), model(x))
    assert mobilenet_costs(arch) == tiny.costs(config)


def test_supernet_config_json_rebuilds_the_supernet(tiny):
    spec = json.loads(json.dumps(tiny.supernet_config()))
    assert spec["family"] == "mobilenet"
    clone = build_supernet(spec)
    clone.load_state_dict(tiny.state_dict())
    clone.eval()
    config = tiny.space.sample(2)
    x = tiny.example_input(config)
    tiny.activate(config)
    clone.activate(config)
    with torch.no_grad():
        torch.testing.assert_close(clone(x), tiny(x))
    assert clone.space == tiny.space


def test_prepare_input_resizes_bilinearly(tiny):
    x = torch.randn(3, 1, 28, 28)
    config = {**tiny.min_config(), "r": 20}
    y = tiny.prepare_input(x, config)
    assert y.shape == (3, 1, 20, 20)
    torch.testing.assert_close(y, nn.functional.interpolate(x, size=(20, 20), mode="bilinear", align_corners=False))
    assert tiny.prepare_input(x, tiny.max_config()) is x


def test_reorder_channels_keeps_the_largest_network():
    torch.manual_seed(4)
    net = randomise(ElasticMobileNet.from_preset("tiny"), seed=4)
    config = net.max_config()
    x = net.example_input(config, 4)
    net.activate(config)
    with torch.no_grad():
        before = net(x)
        net.reorder_channels()
        after = net(x)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
    for blocks in net.stages:
        for block in blocks:
            importance = block.project_conv.weight.abs().sum((0, 2, 3))
            assert torch.all(importance[:-1] >= importance[1:])  # most important channels first


def test_training_a_small_subnetwork_touches_only_its_slice():
    torch.manual_seed(5)
    net = ElasticMobileNet.from_preset("digits").train()
    config = net.min_config()
    net.activate(config)
    x = net.prepare_input(torch.randn(8, 1, 8, 8), config)
    nn.functional.cross_entropy(net(x), torch.randint(0, 10, (8,))).backward()
    first = net.stages[0][0]
    mid = first.mid_channels(config["e"][0])
    assert first.expand_conv.weight.grad[:mid].abs().sum() > 0
    assert first.expand_conv.weight.grad[mid:].abs().sum() == 0
    dropped = net.stages[0][config["d"][0]]
    assert all(p.grad is None for p in dropped.parameters())


def test_presets_build_and_validate_configs():
    assert set(PRESETS) == {"imagenet", "tiny", "digits"}
    net = ElasticMobileNet.from_preset("digits")
    assert net.input_shape(net.min_config()) == (1, 1, 6, 6)
    with pytest.raises(SpaceError, match="'r'"):
        net.activate({**net.max_config(), "r": 28})
    with pytest.raises(ValueError, match="preset"):
        ElasticMobileNet.from_preset("huge")
    with pytest.raises(ValueError, match=r"stages\[0\]"):
        ElasticMobileNet.from_preset("tiny", stages=[{"width": 8, "blocks": 3, "stride": 2, "act": "gelu", "se": False}])


def test_from_spec_builds_and_names_wrong_fields():
    net = from_spec({"family": "mobilenet", "preset": "tiny", "width_mult": 1.5, "resolutions": [28]})
    assert net.space["r"].choices == (28,)
    assert net.supernet_config()["width_mult"] == 1.5
    custom = from_spec({"family": "mobilenet", "in_channels": 1, "num_classes": 4, "depths": [1],
                        "stages": [{"width": 8, "blocks": 1, "stride": 2, "act": "relu", "se": True}],
                        "resolutions": [16], "final_expand_width": 16, "feature_width": 32})
    assert custom.space.count() == 9
    for spec, field in [
        ({"family": "mobilenet", "preset": "tiny", "kernel_size": [3]}, "kernel_size"),
        ({"family": "mobilenet", "preset": "tiny", "width_mult": -1}, "width_mult"),
        ({"family": "mobilenet"}, "stages"),
        ({"family": "resnet"}, "family"),
        ({"family": "mobilenet", "preset": "tiny", "depths": [1, 9]}, "depth"),
    ]:
        with pytest.raises(ConfigError, match=field) as info:
            from_spec(spec)
        assert "\n" not in str(info.value)
