"""`sliver dashboard`: the JSON endpoints and pages through Starlette's TestClient (fast), and the
live pages in headless Chromium while a seeded search and a training run are still writing (slow)."""

from __future__ import annotations

import html
import json
import os
import shlex
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import typer
from starlette.testclient import TestClient
from typer.testing import CliRunner

from sliver.cli import app as cli
from sliver.core import BUILTIN
from sliver.dashboard import bind, create_app, server
from sliver.export import pick
from sliver.report import predictor_quality, study_hypervolume, study_points
from sliver.search import Search
from sliver.space import Dimension, SearchSpace
from sliver.store import ResultStore

PASSWORD = "s3cret-pw"
TRACEBACK = "Traceback (most recent call last)"


class ToyEvaluator:
    """accuracy / latency_ms from two genes; width 3 with a first kernel of 7 fails. With a ``gate`` (a semaphore),
    each measurement waits for a permit, so a test decides when the search moves on."""

    def __init__(self, gate: threading.Semaphore | None = None):
        self.space = SearchSpace([Dimension("k", (3, 5, 7), 3), Dimension("w", (1, 2, 3))])
        self.objectives = [BUILTIN["accuracy"], BUILTIN["latency_ms"]]
        self.supernet_hash = "toy"
        self.fingerprint = "cpu"
        self.gate = gate

    def fingerprint_for(self, objective):
        return "cpu" if objective == "latency_ms" else "any"

    def measure(self, config, objectives):
        if self.gate is not None and not self.gate.acquire(timeout=60):
            raise TimeoutError("the test gave no permit to measure")
        size = sum(k * k for k in config["k"]) * config["w"]
        if config["w"] == 3 and config["k"][0] == 7:
            return {n: RuntimeError("out of memory\nsecond line of the error") for n in objectives}
        out = {"accuracy": 60 + 10 * np.log(size), "latency_ms": 0.1 * size}
        return {n: out[n] for n in objectives}


def run_search(url: str, budget: int, gate: threading.Semaphore | None = None, study: str = "toy study/1",
               settings: dict | None = None) -> None:
    """A seeded random search in batches of three (so predictor quality has rounds to score); ``settings`` are
    recorded with the study as ``build_search`` records a YAML's path and problem kind."""
    ev = ToyEvaluator(gate)
    store = ResultStore(url)
    try:
        Search(ev.space, ev, ["accuracy", "latency_ms"], "random", budget=budget, seed=0, batch_size=3,
               constraints=["latency_ms <= 9"], store=store, study_name=study, study_settings=settings).run()
    finally:
        store.close()


def yaml_settings(folder: Path) -> dict:
    """What build_search records for a super-network search read from ``folder``/search.yaml."""
    return {"search_yaml": str(folder / "search.yaml"), "problem": "supernet"}


@pytest.fixture()
def finished(tmp_path):
    """A store with one finished search (some trials failed, some infeasible, one exported) and a training run folder."""
    url = f"sqlite:///{tmp_path / 'sliver.db'}"
    run_search(url, budget=18, settings=yaml_settings(tmp_path))
    run = tmp_path / "run1"
    run.mkdir()
    (run / "metrics.jsonl").write_text(
        json.dumps({"epoch": 1, "loss": 2.0, "lr": 0.1, "acc_max": 50.0, "acc_mid": 40.0, "acc_min": 30.0}) + "\n"
        + json.dumps({"epoch": 2, "loss": 1.5, "lr": 0.05, "acc_max": 60.0, "acc_mid": 50.0, "acc_min": float("nan")}) + "\n"
        + '{"epoch": 3, "lo'  # the trainer is writing this line right now
    )
    (run / "checkpoint.pt").write_bytes(b"x" * 10)
    store = ResultStore(url)
    study = store.get_study("toy study/1")
    front = study_points(store, study)
    knee = front.configs[int(np.flatnonzero(front.front)[0])]
    store.record_export(study, "fast", knee, "accuracy>=70 min latency_ms", str(tmp_path / "exports" / "fast"))
    store.record_export(study, "elsewhere", {"k": [3, 3, 3], "w": 3}, "explicit config", str(tmp_path / "x"))
    yield store, run
    store.close()


