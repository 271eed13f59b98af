"""Elastic Llama-family decoders: kept layers, attention heads in whole KV groups, FFN neurons.

:class:`ElasticLlama` holds the weights of a pre-norm decoder with RMSNorm, rotary
positions, grouped-query attention and a SwiGLU FFN (Llama, SmolLM2, Qwen-style
without biases), with a tied or separate LM head. A sub-network config says:

* ``layers`` — how many layers run: the most important ones by their block
  influence on calibration text (ShortGPT), in their original order, so depth
  drops the least important layers wherever they are, not only the last ones
  (before :meth:`ElasticLlama.calibrate` the order is the layers' own, and depth
  drops the last layers);
* ``heads`` — query heads of each layer, listed by importance rank (gene ``r``
  belongs to the ``r``-th most important layer, so the genes of dropped layers
  are the inactive tail), a multiple of the query heads sharing one KV head, so
  whole KV groups are kept (the first ``heads`` query heads and the first
  ``heads / group`` KV heads);
* ``ffn`` — FFN neurons of each layer, by rank too (the first ``ffn``).

Ranked depth makes the sub-networks nested the way training needs: a random
draw of ``layers`` keeps the layers every larger draw keeps, where independent
per-layer flags would train random subsets that no search would pick.

The hidden width stays fixed. Every forward slices the full weights, so after
:meth:`ElasticLlama.calibrate` has sorted KV groups and neurons by their mean
activation on calibration text (as Minitron does) the slices keep the most
important units. :meth:`ElasticLlama.extract` cuts a config out as a plain
:class:`LlamaDecoder` with the same logits. Both run a :class:`KVCache` for
incremental decoding.

The plain block (:class:`DecoderLayer`) is the one home of the block's
parameters; the elastic block subclasses it and only adds slicing and
importance permutations.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sliver.elastic.base import Supernet, build_extracted, register_builder, register_family
from sliver.elastic.transformer import load_leading_slices, size_choices
from sliver.errors import UserError
from sliver.space import Config, DepthGate, Dimension, SearchSpace


# --- the math shared by the elastic and the extracted decoder -----------------------
def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Llama's RMSNorm: statistics in float32, scaled by ``weight``."""
    x32 = x.float()
    return weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def rotary_tables(positions: torch.Tensor, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) of shape (S, head_dim) for the rotary embedding in the half-split layout that
    Hugging Face's Llama uses (dimension ``i`` pairs with ``i + head_dim / 2``)."""
    inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = positions.float()[:, None] * inv_freq[None, :]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, H, S, D) queries or keys by their positions' angles."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


