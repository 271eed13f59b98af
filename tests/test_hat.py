"""HAT latency data, the published-MLP loader, and the learned latency predictor on HAT features."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from sliver.predict.hat import FEATURES, HatMLP, cost_features, datasets, load_latency
from sliver.predict.latency import LatencyPredictor
from sliver.predict.models import kendall_tau

DATA = Path(os.environ.get("SLIVER_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "hat"


def _rows(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """HAT-like rows whose latency follows the decoder's layers x work (plus noise)."""
    rng = np.random.default_rng(seed)
    X = np.column_stack([
        rng.choice([512, 640], n), np.full(n, 6), rng.uniform(1024, 3072, n), rng.uniform(4, 8, n),
        rng.choice([512, 640], n), rng.integers(1, 7, n), rng.uniform(1024, 3072, n), rng.uniform(4, 8, n),
        rng.uniform(4, 8, n), rng.uniform(1, 3, n),
    ])
    y = 5 + X[:, 5] * (X[:, 4] * X[:, 6] * 1e-5 + X[:, 7] * 0.5) + rng.normal(0, 0.2, n)
    return X, y


def test_cost_features_add_work_terms_and_check_width():
    X, _ = _rows(5)
    F = cost_features(X)
    assert F.shape == (5, len(FEATURES) + 13)
    np.testing.assert_allclose(F[:, 10], X[:, 1] * X[:, 0] * X[:, 2])  # encoder layers x embed x FFN
    with pytest.raises(ValueError, match="expected 10 columns"):
        cost_features(X[:, :9])


def test_latency_predictor_ranks_held_out_rows_and_rejects_wrong_width():
    X, y = _rows()
    F = cost_features(X)
    model = LatencyPredictor("auto").fit(F[:300], y[:300])
    assert model.chosen in ("ridge", "svr", "lgbm")
    assert kendall_tau(model.predict(F[300:]), y[300:]) > 0.8
    assert model.predict(F[0]).shape == (1,)
    with pytest.raises(ValueError, match=f"expected {F.shape[1]} values per row"):
        model.predict(F[:, :-1])
    with pytest.raises(RuntimeError, match="not fitted"):
        LatencyPredictor().predict(F)


def test_hat_mlp_loader_reproduces_the_forward_pass(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.ModuleDict({
        "first_layer": torch.nn.Linear(10, 8),
        "layers": torch.nn.ModuleList([torch.nn.Linear(8, 8) for _ in range(2)]),
        "predict": torch.nn.Linear(8, 1),
    })
    torch.save(net.state_dict(), tmp_path / "p.pt")
    norm = [640, 6, 2048, 6, 640, 6, 2048, 6, 6, 2]
    (tmp_path / "p.yml").write_text(f"feature-norm: {norm}\nlat-norm: 200\nhidden-layer-num: 2\n")
    X, _ = _rows(7)
    with torch.no_grad():
        h = torch.relu(net["first_layer"](torch.tensor(X / np.array(norm), dtype=torch.float32)))
        for layer in net["layers"]:
            h = torch.relu(layer(h))
        expected = net["predict"](h)[:, 0].numpy() * 200
    got = HatMLP.load(tmp_path / "p.pt", tmp_path / "p.yml").predict(X)
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    (tmp_path / "bad.yml").write_text("lat-norm: 1\n")
    with pytest.raises(ValueError, match="'feature-norm' is missing"):
        HatMLP.load(tmp_path / "p.pt", tmp_path / "bad.yml")


@pytest.mark.skipif(not DATA.is_dir(), reason="shared HAT data absent")
def test_real_hat_files_pair_with_their_predictors():
    items = datasets(DATA)
    assert len(items) == 8
    X, y = load_latency(items[0]["csv"])
    assert X.shape == (2000, 10) and (y > 0).all()
    pred = HatMLP.load(items[0]["checkpoint"], items[0]["config"]).predict(X[:200])
    assert kendall_tau(pred, y[:200]) > 0.7  # the published predictor, loaded right, ranks well
