"""What the dashboard shows, as JSON-able dicts: the store's studies, one study in full, one training run.

The numbers come from the same functions as ``sliver report`` and ``sliver results``
(:func:`~sliver.report.study_points`, :func:`~sliver.report.hypervolume_history`,
:func:`~sliver.report.predictor_quality`, :func:`~sliver.search.hv.nondominated`),
so the dashboard never disagrees with them. What a study records besides its
trials is read from the store too: its constraints and YAML path (the study's
settings, written by the search) and its exports (:meth:`~sliver.store.ResultStore.exports`).
"""

from __future__ import annotations

import itertools
import json
import math
import shlex
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from sliver.core import Constraint
from sliver.report import StudyPoints, hypervolume_history, predictor_quality, study_points
from sliver.search.hv import nondominated
from sliver.store import ResultStore, Status, Study

#: stands in for the search's YAML in the export command of a study that did not record it
#: (one made before studies recorded it, or a search run from Python)
SEARCH_YAML = "path/to/search.yaml"


def find_study(store: ResultStore, name: str) -> Study | None:
    """The study called ``name``, or None (an unknown name is a 404, not an error)."""
    return next((s for s in store.list_studies() if s.name == name), None)


def studies_overview(store: ResultStore) -> list[dict[str, Any]]:
    """One row per study, oldest first: objectives, budget spent, front size, hardware, super-network, last activity."""
    rows = []
    for study in store.list_studies():
        trials = store.trials(study.id)
        points = study_points(store, study)
        rows.append({
            "name": study.name,
            "objectives": [_objective(o) for o in study.objectives],
            "trials": len(trials),
            "failed": sum(1 for t in trials if t.errors),
            "budget": study.settings.get("budget"),
            "front_size": int(points.front.sum()),
            "fingerprint": study.fingerprint,
            "supernet_hash": study.supernet_hash,
            "strategy": study.settings.get("strategy"),
            "last_activity": _iso(max((t.created for t in trials if t.created), default=study.created)),
        })
    return rows


def study_view(store: ResultStore, study: Study, cache: dict | None = None, points: StudyPoints | None = None,
               hypervolume: tuple[np.ndarray, np.ndarray] | None = None,
               quality: list[dict] | None = None) -> dict[str, Any]:
    """Everything the study page draws: points, the front of every pair of objectives, constraints, exported
    picks, hypervolume, predictor quality per round, trials, and each point's export command.

    ``cache`` (a dict the caller keeps) holds the last hypervolume curve and
    predictor quality per study, so a page polling an unchanged study does not
    recompute them. A caller that has the study's ``points``, ``hypervolume``
    history and predictor ``quality`` already (the report) passes them, so
    they are not computed twice.
    """
    trials = store.trials(study.id)
    if points is None:
        points = study_points(store, study)
    names = [o.name for o in study.objectives]
    hv, quality = _history(store, study, points, cache, hypervolume, quality)
    return {
        "name": study.name,
        "objectives": [_objective(o) for o in study.objectives],
        "settings": _jsonable(study.settings),
        "supernet_hash": study.supernet_hash,
        "fingerprint": study.fingerprint,
        "budget": study.settings.get("budget"),
        "trials_count": len(trials),
        "failed_count": sum(1 for t in trials if t.errors),
        "front_size": int(points.front.sum()),
        "last_activity": _iso(max((t.created for t in trials if t.created), default=study.created)),
        "constraints": [{"metric": c.metric, "op": c.op, "bound": c.bound, "text": str(c)}
                        for c in map(Constraint.parse, study.settings.get("constraints", []))],
        "search_yaml": study.settings.get("search_yaml"),
        "export_note": export_note(study),
        "points": [
            {
                "seq": points.seqs[i],
                "config": points.configs[i],
                "values": {n: _finite(points.values[i, j]) for j, n in enumerate(names)},
                "feasible": bool(points.feasible[i]),
                "front": bool(points.front[i]),
                "cached": points.cached[i],
                "export": export_command(study, points.configs[i], points.seqs[i]),
            }
            for i in range(len(points.seqs))
        ],
        "pair_fronts": pair_fronts(points),
        "picks": picks(store, study, points),
        "hypervolume": hv,
        "predictor_quality": _jsonable(quality),
        "trials": [
            {
                "seq": t.seq,
                "status": Status.FAILED if t.errors else Status.OK,
                "values": {n: _finite(t.values.get(n)) for n in names},
                "error": "; ".join(f"{k}: {_first_line(v)}" for k, v in t.errors.items()),
                "cached": t.cached,
                "origin": t.origin,
                "batch": t.batch,
                "created": _iso(t.created),
                "config": t.config,
            }
            for t in trials
        ],
    }


