"""A study as pictures: Pareto plots, hypervolume over evaluations, the front table, one HTML file.

:func:`write_report` reads a study from the :class:`~sliver.store.ResultStore`
and writes PNGs plus a single self-contained ``report.html``, so it can be
mailed or opened anywhere: the dashboard's interactive charts (plotly.js and the
dashboard's JS inlined, the study as embedded JSON), and the PNGs as data URIs,
shown when printed or when scripts do not run.
"""

from __future__ import annotations

import base64
import html
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sliver.core import Constraint, Objective
from sliver.errors import UserError
from sliver.search.hv import NORMALISED_REFERENCE, nondominated, normalised_hypervolume


@dataclass
class StudyPoints:
    """The measured points of a study as arrays, in evaluation order."""

    objectives: list[Objective]
    values: np.ndarray  # (n, m) raw values, evaluation order
    feasible: np.ndarray  # (n,) bool
    front: np.ndarray  # (n,) bool: on the Pareto front of the feasible points
    configs: list[dict]
    seqs: list[int]
    cached: list[bool]

    def minimised(self) -> np.ndarray:
        return self.values * np.array([o.sign for o in self.objectives])


def study_points(store: Any, study: Any) -> StudyPoints:
    """Collect the study's successful trials, their feasibility and the measured front."""
    objectives = list(study.objectives)
    constraints = [Constraint.parse(c) for c in study.settings.get("constraints", [])]
    rows = [t for t in store.trials(study.id) if all(o.name in t.values for o in objectives)]
    values = np.array([[t.values[o.name] for o in objectives] for t in rows], dtype=float).reshape(-1, len(objectives))
    feasible = np.array(
        [all(c.metric not in t.values or c.ok(t.values[c.metric]) for c in constraints) for t in rows], dtype=bool
    )
    front = np.zeros(len(rows), dtype=bool)
    if feasible.any():
        signs = np.array([o.sign for o in objectives])
        idx = np.flatnonzero(feasible)
        front[idx[nondominated(values[idx] * signs)]] = True
    return StudyPoints(objectives, values, feasible, front, [t.config for t in rows], [t.seq for t in rows], [t.cached for t in rows])


def hypervolume_history(points: StudyPoints) -> tuple[np.ndarray, np.ndarray]:
    """The study's normalised hypervolume (:func:`~sliver.search.hv.normalised_hypervolume`) after each evaluation.

    Every prefix is scaled by the min and max over all the study's points, so
    the last value is the study's normalised hypervolume, the one the CLI prints.
    """
    F = points.minimised()
    if len(F) == 0:
        return np.zeros(0), np.zeros(0)
    hv = np.array([normalised_hypervolume(F[: i + 1], points.feasible[: i + 1], scale=F) for i in range(len(F))])
    return np.arange(1, len(F) + 1), hv


def study_hypervolume(points: StudyPoints) -> float:
    """The study's normalised hypervolume over all its feasible points (what the report's header shows)."""
    return normalised_hypervolume(points.minimised(), points.feasible)


def predictor_quality(store: Any, study: Any, min_points: int = 8, kind: str = "ridge") -> list[dict]:
    """How well predictors fitted on the evaluations so far ranked the *next* batch, over the search.

    For each batch after the first ``min_points`` evaluations, a ``kind``
    predictor per expensive objective is fitted on every earlier evaluation and
    scored by Kendall τ on the batch that followed — the prospective rank
    quality a predictor-driven strategy had (or would have had) at that point.
    """
    from sliver.predict.models import Predictor, kendall_tau

    trials = [t for t in store.trials(study.id) if not t.errors]
    expensive = [o.name for o in study.objectives if o.cost == "expensive"]
    batches = sorted({t.batch for t in trials})
    rows = []
    for b in batches:
        past = [t for t in trials if t.batch < b]
        nxt = [t for t in trials if t.batch == b]
        if len(past) < min_points or len(nxt) < 3:
            continue
        X_past = study.space.features([t.config for t in past])
        X_next = study.space.features([t.config for t in nxt])
        taus = {}
        for name in expensive:
            y_past = np.array([t.values[name] for t in past if name in t.values])
            if len(y_past) != len(past) or any(name not in t.values for t in nxt) or np.ptp(y_past) == 0:
                continue
            pred = Predictor(kind, seed=0).fit(X_past, y_past).predict(X_next)
            taus[name] = kendall_tau(pred, np.array([t.values[name] for t in nxt]))
        if taus:
            rows.append({"evaluations": len(past), "kendall_tau": taus})
    return rows


