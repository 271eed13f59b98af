"""Trainer: learning, sandwich and distillation mechanics, progressive phases, metrics, exact resume."""

import json

import pytest
import torch
from test_train_toy import ToyNet, digits, run_config

import sliver.train.trainer as trainer_mod
from sliver.train import Trainer, load_supernet
from sliver.train.checkpoint import CheckpointError


def make(tmp_path, seed=0, **train):
    torch.manual_seed(seed)
    return Trainer(run_config(**train), tmp_path, supernet=ToyNet(), data=digits(), progress=False)


def metrics(path):
    return [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]


def test_loss_decreases_and_subnetworks_learn(tmp_path):
    summary = make(tmp_path, epochs=3).fit()
    rows = metrics(tmp_path)
    assert [r["epoch"] for r in rows] == [1, 2, 3] and summary["finished"]
    assert rows[-1]["loss"] < 0.6 * rows[0]["loss"]
    assert rows[-1]["acc_max"] > 85 and rows[-1]["acc_min"] > 60 and rows[-1]["acc_mid"] > 60
    assert {"lr", "phase", "images_per_s", "train_seconds", "step"} <= set(rows[0])


def test_sandwich_step_trains_max_and_min_every_step(tmp_path):
    trainer = make(tmp_path)
    activated = []
    original = trainer.supernet.activate
    trainer.supernet.activate = lambda c: activated.append(dict(c)) or original(c)
    x, y = digits().train.tensors
    for _ in range(6):
        activated.clear()
        trainer.train_step(x[:64], y[:64])
        trainer.step += 1
        net = trainer.supernet
        assert activated[0] == net.max_config() and activated[1] == net.min_config() and len(activated) == 4
        assert [p.role for p in trainer.last_picks] == ["max", "min", "random", "random"]


def test_sandwich_shares_the_resolution_only_when_asked(tmp_path):
    from sliver.elastic.mobilenet import ElasticMobileNet

    net = ElasticMobileNet.from_preset("digits")
    plain = Trainer(run_config(), tmp_path / "fx", supernet=net, data=digits(), progress=False)
    assert plain.rule.shared == [] and plain.rule.picks(0)[1].config == net.min_config()
    shared = Trainer(run_config(sampling={"rule": "sandwich", "shared": ["r"]}), tmp_path / "mb", supernet=net, data=digits(), progress=False)
    picks = [shared.rule.picks(s) for s in range(12)]
    assert {p.config["r"] for ps in picks for p in ps} == {6, 8}
    assert all(len({p.config["r"] for p in ps}) == 1 for ps in picks)


def test_inplace_distillation_uses_the_largest_networks_detached_outputs(tmp_path, monkeypatch):
    trainer = make(tmp_path)
    net = trainer.supernet
    x, y = digits().train.tensors[0][:64], digits().train.tensors[1][:64]
    net.train()
    net.activate(net.max_config())
    with torch.no_grad():
        expected = torch.softmax(net(x), dim=1)
    seen = []

    def spy(logits, soft, temperature=1.0):
        seen.append(soft)
        return trainer_mod.F.cross_entropy(logits / temperature, soft)

    monkeypatch.setattr(trainer_mod, "distillation_loss", spy)
    trainer.train_step(x, y)
    assert len(seen) == 3  # min + 2 random students, the teacher itself learns from the labels
    for soft in seen:
        assert not soft.requires_grad and soft.grad_fn is None
        assert torch.allclose(soft, expected, atol=1e-6)
    # without distillation every pick learns from the labels
    seen.clear()
    trainer = Trainer(run_config(sampling={"rule": "sandwich", "distill": False}), tmp_path / "b", supernet=ToyNet(),
                      data=digits(), progress=False)
    trainer.train_step(x, y)
    assert seen == []


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_distillation_loss_equals_autograd_cross_entropy_in_value_and_gradient(temperature, monkeypatch):
    torch.manual_seed(0)
    logits = torch.randn(37, 1000, dtype=torch.float64) * 4
    soft = torch.softmax(torch.randn(37, 1000, dtype=torch.float64) * 4, dim=-1)
    monkeypatch.setattr(trainer_mod._SoftCrossEntropy, "BLOCK", 5000)  # several blocks of rows, the last one short
    a, b = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    expected = torch.nn.functional.cross_entropy(a / temperature, soft) * temperature**2
    got = trainer_mod.distillation_loss(b, soft, temperature)
    (3 * expected).backward()
    (3 * got).backward()
    assert got.dtype == logits.dtype and got.shape == ()
    assert got.item() == pytest.approx(expected.item(), rel=1e-12)
    torch.testing.assert_close(b.grad, a.grad, rtol=1e-10, atol=1e-14)
    # soft targets that carry a gradient, and logits of other shapes, take the autograd path
    live = soft.clone().requires_grad_(True)
    assert trainer_mod.distillation_loss(logits, live, temperature).grad_fn is not None
    grid = logits.reshape(37, 10, 100).transpose(1, 2)  # (N, C, d), class probabilities along dim 1
    torch.testing.assert_close(trainer_mod.distillation_loss(grid, soft.reshape(37, 10, 100).transpose(1, 2)),
                               torch.nn.functional.cross_entropy(grid, soft.reshape(37, 10, 100).transpose(1, 2)))


