"""Elastic transformer encoders: layers, heads per layer, FFN width per layer and hidden size.

:class:`ElasticTransformer` holds the weights of the largest encoder. A sub-network
keeps the first ``layers`` blocks (or ``layers`` blocks spread over the depth, with
``keep="spread"``); in each kept block the first ``heads`` attention heads and the
first ``ffn`` FFN neurons; and the first ``hidden`` channels of the residual
stream. Every forward slices the full weights (views, no copies), so after
:meth:`ElasticTransformer.reorder` has sorted heads and neurons by importance the
slices keep the most important units.

Families (:mod:`sliver.elastic.vit`, :mod:`sliver.elastic.bert`) add an embedding
in front and a head behind; :meth:`ElasticTransformer.extract` cuts a config out as
plain ``nn.Linear``/``nn.LayerNorm`` modules whose outputs equal the super-network's.

Search-space dimensions: ``layers`` (scalar depth, gating the per-layer genes),
``heads`` and ``ffn`` (one gene per layer) and ``hidden`` (scalar).
"""

from __future__ import annotations

import abc
from typing import Any, Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sliver.elastic.base import Supernet, build_extracted, taylor_importance
from sliver.errors import UserError
from sliver.space import Config, DepthGate, Dimension, SearchSpace

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"gelu": F.gelu, "relu": F.relu}


# --- the math shared by the elastic and the extracted encoder ----------------------
def attention(x: torch.Tensor, q: tuple, k: tuple, v: tuple, o: tuple, heads: int, head_dim: int,
              mask: torch.Tensor | None, dropout: float, training: bool) -> torch.Tensor:
    """Multi-head self-attention of ``x`` (B, S, D) with ``(weight, bias)`` pairs for q/k/v/o.

    ``mask`` is an additive float mask broadcastable to (B, heads, S, S) (0 to keep,
    a large negative number to drop a key), or None.
    """
    b, s, _ = x.shape

    def split(wb):
        return F.linear(x, *wb).view(b, s, heads, head_dim).transpose(1, 2)

    ctx = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=mask,
                                         dropout_p=dropout if training else 0.0)
    return F.linear(ctx.transpose(1, 2).reshape(b, s, heads * head_dim), *o)


def encoder_block(x: torch.Tensor, mask: torch.Tensor | None, w: dict[str, tuple], heads: int, head_dim: int,
                  hidden: int, norm_first: bool, activation: str, eps: float, dropout: float,
                  training: bool) -> torch.Tensor:
    """One encoder block (attention + FFN, residuals, layer norms) from explicit weights ``w``."""
    act = _ACTIVATIONS[activation]

    def attn(h):
        out = attention(h, w["q"], w["k"], w["v"], w["o"], heads, head_dim, mask, dropout, training)
        return F.dropout(out, dropout, training)

    def ffn(h):
        return F.dropout(F.linear(act(F.linear(h, *w["fc1"])), *w["fc2"]), dropout, training)

    def ln(h, name):
        return F.layer_norm(h, (hidden,), *w[name], eps)

    if norm_first:  # pre-LN (ViT)
        x = x + attn(ln(x, "ln1"))
        return x + ffn(ln(x, "ln2"))
    x = ln(x + attn(x), "ln1")  # post-LN (BERT)
    return ln(x + ffn(x), "ln2")


