"""`sliver train`: train a super-network from a YAML config, resuming from the last checkpoint."""

from __future__ import annotations

from pathlib import Path

import typer

from sliver.cli._common import USER_ERRORS, console, fail
from sliver.config import ConfigError, read_yaml


def train(
    config: Path = typer.Argument(..., help="Training config (YAML with supernet:, data: and train: sections)."),
    out: Path = typer.Option(None, "--out", "-o", help="Output folder for checkpoint.pt and metrics.jsonl (default: runs/<config name>)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    nproc: int = typer.Option(1, "--nproc", min=1, help="Data-parallel processes (torch.distributed, gloo); train.batch_size is split over them."),
) -> None:
    """Train an elastic super-network; restarted with the same --out, it resumes where it stopped."""
    # heavy imports here so that `sliver --help` stays fast
    from sliver.train import Trainer, load_run_config
    from sliver.train.trainer import fixed_scores

    out = out or Path("runs") / config.stem
    try:
        spec = read_yaml(config).get("supernet")
        if isinstance(spec, dict) and spec.get("family") == "multitask":  # its YAML has tasks:, not a train: section
            raise ConfigError(f"{config}: field 'supernet.family': multitask super-networks are trained with "
                              f"'sliver train-multitask {config} --out {out}'")
        if nproc > 1:
            from sliver.train.distributed import train_distributed

            if (out / "checkpoint.pt").exists():
                console.print(f"resuming {out / 'checkpoint.pt'} on {nproc} processes")
            summary = train_distributed(config, out, nproc, progress=not quiet)
        else:
            run_config, text = load_run_config(config)
            trainer = Trainer(run_config, out, config_text=text, progress=not quiet)
            if trainer.resumed:
                console.print(f"resuming {trainer.checkpoint_path} at step {trainer.step}/{trainer.total_steps}")
            if trainer.start_info:
                info = trainer.start_info
                probe = (f"linear-probe head {info['probe_train_acc']:.1f}% on {info['probe_examples']} training examples; "
                         if "probe_train_acc" in info else "")
                console.print(f"start: {probe}units sorted by {info['reorder'] or 'nothing'} ({info['seconds']} s)")
            summary = trainer.fit()
    except USER_ERRORS as exc:
        fail(str(exc))
    last = summary.get("metrics")
    accs = ""
    if last:
        metric, label = ("ppl", "perplexity") if "ppl_max" in last else ("acc", "accuracy")
        fixed = "".join(f", {name} {v:.2f}" for name, v in fixed_scores(last, metric))
        accs = f"; {label} max {last[f'{metric}_max']:.2f}, mid {last[f'{metric}_mid']:.2f}, min {last[f'{metric}_min']:.2f}{fixed}"
    console.print(f"done: {summary['step']} steps, checkpoint {summary['checkpoint']} (hash {summary.get('hash')}){accs}")
