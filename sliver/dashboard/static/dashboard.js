// The dashboard's pages: each polls its JSON endpoint and redraws, so a running search or
// training shows up without a reload. Plotly draws the charts (served by the dashboard itself).
"use strict";

const POLL_MS = Number(document.body.dataset.pollMs) || 2000;
const PLOT_CONFIG = {displaylogo: false, responsive: true};

function esc(text) {
  return String(text).replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
}

function fmt(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toPrecision(5).replace(/\.?0+$/, "");
  return typeof value === "string" ? value : JSON.stringify(value);
}

// whole-number ticks for a count axis (epochs, evaluations): no "2.5 epochs"
function countAxis(title, n) {
  return {title: {text: title}, tick0: 0, dtick: Math.max(1, Math.ceil(n / 10)), rangemode: "tozero"};
}

function localTime(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

// Fetch `url` now and every POLL_MS after the previous answer; a failure shows one line and polling goes on.
function poll(url, draw, statusEl) {
  async function tick() {
    try {
      const response = await fetch(url, {cache: "no-store"});
      const body = await response.json();
      if (!response.ok) throw new Error(body.error || response.statusText);
      draw(body);
      statusEl.classList.remove("error-message");
    } catch (err) {
      statusEl.textContent = "cannot update: " + err.message;
      statusEl.classList.add("error-message");
    }
    setTimeout(tick, POLL_MS);
  }
  tick();
}

async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  // no Clipboard API (a plain-http address other than localhost): the old way, through a selection
  const area = document.createElement("textarea");
  area.value = text;
  document.body.appendChild(area);
  area.select();
  const ok = document.execCommand("copy");
  area.remove();
  if (!ok) throw new Error("the browser refused");
}

// ------------------------------------------------------------------ charts (the study page's and the report's)
function hoverText(p, objectives) {
  const values = objectives.map(o => `${esc(o.label)}: ${esc(fmt(p.values[o.name]))}`);
  const config = Object.entries(p.config).map(([k, v]) => `${esc(k)} = ${esc(JSON.stringify(v))}`);
  const tags = [p.front ? "on the front" : "", p.feasible ? "" : "infeasible"].filter(Boolean).join(", ");
  return [`<b>trial ${p.seq}</b>${tags ? " (" + tags + ")" : ""}`, ...values, "<i>config</i>", ...config].join("<br>");
}

// The violated side of each constraint on objective `o` shown on `axis` ("x" or "y"): a shaded band from the
// bound to a little past the points, so the bound shows even when no point lies beyond it (a search never
// measures what a cheap constraint rules out). A bound farther from the points than their own spread is left
// out: drawing it would squash them into a corner.
function constraintShapes(d, o, axis) {
  const values = d.points.map(p => p.values[o.name]).filter(v => v !== null && v !== undefined);
  if (!values.length) return [];
  const lo = Math.min(...values), hi = Math.max(...values), spread = (hi - lo) || Math.abs(hi) || 1;
  const other = axis === "x" ? "y" : "x";
  return (d.constraints || []).filter(c => c.metric === o.name).flatMap(c => {
    if (c.bound < lo - spread || c.bound > hi + spread) return [];
    const pad = 0.1 * (Math.max(hi, c.bound) - Math.min(lo, c.bound) || spread);
    const [from, to] = c.op === "<=" ? [c.bound, Math.max(hi, c.bound) + pad] : [Math.min(lo, c.bound) - pad, c.bound];
    return [{
      type: "rect", layer: "below", [axis + "ref"]: axis, [axis + "0"]: from, [axis + "1"]: to,
      [other + "ref"]: "paper", [other + "0"]: 0, [other + "1"]: 1,
      fillcolor: "rgba(214, 39, 40, 0.09)", line: {width: 0},
      name: `violates ${c.text}`, showlegend: true, legendgroup: "constraints",
    }];
  });
}

