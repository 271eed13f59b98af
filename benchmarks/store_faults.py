"""Exactly once under kills and concurrent searches (issue #22), on a cheap synthetic evaluator.

Part 1: a seeded search (budget ``--budget``) is started ``--kills`` times and
killed with SIGKILL at a random moment each time (0.5 to 3 s after start, so
kills land while it imports, opens the store, measures or writes), then run
to the end. From the store: measured configs, real trials and the budget must
be equal, no measurement without its trial (lost), no config paid for by two
trials (paid twice). A measurement the kill cut short before its trial was
written is lost work, not a stored result; the log of every measurement shows
how many there were ("re-measured after a kill").

Part 2: 4 searches at once on one store, all with one seed so they propose the
same configs: two share a study (budget 100 between them), two have a study
each (budget 50): 200 evaluations in all. Duplicate measurements (the log),
lost trials, real trials beyond the budgets, tracebacks on stderr, and whether
each search's printed front is its study's front in the store.

    python benchmarks/store_faults.py [--kills 20] [--budget 24]          # SQLite: results/store_faults.json
    SLIVER_TEST_POSTGRES_URL=$(bash .ci/postgres start) python benchmarks/store_faults.py
                                                    # PostgreSQL: results/store_faults_postgresql.json

Both parts run on a fresh SQLite file, or on the store at ``--url`` (default
``$SLIVER_TEST_POSTGRES_URL``), e.g. a PostgreSQL server; its password is
never printed or recorded. Each run uses a fresh super-network hash, so a
shared store's earlier results are never cache hits. The evaluator sleeps
``--delay`` seconds per measurement (a stand-in for a real one) and needs no data.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's sliver, not an installed one
from _common import REPO, write_result  # noqa: E402

OBJECTIVES = ["accuracy", "latency_ms"]


class SyntheticEvaluator:
    """accuracy and latency_ms of a 20 x 20 grid with a trade-off; logs each measured key to ``log``."""

    def __init__(self, supernet_hash: str, log: str, delay: float) -> None:
        from sliver.core import BUILTIN
        from sliver.space import Dimension, SearchSpace

        self.space = SearchSpace([Dimension("a", tuple(range(20))), Dimension("b", tuple(range(20)))])
        self.objectives = [BUILTIN["accuracy"], BUILTIN["latency_ms"]]
        self.supernet_hash, self.fingerprint = supernet_hash, "synthetic"
        self.log, self.delay = log, delay

    def fingerprint_for(self, objective: str) -> str:
        return self.fingerprint if objective == "latency_ms" else "any"

    def measure(self, config, objectives):
        time.sleep(self.delay)
        a, b = config["a"], config["b"]
        out = {"accuracy": 50 + 20 * np.log1p(a + 0.5 * b) + 0.1 * ((a * 7 + b * 3) % 5),
               "latency_ms": 1.0 + 0.3 * a + 0.2 * b + 0.05 * ((a * 3 + b) % 4)}
        with open(self.log, "a") as f:  # O_APPEND: one line per measurement, whichever process wrote it
            f.write(self.space.key(config) + "\n")
        return {n: float(out[n]) for n in objectives}


def child(url: str, study: str, budget: int, supernet: str, log: str, delay: float) -> None:
    """One search; prints its front's config keys as JSON on the last line."""
    from sliver.search import Search
    from sliver.store import ResultStore

    ev = SyntheticEvaluator(supernet, log, delay)
    with ResultStore(url) as store:
        result = Search(ev.space, ev, OBJECTIVES, "random", budget=budget, seed=0, store=store, study_name=study).run()
    print(json.dumps(sorted(p.key for p in result.front)))


def spawn(url: str, study: str, budget: int, supernet: str, log: Path, delay: float, err) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, __file__, "--child", url, study, str(budget), supernet, str(log), str(delay)],
        stdout=subprocess.PIPE, stderr=err, text=True, cwd=REPO,
    )


def audit(url: str, studies: list[str], supernet: str, log: Path) -> dict:
    """What the store and the measurement log say about ``studies`` of ``supernet``."""
    from sqlalchemy import text

    from sliver.search.hv import nondominated
    from sliver.store import ResultStore

    with ResultStore(url) as store:
        with store.engine.connect() as c:
            measured = {r[0] for r in c.execute(
                text("SELECT DISTINCT config_key FROM measurements WHERE supernet_hash = :h"), {"h": supernet})}
        real, fronts = [], {}
        for name in studies:
            trials = store.trials(store.get_study(name).id)
            real += [t.config_key for t in trials if t.origin == "search" and not t.cached]
            ok = [t for t in trials if not t.errors]
            F = np.array([[-t.values["accuracy"], t.values["latency_ms"]] for t in ok])
            fronts[name] = sorted(t.config_key for t, keep in zip(ok, nondominated(F)) if keep)
    logged = log.read_text().split() if log.exists() else []
    return {
        "measured_configs": len(measured), "real_trials": len(real),
        "lost": len(measured - set(real)), "paid_twice": len(real) - len(set(real)),
        "measurements_logged": len(logged), "measured_twice": len(logged) - len(set(logged)), "fronts": fronts,
    }


