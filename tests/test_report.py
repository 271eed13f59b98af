"""The study report: PNGs and a self-contained HTML file with the front."""

import numpy as np

from sliver.measure.objectives import get_objective
from sliver.report import hypervolume_history, study_points, write_report
from sliver.space import Dimension, SearchSpace
from sliver.store import ResultStore


def _study(tmp_path):
    space = SearchSpace([Dimension("w", tuple(range(20)))])
    objectives = [get_objective("accuracy"), get_objective("latency_ms"), get_objective("params")]
    store = ResultStore(f"sqlite:///{tmp_path / 'r.db'}")
    study = store.get_or_create_study("demo", space, objectives, "h", "fp", {"constraints": ["latency_ms <= 9"]})
    rng = np.random.default_rng(0)
    for w in range(20):
        lat = 1 + w * 0.5 + rng.random()
        values = {"accuracy": 80 + 15 * (1 - np.exp(-w / 5)), "latency_ms": lat, "params": 1000 * (w + 1)}
        cfg = {"w": w}
        store.add_trial(study.id, space.key(cfg), cfg, values, {}, cached=False)
    return store, study


def test_points_front_and_feasibility(tmp_path):
    store, study = _study(tmp_path)
    points = study_points(store, study)
    assert len(points.values) == 20
    # latency 1 + 0.5 w + noise <= 9 holds for w <= 15 at most
    assert not points.feasible[16:].any() and points.feasible[:15].all()
    assert not (points.front & ~points.feasible).any() and points.front.any()
    evals, hv = hypervolume_history(points)
    assert list(evals) == list(range(1, 21))
    assert np.all(np.diff(hv) >= -1e-12) and hv[-1] > 0


def test_write_report(tmp_path):
    store, study = _study(tmp_path)
    history = [{"evaluations": 10, "kendall_tau": {"accuracy": 0.5}}, {"evaluations": 20, "kendall_tau": {"accuracy": 0.8}}]
    html = write_report(store, "demo", tmp_path / "out", picks={"fastest": {"w": 0}}, history=history, fingerprint={"cpu": "x"})
    text = html.read_text()
    assert text.count("data:image/png;base64,") == 5  # 3 pairs + hypervolume + predictor quality
    assert "fastest" in text and "latency_ms (ms)" in text
    for name in ("pareto_accuracy_vs_latency_ms.png", "hypervolume.png", "predictor_quality.png"):
        assert (tmp_path / "out" / name).stat().st_size > 1000


def test_predictor_quality_scores_the_next_batch(tmp_path):
    from sliver.report import predictor_quality

    space = SearchSpace([Dimension("a", tuple(range(6)), 3)])
    objectives = [get_objective("accuracy"), get_objective("params")]
    store = ResultStore(f"sqlite:///{tmp_path / 'q.db'}")
    study = store.get_or_create_study("q", space, objectives, "h", "fp")
    configs = space.enumerate()
    for i, j in enumerate(np.random.default_rng(0).permutation(len(configs))[:40]):
        cfg = configs[j]
        acc = float(sum(cfg["a"]))  # additive in the one-hot features: a linear predictor ranks it well
        store.add_trial(study.id, space.key(cfg), cfg, {"accuracy": acc, "params": 1.0}, {}, cached=False, batch=i // 5)
    rows = predictor_quality(store, study)
    assert [r["evaluations"] for r in rows] == [10, 15, 20, 25, 30, 35]
    assert all(set(r["kendall_tau"]) == {"accuracy"} for r in rows)  # params is cheap: never predicted
    assert rows[-1]["kendall_tau"]["accuracy"] > 0.8
