"""Every training example under examples/ is a valid `sliver train` config (checked without building anything)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sliver.train.config import load_run_config

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TRAINING = sorted(p for p in EXAMPLES.glob("*.yaml")
                  if {"supernet", "train"} <= set(yaml.safe_load(p.read_text())) and "tasks" not in yaml.safe_load(p.read_text()))


def test_the_training_examples_are_found():
    assert {"train_digits.yaml", "train_mnist.yaml", "vit_mnist.yaml", "minilm_rottentomatoes.yaml"} <= {p.name for p in TRAINING}


@pytest.mark.parametrize("path", TRAINING, ids=lambda p: p.name)
def test_training_example_validates(path):
    config, text = load_run_config(path)
    assert text == path.read_text() and config.train.epochs >= 1


def test_instatune_example_starts_from_a_probe_head_and_gradient_order():
    config, _ = load_run_config(EXAMPLES / "minilm_rottentomatoes.yaml")
    assert config.train.start.probe_examples == 1000 and config.train.start.reorder == "gradient"
    assert config.supernet["init"] == "pretrained" and config.supernet["reorder"] == "none"