// Objective b against objective a of a study view `d` (data.study_view): every point, the pair's front as a
// staircase, the constraints' violated side shaded, the pinned point ringed; `picks` ({label: point index}:
// the exported configs) ringed and labelled.
function drawParetoChart(el, d, a, b, {pinned = null, picks = {}} = {}) {
  const oa = d.objectives[a], ob = d.objectives[b];
  const pts = d.points;
  const trace = (subset, extra) => ({
    x: subset.map(p => p.values[oa.name]), y: subset.map(p => p.values[ob.name]),
    customdata: subset.map(p => p.seq), text: subset.map(p => hoverText(p, d.objectives)),
    hovertemplate: "%{text}<extra></extra>", mode: "markers", type: "scatter", ...extra,
  });
  const front = (d.pair_fronts[`${a},${b}`] || []).map(i => pts[i]).sort((p, q) => p.values[oa.name] - q.values[oa.name]);
  // a staircase like the report's: horizontal first when both objectives point the same way
  const shape = (oa.direction === ob.direction) ? "hv" : "vh";
  const traces = [
    trace(pts.filter(p => p.feasible), {name: "measured", marker: {color: "#8fa8c8", size: 7}}),
    trace(pts.filter(p => !p.feasible), {name: "infeasible", marker: {color: "#aaaaaa", symbol: "x", size: 7}}),
    trace(front, {name: "Pareto front", mode: "lines+markers", line: {color: "#d62728", shape, width: 1.5},
                  marker: {color: "#d62728", size: 9}}),
  ];
  const ring = color => ({color: "rgba(0,0,0,0)", size: 18, line: {color, width: 2}});
  traces.push(trace(pts.filter(p => p.seq === pinned), {name: "pinned", marker: ring("#000")}));
  // picks that chose the same network share one ring and one label, as on the report's images
  const labels = {};
  for (const [label, i] of Object.entries(picks)) {
    if (i !== null && i !== undefined) labels[i] = labels[i] ? `${labels[i]} = ${label}` : label;
  }
  const picked = Object.keys(labels).map(Number);
  if (picked.length) {
    const t = trace(picked.map(i => pts[i]), {name: "exported", mode: "markers+text", marker: ring("#000"),
                                              textposition: "top center"});
    t.text = picked.map(i => hoverText(pts[i], d.objectives));
    t.texttemplate = picked.map(i => esc(labels[i]));
    traces.push(t);
  }
  const layout = {
    title: {text: `${esc(ob.name)} vs ${esc(oa.name)} (${pts.length} sub-networks)`},
    xaxis: {title: {text: esc(oa.label)}}, yaxis: {title: {text: esc(ob.label)}},
    hovermode: "closest", uirevision: `${a},${b}`, margin: {t: 50, r: 20}, legend: {orientation: "h", y: -0.2},
    hoverlabel: {align: "left"}, shapes: [...constraintShapes(d, oa, "x"), ...constraintShapes(d, ob, "y")],
  };
  Plotly.react(el, traces, layout, PLOT_CONFIG);
}

// Kendall τ, per search round, of each objective's predictor on the batch that followed
// (`rows`: data.study_view's "predictor_quality", from report.predictor_quality).
function drawPredictorQuality(el, rows) {
  const names = [...new Set(rows.flatMap(r => Object.keys(r.kendall_tau)))].sort();
  const traces = names.map(name => {
    const scored = rows.filter(r => r.kendall_tau[name] !== undefined);
    return {
      x: scored.map(r => r.evaluations), y: scored.map(r => r.kendall_tau[name]), name, type: "scatter",
      mode: "lines+markers", hovertemplate: `${esc(name)}: τ %{y:.3f}, fitted on %{x} evaluations<extra></extra>`,
    };
  });
  Plotly.react(el, traces, {
    title: {text: "predictor rank quality per round"},
    xaxis: {title: {text: "evaluations the predictor was fitted on"}, rangemode: "tozero"},
    yaxis: {title: {text: "Kendall τ on the next batch"}, range: [-1.05, 1.05]},
    margin: {t: 50, r: 20}, uirevision: "quality", legend: {orientation: "h", y: -0.25}, showlegend: true,
  }, PLOT_CONFIG);
}

// The normalised hypervolume after each evaluation (`hv`: data.study_view's "hypervolume").
function drawHypervolume(el, hv) {
  Plotly.react(el, [{
    x: hv.evaluations, y: hv.values, customdata: hv.seqs,
    mode: hv.values.length <= 30 ? "lines+markers" : "lines", type: "scatter",
    hovertemplate: "after %{x} evaluations (trial %{customdata}): %{y:.4f}<extra></extra>",
  }], {
    title: {text: "normalised hypervolume over the search"},
    xaxis: countAxis("evaluations (unique sub-networks)", hv.evaluations.length),
    yaxis: {title: {text: "hypervolume (objectives scaled to [0, 1], ref 1.1)"}, rangemode: "tozero"},
    margin: {t: 50, r: 20}, uirevision: "hv",
  }, PLOT_CONFIG);
}

// ------------------------------------------------------------------ report (sliver report's HTML file)
// The report embeds its study view as JSON and this file inline: no polling, one chart per pair of objectives.
function sliverReportPage(d) {
  const box = document.getElementById("interactive-pareto");
  d.objectives.forEach((_, a) => d.objectives.slice(a + 1).forEach((_, k) => {
    const el = document.createElement("div");
    el.className = "chart";
    box.appendChild(el);
    drawParetoChart(el, d, a, a + 1 + k, {picks: d.picks || {}});
  }));
  drawHypervolume("interactive-hypervolume", d.hypervolume);
  // the charts are drawn: hide the static images on screen (they stay for print, see the report's CSS)
  document.documentElement.classList.add("interactive");
}

