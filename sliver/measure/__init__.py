"""Measuring sub-networks: hardware targets, latency, accuracy and the evaluator (objectives are in :mod:`sliver.core`).

Importing this package stays light (no torch): the torch-based parts live in
their own modules (``hardware``, ``latency``, ``accuracy``, ``model``) and are
imported where needed, so that tabular searches run without a deep-learning
framework.
"""

from sliver.measure.base import EvalResult, Evaluator, Measured

__all__ = ["EvalResult", "Evaluator", "Measured"]
