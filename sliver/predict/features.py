"""Predictor features straight from integer-encoded configs (what pymoo works on)."""

from __future__ import annotations

import numpy as np

from sliver.space import SearchSpace


def features_from_vectors(space: SearchSpace, X: np.ndarray) -> np.ndarray:
    """:meth:`SearchSpace.features` of each encoded row of ``X`` (one numpy pass, see :meth:`SearchSpace.features_vectors`)."""
    return space.features_vectors(np.asarray(X).reshape(-1, space.n_genes))
