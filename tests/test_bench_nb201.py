"""NB201 tabular problem (skipped without ../shared/data), the bench runner, and `sliver search` YAML errors."""

import numpy as np
import pytest
from typer.testing import CliRunner

from sliver.bench.nb201 import NB201, data_root
from sliver.cli import app

HAVE_DATA = (data_root() / "nb201" / "nb201_acc_latency.csv").is_file()
needs_data = pytest.mark.skipif(not HAVE_DATA, reason="NB201 table not in ../shared/data (set SLIVER_DATA)")


@needs_data
def test_table_front_and_hypervolume():
    p = NB201("raspi4")
    assert len(p.index) == 15625
    assert p.hv_ratio([p.values({"ops": ["nor_conv_3x3"] * 6})]) < 0.99
    front = [p.values({"ops": list(k)}) for k, i in p.index.items() if i in set(p.true_front)]
    assert p.hv_ratio(front) == pytest.approx(1.0)
    degenerate = p.values({"ops": ["none"] * 6})
    assert degenerate["accuracy"] == pytest.approx(10.0, abs=0.5)
    ev = p.evaluator()
    assert ev.fingerprint_for("accuracy") == "any" and ev.fingerprint_for("latency_ms") == "nb201-raspi4"
    assert isinstance(ev.measure({"ops": ["none"] * 6}, ["flops"])["flops"], KeyError)


@needs_data
def test_unknown_device_and_dataset_are_clear():
    with pytest.raises(ValueError, match="raspi4"):
        NB201("raspi5")
    with pytest.raises(ValueError, match="cifar100"):
        NB201("raspi4", "mnist")


def test_missing_table_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"SLIVER_DATA or pass .*\(--data of sliver bench search, problem.data in a search YAML\)"):
        NB201("raspi4", root=tmp_path)


@needs_data
@pytest.mark.slow
def test_linas_beats_random_at_a_small_budget():
    from sliver.bench.runner import run_nb201

    p = NB201("raspi4")
    linas = run_nb201(p, "linas", 0, 100).final
    rand = run_nb201(p, "random", 0, 100).final
    assert linas > rand


def _yaml(tmp_path, body):
    path = tmp_path / "search.yaml"
    path.write_text(body)
    return str(path)


BASE = "problem: {kind: nb201, device: raspi4}\nstore: null\n"


@pytest.mark.parametrize(
    "body, message",
    [
        (BASE + "objectives: [accuracy, flops]\nbudget: 10\n", "unknown objective 'flops'"),
        (BASE + "objectives: [accuracy]\nconstraints: ['energy <= 3']\nbudget: 10\n", "unknown metric 'energy'"),
        (BASE + "objectives: [accuracy]\nbudget: 0\n", "budget"),
        (BASE + "objectives: [accuracy]\nbudget: 10\nstrategy: {name: sgd}\n", "strategy.name"),
        (BASE + "objectives: [accuracy, params]\nbudget: 10\n", "measures only"),
    ],
)
def test_bad_yaml_is_one_line(tmp_path, body, message):
    out = CliRunner().invoke(app, ["search", _yaml(tmp_path, body)])
    assert out.exit_code == 2
    text = out.output.strip()
    assert message in text and len(text.splitlines()) == 1


@needs_data
def test_search_cli_prints_the_front(tmp_path):
    body = BASE.replace("store: null", f"store: sqlite:///{tmp_path}/s.db") + "objectives: [accuracy, latency_ms]\nbudget: 12\nstrategy: {name: random}\n"
    out = CliRunner().invoke(app, ["search", _yaml(tmp_path, body)])
    assert out.exit_code == 0, out.output
    assert "Pareto front" in out.output and "12 unique evaluations" in out.output


def test_live_edges_and_features():
    from sliver.bench.nb201 import CONNECTED_WEIGHT, OPS, live_edges, nb201_features, path_counts

    enc = lambda ops: np.array([OPS.index(o) for o in ops])  # noqa: E731
    cells = np.stack([
        enc(["none"] * 6),
        # 0->1 skip, 1->2 conv (but 2 has no way out), 1->3 skip: only edges 0 and 4 reach the output
        enc(["skip_connect", "none", "nor_conv_3x3", "none", "skip_connect", "none"]),
        enc(["nor_conv_3x3"] * 6),
    ])
    live = live_edges(cells)
    assert live.tolist() == [[False] * 6, [True, False, False, False, True, False], [True] * 6]
    F = nb201_features(cells)
    assert F.shape == (3, 30 + 24 + 24 + 1)
    assert F[:, -1].tolist() == [0.0, CONNECTED_WEIGHT, CONNECTED_WEIGHT]
    assert F[1, :30].sum() == 6 and F[1, 30:54].sum() == 2  # all six ops, but only two live ones
    counts = path_counts(cells)
    assert (counts[0] == 0).all()  # nothing is live in the empty cell
    # live ops: two skips; only the path 0->1->3 is live, holding both skips
    assert counts[1, :4].tolist() == [2, 0, 0, 0]
    assert counts[1, 4:].tolist() == [0, 0, 0, 0, 0] + [2, 0, 0, 0, 1] + [0] * 10
    # every edge conv3x3: 6 live conv3x3; each path live with its length in conv3x3
    assert counts[2, :4].tolist() == [0, 0, 6, 0]
    assert counts[2, 4:].tolist() == [0, 0, 1, 0, 1, 0, 0, 2, 0, 1, 0, 0, 2, 0, 1, 0, 0, 3, 0, 1]


@needs_data
def test_disconnected_cells_are_the_ten_percent_ones():
    from sliver.bench.nb201 import OPS, live_edges

    p = NB201("raspi4")
    X = np.array([[OPS.index(o) for o in ops] for ops in p.index])
    acc = p.table["cifar10_test_acc"].to_numpy()[list(p.index.values())]
    assert np.array_equal(~live_edges(X).any(1), acc < 11)
