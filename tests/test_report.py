"""The study report: PNGs and a self-contained HTML file with the front."""

import json
import re

import numpy as np
import pytest

from sliver.core import get_objective
from sliver.report import (
    hypervolume_figure,
    hypervolume_history,
    pareto_figure,
    predictor_figure,
    study_hypervolume,
    study_points,
    write_report,
)
from sliver.search.hv import normalised_hypervolume
from sliver.space import Dimension, SearchSpace
from sliver.store import ResultStore


def _study(tmp_path):
    return _study_in_memory(f"sqlite:///{tmp_path / 'r.db'}")


def _study_in_memory(url="sqlite://"):
    space = SearchSpace([Dimension("w", tuple(range(20)))])
    objectives = [get_objective("accuracy"), get_objective("latency_ms"), get_objective("params")]
    store = ResultStore(url)
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
    history = [{"evaluations": 5 * k, "kendall_tau": {"accuracy": 0.2 * k}} for k in (1, 2, 3)]
    html = write_report(store, "demo", tmp_path / "out", picks={"fastest": {"w": 0}}, history=history, fingerprint={"cpu": "x"})
    text = html.read_text()
    assert _image_count(text) == 5  # 3 pairs + hypervolume + predictor quality
    assert "fastest" in text and "latency_ms (ms)" in text
    assert '<td class="config">w=0</td>' in text  # configs as short name=value text, in a readable font
    assert "td.config { font-family: ui-monospace" in text and "font-size: 1em" in text
    for name in ("pareto_accuracy_vs_latency_ms.png", "hypervolume.png", "predictor_quality.png"):
        assert (tmp_path / "out" / name).stat().st_size > 1000



def _image_count(text):
    """The report's embedded PNGs (plotly.js has a data URI of its own, so not every one is an image)."""
    return len(re.findall(r'<img alt="[^"]*" src="data:image/png;base64,', text))


def _embedded_view(text):
    """The study view that the report hands to the dashboard's JS."""
    m = re.search(r"<script>sliverReportPage\((.*)\);</script>", text)
    assert m, "the report draws no interactive charts"
    return json.loads(m.group(1))


def test_report_is_interactive_offline_and_keeps_static_images(tmp_path):
    from sliver.dashboard.assets import STATIC, plotly_js

    store, study = _study(tmp_path)
    history = [{"evaluations": 5 * k, "kendall_tau": {"accuracy": 0.2 * k}} for k in (1, 2, 3)]
    text = write_report(store, "demo", tmp_path / "out", picks={"fastest": {"w": 0}}, history=history).read_text()
    # plotly.js and the dashboard's chart code inlined; nothing loaded from the network
    assert plotly_js().read_text(encoding="utf-8")[:2000] in text
    assert "function drawParetoChart(" in text and (STATIC / "dashboard.js").read_text()[:500] in text
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=[\"']?(https?:)?//", text, re.IGNORECASE)
    assert text.count("<script") == text.count("</script>") == 3  # a string inside did not end an element early
    # the embedded data is the study's points: every config and value
    points = study_points(store, study)
    view = _embedded_view(text)
    assert [p["config"] for p in view["points"]] == points.configs
    assert [p["seq"] for p in view["points"]] == points.seqs
    for p, row in zip(view["points"], points.values):
        assert [p["values"][o.name] for o in points.objectives] == pytest.approx(row.tolist())
    assert [p["front"] for p in view["points"]] == points.front.tolist()
    assert view["picks"] == {"fastest": points.configs.index({"w": 0})}
    assert view["hypervolume"]["values"] == pytest.approx(hypervolume_history(points)[1].tolist())
    # the images stay: shown when printed or without scripts, the predictor's always
    assert _image_count(text) == 5
    assert '<div class="static-figures">' in text and "@media print" in text


def test_report_script_survives_a_config_that_closes_the_script(tmp_path):
    space = SearchSpace([Dimension("name", ("</script><b>x", "<!--y"))])
    store = ResultStore(f"sqlite:///{tmp_path / 'r.db'}")
    study = store.get_or_create_study("s", space, [get_objective("accuracy"), get_objective("latency_ms")], "h", "fp", {})
    for i, cfg in enumerate([{"name": "</script><b>x"}, {"name": "<!--y"}]):
        store.add_trial(study.id, space.key(cfg), cfg, {"accuracy": 80.0 + i, "latency_ms": 1.0 + i}, {}, cached=False)
    text = write_report(store, "s", tmp_path / "out", history=[]).read_text()
    assert text.count("<script") == text.count("</script>") == 3
    assert {p["config"]["name"] for p in _embedded_view(text)["points"]} == {"</script><b>x", "<!--y"}


