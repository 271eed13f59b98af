"""A model the project never saw, end to end from YAML: sliver space show / train / search / export / load_model."""

from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

import sliver
from sliver.cli import app

MODELS = Path(__file__).resolve().parent / "byom_models.py"


@pytest.mark.slow
def test_own_model_from_yaml_trains_searches_and_exports(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    weights = tmp_path / "pretrained.pt"
    torch.manual_seed(0)
    import byom_models

    torch.save(byom_models.tiny_se_resnet(num_classes=10).state_dict(), weights)
    train = {
        "supernet": {"family": "auto", "module": f"{MODELS}:tiny_se_resnet", "kwargs": {"num_classes": 10},
                     "weights": str(weights), "input_shape": [3, 16, 16], "fixed": ["fc"]},
        "data": {"name": "digits"},
        "train": {"epochs": 1, "batch_size": 128, "lr": 0.05, "warmup_epochs": 0, "bn_batches": 2, "threads": 1,
                  "start": {"probe_examples": 300}, "sampling": {"rule": "sandwich", "n": 1, "distill_weight": 0.5}},
    }
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(train))
    runner = CliRunner()
    shown = runner.invoke(app, ["space", "show", "train.yaml"])
    assert shown.exit_code == 0, shown.output
    assert "skippable residual blocks" in shown.output and "layer1.0.conv1" in shown.output
    trained = runner.invoke(app, ["train", "train.yaml", "--out", "run", "--quiet"])
    assert trained.exit_code == 0, trained.output
    search = {"problem": {"kind": "supernet", "checkpoint": "run/checkpoint.pt", "target": "cpu-ort-b1"},
              "objectives": ["accuracy", "latency_ms", "macs"], "strategy": {"name": "random"}, "budget": 4,
              "seed": 0, "store": "sqlite:///s.db", "study": "byom"}
    (tmp_path / "search.yaml").write_text(yaml.safe_dump(search))
    searched = runner.invoke(app, ["search", "search.yaml"])
    assert searched.exit_code == 0, searched.output
    assert "4 unique evaluations" in searched.output
    exported = runner.invoke(app, ["export", "search.yaml", "--pick", "min macs", "--out", "exports/small"])
    assert exported.exit_code == 0, exported.output
    model = sliver.load_model(tmp_path / "exports" / "small")
    assert type(model).__module__.startswith("torch.fx")
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 10)
    from sliver.measure.timing import ort_session

    session = ort_session((tmp_path / "exports" / "small" / "model.onnx").read_bytes())
    for batch in (1, 16):
        x = torch.randn(batch, 3, 16, 16)
        (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        with torch.no_grad():
            assert abs(got - model(x).numpy()).max() <= 1e-4


def test_bad_auto_section_is_one_line(tmp_path):
    config = {"supernet": {"family": "auto", "module": "nowhere.module:make", "input_shape": [3, 8, 8]}}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["space", "show", str(tmp_path / "bad.yaml")])
    assert result.exit_code == 2
    assert "cannot import 'nowhere.module'" in result.output and "Traceback" not in result.output
    config["supernet"].update(module=f"{MODELS}:tiny_resnet18", width_choices=[0.5])
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["space", "show", str(tmp_path / "bad.yaml")])
    assert result.exit_code == 2 and "width_choices" in result.output
