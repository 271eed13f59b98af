"""AutoSupernet: a user's own pre-trained CNN as a weight-sharing super-network.

:func:`elastify` traces the model (:mod:`sliver.elastic.auto.graph`), turns
every elastic channel group into a width gene, every skippable residual
branch into a depth gene and, optionally, every ``k >= 5`` convolution with
"same" padding into a kernel gene (centre crop). The config of a sub-network
is a plain dict::

    {"width": [1.0, 0.5, ...],   # one ratio per elastic channel group
     "depth": [1, 0, ...],        # one per skippable block: 1 runs it, 0 skips it
     "kernel5": [5, 3, ...]}      # one per elastic 5x5 convolution (if kernel=True)

The super-network keeps the user's modules (so its state dict has the
original keys) and runs the traced graph itself, slicing each layer's weights
to the active channels. Channels are first sorted by importance inside each
group, the whole group at once, so the largest sub-network is exactly the
original model and every smaller one keeps the most important channels.
``extract`` cuts a sub-network out as a plain ``torch.fx.GraphModule`` of
standard PyTorch layers with copied weights.

A frozen copy of the original model rides along (``teacher_model()``); the
trainer distils every sub-network towards it when ``train.sampling.teacher``
is ``original``, the default when the model already predicts the task's
classes. When ``num_classes`` replaces its classifier the original knows
nothing of the new classes, so the default is then in-place distillation
from the largest sub-network.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from sliver.elastic.auto.graph import Analysis, ElastifyError, Layer, Space, analyse, trace
from sliver.elastic.base import Supernet, register_builder, register_family, taylor_importance
from sliver.elastic.head import fit_linear_probe
from sliver.elastic.layers import momentum_factor
from sliver.space import Config, DepthGate, Dimension, SearchSpace

DEFAULT_WIDTHS = (0.25, 0.5, 0.75, 1.0)


def elastify(model: nn.Module, example_input: torch.Tensor, **options: Any) -> "AutoSupernet":
    """Make a pre-trained ``nn.Module`` an elastic super-network (see :class:`AutoSupernet` for the options).

    ``example_input`` is one batch the model accepts (its shape after the batch
    axis fixes the input shape). The model's weights are reused, not copied;
    the largest sub-network computes what the model computed.
    """
    return AutoSupernet(model=model, input_shape=list(example_input.shape[1:]), **options)


@register_family("auto")
class AutoSupernet(Supernet):
    """A super-network built automatically from an ordinary PyTorch CNN.

    Give either ``model`` (an ``nn.Module``) or ``module`` (``"package.module:factory"``
    or ``"path/to/file.py:factory"``, called with ``kwargs``). ``weights`` is an
    optional ``.safetensors`` file or state dict loaded into it (weights only).
    ``input_shape`` is one example's shape, e.g. ``[3, 224, 224]``; batches of
    another size are resized to it. ``num_classes`` replaces the final linear
    classifier when it has another number of outputs. ``width_choices`` are the
    ratios of each group's channels (the largest must be 1.0); counts round to
    multiples of ``channel_divisor`` where that keeps them distinct. ``depth``
    makes skippable residual blocks a choice, ``kernel`` crops ``k >= 5``
    convolutions. ``fixed`` and ``leaf`` are module-name patterns (fnmatch):
    a fixed module's channels keep their full width; a leaf module is not traced
    into (for code torch.fx cannot trace) and stays fixed. ``importance`` sorts
    channels at start-up (``"magnitude"``: L1 norm; ``None``: keep the order).
    ``teacher`` keeps a frozen copy of the original model for distillation.
    """

    def __init__(self, model: nn.Module | None = None, *, module: str | None = None, kwargs: dict[str, Any] | None = None,
                 weights: str | None = None, input_shape: Sequence[int], num_classes: int | None = None,
                 width_choices: Sequence[float] = DEFAULT_WIDTHS, depth: bool = True, kernel: bool = False,
                 fixed: Sequence[str] = (), leaf: Sequence[str] = (), channel_divisor: int = 8,
                 importance: str | None = "magnitude", teacher: bool = True) -> None:
        super().__init__()
        if (model is None) == (module is None):
            raise ElastifyError("give exactly one of 'model' (an nn.Module) or 'module' ('package.module:factory')")
        widths = sorted({float(w) for w in width_choices})
        if not widths or widths[-1] != 1.0 or widths[0] <= 0:
            raise ElastifyError(f"width_choices must be ratios in (0, 1] that include 1.0, got {list(width_choices)}")
        if len(input_shape) < 1 or any(int(s) < 1 for s in input_shape):
            raise ElastifyError(f"input_shape must be positive sizes such as [3, 224, 224], got {list(input_shape)}")
        if importance not in (None, "magnitude"):
            raise ElastifyError(f"importance must be 'magnitude' or null, got {importance!r} (gradient order: train.start.reorder)")
        self._options = {
            "module": module, "kwargs": dict(kwargs or {}), "weights": weights,
            "input_shape": [int(s) for s in input_shape], "num_classes": num_classes, "width_choices": widths,
            "depth": bool(depth), "kernel": bool(kernel), "fixed": list(fixed), "leaf": list(leaf),
            "channel_divisor": int(channel_divisor), "importance": importance, "teacher": bool(teacher),
        }
        if model is None:
            model = load_factory(module, self._options["kwargs"])
        if weights:
            load_weights_file(model, weights)
        model.eval()
        example = self.example_input(None)
        gm = trace(model, example, leaf)
        #: whether the frozen original model predicts this task's classes (False once its classifier is replaced)
        self.teacher_knows_task = True
        if num_classes is not None:
            self.teacher_knows_task = not _set_num_classes(gm, int(num_classes), example)
        self.analysis: Analysis = analyse(gm, fixed)
        #: the traced user model; its modules hold the weights (state-dict keys are the original ones under "model.")
        self.model = gm
        self._build_space()
        self._compile()
        self.teacher = _frozen(gm) if teacher else None
        if importance == "magnitude":
            self.reorder("magnitude")
        self.activate(self.max_config())

    # ------------------------------------------------------------------ space
    def _build_space(self) -> None:
        a, opts = self.analysis, self._options
        self.width_groups: list[int] = []
        self.width_counts: dict[int, tuple[int, ...]] = {}
        for g in a.groups.values():
            if g.fixed is not None:
                continue
            counts = channel_counts(g.size, opts["width_choices"], opts["channel_divisor"])
            if counts is None:
                g.fixed = f"{g.size} channels are too few for {len(opts['width_choices'])} distinct widths"
                continue
            self.width_groups.append(g.id)
            self.width_counts[g.id] = counts
        self.depth_blocks: list[int] = list(range(len(a.blocks))) if opts["depth"] else []
        self.kernel_layers: dict[int, list[str]] = {}
        if opts["kernel"]:
            for layer in a.layers.values():
                if layer.kernels:
                    self.kernel_layers.setdefault(layer.kernels[-1], []).append(layer.node)
        dims = []
        if self.width_groups:
            dims.append(Dimension("width", tuple(opts["width_choices"]), len(self.width_groups)))
        if self.depth_blocks:
            dims.append(Dimension("depth", (0, 1), len(self.depth_blocks)))
        for k, nodes in sorted(self.kernel_layers.items()):
            dims.append(Dimension(f"kernel{k}", tuple(range(3, k + 1, 2)), len(nodes)))
        if not dims:
            raise ElastifyError("nothing in the model can be made elastic (every channel group is fixed and no residual "
                                "block can be skipped); see 'sliver space show' for the reasons")
        gates = []
        if self.depth_blocks:
            slot = {b: i for i, b in enumerate(self.depth_blocks)}
            names, owners = [], []
            if self.width_groups:
                names.append("width")
                owners.append(tuple(slot.get(a.groups[g].block, -1) for g in self.width_groups))
            for k, nodes in sorted(self.kernel_layers.items()):
                names.append(f"kernel{k}")
                owners.append(tuple(slot.get(a.node_block.get(n, -1), -1) for n in nodes))
            if names:
                gates.append(DepthGate("depth", (1,) * len(self.depth_blocks), tuple(names), tuple(owners)))
        self.space = SearchSpace(dims, gates)

    def _counts(self, config: Config) -> dict[int, int]:
        """Active channels of every group under ``config`` (fixed groups at full width)."""
        counts = {g.id: g.size for g in self.analysis.groups.values()}
        choices = self._options["width_choices"]
        for g, ratio in zip(self.width_groups, config.get("width", [])):
            counts[g] = self.width_counts[g][choices.index(float(ratio))]
        return counts

    def _skipped(self, config: Config) -> set[int]:
        return {b for b, keep in zip(self.depth_blocks, config.get("depth", [])) if not keep}

    def _kernels(self, config: Config) -> dict[str, int]:
        out = {}
        for k, nodes in self.kernel_layers.items():
            out.update(zip(nodes, config[f"kernel{k}"]))
        return out

    # ------------------------------------------------------------------ running
    def _compile(self) -> None:
        """Pre-compute what the interpreter needs: each node's last use, and the blocks' nodes."""
        nodes = list(self.model.graph.nodes)
        last_use: dict[str, str] = {}
        for node in nodes:
            for arg in node.all_input_nodes:
                last_use[arg.name] = node.name
        self._free_after: dict[str, list[str]] = {}
        for value, user in last_use.items():
            self._free_after.setdefault(user, []).append(value)
        self._modules_by_target = dict(self.model.named_modules())
        self._block_of_add = {b.add: i for i, b in enumerate(self.analysis.blocks)}

    def _set_active(self, config: Config) -> None:
        counts = self._counts(config)
        self._active_counts = counts
        self._skip = self._skipped(config)
        self._skip_nodes = set().union(*[self.analysis.blocks[b].nodes for b in self._skip]) if self._skip else set()
        kernels = self._kernels(config)
        self._slices: dict[str, tuple[Any, Any, int | None]] = {}
        for name, layer in self.analysis.layers.items():
            k = kernels.get(name)
            self._slices[name] = (_index(layer.space_in, counts), _index(layer.space_out, counts),
                                  None if k is None or k == layer.kernels[-1] else k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x)

    def _run(self, x: torch.Tensor, stop_at: str | None = None) -> Any:
        """Run the traced graph with the active config; with ``stop_at``, return that node's first input instead."""
        self.active_config  # noqa: B018 - activates the largest network on first use
        env: dict[str, Any] = {}
        load = lambda n: env[n.name]  # noqa: E731 - tiny local helper
        for node in self.model.graph.nodes:
            if node.name in self._skip_nodes:
                continue
            if node.name == stop_at:
                return fx.node.map_arg(node.args[0], load)
            if node.op == "placeholder":
                env[node.name] = x
            elif node.op == "output":
                return fx.node.map_arg(node.args[0], load)
            elif node.name in self._block_of_add and self._block_of_add[node.name] in self._skip:
                env[node.name] = env[self.analysis.blocks[self._block_of_add[node.name]].keep]
            else:
                args = fx.node.map_arg(node.args, load)
                kwargs = fx.node.map_arg(node.kwargs, load)
                if node.op == "call_module":
                    if node.name in self._slices:
                        env[node.name] = self._layer(self.analysis.layers[node.name], args[0])
                    else:
                        env[node.name] = self._modules_by_target[node.target](*args, **kwargs)
                elif node.op == "call_function":
                    env[node.name] = node.target(*args, **kwargs)
                elif node.op == "call_method":
                    env[node.name] = getattr(args[0], node.target)(*args[1:], **kwargs)
                elif node.op == "get_attr":
                    env[node.name] = _attr(self.model, node.target)
            for value in self._free_after.get(node.name, ()):
                env.pop(value, None)
        raise RuntimeError("the traced graph has no output")  # pragma: no cover - fx graphs always have one

    def _layer(self, layer: Layer, x: torch.Tensor) -> torch.Tensor:
        m = self._modules_by_target[layer.target]
        idx_in, idx_out, kernel = self._slices[layer.node]
        if idx_in is None and idx_out is None and kernel is None:
            return m(x)
        if layer.kind == "bn":
            return _batch_norm(m, x, idx_in)
        if layer.kind == "linear":
            w = _take(_take(m.weight, 0, idx_out), 1, idx_in)
            return F.linear(x, w, None if m.bias is None else _take(m.bias, 0, idx_out))
        if layer.kind == "dwconv":
            w = _take(m.weight, 0, idx_out)
        else:
            w = _take(_take(m.weight, 0, idx_out), 1, idx_in)
        padding = m.padding
        if kernel is not None:
            start = (m.kernel_size[0] - kernel) // 2
            w = w[:, :, start:start + kernel, start:start + kernel]
            padding = (kernel // 2, kernel // 2)
        bias = None if m.bias is None else _take(m.bias, 0, idx_out)
        groups = w.shape[0] if layer.kind == "dwconv" else 1
        return F.conv2d(x, w, bias, m.stride, padding, m.dilation, groups)

    def train(self, mode: bool = True) -> "AutoSupernet":
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # the teacher is frozen: its batch-norm statistics never move
        return self

    def teacher_model(self) -> nn.Module | None:
        """The frozen original model (with the fitted head after ``fit_head``), or None."""
        return self.teacher

    # ------------------------------------------------------------------ inputs
    def input_shape(self, config: Config | None, batch_size: int = 1) -> tuple[int, ...]:
        return (batch_size, *self._options["input_shape"])

    def prepare_input(self, x: torch.Tensor, config: Config | None) -> torch.Tensor:
        """Fit image batches to the model's input: resize (data sets are often smaller than ImageNet's 224),
        and repeat a grey channel for a colour model."""
        shape = self._options["input_shape"]
        if x.ndim != 4 or len(shape) != 3:
            return x
        if x.shape[1] == 1 and shape[0] == 3:
            x = x.expand(-1, 3, -1, -1)
        if tuple(x.shape[2:]) != tuple(shape[1:]):
            x = F.interpolate(x, size=tuple(shape[1:]), mode="bilinear", align_corners=False, antialias=x.shape[2] > shape[1])
        return x

    # ------------------------------------------------------------------ cutting out
    def arch_config(self, config: Config) -> dict[str, Any]:
        return {"kind": "auto", "supernet": self.supernet_config(), "config": self.space.canonical(config)}

    def extract(self, config: Config) -> nn.Module:
        config = self.space.validate(config)
        counts, skipped, kernels = self._counts(config), self._skipped(config), self._kernels(config)
        graph = fx.Graph()
        value_map: dict[fx.Node, fx.Node] = {}
        graph.output(graph.graph_copy(self.model.graph, value_map))
        by_name = {n.name: value_map[n] for n in self.model.graph.nodes if n in value_map}
        for b in sorted(skipped, reverse=True):
            block = self.analysis.blocks[b]
            add = by_name[block.add]
            add.replace_all_uses_with(by_name[block.keep])
            graph.erase_node(add)
            for name in sorted(block.nodes, key=[n.name for n in self.model.graph.nodes].index, reverse=True):
                graph.erase_node(by_name[name])
        parts: dict[str, Any] = {}
        with torch.no_grad():
            for node in graph.nodes:
                if node.op == "call_module":
                    layer = self.analysis.layers.get(node.name)
                    m = self._modules_by_target[node.target]
                    parts[node.target] = copy.deepcopy(m) if layer is None else _plain(layer, m, counts, kernels.get(node.name))
                elif node.op == "get_attr":
                    value = _attr(self.model, node.target)
                    parts[node.target] = copy.deepcopy(value)
        graph.lint()
        model = fx.GraphModule(parts, graph, class_name=f"{type(self.model).__name__}Sliver")
        return model.eval()

    def costs(self, config: Config) -> dict[str, float]:
        """Parameters and multiply-accumulates of ``config`` (batch 1), counted from the graph without building it."""
        config = self.space.validate(config)
        counts, skipped, kernels = self._counts(config), self._skipped(config), self._kernels(config)
        gone = set().union(*[self.analysis.blocks[b].nodes for b in skipped]) if skipped else set()
        params = macs = 0
        for layer in self.analysis.layers.values():
            if layer.node in gone:
                continue
            m = self._modules_by_target[layer.target]
            cin, cout = _width(layer.space_in, counts), _width(layer.space_out, counts)
            if layer.kind == "bn":
                params += 2 * cin if m.affine else 0
            elif layer.kind == "linear":
                params += cin * cout + (cout if m.bias is not None else 0)
                macs += cin * cout
            else:
                kh, kw = (kernels[layer.node],) * 2 if layer.node in kernels else m.kernel_size
                per_out = (1 if layer.kind == "dwconv" else cin) * kh * kw
                params += cout * per_out + (cout if m.bias is not None else 0)
                macs += cout * per_out * layer.out_positions
        for name in self.analysis.others:
            if name in gone:
                continue
            node = next(n for n in self.model.graph.nodes if n.name == name)
            m = self._modules_by_target[node.target]
            params += sum(p.numel() for p in m.parameters())
            if isinstance(m, nn.Conv2d):
                shape = node.meta["tensor_meta"].shape
                macs += m.weight.numel() * shape[2] * shape[3]
        for node in self.model.graph.nodes:
            if node.op == "get_attr" and node.name not in gone and isinstance(_attr(self.model, node.target), nn.Parameter):
                params += _attr(self.model, node.target).numel()
        return {"params": int(params), "macs": int(macs)}

    def supernet_config(self) -> dict[str, Any]:
        if self._options["module"] is None:
            return {"family": "auto", **{k: v for k, v in self._options.items() if k != "module"}, "module": None}
        return {"family": "auto", **self._options}

    # ------------------------------------------------------------------ start of training
    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """What the final classifier reads, for the largest network (eval mode)."""
        if self.analysis.head is None:
            raise ElastifyError("the model's output does not come from a final nn.Linear classifier, so there is no head to fit")
        self.eval()
        self.activate(self.max_config())
        return self._run(self.prepare_input(x, None), stop_at=self.analysis.head)

    def fit_head(self, x: torch.Tensor, y: torch.Tensor, l2: float = 1e-2, batch_size: int = 128) -> float:
        """Linear probe: fit the classifier on the largest network's frozen features; returns its train accuracy (%).

        The teacher's classifier gets the same weights, so distillation starts
        from a teacher that knows the task's classes.
        """
        feats = torch.cat([self.features(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
        head = self._modules_by_target[self.analysis.layers[self.analysis.head].target]
        weight, bias, acc = fit_linear_probe(feats, y, head.out_features, l2)
        with torch.no_grad():
            heads = [head]
            if self.teacher is not None:
                heads.append(self.teacher.get_submodule(self.analysis.layers[self.analysis.head].target))
            for h in heads:
                h.weight.copy_(weight)
                if h.bias is not None:
                    h.bias.copy_(bias)
        return acc

    def reorder(self, method: str = "magnitude", batches: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
                loss_fn=F.cross_entropy) -> None:
        """Sort the channels of every elastic group by importance, most important first.

        ``"magnitude"``: the L1 norm of every weight that writes or reads a channel;
        ``"gradient"``: the first-order Taylor score ``|w * dL/dw|`` summed over
        ``batches``. Each layer's scores are normalised by their mean before they are
        added, so no layer dominates a group by its scale. The function is unchanged.
        """
        if method == "magnitude":
            stat = {id(p): p.detach().abs() for p in self.parameters()}
        elif method == "gradient":
            if batches is None:
                raise ValueError("reorder(method='gradient') needs batches of (input, target) to score channels")
            stat = taylor_importance(self, batches, loss_fn)
        else:
            raise ValueError(f"reorder method must be 'magnitude' or 'gradient', got {method!r}")
        previous = self._active
        for g in self.width_groups:
            order = torch.argsort(self._group_scores(g, stat), descending=True, stable=True)
            self._permute(g, order)
        if previous is not None:
            self.activate(previous)

    def _touching(self, g: int) -> Iterable[tuple[nn.Module, Layer, str, Space]]:
        """(module, layer, "in"|"out", space) for every side of a layer that carries group ``g``."""
        for layer in self.analysis.layers.values():
            m = self._modules_by_target[layer.target]
            sides = [("out", layer.space_out)] if layer.kind in ("bn", "dwconv") else [("in", layer.space_in), ("out", layer.space_out)]
            for side, space in sides:
                if any(seg.group == g for seg in space):
                    yield m, layer, side, space

    def _group_scores(self, g: int, stat: dict[int, torch.Tensor]) -> torch.Tensor:
        size = self.analysis.groups[g].size
        total = torch.zeros(size, dtype=torch.float64)
        for m, layer, side, space in self._touching(g):
            for p, axis in _channel_params(m, layer, side):
                values = stat[id(p)].double()
                per_position = values.sum(dim=[d for d in range(values.ndim) if d != axis]) if values.ndim > 1 else values
                score = _segment_values(per_position, space, g)
                total += score / (score.mean() + 1e-12)
        return total

    @torch.no_grad()
    def _permute(self, g: int, order: torch.Tensor) -> None:
        for m, layer, side, space in self._touching(g):
            index = _permutation(space, g, order)
            for p, axis in _channel_params(m, layer, side):
                p.copy_(p.index_select(axis, index))
            if layer.kind == "bn" and m.running_mean is not None:
                m.running_mean.copy_(m.running_mean[index])
                m.running_var.copy_(m.running_var[index])

    # ------------------------------------------------------------------ display
    def describe(self) -> dict[str, list[dict[str, Any]]]:
        """The channel groups (elastic and fixed, with reasons) and skippable blocks, for ``sliver space show``."""
        a = self.analysis
        elastic = [{"gene": f"width[{i}]", "group": a.groups[g].name, "channels": a.groups[g].size,
                    "choices": list(self.width_counts[g]),
                    "block": a.blocks[a.groups[g].block].name if a.groups[g].block >= 0 else ""}
                   for i, g in enumerate(self.width_groups)]
        fixed = [{"group": grp.name, "channels": grp.size, "reason": grp.fixed}
                 for grp in a.groups.values() if grp.fixed is not None]
        blocks = [{"gene": f"depth[{i}]", "block": a.blocks[b].name, "nodes": len(a.blocks[b].nodes)}
                  for i, b in enumerate(self.depth_blocks)]
        kernels = [{"gene": f"kernel{k}[{i}]", "layer": a.layers[n].target, "choices": list(a.layers[n].kernels)}
                   for k, nodes in sorted(self.kernel_layers.items()) for i, n in enumerate(nodes)]
        return {"elastic": elastic, "fixed": fixed, "blocks": blocks, "kernels": kernels}


# ---------------------------------------------------------------------- helpers
def channel_counts(size: int, ratios: Sequence[float], divisor: int) -> tuple[int, ...] | None:
    """Channels kept for each width ratio: multiples of ``divisor`` when that keeps them distinct, else
    plain rounding; ``None`` when even that gives two ratios the same count."""
    for d in (divisor, 1):
        if d < 1 or size % d:
            continue
        counts = tuple(size if r == 1.0 else max(d, min(size, int(round(r * size / d)) * d)) for r in ratios)
        if all(a < b for a, b in zip(counts, counts[1:])):
            return counts
    return None


def _index(space: Space, counts: dict[int, int]) -> Any:
    """How to slice an axis laid out as ``space``: None (all of it), a prefix slice, or a LongTensor of positions."""
    if all(counts[s.group] == s.size for s in space):
        return None
    if len(space) == 1 and space[0].repeat == 1:
        return slice(0, counts[space[0].group])
    positions, offset = [], 0
    for s in space:
        positions.extend(range(offset, offset + counts[s.group] * s.repeat))
        offset += s.size * s.repeat
    return torch.tensor(positions, dtype=torch.long)


def _width(space: Space, counts: dict[int, int]) -> int:
    return sum(counts[s.group] * s.repeat for s in space)


def _take(t: torch.Tensor, axis: int, index: Any) -> torch.Tensor:
    if index is None:
        return t
    if isinstance(index, slice):
        return t.narrow(axis, 0, index.stop)
    return t.index_select(axis, index.to(t.device))


def _batch_norm(m: nn.modules.batchnorm._BatchNorm, x: torch.Tensor, index: Any) -> torch.Tensor:
    """Batch norm over the active channels; running statistics of those channels update as in ``nn.BatchNorm``."""
    if index is None:
        return m(x)
    factor = momentum_factor(m)
    batch_stats = m.training or m.running_mean is None
    track = m.running_mean is not None and (not m.training or m.track_running_stats)
    mean = _take(m.running_mean, 0, index) if track else None
    var = _take(m.running_var, 0, index) if track else None
    out = F.batch_norm(x, mean, var, _take(m.weight, 0, index) if m.affine else None,
                       _take(m.bias, 0, index) if m.affine else None, batch_stats, factor, m.eps)
    if track and m.training and not isinstance(index, slice):  # an index copy: write the updated statistics back
        with torch.no_grad():
            m.running_mean[index.to(x.device)] = mean
            m.running_var[index.to(x.device)] = var
    return out


def _plain(layer: Layer, m: nn.Module, counts: dict[int, int], kernel: int | None) -> nn.Module:
    """A standard PyTorch layer holding copies of the active slice of ``m``."""
    idx_in, idx_out = _index(layer.space_in, counts), _index(layer.space_out, counts)
    cin, cout = _width(layer.space_in, counts), _width(layer.space_out, counts)
    if layer.kind == "bn":
        bn = type(m)(cin, m.eps, m.momentum, m.affine, m.track_running_stats)
        for name in ("weight", "bias", "running_mean", "running_var"):
            src = getattr(m, name)
            if src is not None:
                getattr(bn, name).copy_(_take(src, 0, idx_in))
        if m.track_running_stats:
            bn.num_batches_tracked.copy_(m.num_batches_tracked)
        return bn
    if layer.kind == "linear":
        lin = nn.Linear(cin, cout, bias=m.bias is not None)
        lin.weight.copy_(_take(_take(m.weight, 0, idx_out), 1, idx_in))
        if m.bias is not None:
            lin.bias.copy_(_take(m.bias, 0, idx_out))
        return lin
    k = kernel or m.kernel_size[0]
    weight = _take(m.weight, 0, idx_out)
    if layer.kind == "conv":
        weight = _take(weight, 1, idx_in)
    padding = m.padding
    if kernel is not None:
        start = (m.kernel_size[0] - k) // 2
        weight = weight[:, :, start:start + k, start:start + k]
        padding = (k // 2, k // 2)
    depthwise = layer.kind == "dwconv"
    conv = nn.Conv2d(cin, cout, weight.shape[2:], m.stride, padding, m.dilation, groups=cout if depthwise else 1,
                     bias=m.bias is not None, padding_mode=m.padding_mode)
    conv.weight.copy_(weight)
    if m.bias is not None:
        conv.bias.copy_(_take(m.bias, 0, idx_out))
    return conv


def _channel_params(m: nn.Module, layer: Layer, side: str) -> list[tuple[torch.Tensor, int]]:
    """The parameters of ``m`` indexed by the channels of one side, with the axis that holds them."""
    if layer.kind == "bn":
        return [(p, 0) for p in (m.weight, m.bias) if p is not None]
    if side == "in":
        return [(m.weight, 1)]
    return [(m.weight, 0)] + ([(m.bias, 0)] if m.bias is not None else [])


def _segment_values(per_position: torch.Tensor, space: Space, g: int) -> torch.Tensor:
    """Sum of ``per_position`` over the positions of each channel of group ``g`` (over every segment of it)."""
    out, offset = None, 0
    for s in space:
        n = s.size * s.repeat
        if s.group == g:
            part = per_position[offset:offset + n].reshape(s.size, s.repeat).sum(1)
            out = part if out is None else out + part
        offset += n
    return out


def _permutation(space: Space, g: int, order: torch.Tensor) -> torch.Tensor:
    """Positions of an axis laid out as ``space`` after putting group ``g``'s channels in ``order``."""
    total = sum(s.size * s.repeat for s in space)
    index = torch.arange(total)
    offset = 0
    for s in space:
        n = s.size * s.repeat
        if s.group == g:
            index[offset:offset + n] = (order[:, None] * s.repeat + torch.arange(s.repeat)).reshape(-1) + offset
        offset += n
    return index


def _attr(root: nn.Module, target: str) -> Any:
    obj: Any = root
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _frozen(gm: fx.GraphModule) -> fx.GraphModule:
    teacher = copy.deepcopy(gm).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def _set_num_classes(gm: fx.GraphModule, num_classes: int, example: torch.Tensor) -> bool:
    """Replace the final linear classifier by a fresh one with ``num_classes`` outputs if it differs; True if replaced."""
    from torch.fx.passes.shape_prop import ShapeProp

    last = next(n for n in gm.graph.nodes if n.op == "output").args[0]
    head = gm.get_submodule(last.target) if isinstance(last, fx.Node) and last.op == "call_module" else None
    if not isinstance(head, nn.Linear):
        raise ElastifyError("num_classes: the model's output does not come from a final nn.Linear, so sliver cannot "
                            "replace its classifier; build the model with the right number of classes and drop num_classes")
    if head.out_features != num_classes:
        parent, _, name = last.target.rpartition(".")
        setattr(gm.get_submodule(parent) if parent else gm, name, nn.Linear(head.in_features, num_classes, bias=head.bias is not None))
        with torch.no_grad():
            ShapeProp(gm).propagate(example)
        return True
    return False


def load_factory(spec: str, kwargs: dict[str, Any]) -> nn.Module:
    """Call the model factory ``"package.module:function"`` or ``"path/to/file.py:function"`` with ``kwargs``."""
    if not isinstance(spec, str) or spec.count(":") < 1:
        raise ElastifyError(f"module: expected 'package.module:factory' or 'path/to/file.py:factory', got {spec!r}")
    where, _, name = spec.rpartition(":")
    try:
        if where.endswith(".py"):
            path = Path(where)
            if not path.is_file():
                raise ElastifyError(f"module: file {where} not found (paths are relative to the working directory)")
            mod_name = "sliver_user_" + re.sub(r"\W", "_", str(path.resolve().with_suffix("")))
            mod = sys.modules.get(mod_name)
            if mod is None:
                loader_spec = importlib.util.spec_from_file_location(mod_name, path)
                mod = importlib.util.module_from_spec(loader_spec)
                sys.modules[mod_name] = mod
                loader_spec.loader.exec_module(mod)
        else:
            mod = importlib.import_module(where)
    except ElastifyError:
        raise
    except Exception as exc:
        raise ElastifyError(f"module: cannot import {where!r} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    factory = getattr(mod, name, None)
    if not callable(factory):
        raise ElastifyError(f"module: {where!r} has no callable {name!r}")
    try:
        model = factory(**kwargs)
    except TypeError as exc:
        raise ElastifyError(f"module: {spec} does not take the given kwargs ({exc})") from None
    if not isinstance(model, nn.Module):
        raise ElastifyError(f"module: {spec} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def load_weights_file(model: nn.Module, path: str) -> None:
    """Load a ``.safetensors`` file or a saved state dict (weights only, never pickled code) into ``model``."""
    p = Path(path)
    if not p.is_file():
        raise ElastifyError(f"weights: file {path} not found")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(p))
        else:
            state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception:
        raise ElastifyError(f"weights: {path} is not a readable .safetensors file or state dict (a torch.save of "
                            "model.state_dict()); whole pickled models are refused") from None
    if isinstance(state, dict):
        for key in ("state_dict", "model"):  # common wrappers around a state dict
            if key in state and isinstance(state[key], dict) and len(state) <= 4:
                state = state[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ElastifyError(f"weights: {path} does not hold a state dict of tensors")
    missing, unexpected = [], []
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise ElastifyError(f"weights: {path} does not fit the model ({len(missing)} missing keys, e.g. "
                            f"{missing[:2]}; {len(unexpected)} unexpected, e.g. {unexpected[:2]})")
    bad = [k for k in own if tuple(own[k].shape) != tuple(state[k].shape)]
    if bad:
        raise ElastifyError(f"weights: {path}: '{bad[0]}' has shape {list(state[bad[0]].shape)}, the model expects "
                            f"{list(own[bad[0]].shape)}")
    model.load_state_dict(state)


@register_builder("auto")
def build_auto(arch: dict[str, Any]) -> nn.Module:
    """Rebuild an extracted sub-network from its ``arch_config`` (the user's factory must be importable)."""
    spec = dict(arch["supernet"])
    spec.pop("family", None)
    if spec.get("module") is None:
        raise ElastifyError("this export came from an in-memory model (elastify in Python), so it cannot be rebuilt "
                            "from arch.json alone; load its model.onnx, or elastify from 'module: package.module:factory'")
    spec.update(weights=None, importance=None, teacher=False)
    return AutoSupernet(**spec).extract(arch["config"])
