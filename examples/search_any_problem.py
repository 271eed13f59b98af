"""Search a problem of your own: a plain Python function from a config to its metrics.

    python examples/search_any_problem.py [sqlite:///results.db]

prints the Pareto front found in 40 evaluations. With a store URL, a rerun
resumes the study and pays for nothing already measured.
"""

import sys

from sliver.core import Objective
from sliver.search import Search
from sliver.space import Dimension, SearchSpace
from sliver.store import ResultStore

# three layers, each 16 to 128 wide, and one precision for all of them
space = SearchSpace([Dimension("width", (16, 32, 64, 128), 3), Dimension("bits", (4, 8, 16))])
objectives = [Objective("error", "min", "%"), Objective("energy_mj", "min", "mJ", additive=True)]


def evaluate(config: dict) -> dict:
    """A made-up model: wider, more precise layers err less and cost more energy (later layers more so)."""
    size = sum((i + 1) * w for i, w in enumerate(config["width"])) * config["bits"]
    return {"error": 100.0 / size**0.5 + 0.01 * max(config["width"]), "energy_mj": 0.002 * size}


def main(store: ResultStore | None = None, budget: int = 40):
    search = Search(space, objectives, evaluate=evaluate, evaluate_name="toy-energy-v1", budget=budget, store=store,
                    study_name="toy-energy", strategy_options={"n_init": 10})
    return search.run()


if __name__ == "__main__":
    result = main(ResultStore(sys.argv[1]) if len(sys.argv) > 1 else None)
    for p in sorted(result.front, key=lambda p: p.values["energy_mj"]):
        print(f"{p.values['error']:6.2f} %  {p.values['energy_mj']:6.2f} mJ  {p.config}")