// ------------------------------------------------------------------ study page
function sliverStudyPage(name) {
  const state = {data: null, x: 0, y: 1, pinned: null, sortKey: "seq", sortAsc: true};
  const xSelect = document.getElementById("x-objective");
  const ySelect = document.getElementById("y-objective");
  const pareto = document.getElementById("pareto");
  const filter = document.getElementById("trial-filter");
  let clickBound = false;

  function drawSummary(d) {
    const hv = d.hypervolume.values.length ? d.hypervolume.values[d.hypervolume.values.length - 1] : 0;
    const spent = d.budget ? `${d.trials_count} of ${d.budget} evaluations` : `${d.trials_count} evaluations`;
    document.getElementById("summary").textContent =
      `${spent}, ${d.failed_count} failed · Pareto front ${d.front_size} · normalised hypervolume ${hv.toFixed(4)}` +
      ` · objectives ${d.objectives.map(o => `${o.name} (${o.direction})`).join(", ")}` +
      ` · super-network ${d.supernet_hash} · hardware ${d.fingerprint} · last activity ${localTime(d.last_activity)}`;
  }

  function fillSelects(objectives) {
    if (xSelect.options.length) return;
    for (const select of [xSelect, ySelect]) {
      objectives.forEach((o, i) => select.add(new Option(o.label, String(i))));
    }
    state.y = Math.min(1, objectives.length - 1);
    xSelect.value = String(state.x);
    ySelect.value = String(state.y);
    xSelect.onchange = ySelect.onchange = () => {
      state.x = Number(xSelect.value);
      state.y = Number(ySelect.value);
      drawPareto(state.data);
    };
  }

  function drawPareto(d) {
    drawParetoChart(pareto, d, state.x, state.y, {pinned: state.pinned, picks: d.picks});
    if (!clickBound) {
      pareto.on("plotly_click", ev => { if (ev.points.length) pin(ev.points[0].customdata); });
      clickBound = true;
    }
  }

  function pin(seq) {
    state.pinned = seq;
    drawPareto(state.data);
    drawPinned(state.data);
  }

  function drawPinned(d) {
    const p = d.points.find(q => q.seq === state.pinned);
    const box = document.getElementById("pinned");
    box.hidden = !p;
    if (!p) return;
    document.getElementById("pinned-seq").textContent = String(p.seq);
    document.getElementById("pinned-values").innerHTML = d.objectives
      .map(o => `<tr><th>${esc(o.label)}</th><td>${esc(fmt(p.values[o.name]))}</td></tr>`).join("");
    document.getElementById("pinned-config").textContent =
      Object.entries(p.config).map(([k, v]) => `${k} = ${JSON.stringify(v)}`).join("\n");
    const exported = Object.entries(d.picks).filter(([, i]) => i !== null && d.points[i] === p).map(([label]) => label);
    document.getElementById("pinned-exported").textContent = exported.length ? `exported as ${exported.join(", ")}` : "";
    document.getElementById("export-note").textContent = d.export_note || "";
    document.getElementById("export-box").hidden = !p.export;
    document.getElementById("export-command").textContent = p.export || "";
  }

  document.getElementById("copy-export").onclick = async () => {
    const stateEl = document.getElementById("copy-state");
    try {
      await copyText(document.getElementById("export-command").textContent);
      stateEl.textContent = "copied";
    } catch (err) {
      stateEl.textContent = "copy failed (" + err.message + "): select the command and copy it";
    }
  };

  function trialColumns(d) {
    return [
      {key: "seq", label: "#", get: t => t.seq},
      {key: "status", label: "status", get: t => t.status},
      ...d.objectives.map(o => ({key: "v:" + o.name, label: o.label, get: t => t.values[o.name]})),
      {key: "origin", label: "origin", get: t => t.origin},
      {key: "batch", label: "batch", get: t => t.batch},
      {key: "cached", label: "cached", get: t => (t.cached ? "yes" : "")},
      {key: "created", label: "time", get: t => t.created},
      {key: "error", label: "error", get: t => t.error},
      {key: "config", label: "config", get: t => JSON.stringify(t.config)},
    ];
  }

  function drawTrials(d) {
    const columns = trialColumns(d);
    const head = document.querySelector("#trials thead");
    head.innerHTML = "<tr>" + columns.map(c => {
      const arrow = c.key === state.sortKey ? (state.sortAsc ? " ▲" : " ▼") : "";
      return `<th data-key="${esc(c.key)}">${esc(c.label)}${arrow}</th>`;
    }).join("") + "</tr>";
    head.querySelectorAll("th").forEach(th => th.onclick = () => {
      state.sortAsc = th.dataset.key === state.sortKey ? !state.sortAsc : true;
      state.sortKey = th.dataset.key;
      drawTrials(state.data);
    });
    const sortCol = columns.find(c => c.key === state.sortKey) || columns[0];
    const needle = filter.value.trim().toLowerCase();
    const rows = d.trials
      .map(t => ({t, cells: columns.map(c => c.get(t))}))
      .filter(r => !needle || r.cells.some(v => fmt(v).toLowerCase().includes(needle)));
    const order = state.sortAsc ? 1 : -1;
    rows.sort((r, s) => {
      const u = sortCol.get(r.t), v = sortCol.get(s.t);
      if (u === null || u === undefined || u === "") return 1;  // blanks last either way
      if (v === null || v === undefined || v === "") return -1;
      return (typeof u === "number" && typeof v === "number" ? u - v : String(u).localeCompare(String(v))) * order;
    });
    document.querySelector("#trials tbody").innerHTML = rows.map(r =>
      `<tr class="${r.t.status}">` + r.cells.map((v, i) => {
        const cls = columns[i].key === "config" ? ' class="config"' : "";
        const text = columns[i].key === "created" ? localTime(v) : fmt(v);
        return `<td${cls}>${esc(text)}</td>`;
      }).join("") + "</tr>").join("");
    document.getElementById("trial-count").textContent = `${rows.length} of ${d.trials.length} trials`;
  }
  filter.oninput = () => state.data && drawTrials(state.data);

  poll(`/api/study/${encodeURIComponent(name)}`, d => {
    state.data = d;
    fillSelects(d.objectives);
    drawSummary(d);
    drawPareto(d);
    drawPinned(d);
    drawHypervolume("hypervolume", d.hypervolume);
    drawPredictorQuality("quality", d.predictor_quality);
    document.getElementById("quality-note").textContent = d.predictor_quality.length ? "" :
      "no round scored yet: a batch is scored once enough evaluations precede it and it holds three or more";
    drawTrials(d);
  }, document.getElementById("summary"));
}

