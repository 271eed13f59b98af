"""Bring your own model: elastify torchvision-shaped CNNs, check exactness, extraction, costs and errors."""

from __future__ import annotations

import copy

import byom_models as bm
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from sliver import elastify
from sliver.elastic.auto import AutoSupernet, ElastifyError
from sliver.measure.latency import export_onnx
from sliver.measure.timing import ort_session

TINY = ["tiny_resnet18", "tiny_resnet50", "resnext_tiny", "tiny_mobilenet_v2", "tiny_se_resnet", "tiny_densenet",
        "tiny_inception", "kernel_net"]
FULL = ["resnet18", "resnet50", "mobilenet_v2"]


class KernelNet(nn.Module):
    """Depthwise 5x5 and 7x7 convolutions with "same" padding inside residual blocks: elastic kernels."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.blocks = nn.Sequential(*[Residual(16, k) for k in (5, 7, 5)])
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1), 1))


class Residual(nn.Module):
    def __init__(self, c: int, k: int) -> None:
        super().__init__()
        self.expand = nn.Conv2d(c, 2 * c, 1)
        self.dw = nn.Conv2d(2 * c, 2 * c, k, padding=k // 2, groups=2 * c)
        self.bn = nn.BatchNorm2d(2 * c)
        self.project = nn.Conv2d(2 * c, c, 5, padding=2)

    def forward(self, x):
        return x + self.project(torch.relu(self.bn(self.dw(self.expand(x)))))


def kernel_net() -> nn.Module:
    return KernelNet()


def _randomise_bn(model: nn.Module) -> nn.Module:
    """Non-trivial batch-norm statistics, so slicing mistakes in them show in the outputs."""
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=gen) * 0.4 - 0.2)
    return model


_CACHE: dict[str, tuple[nn.Module, AutoSupernet]] = {}


def tiny(name: str) -> tuple[nn.Module, AutoSupernet]:
    """(original, elastified) for a tiny model, built once per session (the original is kept apart)."""
    if name not in _CACHE:
        torch.manual_seed(0)
        if name == "kernel_net":
            model, options = KernelNet().eval(), {"kernel": True}
        else:
            model, options = getattr(bm, name)(), {}
        model = _randomise_bn(model).eval()
        original = copy.deepcopy(model)
        _CACHE[name] = original, elastify(model, torch.randn(1, 3, 32, 32), **options).eval()
    return _CACHE[name]


X = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize("name", TINY)
def test_largest_equals_the_original(name):
    original, net = tiny(name)
    net.activate(net.max_config())
    with torch.no_grad():
        assert (net(X) - original(X)).abs().max() <= 1e-5


def test_elastic_kernels_are_centre_crops_of_same_padded_convolutions():
    _, net = tiny("kernel_net")
    assert [d.name for d in net.space.dimensions] == ["width", "depth", "kernel5", "kernel7"]
    assert net.space["kernel5"].choices == (3, 5) and net.space["kernel5"].length == 5
    assert net.space["kernel7"].choices == (3, 5, 7)
    config = net.max_config()
    small = {**config, "kernel5": [3] * 5, "kernel7": [3]}
    assert net.costs(small)["macs"] < net.costs(config)["macs"]


@pytest.mark.parametrize("name", TINY + [pytest.param(f, marks=pytest.mark.slow) for f in FULL])
def test_sampled_configs_run_extract_export_and_cost_exactly(name):
    if name in FULL:  # full-size ImageNet models at a small input, to keep 30 ONNX exports quick
        torch.manual_seed(0)
        net = elastify(_randomise_bn(getattr(bm, name)()).eval(), torch.randn(1, 3, 64, 64)).eval()
        x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    else:
        net, x = tiny(name)[1], X
    x16 = torch.randn(16, *x.shape[1:], generator=torch.Generator().manual_seed(3))

    @settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(st.integers(0, 2**31 - 1))
    def check(seed):
        config = net.space.sample(seed)
        net.activate(config)
        sub = net.extract(config)
        with torch.no_grad():
            expected, got = net(x), sub(x)
        assert (expected - got).abs().max() <= 1e-5
        # the extracted model is plain PyTorch: no sliver module anywhere in it
        assert all(type(m).__module__.startswith("torch.") for m in sub.modules())
        flops = FlopCounterMode(display=False)
        with flops, torch.no_grad():
            sub(x[:1])
        costs = net.costs(config)
        assert costs["macs"] * 2 == flops.get_total_flops()
        assert costs["params"] == sum(p.numel() for p in sub.parameters())
        # exported as sliver.export does: a dynamic batch axis, so batch 1 and 16 both run
        session = ort_session(export_onnx(sub, x[:1], dynamic_axes=net.onnx_dynamic_axes))
        for batch in (x[:1], x16):
            with torch.no_grad():
                want = sub(batch)
            onnx_out = session.run(None, {session.get_inputs()[0].name: batch.numpy()})[0]
            assert np.abs(onnx_out - want.numpy()).max() <= 1e-4

    check()


def test_what_becomes_elastic():
    _, resnet = tiny("tiny_resnet18")
    found = resnet.describe()
    # layer1.0 keeps 8 channels in and out (no downsample), so it can be skipped; the first block of later stages cannot
    assert [b["block"] for b in found["blocks"]] == ["layer1.0", "layer1.1", "layer2.1", "layer3.1", "layer4.1"]
    assert {f["reason"] for f in found["fixed"]} == {"the model's input", "the model's output"}
    # the residual stream of a stage is one group: conv1 (stem) and every block's conv2 in layer1 share it
    assert found["elastic"][0]["group"] == "conv1" and found["elastic"][0]["block"] == ""
    _, resnext = tiny("resnext_tiny")
    reasons = [f["reason"] for f in resnext.describe()["fixed"]]
    assert any("grouped convolution" in r for r in reasons)
    _, densenet = tiny("tiny_densenet")
    # a dense layer's new channels stay elastic although later layers read them through concatenations
    assert len(densenet.describe()["elastic"]) >= 5


def test_skipped_blocks_make_their_widths_inactive():
    _, net = tiny("tiny_resnet18")
    config = net.max_config()
    config["depth"] = [0] * len(config["depth"])
    other = copy.deepcopy(config)
    owned = [i for i, row in enumerate(net.describe()["elastic"]) if row["block"]]
    for i in owned:
        other["width"][i] = 0.25
    assert net.space.key(config) == net.space.key(other)
    assert net.costs(config) == net.costs(other)
    # count() agrees with enumeration on a space small enough to enumerate
    _, inception = tiny("tiny_inception")
    assert inception.space.count() == len(inception.space.enumerate())


def test_fixed_and_leaf_modules_stay_full_width():
    torch.manual_seed(0)
    net = elastify(bm.tiny_resnet18(), torch.randn(1, 3, 32, 32), fixed=["layer4.*"], leaf=["layer3"])
    fixed = {f["group"]: f["reason"] for f in net.describe()["fixed"]}
    assert fixed["layer4.0.conv1"] == "marked fixed"
    assert any("layer3" in r for r in fixed.values())
    assert all(not row["group"].startswith(("layer3", "layer4")) for row in net.describe()["elastic"])


class Branchy(nn.Module):
    """A model whose forward branches on a tensor's value: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3)
        self.gate = Gate()
        self.conv = nn.Conv2d(8, 16, 3)
        self.fc = nn.Linear(16, 2)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(self.gate(self.stem(x)))).mean((2, 3)))