def pair_fronts(points: StudyPoints) -> dict[str, list[int]]:
    """For every pair ``"a,b"`` of objective indices, the indices of the points on that pair's front.

    The front of a pair is taken among the feasible points, as on the report's
    Pareto plots; a point on the study's full front may be dominated in one pair.
    """
    out: dict[str, list[int]] = {}
    idx = np.flatnonzero(points.feasible)
    signs = np.array([o.sign for o in points.objectives])
    for a, b in itertools.permutations(range(len(points.objectives)), 2):
        if len(idx):
            pair = points.values[idx][:, [a, b]] * signs[[a, b]]
            out[f"{a},{b}"] = [int(i) for i in idx[nondominated(pair)]]
        else:
            out[f"{a},{b}"] = []
    return out


def picks(store: ResultStore, study: Study, points: StudyPoints) -> dict[str, int | None]:
    """The study's recorded exports (:meth:`~sliver.store.ResultStore.exports`): label -> index of the exported
    point (None when the export is of a config the study never measured)."""
    index = {study.space.key(c): i for i, c in enumerate(points.configs)}
    return {label: index.get(e.get("key")) for label, e in store.exports(study).items()}


def exportable(study: Study) -> bool:
    """Whether ``sliver export`` can cut models out of this study: a super-network's (or one that does not say)."""
    return study.settings.get("problem", "supernet") == "supernet"


def export_command(study: Study, config: dict, seq: int) -> str | None:
    """The shell command that exports trial ``seq`` (``config``) of ``study``, or None when it has no models.

    It names the search's YAML the study recorded (else :data:`SEARCH_YAML`);
    the pick is the config as JSON, the rule that selects exactly this
    sub-network (see :func:`~sliver.export.pick`); the model goes to
    ``exports/trial-<seq>`` beside the YAML, where ``sliver report`` finds it.
    """
    if not exportable(study):
        return None
    yaml_path = study.settings.get("search_yaml")
    out = Path(yaml_path).parent / "exports" if yaml_path else Path("exports")
    pick = json.dumps(config, separators=(",", ":"))
    return shlex.join(["sliver", "export", yaml_path or SEARCH_YAML, "--study", study.name, "--pick", pick,
                       "--out", str(out / f"trial-{seq}")])


def export_note(study: Study) -> str | None:
    """What the page says above the export command when it cannot be run as shown (None when it can)."""
    if not exportable(study):
        return f"this study's problem ('{study.settings['problem']}') has no models to export"
    if not study.settings.get("search_yaml"):
        return (f"the store does not record this search's YAML (the search predates that, or ran from Python): "
                f"replace {SEARCH_YAML} with it")
    return None


def training_view(run_dir: Path) -> dict[str, Any]:
    """A training run folder as it is now: every record of its ``metrics.jsonl``, and its checkpoints."""
    metrics = run_dir / "metrics.jsonl"
    records = read_metrics(metrics)
    checkpoints = [
        {"name": p.name, "bytes": p.stat().st_size, "modified": _iso(_mtime(p))}
        for p in sorted(run_dir.glob("*.pt"))
    ]
    return {
        "name": run_dir.name,
        "records": records,
        "checkpoints": checkpoints,
        "last_activity": _iso(_mtime(metrics)) if metrics.exists() else None,
    }


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The JSON records of a ``metrics.jsonl``, skipping blank lines and a line the trainer is still writing."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # half-written (the trainer appends while we read) or not ours: not plotted
            continue
        if isinstance(record, dict):
            records.append(_jsonable(record))
    return records


def _curve(evals: np.ndarray, hv: np.ndarray, points: StudyPoints) -> dict[str, list]:
    return {"evaluations": [int(e) for e in evals], "values": [float(h) for h in hv], "seqs": list(points.seqs)}


def _history(store: ResultStore, study: Study, points: StudyPoints, cache: dict | None,
             hypervolume: tuple[np.ndarray, np.ndarray] | None, quality: list[dict] | None) -> tuple[dict, list[dict]]:
    """The hypervolume curve and predictor quality per round: as given, from ``cache`` while the study is unchanged,
    else computed (a new trial changes the key)."""
    key = (len(points.seqs), points.seqs[-1] if points.seqs else None, tuple(points.feasible))
    if hypervolume is None and quality is None and cache is not None and cache.get(study.id, (None,))[0] == key:
        return cache[study.id][1]
    curve = _curve(*(hypervolume if hypervolume is not None else hypervolume_history(points)), points)
    rows = quality if quality is not None else predictor_quality(store, study)
    if cache is not None:
        cache[study.id] = (key, (curve, rows))
    return curve, rows


def _objective(o) -> dict[str, str]:
    return {"name": o.name, "direction": o.direction, "unit": o.unit, "label": o.label}


def _first_line(text: str) -> str:
    return (str(text).strip().splitlines() or [""])[0]


def _finite(value: Any) -> float | None:
    """A number JSON can carry: NaN and infinities (not valid JSON) become None."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _jsonable(obj: Any) -> Any:
    """``obj`` with NaN and infinities replaced by None, at any depth."""
    if isinstance(obj, float):
        return _finite(obj)
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_jsonable(v) for v in obj]
    return obj


def _mtime(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)


def _iso(dt: datetime | None) -> str | None:
    """ISO time in UTC; the store's SQLite rows come back without a zone, but were written in UTC."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.isoformat(timespec="seconds")
