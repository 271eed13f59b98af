"""`sliver measure` and `sliver results` end to end on a small real checkpoint."""

import csv
import io
import json

import pytest
from typer.testing import CliRunner

from sliver.cli import app

checkpoint = pytest.importorskip("sliver.train.checkpoint")
runner = CliRunner()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from sliver.elastic.mobilenet import ElasticMobileNet

    net = ElasticMobileNet.from_preset("digits")
    path = tmp_path_factory.mktemp("ckpt") / "digits.pt"
    checkpoint.save_checkpoint(path, {"model": net.state_dict(), "supernet": net.supernet_config(),
                                      "data": {"name_or_path": "digits", "seed": 0}})
    return path, net.space.sample(0), net.space.sample(1)


@pytest.mark.slow
def test_measure_then_results(ckpt, tmp_path):
    path, cfg_a, cfg_b = ckpt
    db = f"sqlite:///{tmp_path / 'r.db'}"
    cfg_file = tmp_path / "configs.json"
    cfg_file.write_text(json.dumps([cfg_a, cfg_b]))
    args = ["measure", "--checkpoint", str(path), "--target", "cpu-torch-b1", "--config-file", str(cfg_file),
            "--objectives", "accuracy,params,macs,model_size,latency_ms", "--accuracy-subset", "0.25",
            "--db", db, "--study", "cli", "--json"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    rows = [json.loads(line) for line in first.output.strip().splitlines()]
    assert len(rows) == 2 and not any(r["cached"] for r in rows) and not rows[0]["errors"]
    assert 0 <= rows[0]["values"]["accuracy"] <= 100 and rows[0]["values"]["latency_ms"] > 0
    again = runner.invoke(app, args[:-1])  # same measurements as a table: all from the store
    assert again.exit_code == 0 and "from the store" in again.output and "measured" not in again.output

    listed = runner.invoke(app, ["results", "list", "--db", db])
    assert listed.exit_code == 0 and "cli" in listed.output and "10 measurements" in listed.output
    as_csv = runner.invoke(app, ["results", "show", "cli", "--db", db, "--format", "csv"])
    table = list(csv.DictReader(io.StringIO(as_csv.output)))
    assert [r["seq"] for r in table] == ["1", "2"] and float(table[0]["params"]) == rows[0]["values"]["params"]
    as_json = json.loads(runner.invoke(app, ["results", "show", "cli", "--db", db, "--format", "json"]).output)
    assert as_json["trials"][1]["config"] == rows[1]["config"]


def test_user_errors_are_one_line(ckpt, tmp_path):
    path, cfg_a, _ = ckpt
    db = f"sqlite:///{tmp_path / 'e.db'}"
    bad = runner.invoke(app, ["measure", "-c", str(path), "--config", "{not json", "--db", db])
    assert bad.exit_code == 2 and "--config: not valid JSON" in bad.output
    both = runner.invoke(app, ["measure", "-c", str(path), "--db", db])
    assert both.exit_code == 2 and "exactly one of --config" in both.output
    target = runner.invoke(app, ["measure", "-c", str(path), "-t", "tpu", "--config", json.dumps(cfg_a), "--db", db])
    assert target.exit_code == 2 and "unknown hardware target 'tpu'" in target.output
    dim = runner.invoke(app, ["measure", "-c", str(path), "--config", json.dumps({**cfg_a, "r": 99}), "-o", "params", "--db", db])
    assert dim.exit_code == 2 and "dimension 'r'" in dim.output
    missing = runner.invoke(app, ["results", "list", "--db", f"sqlite:///{tmp_path / 'none.db'}"])
    assert missing.exit_code == 2 and "no result store" in missing.output
    runner.invoke(app, ["measure", "-c", str(path), "--config", json.dumps(cfg_a), "-o", "params", "--db", db])
    unknown = runner.invoke(app, ["results", "show", "nope", "--db", db])
    assert unknown.exit_code == 2 and "no study named 'nope'" in unknown.output
