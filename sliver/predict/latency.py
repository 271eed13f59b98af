"""A learned latency predictor: latency (ms) of sub-networks from their feature rows.

:class:`LatencyPredictor` maps feature rows (one-hot genes from
:meth:`sliver.space.SearchSpace.features`, cost features such as MACs and
params per stage, or both) to latency in ms. It reuses the search's predictor
family (:class:`sliver.predict.Predictor`), picks the member with the best
cross-validated Kendall tau, and standardises the columns first so that
features in channels, MACs and one-hots share one scale.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.preprocessing import StandardScaler

from sliver.predict.models import Predictor

#: the families tried by default: each fits a few thousand rows in well under a second
#: (the MLP member is left out because it does not)
FAST_FAMILIES = ("ridge", "svr", "lgbm")


class LatencyPredictor:
    """Latency (ms) from feature rows, with the family chosen by cross-validated Kendall tau."""

    def __init__(self, kind: str = "auto", members: Sequence[str] = FAST_FAMILIES, seed: int = 0) -> None:
        self._model = Predictor(kind, seed=seed, members=members)
        self._scaler: StandardScaler | None = None

    @property
    def n_features(self) -> int | None:
        return None if self._scaler is None else int(self._scaler.n_features_in_)

    @property
    def chosen(self) -> str:
        """The family in use (the ``kind`` unless it was ``"auto"``)."""
        return self._model.chosen or self._model.kind

    def fit(self, X: np.ndarray, latency_ms: np.ndarray) -> "LatencyPredictor":
        """Fit on feature rows ``X`` ``(n, n_features)`` and measured latencies (ms)."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2:
            raise ValueError(f"features: expected a 2-D matrix (one row per sub-network), got shape {X.shape}")
        self._scaler = StandardScaler().fit(X)  # a constant column stays constant (zero)
        self._model.fit(self._scaler.transform(X), latency_ms)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted latency (ms) of each feature row (or of one feature vector)."""
        if self._scaler is None:
            raise RuntimeError("latency predictor is not fitted; call fit(X, latency_ms) first")
        X = np.asarray(X, dtype=np.float64)
        X = X[None, :] if X.ndim == 1 else X
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"features: expected {self.n_features} values per row (as in fit), got shape {X.shape}")
        return self._model.predict(self._scaler.transform(X))
