"""sliver's learned latency predictor vs the published HAT MLP on the 8 HAT latency files.

Per file: a seeded 80/20 split; sliver fits a LatencyPredictor on the training
rows (HAT's 10 features + per-stack work terms, family chosen by 5-fold CV
Kendall tau on the training rows only); the published HAT MLP is evaluated on
the same test rows. The HAT MLP was trained on a random 80% of each file, so it
has seen most of these test rows: an optimistic baseline. For a like-for-like
baseline the same MLP (10 -> 400 x 3 -> 1, HAT's feature and latency
normalisation) is also retrained on our training rows only (scikit-learn),
and, to measure what having seen the test rows is worth, once more on another
seeded random 80% of the file (which, like the published one's, holds about
80% of our test rows).
Tried on the training rows (5-fold CV) and not kept: LightGBM on the same
features, a degree-2 polynomial ridge and their blend with the ridge: each
ranked below the ridge alone on every file. Also tried (test tau, 8 files,
mean): ridge with per-layer-count interaction terms 0.8745, a ridge + LightGBM
residual booster 0.8699, RBF kernel ridge on the 10 features 0.861, a GP on
the ridge's residuals 0.8768 (no gain, seconds per fit), encoder and decoder
fitted apart 0.8772, rows weighted by their measured spread 0.8779, a 64x64
MLP on the cost features 0.837 (3-seed ensemble with the ridge 0.8645), all
against a plain ridge's 0.8768 in the same
experiment (the chosen ridge below scores 0.8763).

    python benchmarks/hat_latency.py [--data DIR] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPRegressor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import data_dir, skip, write_result  # noqa: E402

from sliver.predict.hat import HatMLP, cost_features, datasets, load_latency  # noqa: E402
from sliver.predict.latency import LatencyPredictor  # noqa: E402
from sliver.predict.models import kendall_tau, mape  # noqa: E402


def rmse(pred: np.ndarray, true: np.ndarray) -> float:
    return float(np.sqrt(np.mean((pred - true) ** 2)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="shared data folder (default $SLIVER_DATA or ../shared/data)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    items = datasets(data_dir(args.data) / "hat")
    if not items:
        skip(f"HAT latency data not found under {data_dir(args.data) / 'hat'}")

    table = []
    print(f"{'file':28s} {'family':>7s} {'tau':>7s} {'HAT tau':>7s} {'same-split MLP':>7s} {'MLP seen test':>7s} {'MAPE%':>6s} {'HAT':>6s} {'RMSE':>7s} {'HAT':>7s} {'fit s':>6s}")
    for item in items:
        X, y = load_latency(item["csv"])
        train, test = train_test_split(np.arange(len(y)), test_size=0.2, random_state=args.seed)
        F = cost_features(X)
        started = time.perf_counter()
        model = LatencyPredictor("auto", seed=args.seed).fit(F[train], y[train])
        select_s = time.perf_counter() - started
        started = time.perf_counter()
        LatencyPredictor(model.chosen, seed=args.seed).fit(F[train], y[train])  # the refit alone, once chosen
        fit_s = time.perf_counter() - started
        ours = model.predict(F[test])
        published = HatMLP.load(item["checkpoint"], item["config"])
        hat = published.predict(X[test])
        norm_x, norm_y = X / published.feature_norm, y / published.lat_norm
        retrained = MLPRegressor(hidden_layer_sizes=(400, 400, 400), max_iter=200, random_state=args.seed).fit(norm_x[train], norm_y[train])
        fair = retrained.predict(norm_x[test]) * published.lat_norm
        # the published MLP's exposure: trained on a random 80% of the whole file, so it saw most test rows
        other, _ = train_test_split(np.arange(len(y)), test_size=0.2, random_state=args.seed + 1)
        seen = MLPRegressor(hidden_layer_sizes=(400, 400, 400), max_iter=200, random_state=args.seed).fit(norm_x[other], norm_y[other])
        seen_pred = seen.predict(norm_x[test]) * published.lat_norm
        row = {
            "file": item["name"], "n_train": len(train), "n_test": len(test), "family": model.chosen,
            "tau": kendall_tau(ours, y[test]), "hat_tau": kendall_tau(hat, y[test]),
            "hat_arch_retrained_tau": kendall_tau(fair, y[test]), "hat_arch_retrained_mape": mape(fair, y[test]),
            "hat_arch_seen_tau": kendall_tau(seen_pred, y[test]), "hat_arch_seen_share": float(np.isin(test, other).mean()),
            "mape": mape(ours, y[test]), "hat_mape": mape(hat, y[test]),
            "rmse_ms": rmse(ours, y[test]), "hat_rmse_ms": rmse(hat, y[test]),
            "fit_seconds": round(fit_s, 3), "select_seconds": round(select_s, 2),
        }
        table.append(row)
        print(f"{row['file']:28s} {row['family']:>7s} {row['tau']:7.4f} {row['hat_tau']:7.4f} {row['hat_arch_retrained_tau']:14.4f} {row['hat_arch_seen_tau']:13.4f} {row['mape']:6.2f} "
              f"{row['hat_mape']:6.2f} {row['rmse_ms']:7.2f} {row['hat_rmse_ms']:7.2f} {fit_s:6.2f}", flush=True)

    wins = sum(r["tau"] >= r["hat_tau"] for r in table)
    mean_tau, mean_hat = np.mean([r["tau"] for r in table]), np.mean([r["hat_tau"] for r in table])
    fair_wins = sum(r["tau"] >= r["hat_arch_retrained_tau"] for r in table)
    mean_fair = np.mean([r["hat_arch_retrained_tau"] for r in table])
    mean_seen = np.mean([r["hat_arch_seen_tau"] for r in table])
    figure = (f"Kendall tau >= HAT MLP on {wins}/{len(table)} files (mean {mean_tau:.4f} vs {mean_hat:.4f}); "
              f">= the same MLP retrained on our split on {fair_wins}/{len(table)} (mean {mean_fair:.4f}; "
              f"{mean_seen:.4f} when it too sees ~80% of the test rows)")
    write_result(
        "hat_latency", figure, "sliver's tau >= the HAT MLP's on every file", wins == len(table), table,
        seed=args.seed, note="HAT MLP trained on a random 80% of each file, so it has seen most test rows (optimistic). "
        "hat_arch_retrained: HAT's MLP architecture and normalisation trained on our training rows only (like for like). "
        "hat_arch_seen: the same trained on another random 80% of the file (hat_arch_seen_share of our test rows seen, as for the published MLP). "
        "fit_seconds: refit of the chosen family; select_seconds: 5-fold CV choice + fit. Machine shared with other engineers.",
    )
    print(f"hat_latency: {figure}")


if __name__ == "__main__":
    main()
