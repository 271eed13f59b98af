"""The priority/budget controller and `sliver control`."""

import json

import numpy as np
import pytest
from torch.utils.data import TensorDataset
from typer.testing import CliRunner

from sliver.cli import app
from sliver.multitask import MultiTaskData, MultiTaskEvaluator, load_multitask_data
from sliver.multitask.controller import Controller, parse_priorities
from sliver.multitask.train import MultiTaskRunConfig, train_supernet
from sliver.store import ResultStore

TASKS = ["cls", "denoise", "sr"]
runner = CliRunner()


def small(data: MultiTaskData, n_train: int, n_eval: int) -> MultiTaskData:
    cut = lambda ds, n: TensorDataset(*(t[:n] for t in ds.tensors))  # noqa: E731
    return MultiTaskData(cut(data.train, n_train), cut(data.val, n_eval), cut(data.calib, n_eval), data.image_size, data.spec)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A super-network trained for one epoch on 512 images (enough for widths to matter), and its checkpoint."""
    out = tmp_path_factory.mktemp("mt")
    data = small(load_multitask_data(), 512, 256)
    run = MultiTaskRunConfig.model_validate({"train": {"epochs": 1, "threads": 1, "bn_batches": 1}})
    net, path = train_supernet(run, out, data=data)
    return net, path, data


@pytest.fixture(scope="module")
def controller(trained, tmp_path_factory):
    net, _, data = trained
    store = ResultStore(f"sqlite:///{tmp_path_factory.mktemp('db') / 'c.db'}")
    return Controller(MultiTaskEvaluator(net, data, "h", bn_batches=1), store, n_measured=16, seed=0), store


def test_parse_priorities():
    assert parse_priorities("cls=0.6,denoise=0.3,sr=0.1", TASKS) == pytest.approx({"cls": 0.6, "denoise": 0.3, "sr": 0.1})
    assert parse_priorities("sr=2, cls=2", TASKS) == {"cls": 0.5, "denoise": 0.0, "sr": 0.5}
    assert parse_priorities({"denoise": 1}, TASKS)["denoise"] == 1.0


@pytest.mark.parametrize("text, message", [
    ("cls=0.5,seg=0.5", "unknown task 'seg'"),
    ("cls=-0.1,sr=1", "weight of 'cls' must be a finite number >= 0"),
    ("cls=0,denoise=0,sr=0", "all weights are zero"),
    ("", "all weights are zero"),
    ("cls:0.5", "must be written task=weight"),
    ("cls=abc", "weight of 'cls' must be a number"),
    ("cls=1,cls=2", "given twice"),
    ("cls=nan", "finite"),
])
def test_bad_priorities_are_one_line_errors(text, message):
    with pytest.raises(ValueError, match=message) as err:
        parse_priorities(text, TASKS)
    assert "\n" not in str(err.value)


def test_controller_keeps_the_budget_and_the_priority_order(controller):
    ctl, _ = controller
    lo, hi = ctl.feasible_range
    rng = np.random.default_rng(0)
    for _ in range(60):
        p = dict(zip(TASKS, rng.dirichlet(np.ones(3))))
        budget = float(rng.uniform(lo, hi * 1.1))
        choice = ctl.configure(p, budget)
        assert choice.macs <= budget
        assert choice.macs == ctl.evaluator.supernet.costs(choice.config)["macs"]
        top = max(p, key=p.get)
        for t in TASKS:
            if p[t] < p[top]:
                assert choice.decoder_share[top] >= choice.decoder_share[t]


def test_controller_gives_the_important_task_the_larger_decoder(controller):
    ctl, _ = controller
    lo, hi = ctl.feasible_range
    budget = (lo + hi) / 2
    a = ctl.configure("cls=0.9,denoise=0.05,sr=0.05", budget)
    b = ctl.configure("cls=0.05,denoise=0.05,sr=0.9", budget)
    assert a.decoder_share["cls"] >= a.decoder_share["sr"]
    assert b.decoder_share["sr"] >= b.decoder_share["cls"]
    # a budget above the largest network gets (close to) the largest network's predicted score
    assert ctl.configure("cls=1", hi * 2).macs <= hi * 2


def test_infeasible_budget_names_the_feasible_range(controller):
    ctl, _ = controller
    lo, hi = ctl.feasible_range
    with pytest.raises(ValueError, match=f"below the smallest network.*>= {lo:,}.*{hi:,}"):
        ctl.configure("cls=1", lo - 1)


def test_a_second_controller_measures_nothing(controller, trained):
    ctl, store = controller
    net, _, data = trained
    ev = MultiTaskEvaluator(net, data, "h", bn_batches=1)
    calls = []
    original = ev.measure
    ev.measure = lambda c, o: calls.append(c) or original(c, o)
    again = Controller(ev, store, n_measured=16, seed=0)
    assert calls == []
    assert again.configure("cls=1", 3e6).config == ctl.configure("cls=1", 3e6).config


@pytest.mark.slow
def test_cli_control(trained, tmp_path):
    _, path, _ = trained
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    base = ["control", "--checkpoint", str(path), "--db", db, "--measured", "4"]
    res = runner.invoke(app, base + ["--priorities", "cls=0.6,denoise=0.3,sr=0.1", "--budget-macs", "2e6", "--json"])
    assert res.exit_code == 0, res.output
    choice = json.loads(res.output.strip().splitlines()[-1])
    assert choice["macs"] <= 2e6 and choice["decoder_share"]["cls"] >= choice["decoder_share"]["sr"]
    for prio, budget, message in [
        ("cls=0.5,seg=0.5", "2e6", "unknown task 'seg'"),
        ("cls=-1", "2e6", "must be a finite number >= 0"),
        ("cls=0,sr=0", "2e6", "all weights are zero"),
        ("cls=1", "1e3", "below the smallest network"),
    ]:
        res = runner.invoke(app, base + ["--priorities", prio, "--budget-macs", budget])
        assert res.exit_code == 2
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and message in lines[0], res.output