def kills(url: str, n: int, budget: int, delay: float, tmp: Path, rng: random.Random) -> dict:
    supernet, log = f"synthetic-{uuid.uuid4().hex[:8]}", tmp / "kills.log"
    study = f"kills-{supernet}"
    killed = 0
    with open(tmp / "kills.err", "w") as err:
        for _ in range(n):
            p = spawn(url, study, budget, supernet, log, delay, err)
            try:
                p.wait(rng.uniform(0.5, 3.0))
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGKILL)
                killed += 1
            p.wait()
        p = spawn(url, study, budget, supernet, log, delay, err)
        p.communicate()
    a = audit(url, [study], supernet, log)
    a.update(kills=killed, budget=budget, final_rc=p.returncode,
             met=a["measured_configs"] == a["real_trials"] == budget and a["lost"] == a["paid_twice"] == 0 and p.returncode == 0)
    a.pop("fronts")
    return a


def concurrent(url: str, delay: float, tmp: Path, tag: str) -> dict:
    supernet, log = f"synthetic-{uuid.uuid4().hex[:8]}", tmp / f"concurrent-{tag}.log"
    runs = [(f"shared-{supernet}", 100), (f"shared-{supernet}", 100), (f"own1-{supernet}", 50), (f"own2-{supernet}", 50)]
    errs = [tmp / f"concurrent-{tag}-{i}.err" for i in range(len(runs))]
    t0 = time.perf_counter()
    procs = [spawn(url, s, b, supernet, log, delay, open(e, "w")) for (s, b), e in zip(runs, errs)]
    outs = [p.communicate()[0] for p in procs]
    wall = time.perf_counter() - t0
    a = audit(url, sorted({s for s, _ in runs}), supernet, log)
    printed = [json.loads(o.strip().splitlines()[-1]) if o.strip() else None for o in outs]
    equal = sum(f == a["fronts"][s] for f, (s, _) in zip(printed, runs))
    tracebacks = sum(e.read_text().count("Traceback") for e in errs)
    a.pop("fronts")
    budget = sum(b for _, b in {s: b for s, b in runs}.items())
    a.update(searches=len(runs), budget_in_all=budget,
             fronts_equal=equal, tracebacks=tracebacks, return_codes=[p.returncode for p in procs], wall_s=round(wall, 1),
             met=a["measured_twice"] == a["lost"] == a["paid_twice"] == tracebacks == 0 and equal == len(runs)
             and a["real_trials"] == budget)
    return a


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--budget", type=int, default=24)
    ap.add_argument("--delay", type=float, default=0.05, help="seconds per synthetic measurement")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--url", default=os.environ.get("SLIVER_TEST_POSTGRES_URL"),
                    help="the store to run on, e.g. a PostgreSQL server (default: $SLIVER_TEST_POSTGRES_URL, "
                         "else a fresh SQLite file)")
    args = ap.parse_args()
    from sqlalchemy.engine import make_url

    from sliver.store import hide_password

    rng = random.Random(args.seed)
    backend = make_url(args.url).get_backend_name() if args.url else "sqlite"
    shown = hide_password(args.url) if args.url else "a temporary SQLite file"
    print(f"store: {shown}")
    table: dict = {"store": shown}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        table["kills"] = kills(args.url or f"sqlite:///{tmp / 'kills.db'}", args.kills, args.budget, args.delay, tmp, rng)
        table["concurrent"] = concurrent(args.url or f"sqlite:///{tmp / 'shared.db'}", args.delay, tmp, backend)
    for name in ("kills", "concurrent"):
        print(name, json.dumps(table[name]))
    k, c = table["kills"], table["concurrent"]
    met = k["met"] and c["met"]
    figure = (f"{backend}: {k['kills']} kills: measured {k['measured_configs']} = trials {k['real_trials']} = budget "
              f"{k['budget']}, {k['lost']} lost, {k['paid_twice']} paid twice ({k['measured_twice']} re-measured after a "
              f"kill); 4 concurrent searches, budgets of {c['budget_in_all']} in all: {c['real_trials']} evaluations, "
              f"{c['measured_twice']} duplicate measurements, {c['lost']} lost, {c['tracebacks']} tracebacks, "
              f"fronts {c['fronts_equal']}/4 equal the store's")
    argv = [a.replace(args.url, hide_password(args.url)) if args.url else a for a in sys.argv]
    name = "store_faults" if backend == "sqlite" else f"store_faults_{backend}"
    target = "0 lost, 0 paid twice, 0 duplicates, evaluations = budgets, 0 tracebacks, fronts equal"
    path = write_result(name, figure, target, met, table, argv=argv)
    print(figure)
    print(f"wrote {path}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _, _, url, study, budget, supernet, log, delay = sys.argv
        child(url, study, int(budget), supernet, log, float(delay))
    else:
        main()
