"""Surrogate models of expensive objectives: ridge, SVR, LightGBM, a small MLP, and an ensemble.

Every predictor takes feature rows from :meth:`sliver.space.SearchSpace.features`
(one-hot genes, inactive genes zeroed) and gives a mean and an uncertainty.
Single families report an uncertainty of zero; the ensemble reports the spread
of its members (different model families see different structure, so where
they disagree the truth is least known). Targets are standardised inside, so
one set of hyper-parameters serves milliseconds and percent alike; fitting a
few hundred points takes well under a second.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process.kernels import Matern
from sklearn.linear_model import Ridge
from sklearn.metrics.pairwise import euclidean_distances
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.neural_network import MLPRegressor
from sklearn.svm import SVR
from threadpoolctl import ThreadpoolController

from sliver.errors import UserError

FAMILIES = ("ridge", "svr", "lgbm", "mlp", "gp", "gp_additive")
#: the default members of an ensemble (one Gaussian process is enough)
ENSEMBLE_MEMBERS = ("ridge", "svr", "lgbm", "mlp", "gp")
#: target transforms a predictor can fit in (see :class:`Predictor`)
TARGETS = ("raw", "rank", "log")
#: every name :class:`Predictor` accepts
KINDS = FAMILIES + ("ensemble", "auto")


def make_model(family: str, seed: int = 0) -> RegressorMixin:
    """A fresh scikit-learn-compatible regressor of one family (hyper-parameters fixed, no grid search)."""
    if family == "ridge":
        return Ridge(alpha=1.0)
    if family == "svr":
        return SVR(C=3.0, epsilon=0.05, gamma="scale")
    if family == "lgbm":
        import lightgbm as lgb  # imported lazily: it is the slowest import of the families

        # small leaves and min_child_samples because searches fit on tens to hundreds of points
        return lgb.LGBMRegressor(
            n_estimators=300, learning_rate=0.05, num_leaves=7, min_child_samples=3,
            subsample=0.8, subsample_freq=1, colsample_bytree=0.8, random_state=seed, n_jobs=1, verbose=-1,
        )
    if family == "mlp":
        return MLPRegressor(hidden_layer_sizes=(64, 64), alpha=1e-2, learning_rate_init=3e-3, max_iter=1000, random_state=seed)
    if family in ("gp", "gp_additive"):
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import ConstantKernel, DotProduct, WhiteKernel

        # one isotropic length scale: on one-hot features the distance counts changed genes, so the
        # GP says "near a measured network, like it" and is unsure far from every measurement
        kernel = ConstantKernel(1.0, (1e-2, 1e2)) * _Matern(2.0, (0.1, 100.0), nu=2.5)
        noise_floor = 1e-5
        if family == "gp_additive":
            # plus a linear term, for a metric that is a sum of per-option costs (a network's latency is the
            # sum of its layers' times): fitted exactly once there are about as many points as options
            # (NB201 fpga and eyeriss latency are such sums). On accuracy, which is
            # not additive, the same term cost LINAS evaluations, hence a family of its own
            kernel = kernel + ConstantKernel(0.1, (1e-4, 1e2)) * DotProduct(0.0, sigma_0_bounds="fixed")
            noise_floor = 1e-6  # an exact sum needs next to no noise
        kernel = kernel + WhiteKernel(0.05, (noise_floor, 1.0))
        return GaussianProcessRegressor(kernel, n_restarts_optimizer=0, random_state=seed)
    raise UserError(f"predictor family '{family}' is unknown; choose one of {list(KINDS)}")


class _Matern(Matern):
    """scikit-learn's Matern kernel, its cross-kernel between new and training rows from BLAS distances.

    Predicting tens of thousands of rows against hundreds of measured ones is
    a search's costliest step, and scipy's ``cdist`` there is several times
    slower than a matrix product. Fitting (``Y is None``) is unchanged.
    """

    def __call__(self, X, Y=None, eval_gradient=False):
        if Y is None or eval_gradient or self.nu != 2.5 or np.ndim(self.length_scale) != 0:
            return super().__call__(X, Y, eval_gradient)
        d = euclidean_distances(np.atleast_2d(X) / self.length_scale, np.atleast_2d(Y) / self.length_scale) * np.sqrt(5.0)
        return (1.0 + d + d**2 / 3.0) * np.exp(-d)


class Predictor(RegressorMixin, BaseEstimator):
    """Fit/predict one objective from feature rows; ``kind`` is a family, ``"ensemble"`` or ``"auto"``.

    ``max_fit`` bounds what a Gaussian process costs as the measurements
    grow: beyond that many points its kernel hyper-parameters are fitted on a
    seeded subset of ``max_fit`` rows, and the GP then conditions on every row
    with them fixed (one factorisation instead of an optimisation over all).
    ``kernel`` (e.g. the :attr:`fitted_kernel` of an earlier fit) skips that
    search altogether: the GP conditions on the rows with this kernel as is.

    ``"auto"`` picks the family with the best cross-validated Kendall tau at
    each :meth:`fit` (see :func:`choose_family`); ``"ensemble"`` fits one
    member per family in ``members``. A scikit-learn estimator, so that
    scikit-learn's own cross-validation (``cross_val_predict``) can clone and fit it.
    """

    def __init__(self, kind: str = "ensemble", seed: int = 0, members: Sequence[str] = ENSEMBLE_MEMBERS, target: str = "raw",
                 noise: bool = False, max_fit: int | None = None, kernel=None):
        if target not in TARGETS:
            raise UserError(f"predictor target must be one of {list(TARGETS)}, got {target!r}")
        if kind not in KINDS:
            raise UserError(f"predictor kind '{kind}' is unknown; choose one of {list(KINDS)}")
        bad = [m for m in members if m not in FAMILIES]
        if bad:
            raise UserError(f"ensemble member '{bad[0]}' is unknown; choose from {list(FAMILIES)}")
        self.kind = kind
        self.target = target
        self.seed = seed
        self.members = tuple(members)
        self.noise = noise
        self.max_fit = max_fit
        self.kernel = kernel
        self._resid_sd = 0.0
        self.chosen: str | None = None
        self.n_features: int | None = None
        self._models: list[RegressorMixin] = []
        self._transform: _RankTarget | _LogTarget | None = None
        self._mu = 0.0
        self._sd = 1.0

    def fit(self, X: np.ndarray, y: np.ndarray) -> "Predictor":
        """Fit on feature rows ``X`` ``(n, n_features)`` and targets ``y`` ``(n,)``."""
        X = np.asarray(X, dtype=float)
        y = np.asarray(y, dtype=float).ravel()
        if X.ndim != 2 or len(X) != len(y):
            raise ValueError(f"features: expected a matrix with one row per target ({len(y)}), got shape {X.shape}")
        if len(y) < 2:
            raise UserError(f"a predictor needs at least 2 measured points to fit, got {len(y)}")
        if not np.isfinite(y).all():
            raise UserError("targets: contain NaN or infinity; drop failed measurements before fitting")
        self.n_features = X.shape[1]
        make = {"raw": None, "rank": _RankTarget, "log": _LogTarget}[self.target]
        self._transform = None if make is None else make(y)
        if self._transform is not None:
            y = self._transform.forward(y)
        self._mu, sd = float(y.mean()), float(y.std())
        self._sd = sd if sd > 0 else 1.0
        z = (y - self._mu) / self._sd
        if self.kind == "ensemble":
            families = list(self.members)
        elif self.kind == "auto":
            self.chosen = choose_family(X, y, self.members, seed=self.seed) if len(y) >= 10 else "ridge"
            families = [self.chosen]
        else:
            families = [self.kind]
        self._models = [self._fit_family(f, X, z) for f in families]
        own_std = all(f.startswith("gp") for f in families)  # then the residual is already in the GP's noise term
        self._resid_sd = self._cv_residual_sd(families, X, z) if self.noise and len(z) >= 6 and not own_std else 0.0
        return self

    def _fit_family(self, family: str, X: np.ndarray, z: np.ndarray) -> RegressorMixin:
        model = make_model(family, self.seed)
        if family.startswith("gp") and self.kernel is not None:
            model.set_params(kernel=self.kernel, optimizer=None)
            return _fit_quietly(model, X, z)
        if not family.startswith("gp") or self.max_fit is None or len(z) <= self.max_fit:
            return _fit_quietly(model, X, z)
        subset = np.random.default_rng(self.seed).choice(len(z), self.max_fit, replace=False)
        tuned = _fit_quietly(model, X[subset], z[subset])
        model.set_params(kernel=tuned.kernel_, optimizer=None)
        return _fit_quietly(model, X, z)

    @property
    def fitted_kernel(self):
        """The kernel of the (first) fitted Gaussian process, hyper-parameters included; None without one."""
        return next((m.kernel_ for m in self._models if _has_std(m)), None)

    def _cv_residual_sd(self, families: list[str], X: np.ndarray, z: np.ndarray) -> float:
        """Robust spread (1.4826 x MAD) of 3-fold out-of-fold residuals of the mean, in standardised units.

        Members trained on the same points share their mistakes, so their
        spread alone says a prediction is sure where it is merely consistent;
        the held-out residual is the error a new point really has.
        """
        from sklearn.ensemble import VotingRegressor  # the mean of its members' predictions, as the predictor's mean

        mean_of_members = VotingRegressor([(f, make_model(f, self.seed)) for f in families])
        with warnings.catch_warnings(), threadpool_limits(1):  # as _fit_quietly
            warnings.simplefilter("ignore", ConvergenceWarning)
            oof = cross_val_predict(mean_of_members, X, z, cv=KFold(3, shuffle=True, random_state=self.seed))
        r = oof - z
        return float(1.4826 * np.median(np.abs(r - np.median(r))))

    def _check(self, X: np.ndarray) -> np.ndarray:
        if not self._models:
            raise RuntimeError("predictor is not fitted; call fit(X, y) first")
        X = np.asarray(X, dtype=float)
        if X.ndim == 1:
            X = X[None, :]
        if X.shape[1] != self.n_features:
            raise ValueError(f"features: expected {self.n_features} columns (the search space's n_features), got {X.shape[1]}")
        return X

    def _dist_t(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and spread in target units (normal scores for rank targets)."""
        X = self._check(X)
        with threadpool_limits(1):
            out = [m.predict(X, return_std=True) if _has_std(m) else (m.predict(X), None) for m in self._models]
        Z = np.stack([z for z, _ in out])
        own = [s**2 for _, s in out if s is not None]  # a GP knows its own uncertainty
        var = Z.var(0) + (np.mean(own, axis=0) if own else self._resid_sd**2)
        return self._mu + self._sd * Z.mean(0), self._sd * np.sqrt(var)

    def predict_dist(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of each row.

        The deviation is the spread across ensemble members (0 for one family),
        plus, with ``noise=True``, the cross-validated residual spread (a GP
        gives its own). For rank targets the mean is the back-transformed
        median and the deviation half the back-transformed one-sigma interval.
        """
        mean, std, _ = self.predict_with_draws(X)
        return mean, std

    def sample(self, X: np.ndarray, eps: np.ndarray) -> np.ndarray:
        """Draws ``(len(eps), len(X))`` from each row's predictive distribution, one per standard normal in ``eps``.

        Drawn in target units and then back-transformed, so for rank targets
        the draws keep the skew of the measured values (a network cannot be
        drawn better than the best by more than the top of the data suggests).
        ``eps`` may also be ``(samples, len(X))`` for independent draws per row.
        """
        return self.predict_with_draws(X, eps)[2]

    def predict_with_draws(self, X: np.ndarray, eps: np.ndarray | None = None):
        """``(mean, std, draws)`` of :meth:`predict_dist` and :meth:`sample` from one pass over the models.

        ``draws`` is ``None`` without ``eps``. A search scoring thousands of
        candidates needs all three; a GP's prediction is the costly part.
        """
        mean, std = self._dist_t(X)
        draws = None
        if eps is not None:
            eps = np.asarray(eps, dtype=float)
            t = mean[None, :] + std[None, :] * (eps[:, None] if eps.ndim == 1 else eps)
            draws = t if self._transform is None else self._transform.inverse(t)
        if self._transform is not None:
            lo, hi = self._transform.inverse(mean - std), self._transform.inverse(mean + std)
            return self._transform.inverse(mean), (hi - lo) / 2, draws
        return mean, std, draws

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Mean prediction of each row (the median for rank and log targets), without the cost of a spread."""
        X = self._check(X)
        with threadpool_limits(1):
            z = np.mean([m.predict(X) for m in self._models], axis=0)
        mean = self._mu + self._sd * z
        return mean if self._transform is None else self._transform.inverse(mean)

    def __repr__(self) -> str:
        extra = f", chosen={self.chosen!r}" if self.chosen else ""
        return f"Predictor(kind={self.kind!r}{extra})"


class _LogTarget:
    """Targets replaced by their logarithm: for positive metrics whose errors are relative (latency, energy).

    A timing's noise grows with the timing, so in log units one noise level
    fits fast and slow networks alike, and a prediction stays positive.
    """

    def __init__(self, y: np.ndarray):
        if (y <= 0).any():
            raise UserError("predictor target 'log' needs positive values; use 'raw' or 'rank' for this metric")

    def forward(self, y: np.ndarray) -> np.ndarray:
        return np.log(y)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        return np.exp(z)


class _RankTarget:
    """Targets replaced by normal scores of their ranks, and back by monotone interpolation.

    Heavy tails (e.g. a few broken networks at 90% error) otherwise dominate a
    squared loss, and the fit ignores the differences among the good networks
    that decide the front. Beyond the measured range the map continues with
    the slope of its last segments, so a prediction can still beat the best.
    """

    def __init__(self, y: np.ndarray):
        from scipy.stats import norm

        ys = np.sort(y)
        self.y = ys
        self.z = norm.ppf((np.arange(len(ys)) + 0.5) / len(ys))
        order = np.argsort(np.argsort(y, kind="stable"), kind="stable")
        self._train_z = self.z[order]

    def forward(self, y: np.ndarray) -> np.ndarray:
        return self._train_z

    def inverse(self, z: np.ndarray) -> np.ndarray:
        ys, zs = self.y, self.z
        k = min(5, len(ys) - 1)
        out = np.interp(z, zs, ys)
        lo_slope = (ys[k] - ys[0]) / (zs[k] - zs[0])
        hi_slope = (ys[-1] - ys[-1 - k]) / (zs[-1] - zs[-1 - k])
        out = np.where(z < zs[0], ys[0] + (z - zs[0]) * lo_slope, out)
        return np.where(z > zs[-1], ys[-1] + (z - zs[-1]) * hi_slope, out)


_controller: ThreadpoolController | None = None


def threadpool_limits(n: int):
    """A context limiting BLAS and OpenMP to ``n`` threads.

    One controller serves every call: threadpoolctl's own ``threadpool_limits``
    scans the loaded libraries each time, which costs more than predicting a
    few hundred rows, and a search predicts thousands of times.
    """
    global _controller
    if _controller is None:
        _controller = ThreadpoolController()
    return _controller.limit(limits=n)


def _has_std(model: RegressorMixin) -> bool:
    """Whether ``model.predict`` can return its own predictive standard deviation (a Gaussian process)."""
    return hasattr(model, "kernel_")


def _fit_quietly(model: RegressorMixin, X: np.ndarray, z: np.ndarray) -> RegressorMixin:
    # one BLAS thread: these matrices are tiny, and threads only add overhead (and fight on a shared machine)
    with warnings.catch_warnings(), threadpool_limits(1):
        # a small MLP on tens of points may stop before "converging"; its fit is still useful
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, z)