def padding_mask(keep: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Additive attention mask (B, 1, 1, S) from a (B, S) keep-mask (1/True = a real token)."""
    drop = (~keep.bool()).to(dtype)[:, None, None, :]
    return drop * torch.finfo(dtype).min


# --- elastic modules ------------------------------------------------------------------
class ElasticEncoderLayer(nn.Module):
    """Encoder block holding its largest weights; ``forward`` runs the first heads/neurons/channels."""

    def __init__(self, hidden: int, heads: int, head_dim: int, ffn: int, norm_first: bool,
                 activation: str, eps: float, dropout: float) -> None:
        super().__init__()
        inner = heads * head_dim
        self.q, self.k, self.v = nn.Linear(hidden, inner), nn.Linear(hidden, inner), nn.Linear(hidden, inner)
        self.o = nn.Linear(inner, hidden)
        self.ln1, self.ln2 = nn.LayerNorm(hidden, eps=eps), nn.LayerNorm(hidden, eps=eps)
        self.fc1, self.fc2 = nn.Linear(hidden, ffn), nn.Linear(ffn, hidden)
        self.head_dim, self.norm_first, self.activation, self.eps, self.dropout = head_dim, norm_first, activation, eps, dropout

    def sliced(self, hidden: int, heads: int, ffn: int) -> dict[str, tuple]:
        """(weight, bias) views of the sub-block: leading rows/columns of each full weight."""
        inner = heads * self.head_dim
        w = {n: (getattr(self, n).weight[:inner, :hidden], getattr(self, n).bias[:inner]) for n in "qkv"}
        w["o"] = (self.o.weight[:hidden, :inner], self.o.bias[:hidden])
        w["fc1"] = (self.fc1.weight[:ffn, :hidden], self.fc1.bias[:ffn])
        w["fc2"] = (self.fc2.weight[:hidden, :ffn], self.fc2.bias[:hidden])
        for n in ("ln1", "ln2"):
            w[n] = (getattr(self, n).weight[:hidden], getattr(self, n).bias[:hidden])
        return w

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, hidden: int, heads: int, ffn: int) -> torch.Tensor:
        return encoder_block(x, mask, self.sliced(hidden, heads, ffn), heads, self.head_dim, hidden,
                             self.norm_first, self.activation, self.eps, self.dropout, self.training)

    # --- importance reordering: permutations that leave the block's function unchanged
    def permute_heads(self, order: torch.Tensor) -> None:
        """Reorder the heads (``order[i]`` = old index of new head ``i``)."""
        d = self.head_dim
        rows = (order[:, None] * d + torch.arange(d)).reshape(-1)
        for lin in (self.q, self.k, self.v):
            lin.weight.data = lin.weight.data[rows].contiguous()
            lin.bias.data = lin.bias.data[rows].contiguous()
        self.o.weight.data = self.o.weight.data[:, rows].contiguous()

    def permute_neurons(self, order: torch.Tensor) -> None:
        """Reorder the FFN neurons (``order[i]`` = old index of new neuron ``i``)."""
        self.fc1.weight.data = self.fc1.weight.data[order].contiguous()
        self.fc1.bias.data = self.fc1.bias.data[order].contiguous()
        self.fc2.weight.data = self.fc2.weight.data[:, order].contiguous()

    def unit_scores(self, weight_times: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-head and per-neuron scores: sums of ``weight_times(param)`` over the weights of each unit."""
        n_heads = self.q.weight.shape[0] // self.head_dim
        heads = sum(weight_times(lin.weight).sum(1) + weight_times(lin.bias) for lin in (self.q, self.k, self.v))
        heads = heads + weight_times(self.o.weight).sum(0)
        heads = heads.view(n_heads, self.head_dim).sum(1)
        neurons = weight_times(self.fc1.weight).sum(1) + weight_times(self.fc1.bias) + weight_times(self.fc2.weight).sum(0)
        return heads, neurons


class EncoderLayer(nn.Module):
    """Plain encoder block (what :meth:`ElasticTransformer.extract` produces): no slicing, no state."""

    def __init__(self, hidden: int, heads: int, head_dim: int, ffn: int, norm_first: bool,
                 activation: str, eps: float) -> None:
        super().__init__()
        inner = heads * head_dim
        self.q, self.k, self.v = nn.Linear(hidden, inner), nn.Linear(hidden, inner), nn.Linear(hidden, inner)
        self.o = nn.Linear(inner, hidden)
        self.ln1, self.ln2 = nn.LayerNorm(hidden, eps=eps), nn.LayerNorm(hidden, eps=eps)
        self.fc1, self.fc2 = nn.Linear(hidden, ffn), nn.Linear(ffn, hidden)
        self.hidden, self.heads, self.head_dim = hidden, heads, head_dim
        self.norm_first, self.activation, self.eps = norm_first, activation, eps

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        w = {n: (getattr(self, n).weight, getattr(self, n).bias) for n in ("q", "k", "v", "o", "fc1", "fc2", "ln1", "ln2")}
        return encoder_block(x, mask, w, self.heads, self.head_dim, self.hidden, self.norm_first,
                             self.activation, self.eps, 0.0, False)


def plain_layers(arch: dict[str, Any]) -> nn.ModuleList:
    """The extracted blocks described by an ``arch_config`` dict."""
    return nn.ModuleList(
        EncoderLayer(arch["hidden"], h, arch["head_dim"], f, arch["norm_first"], arch["activation"], arch["eps"])
        for h, f in zip(arch["heads"], arch["ffn"])
    )


# --- the super-network ----------------------------------------------------------------
class ElasticTransformer(Supernet):
    """Elastic encoder stack; subclasses define ``embed`` (input -> tokens, mask) and ``head``.

    Subclasses name their modules exactly as their extracted counterparts do, so that
    extraction is "take the leading slice of every weight" (see :meth:`extract`).
    """

    #: family name, also the ``kind`` of the extracted model's ``arch_config``
    family: str = ""

    def __init__(self, *, hidden: int, num_layers: int, num_heads: int, head_dim: int, ffn: int,
                 norm_first: bool, activation: str = "gelu", eps: float = 1e-5, dropout: float = 0.0,
                 layer_choices: Sequence[int] | None = None, head_choices: Sequence[int] | None = None,
                 ffn_choices: Sequence[int] | None = None, hidden_choices: Sequence[int] | None = None,
                 keep: str = "first") -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise UserError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        if keep not in ("first", "spread"):
            raise UserError(f"keep must be 'first' (the first k layers) or 'spread' (k layers spread over the depth), got {keep!r}")
        self.hidden, self.num_layers, self.num_heads, self.head_dim, self.ffn = hidden, num_layers, num_heads, head_dim, ffn
        self.norm_first, self.activation, self.eps, self.dropout, self.keep = norm_first, activation, eps, dropout, keep
        self.layer_choices = size_choices("layer_choices", layer_choices, num_layers, default=range(1, num_layers + 1))
        self.head_choices = size_choices("head_choices", head_choices, num_heads, default=[num_heads])
        self.ffn_choices = size_choices("ffn_choices", ffn_choices, ffn, default=[ffn])
        self.hidden_choices = size_choices("hidden_choices", hidden_choices, hidden, default=[hidden])
        self.layers = nn.ModuleList(
            ElasticEncoderLayer(hidden, num_heads, head_dim, ffn, norm_first, activation, eps, dropout)
            for _ in range(num_layers)
        )
        self.space = SearchSpace(
            [
                Dimension("layers", tuple(self.layer_choices)),
                Dimension("heads", tuple(self.head_choices), num_layers),
                Dimension("ffn", tuple(self.ffn_choices), num_layers),
                Dimension("hidden", tuple(self.hidden_choices)),
            ],
            [DepthGate("layers", (num_layers,), ("heads", "ffn"))],
        )

    # --- family hooks ------------------------------------------------------------
    @abc.abstractmethod
    def embed(self, x: torch.Tensor, hidden: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Input batch -> (tokens (B, S, hidden), additive attention mask or None)."""

    @abc.abstractmethod
    def head(self, h: torch.Tensor, mask: torch.Tensor | None, hidden: int) -> torch.Tensor:
        """Encoder output -> model output (logits or pooled embeddings)."""

    @abc.abstractmethod
    def family_arch(self) -> dict[str, Any]:
        """Embedding/head fields of the ``arch_config`` (everything but the encoder stack)."""

    @abc.abstractmethod
    def seq_len(self) -> int:
        """Sequence length the default costs are counted at."""

    @abc.abstractmethod
    def outer_macs(self, hidden: int, seq_len: int) -> int:
        """MACs outside the encoder blocks (embedding and head), batch 1."""

    # --- running a sub-network -------------------------------------------------------
    def kept_layers(self, depth: int) -> list[int]:
        """Indices of the full model's blocks that a sub-network of ``depth`` blocks runs."""
        if self.keep == "first":
            return list(range(depth))
        return [round((i + 1) * self.num_layers / depth) - 1 for i in range(depth)]

    def _set_active(self, config: Config) -> None:
        # the blocks hold no per-config state: forward reads the config and slices as it goes
        self._kept = self.kept_layers(config["layers"])

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run the active sub-network's embedding and blocks: (tokens (B, S, hidden), attention mask)."""
        cfg = self.active_config
        h, mask = self.embed(x, cfg["hidden"])
        for i, layer in enumerate(self._kept):
            h = self.layers[layer](h, mask, cfg["hidden"], cfg["heads"][i], cfg["ffn"][i])
        return h, mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, mask = self.encode(x)
        return self.head(h, mask, self.active_config["hidden"])

    # --- cutting out -----------------------------------------------------------------
    def arch_config(self, config: Config) -> dict[str, Any]:
        config = self.space.validate(config)
        n = config["layers"]
        return {
            "kind": self.family, "hidden": config["hidden"], "head_dim": self.head_dim,
            "heads": list(config["heads"][:n]), "ffn": list(config["ffn"][:n]),
            "norm_first": self.norm_first, "activation": self.activation, "eps": self.eps,
            **self.family_arch(),
        }

    def extract(self, config: Config) -> nn.Module:
        config = self.space.validate(config)
        model = build_extracted(self.arch_config(config))
        kept = self.kept_layers(config["layers"])
        return load_leading_slices(model, self.state_dict(), kept)

    # --- costs -----------------------------------------------------------------------
    def costs(self, config: Config, seq_len: int | None = None) -> dict[str, float]:
        """Params of the extracted model and MACs (batch 1) at ``seq_len`` tokens, attention included."""
        config = self.space.validate(config)
        s = self.seq_len() if seq_len is None else int(seq_len)
        d, n = config["hidden"], config["layers"]
        macs = self.outer_macs(d, s)
        for heads, ffn in zip(config["heads"][:n], config["ffn"][:n]):
            inner = heads * self.head_dim
            macs += 4 * s * d * inner  # q, k, v and output projections
            macs += 2 * s * s * inner  # scores q.k and the weighted sum of v
            macs += 2 * s * d * ffn
        return {"params": float(self._params(config)), "macs": float(macs)}

    def _params(self, config: Config) -> int:
        """Parameters of the extracted model, summed block by block.

        A block's parameters depend only on (hidden, heads, FFN width), so each
        block's share (a two-block model minus a one-block model) is counted
        once and cached: a search scoring thousands of candidates' costs would
        otherwise build every candidate's model (tens of milliseconds each for MiniLM).
        """
        d, n = config["hidden"], config["layers"]
        blocks = list(zip(config["heads"][:n], config["ffn"][:n]))
        if not blocks:
            return self._arch_params(d, (), ())
        (h0, f0) = blocks[0]
        total = self._arch_params(d, (h0,), (f0,))
        for h, f in blocks[1:]:
            total += self._arch_params(d, (h, h), (f, f)) - self._arch_params(d, (h,), (f,))
        return total

    def _arch_params(self, hidden: int, heads: tuple[int, ...], ffn: tuple[int, ...]) -> int:
        cache = self.__dict__.setdefault("_param_counts", {})
        key = (hidden, heads, ffn)
        if key not in cache:
            arch = {**self.arch_config(self.max_config()), "hidden": hidden, "heads": list(heads), "ffn": list(ffn)}
            with torch.device("meta"):  # count parameters without allocating them
                cache[key] = sum(p.numel() for p in build_extracted(arch).parameters())
        return cache[key]

    # --- importance reordering -------------------------------------------------------
    @torch.no_grad()
    def reorder(self, method: str = "magnitude", batches: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
                loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy) -> dict[str, list]:
        """Sort every block's heads and FFN neurons by importance, most important first.

        ``method="magnitude"`` scores a unit by the L1 norm of its weights;
        ``method="gradient"`` by the first-order Taylor estimate ``|w * dL/dw|``
        summed over ``batches`` of ``(input, target)`` run through the largest
        network. Only permutes units, so the largest network's outputs are
        unchanged. Returns the new order of each block (old indices).
        """
        if method == "magnitude":
            scores = [layer.unit_scores(torch.abs) for layer in self.layers]
        elif method == "gradient":
            if batches is None:
                raise ValueError("reorder(method='gradient') needs batches of (input, target) to score units")
            scores = self._gradient_scores(batches, loss_fn)
        else:
            raise ValueError(f"reorder method must be 'magnitude' or 'gradient', got {method!r}")
        orders: dict[str, list] = {"heads": [], "ffn": []}
        for layer, (head_score, neuron_score) in zip(self.layers, scores):
            h_order = torch.argsort(head_score, descending=True, stable=True)
            n_order = torch.argsort(neuron_score, descending=True, stable=True)
            layer.permute_heads(h_order)
            layer.permute_neurons(n_order)
            orders["heads"].append(h_order.tolist())
            orders["ffn"].append(n_order.tolist())
        return orders

    def _gradient_scores(self, batches, loss_fn) -> list[tuple[torch.Tensor, torch.Tensor]]:
        grads = taylor_importance(self, batches, loss_fn)
        return [layer.unit_scores(lambda p: grads[id(p)]) for layer in self.layers]

def load_leading_slices(model: nn.Module, full: dict[str, torch.Tensor], kept: Sequence[int]) -> nn.Module:
    """Fill an extracted ``model`` from the super-network's state ``full``: its block ``i`` is block ``kept[i]``,
    and every tensor is the leading block of the super-network's (elastic dimensions keep leading units)."""
    state = {}
    for name, target in model.state_dict().items():
        source = name
        if name.startswith("layers."):
            i, rest = name[len("layers."):].split(".", 1)
            source = f"layers.{kept[int(i)]}.{rest}"
        state[name] = full[source][tuple(slice(0, s) for s in target.shape)].clone()
    model.load_state_dict(state)
    return model.eval()


def size_choices(field: str, given: Sequence[int] | None, largest: int, default: Iterable[int]) -> list[int]:
    """The sorted choices of an elastic size (``default`` when none are ``given``); a one-line error unless
    they are integers from 1 up to and including ``largest``."""
    values = sorted({int(v) for v in (default if given is None else given)})
    # the largest choice must be the full size, so the largest sub-network uses every weight
    if not values or values[0] < 1 or values[-1] != largest:
        raise UserError(f"{field} must be integers between 1 and {largest} that include {largest}, got {values}")
    return values
