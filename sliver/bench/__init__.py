"""Tabular benchmark problems built from published measurements (no torch needed)."""

from sliver.bench.nb201 import NB201, NB201Evaluator, data_root

__all__ = ["NB201", "NB201Evaluator", "data_root"]
