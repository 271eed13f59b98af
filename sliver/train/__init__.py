"""Training elastic super-networks: sampling rules, BN recalibration, resumable checkpoints, the Trainer."""

from sliver.train.bn import accuracy, evaluate_subnet, recalibrate_bn
from sliver.train.checkpoint import CheckpointError, load_checkpoint, load_supernet, save_checkpoint, weights_hash
from sliver.train.config import RunConfig, load_run_config
from sliver.train.sampling import NestedRule, Pick, ProgressiveRule, SamplingRule, SandwichRule, UniformRule
from sliver.train.trainer import Trainer

__all__ = [
    "CheckpointError", "NestedRule", "Pick", "ProgressiveRule", "RunConfig", "SamplingRule", "SandwichRule", "Trainer",
    "UniformRule", "accuracy", "evaluate_subnet", "load_checkpoint", "load_run_config", "load_supernet",
    "recalibrate_bn", "save_checkpoint", "weights_hash",
]
