"""Find what can become elastic in an ordinary PyTorch CNN: coupled channel groups and skippable blocks.

The model is traced with ``torch.fx`` and its shapes are propagated on an
example input. Every tensor with a channel axis (``N x C x H x W`` or
``N x F``) gets a *channel space*: a list of segments, each a run of channels
of one *group*. A convolution or linear layer starts a new group on its
output; batch norm, activations, pooling and a depthwise convolution pass the
space through; an elementwise addition or multiplication (a residual, a
squeeze-excite gate) ties the groups of its operands into one (union-find);
a concatenation along channels concatenates the segments; flattening
``N x C x H x W`` repeats each channel ``H*W`` times. Every layer that
holds per-channel weights records the spaces it reads and writes, so slicing a
group to its first ``k`` channels slices every such layer consistently.

A group stays *fixed* (full width) when slicing it would change what the
model means or when sliver cannot follow it: the model's input and output,
the input and output of a grouped convolution, anything an operation sliver
does not know touches, and what the user marks fixed. ``reason`` says why.

A *block* is a residual branch ``y = a + f(a)`` whose nodes read only ``a``
and are used only by the addition; skipping it (``y = a``) keeps every shape,
so it is a depth choice (identity-skippable, as in Once-for-All's elastic
depth). The channel groups that live entirely inside a branch belong to it.
"""

from __future__ import annotations

import fnmatch
import operator
from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from sliver.errors import UserError


class ElastifyError(UserError):
    """The model cannot be made elastic as given; the message names the module or node and the fix."""


@dataclass(frozen=True)
class Segment:
    """``size`` channels of group ``group``, each repeated ``repeat`` times along the axis (after a flatten)."""

    group: int
    size: int
    repeat: int = 1


Space = tuple[Segment, ...]


@dataclass
class Layer:
    """A module with per-channel weights and the channel spaces it reads and writes."""

    node: str
    target: str
    kind: str  # "conv", "dwconv", "bn", "linear"
    space_in: Space
    space_out: Space
    #: output positions per sample (H*W after a convolution, 1 for linear), for MACs
    out_positions: int = 1
    #: kernel sizes this convolution may take (elastic kernel), largest last; () when fixed
    kernels: tuple[int, ...] = ()


@dataclass
class Group:
    """A set of channels that must be sliced together, and whether it is elastic."""

    id: int
    size: int
    name: str
    fixed: str | None = None
    #: index of the skippable block the group lives in, -1 for none
    block: int = -1


@dataclass
class Block:
    """A skippable residual branch ``add = keep + branch(keep)``."""

    name: str
    add: str
    keep: str
    nodes: frozenset[str]


@dataclass
class Analysis:
    """Everything :class:`~sliver.elastic.auto.supernet.AutoSupernet` needs to know about a traced model."""

    module: fx.GraphModule
    groups: dict[int, Group]
    layers: dict[str, Layer]
    blocks: list[Block]
    #: node name -> its channel space, with group ids resolved to their roots
    spaces: dict[str, Space]
    #: node name -> the skippable block it belongs to (only nodes inside a branch)
    node_block: dict[str, int] = field(default_factory=dict)
    #: name of the final classifier (a Linear whose output is the model's output), if any
    head: str | None = None
    #: nodes of modules with parameters that are never sliced (grouped convolutions, unknown modules)
    others: list[str] = field(default_factory=list)

    def elastic_groups(self) -> list[Group]:
        return [g for g in self.groups.values() if g.fixed is None]


# --------------------------------------------------------------------------- tracing
class _Tracer(fx.Tracer):
    """An fx tracer that keeps the user's ``leaf`` modules opaque and remembers where it is."""

    def __init__(self, leaf: Iterable[str] = ()) -> None:
        super().__init__()
        self.leaf_patterns = list(leaf)
        self.path: list[str] = []

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if any(fnmatch.fnmatchcase(qualname, p) for p in self.leaf_patterns):
            return True
        return super().is_leaf_module(m, qualname)

    def call_module(self, m, forward, args, kwargs):
        self.path.append(self.path_of_module(m))
        result = super().call_module(m, forward, args, kwargs)
        self.path.pop()
        return result


