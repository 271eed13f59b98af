"""`sliver space show`: prints the space and costs of a YAML super-network; bad input is one line, exit 2."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sliver import __version__
from sliver.cli import app
from sliver.elastic import ElasticMobileNet

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
runner = CliRunner()


def test_help_and_version():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "space" in result.output
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_show_tiny_prints_dimensions_count_and_costs():
    result = runner.invoke(app, ["space", "show", str(EXAMPLES / "mobilenet_tiny.yaml")])
    assert result.exit_code == 0, result.output
    net = ElasticMobileNet.from_preset("tiny")
    for dim in ("ks", "e", "d", "r"):
        assert dim in result.output
    assert f"{net.space.count():,}" in result.output
    for config in (net.min_config(), net.max_config()):
        costs = net.costs(config)
        assert f"{costs['params']:,}" in result.output and f"{costs['macs']:,}" in result.output


@pytest.mark.parametrize("name", ["tiny", "digits", "imagenet"])
def test_show_json_matches_the_library(name):
    result = runner.invoke(app, ["space", "show", "--json", str(EXAMPLES / f"mobilenet_{name}.yaml")])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    net = ElasticMobileNet.from_preset(name)
    assert summary["distinct_subnetworks"] == net.space.count()
    assert summary["min"] == net.costs(net.min_config())
    assert summary["max"] == net.costs(net.max_config())
    assert [d["name"] for d in summary["dimensions"]] == ["ks", "e", "d", "r"]


@pytest.mark.parametrize(
    "text, field",
    [
        ("supernet:\n  family: mobilenet\n  preset: tiny\n  kernel_size: [3, 5]\n", "kernel_size"),
        ("supernet:\n  family: mobilenet\n  preset: small\n", "preset"),
        ("supernet:\n  family: mobilenet\n  preset: tiny\n  depths: [0, 1]\n", "depths"),
        ("train:\n  epochs: 3\n", "supernet"),
        ("supernet: [1, 2]\n", "supernet"),
        ("supernet: {family: mobilenet\n", "YAML"),
    ],
)
def test_bad_yaml_is_one_line_naming_the_field(tmp_path, text, field):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = runner.invoke(app, ["space", "show", str(path)])
    assert result.exit_code == 2
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1 and message.startswith("error:")
    assert field in message
    assert "Traceback" not in result.output


def test_missing_file_is_one_line(tmp_path):
    result = runner.invoke(app, ["space", "show", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "not found" in result.stderr


def test_show_multitask_training_yaml_builds_heads_from_its_tasks():
    # examples/multitask_mnist.yaml has no supernet.heads: they come from `tasks:` (as in sliver train-multitask)
    result = runner.invoke(app, ["space", "show", "--json", str(EXAMPLES / "multitask_mnist.yaml")])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["family"] == "multitask"
    assert [d["name"] for d in summary["dimensions"]] == ["enc_w", "dec_cls_w", "dec_denoise_w", "dec_sr_w"]
    assert summary["distinct_subnetworks"] == 4 ** 6  # 4 width choices for 3 encoder stages and 3 decoders
    assert summary["min"]["macs"] < summary["max"]["macs"]


def test_bad_multitask_yaml_is_one_line(tmp_path):
    path = tmp_path / "mt.yaml"
    path.write_text("tasks: [cls, colourise]\nsupernet: {family: multitask}\n")
    result = runner.invoke(app, ["space", "show", str(path)])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "colourise" in result.stderr
