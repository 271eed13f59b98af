"""Few-shot latency transfer: predict a new device's latencies from a few measurements on it.

The source table holds the latency of many architectures (rows) on many
devices (columns). Latencies of one architecture on different hardware are
strongly related, so the source columns (standardised log-latencies) are the
architectures' embedding, and a new device's log-latency is modelled as a
Gaussian process over architectures whose prior *is* the source table: its
mean is the (weighted) mean source device, its covariance the (weighted)
covariance of the source devices across architectures, plus a free level and
scale ``a + b * mean`` and a noise term. With ``k`` measured architectures the
posterior mean predicts every other one; this is a learned shrinkage between
the prior and the fit, set per device by the data:

* the source devices are weighted by how well each ranks the k samples
  (``exp(similarity * atanh(correlation))``: on Fisher's z scale a correlation
  of 0.99 stands out from one of 0.95 as it should, where on the raw scale all
  close devices weigh alike), so the prior leans on the nearest source devices
  without trusting any single one;
* the noise level (how far the fit may leave the prior) is chosen by the
  restricted marginal likelihood of the k samples;
* a sample the others cannot explain (externally studentised leave-one-out
  residual above :data:`SPIKE_T`) is taken for a measurement spike, as real
  timings have (one run in 5,000 slowed by half): its noise is inflated and
  the fit is redone, so one spike does not re-rank every architecture.

With architecture ``features`` (e.g. the space's one-hot), each source column
gets a second, additive view: its latency refitted as a sum of per-option
costs (a ridge on the features), which denoises a column and carries the
additive structure of latency (a network's time is the sum of its layers').

Which architectures are measured matters too: :meth:`DeviceTransfer.suggest`
picks them before any is measured (or continues from those that are), greedily, each
time the architecture whose latency the model is least sure of given the ones already
chosen. Its uncertainty is that of the model's prior: the new device's level and scale
along the mean source device, and how the source devices disagree on the architecture.
Such a design spreads the samples over fast and slow networks and over the directions
in which devices differ, where random draws often bunch up. It pays for the first
ten or so samples; past the directions the prior knows, it keeps picking unusual
networks, and random draws (which follow the bulk of the table) do as well or better.

A fit reports its leave-one-out error on the k samples (:attr:`DeviceTransfer.loo_error_pct`,
from the GP's closed form, no refits): the one check of the model a user has on their own device.

A fitted transfer also predicts architectures outside its table from their source latencies
(:meth:`DeviceTransfer.predict_new`). :class:`RuntimeTransfer` builds on that for a
super-network's space, far too large to tabulate: the source columns are the runtimes
this machine measured (torch eager, ONNX Runtime, OpenVINO, at one or two threads), each
extended to every network of the space by a latency predictor fitted on the networks
measured there, and the new runtime (or device) is fitted from a few networks measured on it.

With fewer than :data:`MIN_SAMPLES_FOR_FIT` samples there is nothing to fit:
the prediction falls back to the *prior*, the geometric mean over the source
devices (shifted to the samples' level when there are any), and the result
says so.

numpy, pandas and scikit-learn only: no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from sliver.errors import UserError

#: fewer measured architectures than this and the fit is not trusted
MIN_SAMPLES_FOR_FIT = 3

#: :class:`RuntimeTransfer` needs at least this many networks measured on the source runtimes
#: (each source runtime's latency predictor is fitted on them)
MIN_SOURCE_NETWORKS = 10

#: noise levels tried (as a share of the prior's mean variance), chosen per fit by marginal likelihood
NOISE_GRID = (0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0)

#: how sharply source devices that rank the k samples well are preferred, per unit of Fisher z (0: all alike)
SIMILARITY = 3.0

#: a sample whose externally studentised leave-one-out residual exceeds this is a measurement spike:
#: its noise variance is multiplied by ``(t / SPIKE_T) ** 2``
SPIKE_T = 3.0

#: noise assumed by :meth:`DeviceTransfer.suggest` (share of an average architecture's prior variance):
#: near-duplicates of a chosen architecture still count as nearly measured, and far-off outliers do not
#: outweigh whole directions of the table
DESIGN_NOISE = 1.0

#: correlations are clipped here before Fisher's z (a perfect correlation would weigh infinitely)
_MAX_CORR = 0.999

#: ridge penalty of the additive refit of each source column on the architecture features
_ADDITIVE_ALPHA = 1.0

#: latencies are floored at this share of their device's median before the log:
#: degenerate cells (e.g. NAS-Bench-201 all-`none`) measure ~0 ms and would dominate a log scale
_FLOOR_OF_MEDIAN = 0.05


@dataclass
class TransferResult:
    """Predicted latency (ms) of every architecture of the source table on the new device."""

    latency_ms: pd.Series
    n_samples: int
    fallback: bool
    message: str
    #: mean absolute % error of each sample predicted from the others (None when falling back to the prior)
    loo_error_pct: float | None = None


class DeviceTransfer:
    """Latency transfer from a table of source devices to a new device.

    ``source`` is an (architectures × devices) array of latencies in ms;
    ``features`` optionally an (architectures × d) array describing each
    architecture (adds the additive view, see the module docstring);
    ``devices`` the source columns' names (for :meth:`describe`). Call
    :meth:`fit` with the row indices and latencies measured on the new device,
    then :meth:`predict` for all rows.
    """

    def __init__(self, source: np.ndarray, features: np.ndarray | None = None, devices: list[str] | None = None,
                 noise_grid: tuple[float, ...] = NOISE_GRID, similarity: float = SIMILARITY) -> None:
        source = np.asarray(source, dtype=np.float64)
        if source.ndim != 2 or source.shape[0] < 2 or source.shape[1] < 1:
            raise UserError(f"source table: expected (architectures x devices) with at least 2 rows and 1 device, got shape {source.shape}")
        if not np.isfinite(source).all():
            raise UserError("source table: latencies must be finite numbers (drop or fill the missing rows)")
        if (source <= 0).all(axis=0).any():
            raise UserError("source table: a device column has no positive latency")
        self.noise_grid, self.similarity = tuple(noise_grid), float(similarity)
        self.devices = list(devices) if devices is not None else [f"column {j}" for j in range(source.shape[1])]
        if len(self.devices) != source.shape[1]:
            raise ValueError(f"devices: {len(self.devices)} names for {source.shape[1]} source columns")
        self._n_devices = source.shape[1]
        self._floor = latency_floor(source)
        self._prior = np.log(np.maximum(source, self._floor)).mean(1)
        self._additive = None
        if features is not None:
            features = np.asarray(features, dtype=np.float64)
            if features.ndim != 2 or features.shape[0] != source.shape[0]:
                raise ValueError(f"features: expected one row per architecture ({source.shape[0]}), got shape {features.shape}")
            from sklearn.linear_model import Ridge

            self._additive = Ridge(alpha=_ADDITIVE_ALPHA).fit(features, source)
            self._additive_floor = _FLOOR_OF_MEDIAN * np.median(source, axis=0)
        z = self._views(source, features)
        # kept, so that an architecture outside the table is standardised as the table was (predict_new)
        self._z_mean, self._z_std = z.mean(0), z.std(0)
        self._z_std[self._z_std == 0] = 1.0  # a constant device column carries no ranking information
        self._z = (z - self._z_mean) / self._z_std
        self._fitted: np.ndarray | None = None
        self._state: tuple[np.ndarray, float, np.ndarray, np.ndarray] | None = None
        self._shift = 0.0
        self._noise = float("nan")
        self._nearest = ""
        self._spikes = 0
        self._loo_residuals = np.zeros(0)
        self.fallback = True
        self.n_samples = 0

    @property
    def n_architectures(self) -> int:
        return self._z.shape[0]

    def _views(self, source: np.ndarray, features: np.ndarray | None) -> np.ndarray:
        """The log-latency view of rows of source latencies, and their additive view when the table has features."""
        views = [np.log(np.maximum(source, self._floor))]
        if self._additive is not None:
            # reshaped: for a single source device, scikit-learn returns a flat vector
            additive = self._additive.predict(features).reshape(len(source), self._n_devices)
            views.append(np.log(np.maximum(additive, self._additive_floor)))
        return np.concatenate(views, axis=1)

    def suggest(self, k: int, measured: np.ndarray | Sequence[int] = (), candidates: np.ndarray | list[int] | None = None) -> np.ndarray:
        """Rows of ``k`` architectures to measure on the new device next, most informative first.

        Greedy design on the prior (see the module docstring): each pick is the architecture
        with the largest prior variance given ``measured`` and the picks before it, among
        ``candidates`` (default: every row not measured; pass the rows you can build).
        Deterministic.
        """
        measured = self._rows("measured", measured)
        allowed = np.ones(self.n_architectures, dtype=bool)
        if candidates is not None:
            allowed[:] = False
            allowed[self._rows("candidates", candidates)] = True
        allowed[measured] = False
        if not 0 <= k <= allowed.sum():
            raise UserError(f"suggest: k must be between 0 and the {int(allowed.sum())} candidate architectures not yet measured, got {k}")
        z = self._z[:, : self._n_devices]  # the log-latency view
        level = z.mean(1)
        # the prior of the new device's log-latency: a + b * level, plus how the source devices spread
        # (the level a is free in the fit: without it here, a few of the fastest networks would seem
        # to pin the scale b as well as the fastest and the slowest together do)
        feats = np.c_[np.ones(len(z)), (z - level[:, None]) / np.sqrt(self._n_devices), level / (level.std() or 1.0)]
        cov = np.linalg.inv(np.eye(feats.shape[1]) + feats[measured].T @ feats[measured] / DESIGN_NOISE)
        variance = np.sum((feats @ cov) * feats, axis=1)
        picks = []
        for _ in range(k):
            best = int(np.argmax(np.where(allowed, variance, -np.inf)))
            picks.append(best)
            allowed[best] = False
            # measuring `best` shrinks the prior (Sherman-Morrison): O(architectures) per pick
            direction = cov @ feats[best]
            shared = feats @ direction
            denom = DESIGN_NOISE + shared[best]
            variance -= shared ** 2 / denom
            cov -= np.outer(direction, direction) / denom
        return np.array(picks, dtype=np.int64)

    def _rows(self, name: str, rows: np.ndarray | Sequence[int]) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if rows.size and (rows.min() < 0 or rows.max() >= self.n_architectures):
            raise ValueError(f"{name}: row index out of range 0..{self.n_architectures - 1}")
        return rows

    def fit(self, rows: np.ndarray, latency_ms: np.ndarray) -> "DeviceTransfer":
        """Fit the new device from measured ``latency_ms`` of table ``rows``."""
        rows = self._rows("samples", rows)
        y = np.asarray(latency_ms, dtype=np.float64).reshape(-1)
        if rows.shape != y.shape:
            raise UserError(f"samples: {rows.size} architectures but {y.size} latencies")
        if len(set(rows.tolist())) != rows.size:
            raise UserError("samples: an architecture is listed twice; average its measurements first")
        if (~np.isfinite(y)).any() or (y <= 0).any():
            raise UserError("samples: latencies must be positive finite numbers (ms)")
        self.n_samples = rows.size
        self._fitted = None
        self._loo_residuals = np.zeros(0)
        self._shift = float(np.mean(np.log(y) - self._prior[rows])) if rows.size else 0.0
        self.fallback = rows.size < MIN_SAMPLES_FOR_FIT
        if not self.fallback:
            self._fitted = self._posterior_mean(rows, np.log(y))
        return self

    def _posterior_mean(self, rows: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Log-latency of every row: the GP posterior mean given the samples, refitted once with
        inflated noise on the samples that look like measurement spikes."""
        spread = np.ones(rows.size)  # per-sample noise multiplier
        fitted, t, self._loo_residuals = self._gp(rows, y, spread)
        spikes = np.abs(t) > SPIKE_T
        self._spikes = int(spikes.sum())
        if self._spikes:
            spread = np.maximum(1.0, (t / SPIKE_T) ** 2)
            fitted, _, self._loo_residuals = self._gp(rows, y, spread)
        return fitted

    def _gp(self, rows: np.ndarray, y: np.ndarray, spread: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The posterior mean (see the module docstring) with noise ``noise * spread`` on the samples,
        the samples' externally studentised leave-one-out residuals, and their plain leave-one-out
        residuals (log of measured over predicted from the other samples)."""
        z = self._z
        # weight the source columns by how well each ranks the samples: Pearson on the k log-latencies,
        # each sample weighted by 1 / spread so a spike does not pick the source devices
        sw = 1.0 / spread
        sw /= sw.sum()
        zk = z[rows] - sw @ z[rows]
        yk = y - sw @ y
        corr = (zk * sw[:, None]).T @ yk / np.maximum(np.sqrt((sw @ zk ** 2) * (sw @ yk ** 2)), 1e-12)
        corr = np.arctanh(np.clip(corr, -_MAX_CORR, _MAX_CORR))
        w = np.exp(self.similarity * (corr - corr.max()))
        w /= w.sum()
        mean = z @ w
        feats = (z - mean[:, None]) * np.sqrt(w)
        norm = float(np.sqrt(np.mean(np.sum(feats ** 2, axis=1)))) or 1.0  # prior variance 1 per architecture, on average
        feats /= norm
        top = list(dict.fromkeys(int(j) % self._n_devices for j in np.argsort(-w)))[:3]
        self._nearest = ", ".join(str(self.devices[j]) for j in top)
        # whiten by the per-sample noise: K = Fk Fk^T + noise * diag(spread) becomes Fk Fk^T + noise I
        s = 1.0 / np.sqrt(spread)
        A = np.c_[np.ones(rows.size), mean[rows]] * s[:, None]  # free level and scale of the new device
        Fk = feats[rows] * s[:, None]
        y = y * s
        G, Fy, FA = Fk.T @ Fk, Fk.T @ y, Fk.T @ A
        k, v = Fk.shape
        dof = max(k - A.shape[1], 1)
        best: tuple[Any, ...] | None = None
        for noise in self.noise_grid:
            # K is k x k; Woodbury keeps every solve v x v (v = source columns), so a
            # fit on thousands of samples costs what one on ten does
            inner = np.linalg.inv(G + noise * np.eye(v))
            AKA = (A.T @ A - FA.T @ inner @ FA) / noise
            beta = np.linalg.lstsq(AKA, (A.T @ y - FA.T @ inner @ Fy) / noise, rcond=None)[0]
            resid = y - A @ beta
            Fr = Fk.T @ resid
            quad = max(float(resid @ resid - Fr @ inner @ Fr) / noise, 1e-300)
            logdet_k = (k - v) * np.log(noise) + np.linalg.slogdet(G + noise * np.eye(v))[1]
            # restricted log marginal likelihood, the signal scale profiled out
            reml = -0.5 * dof * np.log(quad / dof) - 0.5 * logdet_k - 0.5 * np.linalg.slogdet(AKA)[1]
            if best is None or reml > best[0]:
                best = (reml, noise, beta, inner, resid, quad)
        assert best is not None, "noise_grid is empty"
        _, noise, beta, inner, resid, quad = best
        self._noise = noise
        coef = inner @ (Fk.T @ resid)  # Fk^T K^-1 resid = (G + noise I)^-1 Fk^T resid
        # leave-one-out residuals of a GP with estimated level and scale: e_i = (P y)_i / P_ii, with
        # P = K^-1 - K^-1 A (A^T K^-1 A)^-1 A^T K^-1; leaving sample i out also drops (P y)_i^2 / P_ii
        # from the quadratic form, which gives the scale the sample is judged against
        FI = Fk @ inner
        kinv_diag = (1.0 - np.sum(FI * Fk, axis=1)) / noise
        KA = (A - FI @ FA) / noise
        p_diag = np.maximum(kinv_diag - np.sum((KA @ np.linalg.pinv(A.T @ KA)) * KA, axis=1), 1e-300)
        py = (resid - Fk @ coef) / noise
        self._state = (w, norm, beta, coef)
        fitted = self._posterior_at(z)
        loo = py / p_diag * np.sqrt(spread)  # back from the whitened scale to log-latency
        if dof < 3:  # too few samples to judge any of them
            return fitted, np.zeros(k), loo
        scale_without = np.maximum(quad - py ** 2 / p_diag, 1e-12 * quad) / (dof - 1)
        return fitted, py / np.sqrt(p_diag * scale_without), loo

    def _posterior_at(self, z: np.ndarray) -> np.ndarray:
        """The fitted posterior mean of the new device's log-latency at standardised source rows ``z``."""
        assert self._state is not None
        w, norm, beta, coef = self._state
        mean = z @ w
        return beta[0] + beta[1] * mean + ((z - mean[:, None]) * np.sqrt(w) / norm) @ coef

    @property
    def loo_error_pct(self) -> float | None:
        """Mean absolute percentage error of each sample predicted from the others (None before a fit).

        An honest check of the fit on the user's own device: it ranks devices by how well they
        are predicted, though with few samples it tends to come out below the error on the rest."""
        if self._fitted is None:
            return None
        return float(np.mean(np.abs(np.exp(-self._loo_residuals) - 1.0)) * 100)

    def predict(self) -> np.ndarray:
        """Predicted latency (ms) of every architecture of the source table."""
        if self._fitted is None:
            return np.exp(self._prior + self._shift)
        return np.exp(self._fitted)

    def predict_new(self, source: np.ndarray, features: np.ndarray | None = None) -> np.ndarray:
        """Predicted latency (ms) on the new device of architectures outside the table.

        ``source``: their latencies (ms) on the source devices, one row each, the
        columns as in the table; ``features``: their feature rows, when the table
        was built with features. The fit (weights, level, scale, posterior) is the
        one :meth:`fit` made; the rows only have to be described as the table's are.
        """
        source = np.asarray(source, dtype=np.float64)
        if source.ndim != 2 or source.shape[1] != self._n_devices:
            raise ValueError(f"source: expected one column per source device ({self._n_devices}), got shape {source.shape}")
        if (features is None) != (self._additive is None):
            raise ValueError("features: give them exactly when the table was built with features")
        if features is not None:
            features = np.asarray(features, dtype=np.float64).reshape(len(source), -1)
        if self._fitted is None:
            return np.exp(np.log(np.maximum(source, self._floor)).mean(1) + self._shift)
        z = (self._views(source, features) - self._z_mean) / self._z_std
        return np.exp(self._posterior_at(z))

    def describe(self) -> str:
        """One line saying which model made the predictions."""
        if not self.fallback:
            spikes = f"; {self._spikes} sample(s) down-weighted as measurement spikes" if self._spikes else ""
            views = "log-latency and additive views" if self._z.shape[1] > self._n_devices else "log-latency"
            return (f"fitted the new device from {self.n_samples} samples over {self._n_devices} source devices ({views}; "
                    f"noise {self._noise:.3g} by marginal likelihood; nearest sources {self._nearest}{spikes}); "
                    f"leave-one-out error on the samples {self.loo_error_pct:.1f} %")
        shift = f", shifted to the level of the {self.n_samples} samples" if self.n_samples else ""
        return (f"only {self.n_samples} samples (need {MIN_SAMPLES_FOR_FIT} to fit): falling back to the prior, "
                f"the geometric mean of the {self._n_devices} source devices{shift}; "
                f"`sliver latency suggest` names the networks worth measuring")


class TransferLatencyModel:
    """A :class:`DeviceTransfer` as a search's latency model, learning from the search's own measurements.

    ``row_of`` maps a config to its row of the source table; ``samples`` are
    latencies (ms) the user measured on the new device beforehand, by row.
    Calling the model on configs gives their predicted latencies. LINAS calls
    :meth:`observe` every round with all the latencies it has measured on the
    device so far: each is a sample of the new device for free, so the model is
    refitted on them (with the user's samples) and ranks better as the search
    goes on, where a fixed model stays at its prior.
    """

    def __init__(self, model: DeviceTransfer, row_of, samples: dict[int, float] | None = None) -> None:
        self.model, self.row_of = model, row_of
        self._given = {int(r): float(v) for r, v in (samples or {}).items()}
        self._observed: dict[int, list[float]] = {}
        self._refit()

    def observe(self, configs: list, latency_ms) -> None:
        """Refit on ``latency_ms`` measured on the device for ``configs`` (all of them so far, not only new ones)."""
        observed: dict[int, list[float]] = {}
        for config, value in zip(configs, np.asarray(latency_ms, dtype=np.float64).reshape(-1)):
            observed.setdefault(int(self.row_of(config)), []).append(float(value))
        self._observed = observed
        self._refit()

    def _refit(self) -> None:
        values: dict[int, list[float]] = {r: [v] for r, v in self._given.items()}
        for r, vs in self._observed.items():
            values.setdefault(r, []).extend(vs)  # a row the user measured and the search measured again: the mean
        rows = np.array(list(values), dtype=np.int64)
        self.model.fit(rows, np.array([np.mean(v) for v in values.values()]))
        self._latency = self.model.predict()

    def __call__(self, configs: list) -> list[float]:
        return [float(self._latency[self.row_of(c)]) for c in configs]

    def describe(self) -> str:
        return self.model.describe()


def transfer(source: pd.DataFrame, samples: pd.Series) -> TransferResult:
    """Predict the new device's latency of every architecture (row) of ``source``.

    ``source``: index = architecture identifiers, columns = source devices, values
    in ms. ``samples``: latency (ms) on the new device, indexed by architecture
    identifiers that must appear in ``source``.
    """
    blank = samples.index[~np.isfinite(samples.to_numpy(dtype=np.float64))]
    if len(blank):
        raise UserError(f"samples: {len(blank)} architecture(s) have no latency (first: {blank[0]!r}); "
                         "fill them in or drop those rows")
    samples = samples.groupby(level=0).mean()  # repeated measurements of one architecture
    rows = _rows_of(source, samples.index)
    model = DeviceTransfer(source.to_numpy(dtype=np.float64), devices=[str(c) for c in source.columns])
    model.fit(rows, samples.to_numpy(dtype=np.float64))
    pred = pd.Series(model.predict(), index=source.index, name="latency_ms")
    return TransferResult(pred, model.n_samples, model.fallback, model.describe(), model.loo_error_pct)


def suggest_samples(source: pd.DataFrame, k: int, measured: list | pd.Index | None = None) -> pd.Index:
    """The ``k`` architectures of ``source`` (index labels) to measure on the new device next.

    ``source`` as for :func:`transfer`; ``measured``: architectures already measured
    there (they are not suggested again, and the suggestions complement them).
    """
    rows = _rows_of(source, pd.Index([] if measured is None else list(dict.fromkeys(measured))))
    model = DeviceTransfer(source.to_numpy(dtype=np.float64), devices=[str(c) for c in source.columns])
    return source.index[model.suggest(k, rows)]


def _rows_of(source: pd.DataFrame, archs: pd.Index) -> np.ndarray:
    """Row numbers of the architectures ``archs`` (measured on the new device) in the source table."""
    if source.index.has_duplicates:
        dup = source.index[source.index.duplicated()][0]
        raise UserError(f"source table: architecture {dup!r} appears twice")
    missing = archs.difference(source.index)
    if len(missing):
        raise UserError(f"samples: architecture {missing[0]!r} is not in the source table; measure architectures listed there")
    return source.index.get_indexer(archs)


def latency_columns(frame: pd.DataFrame, prefix: str | None = None) -> list[str]:
    """The device columns of a table: those starting with ``prefix`` (default ``lat_ms_``
    when any column does), else every numeric column."""
    if prefix is None and any(str(c).startswith("lat_ms_") for c in frame.columns):
        prefix = "lat_ms_"
    if prefix is not None:
        cols = [c for c in frame.columns if str(c).startswith(prefix)]
        if not cols:
            raise UserError(f"source table: no column starts with '{prefix}'; pass --columns with the devices' column prefix")
        return cols
    cols = list(frame.select_dtypes("number").columns)
    if not cols:
        raise UserError("source table: no numeric latency column found")
    return cols


def latency_floor(latency_ms: np.ndarray) -> np.ndarray:
    """Per device column, the latency below which a timing is raised before the log: a share of the column's median
    (near-zero timings of degenerate cells must not dominate the log scale)."""
    floor = _FLOOR_OF_MEDIAN * np.median(latency_ms, axis=0)
    return np.where(floor > 0, floor, latency_ms[latency_ms > 0].min())


def log_latency(latency_ms: np.ndarray) -> np.ndarray:
    """Log latency, each device's column floored first (see :func:`latency_floor`)."""
    return np.log(np.maximum(latency_ms, latency_floor(latency_ms)))


class RuntimeTransfer:
    """Few-shot transfer to a new runtime (or device) for any network of a search space, from other runtimes' latencies.

    :class:`DeviceTransfer` predicts the rows of a fixed table; a super-network's
    space is far too large to measure on the source runtimes. Here ``configs``
    are the networks that were measured there (tens, e.g. from the store) and
    ``source`` their latencies (ms), one column per source runtime (named by
    ``runtimes``: torch eager, ONNX Runtime, OpenVINO, at one or two threads).
    Each source runtime gets a :class:`~sliver.predict.latency.LatencyPredictor`
    on ``features`` (configs -> feature rows; default the space's one-hot), so
    every network of the space has a latency on every source runtime; the new
    runtime is a :class:`DeviceTransfer` over those predicted columns, fitted on
    the few networks measured on it. A measured network is seen through the
    predictors too, as the candidates are: the fit and the predictions share one scale.

    ``samples`` are ``(config, latency_ms)`` pairs measured on the new runtime
    beforehand (:meth:`suggest` says which). As a search's latency model, calling
    it on configs gives their predicted latencies, and LINAS calls
    :meth:`observe` every round with every latency it has measured on the new
    runtime so far, each a free sample: the model is refitted on them.
    """

    def __init__(self, space, configs: list, source: np.ndarray, runtimes: list[str] | None = None,
                 features=None, samples: Sequence[tuple[Any, float]] = (), seed: int = 0) -> None:
        from sliver.predict.latency import LatencyPredictor

        source = np.asarray(source, dtype=np.float64)
        if source.ndim != 2 or source.shape[0] != len(configs):
            raise UserError(f"source latencies: expected one row per measured network ({len(configs)}) and one column "
                            f"per source runtime, got shape {source.shape}")
        if len(configs) < MIN_SOURCE_NETWORKS:
            raise UserError(f"source latencies: {len(configs)} networks measured on the source runtimes, need at least "
                            f"{MIN_SOURCE_NETWORKS}; measure more there first")
        if not np.isfinite(source).all() or (source <= 0).any():
            raise UserError("source latencies: must be positive finite numbers (ms); drop the failed measurements")
        self.space = space
        self.features = features if features is not None else space.features
        self.runtimes = list(runtimes) if runtimes is not None else [f"runtime {j}" for j in range(source.shape[1])]
        if len(self.runtimes) != source.shape[1]:
            raise ValueError(f"runtimes: {len(self.runtimes)} names for {source.shape[1]} source columns")
        self.n_source = len(configs)
        X = np.asarray(self.features(list(configs)), dtype=np.float64)
        self._predictors = [LatencyPredictor(seed=seed).fit(X, source[:, j]) for j in range(source.shape[1])]
        self._table = {space.key(c): c for c in configs}  # the networks that span the prior
        self._source: dict[str, np.ndarray] = {}  # predicted source latencies by config key
        self._given: dict[str, list[float]] = {}
        self._observed: dict[str, list[float]] = {}
        for config, value in samples:
            self._given.setdefault(self._add(config), []).append(float(value))
        self._refit()

    def _add(self, config) -> str:
        key = self.space.key(config)
        self._table.setdefault(key, config)
        return key

    def source_latency(self, configs: list) -> np.ndarray:
        """Predicted latency (ms) of ``configs`` on each source runtime, one row per config."""
        keys = [self.space.key(c) for c in configs]
        new = {k: c for k, c in zip(keys, configs) if k not in self._source}
        if new:
            X = np.asarray(self.features(list(new.values())), dtype=np.float64)
            pred = np.stack([p.predict(X) for p in self._predictors], axis=1)
            self._source.update(zip(new, pred))
        return np.stack([self._source[k] for k in keys]) if keys else np.zeros((0, len(self.runtimes)))

    def _refit(self) -> None:
        values = {k: list(v) for k, v in self._given.items()}
        for k, vs in self._observed.items():
            values.setdefault(k, []).extend(vs)  # measured by the user and again by the search: the mean
        row = {k: i for i, k in enumerate(self._table)}
        self.model = DeviceTransfer(self.source_latency(list(self._table.values())), devices=self.runtimes)
        rows = np.array([row[k] for k in values], dtype=np.int64)
        self.model.fit(rows, np.array([np.mean(v) for v in values.values()]))

    def suggest(self, k: int, candidates: list | None = None) -> list:
        """``k`` networks to measure on the new runtime first, most informative first (see :meth:`DeviceTransfer.suggest`).

        ``candidates`` default to the networks measured on the source runtimes; those
        already measured on the new runtime are not suggested again.
        """
        pool = list(candidates) if candidates is not None else list(self._table.values())
        measured = set(self._given) | set(self._observed)
        pool = [c for c in pool if self.space.key(c) not in measured]
        if not 0 <= k <= len(pool):
            raise UserError(f"suggest: k must be between 0 and the {len(pool)} candidate networks not yet measured, got {k}")
        model = DeviceTransfer(self.source_latency(pool), devices=self.runtimes)
        return [pool[i] for i in model.suggest(k)]

    def observe(self, configs: list, latency_ms) -> None:
        """Refit on ``latency_ms`` measured on the new runtime for ``configs`` (all of them so far, not only new ones)."""
        observed: dict[str, list[float]] = {}
        for config, value in zip(configs, np.asarray(latency_ms, dtype=np.float64).reshape(-1)):
            observed.setdefault(self._add(config), []).append(float(value))
        self._observed = observed
        self._refit()

    def __call__(self, configs: list) -> list[float]:
        return self.model.predict_new(self.source_latency(list(configs))).tolist()

    def describe(self) -> str:
        """One line: the source runtimes, what their latency of any network comes from, and the fit."""
        families = ", ".join(dict.fromkeys(p.chosen for p in self._predictors))
        return (f"transfer from {', '.join(self.runtimes)} ({self.n_source} networks measured there; any other "
                f"network's latency there by {families}): {self.model.describe()}")