def test_students_mix_distillation_and_labels_by_distill_weight(tmp_path):
    trainer = make(tmp_path, sampling={"rule": "sandwich", "n": 0, "distill_weight": 0.25})
    net, smoothing = trainer.supernet, trainer.config.train.label_smoothing
    x, y = digits().train.tensors[0][:64], digits().train.tensors[1][:64]
    net.train()  # batch statistics, as in the step, so the losses below are the step's own
    with torch.no_grad():
        net.activate(net.max_config())
        teacher = net(x)
        net.activate(net.min_config())
        student = net(x)
    ce = lambda z: trainer_mod.F.cross_entropy(z, y, label_smoothing=smoothing)  # noqa: E731
    kd = trainer_mod.F.cross_entropy(student, torch.softmax(teacher, dim=1))
    expected = (ce(teacher) + 0.25 * kd + 0.75 * ce(student)) / 2  # the step returns the mean over max and min
    assert trainer.train_step(x, y) == pytest.approx(float(expected), rel=1e-5)


def test_progressive_run_goes_through_its_phases_with_their_learning_rates(tmp_path):
    phases = [{"name": "full", "epochs": 1, "lr": 0.1}, {"name": "kernel", "epochs": 1, "lr": 0.05, "unlock": ["k"]},
              {"name": "width", "epochs": 1, "lr": 0.03, "unlock": ["w"]}]
    trainer = make(tmp_path, epochs=99, warmup_epochs=0, sampling={"rule": "progressive", "n": 1, "phases": phases})
    assert trainer.total_epochs == 3  # the phases decide the length, not train.epochs
    spe = trainer.steps_per_epoch
    assert trainer.schedule.lr(0) == pytest.approx(0.1) and trainer.schedule.lr(spe) == pytest.approx(0.05)
    assert trainer.schedule.lr(2 * spe) == pytest.approx(0.03)
    trainer.fit()
    rows = metrics(tmp_path)
    assert [r["phase"] for r in rows] == ["full", "kernel", "width"]
    assert rows[-1]["acc_max"] > 70


@pytest.mark.parametrize("rule", ["uniform", "nested"])
def test_uniform_and_nested_rules_train(tmp_path, rule):
    trainer = make(tmp_path, epochs=2, sampling={"rule": rule})
    trainer.fit()
    rows = metrics(tmp_path)
    assert rows[-1]["loss"] < rows[0]["loss"] and rows[-1]["acc_max"] > 50
    assert len(trainer.last_picks) == 1


def test_killed_and_resumed_run_gives_bit_identical_weights(tmp_path):
    whole = make(tmp_path / "whole", epochs=2).fit()
    first = make(tmp_path / "killed", epochs=2)
    out = first.fit(max_steps=28)  # last checkpoint at step 25: steps 26-28 are lost, as in a kill
    assert out["stopped"] and first.step == 28
    torch.manual_seed(999)  # a different process would have other RNG states and other initial weights
    resumed = make(tmp_path / "killed", seed=7, epochs=2)
    assert resumed.resumed and resumed.step == 25
    done = resumed.fit()
    assert done["hash"] == whole["hash"]
    assert load_supernet(tmp_path / "killed" / "checkpoint.pt")[1]["hash"] == whole["hash"]
    a = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("train_seconds", "images_per_s")} for r in rows]  # noqa: E731
    assert strip(metrics(tmp_path / "killed")) == strip(metrics(tmp_path / "whole"))
    # restarting a finished run does nothing
    again = make(tmp_path / "killed", epochs=2)
    assert again.fit()["hash"] == whole["hash"] and again.step == again.total_steps


def test_load_supernet_returns_weights_hash_data_and_config(tmp_path):
    trainer = make(tmp_path, epochs=1)
    summary = trainer.fit()
    net, info = load_supernet(tmp_path / "checkpoint.pt")
    assert isinstance(net, ToyNet) and not net.training
    assert info["hash"] == summary["hash"] and info["finished"] and info["step"] == trainer.steps_per_epoch
    assert info["data"]["name_or_path"] == "digits" and info["config"]["train"]["epochs"] == 1
    for k, v in trainer.supernet.state_dict().items():
        assert torch.equal(net.state_dict()[k], v)