class Gate(nn.Module):
    def forward(self, x):
        return x if x.sum() > 0 else -x


def test_untraceable_model_is_a_one_line_error_naming_the_module_and_leaf_fixes_it():
    with pytest.raises(ElastifyError) as err:
        elastify(Branchy(), torch.randn(1, 3, 16, 16))
    message = str(err.value)
    assert "'gate'" in message and "leaf" in message and "\n" not in message
    net = elastify(Branchy(), torch.randn(1, 3, 16, 16), leaf=["gate"])
    assert any("gate" in f["reason"] for f in net.describe()["fixed"])
    assert [row["group"] for row in net.describe()["elastic"]] == ["conv"]


def test_bad_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(ElastifyError, match="width_choices"):
        elastify(bm.tiny_resnet18(), torch.randn(1, 3, 32, 32), width_choices=[0.5, 0.75])
    with pytest.raises(ElastifyError, match="input_shape"):
        elastify(bm.tiny_resnet18(), torch.randn(1, 1, 32, 32))
    with pytest.raises(ElastifyError, match="no callable 'nope'"):
        AutoSupernet(module="byom_models:nope", input_shape=[3, 32, 32])
    bad = tmp_path / "w.pt"
    torch.save({"conv1.weight": torch.zeros(1)}, bad)
    with pytest.raises(ElastifyError, match="does not fit the model"):
        AutoSupernet(module="byom_models:tiny_resnet18", weights=str(bad), input_shape=[3, 32, 32])
    pickled = tmp_path / "m.pt"
    torch.save(bm.tiny_resnet18(), pickled)
    with pytest.raises(ElastifyError, match="pickled models are refused"):
        AutoSupernet(module="byom_models:tiny_resnet18", weights=str(pickled), input_shape=[3, 32, 32])


