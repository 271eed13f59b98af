"""The main job end to end: `sliver demo --quick`, then the report in a real headless browser."""

import json
import shutil
import sqlite3

import pytest
import torch
from typer.testing import CliRunner

from sliver import load_model
from sliver.cli import app
from sliver.core import get_objective
from sliver.demo import first_of_each_network, print_comparison
from sliver.space import Dimension, SearchSpace
from sliver.store import ResultStore

runner = CliRunner()


def _printed(rows, first):
    from rich.console import Console

    console = Console(record=True, width=200)
    print_comparison(console, [get_objective("accuracy"), get_objective("latency_ms")], rows, first)
    return console.export_text()


def test_picks_that_choose_one_network_are_one_row_and_the_largest_is_the_baseline():
    space = SearchSpace([Dimension("w", (1, 2, 4))])
    networks = {"largest": {"w": 4}, "accurate": {"w": 2}, "fast": {"w": 2}}
    first = first_of_each_network(networks, space.key)
    assert first == {"largest": "largest", "accurate": "accurate", "fast": "accurate"}
    rows = {"largest": {"accuracy": 98.0, "latency_ms": 4.0}, "accurate": {"accuracy": 97.0, "latency_ms": 1.0},
            "fast": {"accuracy": 97.0, "latency_ms": 1.0}}
    text = _printed(rows, first)
    lines = [line for line in text.splitlines() if line.startswith("│")]  # the table's body rows
    assert len(lines) == 2, text
    assert "baseline" in lines[0] and "x faster" not in lines[0]
    assert "accurate = fast" in lines[1] and "4.00x faster" in lines[1]
    assert "1.00x" not in text