def test_corrupt_truncated_and_tampered_checkpoints_are_clear_errors(tmp_path):
    make(tmp_path, epochs=1).fit(max_steps=5)
    path = tmp_path / "checkpoint.pt"
    raw = path.read_bytes()
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint at all")
    (tmp_path / "half.pt").write_bytes(raw[: len(raw) // 2])
    for name in ("garbage.pt", "half.pt"):
        with pytest.raises(CheckpointError, match="corrupt, truncated") as err:
            load_supernet(tmp_path / name)
        assert "\n" not in str(err.value) and "point to the run's checkpoint.pt" in str(err.value)
        assert "weights_only" not in str(err.value)  # torch's own long explanation is not the user's concern
    state = torch.load(path, weights_only=True)
    state["model"]["fc.bias"] += 1
    torch.save(state, tmp_path / "tampered.pt")
    with pytest.raises(CheckpointError, match="do not match the stored content hash"):
        load_supernet(tmp_path / "tampered.pt")
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_supernet(tmp_path / "missing.pt")


def test_resuming_with_another_architecture_or_data_is_refused(tmp_path):
    make(tmp_path, epochs=1).fit(max_steps=5)
    with pytest.raises(CheckpointError, match="different super-network \\('width' is 16 in the checkpoint but 12 now\\)"):
        Trainer(run_config(epochs=1), tmp_path, supernet=ToyNet(width=12), data=digits(), progress=False)
    from sliver.data import load_dataset

    other = load_dataset("digits", seed=1)
    with pytest.raises(CheckpointError, match="trained on data"):
        Trainer(run_config(epochs=1), tmp_path, supernet=ToyNet(), data=other, progress=False)


def test_data_that_does_not_fit_the_supernet_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="set supernet.num_classes: 10"):
        Trainer(run_config(), tmp_path, supernet=ToyNet(num_classes=3), data=digits(), progress=False)
    with pytest.raises(ValueError, match="does not fit the super-network"):
        Trainer(run_config(), tmp_path, supernet=ToyNet(in_channels=3), data=digits(), progress=False)


def test_weight_decay_skips_norms_and_biases_and_lr_warms_up_then_decays(tmp_path):
    trainer = make(tmp_path, epochs=4, warmup_epochs=1, weight_decay=1e-3)
    decay, no_decay = trainer.optimizer.param_groups
    assert decay["weight_decay"] == 1e-3 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    assert sum(p.numel() for g in (decay, no_decay) for p in g["params"]) == sum(p.numel() for p in trainer.supernet.parameters())
    spe, lr = trainer.steps_per_epoch, trainer.schedule.lr
    warm = [lr(s) for s in range(spe)]
    assert warm == sorted(warm) and warm[0] < 0.01 and lr(spe) == pytest.approx(0.1, rel=1e-3)
    decay_part = [lr(s) for s in range(spe, 4 * spe)]
    assert decay_part == sorted(decay_part, reverse=True) and decay_part[-1] < 1e-3
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(lr(0))  # LambdaLR applies it from step 0


def test_fixed_targets_of_a_classifier_take_the_most_accurate_within_each_size(tmp_path):
    from sliver.store import ResultStore
    from sliver.train.trainer import TARGETS_STORE

    targets = {"sizes": [0.6], "cost": "params", "budget": 6, "val_examples": 100}
    trainer = make(tmp_path, sampling={"rule": "fixed", "targets": targets})
    store = ResultStore(f"sqlite:///{tmp_path / TARGETS_STORE}")
    trials = store.trials(store.list_studies()[0].id)
    net = trainer.supernet
    full = net.costs(net.max_config())["params"]
    inside = [t for t in trials if t.values["params"] <= 0.6 * full]
    assert len(trials) == 6 and inside
    assert trainer.rule.configs == [max(inside, key=lambda t: t.values["accuracy"]).config]  # accuracy: higher is better
    assert trainer.evaluate({"c": trainer.rule.configs[0]}, val_examples=100)["c"] == pytest.approx(
        max(t.values["accuracy"] for t in inside))


def test_each_epoch_of_a_fixed_run_scores_the_networks_it_trains(tmp_path):
    net = ToyNet()
    listed = [net.min_config(), middle := trainer_mod.middle_config(net)]
    trainer = make(tmp_path, epochs=1, sampling={"rule": "fixed", "configs": listed})
    trainer.fit()
    row = metrics(tmp_path)[-1]
    assert {"acc_max", "acc_mid", "acc_min", "acc_fixed1", "acc_fixed2"} <= set(row) and "acc_fixed3" not in row
    assert row["acc_fixed1"] == pytest.approx(row["acc_min"]) and row["acc_fixed2"] == pytest.approx(row["acc_mid"])
    assert trainer.evaluate({"m": middle})["m"] == pytest.approx(row["acc_fixed2"])  # the weights after the epoch
    assert " fixed1 " in trainer_mod._format_record(row) and " fixed2 " in trainer_mod._format_record(row)
    sandwich = make(tmp_path / "sandwich", epochs=1)
    assert set(sandwich.epoch_configs()) == {"max", "mid", "min"}
