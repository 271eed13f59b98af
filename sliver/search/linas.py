"""LINAS: lightweight iterative NAS with predictors in the loop.

Each round: fit a predictor for every *expensive* metric on all measurements
so far (by default a Gaussian process, whose posterior says where it is unsure;
the target transform, raw, rank or log, is chosen by cross-validation every few
rounds); take the whole space as candidates when it is small enough to score
outright, else search the predicted objectives (cheap objectives computed
exactly): a pymoo NSGA-II run started from the measured front, then Pareto
local search by single-gene moves from the predicted front, every visited
network de-duplicated by its canonical row (:meth:`~sliver.space.SearchSpace.keys`)
and the ones nearest the predicted front kept; choose the next batch by expected
hypervolume improvement over the measured front, averaged over draws from the
predictive distributions (rank-target models are drawn in rank space and mapped
back, so a draw stays plausible). The batch first takes, for each expensive
objective, the candidate most expected to extend its end of the front (the ends
fix the reference point, so no hypervolume values them); in a space searched
rather than scored, ``far_share`` of it (a tenth) comes from networks at least
three genes away from every measured one: the predictors rank well next to
what was measured but can misjudge a whole region never measured (see
``benchmarks/search_large_predictors.py``), and picks that all sit next to
measurements would never show it; then ``local_share``
of it (in a space searched rather than scored, a fifth) comes from networks one gene away from a measured front point (a Pareto
local search the predictors steer: it saves evaluations, see
``benchmarks/search_nb201.py``, because the predictors rank the region around the best
networks far better than the space at large), the rest from anywhere; each
pick is added to the front as if measured (times the predicted probability of
meeting the expensive constraints), so the batch spreads along the front's
gaps. Only measured points ever leave the search. A ``latency_model`` (an
operator lookup table, a transferred or learned latency model) can stand in for
the latency predictor: it is only rescaled to the measured points, so it ranks
well from the first round; one that learns (has an ``observe`` method, as the
few-shot transfer model) is first refitted on every latency measured so far,
each a free sample of the device. The front the search reports is still measured.
A predicted metric whose measurements lie on a grid (a phone that reports whole
milliseconds; see :func:`value_grid`) has its predictions and draws rounded to
that grid: on such a device many networks tie, the front is a staircase, and a
network predicted a fraction below a step would otherwise be credited with a
sliver of hypervolume that no measurement can give it.
Compared with DyNAS-T's LINAS: fixed-hyper-parameter predictors fitted in
milliseconds (no 200-model grid search per loop), canonical duplicates never
proposed, uncertainty used, constraints handled, and the state rebuilt from
told results, so a resumed search continues where it was.
"""

from __future__ import annotations

import numpy as np
from pymoo.core.problem import Problem as _PymooProblem
from pymoo.optimize import minimize
from scipy.stats import norm
from sklearn.model_selection import KFold, cross_val_predict

from sliver.errors import UserError
from sliver.predict.features import features_from_vectors
from sliver.predict.models import Predictor, kendall_tau, mape, threadpool_limits
from sliver.search.base import Strategy, register_strategy
from sliver.search.evolutionary import make_algorithm
from sliver.search.hv import hvi, nondominated
from sliver.space import Config, row_keys

#: genes in which a ``far_share`` pick differs from every measured network, at least: beyond the single-gene moves
#: of the local share and the local search, where a predictor fitted on the measurements interpolates
_FAR_GENES = 3
#: predicted-front networks a round of local search moves: every move of each is predicted, so this bounds a round's cost
_LOCAL_WIDTH = 16