def trace(model: nn.Module, example: torch.Tensor, leaf: Iterable[str] = ()) -> fx.GraphModule:
    """Trace ``model`` with torch.fx and record every node's output shape on ``example``.

    A failure becomes an :class:`ElastifyError` naming the module being traced.
    """
    tracer = _Tracer(leaf)
    try:
        graph = tracer.trace(model)
    except Exception as exc:  # torch.fx raises many kinds (TraceError, TypeError, ...) from user code
        where = tracer.path[-1] if tracer.path else type(model).__name__
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ElastifyError(
            f"torch.fx cannot trace module '{where}' ({first}); list it under 'leaf' to keep it opaque "
            "(its channels then stay fixed), or make its forward free of Python control flow on tensor values"
        ) from None
    gm = fx.GraphModule(tracer.root, graph, type(model).__name__)
    gm.eval()
    _out_of_place(gm)
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(example)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ElastifyError(f"the model does not run on an example input of shape {list(example.shape)}: {first}; "
                            "check input_shape") from None
    return gm


def _out_of_place(gm: fx.GraphModule) -> None:
    """Make in-place activations out-of-place (same values).

    A skipped block hands its input on unchanged; an in-place ReLU after it would
    then overwrite a tensor that autograd (or another reader) still needs.
    """
    for m in gm.modules():
        if getattr(m, "inplace", False) is True:
            m.inplace = False
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.kwargs.get("inplace") is True:
            node.kwargs = {**node.kwargs, "inplace": False}
    gm.recompile()


# --------------------------------------------------------------------------- analysis
_PASS_MODULES = (
    nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish, nn.Hardsigmoid,
    nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Dropout, nn.Dropout2d, nn.AlphaDropout, nn.Identity, nn.MaxPool2d,
    nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d,
    nn.ReplicationPad2d, nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d,
)
_PASS_FUNCTIONS = {
    F.relu, torch.relu, F.relu_, torch.relu_, F.relu6, F.hardtanh, F.leaky_relu, F.elu, F.gelu, F.silu, F.mish,
    F.hardswish, F.hardsigmoid, torch.sigmoid, F.sigmoid, torch.tanh, F.tanh, F.softplus, F.dropout, F.dropout2d,
    torch.clamp, torch.clip, F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d,
    F.interpolate, F.pad, operator.neg, torch.neg, torch.exp, torch.abs,
}
_PASS_METHODS = {
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "clamp", "clamp_", "clip", "contiguous", "clone",
    "detach", "float", "neg", "exp", "abs", "hardswish",
}
_BINARY_FUNCTIONS = {
    operator.add, operator.iadd, operator.sub, operator.isub, operator.mul, operator.imul, operator.truediv,
    operator.itruediv, torch.add, torch.sub, torch.mul, torch.div, torch.maximum, torch.minimum,
}
_BINARY_METHODS = {"add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_"}
_ADDS = {operator.add, operator.iadd, torch.add, "add", "add_"}
_REDUCE = {torch.mean, torch.sum, torch.amax, "mean", "sum", "amax"}
_CAT = {torch.cat, torch.concat, torch.concatenate}
_FLATTEN = {torch.flatten, "flatten", "view", "reshape", torch.reshape}


def _shape(node: Any) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _nodes_in(args: Any) -> list[fx.Node]:
    out: list[fx.Node] = []
    fx.node.map_arg(args, out.append)
    return out


