"""Predictors of expensive objectives (mean and uncertainty) and their rank-quality metrics."""

from sliver.predict.models import FAMILIES, KINDS, Predictor, choose_family, cross_validate, kendall_tau, make_model, mape, spearman

__all__ = ["FAMILIES", "KINDS", "Predictor", "choose_family", "cross_validate", "kendall_tau", "make_model", "mape", "spearman"]
