"""Regenerate ``docs/images/dashboard.png``, the README's picture of the dashboard's study page.

    PYTHONPATH=. python docs/make_screenshot.py [--work runs/screenshot] [--out docs/images/dashboard.png]

It runs what a user runs, in ``--work``: ``sliver train`` of the demo's digits
super-network, ``sliver search`` (accuracy × params × latency on this CPU with
ONNX Runtime, LINAS, seeded, with the constraint ``params <= 80000``), two
``sliver export --pick``, then ``sliver dashboard`` over the store on
127.0.0.1; headless Chromium (playwright, a test extra, with Debian's chromium)
opens the study page, pins the accurate pick, and the page down to the
predictor-quality chart is saved as a small palette PNG. A rerun with the same
``--work`` reuses the trained super-network and the stored search (minutes the
first time, seconds after). Latencies are this machine's, so the picture is
reproducible in everything but the measured latencies.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import threading
import time
from pathlib import Path

import yaml
from typer.testing import CliRunner

from sliver.cli import app
from sliver.dashboard import bind, create_app, server
from sliver.demo import RECIPES, search_config, train_config
from sliver.store import ResultStore

STUDY = "digits"
#: between the smallest (30,794) and the largest (137,682) sub-network of the digits preset
CONSTRAINT = "params <= 80000"
PICKS = {"accurate": f"{CONSTRAINT} max accuracy", "knee": "knee"}


def sliver(*args: str) -> None:
    """Run ``sliver <args>`` in this process (this checkout's code); stop with its output when it fails."""
    result = CliRunner().invoke(app, list(args))
    if result.exit_code != 0:
        sys.exit(f"sliver {' '.join(args)} failed:\n{result.output}")


def run_study(work: Path) -> Path:
    """Train, search and export in ``work`` (each step resumes); the search YAML's path."""
    recipe = RECIPES["quick"]
    work.mkdir(parents=True, exist_ok=True)
    (work / "train.yaml").write_text(yaml.safe_dump(train_config(recipe), sort_keys=False))
    sliver("train", str(work / "train.yaml"), "--out", str(work / "supernet"), "--quiet")
    search = search_config({**recipe, "budget": 36}, (work / "supernet" / "checkpoint.pt").resolve(), (work / "sliver.db").resolve())
    search.update(objectives=["accuracy", "params", "latency_ms"], constraints=[CONSTRAINT], study=STUDY,
                  strategy={"name": "linas", "options": {"n_init": 12, "batch": 6}})
    search_yaml = work / "search.yaml"
    search_yaml.write_text(yaml.safe_dump(search, sort_keys=False))
    sliver("search", str(search_yaml))
    for label, rule in PICKS.items():
        sliver("export", str(search_yaml), "--pick", rule, "--out", str(work / "exports" / label))
    return search_yaml


def screenshot(work: Path, out: Path) -> None:
    """Serve the dashboard over ``work``'s store and save its study page, a pick pinned, to ``out``."""
    from PIL import Image
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("Debian's chromium is needed (apt-get install chromium)")
    store = ResultStore(f"sqlite:///{(work / 'sliver.db').resolve()}")
    sock = bind("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    served = server(create_app(store, [work / "supernet"]))
    thread = threading.Thread(target=served.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not served.started:
        time.sleep(0.05)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(f"{url}/study/{STUDY}")
            page.wait_for_function("document.getElementById('quality').data !== undefined")
            # pin the accurate pick, as a click on its point does, so the page shows its export command
            page.evaluate("""() => {
                const gd = document.getElementById('pareto'), t = gd.data.find(t => t.name === 'exported');
                const i = t.texttemplate.findIndex(label => label.includes('accurate'));
                gd.emit('plotly_click', {points: [{customdata: t.customdata[i]}]});
            }""")
            page.wait_for_selector("#pinned:not([hidden])")
            page.mouse.move(0, 0)
            bottom = page.evaluate("document.getElementById('quality').getBoundingClientRect().bottom + scrollY")
            shot = out.with_suffix(".full.png")
            page.screenshot(path=str(shot), clip={"x": 0, "y": 0, "width": 1100, "height": bottom + 10}, full_page=True)
            browser.close()
    finally:
        served.should_exit = True
        thread.join(10)
        sock.close()
        store.close()
    # a 256-colour palette keeps the charts sharp at a fraction of the size
    Image.open(shot).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    shot.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("runs/screenshot"), help="run folder (reused when it exists)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "images" / "dashboard.png")
    args = parser.parse_args()
    run_study(args.work)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    screenshot(args.work, args.out)
    print(f"{args.out}: {args.out.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