def test_weights_file_and_num_classes(tmp_path):
    torch.manual_seed(0)
    model = _randomise_bn(bm.tiny_resnet18(num_classes=10)).eval()
    path = tmp_path / "w.safetensors"
    from safetensors.torch import save_file

    save_file(model.state_dict(), str(path))
    net = AutoSupernet(module="byom_models:tiny_resnet18", kwargs={"num_classes": 10}, weights=str(path),
                       input_shape=[3, 32, 32]).eval()
    with torch.no_grad():
        assert (net(X) - model(X)).abs().max() <= 1e-5
    assert net.teacher_knows_task
    five = AutoSupernet(module="byom_models:tiny_resnet18", kwargs={"num_classes": 10}, weights=str(path),
                        input_shape=[3, 32, 32], num_classes=5)
    assert five(X).shape == (4, 5) and not five.teacher_knows_task


def test_reorder_and_fit_head_keep_the_function_and_the_teacher_in_step():
    torch.manual_seed(0)
    model = _randomise_bn(bm.tiny_mobilenet_v2(num_classes=10)).eval()
    net = elastify(copy.deepcopy(model), torch.randn(1, 3, 32, 32), importance=None).eval()
    y = torch.arange(4) % 10
    before = net(X).detach()
    net.reorder("gradient", [(X, y)])
    net.activate(net.max_config())
    assert (net(X) - before).abs().max() <= 1e-5
    x = torch.randn(40, 3, 32, 32)
    acc = net.fit_head(x, torch.arange(40) % 10)
    assert 0 <= acc <= 100
    with torch.no_grad():
        assert (net(X) - net.teacher_model()(X)).abs().max() <= 1e-5


def test_teacher_stays_frozen_in_training():
    torch.manual_seed(0)
    net = elastify(bm.tiny_resnet18(num_classes=10), torch.randn(1, 3, 32, 32))
    net.train()
    assert not net.teacher_model().training
    assert all(not p.requires_grad for p in net.teacher_model().parameters())
    stats = net.teacher_model().bn1.running_mean.clone()
    net.activate(net.space.sample(0))
    net(torch.randn(8, 3, 32, 32)).sum().backward()
    assert torch.equal(net.teacher_model().bn1.running_mean, stats)


def test_bn_recalibration_leaves_the_teacher_alone():
    from sliver.train.bn import recalibrate_bn

    torch.manual_seed(0)
    net = elastify(_randomise_bn(bm.tiny_resnet18(num_classes=10)), torch.randn(1, 3, 32, 32))
    before = net.teacher_model().bn1.running_var.clone()
    recalibrate_bn(net, net.space.sample(1), [(torch.randn(8, 3, 32, 32),)], batches=1)
    assert torch.equal(net.teacher_model().bn1.running_var, before)
    assert not torch.equal(net.model.bn1.running_var, before)


def test_grey_small_images_are_fitted_to_the_model_input():
    _, net = tiny("tiny_resnet18")
    x = torch.randn(2, 1, 16, 16)
    assert net.prepare_input(x, None).shape == (2, 3, 32, 32)


@pytest.mark.slow
@pytest.mark.parametrize("factory", ["resnet18", "resnet50", "mobilenet_v2"])
def test_full_size_models_equal_the_original(factory):
    torch.manual_seed(0)
    model = _randomise_bn(getattr(bm, factory)()).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected = model(x)
        net = elastify(model, x).eval()
        assert (net(x) - expected).abs().max() <= 1e-5 * max(1.0, float(expected.abs().max()))
        config = net.space.sample(0)
        net.activate(config)
        assert (net.extract(config)(x) - net(x)).abs().max() <= 1e-5


def test_trainer_distils_from_the_original_only_when_it_knows_the_classes(tmp_path):
    from sliver.config import ConfigError
    from sliver.train.config import RunConfig
    from sliver.train.trainer import Trainer

    def config(supernet, **sampling):
        return RunConfig.model_validate({
            "supernet": supernet, "data": {"name": "digits"},
            "train": {"epochs": 1, "batch_size": 64, "threads": 1, "bn_batches": 1, "sampling": sampling}})

    own = {"family": "auto", "module": "byom_models:tiny_resnet18", "kwargs": {"num_classes": 10}, "input_shape": [3, 8, 8]}
    trainer = Trainer(config(own), tmp_path / "a", progress=False)
    assert trainer.teacher is trainer.supernet.teacher_model()
    x, y = trainer.data.train.tensors[0][:64], trainer.data.train.tensors[1][:64]
    assert np.isfinite(trainer.train_step(x, y))
    new_head = {**own, "kwargs": {"num_classes": 1000}, "num_classes": 10}
    assert Trainer(config(new_head), tmp_path / "b", progress=False).teacher is None
    assert Trainer(config(new_head, teacher="original"), tmp_path / "c", progress=False).teacher is not None
    with pytest.raises(ConfigError, match="carries no original model"):
        Trainer(config({"family": "mobilenet", "preset": "digits"}, teacher="original"), tmp_path / "d", progress=False)
