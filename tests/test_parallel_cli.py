"""The CLI side: a search YAML's ``executor:`` section on a real super-network checkpoint, and ``sliver train --nproc``."""

import re

import pytest
import yaml
from typer.testing import CliRunner

from sliver.cli import app


def train_digits(tmp_path):
    from sliver.train import Trainer
    from sliver.train.config import RunConfig

    cfg = RunConfig(supernet={"family": "mobilenet", "preset": "digits"}, data={"name": "digits"},
                    train={"epochs": 1, "batch_size": 256, "warmup_epochs": 0, "bn_batches": 1, "threads": 1})
    return Trainer(cfg, tmp_path / "run", progress=False).fit()["checkpoint"]


def search_yaml(tmp_path, checkpoint, executor, name):
    cfg = {
        "problem": {"kind": "supernet", "checkpoint": checkpoint, "accuracy_subset": 0.3},
        "objectives": ["accuracy", "macs"], "strategy": {"name": "random"}, "budget": 4, "seed": 5,
        "store": f"sqlite:///{tmp_path / (name + '.db')}", "study": name, "executor": executor,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def front_rows(output):
    """The table rows (accuracy, MACs, config) the command printed."""
    return sorted(re.findall(r"│\s*([\d.]+)\s*│\s*([\d.e+]+)\s*│\s*(.+?)\s*│", output))


@pytest.mark.slow
def test_search_yaml_executor_section_local_and_processes_agree(tmp_path):
    checkpoint = train_digits(tmp_path)
    runner = CliRunner()
    outputs = {}
    for name, executor in [("local", {"kind": "local"}), ("procs", {"kind": "processes", "workers": 2})]:
        result = runner.invoke(app, ["search", str(search_yaml(tmp_path, checkpoint, executor, name))])
        assert result.exit_code == 0, result.output
        assert "4 unique evaluations" in result.output and "0 failed" in result.output
        outputs[name] = front_rows(result.output)
    assert outputs["local"] and outputs["local"] == outputs["procs"]  # workers loaded the checkpoint themselves


def test_search_yaml_with_a_bad_executor_fails_in_one_line(tmp_path):
    path = search_yaml(tmp_path, "missing.pt", {"kind": "local", "address": "tcp://10.0.0.1:8786"}, "bad")
    result = CliRunner().invoke(app, ["search", str(path)])
    assert result.exit_code == 2
    assert "field 'executor': Value error, 'address' only applies to kind 'dask'" in result.output


def test_train_nproc_refuses_a_batch_that_does_not_split(tmp_path):
    cfg = {"supernet": {"family": "mobilenet", "preset": "digits"}, "data": {"name": "digits"},
           "train": {"epochs": 1, "batch_size": 33}}
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(cfg))
    result = CliRunner().invoke(app, ["train", str(path), "--nproc", "2", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "'train.batch_size': 33 images cannot be split over 2 processes" in result.output
    assert not (tmp_path / "o").exists()