def decoder_block(x: torch.Tensor, w: dict[str, torch.Tensor], heads: int, kv_heads: int, head_dim: int,
                  eps: float, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None,
                  past: tuple[torch.Tensor, torch.Tensor] | None = None,
                  taps: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """One pre-norm decoder block from explicit weights ``w``; returns (output, (keys, values) so far).

    ``mask`` is a boolean (S, past + S) mask (True: attend) or None (attend to all); ``past`` the block's cached
    keys and values (B, kv_heads, P, D). ``taps``, if given, receives the attention
    context per head (B, S, heads, D) and the FFN activations (B, S, ffn) for importance.
    """
    b, s, _ = x.shape
    h = rms_norm(x, w["attn_norm"], eps)
    q = F.linear(h, w["q"]).view(b, s, heads, head_dim).transpose(1, 2)
    k = F.linear(h, w["k"]).view(b, s, kv_heads, head_dim).transpose(1, 2)
    v = F.linear(h, w["v"]).view(b, s, kv_heads, head_dim).transpose(1, 2)
    q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
    if past is not None:
        k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
    group = heads // kv_heads
    # KV head j serves query heads j*group .. (j+1)*group-1, as Hugging Face's repeat_kv
    ctx = F.scaled_dot_product_attention(q, k.repeat_interleave(group, 1), v.repeat_interleave(group, 1), attn_mask=mask)
    ctx = ctx.transpose(1, 2)
    x = x + F.linear(ctx.reshape(b, s, heads * head_dim), w["o"])
    h = rms_norm(x, w["ffn_norm"], eps)
    act = F.silu(F.linear(h, w["gate"])) * F.linear(h, w["up"])
    if taps is not None:
        taps["heads"], taps["ffn"] = ctx, act
    return x + F.linear(act, w["down"]), (k, v)


class KVCache:
    """Keys and values of the tokens decoded so far, one (keys, values) pair per run block."""

    def __init__(self) -> None:
        self.layers: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.length = 0

    def past(self, i: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        return self.layers[i] if i < len(self.layers) else None

    def store(self, i: int, kv: tuple[torch.Tensor, torch.Tensor]) -> None:
        if i < len(self.layers):
            self.layers[i] = kv
        else:
            self.layers.append(kv)

    def nbytes(self) -> int:
        """Bytes the cache holds now."""
        return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in self.layers)


def run_decoder(ids: torch.Tensor, embed: torch.Tensor, blocks: Sequence[tuple[dict[str, torch.Tensor], int, int]],
                norm: torch.Tensor, lm_head: torch.Tensor, head_dim: int, eps: float, rope_base: float,
                cache: KVCache | None = None, taps: list[dict] | None = None) -> torch.Tensor:
    """Logits (B, S, vocab) of token ``ids`` (B, S) through ``blocks`` of (weights, heads, kv_heads).

    With a ``cache`` the ids continue the cached tokens (their positions follow
    them) and the cache is extended; ``taps`` (a list) gets one dict per block
    with its input, output and :func:`decoder_block`'s taps.
    """
    past_len = 0 if cache is None else cache.length
    s = ids.shape[1]
    cos, sin = rotary_tables(torch.arange(past_len, past_len + s), head_dim, rope_base)
    # causal, past tokens all visible; one new token sees everything, and no mask is much faster
    # (CPU attention with a mask and a single query is ~20x slower)
    mask = None if s == 1 else torch.ones(s, past_len + s, dtype=torch.bool).tril(past_len)
    x = F.embedding(ids, embed)
    for i, (w, heads, kv_heads) in enumerate(blocks):
        tap = None if taps is None else {"input": x}
        x, kv = decoder_block(x, w, heads, kv_heads, head_dim, eps, cos, sin, mask,
                              None if cache is None else cache.past(i), tap)
        if cache is not None:
            cache.store(i, kv)
        if tap is not None:
            tap["output"] = x
            taps.append(tap)
    if cache is not None:
        cache.length += s
    return F.linear(rms_norm(x, norm, eps), lm_head)


# --- the extracted decoder ----------------------------------------------------------------
class DecoderLayer(nn.Module):
    """A plain decoder block: attention with ``heads`` query and ``kv_heads`` KV heads, SwiGLU FFN."""

    def __init__(self, hidden: int, heads: int, kv_heads: int, head_dim: int, ffn: int, eps: float) -> None:
        super().__init__()
        if heads % kv_heads:
            raise UserError(f"heads ({heads}) must be a multiple of kv_heads ({kv_heads})")
        self.q = nn.Linear(hidden, heads * head_dim, bias=False)
        self.k = nn.Linear(hidden, kv_heads * head_dim, bias=False)
        self.v = nn.Linear(hidden, kv_heads * head_dim, bias=False)
        self.o = nn.Linear(heads * head_dim, hidden, bias=False)
        self.gate, self.up = nn.Linear(hidden, ffn, bias=False), nn.Linear(hidden, ffn, bias=False)
        self.down = nn.Linear(ffn, hidden, bias=False)
        self.attn_norm, self.ffn_norm = nn.RMSNorm(hidden, eps=eps), nn.RMSNorm(hidden, eps=eps)
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim

    def weights(self) -> dict[str, torch.Tensor]:
        w = {n: getattr(self, n).weight for n in ("q", "k", "v", "o", "gate", "up", "down")}
        w["attn_norm"], w["ffn_norm"] = self.attn_norm.weight, self.ffn_norm.weight
        return w


class LlamaDecoder(nn.Module):
    """A plain Llama-family decoder (what :meth:`ElasticLlama.extract` produces).

    ``forward(ids, cache=None)`` -> logits (B, S, vocab); with a :class:`KVCache`
    the ids continue the cached tokens.
    """

    def __init__(self, arch: dict[str, Any]) -> None:
        super().__init__()
        self.arch = dict(arch)
        d = arch["hidden"]
        self.embed = nn.Embedding(arch["vocab_size"], d)
        self.layers = nn.ModuleList(DecoderLayer(d, h, h // arch["group"], arch["head_dim"], f, arch["eps"])
                                    for h, f in zip(arch["heads"], arch["ffn"]))
        self.norm = nn.RMSNorm(d, eps=arch["eps"])
        # a tied head reads the embedding matrix, so it is not a parameter of its own
        self.lm_head = None if arch["tie_embeddings"] else nn.Linear(d, arch["vocab_size"], bias=False)

    def forward(self, ids: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        head = self.embed.weight if self.lm_head is None else self.lm_head.weight
        blocks = [(layer.weights(), layer.heads, layer.kv_heads) for layer in self.layers]
        return run_decoder(ids, self.embed.weight, blocks, self.norm.weight, head, self.arch["head_dim"],
                           self.arch["eps"], self.arch["rope_base"], cache)


@register_builder("llama")
def _build_llama(arch: dict[str, Any]) -> nn.Module:
    return LlamaDecoder(arch)


# --- the super-network ----------------------------------------------------------------------
def _config_key(config: Config | None) -> str:
    return json.dumps(config, sort_keys=True)


#: weight matrices whose leading rows a sub-network keeps (the others: leading columns), and which size
_ROWS = {"q": "q", "k": "kv", "v": "kv", "gate": "ffn", "up": "ffn"}
_COLUMNS = {"o": "q", "down": "ffn"}


class TargetAdapter(nn.Module):
    """One target's low-rank deltas ``B @ A`` for the seven weight matrices of every layer."""

    def __init__(self, layers: Sequence[ElasticDecoderLayer], rank: int, gen: torch.Generator) -> None:
        super().__init__()
        self.head_dim, self.group = layers[0].head_dim, layers[0].heads // layers[0].kv_heads
        self.a, self.b = nn.ParameterDict(), nn.ParameterDict()
        for pos, layer in enumerate(layers):
            for name in (*_ROWS, *_COLUMNS):
                out_dim, in_dim = getattr(layer, name).weight.shape
                self.a[f"{pos}_{name}"] = nn.Parameter(torch.randn(rank, in_dim, generator=gen) / in_dim ** 0.5)
                self.b[f"{pos}_{name}"] = nn.Parameter(torch.zeros(out_dim, rank))

    def deltas(self, pos: int, heads: int, ffn: int) -> dict[str, torch.Tensor]:
        """Layer ``pos``'s deltas, sliced like its weights (:meth:`ElasticDecoderLayer.sliced`) for ``heads`` and ``ffn``."""
        size = {"q": heads * self.head_dim, "kv": heads // self.group * self.head_dim, "ffn": ffn}
        out = {}
        for name, dim in _ROWS.items():
            out[name] = self.b[f"{pos}_{name}"][:size[dim]] @ self.a[f"{pos}_{name}"]
        for name, dim in _COLUMNS.items():
            out[name] = self.b[f"{pos}_{name}"] @ self.a[f"{pos}_{name}"][:, :size[dim]]
        return out


class ElasticDecoderLayer(DecoderLayer):
    """Decoder block holding its largest weights; ``sliced`` gives the first KV groups and neurons."""

    def sliced(self, heads: int, ffn: int) -> tuple[dict[str, torch.Tensor], int, int]:
        """(weight views, heads, kv_heads) of the sub-block: leading rows/columns of each weight."""
        kv_heads = heads // (self.heads // self.kv_heads)
        q_rows, kv_rows = heads * self.head_dim, kv_heads * self.head_dim
        w = {"q": self.q.weight[:q_rows], "k": self.k.weight[:kv_rows], "v": self.v.weight[:kv_rows],
             "o": self.o.weight[:, :q_rows], "gate": self.gate.weight[:ffn], "up": self.up.weight[:ffn],
             "down": self.down.weight[:, :ffn], "attn_norm": self.attn_norm.weight, "ffn_norm": self.ffn_norm.weight}
        return w, heads, kv_heads

    # --- importance reordering: permutations that leave the block's function unchanged
    def permute_groups(self, order: torch.Tensor) -> None:
        """Reorder the KV groups (``order[i]`` = old index of new group ``i``) with their query heads."""
        group, d = self.heads // self.kv_heads, self.head_dim
        q_rows = (order[:, None] * group * d + torch.arange(group * d)).reshape(-1)
        kv_rows = (order[:, None] * d + torch.arange(d)).reshape(-1)
        for lin, rows in ((self.q, q_rows), (self.k, kv_rows), (self.v, kv_rows)):
            lin.weight.data = lin.weight.data[rows].contiguous()
        self.o.weight.data = self.o.weight.data[:, q_rows].contiguous()

    def permute_neurons(self, order: torch.Tensor) -> None:
        """Reorder the FFN neurons (``order[i]`` = old index of new neuron ``i``)."""
        for lin in (self.gate, self.up):
            lin.weight.data = lin.weight.data[order].contiguous()
        self.down.weight.data = self.down.weight.data[:, order].contiguous()


@register_family("llama")
class ElasticLlama(Supernet):
    """Elastic Llama-family decoder; ``forward(ids, cache=None)`` -> next-token logits (B, S, vocab).

    ``head_choices`` must be multiples of the query heads per KV head
    (``num_heads / num_kv_heads``); by default every such multiple. ``ffn_choices``
    defaults to the full width only. Module names equal :class:`LlamaDecoder`'s,
    so extraction takes the leading slice of every weight. ``target_adapters``
    (``{"rank": r, "configs": [...]}``, as :meth:`supernet_config` records it)
    rebuilds :meth:`add_target_adapters`, so a checkpoint restores them.
    """

    family = "llama"
    onnx_dynamic_axes = {0: "batch", 1: "sequence"}
    #: the original model predicts the same next tokens, so it can teach every sub-network (Minitron)
    teacher_knows_task = True

    def __init__(self, *, vocab_size: int, hidden: int, num_layers: int, num_heads: int, num_kv_heads: int,
                 ffn: int, head_dim: int | None = None, eps: float = 1e-5, rope_base: float = 10000.0,
                 tie_embeddings: bool = True, seq_len: int = 256,
                 head_choices: Sequence[int] | None = None, ffn_choices: Sequence[int] | None = None,
                 depth_choices: Sequence[int] | None = None, target_adapters: dict[str, Any] | None = None) -> None:
        super().__init__()
        if num_kv_heads < 1 or num_heads % num_kv_heads:
            raise UserError(f"num_heads ({num_heads}) must be a positive multiple of num_kv_heads ({num_kv_heads})")
        self.group = num_heads // num_kv_heads
        self.head_dim = hidden // num_heads if head_dim is None else head_dim
        self.vocab_size, self.hidden, self.num_layers, self.num_heads = vocab_size, hidden, num_layers, num_heads
        self.num_kv_heads, self.ffn, self.eps, self.rope_base = num_kv_heads, ffn, eps, float(rope_base)
        self.tie_embeddings, self.default_seq_len = bool(tie_embeddings), seq_len
        self.head_choices = size_choices("head_choices", head_choices, num_heads,
                                     default=range(self.group, num_heads + 1, self.group))
        if any(h % self.group for h in self.head_choices):
            raise UserError(f"head_choices must be multiples of {self.group} (query heads per KV head) "
                            f"so that whole KV groups are kept, got {self.head_choices}")
        self.ffn_choices = size_choices("ffn_choices", ffn_choices, ffn, default=[ffn])
        self.depth_choices = size_choices("depth_choices", depth_choices, num_layers, default=range(1, num_layers + 1))
        self._teacher: list[nn.Module] = []  # a list, so the copy is no submodule and stays out of checkpoints
        self.embed = nn.Embedding(vocab_size, hidden)
        self.layers = nn.ModuleList(ElasticDecoderLayer(hidden, num_heads, num_kv_heads, self.head_dim, ffn, eps)
                                    for _ in range(num_layers))
        self.norm = nn.RMSNorm(hidden, eps=eps)
        self.lm_head = None if self.tie_embeddings else nn.Linear(hidden, vocab_size, bias=False)
        # ShortGPT block influence of each layer (1 - cos(input, output)), set by calibrate(); 0 = unknown
        self.register_buffer("layer_scores", torch.zeros(num_layers))
        self.space = SearchSpace(
            [
                Dimension("layers", tuple(self.depth_choices)),
                Dimension("heads", tuple(self.head_choices), num_layers),
                Dimension("ffn", tuple(self.ffn_choices), num_layers),
            ],
            # one group of ranked layers: the genes of ranks beyond ``layers`` are inactive
            [DepthGate("layers", (num_layers,), ("heads", "ffn"))],
        )
        self.adapters: nn.ModuleList | None = None
        self._adapter_slot: int | None = None  # the active config's adapter, if it is a target (an index: no submodule)
        self._adapter_slots: dict[str, int] = {}
        self._adapter_spec: dict[str, Any] | None = None
        if target_adapters is not None:
            self.add_target_adapters(target_adapters["configs"], target_adapters["rank"])

    # --- running a sub-network ---------------------------------------------------------------
    def layer_ranks(self) -> list[int]:
        """Layer positions from most to least important (:meth:`calibrate`'s block influence; ties, and an
        uncalibrated model, keep the earlier layer first)."""
        return torch.argsort(-self.layer_scores, stable=True).tolist()

    def kept_layers(self, config: Config) -> list[tuple[int, int, int]]:
        """(position, heads, ffn) of every layer ``config`` runs, in execution order."""
        ranked = self.layer_ranks()[:config["layers"]]
        return sorted((pos, config["heads"][r], config["ffn"][r]) for r, pos in enumerate(ranked))

    def _set_active(self, config: Config) -> None:
        self._kept = self.kept_layers(config)
        self._adapter_slot = self._adapter_slots.get(_config_key(config)) if self._adapter_slots else None

    def _blocks(self) -> list[tuple[dict[str, torch.Tensor], int, int]]:
        if self._active is None:
            self.activate(self.max_config())
        blocks = [self.layers[pos].sliced(heads, ffn) for pos, heads, ffn in self._kept]
        if self._adapter_slot is None:
            return blocks
        adapter = self.adapters[self._adapter_slot]
        out = []
        for (pos, heads, ffn), (w, h, kv) in zip(self._kept, blocks):
            w = dict(w)
            for name, delta in adapter.deltas(pos, heads, ffn).items():
                w[name] = w[name] + delta
            out.append((w, h, kv))
        return out

    # --- private low-rank adapters of fixed training targets ---------------------------------------
    def add_target_adapters(self, configs: Sequence[Config], rank: int, seed: int = 0) -> None:
        """Give each of ``configs`` its own low-rank adapter ``B @ A`` on every weight matrix of every layer.

        Sub-networks trained together pull the shared weights in different directions; a private
        adapter per target absorbs part of that conflict, as per-width batch norms do in slimmable
        networks. ``B`` starts at zero, so every sub-network computes what it did before; any
        other config runs the shared weights only. :meth:`extract` adds a target's adapter into
        its weights, so the cut-out model has the same size and speed.
        """
        if self.adapters is not None:
            raise UserError("this super-network already has target adapters")
        if rank < 1:
            raise UserError(f"target adapter rank must be at least 1, got {rank}")
        configs = [self.space.validate(c) for c in configs]
        gen = torch.Generator().manual_seed(seed)
        self.adapters = nn.ModuleList(TargetAdapter(self.layers, rank, gen) for _ in configs)
        self._adapter_slots = {_config_key(c): i for i, c in enumerate(configs)}
        self._adapter_spec = {"rank": int(rank), "configs": configs}
        if self._active is not None:  # the active config may be a target
            self._set_active(self._active)

    def _lm_head(self) -> torch.Tensor:
        return self.embed.weight if self.lm_head is None else self.lm_head.weight

    def forward(self, ids: torch.Tensor, cache: KVCache | None = None, taps: list[dict] | None = None) -> torch.Tensor:
        return run_decoder(ids, self.embed.weight, self._blocks(), self.norm.weight, self._lm_head(),
                           self.head_dim, self.eps, self.rope_base, cache, taps)

    def input_shape(self, config: Config, batch_size: int = 1) -> tuple[int, ...]:
        return (batch_size, self.default_seq_len)

    def example_input(self, config: Config, batch_size: int = 1, seed: int = 0) -> torch.Tensor:
        """Random token ids, shape (batch_size, seq_len)."""
        gen = torch.Generator().manual_seed(seed)
        return torch.randint(0, self.vocab_size, self.input_shape(config, batch_size), generator=gen)

    def depth_config(self, layers: int, config: Config | None = None) -> Config:
        """``config`` (default: the largest) running only the ``layers`` most important layers."""
        config = self.max_config() if config is None else config
        if layers not in self.depth_choices:
            raise UserError(f"layers must be one of depth_choices {self.depth_choices}, got {layers}")
        return self.space.validate({**config, "layers": layers})

    # --- cutting out --------------------------------------------------------------------------
    def arch_config(self, config: Config) -> dict[str, Any]:
        kept = self.kept_layers(self.space.validate(config))
        return {"kind": "llama", "vocab_size": self.vocab_size, "hidden": self.hidden, "head_dim": self.head_dim,
                "group": self.group, "heads": [h for _, h, _ in kept], "ffn": [f for _, _, f in kept],
                "eps": self.eps, "rope_base": self.rope_base, "tie_embeddings": self.tie_embeddings}

    def extract(self, config: Config) -> nn.Module:
        config = self.space.validate(config)
        model = build_extracted(self.arch_config(config))
        kept = self.kept_layers(config)
        state = {k: v for k, v in self.state_dict().items() if not k.startswith("adapters.")}
        model = load_leading_slices(model, state, [pos for pos, _, _ in kept])
        slot = self._adapter_slots.get(_config_key(config))
        if slot is not None:  # the target's private adapter becomes part of its weights
            with torch.no_grad():
                for layer, (pos, heads, ffn) in zip(model.layers, kept):
                    for name, delta in self.adapters[slot].deltas(pos, heads, ffn).items():
                        getattr(layer, name).weight.add_(delta)
        return model

    def supernet_config(self) -> dict[str, Any]:
        return {"family": "llama", "vocab_size": self.vocab_size, "hidden": self.hidden,
                "num_layers": self.num_layers, "num_heads": self.num_heads, "num_kv_heads": self.num_kv_heads,
                "ffn": self.ffn, "head_dim": self.head_dim, "eps": self.eps, "rope_base": self.rope_base,
                "tie_embeddings": self.tie_embeddings, "seq_len": self.default_seq_len,
                "head_choices": self.head_choices, "ffn_choices": self.ffn_choices, "depth_choices": self.depth_choices,
                **({"target_adapters": self._adapter_spec} if self._adapter_spec is not None else {})}

    def teacher_model(self) -> nn.Module:
        """A frozen copy of the largest network as it was at the first call: the teacher that training distils
        from. The trainer asks before it loads a checkpoint, so this is the original pre-trained model (its
        units possibly sorted by :meth:`calibrate`, which keeps its logits), never the weights being trained."""
        if not self._teacher:
            teacher = self.extract(self.max_config()).requires_grad_(False)
            self._teacher.append(teacher)
        return self._teacher[0]

    # --- costs ----------------------------------------------------------------------------------
    def costs(self, config: Config, seq_len: int | None = None) -> dict[str, float]:
        """Exact costs of the extracted model: ``params`` (all), ``params_no_embed`` (without the
        embedding and LM head), ``kv_bytes_per_token`` (cache growth per token at the weights' dtype)
        and ``macs`` of a ``seq_len``-token prefill (batch 1, attention counted in full)."""
        config = self.space.validate(config)
        s = self.default_seq_len if seq_len is None else int(seq_len)
        d, hd = self.hidden, self.head_dim
        embed = self.vocab_size * d * (1 if self.tie_embeddings else 2)
        body, kv, macs = d, 0, s * d * self.vocab_size  # final norm; the LM head
        for _, heads, ffn in self.kept_layers(config):
            kv_heads = heads // self.group
            linear = 2 * d * heads * hd + 2 * d * kv_heads * hd + 3 * d * ffn
            body += linear + 2 * d  # two RMSNorm weights
            kv += 2 * kv_heads * hd
            macs += s * linear + 2 * s * s * heads * hd  # projections; scores q.k and the weighted sum of v
        return {"params": float(embed + body), "params_no_embed": float(body),
                "kv_bytes_per_token": float(kv * self.embed.weight.element_size()), "macs": float(macs)}

    # --- importance (Minitron: mean activation magnitudes on calibration text) -------------------------
    @torch.no_grad()
    def calibrate(self, batches: Iterable[torch.Tensor]) -> dict[str, list]:
        """Sort every layer's KV groups and FFN neurons by importance and score the layers.

        Runs the largest network on ``batches`` of token ids (B, S). A neuron's score is
        its mean |SwiGLU activation|, a KV group's the mean |attention context| of its
        query heads (Minitron); a layer's the block influence ``1 - cos(input, output)``
        averaged over tokens (ShortGPT), kept in ``layer_scores``: the rank order the
        ``layers`` gene keeps. Only permutes units, so the largest network's logits are
        unchanged (a config's ``layers`` now keeps other layers). Returns the
        new order of each layer (old indices) and the layer scores.
        """
        if self.adapters is not None:
            raise UserError("calibrate before adding target adapters: sorting the units would not sort the adapters")
        previous = self._active
        self.activate(self.max_config())
        group_sum = torch.zeros(self.num_layers, self.num_kv_heads)
        neuron_sum = torch.zeros(self.num_layers, self.ffn)
        layer_sum = torch.zeros(self.num_layers)
        tokens = 0
        for ids in batches:
            taps: list[dict] = []
            self(ids, taps=taps)
            n = ids.numel()
            for i, tap in enumerate(taps):
                heads = tap["heads"].abs().float().mean(dim=(0, 1, 3))  # (heads,)
                group_sum[i] += heads.view(self.num_kv_heads, self.group).sum(1) * n
                neuron_sum[i] += tap["ffn"].abs().float().mean(dim=(0, 1)) * n
                cos = F.cosine_similarity(tap["input"].float(), tap["output"].float(), dim=-1)
                layer_sum[i] += (1 - cos).sum()
            tokens += n
        if tokens == 0:
            raise UserError("calibrate needs at least one batch of token ids")
        orders: dict[str, list] = {"heads": [], "ffn": []}
        for layer, g_score, n_score in zip(self.layers, group_sum, neuron_sum):
            g_order = torch.argsort(g_score, descending=True, stable=True)
            n_order = torch.argsort(n_score, descending=True, stable=True)
            layer.permute_groups(g_order)
            layer.permute_neurons(n_order)
            orders["heads"].append(g_order.tolist())
            orders["ffn"].append(n_order.tolist())
        self.layer_scores.copy_(layer_sum / tokens)
        orders["layers"] = self.layer_scores.tolist()
        if previous is not None:
            self.activate(previous)
        return orders


# --- using a decoder ------------------------------------------------------------------------------
@torch.no_grad()
def generate(model: nn.Module, ids: torch.Tensor, max_new_tokens: int, eos_id: int | None = None) -> torch.Tensor:
    """Greedy continuation of ``ids`` (1, S) with a KV cache: the prompt and the new tokens (1, S + n)."""
    cache = KVCache()
    logits = model(ids, cache)
    out = [ids]
    for _ in range(max_new_tokens):
        token = logits[:, -1].argmax(-1, keepdim=True)
        out.append(token)
        if eos_id is not None and int(token) == eos_id:
            break
        logits = model(token, cache)
    return torch.cat(out, dim=1)


def perplexity(model: nn.Module, ids: torch.Tensor, batch_size: int = 8) -> float:
    """Perplexity of next-token prediction over the rows of ``ids`` (N, S): exp of the mean token NLL."""
    from torch.utils.data import TensorDataset

    from sliver.train.accuracy import perplexity as rows_perplexity

    return rows_perplexity(model, TensorDataset(ids[:, :-1], ids[:, 1:]), batch_size=batch_size)