def test_too_few_predictor_rounds_are_listed_not_plotted(tmp_path):
    store, study = _study(tmp_path)
    history = [{"evaluations": 10, "kendall_tau": {"accuracy": 0.5}}, {"evaluations": 20, "kendall_tau": {"accuracy": 0.8}}]
    text = write_report(store, "demo", tmp_path / "out", history=history).read_text()
    assert _image_count(text) == 4
    assert not (tmp_path / "out" / "predictor_quality.png").exists()
    assert "too few search rounds to plot a trend (2 scored)" in text
    assert "after 10 evaluations: accuracy 0.50; after 20 evaluations: accuracy 0.80" in text


def test_figures_have_titles_and_markers():
    points = study_points(*_study_in_memory())
    evals, hv = hypervolume_history(points)
    ax = hypervolume_figure(evals, hv).axes[0]
    assert ax.get_title() == "normalised hypervolume over the search"
    assert pareto_figure(points, 0, 1, {}).axes[0].get_title() == "latency_ms vs accuracy (20 sub-networks)"
    rows = [{"evaluations": 5 * k, "kendall_tau": {"accuracy": 0.1 * k}} for k in (1, 2, 3)]
    ax = predictor_figure(rows).axes[0]
    assert ax.get_title() and all(line.get_marker() == "o" for line in ax.get_lines())


def test_pick_labels_stay_inside_the_axes():
    points = study_points(*_study_in_memory())
    # picks at the corners of every plot, with long labels: the old placement ran past the frame here
    picks = {"the most accurate network of all": 19, "the fastest and smallest network": 0, "a middle one": 9}
    for a, b in ((0, 1), (0, 2), (1, 2)):
        fig = pareto_figure(points, a, b, picks)
        fig.tight_layout()
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        ax = fig.axes[0]
        frame = ax.get_window_extent(renderer)
        labels = [t for t in ax.texts if t.get_text()]
        assert len(labels) == 3
        for label in labels:
            box = label.get_window_extent(renderer)
            assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1, label.get_text()


def test_report_header_and_results_show_print_the_same_hypervolume(tmp_path):
    from typer.testing import CliRunner

    from sliver.cli import app

    store, study = _study(tmp_path)
    hv = study_hypervolume(study_points(store, study))
    assert hv == normalised_hypervolume(study_points(store, study).minimised(), study_points(store, study).feasible)
    assert hv == hypervolume_history(study_points(store, study))[1][-1]
    text = write_report(store, "demo", tmp_path / "out", history=[]).read_text()
    header = re.search(r"<td>normalised hypervolume</td><td>([0-9.]+) ", text).group(1)
    shown = CliRunner().invoke(app, ["results", "show", "demo", "--db", f"sqlite:///{tmp_path / 'r.db'}"])
    assert shown.exit_code == 0, shown.output
    assert re.search(r"normalised hypervolume ([0-9.]+)", shown.output).group(1) == header == f"{hv:.4f}"
    as_json = CliRunner().invoke(app, ["results", "show", "demo", "-f", "json", "--db", f"sqlite:///{tmp_path / 'r.db'}"])
    assert json.loads(as_json.output)["normalised_hypervolume"] == hv


def test_search_cli_report_and_results_print_the_same_hypervolume(tmp_path):
    """The number `sliver search` prints is the one the report and `sliver results show` print for its study."""
    from typer.testing import CliRunner

    from sliver.bench.nb201 import data_root
    from sliver.cli import app
    from sliver.store import ResultStore

    if not (data_root() / "nb201" / "nb201_acc_latency.csv").is_file():
        pytest.skip("the NB201 table (../shared/data) is not here")
    db = f"sqlite:///{tmp_path / 's.db'}"
    (tmp_path / "search.yaml").write_text(
        f"problem: {{kind: nb201, device: raspi4}}\nstore: {db}\nstudy: nb\nobjectives: [accuracy, latency_ms]\n"
        "constraints: ['latency_ms <= 20']\nbudget: 16\nstrategy: {name: random}\n"
    )
    runner = CliRunner()
    searched = runner.invoke(app, ["search", str(tmp_path / "search.yaml")])
    assert searched.exit_code == 0, searched.output
    printed = re.search(r"normalised hypervolume ([0-9.]+)", searched.output).group(1)
    shown = runner.invoke(app, ["results", "show", "nb", "--db", db])
    assert re.search(r"normalised hypervolume ([0-9.]+)", shown.output).group(1) == printed
    store = ResultStore(db)
    text = write_report(store, "nb", tmp_path / "out", history=[]).read_text()
    store.close()
    assert f"<td>normalised hypervolume</td><td>{printed} " in text
    assert float(printed) > 0


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
