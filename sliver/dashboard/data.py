"""What the dashboard shows, as JSON-able dicts: the store's studies, one study in full, one training run.

The numbers come from the same functions as ``sliver report`` and ``sliver results``
(:func:`~sliver.report.study_points`, :func:`~sliver.report.hypervolume_history`,
:func:`~sliver.search.hv.nondominated`), so the dashboard never disagrees with them.
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

from sliver.report import StudyPoints, hypervolume_history, study_points
from sliver.search.hv import nondominated
from sliver.store import ResultStore, Status, Study

#: stands in for the search's YAML in the export command: the store does not know where that file is
SEARCH_YAML = "search.yaml"


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
               hypervolume: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """Everything the study page draws: points, the front of every pair of objectives, hypervolume, trials.

    ``cache`` (a dict the caller keeps) holds the last hypervolume curve per
    study, so a page polling an unchanged study does not recompute it. A caller
    that has the study's ``points`` and ``hypervolume`` history already (the
    report) passes them, so they are not computed twice.
    """
    trials = store.trials(study.id)
    if points is None:
        points = study_points(store, study)
    names = [o.name for o in study.objectives]
    hv = (_curve(*hypervolume, points) if hypervolume is not None
          else _hypervolume_curve(points, study.id, cache))
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
        "points": [
            {
                "seq": points.seqs[i],
                "config": points.configs[i],
                "values": {n: _finite(points.values[i, j]) for j, n in enumerate(names)},
                "feasible": bool(points.feasible[i]),
                "front": bool(points.front[i]),
                "cached": points.cached[i],
                "export": export_command(study.name, points.configs[i]),
            }
            for i in range(len(points.seqs))
        ],
        "pair_fronts": pair_fronts(points),
        "hypervolume": hv,
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


def export_command(study_name: str, config: dict) -> str:
    """The shell command that exports ``config`` of ``study_name`` (with :data:`SEARCH_YAML` for the search's YAML)."""
    pick = json.dumps(config, separators=(",", ":"))
    return shlex.join(["sliver", "export", SEARCH_YAML, "--study", study_name, "--pick", pick])


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


def _hypervolume_curve(points: StudyPoints, study_id: int, cache: dict | None) -> dict[str, list]:
    key = (len(points.seqs), points.seqs[-1] if points.seqs else None, tuple(points.feasible))
    if cache is not None and study_id in cache and cache[study_id][0] == key:
        return cache[study_id][1]
    curve = _curve(*hypervolume_history(points), points)
    if cache is not None:
        cache[study_id] = (key, curve)
    return curve


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
