"""`sliver demo`, `sliver export` and `sliver report`: from a finished search to deployable models and a picture.

``export`` and ``report`` take the search's YAML (the one ``sliver search`` ran,
or ``<run>/search.yaml`` written by ``sliver demo``), so the evaluator that
re-checks an export is built exactly as the search built it.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path

import typer

from sliver.cli._common import USER_ERRORS, console, fail
from sliver.errors import UserError
from sliver.export import ExportError


def demo(
    quick: bool = typer.Option(False, "--quick", help="A ≤ 2-minute version on scikit-learn's digits (smoke test)."),
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Run folder: checkpoint, sliver.db, exports, report."),
    budget: int = typer.Option(None, "--budget", min=1, help="Unique real evaluations for the search (default 40, quick 12)."),
) -> None:
    """Train the tiny super-network, search it for this CPU, export two sub-networks, write the report. Resumable."""
    from sliver.demo import run_demo

    try:
        run_demo(out / "quick" if quick and out == Path("runs/demo") else out, quick=quick, budget=budget, console=console)
    except USER_ERRORS as exc:
        fail(str(exc))
    except ExportError as exc:  # e.g. the run folder's store was measured with other data or weights
        fail(f"{exc} (start afresh with another --out)")


def _open(search_yaml: Path, study: str | None):
    """The validated search config, its store and the study name it used."""
    from sliver.config import load
    from sliver.search.config import SearchConfig
    from sliver.store import ResultStore

    cfg = load(SearchConfig, search_yaml)
    if not cfg.store:
        raise UserError(f"{search_yaml}: 'store' is empty, so the search kept nothing to export or report")
    store = ResultStore(cfg.store)
    name = study or cfg.study
    if name is None:
        studies = store.list_studies()
        if len(studies) != 1:
            raise UserError(f"{search_yaml} names no study and the store holds {len(studies)}; pass --study "
                             f"(one of {[s.name for s in studies]})")
        name = studies[0].name
    return cfg, store, store.get_study(name)


class ExportFormat(str, Enum):
    sliver = "sliver"
    hf = "hf"


def export(
    search_yaml: Path = typer.Argument(..., help="The search's YAML (problem kind 'supernet')."),
    pick_rule: str = typer.Option("knee", "--pick", "-p", help="'knee', a rule like 'latency_ms<=2 max accuracy', or a config as JSON."),
    out: Path = typer.Option(Path("export"), "--out", "-o", help="Folder to write model.pt, arch.json, model.onnx, card.md/json."),
    study: str = typer.Option(None, "--study", help="Study name (default: the YAML's)."),
    fmt: ExportFormat = typer.Option(ExportFormat.sliver, "--format", "-f",
                                     help="sliver: model.pt + model.onnx + card; hf: a Hugging Face model folder "
                                          "(config.json, model.safetensors, tokenizer, README.md) of a Llama sub-network."),
) -> None:
    """Cut a sub-network out of the super-network, verify it against the stored metrics, and write it."""
    from sliver.export import export_subnetwork, pick
    from sliver.store import hide_password

    try:
        cfg, store, record = _open(search_yaml, study)
        if cfg.problem.kind != "supernet":
            raise UserError(f"{search_yaml}: only a 'supernet' problem has models to export (this one is '{cfg.problem.kind}')")
        from sliver.search.config import build_search

        search, _ = build_search(cfg)
        evaluator = search.evaluator
        points = [(t.config, t.values) for t in store.trials(record.id) if not t.errors]
        choice = pick(points, record.objectives, pick_rule, evaluator.space)
        config, rule = choice.config, choice.rule
        stored = choice.values or None  # a config the search never measured: its metrics are measured now
        quantized = cfg.problem.quantization is not None and cfg.problem.quantization.search
        if quantized and fmt is ExportFormat.hf:
            raise UserError(f"{search_yaml}: a joint quantisation search exports quantised ONNX; remove --format hf")
        if quantized:
            from sliver.quant import export_quantized

            # a point of a joint architecture x quantisation search: its deployable form is the quantised ONNX
            card = export_quantized(evaluator, config, out / "model.int8.onnx", stored=stored)
            store.record_export(record, out.name, config, rule, str(out.resolve()))
            console.print(f"exported ({rule}): accuracy {card['accuracy']:.4g}, {card['model_size']} bytes, "
                          f"fp32 layers {len(card['fp32_nodes'])}\n→ {out / 'model.int8.onnx'}")
            return
        provenance = {"study": record.name, "rule": rule, "checkpoint": cfg.problem.checkpoint, "store": hide_password(cfg.store)}
        if fmt is ExportFormat.hf:
            from sliver.export_hf import export_subnetwork_hf

            result = export_subnetwork_hf(evaluator, config, out, stored=stored, provenance=provenance)
        else:
            result = export_subnetwork(evaluator, config, out, stored=stored, provenance=provenance)
        store.record_export(record, out.name, config, rule, str(result.path.resolve()))
    except USER_ERRORS as exc:
        fail(str(exc))
    except ExportError as exc:  # the exported model does not reproduce the super-network or the stored metrics
        fail(str(exc))
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in result.metrics.items())
    checks = ", ".join(f"{k} {v:.2g}" for k, v in result.checks.items())
    console.print(f"exported ({rule}): {metrics}\nchecks: {checks}\n→ {result.path}")


def report(
    search_yaml: Path = typer.Argument(..., help="The search's YAML."),
    out: Path = typer.Option(None, "--out", "-o", help="Folder for report.html and the PNGs (default: report/ beside the YAML)."),
    study: str = typer.Option(None, "--study", help="Study name (default: the YAML's)."),
) -> None:
    """Write a self-contained HTML report (and PNGs) of a study: fronts, hypervolume, front table, target."""
    from sliver.report import write_report

    try:
        cfg, store, record = _open(search_yaml, study)
        if cfg.problem.kind == "supernet":
            from sliver.measure.hardware import HardwareTarget

            fingerprint = HardwareTarget.parse(cfg.problem.target).fingerprint()
        else:
            fingerprint = cfg.problem.model_dump()
        # what `sliver export` recorded in the store, and the model cards beside the YAML (exports made before
        # the store recorded them): the same label, the folder's name, in both
        picks = {label: e["config"] for label, e in store.exports(record).items()}
        for card in sorted(search_yaml.parent.glob("exports/*/card.json")):
            try:
                picks[card.parent.name] = json.loads(card.read_text())["config"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise UserError(f"{card}: not a model card written by 'sliver export' (no 'config'); "
                                "export that pick again or remove its folder") from None
        path = write_report(store, record.name, out or search_yaml.parent / "report", picks=picks, fingerprint=fingerprint)
    except USER_ERRORS as exc:
        fail(str(exc))
    console.print(f"report: {path}")
