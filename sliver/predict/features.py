"""Predictor features straight from integer-encoded configs (what pymoo works on)."""

from __future__ import annotations

import numpy as np

from sliver.space import SearchSpace


def features_from_vectors(space: SearchSpace, X: np.ndarray) -> np.ndarray:
    """:meth:`SearchSpace.features` of each encoded row of ``X``.

    Spaces without depth gates have no inactive genes, so the one-hot encoding
    is built in one vectorised step; gated spaces go config by config.
    """
    X = np.asarray(X, dtype=np.int64).reshape(-1, space.n_genes)
    if space.gates:
        return space.features([space.decode(x) for x in X])
    card = space.gene_cardinalities
    starts = np.concatenate([[0], np.cumsum(card)[:-1]])
    out = np.zeros((len(X), int(card.sum())))
    out[np.arange(len(X))[:, None], starts[None, :] + X] = 1.0
    return out