def test_a_pick_that_is_the_largest_network_shares_the_baseline_row():
    space = SearchSpace([Dimension("w", (1, 2, 4))])
    first = first_of_each_network({"largest": {"w": 4}, "accurate": {"w": 4}, "fast": {"w": 1}}, space.key)
    rows = {"largest": {"accuracy": 98.0, "latency_ms": 4.0}, "accurate": {"accuracy": 98.0, "latency_ms": 4.0},
            "fast": {"accuracy": 90.0, "latency_ms": 0.5}}
    text = _printed(rows, first)
    assert any("largest = accurate" in line and "baseline" in line for line in text.splitlines()), text
    assert "8.00x faster" in text and "1.00x" not in text


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    result = runner.invoke(app, ["demo", "--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, result.output


@pytest.mark.slow
def test_demo_quick_produces_store_front_exports_and_report(demo_run):
    out, output = demo_run
    assert "Pareto front" in output and "report:" in output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["evaluations"] == 12 and summary["front_size"] >= 1

    with sqlite3.connect(out / "sliver.db") as db:
        trials = db.execute("select count(*) from trials").fetchone()[0]
        measurements = db.execute("select count(*) from measurements where status = 'ok'").fetchone()[0]
    assert trials == 12 and measurements >= 12 * 3

    for name in ("accurate", "fast"):
        folder = out / summary["exports"][name]
        card = json.loads((folder / "card.json").read_text())
        model = load_model(folder)
        x = torch.randn(card["input_shape"])
        with torch.inference_mode():
            assert model(x).shape == (1, 10)
        # exported metrics are the stored ones, and the accuracy was re-measured equal
        assert card["checks"]["accuracy"] == pytest.approx(card["metrics"]["accuracy"], abs=1e-6)
        assert sum(p.numel() for p in model.parameters()) == card["metrics"]["params"]
        assert card["checks"]["torch_max_abs_diff"] <= 1e-5 and card["checks"]["onnx_max_abs_diff"] <= 1e-4
    assert (out / "report" / "report.html").stat().st_size > 10_000
    # the store knows what was exported, by which rule, and where the search's YAML is (the dashboard reads both)
    with ResultStore(f"sqlite:///{out / 'sliver.db'}") as store:
        study = store.get_study("demo")
        exports = store.exports(study)
    assert sorted(exports) == ["accurate", "fast"] and exports["fast"]["rule"] == summary["rules"]["fast"]
    assert exports["accurate"]["out"] == str((out / summary["exports"]["accurate"]).resolve())
    assert study.settings["search_yaml"] == str((out / "search.yaml").resolve()) and study.settings["problem"] == "supernet"


@pytest.mark.slow
def test_demo_rerun_resumes_without_new_measurements(demo_run):
    out, _ = demo_run
    with sqlite3.connect(out / "sliver.db") as db:
        before = db.execute("select count(*) from measurements").fetchone()[0]
    again = runner.invoke(app, ["demo", "--quick", "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert "0.0 s measuring" in again.output
    with sqlite3.connect(out / "sliver.db") as db:
        assert db.execute("select count(*) from measurements").fetchone()[0] == before


@pytest.mark.slow
def test_export_cli_refuses_a_rule_matching_nothing(demo_run):
    out, _ = demo_run
    result = runner.invoke(app, ["export", str(out / "search.yaml"), "--pick", "latency_ms<=0 max accuracy", "--out", str(out / "x")])
    assert result.exit_code == 2
    assert "matches no measured sub-network; the front spans accuracy" in result.output
    ok = runner.invoke(app, ["export", str(out / "search.yaml"), "--pick", "knee", "--out", str(out / "knee")])
    assert ok.exit_code == 0, ok.output
    assert load_model(out / "knee") is not None
    with ResultStore(f"sqlite:///{out / 'sliver.db'}") as store:
        knee = store.exports(store.get_study("demo"))["knee"]
    assert knee["rule"] == "knee" and knee["out"] == str((out / "knee").resolve())


@pytest.mark.slow
def test_report_renders_in_a_headless_browser(demo_run, artifacts_dir):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (.ci/system-deps installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (a test extra) is not installed")
    out, _ = demo_run
    report = out / "report" / "report.html"
    errors = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run", "--disable-sync",
        ])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(report.as_uri())
        page.wait_for_load_state("load")
        sizes = page.evaluate("[...document.images].map(i => [i.naturalWidth, i.naturalHeight])")
        config_px = page.evaluate("[...document.querySelectorAll('td.config')].map(c => parseFloat(getComputedStyle(c).fontSize))")
        # the dashboard's charts, drawn from the inlined plotly.js: they replace the Pareto images on screen
        page.wait_for_selector("html.interactive")
        charts = page.evaluate("document.querySelectorAll('#interactive-pareto .js-plotly-plot').length")
        static_shown = page.is_visible(".static-figures")
        # hover a front point of the first chart: the tooltip shows its trial, values and config
        chart = page.locator("#interactive-pareto .js-plotly-plot").first
        chart.scroll_into_view_if_needed()
        target = chart.evaluate("""gd => {
            const t = gd.data.find(t => t.name === 'Pareto front'), L = gd._fullLayout, box = gd.getBoundingClientRect();
            return {x: box.left + L._size.l + L.xaxis.l2p(t.x[0]), y: box.top + L._size.t + L.yaxis.l2p(t.y[0]),
                    seq: t.customdata[0]};
        }""")
        page.mouse.move(target["x"], target["y"])
        tip = page.wait_for_selector(".hoverlayer .hovertext").text_content()
        page.screenshot(path=str(artifacts_dir / "demo_report.png"), full_page=True)
        page.emulate_media(media="print")  # printed, the static images stand in for the charts
        printed = page.is_visible(".static-figures"), page.is_visible(".interactive-figures")
        browser.close()
    assert charts == len(list(report.parent.glob("pareto_*.png"))) >= 1 and not static_shown  # one per image
    assert f"trial {target['seq']}" in tip and "config" in tip and "latency_ms (ms)" in tip
    assert printed == (True, False)
    assert errors == []
    assert config_px and min(config_px) >= 12  # the front's configs are readable text
    assert len(sizes) >= 4 and all(w > 0 and h > 0 for w, h in sizes)
    assert (artifacts_dir / "demo_report.png").stat().st_size > 10_000