class LINAS(Strategy):
    """Predictor-in-the-loop search choosing batches by expected hypervolume improvement.

    Options: ``n_init`` random configs measured first (with ``extremes`` the
    largest and smallest networks among them: a super-network trained by the
    sandwich rule trains those two every step, so they pin both ends of the
    front, and random draws from a large space almost never hit them); ``batch`` default batch
    size; ``predictor`` kind (see :class:`~sliver.predict.Predictor`; default
    ``"gp"``, which for a metric declared ``additive`` (see
    :class:`~sliver.core.Objective`) means ``"gp_additive"``, a GP with a
    linear term; ``"auto"``: the best of ``members`` by cross-validation, per
    metric, which on NB201 needed about twice the evaluations of the GP);
    ``local_share`` of each batch chosen among networks one gene away from a
    measured front point (default: 0.8 where every network is scored, 0.2
    where the space is searched, so batches spread along the predicted front);
    ``far_share`` of each batch chosen among networks at least three genes away
    from every measured one (default: 0.1 where the space is searched, so a
    batch of 10 spends one pick testing the predictors where no measurement
    backs them; 0 where every network is scored and the predictors see the
    whole space);
    ``features`` a callable mapping encoded configs ``(n, n_genes)`` to
    predictor features (default: the space's one-hot; e.g.
    :func:`~sliver.bench.nb201.nb201_features` zeroes a cell's dead edges);
    ``inner`` = ``"nsga2"`` (pymoo search on predictions), ``"exhaustive"``
    (score every config) or ``"auto"`` (exhaustive when the space has at most
    ``exhaustive_limit`` networks); ``inner_pop``/``inner_generations`` size
    the inner NSGA-II, ``local_rounds`` the Pareto local search after it
    (each round moves up to 16 networks spread along the predicted front by
    every single-gene change) and ``candidates`` how many of the networks visited,
    those nearest the predicted front, are scored by expected improvement;
    ``max_fit`` bounds the cost of fitting a GP and of the cross-validated
    choice as measurements grow: beyond that many points both run on a seeded
    subset of that size, and a GP's hyper-parameters are searched only in the
    rounds that check the choice (see :class:`~sliver.predict.Predictor`);
    ``samples`` draws per candidate for the expectation;
    ``cv_every`` rounds between cross-validated checks of the predictors, which
    choose the family and ``target`` (``"auto"``: raw, rank-transformed or, for positive metrics, log targets,
    whichever ranks the better half of the measured points best);
    ``latency_model`` a callable mapping a list of configs to latencies, used
    for the metric ``latency_metric`` (default: the first predicted metric
    declared ``additive``) instead of a predictor fitted on the
    measurements (e.g. :class:`~sliver.predict.lut.LUTLatencyModel`); if it has
    ``observe(configs, latencies)`` (e.g. :class:`~sliver.predict.transfer.TransferLatencyModel`),
    each round calls it with all the latencies measured so far before using it.
    """

    name = "linas"

    def __init__(
        self,
        n_init: int = 20,
        batch: int = 10,
        predictor: str = "gp",
        inner: str = "auto",
        inner_pop: int = 100,
        inner_generations: int = 20,
        samples: int = 32,
        exhaustive_limit: int = 20_000,
        shortlist: int = 300,
        cv_every: int = 5,
        target: str = "auto",
        latency_model=None,
        latency_metric: str | None = None,
        members: tuple[str, ...] = ("ridge", "svr", "lgbm"),
        features=None,
        local_share: float | None = None,
        far_share: float | None = None,
        extremes: bool = False,
        candidates: int = 1000,
        local_rounds: int = 4,
        max_fit: int = 300,
    ):
        if inner not in ("auto", "nsga2", "exhaustive"):
            raise UserError(f"linas option inner must be 'auto', 'nsga2' or 'exhaustive', got {inner!r}")
        if target not in ("auto", "raw", "rank", "log"):
            raise UserError(f"linas option target must be 'auto', 'raw', 'rank' or 'log', got {target!r}")
        if n_init < 2:
            raise UserError(f"linas option n_init must be at least 2, got {n_init}")
        if latency_model is not None and not callable(latency_model):
            raise UserError("linas option latency_model must be callable on a list of configs "
                             "(e.g. a LUTLatencyModel), returning their latencies")
        Predictor(predictor, members=members)  # fail early on an unknown predictor kind or member
        self.members = tuple(members)
        if features is not None and not callable(features):
            raise UserError("linas option features must be callable on an (n, n_genes) array of encoded configs")
        self.features = features
        self.latency_model, self.latency_metric = latency_model, latency_metric
        self.n_init, self.default_batch, self.predictor = n_init, batch, predictor
        self.inner, self.inner_pop, self.inner_generations = inner, inner_pop, inner_generations
        self.samples, self.exhaustive_limit, self.shortlist, self.cv_every = samples, exhaustive_limit, shortlist, cv_every
        self.target = target
        for option, share in (("local_share", local_share), ("far_share", far_share)):
            if share is not None and not 0.0 <= share <= 1.0:
                raise UserError(f"linas option {option} must be between 0 and 1, got {share}")
        for option, value, least in (("candidates", candidates, 1), ("local_rounds", local_rounds, 0), ("max_fit", max_fit, 10)):
            if int(value) < least:
                raise UserError(f"linas option {option} must be at least {least}, got {value}")
        self.local_share, self.far_share = local_share, far_share
        self.n_candidates, self.local_rounds, self.max_fit = int(candidates), int(local_rounds), int(max_fit)
        self.extremes = bool(extremes)
        self.rounds = 0

    def setup(self, problem) -> None:
        super().setup(problem)
        self._pool: np.ndarray | None = None
        self._known_keys: set[bytes] = set()  # canonical rows (SearchSpace.keys) of every told config
        self._encoded: dict[str, np.ndarray] = {}  # each told config's encoding, by its key, encoded once
        self._cheap_cache: dict[bytes, tuple[float, ...]] = {}  # row_keys -> cheap objectives, in cheap_names order
        self._model_cache: dict[tuple[int, ...], float] = {}  # the latency model's values, kept across rounds
        self._grid: dict[str, float] = {}  # metric -> the step its measured values lie on (whole milliseconds: 1.0)
        cheap = set(problem.cheap_names) | {c.metric for c in problem.cheap_constraints()}
        # metrics to predict: expensive objectives and constraints on expensive metrics
        self._choice: dict[str, tuple[str, str]] = {}  # metric -> (predictor kind, target), re-chosen by CV
        self._kernels: dict[tuple[str, str, str], object] = {}  # (metric, kind, target) -> the GP kernel fitted last
        self._predicted = problem.expensive_names + sorted(
            {c.metric for c in problem.constraints} - cheap - set(problem.expensive_names)
        )
        # roles come from the metrics' declarations (Objective.additive), never from their names
        declared = {n: problem.declared(n) for n in self._predicted}
        self._additive = {n for n, o in declared.items() if o is not None and o.additive}
        self._model_metric = self.latency_metric or next((n for n in self._predicted if n in self._additive), None)
        if self.latency_model is not None and self._model_metric is None:
            raise UserError("linas option latency_model: no predicted metric is declared additive; "
                            "declare one (Objective(name, 'min', additive=True)) or set linas option latency_metric")
        if self._model_metric is not None:
            self._additive.add(self._model_metric)  # the metric a latency model stands in for is latency-like

    # ------------------------------------------------------------------ ask
    def _ask(self, n: int) -> list[Config]:
        measured = self.measured()
        if len(measured) < self.n_init:
            want = min(n, self.n_init - len(measured)) if measured else min(n, self.n_init)
            anchors = self._unseen_extremes()[:want] if self.extremes else []
            keys = {self.space.key(c) for c in anchors}
            drawn = [c for c in self.random_unseen(want) if self.space.key(c) not in keys]
            return anchors + drawn[: want - len(anchors)]
        self.rounds += 1
        # one BLAS/OpenMP thread: a round's matrices are small (hundreds of measured rows against thousands of
        # candidates), so more threads add CPU time spinning but not speed, and take cores from measurements
        with threadpool_limits(1):
            models = self._fit(measured)
            X = self._candidates(models, measured)
            if len(X) == 0:
                return self.random_unseen(n)
            picks = self._select(X, models, measured, n)
        return [self.space.decode(X[i]) for i in picks]

    def _tell(self, told) -> None:
        X = self.space.encode_many([c for _, c, _ in told])
        self._known_keys.update(self.space.keys(X))
        self._encoded.update(zip([k for k, _, _ in told], X))

    def _rows(self, measured) -> np.ndarray:
        """The encoded rows of measured points."""
        return np.stack([self._encoded[k] for k, _, _ in measured])

    # ------------------------------------------------------------- predictors
    def _features(self, X: np.ndarray) -> np.ndarray:
        """Predictor features of encoded rows: the user's ``features`` callable, else the space's one-hot."""
        return self.features(X) if self.features is not None else features_from_vectors(self.space, X)

    def _fit(self, measured) -> dict:
        X = self._features(self._rows(measured))
        models: dict[str, Predictor | _StandIn] = {}
        for name in self._predicted:
            rows = [i for i, (_, _, o) in enumerate(measured) if name in o.values]
            y = np.array([measured[i][2].values[name] for i in rows])
            if name == self._model_metric and self.latency_model is not None:
                configs = [measured[i][1] for i in rows]
                learns = hasattr(self.latency_model, "observe")  # a model that learns from the device's measurements
                if learns:
                    self.latency_model.observe(configs, y)
                    self._model_cache.clear()  # its values changed
                stand_in = _StandIn(self.latency_model, self.space, configs, y, self._model_cache)
                models[name] = stand_in
                refit = f" refitted on {len(rows)} measured points," if learns else ""
                self.log.append(f"linas round {self.rounds}: {name} from the given latency model,{refit} {stand_in.describe()}")
                continue
            step = value_grid(y)
            if step is not None and self._grid.get(name) != step:
                self.log.append(f"linas round {self.rounds}: {name} is measured on a grid of step {step:g}: "
                                f"its predictions are rounded to it, so that ties with measured points count as ties")
            if step is None:
                self._grid.pop(name, None)
            else:
                self._grid[name] = step
            check = name not in self._choice or (self.cv_every and self.rounds % self.cv_every == 1)
            if check:
                self._choice[name] = self._choose(name, X[rows], y)
            kind, target = self._choice[name]
            seed = int(self.problem.seed) + self.rounds
            # beyond max_fit points the GP's hyper-parameters are searched only when the choice is checked, and
            # kept in between: ten more points move them little, and the search is most of a fit's cost
            kept = self._kernels.get((name, kind, target)) if len(y) > self.max_fit and not check else None
            model = Predictor(kind, seed=seed, target=target, members=self.members, noise=True, max_fit=self.max_fit,
                              kernel=kept).fit(X[rows], y)
            self._kernels[name, kind, target] = model.fitted_kernel
            models[name] = model
        return models

    def _choose(self, name: str, X: np.ndarray, y: np.ndarray) -> tuple[str, str]:
        """Predictor family and target (raw, rank or log) that rank the better half of the points best in 3-fold CV (logged).

        Beyond ``max_fit`` points, the cross-validation runs on a seeded subset of that size.

        With ``predictor="auto"`` every member family is tried (latency is
        often near-additive, so ridge wins; accuracy is not); otherwise only
        the target is chosen for the given kind.
        """
        if len(y) > self.max_fit:  # the choice needs a fair sample, not every point: its cost stays bounded
            rows = np.random.default_rng(int(self.problem.seed) + self.rounds).choice(len(y), self.max_fit, replace=False)
            X, y = X[rows], y[rows]
        kinds = list(self.members) if self.predictor == "auto" else [self._kind(name)]
        targets = ["raw", "rank"] + (["log"] if (y > 0).all() else []) if self.target == "auto" else [self.target]
        sign = next((o.sign for o in self.problem.objectives if o.name == name), 1.0)
        good = sign * y <= np.median(sign * y)  # the half that decides the front
        scores = {}
        folds = list(KFold(3, shuffle=True, random_state=int(self.problem.seed)).split(X))
        for kind in kinds:
            for target in targets:
                model = Predictor(kind, seed=int(self.problem.seed), target=target, members=self.members)
                pred = cross_val_predict(model, X, y, cv=folds)
                scores[kind, target] = (kendall_tau(pred[good], y[good]), kendall_tau(pred, y), mape(pred, y))
        best = max(scores, key=lambda k: scores[k][0])
        tau_good, tau_all, err = scores[best]
        self.log.append(
            f"linas round {self.rounds}: {name} predictor ({best[0]}, {best[1]} targets) on {len(y)} points: "
            f"3-fold CV Kendall tau {tau_all:.3f} (better half {tau_good:.3f}), MAPE {err:.1f}%"
        )
        return best

    def _kind(self, name: str) -> str:
        """The predictor family for ``name``: the additive GP for an additive metric when the default GP is asked for.

        A network's latency is close to the sum of its layers' times; the
        additive GP fits that sum exactly from about as many points as options
        (NB201 fpga and eyeriss), where accuracy is better off without it.
        """
        return "gp_additive" if self.predictor == "gp" and name in self._additive else self.predictor

    def _predict(self, X: np.ndarray, models: dict, eps: np.ndarray | None = None):
        """Min-oriented objectives of encoded rows: ``(medians, draws, dist)``, one pass over each predictor.

        ``medians``: the predictors' medians, shape ``(n, n_objectives)``;
        ``draws``: with ``eps`` ``(samples, n_predicted)`` standard normals,
        draws from the predictive distributions, shape ``(samples, n,
        n_objectives)`` (the same normals for every row: common random numbers
        keep the comparison between candidates fair), else ``None``;
        ``dist``: (mean, spread) of every predicted metric. Cheap objectives are exact.
        """
        feats = self._features(X)
        cheap = self._cheap(X) if self.problem.cheap_names else {}
        S = 1 if eps is None else len(eps)
        med = np.zeros((len(X), len(self.problem.objectives)))
        out = np.zeros((S, len(X), len(self.problem.objectives)))
        dist, draws = {}, {}
        for name, m in models.items():
            e = None if eps is None else eps[:, self._predicted.index(name)]
            if isinstance(m, _StandIn):
                mean, sd = m.predict_vectors(X)
                d = None if e is None else mean[None, :] + sd[None, :] * e[:, None]
            else:
                mean, sd, d = m.predict_with_draws(feats, e)
            if name in self._grid:
                mean, d = self._snap(name, mean), None if d is None else self._snap(name, d)
            dist[name] = (mean, sd)
            draws[name] = mean[None, :] if d is None else d
        for j, o in enumerate(self.problem.objectives):
            if o.cost == "cheap":
                med[:, j] = out[:, :, j] = cheap[o.name]
            else:
                med[:, j], out[:, :, j] = dist[o.name][0], draws[o.name]
        med, out = med * self.problem.signs, out * self.problem.signs
        return med, (None if eps is None else out), dist

    def _predict_mean(self, X: np.ndarray, models: dict) -> tuple[np.ndarray, np.ndarray]:
        """Min-oriented predicted objectives of encoded rows and whether each is predicted feasible.

        The inner search scores tens of thousands of rows: medians suffice
        there, and a spread (costly for a GP) is computed only when a
        constraint on a predicted metric needs it.
        """
        if any(c.metric in models for c in self.problem.constraints):
            mean, _, dist = self._predict(X, models)
            return mean, np.asarray(self._p_feasible(dist)) * np.ones(len(X)) >= 0.5
        feats = self._features(X)
        cheap = self._cheap(X) if self.problem.cheap_names else {}
        med = np.zeros((len(X), len(self.problem.objectives)))
        for j, o in enumerate(self.problem.objectives):
            if o.cost == "cheap":
                med[:, j] = cheap[o.name]
                continue
            m = models[o.name]
            med[:, j] = m.predict_vectors(X)[0] if isinstance(m, _StandIn) else m.predict(feats)
            if o.name in self._grid:
                med[:, j] = self._snap(o.name, med[:, j])
        return med * self.problem.signs, np.ones(len(X), dtype=bool)

    def _snap(self, name: str, values: np.ndarray) -> np.ndarray:
        """Predicted values of a metric measured on a grid, rounded to it (a device reporting whole milliseconds
        can only report whole milliseconds: a network predicted at 10.6 ms ties with the measured ones at 11)."""
        step = self._grid[name]
        return np.round(values / step) * step

    def _cheap(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """Exact cheap objectives of encoded rows, each network computed once per search (cached by its row's bytes).

        The inner search asks for tens of thousands of rows a round: keys and
        values stay in numpy and C-level containers, never one Python int per gene.
        """
        names = self.problem.cheap_names
        keys = row_keys(X)  # raw rows: canonicalising every row of the inner search would cost more than it saves
        new = list({k: i for i, k in enumerate(keys) if k not in self._cheap_cache}.values())  # one row per new network
        if new and self.problem.cheap_vectors is not None:
            # the whole population's cheap metrics in one call, when the evaluator can score encoded rows
            values = self.problem.cheap_vectors(X[new])
            table = np.column_stack([np.asarray(values[n], dtype=float) for n in names])
            self._cheap_cache.update(zip([keys[i] for i in new], map(tuple, table.tolist())))
        for i in new:
            if keys[i] not in self._cheap_cache:
                one = self.problem.cheap_values(self.space.decode(X[i]))
                self._cheap_cache[keys[i]] = tuple(float(one[n]) for n in names)
        table = np.asarray([self._cheap_cache[k] for k in keys], dtype=np.float64).reshape(len(keys), len(names))
        return {n: table[:, j] for j, n in enumerate(names)}

    def _p_feasible(self, pred: dict) -> np.ndarray | float:
        """Probability that every constraint on a predicted metric holds (Gaussian around the ensemble mean)."""
        p: np.ndarray | float = 1.0
        for c in self.problem.constraints:
            if c.metric in pred:
                mu, sd = pred[c.metric]
                z = (c.bound - mu) / np.maximum(sd, 1e-9 * max(abs(c.bound), 1.0))
                p = p * (norm.cdf(z) if c.op == "<=" else norm.sf(z))
        return p

    # ------------------------------------------------------------- candidates
    def _candidates(self, models, measured) -> np.ndarray:
        """Encoded canonical configs not yet known or pending that pass the cheap constraints."""
        X = self._all() if self._exhaustive() else self._inner_search(models, measured)
        X = X[np.array([k not in self._known_keys for k in self.space.keys(X)], dtype=bool)]
        if self.problem.cheap_constraints():
            ok = np.array([self.problem.passes_cheap(self.space.decode(x)) for x in X], dtype=bool)
            X = X[ok]
        return X

    def _exhaustive(self) -> bool:
        """Whether every network is scored (a small space) rather than searched for."""
        return self.inner == "exhaustive" or (self.inner == "auto" and self.space.count() <= self.exhaustive_limit)

    def _all(self) -> np.ndarray:
        if self._pool is None:
            if self.space.gates:
                self._pool = self.space.encode_many(self.space.enumerate(self.exhaustive_limit))
            else:
                card = self.space.gene_cardinalities
                self._pool = np.stack(np.unravel_index(np.arange(int(np.prod(card))), card), axis=1).astype(np.int64)
        return self._pool

    def _inner_search(self, models, measured) -> np.ndarray:
        """Candidates from a search of the predicted objectives: a pymoo NSGA-II run, then Pareto local search.

        NSGA-II starts from the measured front, single-gene mutants of it and
        random networks; the local search then tries every single-gene move
        from the measured front, then from the predicted front, until no move
        enters the predicted front (or ``local_rounds`` end). Of everything visited (canonical, de-duplicated,
        not yet measured) the ``candidates`` rows that the predicted medians
        put nearest the predicted front go on to the expected-improvement
        choice, with half as many of the measured front's neighbours.
        """
        seen: list[np.ndarray] = []
        strategy = self
        n_obj = len(self.problem.objectives)
        card = self.space.gene_cardinalities

        class Predicted(_PymooProblem):
            def __init__(self):
                super().__init__(n_var=len(card), n_obj=n_obj, n_ieq_constr=1, xl=np.zeros(len(card)), xu=card - 1, vtype=int)

            def _evaluate(self, x, out, *args, **kwargs):
                x = np.rint(x).astype(np.int64)
                seen.append(x)
                mean, ok = strategy._predict_mean(x, models)
                out["F"] = mean
                out["G"] = np.where(ok, -0.5, 0.5)[:, None]

        front = self._measured_front(measured)
        pop = self.inner_pop
        # start from the measured front (and its neighbours) so the inner search refines it
        starts = front[self.rng.permutation(len(front))[: pop // 2]] if len(front) > pop // 2 else front
        mutants = self.space.neighbour_vectors(starts)
        mutants = mutants[self.rng.permutation(len(mutants))[: pop // 4]]
        fresh = [self.space.encode(c) for c in self.random_unseen(pop - len(starts) - len(mutants))]
        init = np.vstack([starts, mutants] + ([np.stack(fresh)] if fresh else []))
        algo = make_algorithm("nsga2", pop, n_obj)
        algo.initialization.sampling = init
        minimize(Predicted(), algo, ("n_gen", self.inner_generations), seed=int(self.rng.integers(2**31)), verbose=False)
        X = np.unique(self.space.canonical_vectors(np.concatenate(seen)), axis=0)
        X, F, ok = self._local_search(X, front, models)
        return self._nearest_predicted_front(X, F, ok, front)

    def _measured_front(self, measured) -> np.ndarray:
        """Encoded rows of the measured non-dominated points (feasible ones when there are any)."""
        F = self.problem.to_min([o.values for _, _, o in measured])
        feas = np.array([o.feasible for _, _, o in measured], dtype=bool)
        rows = np.flatnonzero(feas) if feas.any() else np.arange(len(measured))
        return self._rows([measured[i] for i in rows[nondominated(F[rows])]])

    def _local_search(self, X: np.ndarray, front: np.ndarray, models) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pareto local search on the predictions: expand predicted-front rows by single-gene moves, ``local_rounds`` times.

        Each round moves at most ``_LOCAL_WIDTH`` rows (spread along the
        predicted front), each once. Returns the visited rows, their predicted
        objectives and whether each is predicted feasible.
        """
        X = np.unique(np.vstack([X, self.space.canonical_vectors(front)]), axis=0)
        F, ok = self._predict_mean(X, models)
        visited = set(self.space.keys(X))
        expanded: set[bytes] = set()
        todo = front
        for _ in range(self.local_rounds):
            todo = todo[[k not in expanded for k in self.space.keys(todo)]] if len(todo) else todo
            if len(todo) > _LOCAL_WIDTH:  # evenly spaced along the front (rows come sorted by the first objective)
                todo = todo[np.linspace(0, len(todo) - 1, _LOCAL_WIDTH).round().astype(int)]
            if not len(todo):
                break
            expanded.update(self.space.keys(todo))
            N = self.space.canonical_vectors(self.space.neighbour_vectors(todo))
            keys = self.space.keys(N)
            fresh = {k: i for i, k in enumerate(keys) if k not in visited}
            if not fresh:
                break
            N = N[list(fresh.values())]
            visited.update(fresh)
            FN, okN = self._predict_mean(N, models)
            X, F, ok = np.vstack([X, N]), np.vstack([F, FN]), np.concatenate([ok, okN])
            best = np.flatnonzero(ok)[nondominated(F[ok])] if ok.any() else np.arange(0)
            todo = X[best[np.argsort(F[best, 0], kind="stable")]]
        return X, F, ok

    def _nearest_predicted_front(self, X: np.ndarray, F: np.ndarray, ok: np.ndarray, front: np.ndarray) -> np.ndarray:
        """The ``candidates`` rows of ``X`` nearest the predicted front, plus half as many of the measured front's neighbours.

        Nearness is the additive epsilon (in objectives scaled to the predicted
        front's span) by which a row misses being non-dominated by up to 128
        points spread along the front; predicted infeasible rows come last.
        """
        new = np.array([k not in self._known_keys for k in self.space.keys(X)], dtype=bool)
        X, F, ok = X[new], F[new], ok[new]
        if len(X) <= self.n_candidates:
            return X
        pf = F[ok][nondominated(F[ok])] if ok.any() else F[nondominated(F)]
        lo, hi = pf.min(0), pf.max(0)
        span = np.where(hi > lo, hi - lo, 1.0)
        pf = pf[np.argsort(pf[:, 0], kind="stable")]
        pf = pf[np.unique(np.linspace(0, len(pf) - 1, min(len(pf), 128)).round().astype(int))]  # enough to shortlist against
        Fs, pf = (F - lo) / span, (pf - lo) / span
        gap = np.max(Fs[:, None, :] - pf[None, :, :], axis=2).min(1)
        gap = np.where(ok, gap, gap + 1e6)
        keep = set(np.argsort(gap, kind="stable")[: self.n_candidates].tolist())
        near = np.flatnonzero(self._one_gene_away(X, front))
        keep |= set(near[np.argsort(gap[near], kind="stable")[: self.n_candidates // 2]].tolist())
        return X[sorted(keep)]

    # --------------------------------------------------------------- selection
    def _select(self, X: np.ndarray, models, measured, n: int) -> list[int]:
        """Greedy batch by expected hypervolume improvement (Kriging believer between picks).

        The expectation is over draws from the predictors' distributions (for
        rank targets drawn in rank space and mapped back, so they stay within
        what the measured values make plausible), in a scale where the
        measured front spans [0, 1] in each objective and the reference point
        sits 10% beyond its worst values (as the benchmark scores a front).
        """
        eps = self.rng.standard_normal((self.samples, len(self._predicted)))
        mean, D, dist = self._predict(X, models, eps)
        pfeas = np.asarray(self._p_feasible(dist)) * np.ones(len(X))
        ok_F = self.problem.to_min([o.values for _, _, o in measured])
        feas = np.array([o.feasible for _, _, o in measured], dtype=bool)
        front = ok_F[feas] if feas.any() else ok_F[:0]
        if len(front):
            front = front[nondominated(front)]
            lo, hi = front.min(0), front.max(0)
        else:
            lo, hi = ok_F.min(0), ok_F.max(0)
        span = np.where(hi > lo, hi - lo, np.maximum(np.abs(hi), 1.0))
        front, mean, D = (front - lo) / span, (mean - lo) / span, (D - lo) / span
        ref = np.full(mean.shape[1], 1.1)
        m = mean.shape[1]

        def ehvi(idx: np.ndarray, front: np.ndarray) -> np.ndarray:
            return hvi(front, D[:, idx].reshape(-1, m), ref).reshape(self.samples, len(idx)).mean(0) * pfeas[idx]

        idx = np.arange(len(X))
        picks = self._extremes(D, front, pfeas)[: max(n - 1, 0)]
        for i in picks:
            front = np.vstack([front, mean[i]])
        score = ehvi(idx, front)
        short = idx[np.argsort(-score)[: self.shortlist]]
        n_far = int(round(self._far_share() * n))
        far = idx[self._far_from_measured(X, measured)] if n_far else idx[:0]
        for _ in range(min(n_far, len(far), max(n - len(picks), 0))):
            # the far network most expected to improve, else the one the predictions put nearest the front:
            # either way a measurement where the predictors have none
            taken = np.isin(far, picks)
            s = np.where(taken, -1.0, ehvi(far, front))
            if s.max() > 0:
                best = int(far[int(np.argmax(s))])
            else:
                nearest = self._closest_to_front(mean[far], front, 1, exclude=set(np.flatnonzero(taken).tolist()))
                if not nearest:
                    break
                best = int(far[nearest[0]])
            picks.append(best)
            front = np.vstack([front, mean[best]])
        near = self._near_front(X, measured)
        local = idx[near][np.argsort(-score[near])[: self.shortlist]]
        n_local = int(round(self._local_share() * n)) if len(local) else 0
        for k in range(min(n, len(X)) - len(picks)):
            pool = local if k < n_local else short
            s = ehvi(pool, front)
            s = np.where(np.isin(pool, picks), -1.0, s)
            if s.max() <= 0:
                if pool is local:
                    continue
                break
            best = int(pool[int(np.argmax(s))])
            picks.append(best)
            front = np.vstack([front, mean[best]])  # believe the prediction until it is measured
        if len(picks) < n:
            picks += self._closest_to_front(mean, front, n - len(picks), exclude=set(picks))
        return picks

    def _local_share(self) -> float:
        """The share of a batch chosen next to the measured front: ``local_share``, else by the size of the space.

        Where every network is scored, the predictors rank the region around
        the best networks far better than the space at large; in a space searched
        for, the inner search already refines the measured front, and the batch
        must spread along the whole predicted front to move it.
        """
        if self.local_share is not None:
            return self.local_share
        return 0.8 if self._exhaustive() else 0.2

    def _far_share(self) -> float:
        """The share of a batch chosen far from every measurement: ``far_share``, else 0.1 in a searched space.

        Where every network is scored the predictors see the whole space; in
        a space searched for, a predictor fitted where the search has been
        can misjudge a whole region it has never measured, and only a
        measurement there shows it.
        """
        if self.far_share is not None:
            return self.far_share
        return 0.0 if self._exhaustive() else 0.1

    def _far_from_measured(self, X: np.ndarray, measured) -> np.ndarray:
        """Boolean mask of candidates at least ``_FAR_GENES`` genes away from every measured network."""
        return np.asarray((self._genes_apart(X, self._rows(measured)) >= _FAR_GENES).all(1))

    def _genes_apart(self, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """How many genes each row of ``X`` differs in from each row of ``Y``: shape ``(len(X), len(Y))``."""
        card = self.space.gene_cardinalities
        offsets = np.concatenate([[0], np.cumsum(card)[:-1]])

        def one_hot(rows: np.ndarray) -> np.ndarray:
            out = np.zeros((len(rows), int(card.sum())), dtype=np.float32)
            out[np.arange(len(rows))[:, None], offsets + rows] = 1.0
            return out

        # genes two rows share = the dot product of their one-hot rows: one matrix product for the whole population
        return len(card) - one_hot(X) @ one_hot(Y).T

    def _near_front(self, X: np.ndarray, measured) -> np.ndarray:
        """Boolean mask of candidates one gene away from a measured (feasible) front point."""
        return self._one_gene_away(X, self._measured_front(measured))

    def _one_gene_away(self, X: np.ndarray, front: np.ndarray) -> np.ndarray:
        return np.asarray((self._genes_apart(X, front) == 1).any(1))

    def _unseen_extremes(self) -> list[Config]:
        """The largest and smallest networks, if not yet known and within the cheap constraints."""
        taken = set(self.known) | set(self.pending)
        out = []
        for config in (self.space.max_config(), self.space.min_config()):
            config = self.space.canonical(config)
            key = self.space.key(config)
            if key not in taken and self.problem.passes_cheap(config):
                taken.add(key)
                out.append(config)
        return out

    def _extremes(self, D: np.ndarray, front: np.ndarray, pfeas: np.ndarray) -> list[int]:
        """For each objective, the candidate with the largest expected improvement on its best measured value.

        The ends of the front fix where the reference point lies, so no
        hypervolume measure beyond them can value them: the fastest network
        (even a useless one) and the most accurate one are sought on their own.
        """
        if not len(front):
            return []
        picks: list[int] = []
        for j in range(D.shape[2]):
            if self.problem.objectives[j].cost != "expensive":
                continue  # a cheap objective's extreme is known exactly: the front search finds it
            ei = np.maximum(front[:, j].min() - D[:, :, j], 0.0).mean(0) * pfeas
            best = int(np.argmax(ei))
            if ei[best] > 1e-3 and best not in picks:  # 0.1% of the front's span: below that the end is reached
                picks.append(best)
        return picks

    def _closest_to_front(self, P: np.ndarray, front: np.ndarray, k: int, exclude: set[int]) -> list[int]:
        """When no candidate is expected to improve: the ones an optimistic guess puts nearest the front."""
        if len(front):
            gap = np.min(np.max(P[:, None, :] - front[None, :, :], axis=2), axis=1)  # additive epsilon to non-dominance
        else:
            gap = P.sum(1)
        order = [int(i) for i in np.argsort(gap) if int(i) not in exclude]
        return order[:k]


def value_grid(y: np.ndarray, min_ties: float = 0.2) -> float | None:
    """The step of the grid measured values lie on (1.0 for whole milliseconds), or None when they do not.

    Values are on a grid when each is a whole multiple of the smallest gap
    between distinct values, at least three distinct values were seen, and at
    least ``min_ties`` of the values repeat an earlier one: a device that
    reports whole milliseconds ties many networks, and a front on it is a
    staircase whose steps only a network at or below a step's value extends.
    """
    y = np.round(np.asarray(y, dtype=float), 9)  # sums of the same terms in another order are one value
    distinct = np.unique(y[np.isfinite(y)])
    if len(distinct) < 3 or len(distinct) > (1.0 - min_ties) * len(y):
        return None
    step = float(np.min(np.diff(distinct)))  # positive: the values are distinct and sorted
    multiples = distinct / step
    return step if np.allclose(multiples, np.round(multiples), rtol=0.0, atol=1e-6) else None


class _StandIn:
    """A user's latency model in place of a fitted predictor, rescaled to the measured points.

    The model may be off by a constant factor (an operator table misses the
    whole network's overheads, a transferred model its level): the median ratio
    measured / modelled fixes that; the spread of the log ratios is the
    uncertainty the acquisition sees (in-sample when the model was refitted on
    these points, so the search trusts a model that fits its measurements).
    """

    def __init__(self, model, space, configs: list[Config], measured: np.ndarray, cache: dict) -> None:
        self.model, self.space = model, space
        self._cache = cache
        modelled = self._model([tuple(space.encode(c).tolist()) for c in configs])
        log_ratio = np.log(np.maximum(measured, 1e-12) / np.maximum(modelled, 1e-12))
        self.scale = float(np.exp(np.median(log_ratio)))
        self.rel_sd = float(np.std(log_ratio))
        self.tau = kendall_tau(modelled, measured) if len(measured) > 2 else float("nan")
        self.n = len(measured)

    def _model(self, keys: list[tuple[int, ...]]) -> np.ndarray:
        new = [k for k in dict.fromkeys(keys) if k not in self._cache]
        if new:
            values = np.asarray(self.model([self.space.decode(np.array(k)) for k in new]), dtype=float).reshape(-1)
            self._cache.update(zip(new, values.tolist()))
        return np.array([self._cache[k] for k in keys])

    def predict_vectors(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and spread of the metric for encoded rows."""
        mean = self.scale * self._model([tuple(int(v) for v in x) for x in X])
        return mean, mean * self.rel_sd

    def describe(self) -> str:
        return (f"scale {self.scale:.3g} x model, Kendall tau {self.tau:.3f} and log-ratio spread {self.rel_sd:.3f} "
                f"on {self.n} measured points")


register_strategy("linas", LINAS)
