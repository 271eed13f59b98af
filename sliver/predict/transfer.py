"""Few-shot latency transfer: predict a new device's latencies from a few measurements on it.

The source table holds the latency of many architectures (rows) on many
devices (columns). Latencies of one architecture on different hardware are
strongly related, so a new device's log-latency is close to a linear
combination of the source devices' log-latencies. With ``k`` measured
architectures we fit that combination by ridge regression (standardised source
columns, penalty chosen by leave-one-out CV), then predict every architecture
of the table. The source columns act as a learned embedding of each
architecture; the ridge weights are the new device's coordinates in it.

With fewer than :data:`MIN_SAMPLES_FOR_FIT` samples there is nothing to fit:
the prediction falls back to the *prior*, the geometric mean over the source
devices (shifted to the samples' level when there are any), and the result
says so.

numpy, pandas and scikit-learn only: no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.linear_model import RidgeCV

#: fewer measured architectures than this and the ridge fit is not trusted
MIN_SAMPLES_FOR_FIT = 3

#: ridge penalties tried by leave-one-out CV (on standardised source columns)
ALPHAS = tuple(np.logspace(-1, 2, 7))

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


class DeviceTransfer:
    """Latency transfer from a table of source devices to a new device.

    ``source`` is an (architectures × devices) array of latencies in ms. Call
    :meth:`fit` with the row indices and latencies measured on the new device,
    then :meth:`predict` for all rows.
    """

    def __init__(self, source: np.ndarray, alphas: tuple[float, ...] = ALPHAS) -> None:
        source = np.asarray(source, dtype=np.float64)
        if source.ndim != 2 or source.shape[0] < 2 or source.shape[1] < 1:
            raise ValueError(f"source table: expected (architectures x devices) with at least 2 rows and 1 device, got shape {source.shape}")
        if not np.isfinite(source).all():
            raise ValueError("source table: latencies must be finite numbers (drop or fill the missing rows)")
        if (source <= 0).all(axis=0).any():
            raise ValueError("source table: a device column has no positive latency")
        self.alphas = alphas
        self._log = _log_latency(source)
        mean, std = self._log.mean(0), self._log.std(0)
        std[std == 0] = 1.0  # a constant device column carries no ranking information
        self._z = (self._log - mean) / std
        self._prior = self._log.mean(1)
        self._model: RidgeCV | None = None
        self._shift = 0.0
        self.fallback = True
        self.n_samples = 0

    @property
    def n_architectures(self) -> int:
        return self._z.shape[0]

    def fit(self, rows: np.ndarray, latency_ms: np.ndarray) -> "DeviceTransfer":
        """Fit the new device's coordinates from measured ``latency_ms`` of table ``rows``."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        y = np.asarray(latency_ms, dtype=np.float64).reshape(-1)
        if rows.shape != y.shape:
            raise ValueError(f"samples: {rows.size} architectures but {y.size} latencies")
        if rows.size and (rows.min() < 0 or rows.max() >= self.n_architectures):
            raise ValueError(f"samples: row index out of range 0..{self.n_architectures - 1}")
        if len(set(rows.tolist())) != rows.size:
            raise ValueError("samples: an architecture is listed twice; average its measurements first")
        if (~np.isfinite(y)).any() or (y <= 0).any():
            raise ValueError("samples: latencies must be positive finite numbers (ms)")
        self.n_samples = rows.size
        self._model = None
        self._shift = float(np.mean(np.log(y) - self._prior[rows])) if rows.size else 0.0
        self.fallback = rows.size < MIN_SAMPLES_FOR_FIT
        if not self.fallback:
            self._model = RidgeCV(alphas=self.alphas).fit(self._z[rows], np.log(y))
        return self

    def predict(self) -> np.ndarray:
        """Predicted latency (ms) of every architecture of the source table."""
        if self._model is None:
            return np.exp(self._prior + self._shift)
        return np.exp(self._model.predict(self._z))

    def describe(self) -> str:
        """One line saying which model made the predictions."""
        if not self.fallback:
            return f"fitted the new device from {self.n_samples} samples over {self._z.shape[1]} source devices (ridge alpha={self._model.alpha_:.3g})"
        shift = f", shifted to the level of the {self.n_samples} samples" if self.n_samples else ""
        return (f"only {self.n_samples} samples (need {MIN_SAMPLES_FOR_FIT} to fit): falling back to the prior, "
                f"the geometric mean of the {self._z.shape[1]} source devices{shift}")


def transfer(source: pd.DataFrame, samples: pd.Series) -> TransferResult:
    """Predict the new device's latency of every architecture (row) of ``source``.

    ``source``: index = architecture identifiers, columns = source devices, values
    in ms. ``samples``: latency (ms) on the new device, indexed by architecture
    identifiers that must appear in ``source``.
    """
    if source.index.has_duplicates:
        dup = source.index[source.index.duplicated()][0]
        raise ValueError(f"source table: architecture {dup!r} appears twice")
    samples = samples.groupby(level=0).mean()  # repeated measurements of one architecture
    missing = samples.index.difference(source.index)
    if len(missing):
        raise ValueError(f"samples: architecture {missing[0]!r} is not in the source table; measure architectures listed there")
    model = DeviceTransfer(source.to_numpy(dtype=np.float64))
    model.fit(source.index.get_indexer(samples.index), samples.to_numpy(dtype=np.float64))
    pred = pd.Series(model.predict(), index=source.index, name="latency_ms")
    return TransferResult(pred, model.n_samples, model.fallback, model.describe())


def latency_columns(frame: pd.DataFrame, prefix: str | None = None) -> list[str]:
    """The device columns of a table: those starting with ``prefix`` (default ``lat_ms_``
    when any column does), else every numeric column."""
    if prefix is None and any(str(c).startswith("lat_ms_") for c in frame.columns):
        prefix = "lat_ms_"
    if prefix is not None:
        cols = [c for c in frame.columns if str(c).startswith(prefix)]
        if not cols:
            raise ValueError(f"source table: no column starts with '{prefix}'; pass --columns with the devices' column prefix")
        return cols
    cols = list(frame.select_dtypes("number").columns)
    if not cols:
        raise ValueError("source table: no numeric latency column found")
    return cols


def _log_latency(latency_ms: np.ndarray) -> np.ndarray:
    floor = _FLOOR_OF_MEDIAN * np.median(latency_ms, axis=0)
    floor = np.where(floor > 0, floor, latency_ms[latency_ms > 0].min())
    return np.log(np.maximum(latency_ms, floor))
