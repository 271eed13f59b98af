"""Benchmark problems built from published measurements and predictors (no torch needed to score them)."""

from sliver.bench.nb201 import NB201, NB201Evaluator, data_root
from sliver.bench.ofa import OFAMobileNetV3, OFAResNet50

__all__ = ["NB201", "NB201Evaluator", "OFAMobileNetV3", "OFAResNet50", "data_root"]
