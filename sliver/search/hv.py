"""Pareto fronts and hypervolume (pymoo's indicator), plus a fast exact 2-D improvement for acquisition."""

from __future__ import annotations

import numpy as np
from pymoo.config import Config as _PymooConfig
from pymoo.indicators.hv import HV

# pymoo warns on import that its compiled extensions are missing; the pure-Python paths are fine here
_PymooConfig.warnings["not_compiled"] = False


def nondominated(F: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows of ``F`` (minimisation) that no other row dominates.

    Exact duplicates are all kept (none dominates the other).
    """
    F = np.asarray(F, dtype=float)
    n = len(F)
    if n == 0:
        return np.zeros(0, dtype=bool)
    if F.shape[1] == 2:
        # sort by f1 then f2: a point is non-dominated iff its f2 is below every earlier f2;
        # exact copies of a non-dominated point (adjacent in this order) are kept with it
        order = np.lexsort((F[:, 1], F[:, 0]))
        S = F[order]
        earlier_best = np.concatenate([[np.inf], np.minimum.accumulate(S[:-1, 1])])
        first = np.concatenate([[True], np.any(S[1:] != S[:-1], axis=1)])
        group = np.cumsum(first) - 1  # runs of identical points
        keep_sorted = (S[:, 1] < earlier_best)[first][group]
        keep = np.zeros(n, dtype=bool)
        keep[order] = keep_sorted
        return keep
    le = (F[:, None, :] <= F[None, :, :]).all(-1)
    lt = (F[:, None, :] < F[None, :, :]).any(-1)
    dominated = np.asarray((le & lt).any(axis=0))
    return ~dominated


def hypervolume(F: np.ndarray, ref: np.ndarray) -> float:
    """Hypervolume of the points ``F`` (minimisation) dominated below ``ref`` (pymoo's exact indicator)."""
    F = np.asarray(F, dtype=float)
    ref = np.asarray(ref, dtype=float)
    if F.size == 0:
        return 0.0
    F = F[(F < ref).all(1)]
    if len(F) == 0:
        return 0.0
    F = F[nondominated(F)]
    return float(HV(ref_point=ref)(F))


#: the reference point of :func:`normalised_hypervolume`, in every objective scaled to [0, 1]
NORMALISED_REFERENCE = 1.1


def normalised_hypervolume(F: np.ndarray, feasible: np.ndarray | None = None, scale: np.ndarray | None = None) -> float:
    """A study's "normalised hypervolume": the one number the report and the CLI print for it.

    ``F`` holds the measured points (rows, minimisation). Each objective is
    scaled to [0, 1] by its min and max over ``scale`` (default: every row of
    ``F``, feasible or not), and the hypervolume of the ``feasible`` rows
    (default: all) is taken at :data:`NORMALISED_REFERENCE` in every objective,
    so it lies in [0, 1.1^m]. Scaled to the study's own range, it tracks one
    study's progress; it does not compare studies.
    """
    F = np.asarray(F, dtype=float)
    bounds = F if scale is None else np.asarray(scale, dtype=float)
    if F.size == 0 or bounds.size == 0:
        return 0.0
    lo, hi = bounds.min(0), bounds.max(0)
    scaled = (F - lo) / np.where(hi > lo, hi - lo, 1.0)
    if feasible is not None:
        scaled = scaled[np.asarray(feasible, dtype=bool)]
    return hypervolume(scaled, np.full(F.shape[1], NORMALISED_REFERENCE))



def result_hypervolume(result) -> float:
    """A :class:`~sliver.search.SearchResult`'s normalised hypervolume over the points its study records.

    The number ``sliver search`` prints, computed as ``sliver report`` does:
    over the trials that have every objective (failed and cheap-filtered ones
    do not), the front of the feasible ones.
    """
    objectives = result.objectives
    measured = [p for p in result.points if all(o.name in p.values for o in objectives)]
    F = np.array([[p.values[o.name] * o.sign for o in objectives] for p in measured], dtype=float).reshape(-1, len(objectives))
    return normalised_hypervolume(F, np.array([p.feasible for p in measured], dtype=bool))

def hvi_2d(front: np.ndarray, P: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Exact hypervolume improvement of each point of ``P`` over ``front`` (2 objectives, minimisation).

    Vectorised: the region ``front`` dominates is a staircase; a new point adds
    the area between its corner and the staircase, segment by segment.
    """
    P = np.asarray(P, dtype=float)
    ref = np.asarray(ref, dtype=float)
    front = np.asarray(front, dtype=float).reshape(-1, 2)
    front = front[(front < ref).all(1)]
    if len(front):
        front = front[nondominated(front)]
        front = np.unique(front, axis=0)
        front = front[np.argsort(front[:, 0])]
    # staircase: on [xs[i], xs[i+1]) the dominated region reaches down to height hs[i]
    xs = np.concatenate([[-np.inf], front[:, 0], [ref[0]]])
    hs = np.concatenate([[ref[1]], front[:, 1]])
    lo = np.maximum(xs[:-1][None, :], P[:, :1])
    hi = np.minimum(xs[1:][None, :], ref[0])
    width = np.clip(hi - lo, 0.0, None)
    height = np.clip(hs[None, :] - P[:, 1:2], 0.0, None)
    return (width * height).sum(1)


def hvi(front: np.ndarray, P: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Hypervolume improvement of each row of ``P`` over ``front`` (any number of objectives)."""
    P = np.asarray(P, dtype=float)
    if P.shape[1] == 2:
        return hvi_2d(front, P, ref)
    front = np.asarray(front, dtype=float).reshape(-1, P.shape[1])
    base = hypervolume(front, ref)
    out = np.zeros(len(P))
    for i, p in enumerate(P):
        if (p < ref).all() and not (front <= p).all(1).any():
            out[i] = hypervolume(np.vstack([front, p]), ref) - base
    return out
