"""Bayesian search with Optuna's multi-objective samplers (TPE, and the Gaussian-process sampler), through Optuna's ask/tell interface."""

from __future__ import annotations

import warnings
from typing import Literal

import optuna
from optuna.trial import TrialState

from sliver.search.base import Strategy, register_strategy
from sliver.space import Config

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _constraints(trial) -> list[float]:
    return [trial.user_attrs.get("violation", 0.0)]


class TPESearch(Strategy):
    """Optuna's TPESampler (multi-objective, constraint-aware); one categorical parameter per gene.

    A proposal whose canonical key is already known is told to Optuna with the
    known values at once and another is asked, so nothing is measured twice.
    """

    name = "tpe"
    default_batch = 1

    def __init__(self, n_startup_trials: int = 10, max_retries: int = 100):
        self.n_startup_trials = n_startup_trials
        self.max_retries = max_retries

    def _sampler(self, problem) -> optuna.samplers.BaseSampler:
        return optuna.samplers.TPESampler(
            seed=int(problem.seed), n_startup_trials=self.n_startup_trials, multivariate=True,
            constraints_func=_constraints if problem.constraints else None,
        )

    def setup(self, problem) -> None:
        super().setup(problem)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = self._sampler(problem)
        directions: list[Literal["minimize", "maximize"]] = ["minimize" if o.direction == "min" else "maximize" for o in problem.objectives]
        self.study = optuna.create_study(directions=directions, sampler=sampler)
        self._card = self.space.gene_cardinalities
        self._open: dict[str, optuna.trial.Trial] = {}

    def _trial_config(self, trial) -> Config:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            vec = [trial.suggest_categorical(f"g{i}", list(range(int(c)))) for i, c in enumerate(self._card)]
        return self.space.canonical(self.space.decode(vec))

    def _ask(self, n: int) -> list[Config]:
        out: list[Config] = []
        retries = 0
        while len(out) < n and retries <= self.max_retries:
            trial = self.study.ask()
            config = self._trial_config(trial)
            key = self.space.key(config)
            if key in self.known:
                self._finish(trial, self.known[key][1])
                retries += 1
            elif key in self.pending or key in self._open or not self.problem.passes_cheap(config):
                self.study.tell(trial, state=TrialState.FAIL)
                retries += 1
            else:
                self._open[key] = trial
                out.append(config)
        if len(out) < n:  # the sampler keeps proposing known networks: fill up at random
            for c in self.random_unseen(n - len(out)):
                trial = self._fixed_trial(c)
                self._open[self.space.key(c)] = trial
                out.append(c)
        return out

    def _tell(self, told) -> None:
        for key, config, outcome in told:
            trial = self._open.pop(key, None)
            if trial is None:  # replayed or warm-started: add it to Optuna's history as a finished trial
                trial = self._fixed_trial(config)
            self._finish(trial, outcome)

    def _fixed_trial(self, config: Config):
        """An Optuna trial pinned to ``config`` (so Optuna's history holds every known network)."""
        self.study.enqueue_trial({f"g{i}": int(v) for i, v in enumerate(self.space.encode(config))})
        trial = self.study.ask()
        self._trial_config(trial)
        return trial

    def _finish(self, trial, outcome) -> None:
        if not outcome.ok:
            self.study.tell(trial, state=TrialState.FAIL)
            return
        trial.set_user_attr("violation", float(outcome.violation))
        self.study.tell(trial, [outcome.values[n] for n in self.problem.names])


class GPSearch(TPESearch):
    """Optuna's GPSampler: a Gaussian process per objective and constraint, batches by log expected
    hypervolume improvement (log-EHVI; constrained when the search has constraints), a random start.

    The strongest off-the-shelf Bayesian optimiser to compare LINAS with. It
    needs torch (CPU is enough), imported by Optuna only when it first fits.
    ``deterministic_objective``: the measurements carry no noise (a table).
    """

    name = "optuna-gp"

    def __init__(self, n_startup_trials: int = 10, max_retries: int = 100, deterministic_objective: bool = False):
        super().__init__(n_startup_trials, max_retries)
        self.deterministic_objective = deterministic_objective

    def _sampler(self, problem) -> optuna.samplers.BaseSampler:
        return optuna.samplers.GPSampler(
            seed=int(problem.seed), n_startup_trials=self.n_startup_trials,
            deterministic_objective=self.deterministic_objective,
        )

    def _finish(self, trial, outcome) -> None:
        if outcome.ok and self.problem.constraints:  # this sampler reads constraints from the trial (constraints_func is deprecated)
            trial.set_constraint("violation", float(outcome.violation))
        super()._finish(trial, outcome)


register_strategy("tpe", TPESearch)
register_strategy("optuna-gp", GPSearch)