def test_study_endpoint_matches_the_library(finished):
    store, run = finished
    client = TestClient(create_app(store, [run]))
    d = client.get("/api/study/toy study/1").json()
    study = store.get_study("toy study/1")
    points = study_points(store, study)
    assert d["trials_count"] == 18 and d["budget"] == 18
    assert d["failed_count"] == sum(1 for t in store.trials(study.id) if t.errors) > 0
    assert [p["seq"] for p in d["points"]] == points.seqs
    assert d["front_size"] == int(points.front.sum())
    assert not all(p["feasible"] for p in d["points"])  # the constraint rules some out
    # the curve's last value is the number `sliver results show` and the report print
    assert d["hypervolume"]["values"][-1] == pytest.approx(study_hypervolume(points))
    assert d["hypervolume"]["evaluations"] == list(range(1, len(points.seqs) + 1))
    # the pair's front: feasible, and no feasible point beats one of them in both objectives
    front = [d["points"][i] for i in d["pair_fronts"]["0,1"]]
    feasible = [p for p in d["points"] if p["feasible"]]
    assert front and all(p["feasible"] for p in front)
    for f in front:
        assert not any(q["values"]["accuracy"] > f["values"]["accuracy"] and q["values"]["latency_ms"] < f["values"]["latency_ms"]
                       for q in feasible)
    failed = [t for t in d["trials"] if t["status"] == "failed"]
    assert failed and all("out of memory" in t["error"] and "second line" not in t["error"] for t in failed)
    # what the study recorded: its constraint (shaded), its exports (marked), predictor quality as the report's
    assert d["constraints"] == [{"metric": "latency_ms", "op": "<=", "bound": 9.0, "text": "latency_ms <= 9"}]
    fast = d["picks"]["fast"]
    assert fast is not None and d["points"][fast]["front"] and d["picks"]["elsewhere"] is None  # never measured
    assert d["predictor_quality"] == predictor_quality(store, study) and len(d["predictor_quality"]) >= 2


def test_each_points_export_command_runs_as_shown_and_selects_that_point(finished, tmp_path):
    store, run = finished
    d = TestClient(create_app(store, [run])).get("/api/study/toy study/1").json()
    study = store.get_study("toy study/1")
    measured = [(t.config, t.values) for t in store.trials(study.id) if not t.errors]
    export = typer.main.get_command(cli).commands["export"]
    assert d["search_yaml"] == str(tmp_path / "search.yaml") and d["export_note"] is None
    for p in d["points"]:
        argv = shlex.split(p["export"])
        assert argv[:2] == ["sliver", "export"]
        args = export.make_context("export", argv[2:]).params  # sliver export's own parser takes it
        assert args["search_yaml"] == tmp_path / "search.yaml" and args["study"] == "toy study/1"
        assert args["out"] == tmp_path / "exports" / f"trial-{p['seq']}"  # beside the YAML, where sliver report looks
        choice = pick(measured, study.objectives, args["pick_rule"], study.space)  # what sliver export exports
        assert study.space.key(choice.config) == study.space.key(p["config"])
        assert choice.values == pytest.approx(p["values"])