def write_report(
    store: Any,
    study_name: str,
    out_dir: str | Path,
    picks: dict[str, dict] | None = None,
    history: Sequence[dict] | None = None,
    fingerprint: dict | None = None,
) -> Path:
    """Write PNGs and ``report.html`` for a study; returns the HTML path.

    ``picks`` maps a label (e.g. "most accurate under 2 ms") to an exported
    config, labelled on the plots. ``history`` is the predictor quality over
    the search (one dict per batch with ``evaluations`` and ``kendall_tau`` per
    objective; computed by :func:`predictor_quality` when not given);
    ``fingerprint`` the hardware target's description.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    study = store.get_study(study_name)
    points = study_points(store, study)
    if len(points.values) == 0:
        raise UserError(f"study '{study_name}' has no successful evaluation to report")
    keys = {json.dumps(c, sort_keys=True): i for i, c in enumerate(points.configs)}
    pick_idx = {label: keys.get(json.dumps(c, sort_keys=True)) for label, c in (picks or {}).items()}

    images: list[tuple[str, Path]] = []
    for a, b in itertools.combinations(range(len(points.objectives)), 2):
        path = out / f"pareto_{points.objectives[a].name}_vs_{points.objectives[b].name}.png"
        _save(pareto_figure(points, a, b, pick_idx), path)
        images.append((f"{points.objectives[b].name} vs {points.objectives[a].name}", path))
    evals, hv = hypervolume_history(points)
    _save(hypervolume_figure(evals, hv), out / "hypervolume.png")
    images.append(("normalised hypervolume over evaluations", out / "hypervolume.png"))
    if history is None:
        history = predictor_quality(store, study)
    tau_rows = [h for h in history if h.get("kendall_tau")]
    quality_images = []  # no interactive twin: shown as an image on screen too
    if len(tau_rows) >= MIN_QUALITY_ROUNDS:
        _save(predictor_figure(tau_rows), out / "predictor_quality.png")
        quality_images.append(("predictor quality over the search", out / "predictor_quality.png"))

    html_path = out / "report.html"
    html_path.write_text(_html(study, points, images, quality_images, pick_idx, study_hypervolume(points), fingerprint, tau_rows,
                               _interactive(store, study, pick_idx, points, (evals, hv), tau_rows)))
    return html_path


#: fewer scored batches than this show no trend, so the report lists them instead of plotting a line
MIN_QUALITY_ROUNDS = 3


def _figure(width: float, height: float):
    """A matplotlib figure on the Agg canvas (no pyplot: nothing global, nothing to close)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def pareto_figure(points: StudyPoints, a: int, b: int, picks: dict[str, int | None]):
    """Objective ``b`` against ``a``: every measured point, the pair's front as a staircase, picks ringed and labelled."""
    oa, ob = points.objectives[a], points.objectives[b]
    V = points.values
    fig = _figure(6.4, 4.4)
    ax = fig.subplots()
    infeasible = ~points.feasible
    ax.scatter(V[points.feasible, a], V[points.feasible, b], s=18, c="#8fa8c8", label="measured (feasible)")
    if infeasible.any():
        ax.scatter(V[infeasible, a], V[infeasible, b], s=18, c="#bbbbbb", marker="x", label="measured (infeasible)")
    # the front of this pair of objectives among feasible points, drawn as a staircase
    idx = np.flatnonzero(points.feasible)
    if len(idx):
        pair = V[idx][:, [a, b]] * np.array([oa.sign, ob.sign])
        f = idx[nondominated(pair)]
        f = f[np.argsort(V[f, a])]
        ax.step(V[f, a], V[f, b], where="post" if (oa.sign > 0) == (ob.sign > 0) else "pre", c="#d62728", lw=1.2)
        ax.scatter(V[f, a], V[f, b], s=34, c="#d62728", label="Pareto front", zorder=3)
    labels: dict[int, list[str]] = {}
    for label, i in picks.items():
        if i is not None:
            labels.setdefault(i, []).append(label)
    ax.autoscale_view()  # final limits, so the labels below can be placed towards the inside
    to_axes = ax.transData + ax.transAxes.inverted()
    for i, names in labels.items():  # picks that chose the same network share one ring and one label
        ax.scatter([V[i, a]], [V[i, b]], s=120, facecolors="none", edgecolors="k", lw=1.5, zorder=4)
        # the label goes towards the plot's centre, so it never runs past the frame
        fx, fy = to_axes.transform((V[i, a], V[i, b]))
        right, below = fx > 0.5, fy > 0.5
        ax.annotate(" = ".join(names), (V[i, a], V[i, b]), textcoords="offset points",
                    xytext=(-8 if right else 8, -8 if below else 8), ha="right" if right else "left",
                    va="top" if below else "bottom", fontsize=8)
    ax.set(xlabel=oa.label, ylabel=ob.label, title=f"{ob.name} vs {oa.name} ({len(V)} sub-networks)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def hypervolume_figure(evals: np.ndarray, hv: np.ndarray):
    """The normalised hypervolume after each evaluation (see :func:`hypervolume_history`)."""
    from matplotlib.ticker import MaxNLocator

    fig = _figure(6, 3.6)
    ax = fig.subplots()
    ax.plot(evals, hv, c="#1f77b4", marker="o" if len(evals) <= 30 else None, ms=3)
    ax.set(xlabel="evaluations (unique sub-networks)", ylabel=f"hypervolume (ref {NORMALISED_REFERENCE})",
           title="normalised hypervolume over the search")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # evaluations are counts
    ax.grid(alpha=0.3)
    return fig


def predictor_figure(rows: Sequence[dict]):
    """Kendall τ of each objective's predictor on the next batch, per scored batch (see :func:`predictor_quality`)."""
    fig = _figure(6, 3.6)
    ax = fig.subplots()
    for name in sorted({k for h in rows for k in h["kendall_tau"]}):
        xs = [h["evaluations"] for h in rows if name in h["kendall_tau"]]
        ys = [h["kendall_tau"][name] for h in rows if name in h["kendall_tau"]]
        ax.plot(xs, ys, marker="o", label=name)
    ax.set(xlabel="evaluations the predictor was fitted on", ylabel="Kendall τ on the next batch", ylim=(-1.05, 1.05),
           title="predictor quality over the search")
    ax.legend()
    ax.grid(alpha=0.3)
    return fig


def _interactive(store: Any, study: Any, picks: dict[str, int | None], points: StudyPoints,
                 hypervolume: tuple[np.ndarray, np.ndarray], quality: list[dict]) -> str:
    """The dashboard's study charts for the report: plotly.js, the dashboard's JS and the study view, inline.

    The data is the dashboard's own (:func:`~sliver.dashboard.data.study_view`)
    and the drawing its JS, so the report and the dashboard show the same charts.
    """
    from sliver.dashboard import data  # imports this module: imported here, not at the top
    from sliver.dashboard.assets import STATIC, plotly_js

    # the report's own picks (what its images and front table label) replace the store's recorded exports
    view = {**data.study_view(store, study, points=points, hypervolume=hypervolume, quality=quality), "picks": picks}
    # "<" as \\u003c (still JSON, as Jinja's tojson does): no config text can end the script element
    view_json = json.dumps(view, allow_nan=False).replace("<", "\\u003c")
    scripts = [_script_text(plotly_js().read_text(encoding="utf-8")),
               _script_text((STATIC / "dashboard.js").read_text(encoding="utf-8")),
               f"sliverReportPage({view_json});"]
    return "".join(f"<script>{text}</script>\n" for text in scripts)


def _script_text(text: str) -> str:
    """JS ``text`` safe inside ``<script>``: a ``</script`` or ``<!--`` in it would end the element early.

    ``<\\/`` and ``<\\!`` mean the same in a JS string (plotly.js has them in strings only).
    """
    return re.sub(r"<(/script|!--)", r"<\\\1", text, flags=re.IGNORECASE)


def _config_text(config: dict) -> str:
    """A config as ``name=value`` pairs, lists without spaces: short enough to wrap in a table cell."""
    return "  ".join(f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in config.items())


def _html(study, points: StudyPoints, images, quality_images, picks, hv: float, fingerprint, tau_rows: Sequence[dict],
          scripts: str) -> str:
    esc = html.escape
    names = [o.label for o in points.objectives]
    front = np.flatnonzero(points.front)
    front = front[np.argsort(points.values[front, 0])]
    pick_of: dict[int, str] = {}
    for label, i in picks.items():
        if i is not None:
            pick_of[i] = f"{pick_of[i]}, {label}" if i in pick_of else label
    rows = "".join(
        "<tr>" + f"<td>{points.seqs[i]}</td>" + "".join(f"<td>{points.values[i, j]:.4g}</td>" for j in range(len(names)))
        + f"<td>{esc(pick_of.get(i, ''))}</td><td class=\"config\">{esc(_config_text(points.configs[i]))}</td></tr>"
        for i in front
    )
    def figure(title: str, path: Path) -> str:
        data_uri = f"data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}"
        return f'<figure><img alt="{esc(title)}" src="{data_uri}"><figcaption>{esc(title)}</figcaption></figure>'

    figures = "".join(figure(title, p) for title, p in images)
    quality = "".join(figure(title, p) for title, p in quality_images)
    if not tau_rows:
        tau_note = "<p>Too few evaluations to score predictors over the search.</p>"
    elif len(tau_rows) < MIN_QUALITY_ROUNDS:
        scored = "; ".join(
            f"after {h['evaluations']} evaluations: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(h["kendall_tau"].items()))
            for h in tau_rows
        )
        tau_note = (f"<p>Predictor quality (Kendall τ on the next batch): too few search rounds to plot a trend "
                    f"({len(tau_rows)} scored); {esc(scored)}.</p>")
    else:
        tau_note = ""
    fp = esc(json.dumps(fingerprint or {"fingerprint hash": study.fingerprint}, indent=2, default=str))
    constraints = ", ".join(study.settings.get("constraints", [])) or "none"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sliver report: {esc(study.name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
figure {{ display: inline-block; margin: 0.5em; }} img {{ max-width: 520px; border: 1px solid #ddd; }}
.chart {{ height: 460px; }} .chart.small {{ height: 360px; }}
/* the interactive charts replace the images once drawn; printed, the images stand in for them */
.static-figures {{ display: block; }} .interactive-figures {{ display: none; }}
html.interactive .static-figures {{ display: none; }} html.interactive .interactive-figures {{ display: block; }}
@media print {{ html.interactive .static-figures {{ display: block; }} html.interactive .interactive-figures {{ display: none; }} }}
table {{ border-collapse: collapse; font-size: 0.9em; }} td, th {{ border: 1px solid #ccc; padding: 3px 6px; }}
.summary td:first-child {{ font-weight: bold; }}
td.config {{ font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 1em; max-width: 40em; overflow-wrap: anywhere; }}
</style></head><body>
<h1>sliver report: {esc(study.name)}</h1>
<table class="summary">
<tr><td>sub-networks measured</td><td>{len(points.values)} ({sum(points.feasible)} feasible)</td></tr>
<tr><td>Pareto front</td><td>{len(front)} sub-networks</td></tr>
<tr><td>objectives</td><td>{esc(", ".join(f"{o.name} ({o.direction})" for o in points.objectives))}</td></tr>
<tr><td>constraints</td><td>{esc(constraints)}</td></tr>
<tr><td>normalised hypervolume</td><td>{hv:.4f} (feasible points, objectives scaled to [0, 1] over this study, reference {NORMALISED_REFERENCE})</td></tr>
<tr><td>super-network</td><td><code>{esc(study.supernet_hash)}</code></td></tr>
</table>
<h2>Trade-offs</h2>
<div class="interactive-figures"><p>Hover a point for its config and values.</p>
<div id="interactive-pareto"></div><div id="interactive-hypervolume" class="chart small"></div></div>
<div class="static-figures">{figures}</div>{quality}{tau_note}
<h2>Pareto front</h2>
<table><tr><th>#</th>{"".join(f"<th>{esc(n)}</th>" for n in names)}<th>exported as</th><th>config</th></tr>{rows}</table>
<h2>Hardware target</h2><pre>{fp}</pre>
{scripts}</body></html>
"""
