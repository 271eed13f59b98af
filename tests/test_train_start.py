"""train.start: a linear-probe head and importance-sorted units before a fresh run's first step; text batches by length."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from sliver.config import ConfigError
from sliver.data import DataBundle
from sliver.elastic.spec import from_spec
from sliver.train.config import RunConfig
from sliver.train.trainer import Trainer

SPEC = {"family": "bert", "init": "random", "vocab_size": 50, "max_positions": 32, "hidden": 16, "num_layers": 2,
        "num_heads": 4, "ffn": 32, "num_classes": 2, "seq_len": 24, "dropout": 0.0, "reorder": "none",
        "head_choices": [2, 4], "ffn_choices": [16, 32]}


def texts(n: int = 192, seed: int = 0) -> DataBundle:
    """Token-id 'texts' of 3..24 tokens (pad 0); the label says whether token 7 occurs."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 25, (n,), generator=gen)
    ids = torch.randint(8, 50, (n, 24), generator=gen)
    y = torch.randint(0, 2, (n,), generator=gen)
    ids[y == 1, 1] = 7
    ids[torch.arange(24)[None, :] >= lengths[:, None]] = 0
    split = lambda a, b: TensorDataset(ids[a:b], y[a:b])  # noqa: E731
    return DataBundle(name="toy-text", train=split(0, 128), val=split(128, 160), calib=split(160, 192), num_classes=2,
                      input_shape=(24,), mean=(), std=())


def config(**train) -> RunConfig:
    return RunConfig.model_validate({
        "supernet": SPEC, "data": {"name": "toy-text"},
        "train": {"epochs": 1, "batch_size": 16, "optimizer": "adamw", "lr": 1e-3, "bn_batches": 1, "checkpoint_every": 2,
                  "sampling": {"rule": "sandwich", "n": 1}, "seed": 0, **train}})


def test_start_fits_the_probe_and_sorts_units_once_and_not_on_resume(tmp_path):
    start = {"probe_examples": 96, "reorder": "gradient", "importance_batches": 2}
    torch.manual_seed(0)
    fresh = from_spec(SPEC)
    torch.manual_seed(0)
    trainer = Trainer(config(start=start), tmp_path, supernet=from_spec(SPEC), data=texts(), progress=False)
    info = trainer.start_info
    assert info["probe_examples"] == 96 and info["importance_batches"] == 2 and info["reorder"] == "gradient"
    assert info["probe_train_acc"] > 70  # chance is 50: token 7 at position 1 shows in the mean-pooled embedding
    assert not torch.equal(trainer.supernet.classifier.weight, fresh.classifier.weight)
    # reordering only permutes units: the largest network equals the probe-only model on the same inputs
    probe_only = from_spec(SPEC)
    probe_only.load_state_dict(fresh.state_dict())
    x, y = texts().train.tensors
    probe_only.fit_head(x[torch.randperm(128, generator=torch.Generator().manual_seed(0))[:96]],
                        y[torch.randperm(128, generator=torch.Generator().manual_seed(0))[:96]])
    cfg = trainer.supernet.max_config()
    for net in (trainer.supernet, probe_only):
        net.eval()
        net.activate(cfg)
    with torch.no_grad():
        a = trainer.supernet(trainer.supernet.prepare_input(x[:8], cfg))
        b = probe_only(probe_only.prepare_input(x[:8], cfg))
    assert torch.allclose(a, b, atol=1e-5)
    trainer.fit(max_steps=2)  # checkpoint_every 2: the checkpoint holds step 2
    resumed = Trainer(config(start=start), tmp_path, supernet=from_spec(SPEC), data=texts(), progress=False)
    assert resumed.resumed and resumed.start_info is None  # the checkpoint already holds the started weights
    assert torch.equal(resumed.supernet.classifier.weight, trainer.supernet.classifier.weight)


def test_start_probe_is_refused_for_a_family_without_a_probe_head(tmp_path):
    from test_train_toy import ToyNet, digits, run_config

    cfg = run_config()
    cfg.train.start = config(start={"probe_examples": 10}).train.start
    with pytest.raises(ConfigError, match=r"train\.start\.probe_examples"):
        Trainer(cfg, tmp_path, supernet=ToyNet(), data=digits(), progress=False)


def test_text_batches_hold_similar_lengths_and_cover_every_text(tmp_path):
    data = texts()
    trainer = Trainer(config(), tmp_path, supernet=from_spec(SPEC), data=data, progress=False)
    order = trainer.epoch_order(0)
    assert sorted(order.tolist()) == list(range(128))
    assert not torch.equal(order, trainer.epoch_order(1))
    lengths = (data.train.tensors[0] != 0).sum(1)
    spread = lambda o: torch.stack([lengths[b].max() - lengths[b].min() for b in o.split(16)]).float().mean()  # noqa: E731
    shuffled = torch.randperm(128, generator=torch.Generator().manual_seed(0))
    assert spread(order) < 0.5 * spread(shuffled)
