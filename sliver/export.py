"""Export chosen sub-networks as standalone models, verified against the super-network.

An export folder holds:

- ``model.pt``: ``{"arch": ..., "state_dict": ..., "config": ...}``, loadable
  with :func:`load_model` without the super-network or any elastic code;
- ``arch.json``: the architecture alone (what :func:`sliver.elastic.build_extracted` takes);
- ``model.onnx``: the same network for ONNX Runtime;
- ``card.json`` / ``card.md``: config, measured metrics, hardware fingerprint and
  provenance (super-network checkpoint hash, study).

:func:`export_subnetwork` refuses to write a model that does not reproduce the
super-network: PyTorch outputs must match to 1e-5, ONNX to 1e-4 (at batch 1
and at a larger batch: the ONNX batch axis is dynamic, and so is the sequence
axis of text models), and the re-measured accuracy (a language model's
perplexity) must match the stored one. :mod:`sliver.export_hf` writes a
language model as a Hugging Face model folder instead.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sliver.core import Constraint, Objective
from sliver.errors import UserError, one_line
from sliver.search.hv import nondominated
from sliver.space import Config, SearchSpace

TORCH_TOLERANCE = 1e-5
ONNX_TOLERANCE = 1e-4
#: accuracy is re-measured with the same seeded procedure, so it must agree to rounding
ACCURACY_TOLERANCE = 1e-6
#: perplexity, relative: the exp of a float sum over many tokens, re-measured on the same rows, agrees to rounding
PERPLEXITY_TOLERANCE = 1e-5


class ExportError(UserError):
    """An exported model does not reproduce the super-network, or a pick rule matched nothing."""


# ----------------------------------------------------------------- choosing
@dataclass
class Choice:
    """A sub-network chosen from measured points, with the rule that chose it."""

    config: Config
    values: dict[str, float]
    rule: str


def front_points(points: Sequence[tuple[Config, dict[str, float]]], objectives: Sequence[Objective]) -> list[int]:
    """Indices of the measured points on the Pareto front of ``objectives``."""
    names = [o.name for o in objectives]
    usable = [i for i, (_, v) in enumerate(points) if all(n in v for n in names)]
    if not usable:
        return []
    F = np.array([[points[i][1][o.name] * o.sign for o in objectives] for i in usable])
    mask = nondominated(F)
    return [usable[i] for i in np.flatnonzero(mask)]


_BEST_RE = re.compile(r"^(?P<constraints>.*?)\s*\b(?P<sense>max|min)\s+(?P<metric>[A-Za-z_]\w*)\s*$")


def pick(
    points: Sequence[tuple[Config, dict[str, float]]],
    objectives: Sequence[Objective],
    rule: str,
    space: SearchSpace | None = None,
) -> Choice:
    """Choose one measured point by a rule.

    Rules:

    - ``"knee"``: the front point closest to the ideal point after scaling each
      objective to [0, 1] over the front (a balanced compromise);
    - ``"<constraints> max|min <metric>"``, e.g. ``"latency_ms<=2 max accuracy"``
      or ``"accuracy>=98, params<=1e5 min latency_ms"`` (constraints comma-separated,
      optional): the best point by ``metric`` among those meeting every constraint;
    - a config as JSON, e.g. ``'{"k": [3, 5], "w": 1}'``: exactly that sub-network,
      checked against ``space`` (which this rule needs), with its stored values
      when it is among ``points`` (none otherwise). The dashboard's export
      command uses this rule, so it selects the pinned point and no other.

    Raises :class:`ExportError` listing the front's ranges when nothing matches.
    """
    rule = rule.strip()
    if rule.startswith("{"):
        return _pick_config(points, rule, space)
    if not points:
        raise ExportError("there are no measured sub-networks to pick from")
    front = front_points(points, objectives)
    if rule == "knee":
        if not front:
            raise ExportError(f"no point has every objective measured {[o.name for o in objectives]}")
        F = np.array([[points[i][1][o.name] * o.sign for o in objectives] for i in front])
        span = F.max(0) - F.min(0)
        scaled = (F - F.min(0)) / np.where(span > 0, span, 1.0)
        best = front[int(np.argmin(np.linalg.norm(scaled, axis=1)))]
        return Choice(points[best][0], points[best][1], rule)
    m = _BEST_RE.match(rule)
    if not m:
        raise ExportError(f"pick rule {rule!r}: use 'knee' or '<metric><=<number>, ... max|min <metric>', e.g. 'latency_ms<=2 max accuracy'")
    constraints = [Constraint.parse(c) for c in m.group("constraints").split(",") if c.strip()]
    metric, sense = m.group("metric"), m.group("sense")
    known = set().union(*(v.keys() for _, v in points))
    for name in [metric] + [c.metric for c in constraints]:
        if name not in known:
            raise ExportError(f"pick rule {rule!r}: unknown metric '{name}'; measured metrics are {sorted(known)}")
    ok = [
        i for i, (_, v) in enumerate(points)
        if metric in v and all(c.metric in v and c.ok(v[c.metric]) for c in constraints)
    ]
    if not ok:
        raise ExportError(f"pick rule {rule!r} matches no measured sub-network; {describe_ranges(points, front, objectives)}")
    sign = -1.0 if sense == "max" else 1.0
    # ties broken by the other objectives' sum, so equal-accuracy points prefer the cheaper one
    best = min(ok, key=lambda i: (sign * points[i][1][metric], _tiebreak(points[i][1], objectives, metric)))
    return Choice(points[best][0], points[best][1], rule)


def _pick_config(points: Sequence[tuple[Config, dict[str, float]]], rule: str, space: SearchSpace | None) -> Choice:
    if space is None:
        raise ValueError("pick: a config as the rule needs the search space to check it against (pass space=)")
    try:
        config = space.validate(json.loads(rule))
    except json.JSONDecodeError as exc:
        raise ExportError(f"pick rule {rule!r}: not valid JSON ({exc.msg}); write a config as JSON, "
                          "e.g. '{\"w\": 2}', or a rule such as 'latency_ms<=2 max accuracy'") from None
    key = space.key(config)
    stored = next((v for c, v in points if space.key(c) == key), {})
    return Choice(config, dict(stored), "explicit config")


def _tiebreak(values: dict[str, float], objectives: Sequence[Objective], metric: str) -> float:
    return sum(values.get(o.name, 0.0) * o.sign for o in objectives if o.name != metric)


def describe_ranges(points: Sequence[tuple[Config, dict[str, float]]], front: list[int], objectives: Sequence[Objective]) -> str:
    """'the front spans accuracy 91.2..98.7 %, latency_ms 0.31..1.9 ms' for error messages."""
    idx = front or list(range(len(points)))
    parts = []
    for o in objectives:
        vals = [points[i][1][o.name] for i in idx if o.name in points[i][1]]
        if vals:
            parts.append(f"{o.name} {min(vals):.4g}..{max(vals):.4g}{(' ' + o.unit) if o.unit else ''}")
    return "the front spans " + ", ".join(parts)


# ---------------------------------------------------------------- exporting
@dataclass
class ExportResult:
    """Where an export went and what its checks measured."""

    path: Path
    config: Config
    metrics: dict[str, float]
    checks: dict[str, float] = field(default_factory=dict)


def export_subnetwork(
    evaluator: Any,
    config: Config,
    out_dir: str | Path,
    stored: dict[str, float] | None = None,
    provenance: dict[str, Any] | None = None,
    calibration_batch: int = 16,
) -> ExportResult:
    """Cut ``config`` out of the evaluator's super-network, write it, and verify it.

    ``evaluator`` is a :class:`sliver.measure.model.ModelEvaluator` (its data,
    target and BN recalibration are the ones the stored metrics came from).
    ``stored`` are the metrics recorded in the store for this config; accuracy
    is re-measured and must match. Raises :class:`ExportError` on any mismatch,
    before anything is written.
    """
    import torch

    from sliver.measure.latency import export_onnx
    from sliver.measure.timing import ort_session

    supernet = evaluator.supernet
    config, stored, checks = checked_quality(evaluator, config, stored)
    x = _calibration_batch(evaluator, config, calibration_batch)
    model, reference = extract_matching(supernet, config, x, checks)

    # a free batch axis (and, for text, sequence axis) lets one model.onnx serve any batch and text length;
    # it is checked at batch 1 and at the whole calibration batch, and text at a shorter length too
    dynamic = dict(getattr(supernet, "onnx_dynamic_axes", None) or {0: "batch"})
    onnx_bytes = export_onnx(model, x[:1], dynamic_axes=dynamic)
    session = ort_session(onnx_bytes)
    input_name = session.get_inputs()[0].name
    diffs = [np.abs(session.run(None, {input_name: x[:1].numpy()})[0] - reference[:1].numpy()).max(),
             np.abs(session.run(None, {input_name: x.numpy()})[0] - reference.numpy()).max()]
    if 1 in dynamic and x.shape[1] > 1:
        short = x[:, : (x.shape[1] + 1) // 2]
        with torch.inference_mode():
            want = model(short).numpy()
        diffs.append(np.abs(session.run(None, {input_name: short.numpy()})[0] - want).max())
    checks["onnx_max_abs_diff"] = float(max(diffs))
    checks["onnx_batch_checked"] = float(len(x))
    if checks["onnx_max_abs_diff"] > ONNX_TOLERANCE:
        raise ExportError(f"ONNX model differs from the super-network by {checks['onnx_max_abs_diff']:.2e} (> {ONNX_TOLERANCE})")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    arch = supernet.arch_config(config)
    torch.save({"arch": arch, "state_dict": model.state_dict(), "config": config}, out / "model.pt")
    (out / "arch.json").write_text(json.dumps(arch, indent=2))
    (out / "model.onnx").write_bytes(onnx_bytes)
    card = {
        "config": config,
        "metrics": stored,
        "input_shape": list(supernet.input_shape(config, 1)),
        "onnx_dynamic_axes": {str(axis): name for axis, name in dynamic.items()},
        "target": evaluator.target.model_dump() if hasattr(evaluator.target, "model_dump") else str(evaluator.target),
        "fingerprint": evaluator.target.fingerprint(),
        "supernet_hash": evaluator.supernet_hash,
        "checks": checks,
        "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **(provenance or {}),
    }
    (out / "card.json").write_text(json.dumps(card, indent=2, default=str))
    (out / "card.md").write_text(_card_markdown(card))
    return ExportResult(out, config, stored, checks)


def checked_quality(evaluator: Any, config: Config,
                    stored: dict[str, float] | None) -> tuple[Config, dict[str, float], dict[str, float]]:
    """The validated ``config``, its metrics (the ``stored`` ones, the quality metric re-measured and checked
    against them when the evaluator has data) and the checks recorded so far."""
    config = evaluator.supernet.space.validate(config)
    metrics = dict(stored or {})
    checks: dict[str, float] = {}
    if evaluator.data is not None:
        metrics.setdefault(evaluator.quality, remeasure_quality(evaluator, config, metrics, checks))
    return config, metrics, checks


def extract_matching(supernet: Any, config: Config, x: Any, checks: dict[str, float]) -> tuple[Any, Any]:
    """``config`` cut out of ``supernet`` as a plain model whose outputs on ``x`` equal the super-network's
    (the largest difference recorded in ``checks``; an :class:`ExportError` beyond ``TORCH_TOLERANCE``).
    Returns the model and the super-network's outputs."""
    import torch

    supernet.eval()
    supernet.activate(config)
    model = supernet.extract(config).eval()
    with torch.inference_mode():
        reference = supernet(x)
        plain = model(x)
    checks["torch_max_abs_diff"] = float((reference - plain).abs().max())
    if checks["torch_max_abs_diff"] > TORCH_TOLERANCE:
        raise ExportError(f"extracted model differs from the super-network by {checks['torch_max_abs_diff']:.2e} (> {TORCH_TOLERANCE})")
    return model, reference


