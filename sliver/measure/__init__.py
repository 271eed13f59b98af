"""Measuring sub-networks: objectives, hardware targets, latency, accuracy and the evaluator.

Importing this package stays light (no torch): the torch-based parts live in
their own modules (``hardware``, ``latency``, ``accuracy``, ``model``) and are
imported where needed, so that tabular searches run without a deep-learning
framework.
"""

from sliver.measure.base import EvalResult, Evaluator
from sliver.measure.objectives import BUILTIN, Objective, get_objective

__all__ = ["BUILTIN", "EvalResult", "Evaluator", "Objective", "get_objective"]
