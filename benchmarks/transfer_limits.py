"""Where few-shot transfer to FBNet devices stops: a yardstick for ``few_shot_transfer``.

Two questions, FBNet latency table (27 devices, 5,000 architectures):

1. **Could other settings of the transfer model reach rho 0.95 at k = 10?**
   The protocol of ``few_shot_transfer`` (leave one device out, 10 random
   samples, rho on the rest, 10 seeds), for a grid of the model's two
   hyper-parameters: ``similarity`` (how sharply it prefers the source devices
   that rank the samples well) and a fixed noise level (instead of choosing it by
   marginal likelihood per fit). Reported: sliver's defaults, the best single
   setting, and an *oracle* that picks the best setting for each held-out device
   from its own unmeasured rows (what no real user can do; an upper bound for
   this model family).
2. **What limits the four phones (timed in whole ms)?** A LightGBM trained on a
   seeded 4,000 of the 5,000 architectures, with the one-hot architecture and
   every other device's log-latency as features, ranks the 1,000 others; then the
   same with the architecture's row number in the table (the order it was timed
   in) as one more feature. Where the row number helps, the latencies drift with
   measurement time (heat, background load), which no model of the architecture
   can predict.

    python benchmarks/transfer_limits.py [--data DIR] [--seeds 10]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import data_dir, skip, write_result  # noqa: E402
from few_shot_transfer import TARGET_K, TARGET_RHO, load, rho  # noqa: E402

from sliver.predict.transfer import NOISE_GRID, SIMILARITY, DeviceTransfer  # noqa: E402

SIMILARITIES = (0.0, 1.0, 2.0, 3.0, 5.0, 8.0)
NOISES = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0)


def hyper_parameter_grid(lat: np.ndarray, onehot: np.ndarray, seeds: int) -> np.ndarray:
    """Mean rho over seeds, (devices, similarities, noises + 1); the last noise column is the marginal-likelihood choice."""
    n, n_dev = lat.shape
    out = np.zeros((n_dev, len(SIMILARITIES), len(NOISES) + 1))
    for d in range(n_dev):
        source, target = np.delete(lat, d, axis=1), lat[:, d]
        for i, sim in enumerate(SIMILARITIES):
            for j, grid in enumerate([(noise,) for noise in NOISES] + [NOISE_GRID]):
                model = DeviceTransfer(source, features=onehot, similarity=sim, noise_grid=grid)
                scores = []
                for seed in range(seeds):
                    order = np.random.default_rng(seed).permutation(n)  # the same draws as few_shot_transfer
                    idx, rest = order[:TARGET_K], order[TARGET_K:]
                    scores.append(rho(model.fit(idx, target[idx]).predict()[rest], target[rest]))
                out[d, i, j] = np.mean(scores)
    return out


def measurement_order(lat: np.ndarray, onehot: np.ndarray) -> list[dict]:
    """Per device: LightGBM rho on 1,000 held-out architectures without and with the row number as a feature."""
    import lightgbm as lgb

    n, n_dev = lat.shape
    order = np.random.default_rng(0).permutation(n)
    train, test = order[:4000], order[4000:]
    log = np.log(lat)
    rows = []
    for d in range(n_dev):
        base = np.c_[onehot, np.delete(log, d, axis=1)]
        scores = {}
        for name, X in (("architecture", base), ("architecture_and_row", np.c_[base, np.arange(n)])):
            gbm = lgb.LGBMRegressor(n_estimators=600, learning_rate=0.03, num_leaves=15, subsample=0.8, subsample_freq=1,
                                    colsample_bytree=0.8, random_state=0, verbose=-1).fit(X[train], log[train, d])
            scores[name] = rho(gbm.predict(X[test]), log[test, d])
        rows.append({"device": d, "distinct_values": int(len(np.unique(lat[:, d]))), **scores,
                     "gain_from_row": scores["architecture_and_row"] - scores["architecture"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="shared data folder (default $SLIVER_DATA or ../shared/data)")
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    root = data_dir(args.data)
    if not (root / "nb201" / "fbnet_latency.csv").is_file():
        skip(f"FBNet latency table not found under {root}")
    t0 = time.time()
    lat, devices, onehot = load("fbnet", root)

    grid = hyper_parameter_grid(lat, onehot, args.seeds)
    default = grid[:, SIMILARITIES.index(SIMILARITY), -1]
    mean_grid = grid.mean(0)
    best_i, best_j = np.unravel_index(mean_grid.argmax(), mean_grid.shape)
    oracle = grid.reshape(len(devices), -1).max(1)
    noise_names = [str(x) for x in NOISES] + ["marginal_likelihood"]
    table = []
    for d, name in enumerate(devices):
        i, j = np.unravel_index(grid[d].argmax(), grid[d].shape)
        table.append({"device": name, "default": round(float(default[d]), 4), "oracle": round(float(oracle[d]), 4),
                      "oracle_setting": {"similarity": SIMILARITIES[i], "noise": noise_names[j]}})

    order_rows = measurement_order(lat, onehot)
    for t, row in zip(table, order_rows):  # both in device order
        row["device"] = t["device"]
        t.update({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items() if k != "device"})
    for t in table:
        print(f"{t['device']:>15}: k={TARGET_K} default {t['default']:.3f} oracle {t['oracle']:.3f} | GBM on 4,000 rows "
              f"{t['architecture']:.3f}, with the row number {t['architecture_and_row']:.3f} ({t['distinct_values']} distinct values)")

    phones = [r for r in order_rows if r["distinct_values"] < 1000]
    others = [r for r in order_rows if r["distinct_values"] >= 1000]
    summary = {
        "k": TARGET_K, "seeds": args.seeds,
        "default_mean_rho": round(float(default.mean()), 4),
        "best_single_setting": {"similarity": SIMILARITIES[best_i], "noise": noise_names[best_j],
                                "mean_rho": round(float(mean_grid[best_i, best_j]), 4)},
        "oracle_per_device_mean_rho": round(float(oracle.mean()), 4),
        "mean_rho_by_setting": {f"similarity {s}": dict(zip(noise_names, np.round(mean_grid[i], 4).tolist()))
                                for i, s in enumerate(SIMILARITIES)},
        "row_number_gain_phones": {r["device"]: round(r["gain_from_row"], 3) for r in phones},
        "row_number_gain_others_max": round(max(r["gain_from_row"] for r in others), 3),
        "row_number_gain_others_median": round(float(np.median([r["gain_from_row"] for r in others])), 3),
    }
    gains = sorted(summary["row_number_gain_phones"].values())
    figure = (f"FBNet k={TARGET_K}: sliver's transfer {summary['default_mean_rho']:.3f}, its best single setting "
              f"{summary['best_single_setting']['mean_rho']:.3f}, the best setting per device chosen on its own test rows "
              f"{summary['oracle_per_device_mean_rho']:.3f} (target {TARGET_RHO}); the timing order lifts a 4,000-row GBM by "
              f"{gains[0]:.2f}-{gains[-1]:.2f} rho on the {len(phones)} phones, at most "
              f"{summary['row_number_gain_others_max']:.3f} on the other {len(others)} devices")
    write_result("transfer_limits", figure, "yardstick for few_shot_transfer (no target of its own)", True, table,
                 summary=summary, seconds=round(time.time() - t0, 1),
                 note="oracle: for each held-out device the grid setting with the best mean rho on that device's own "
                      "unmeasured rows (an upper bound for this model family at k=10, not a usable method); "
                      "row number: the architecture's position in the published table")
    print(figure)


if __name__ == "__main__":
    main()
