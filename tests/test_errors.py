"""Damaged or foreign files are one-line user errors that name the file; a real bug keeps its traceback."""

import json
import os
import pickle

import numpy as np
import pytest
import torch
import typer
from test_train_toy import ToyNet, digits, run_config
from typer.testing import CliRunner

from sliver.cli import app
from sliver.cli._common import run_app
from sliver.config import ConfigError, read_yaml
from sliver.data import DataError, load_dataset
from sliver.errors import SliverError, UserError
from sliver.export import ExportError, load_model
from sliver.predict.lut import OperatorLUT
from sliver.store import ResultStore
from sliver.train import Trainer, load_supernet
from sliver.train.checkpoint import FORMAT, CheckpointError, load_checkpoint, remove_stale_temporaries


def one_line_error(result, *names: str) -> str:
    """The CLI's stderr, checked to be one 'error:' line (exit code 2) that mentions every name."""
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:") and "Traceback" not in result.output, err
    for name in names:
        assert name in err, err
    return err


def test_every_sliver_error_is_a_sliver_error_and_user_errors_stay_value_errors():
    from sliver.elastic.auto.graph import ElastifyError
    from sliver.parallel import WorkerLost
    from sliver.quant import QuantError
    from sliver.space import SpaceError

    for cls in (ConfigError, SpaceError, DataError, CheckpointError, ElastifyError, QuantError, ExportError):
        assert issubclass(cls, UserError) and issubclass(cls, ValueError)
    assert issubclass(WorkerLost, SliverError) and not issubclass(WorkerLost, UserError)


def test_the_cli_prints_user_errors_in_one_line_and_keeps_tracebacks_of_bugs(monkeypatch, capsys):
    toy = typer.Typer()

    @toy.command()
    def go(kind: str) -> None:
        raise (UserError if kind == "user" else ValueError)(f"{kind} problem")

    monkeypatch.setattr("sys.argv", ["sliver", "user"])
    with pytest.raises(SystemExit) as exit_:
        run_app(toy)
    assert exit_.value.code == 2 and capsys.readouterr().err.strip() == "error: user problem"
    monkeypatch.setattr("sys.argv", ["sliver", "bug"])
    with pytest.raises(ValueError, match="bug problem"):  # not swallowed into a misleading one-liner
        run_app(toy)


# ----------------------------------------------------------------------------- result store
def test_a_random_bytes_sqlite_store_is_one_line(tmp_path):
    (tmp_path / "x.db").write_bytes(np.random.default_rng(0).bytes(4096))
    result = CliRunner().invoke(app, ["results", "list", "--db", f"sqlite:///{tmp_path / 'x.db'}"])
    err = one_line_error(result, "x.db", "cannot be read")
    assert "damaged or not a sliver store" in err