# ------------------------------------------------------------- rank quality
def kendall_tau(pred: np.ndarray, true: np.ndarray) -> float:
    """Kendall's tau-b between predictions and truth (0 when either is constant)."""
    from scipy.stats import kendalltau

    t = kendalltau(pred, true)[0]
    return 0.0 if np.isnan(t) else float(t)


def spearman(pred: np.ndarray, true: np.ndarray) -> float:
    """Spearman's rank correlation (0 when either is constant)."""
    from scipy.stats import spearmanr

    r = spearmanr(pred, true)[0]
    return 0.0 if np.isnan(r) else float(r)


def mape(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean absolute percentage error (%), ignoring true values of zero."""
    pred, true = np.asarray(pred, float), np.asarray(true, float)
    nz = true != 0
    return float(np.mean(np.abs((pred[nz] - true[nz]) / true[nz])) * 100) if nz.any() else 0.0


def cross_validate(kind: str, X: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0) -> dict[str, float]:
    """K-fold out-of-fold Kendall tau, Spearman and MAPE of a predictor kind."""
    X, y = np.asarray(X, float), np.asarray(y, float)
    folds = max(2, min(folds, len(y)))
    pred = cross_val_predict(Predictor(kind, seed=seed), X, y, cv=KFold(folds, shuffle=True, random_state=seed))
    return {"kendall_tau": kendall_tau(pred, y), "spearman": spearman(pred, y), "mape": mape(pred, y), "n": int(len(y))}


def choose_family(X: np.ndarray, y: np.ndarray, families: Sequence[str] = FAMILIES, folds: int = 5, seed: int = 0) -> str:
    """The family with the best cross-validated Kendall tau (ties go to the earlier, simpler one)."""
    scores = {f: cross_validate(f, X, y, folds, seed)["kendall_tau"] for f in families}
    return max(families, key=lambda f: scores[f])


__all__ = [
    "FAMILIES", "KINDS", "Predictor", "make_model", "kendall_tau", "spearman", "mape", "cross_validate", "choose_family",
]
