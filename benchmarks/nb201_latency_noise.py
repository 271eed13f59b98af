"""How predictable each NB201 device's latency is from the cell alone: the floor under any latency predictor.

For every latency device of the NB201 table, LightGBM on the one-hot cell is fitted
on ``--train`` random cells and scored on all the others: mean absolute percentage
error and Kendall tau. With thousands of training cells a model has seen nearly
every op combination, so what error remains is measurement noise (the table holds
one timing per cell) or structure the cell does not explain. The figure: the
devices whose rank agreement stays below tau 0.85, whose fronts are therefore set
partly by cells that happened to be timed fast, which no search can predict, only
sample. (The percentage error misleads on devices where disconnected cells time at
almost nothing, raspi4 and pixel3: the rank agreement does not.)

    python benchmarks/nb201_latency_noise.py [--train 8000] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from _common import nb201_data_dir, write_result  # noqa: E402
from scipy.stats import kendalltau  # noqa: E402

NOISY_TAU = 0.85  # Kendall tau below which a device's latency is called noisy


def one_hot_cells(space, X: np.ndarray) -> np.ndarray:
    """The one-hot rows of encoded NB201 cells (every gene one-hot over the largest number of choices)."""
    return np.eye(int(space.gene_cardinalities.max()))[X].reshape(len(X), -1)


def cell_latency_model(seed: int):
    """The latency model whose error this benchmark reports: LightGBM sized for thousands of one-hot cells."""
    import lightgbm as lgb

    return lgb.LGBMRegressor(n_estimators=600, num_leaves=31, learning_rate=0.05, random_state=seed, n_jobs=1, verbose=-1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=8000, help="cells to fit on (of 15,625)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=None)
    args = ap.parse_args()
    root = nb201_data_dir(args.data)
    from sliver.bench.nb201 import NB201
    from sliver.search.linas import value_grid

    first = NB201("raspi4", "cifar10", str(root))
    configs = first.space.enumerate()
    rows = np.array([first.row(c) for c in configs])
    X = first.space.encode_many(configs)
    onehot = one_hot_cells(first.space, X)
    order = np.random.default_rng(args.seed).permutation(len(X))
    train, test = order[: args.train], order[args.train:]
    table = []
    for device in first.devices:
        y = first.table[f"lat_ms_{device}"].to_numpy(float)[rows]
        model = cell_latency_model(args.seed).fit(onehot[train], y[train])
        pred = model.predict(onehot[test])
        positive = y[test] > 0.05  # a disconnected cell can time at ~0 ms, where a percentage means nothing
        mape = float(100 * np.mean(np.abs(pred - y[test])[positive] / y[test][positive]))
        tau = float(kendalltau(pred, y[test]).statistic)
        table.append({"device": device, "mape_pct": round(mape, 2), "kendall_tau": round(tau, 4),
                      "distinct_values": int(len(np.unique(y))), "grid_step": value_grid(y)})
        print(f"{device:>16}: MAPE {mape:5.1f} %  tau {tau:.3f}  {len(np.unique(y)):5d} distinct values"
              + (f", on a grid of {table[-1]['grid_step']:g}" if table[-1]["grid_step"] else ""), flush=True)
    noisy = [f"{r['device']} {r['kendall_tau']:.3f} ({r['mape_pct']:.1f} %)" for r in table if r["kendall_tau"] < NOISY_TAU]
    figure = (f"latency floor of LightGBM on {args.train} cells: Kendall tau < {NOISY_TAU:g} on {len(noisy)}/{len(table)} "
              f"devices: {', '.join(noisy)}")
    write_result("nb201_latency_noise", figure, "information (explains search_nb201)", True, table)
    print(figure)


if __name__ == "__main__":
    main()