// ------------------------------------------------------------------ training page
const SIZE_NAMES = {max: "largest", mid: "middle", min: "smallest"};

function sliverTrainingPage(name) {
  function line(records, key, label) {
    return {
      x: records.map((r, i) => r.epoch ?? i + 1), y: records.map(r => r[key]), name: label,
      mode: records.length <= 30 ? "lines+markers" : "lines", type: "scatter",
    };
  }
  function chart(id, traces, title, ytitle) {
    const epochs = Math.max(0, ...traces.map(t => t.x.length));
    Plotly.react(id, traces, {
      title: {text: title}, xaxis: countAxis("epoch", epochs), yaxis: {title: {text: ytitle}},
      margin: {t: 50, r: 20}, uirevision: id, legend: {orientation: "h", y: -0.25},
    }, PLOT_CONFIG);
  }

  poll(`/api/training/${encodeURIComponent(name)}`, d => {
    const records = d.records;
    // a classifier's run records accuracy (acc_*), a language model's perplexity (ppl_*)
    const lm = records.some(r => Object.keys(r).some(k => k.startsWith("ppl_")));
    const prefix = lm ? "ppl_" : "acc_";
    const keys = [...new Set(records.flatMap(r => Object.keys(r).filter(k => k.startsWith(prefix))))];
    chart("loss", [line(records, "loss", "loss")], "training loss", "loss");
    chart("accuracy", keys.map(k => line(records, k, SIZE_NAMES[k.slice(4)] || k)),
          `validation ${lm ? "perplexity" : "accuracy"} of the largest / middle / smallest sub-networks` +
            (keys.some(k => k.includes("_fixed")) ? " and of those the fixed rule trains" : ""),
          lm ? "perplexity" : "accuracy (%)");
    chart("lr", [line(records, "lr", "learning rate")], "learning rate", "lr");
    const last = records[records.length - 1];
    document.getElementById("summary").textContent = last
      ? `${records.length} epochs recorded; last: ` +
        Object.entries(last).filter(([, v]) => typeof v !== "object").map(([k, v]) => `${k} ${fmt(v)}`).join(", ") +
        ` · written ${localTime(d.last_activity)}`
      : "no epoch finished yet (metrics.jsonl is empty or missing)";
    document.querySelector("#checkpoints tbody").innerHTML = d.checkpoints.map(c =>
      `<tr><td>${esc(c.name)}</td><td>${esc(c.bytes.toLocaleString())}</td><td>${esc(localTime(c.modified))}</td></tr>`
    ).join("") || '<tr><td colspan="3">no checkpoint yet</td></tr>';
  }, document.getElementById("summary"));
}
