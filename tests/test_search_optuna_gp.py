"""The optuna-gp strategy (Optuna's GPSampler, log-EHVI) runs in the search loop and beats its own random start."""

import numpy as np
import pytest

from sliver.core import Objective
from sliver.search import Search, nondominated
from sliver.space import Dimension, SearchSpace

pytest.importorskip("torch", reason="Optuna's GPSampler needs torch")

SPACE = SearchSpace([Dimension("a", (1, 2, 3, 4, 5), 2), Dimension("b", (1, 2, 3, 4))])
OBJECTIVES = [Objective("loss", "min"), Objective("cost", "min", additive=True)]


def problem(config):
    size = (config["a"][0] + 2 * config["a"][1]) * config["b"]
    return {"loss": 10 / size + 0.3 * abs(config["a"][0] - 3), "cost": float(size)}


def true_front(max_cost=np.inf):
    configs = [c for c in SPACE.enumerate() if problem(c)["cost"] <= max_cost]  # of 100 networks
    F = np.array([[problem(c)["loss"], problem(c)["cost"]] for c in configs])
    return {SPACE.key(c) for c, on in zip(configs, nondominated(F)) if on}


@pytest.mark.parametrize("max_cost", [None, 30])
def test_optuna_gp_improves_on_its_random_start(max_cost):
    constraints = [f"cost <= {max_cost}"] if max_cost else []
    true = true_front(max_cost or np.inf)  # the feasible front under the constraint
    result = Search(SPACE, OBJECTIVES, evaluate=problem, strategy="optuna-gp", budget=12, seed=0, batch_size=1,
                    constraints=constraints, strategy_options={"n_startup_trials": 6, "deterministic_objective": True}).run()
    assert result.n_evaluations == 12 and len({p.key for p in result.points}) == 12
    on_front = [p.key in true for p in result.points]
    assert sum(on_front[6:]) > sum(on_front[:6])  # the GP's picks hit the true front more often than the random start