def remeasure_quality(evaluator: Any, config: Config, stored: dict[str, float], checks: dict[str, float]) -> float:
    """Re-measure the evaluator's quality metric of ``config`` (accuracy, which also recalibrates BN as the stored
    run did, or a language model's perplexity), record it in ``checks`` and return it; an :class:`ExportError`
    if it differs from the ``stored`` value (the checkpoint or data changed since the search)."""
    quality = evaluator.quality
    measured = evaluator.measure(config, [quality])
    if quality in measured.errors:
        raise ExportError(f"could not re-measure {quality}: {measured.errors[quality]}")
    remeasured = float(measured.values[quality])
    checks[quality] = remeasured
    if quality in stored and not _agrees(quality, stored[quality], remeasured):
        raise ExportError(f"re-measured {quality} {remeasured:.4f} differs from the stored {stored[quality]:.4f}: "
                          "the checkpoint or data changed since the search")
    return remeasured


def _agrees(quality: str, stored: float, remeasured: float) -> bool:
    if quality == "perplexity":
        return abs(stored - remeasured) <= PERPLEXITY_TOLERANCE * abs(stored)
    return abs(stored - remeasured) <= ACCURACY_TOLERANCE


def _calibration_batch(evaluator: Any, config: Config, n: int):
    """A batch from the calibration split at the config's resolution (random input without data)."""
    import torch

    supernet = evaluator.supernet
    if evaluator.data is not None:
        x = torch.stack([evaluator.data.calib[i][0] for i in range(min(n, len(evaluator.data.calib)))])
        x = supernet.prepare_input(x, config)
        # at least two rows, so the ONNX check runs a batch larger than the exported example's
        return x if len(x) > 1 else torch.cat([x, x])
    return supernet.example_input(config, batch_size=max(n, 2), seed=0)