def test_a_store_cut_in_half_is_one_line(tmp_path):
    from test_store import OBJS, SPACE

    path = tmp_path / "whole.db"
    with ResultStore(f"sqlite:///{path}") as store:
        study = store.get_or_create_study("s", SPACE, OBJS, "net", "fp", settings={"pad": "x" * 20000})
        for seed in range(200):
            cfg = SPACE.sample(seed)
            store.add_trial(study.id, SPACE.key(cfg), cfg, {"accuracy": 90.0, "latency_ms": 1.0}, {}, False)
    raw = path.read_bytes()
    (tmp_path / "half.db").write_bytes(raw[: len(raw) // 2])
    for command in (["results", "list"], ["results", "show", "s"]):
        result = CliRunner().invoke(app, [*command, "--db", f"sqlite:///{tmp_path / 'half.db'}"])
        one_line_error(result, "half.db", "cannot be read")


# ----------------------------------------------------------------------------- checkpoints
def make(tmp_path, **train):
    torch.manual_seed(0)
    return Trainer(run_config(**train), tmp_path, supernet=ToyNet(), data=digits(), progress=False)


@pytest.mark.parametrize("missing", ["model", "supernet"])
def test_a_sliver_checkpoint_without_model_or_supernet_is_one_line(tmp_path, missing):
    make(tmp_path, epochs=1).fit(max_steps=5)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    del state[missing]
    assert state["format"] == FORMAT
    torch.save(state, tmp_path / "broken.pt")
    with pytest.raises(CheckpointError, match=f"broken.pt: the checkpoint has no '{missing}' section") as err:
        load_supernet(tmp_path / "broken.pt")
    assert "\n" not in str(err.value)
    state[missing] = [1, 2]  # present but not a mapping
    torch.save(state, tmp_path / "broken.pt")
    with pytest.raises(CheckpointError, match=f"no '{missing}' section"):
        load_checkpoint(tmp_path / "broken.pt")


def test_a_torn_last_metrics_line_is_dropped_and_training_resumes(tmp_path):
    make(tmp_path, epochs=2).fit(max_steps=28)  # epoch 1 is written and checkpointed, epoch 2 is not
    metrics = tmp_path / "metrics.jsonl"
    whole = metrics.read_text()
    assert len(whole.splitlines()) == 1
    metrics.write_text(whole + '{"epoch": 2, "phase": "sandw')  # a kill in the middle of writing a line
    resumed = make(tmp_path, epochs=2)
    assert resumed.resumed
    summary = resumed.fit()
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert summary["finished"] and [r["epoch"] for r in rows] == [1, 2]


def test_a_broken_metrics_line_before_the_last_is_one_line(tmp_path):
    make(tmp_path, epochs=2).fit(max_steps=28)
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("not json\n" + metrics.read_text())
    with pytest.raises(UserError, match="metrics.jsonl: line 1 is not a JSON record; delete that line"):
        make(tmp_path, epochs=2).fit()


def test_stale_temporaries_of_a_killed_save_are_removed_at_the_next_start(tmp_path):
    make(tmp_path, epochs=1).fit(max_steps=5)
    stale = [tmp_path / ".checkpoint.pt.k1ll3d.tmp", tmp_path / ".checkpoint.pt.a8b9c0.tmp"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    other = tmp_path / ".other.pt.x.tmp"  # not this checkpoint's: left alone
    other.write_bytes(b"x")
    resumed = make(tmp_path, epochs=1)
    assert resumed.resumed and not any(p.exists() for p in stale) and other.exists()
    assert remove_stale_temporaries(tmp_path / "checkpoint.pt") == []
    assert remove_stale_temporaries(tmp_path / "no-such-folder" / "checkpoint.pt") == []


# ----------------------------------------------------------------------------- data files
def test_a_garbage_or_truncated_npz_is_one_line_naming_the_file(tmp_path):
    (tmp_path / "garbage.npz").write_bytes(os.urandom(3000))
    (tmp_path / "zipish.npz").write_bytes(b"PK\x03\x04" + os.urandom(3000))
    np.savez(tmp_path / "good.npz", x=np.zeros((30, 8, 8)), y=np.arange(30) % 3)
    raw = (tmp_path / "good.npz").read_bytes()
    (tmp_path / "half.npz").write_bytes(raw[: len(raw) // 2])
    for name in ("garbage.npz", "zipish.npz", "half.npz"):
        with pytest.raises(DataError, match=f"{name}: not an .npz file") as err:
            load_dataset(str(tmp_path / name))
        assert "\n" not in str(err.value) and "allow_pickle" not in str(err.value)


def test_an_npz_with_object_arrays_names_the_file(tmp_path):
    np.savez(tmp_path / "objects.npz", x=np.array([[1], "a", None], dtype=object), y=np.arange(3))
    with pytest.raises(DataError, match="objects.npz: cannot read its arrays .*Object arrays"):
        load_dataset(str(tmp_path / "objects.npz"))
    np.savez(tmp_path / "classes.npz", x=np.zeros((30, 8, 8)), y=np.arange(30) % 3,
             classes=np.array(["a", 1, None], dtype=object))
    with pytest.raises(DataError, match="classes.npz: cannot read its arrays"):
        load_dataset(str(tmp_path / "classes.npz"))


# ----------------------------------------------------------------------------- YAML and operator tables
def test_bad_yaml_names_the_file_line_and_column(tmp_path):
    bad = tmp_path / "search.yaml"
    bad.write_text("problem:\n  kind: nb201\nbudget: [1, 2\n")
    with pytest.raises(ConfigError, match=r"search.yaml: not valid YAML at line 4, column 1: expected ',' or '\]'"):
        read_yaml(bad)
    result = CliRunner().invoke(app, ["search", str(bad)])
    one_line_error(result, "search.yaml", "line 4, column 1")
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="binary.yaml: not a text file"):
        read_yaml(tmp_path / "binary.yaml")


@pytest.mark.parametrize("text, message", [
    ("- a\n- b\n", "the top level must be a mapping"),
    ("fingerprint: [1, 2]\nfingerprint_hash: abc\nentries: {}\n", "field 'fingerprint': Input should be a valid dictionary"),
    ("fingerprint: {}\nfingerprint_hash: abc\nentries: [1, 2]\n", "field 'entries': Input should be a valid dictionary"),
    ("fingerprint: {}\nfingerprint_hash: abc\nentries: {op: fast}\n", "field 'entries.op': Input should be a valid number"),
    ("fingerprint: {}\nfingerprint_hash: abc\nentries: {op: -1}\n", "field 'entries.op': Input should be greater than or equal to 0"),
    ("fingerprint: {}\nentries: {}\n", "field 'fingerprint_hash' is missing; not a sliver lookup table"),
    ("fingerprint: {a: 1\n", "not valid YAML at line 2, column 1"),
])
def test_a_malformed_operator_table_is_one_line(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match="bad.yaml") as err:
        OperatorLUT.load(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_an_operator_table_round_trips_through_the_checked_loader(tmp_path):
    lut = OperatorLUT({"cpu": "x86", "threads": 1}, "0123", {"stem|a": 0.5, "head|b": 1.25}, copies=4)
    lut.save(tmp_path / "lut.yaml")
    back = OperatorLUT.load(tmp_path / "lut.yaml")
    assert (back.fingerprint, back.fingerprint_hash, back.entries, back.copies) == (lut.fingerprint, "0123", lut.entries, 4)


# ----------------------------------------------------------------------------- exported models
class _Payload:
    def __reduce__(self):  # what a malicious pickle does: call something on load
        return (print, ("this ran",))


def test_load_model_refuses_a_model_pt_with_code_without_suggesting_weights_only_false(tmp_path, capsys):
    with (tmp_path / "model.pt").open("wb") as f:
        pickle.dump({"arch": _Payload(), "state_dict": {}}, f, protocol=2)
    torch.save({"arch": _Payload(), "state_dict": {}}, tmp_path / "torch.pt")
    for name in ("model.pt", "torch.pt"):
        with pytest.raises(ExportError, match=f"{name} is not a sliver export and was refused") as err:
            load_model(tmp_path / name)
        assert "weights_only" not in str(err.value) and "\n" not in str(err.value)
    assert "this ran" not in capsys.readouterr().out
    (tmp_path / "garbage.pt").write_bytes(os.urandom(500))
    with pytest.raises(ExportError, match="refused"):
        load_model(tmp_path / "garbage.pt")
    torch.save({"arch": {"kind": "no-such-kind"}, "state_dict": {}}, tmp_path / "odd.pt")
    with pytest.raises(ExportError, match="odd.pt is not a usable sliver export"):
        load_model(tmp_path / "odd.pt")


def test_report_names_a_damaged_model_card(tmp_path):
    from test_store import OBJS, SPACE

    db = f"sqlite:///{tmp_path / 's.db'}"
    with ResultStore(db) as store:
        store.get_or_create_study("s", SPACE, OBJS, "net", "fp")
    search_yaml = tmp_path / "search.yaml"
    search_yaml.write_text(f"problem: {{kind: nb201}}\nobjectives: [accuracy, latency_ms]\nbudget: 3\nstore: {db}\nstudy: s\n")
    card = tmp_path / "exports" / "knee" / "card.json"
    card.parent.mkdir(parents=True)
    card.write_text('{"config": {"d": 1')  # cut short
    result = CliRunner().invoke(app, ["report", str(search_yaml), "--out", str(tmp_path / "report")])
    one_line_error(result, "card.json", "not a model card written by 'sliver export'")
