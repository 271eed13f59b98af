"""Export: pick rules, verified standalone models, load_model without the super-network."""

import json

import numpy as np
import pytest
import torch

from sliver.core import get_objective
from sliver.elastic.mobilenet import ElasticMobileNet
from sliver.export import ExportError, export_subnetwork, front_points, load_model, pick
from sliver.measure.model import ModelEvaluator

OBJECTIVES = [get_objective("accuracy"), get_objective("latency_ms")]
POINTS = [
    ({"id": 0}, {"accuracy": 90.0, "latency_ms": 1.0}),
    ({"id": 1}, {"accuracy": 95.0, "latency_ms": 2.0}),
    ({"id": 2}, {"accuracy": 97.0, "latency_ms": 4.0}),
    ({"id": 3}, {"accuracy": 94.0, "latency_ms": 3.0}),  # dominated by 1
    ({"id": 4}, {"accuracy": 97.0, "latency_ms": 5.0}),  # dominated by 2
]


def test_front_points():
    assert sorted(front_points(POINTS, OBJECTIVES)) == [0, 1, 2]


def test_pick_rules():
    assert pick(POINTS, OBJECTIVES, "latency_ms<=2 max accuracy").config == {"id": 1}
    assert pick(POINTS, OBJECTIVES, "accuracy>=96 min latency_ms").config == {"id": 2}
    # equal accuracy: the cheaper point wins
    assert pick(POINTS, OBJECTIVES, "max accuracy").config == {"id": 2}
    assert pick(POINTS, OBJECTIVES, "latency_ms <= 4.5, accuracy >= 91 min latency_ms").config == {"id": 1}
    assert pick(POINTS, OBJECTIVES, "knee").config == {"id": 1}


def test_pick_a_config_as_json_selects_exactly_it():
    from sliver.space import Dimension, SearchSpace

    space = SearchSpace([Dimension("id", (0, 1, 2, 3, 4, 5))])
    choice = pick(POINTS, OBJECTIVES, ' {"id": 3}', space)
    assert choice.config == {"id": 3} and choice.values == POINTS[3][1] and choice.rule == "explicit config"
    assert pick(POINTS, OBJECTIVES, '{"id": 5}', space).values == {}  # never measured: no stored values
    with pytest.raises(ExportError, match="not valid JSON"):
        pick(POINTS, OBJECTIVES, '{"id": 3', space)
    with pytest.raises(ValueError, match="'id'"):
        pick(POINTS, OBJECTIVES, '{"id": 9}', space)  # not a value of the space


def test_pick_that_matches_nothing_lists_the_front_ranges():
    with pytest.raises(ExportError, match=r"matches no measured sub-network; the front spans accuracy 90\.\.97 %, latency_ms 1\.\.4 ms"):
        pick(POINTS, OBJECTIVES, "latency_ms<=0.5 max accuracy")
    with pytest.raises(ExportError, match="unknown metric 'speed'"):
        pick(POINTS, OBJECTIVES, "speed<=1 max accuracy")
    with pytest.raises(ExportError, match="use 'knee'"):
        pick(POINTS, OBJECTIVES, "fastest please")


@pytest.fixture(scope="module")
def evaluator():
    from sliver.data import load_dataset

    torch.manual_seed(0)
    net = ElasticMobileNet.from_preset("digits")
    data = load_dataset("digits", seed=0)
    return ModelEvaluator(net, "cpu-torch-b1", ["accuracy", "params"], data=data, accuracy_subset=0.5, calib_batches=2)


def test_export_writes_a_verified_standalone_model(evaluator, tmp_path):
    config = evaluator.space.sample(3)
    stored = evaluator.measure(config, ["accuracy", "params"]).values
    result = export_subnetwork(evaluator, config, tmp_path / "pick", stored=stored, provenance={"study": "s", "rule": "test"})
    for name in ("model.pt", "arch.json", "model.onnx", "card.json", "card.md"):
        assert (result.path / name).is_file()
    card = json.loads((result.path / "card.json").read_text())
    assert card["metrics"] == stored and card["study"] == "s"
    assert result.checks["torch_max_abs_diff"] <= 1e-5 and result.checks["onnx_max_abs_diff"] <= 1e-4

    model = load_model(result.path)
    assert "Elastic" not in "".join(type(m).__name__ for m in model.modules())
    assert sum(p.numel() for p in model.parameters()) == stored["params"]
    evaluator.supernet.activate(config)
    x = evaluator.supernet.example_input(config, batch_size=4)
    with torch.inference_mode():
        np.testing.assert_allclose(model(x).numpy(), evaluator.supernet(x).numpy(), atol=1e-5)


def test_exported_onnx_takes_any_batch_size(evaluator, tmp_path):
    from sliver.measure.timing import ort_session

    config = evaluator.space.sample(5)
    result = export_subnetwork(evaluator, config, tmp_path / "pick")
    assert result.checks["onnx_batch_checked"] > 1
    card = json.loads((result.path / "card.json").read_text())
    assert card["onnx_dynamic_axes"] == {"0": "batch"}
    assert "model.onnx takes any batch (axis 0)" in (result.path / "card.md").read_text()
    session = ort_session((result.path / "model.onnx").read_bytes())
    model = load_model(result.path)
    for batch in (1, 16):
        x = evaluator.supernet.example_input(config, batch_size=batch, seed=batch)
        (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        with torch.inference_mode():
            np.testing.assert_allclose(got, model(x).numpy(), atol=1e-4)


def test_export_refuses_an_accuracy_mismatch(evaluator, tmp_path):
    config = evaluator.space.sample(4)
    with pytest.raises(ExportError, match="differs from the stored"):
        export_subnetwork(evaluator, config, tmp_path / "bad", stored={"accuracy": 101.0})
    assert not (tmp_path / "bad").exists()


def test_load_model_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no exported model"):
        load_model(tmp_path)
    torch.save({"weights": 1}, tmp_path / "model.pt")
    with pytest.raises(ExportError, match="not a sliver export"):
        load_model(tmp_path)


def test_exported_vit_takes_any_batch_size(tmp_path):
    from sliver.elastic.vit import ElasticViT
    from sliver.measure.timing import ort_session

    net = ElasticViT(hidden=16, num_layers=2, num_heads=2, ffn=32, head_choices=[1, 2], ffn_choices=[16, 32]).eval()
    config = net.space.sample(1)
    result = export_subnetwork(ModelEvaluator(net, "cpu-torch-b1", ["macs"]), config, tmp_path / "vit")
    session = ort_session((result.path / "model.onnx").read_bytes())
    model = load_model(result.path)
    for batch in (1, 16):
        x = net.example_input(config, batch_size=batch, seed=batch)
        (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        with torch.inference_mode():
            np.testing.assert_allclose(got, model(x).numpy(), atol=1e-4)