def load_model(path: str | Path):
    """Load an exported sub-network (folder or ``model.pt``) as a plain PyTorch module in eval mode."""
    import torch

    from sliver.elastic.base import build_extracted

    path = Path(path)
    file = path / "model.pt" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"no exported model at {file} (expected a folder written by 'sliver export' or its model.pt)")
    try:
        saved = torch.load(file, map_location="cpu", weights_only=True)
    except Exception:  # any failure; torch's message suggests weights_only=False, which would run the file's code
        raise ExportError(f"{file} is not a sliver export and was refused: it holds more than weights and names "
                          "(possibly code, which sliver never runs) or is damaged; export the model again with 'sliver export'") from None
    if not isinstance(saved, dict) or "arch" not in saved or "state_dict" not in saved:
        raise ExportError(f"{file} is not a sliver export (needs 'arch' and 'state_dict')")
    try:
        model = build_extracted(saved["arch"])
        model.load_state_dict(saved["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ExportError(f"{file} is not a usable sliver export ({one_line(exc)}); export the model again with 'sliver export'") from None
    return model.eval()


def _card_markdown(card: dict[str, Any]) -> str:
    lines = ["# sliver sub-network", "", "## Metrics (as measured)", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v:.6g} |" for k, v in sorted(card["metrics"].items())]
    lines += ["", "## Config", "", "```json", json.dumps(card["config"]), "```", ""]
    lines += [f"- input shape (batch 1): {card['input_shape']}"]
    if card.get("onnx_dynamic_axes"):
        free = ", ".join(f"{name} (axis {axis})" for axis, name in card["onnx_dynamic_axes"].items())
        lines += [f"- model.onnx takes any {free}"]
    lines += [f"- super-network weights hash: `{card['supernet_hash']}`"]
    for key in ("study", "checkpoint", "rule"):
        if key in card:
            lines.append(f"- {key}: {card[key]}")
    lines += ["", "## Checks", ""]
    lines += [f"- {k}: {v:.3g}" for k, v in card["checks"].items()]
    lines += ["", "## Hardware target", "", "```json", json.dumps(card["fingerprint"], indent=2, default=str), "```", ""]
    return "\n".join(lines)