def test_the_export_command_says_when_it_cannot_run_as_shown(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    run_search(url, budget=3, study="from python")  # Search() from Python: no YAML recorded
    run_search(url, budget=3, study="table", settings={"search_yaml": "/x/search.yaml", "problem": "nb201"})
    with ResultStore(url) as store:
        client = TestClient(create_app(store))
        python = client.get("/api/study/from python").json()
        assert python["search_yaml"] is None and "replace path/to/search.yaml" in python["export_note"]
        assert python["points"][0]["export"].startswith("sliver export path/to/search.yaml --study 'from python'")
        table = client.get("/api/study/table").json()
        assert table["export_note"] == "this study's problem ('nb201') has no models to export"
        assert all(p["export"] is None for p in table["points"])


def test_studies_training_and_unknown_names(finished):
    store, run = finished
    client = TestClient(create_app(store, [run]))
    rows = client.get("/api/studies").json()
    assert rows["runs"] == ["run1"]
    (row,) = rows["studies"]
    assert row["name"] == "toy study/1" and row["trials"] == 18 and row["budget"] == 18 and row["failed"] > 0
    assert row["fingerprint"] == "cpu" and row["supernet_hash"] == "toy" and row["last_activity"]
    home = client.get("/")
    assert home.status_code == 200 and 'href="/study/toy%20study%2F1"' in home.text and "/training/run1" in home.text

    t = client.get("/api/training/run1").json()
    assert [r["epoch"] for r in t["records"]] == [1, 2]  # the half-written line is left for the next poll
    assert t["records"][1]["acc_min"] is None  # NaN is no JSON
    assert t["checkpoints"][0]["name"] == "checkpoint.pt" and t["checkpoints"][0]["bytes"] == 10
    assert client.get("/training/run1").status_code == 200

    for path in ("/study/nope", "/training/nope", "/no/such/page"):
        r = client.get(path)
        assert r.status_code == 404 and "not found" in r.text and TRACEBACK not in r.text, path
    assert "no study named 'nope'" in html.unescape(client.get("/study/nope").text)
    r = client.get("/api/study/nope")
    assert r.status_code == 404 and r.json() == {"error": "no study named 'nope' in this store"}


def test_plotly_is_served_locally_and_pages_load_nothing_remote(finished):
    store, run = finished
    client = TestClient(create_app(store, [run]))
    js = client.get("/static/plotly.min.js")
    assert js.status_code == 200 and "plotly" in js.text[:2000].lower() and len(js.content) > 1_000_000
    for path in ("/", "/study/toy%20study%2F1", "/training/run1"):
        page = client.get(path).text
        assert "http://" not in page and "https://" not in page, path
    assert client.get("/static/dashboard.js").status_code == 200


def test_a_password_in_the_store_url_reaches_no_page(finished):
    store, run = finished
    store.url = f"{store.url}?password={PASSWORD}"  # as the user typed it: the store keeps the URL it was given
    client = TestClient(create_app(store, [run]))
    for path in ("/", "/study/toy%20study%2F1", "/training/run1", "/study/nope", "/api/studies",
                 "/api/study/toy%20study%2F1"):
        assert PASSWORD not in client.get(path).text, path
    assert "password=***" in client.get("/").text


def test_an_error_while_serving_is_one_line_without_a_traceback(finished, monkeypatch):
    store, run = finished
    client = TestClient(create_app(store, [run]), raise_server_exceptions=False)

    def broken(*a, **k):
        raise KeyError("internal detail")

    monkeypatch.setattr("sliver.dashboard.data.studies_overview", broken)
    r = client.get("/")
    assert r.status_code == 500 and "internal error (KeyError)" in r.text
    assert TRACEBACK not in r.text and "internal detail" not in r.text
    assert client.get("/api/studies").json() == {"error": "internal error (KeyError); the dashboard's terminal shows the details"}


def test_cli_unreachable_store_and_busy_port_are_one_line_errors(tmp_path):
    runner = CliRunner()
    missing = runner.invoke(cli, ["dashboard", "--db", f"sqlite:///{tmp_path / 'none.db'}"])
    assert missing.exit_code == 2 and "no result store at" in missing.output and TRACEBACK not in missing.output
    url = f"postgresql+psycopg2://me:{PASSWORD}@127.0.0.1:1/db"  # nothing listens on port 1
    down = runner.invoke(cli, ["dashboard", "--db", url])
    assert down.exit_code == 2 and "cannot connect" in down.output and PASSWORD not in down.output
    assert TRACEBACK not in down.output and len(down.output.strip().splitlines()) <= 3  # one line, wrapped by the terminal
    ResultStore(f"sqlite:///{tmp_path / 's.db'}").close()
    with bind("127.0.0.1", 0) as taken:
        busy = runner.invoke(cli, ["dashboard", "--db", f"sqlite:///{tmp_path / 's.db'}", "--port", str(taken.getsockname()[1])])
    assert busy.exit_code == 2 and "cannot serve the dashboard on 127.0.0.1" in busy.output and "--port" in busy.output


# ------------------------------------------------------------------ in a real browser
class Served:
    """The dashboard over ``store`` on a free port of 127.0.0.1, in a thread; ``stop()`` ends it."""

    def __init__(self, store: ResultStore, runs: list[Path]):
        self.sock = bind("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = server(create_app(store, runs, poll_seconds=0.5))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def _chromium():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (.ci/system-deps installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (a test extra) is not installed")
    return chromium, sync_api


@pytest.fixture()
def screenshots(tmp_path, artifacts_dir):
    """Where the browser test's screenshots go: $SLIVER_SCREENSHOTS, else test-artifacts/dashboard."""
    folder = Path(os.environ.get("SLIVER_SCREENSHOTS") or artifacts_dir / "dashboard")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _marker_count(page, trace: str) -> int:
    return page.evaluate(f"document.getElementById('pareto').data.find(t => t.name === '{trace}').x.length")


@pytest.mark.slow
def test_live_pages_in_a_headless_browser(tmp_path, screenshots):
    chromium, sync_api = _chromium()
    url = f"sqlite:///{tmp_path / 'sliver.db'}"
    ResultStore(url).close()
    gate = threading.Semaphore(6)  # the search measures 6 sub-networks, then waits for the test
    search = threading.Thread(target=run_search, args=(url, 18, gate), kwargs={"settings": yaml_settings(tmp_path)},
                              daemon=True)
    search.start()
    run = tmp_path / "run1"
    run.mkdir()
    metrics = run / "metrics.jsonl"

    def epoch(n):  # what the trainer appends after each epoch
        with metrics.open("a") as f:
            f.write(json.dumps({"epoch": n, "step": 10 * n, "phase": "sandwich", "lr": 0.1 / n, "loss": 2.0 / n,
                                "acc_max": 50 + 5 * n, "acc_mid": 45 + 4 * n, "acc_min": 40 + 3 * n}) + "\n")

    epoch(1)
    store = ResultStore(url)
    served = Served(store, [run])
    errors: list[str] = []
    try:
        deadline = time.monotonic() + 20
        while not store.list_studies() or len(store.trials(store.list_studies()[0].id)) < 6:
            assert time.monotonic() < deadline, "the search wrote no trial"
            time.sleep(0.1)
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--no-first-run", "--disable-sync",
            ])
            context = browser.new_context(viewport={"width": 1200, "height": 1000})
            context.grant_permissions(["clipboard-read", "clipboard-write"], origin=served.url)
            remote = []
            context.route("**/*", lambda route: (remote.append(route.request.url), route.abort())
                          if not route.request.url.startswith(served.url) else route.continue_())
            page = context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))

            page.goto(f"{served.url}/")
            page.wait_for_selector("#studies a")
            page.screenshot(path=str(screenshots / "studies.png"), full_page=True)
            page.click("#studies a")
            page.wait_for_function("document.getElementById('pareto').data !== undefined")
            first = _marker_count(page, "measured") + _marker_count(page, "infeasible")
            assert first >= 3
            gate.release(12)  # the search goes on: the plot gains its points with no reload
            search.join(30)
            study = store.list_studies()[0]
            total = len(study_points(store, study).seqs)
            assert total > first
            page.wait_for_function("(n) => { const d = document.getElementById('pareto').data;"
                                   " return d[0].x.length + d[1].x.length === n; }", arg=total)

            # the constraint latency_ms <= 9 (the y axis) shades the band above 9, with a legend entry
            shapes = page.evaluate("document.getElementById('pareto').layout.shapes")
            assert [(sh["yref"], sh["y0"], sh["xref"]) for sh in shapes] == [("y", 9, "paper")]
            assert shapes[0]["y1"] > 9 and shapes[0]["name"] == "violates latency_ms <= 9"
            assert page.locator("#pareto .shapelayer path").count() >= 1
            assert "violates latency_ms <= 9" in page.text_content("#pareto .legend")
            # a bound past every point (a cheap constraint: the search never measured beyond it) is still shown;
            # one farther away than the points' own spread is not (it would squash them)
            bands = page.evaluate("""() => [12, 100].map(bound => constraintShapes(
                {points: [1, 5, 10].map(v => ({values: {m: v}})), constraints: [{metric: 'm', op: '<=', bound, text: ''}]},
                {name: 'm'}, 'x').map(s => [s.x0, s.x1]))""")
            assert bands[0] == [[12, pytest.approx(13.1)]] and bands[1] == []

            # an export recorded now (as `sliver export` records it) is marked without a reload
            points = study_points(store, study)
            exported = int(np.flatnonzero(points.front)[0])
            store.record_export(study, "fast", points.configs[exported], "accuracy>=70 min latency_ms",
                                str(tmp_path / "exports" / "fast"))
            page.wait_for_function("document.getElementById('pareto').data.some(t => t.name === 'exported')")
            marked = page.evaluate("document.getElementById('pareto').data.find(t => t.name === 'exported')")
            assert marked["customdata"] == [points.seqs[exported]] and marked["texttemplate"] == ["fast"]

            # predictor rank quality per round: a point per scored round and objective, as the report computes it
            rounds = predictor_quality(store, study)
            assert len(rounds) >= 2
            page.wait_for_function("document.getElementById('quality').data?.length === 2")
            quality = page.evaluate("document.getElementById('quality').data.map(t => [t.name, t.x, t.y])")
            assert quality == [[name, [r["evaluations"] for r in rounds], [r["kendall_tau"][name] for r in rounds]]
                               for name in ("accuracy", "latency_ms")]
            assert page.text_content("#quality-note") == ""
            assert page.evaluate("performance.getEntriesByType('navigation').length") == 1

            # hover a front point: the tooltip shows its values and config
            target = page.evaluate("""() => {
                const gd = document.getElementById('pareto'), t = gd.data.find(t => t.name === 'Pareto front');
                const L = gd._fullLayout, box = gd.getBoundingClientRect();
                return {x: box.left + L._size.l + L.xaxis.l2p(t.x[0]), y: box.top + L._size.t + L.yaxis.l2p(t.y[0]),
                        seq: t.customdata[0]};
            }""")
            page.mouse.move(target["x"], target["y"])
            tip = page.wait_for_selector(".hoverlayer .hovertext").text_content()
            data = page.evaluate("fetch('/api/study/' + encodeURIComponent('toy study/1')).then(r => r.json())")
            point = next(q for q in data["points"] if q["seq"] == target["seq"])
            assert f"trial {point['seq']}" in tip and "config" in tip
            assert f"k = {json.dumps(point['config']['k'], separators=(',', ':'))}" in tip and f"w = {point['config']['w']}" in tip
            assert "accuracy (%)" in tip and "latency_ms (ms)" in tip
            page.screenshot(path=str(screenshots / "study_hover.png"), full_page=False)

            # click pins it; the export command is shown and copies
            page.mouse.click(target["x"], target["y"])
            page.wait_for_selector("#pinned:not([hidden])")
            assert page.text_content("#pinned-seq") == str(point["seq"])
            command = page.text_content("#export-command")
            assert command == point["export"] and "--study 'toy study/1'" in command
            assert command.startswith(f"sliver export {tmp_path / 'search.yaml'} ")  # the search's own YAML
            assert shlex.split(command)[shlex.split(command).index("--pick") + 1] == json.dumps(point["config"], separators=(",", ":"))
            assert page.text_content("#export-note") == ""
            page.click("#copy-export")
            page.wait_for_function("document.getElementById('copy-state').textContent === 'copied'")
            assert page.evaluate("navigator.clipboard.readText()") == command
            page.wait_for_function("document.getElementById('trial-count').textContent.endsWith('of 18 trials')")
            assert page.locator("#trials tr.failed").count() > 0
            assert "RuntimeError: out of memory" in page.text_content("#trials tr.failed")
            page.click("#trials th[data-key='v:latency_ms']")  # sort by latency
            latencies = [float(x) for x in page.eval_on_selector_all(
                "#trials tbody tr:not(.failed) td:nth-child(4)", "tds => tds.map(td => td.textContent)")]
            assert latencies == sorted(latencies) and len(latencies) > 5
            page.screenshot(path=str(screenshots / "study.png"), full_page=True)
            study_text = page.text_content("body")

            # the training page follows metrics.jsonl as epochs are appended
            page.goto(f"{served.url}/training/run1")
            page.wait_for_function("document.getElementById('accuracy').data?.length === 3")
            epoch(2)
            epoch(3)
            page.wait_for_function("document.getElementById('loss').data[0].x.length === 3")
            assert page.evaluate("document.getElementById('accuracy').data.map(t => t.name)") == ["largest", "middle", "smallest"]
            assert "3 epochs recorded" in page.text_content("#summary")
            page.screenshot(path=str(screenshots / "training.png"), full_page=True)
            training_text = page.text_content("body")

            page_errors = list(errors)  # the 404 below is a console error by design
            response = page.goto(f"{served.url}/study/no-such-study")
            assert response.status == 404 and "no study named 'no-such-study'" in page.text_content("body")
            page.screenshot(path=str(screenshots / "not_found.png"))
            browser.close()
    finally:
        served.stop()
        gate.release(18)  # a search still waiting (the test failed early) finishes
        search.join(30)
        store.close()
    assert not served.thread.is_alive()
    assert page_errors == [] and remote == []
    for text in (study_text, training_text):
        assert TRACEBACK not in text
    for name in ("studies", "study_hover", "study", "training", "not_found"):
        assert (screenshots / f"{name}.png").stat().st_size > 5_000