class _Analyser:
    def __init__(self, gm: fx.GraphModule, fixed: Iterable[str]) -> None:
        self.gm = gm
        self.modules = dict(gm.named_modules())
        self.fixed_patterns = list(fixed)
        self.parent: dict[int, int] = {}
        self.size: dict[int, int] = {}
        self.name: dict[int, str] = {}
        self.reason: dict[int, str] = {}
        self.spaces: dict[str, Space] = {}
        self.layers: dict[str, Layer] = {}
        self.others: list[str] = []

    # -- union-find over groups
    def new_group(self, size: int, name: str, reason: str | None = None) -> int:
        g = len(self.parent)
        self.parent[g], self.size[g], self.name[g] = g, size, name
        if reason:
            self.reason[g] = reason
        return g

    def find(self, g: int) -> int:
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            keep, drop = min(ra, rb), max(ra, rb)  # the earlier group (graph order) names the union
            self.parent[drop] = keep
            if drop in self.reason:
                self.reason.setdefault(keep, self.reason[drop])

    def fix(self, space: Space | None, reason: str) -> None:
        for seg in space or ():
            self.reason.setdefault(self.find(seg.group), reason)

    # -- spaces
    def space(self, node: Any) -> Space | None:
        return self.spaces.get(node.name) if isinstance(node, fx.Node) else None

    def fresh(self, node: fx.Node, name: str, reason: str | None = None) -> Space | None:
        shape = _shape(node)
        if shape is None or len(shape) < 2:
            return None
        return (Segment(self.new_group(shape[1], name, reason), shape[1]),)

    def opaque(self, node: fx.Node, what: str) -> None:
        """An operation sliver cannot follow: everything it touches keeps its full width."""
        reason = f"used by {what} (node '{node.name}'), which sliver cannot slice"
        for arg in _nodes_in((node.args, node.kwargs)):
            self.fix(self.space(arg), reason)
        space = self.fresh(node, node.name, reason)
        if space is not None:
            self.spaces[node.name] = space

    # -- the pass
    def run(self) -> None:
        for node in self.gm.graph.nodes:
            shape = _shape(node)
            if node.op == "placeholder":
                space = self.fresh(node, node.name, "the model's input")
                if space:
                    self.spaces[node.name] = space
            elif node.op == "get_attr":
                space = self.fresh(node, node.target, f"tensor attribute '{node.target}'")
                if space:
                    self.spaces[node.name] = space
            elif node.op == "output":
                for arg in _nodes_in(node.args):
                    self.fix(self.space(arg), "the model's output")
            elif shape is None:
                continue  # sizes, shapes, python values: no channels to follow
            elif len(shape) not in (2, 4):
                self.opaque(node, f"an operation with a {len(shape)}-D result")
            elif node.op == "call_module":
                self.module(node, self.modules[node.target])
            elif node.op == "call_function":
                self.function(node, node.target)
            elif node.op == "call_method":
                self.function(node, node.target)

    def module(self, node: fx.Node, m: nn.Module) -> None:
        x = node.args[0] if node.args else None
        space_in = self.space(x)
        shape = _shape(node)
        if space_in is None:
            return self.opaque(node, f"module '{node.target}'")
        user_fixed = any(fnmatch.fnmatchcase(node.target, p) for p in self.fixed_patterns)
        if isinstance(m, nn.Conv2d) and len(node.args) == 1 and not node.kwargs:
            positions = shape[2] * shape[3]
            kernel = m.kernel_size[0]
            if m.groups == 1:
                space_out = self.fresh(node, node.target, "marked fixed" if user_fixed else None)
                self.layers[node.name] = Layer(node.name, node.target, "conv", space_in, space_out, positions)
            elif m.groups == m.in_channels == m.out_channels:
                space_out = space_in
                if user_fixed:
                    self.fix(space_in, "marked fixed")
                self.layers[node.name] = Layer(node.name, node.target, "dwconv", space_in, space_out, positions)
            else:
                reason = f"grouped convolution '{node.target}' (groups={m.groups})"
                self.fix(space_in, reason)
                space_out = self.fresh(node, node.target, reason)
                self.others.append(node.name)
            if (node.name in self.layers and kernel >= 5 and kernel % 2 == 1 and m.kernel_size[0] == m.kernel_size[1]
                    and m.dilation == (1, 1) and m.padding == (kernel // 2, kernel // 2) and m.padding_mode == "zeros"):
                self.layers[node.name].kernels = tuple(range(3, kernel + 1, 2))
            self.spaces[node.name] = space_out
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            if user_fixed:
                self.fix(space_in, "marked fixed")
            self.layers[node.name] = Layer(node.name, node.target, "bn", space_in, space_in)
            self.spaces[node.name] = space_in
        elif isinstance(m, nn.Linear) and len(_shape(x) or ()) == 2:
            space_out = self.fresh(node, node.target, "marked fixed" if user_fixed else None)
            self.layers[node.name] = Layer(node.name, node.target, "linear", space_in, space_out)
            self.spaces[node.name] = space_out
        elif isinstance(m, _PASS_MODULES):
            if user_fixed:
                self.fix(space_in, "marked fixed")
            self.spaces[node.name] = space_in
            self._count_other(node, m)
        elif isinstance(m, nn.Flatten):
            self.flatten(node, x)
        else:
            self.opaque(node, f"module '{node.target}' ({type(m).__name__})")
            self._count_other(node, m)

    def _count_other(self, node: fx.Node, m: nn.Module) -> None:
        if any(True for _ in m.parameters()):
            self.others.append(node.name)

    def function(self, node: fx.Node, fn: Any) -> None:
        args = node.args
        x = args[0] if args else None
        name = fn if isinstance(fn, str) else getattr(fn, "__name__", str(fn))
        if fn in _PASS_FUNCTIONS or fn in _PASS_METHODS:
            space = self.space(x)
            if space is None or _shape(x) != _shape(node) and fn not in (F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d,
                                                                         F.adaptive_max_pool2d, F.interpolate, F.pad):
                return self.opaque(node, f"'{name}'")
            self.spaces[node.name] = space
        elif fn in _BINARY_FUNCTIONS or fn in _BINARY_METHODS:
            self.binary(node, name)
        elif fn in _REDUCE:
            dims = node.kwargs.get("dim", args[1] if len(args) > 1 else None)
            ndim = len(_shape(x) or ())
            dims = [dims] if isinstance(dims, int) else list(dims or [])
            if self.space(x) is None or not dims or any(d % ndim == 1 or d % ndim == 0 for d in dims):
                return self.opaque(node, f"'{name}' over the channel axis")
            self.spaces[node.name] = self.space(x)
        elif fn in _CAT:
            tensors = args[0] if args else node.kwargs.get("tensors")
            dim = node.kwargs.get("dim", args[1] if len(args) > 1 else 0)
            spaces = [self.space(t) for t in tensors]
            if dim % len(_shape(node)) != 1 or any(s is None for s in spaces):
                return self.opaque(node, f"'{name}' along axis {dim}")
            self.spaces[node.name] = tuple(seg for s in spaces for seg in s)
        elif fn in _FLATTEN:
            self.flatten(node, x)
        else:
            self.opaque(node, f"'{name}'")

    def flatten(self, node: fx.Node, x: Any) -> None:
        shape_in, shape_out, space = _shape(x), _shape(node), self.space(x)
        if space is not None and shape_in == shape_out:
            self.spaces[node.name] = space
        elif (space is not None and shape_in is not None and len(shape_in) == 4 and len(shape_out) == 2
              and shape_out[0] == shape_in[0] and shape_out[1] == shape_in[1] * shape_in[2] * shape_in[3]):
            hw = shape_in[2] * shape_in[3]
            self.spaces[node.name] = tuple(Segment(s.group, s.size, s.repeat * hw) for s in space)
        else:
            self.opaque(node, f"reshape '{node.name}'")

    def binary(self, node: fx.Node, name: str) -> None:
        out = _shape(node)
        spaces = []
        for arg in node.args[:2]:
            shape = _shape(arg)
            if shape is None:
                continue  # a python number
            axis = 1 - (len(out) - len(shape))
            if axis < 0 or shape[axis] == 1 and out[1] != 1:
                continue  # broadcast along channels
            space = self.space(arg)
            if space is None:
                return self.opaque(node, f"'{name}'")
            spaces.append(space)
        if not spaces:
            return self.opaque(node, f"'{name}'")
        first = spaces[0]
        for other in spaces[1:]:
            if [(s.size, s.repeat) for s in other] == [(s.size, s.repeat) for s in first]:
                for a, b in zip(first, other):
                    self.union(a.group, b.group)
            else:
                reason = f"'{name}' (node '{node.name}') of tensors with different channel layouts"
                self.fix(first, reason)
                self.fix(other, reason)
        self.spaces[node.name] = first

    # -- results
    def resolve(self, space: Space) -> Space:
        return tuple(Segment(self.find(s.group), s.size, s.repeat) for s in space)


def analyse(gm: fx.GraphModule, fixed: Iterable[str] = (), min_channels: int = 4) -> Analysis:
    """Channel groups, per-channel layers and skippable blocks of a traced model (see the module docstring)."""
    a = _Analyser(gm, fixed)
    a.run()
    spaces = {name: a.resolve(s) for name, s in a.spaces.items()}
    for layer in a.layers.values():
        layer.space_in, layer.space_out = a.resolve(layer.space_in), a.resolve(layer.space_out)
    roots = sorted({a.find(g) for g in a.parent})
    groups = {r: Group(r, a.size[r], a.name[r], a.reason.get(r)) for r in roots}
    for g in groups.values():
        if g.fixed is None and g.size < min_channels:
            g.fixed = f"only {g.size} channels"
    head = None
    out_node = next(n for n in gm.graph.nodes if n.op == "output")
    last = out_node.args[0]
    if isinstance(last, fx.Node) and last.name in a.layers and a.layers[last.name].kind == "linear":
        head = last.name
    blocks = _skippable_blocks(gm, spaces)
    node_block = {n: i for i, b in enumerate(blocks) for n in b.nodes}
    touch: dict[int, set[str]] = {}
    for name, space in spaces.items():
        for seg in space:
            touch.setdefault(seg.group, set()).add(name)
    for layer in a.layers.values():  # a layer touches the groups it reads too
        for seg in layer.space_in:
            touch.setdefault(seg.group, set()).add(layer.node)
    for g in groups.values():
        owners = {node_block.get(n, -1) for n in touch.get(g.id, ())}
        if len(owners) == 1:
            g.block = owners.pop()
    return Analysis(gm, groups, a.layers, blocks, spaces, node_block, head, a.others)


def _skippable_blocks(gm: fx.GraphModule, spaces: dict[str, Space]) -> list[Block]:
    """Residual branches ``a + f(a)`` whose nodes read only ``a`` and feed only the addition."""
    nodes = list(gm.graph.nodes)
    order = {n: i for i, n in enumerate(nodes)}
    candidates: list[Block] = []
    for add in nodes:
        if not (add.op in ("call_function", "call_method") and add.target in _ADDS and len(add.args) >= 2):
            continue
        a0, a1 = add.args[0], add.args[1]
        if not (isinstance(a0, fx.Node) and isinstance(a1, fx.Node)) or _shape(a0) != _shape(add) or _shape(a1) != _shape(add):
            continue
        for keep, out in ((a0, a1), (a1, a0)):
            branch = _branch(keep, out, add, order)
            if branch:
                candidates.append(Block(_common_scope(branch, gm), add.name, keep.name, frozenset(n.name for n in branch)))
                break
    adds = {b.add for b in candidates}
    # a branch that contains another block's addition is an outer block: keep the inner ones
    blocks = [b for b in candidates if not (b.nodes & adds)]
    return blocks


def _branch(keep: fx.Node, out: fx.Node, add: fx.Node, order: dict[fx.Node, int]) -> list[fx.Node] | None:
    """The nodes computing ``out`` from ``keep`` alone, used only inside the branch and by ``add``; else None."""
    if order[out] <= order[keep]:
        return None
    branch: set[fx.Node] = set()
    stack = [out]
    while stack:
        n = stack.pop()
        if n in branch:
            continue
        if n.op == "placeholder" or order[n] <= order[keep]:
            return None  # reads something older than the branch input
        branch.add(n)
        for arg in n.all_input_nodes:
            if arg is keep or arg.op == "get_attr":
                continue
            stack.append(arg)
    if not any(keep in n.all_input_nodes for n in branch):
        return None
    for n in branch:
        if any(u not in branch and u is not add for u in n.users):
            return None
    return sorted(branch, key=order.__getitem__)


def _common_scope(branch: list[fx.Node], gm: fx.GraphModule) -> str:
    """The innermost module path shared by a branch's nodes (for display), or the addition's name."""
    paths = []
    for n in branch:
        stack = n.meta.get("nn_module_stack")
        if stack:
            paths.append(list(stack.keys())[-1] if n.op != "call_module" else n.target)
        elif n.op == "call_module":
            paths.append(n.target)
    if not paths:
        return branch[-1].name
    parts = [p.split(".") for p in paths]
    common = []
    for items in zip(*parts):
        if len(set(items)) != 1:
            break
        common.append(items[0])
    return ".".join(common) or branch[-1].name
