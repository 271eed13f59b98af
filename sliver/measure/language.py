"""The language-model objectives of a decoder super-network (:class:`~sliver.elastic.llama.ElasticLlama`).

:class:`~sliver.measure.model.ModelEvaluator` dispatches here for them:

* ``perplexity`` — exp of the mean next-token NLL on the validation split
  (``TensorDataset(inputs, targets)`` rows of token ids), or on a seeded subset
  of its rows;
* ``prefill_ms`` — a prompt of the super-network's sequence length (seeded random
  ids) at the target's batch, run through the decoder while it fills a KV cache;
* ``decode_ms`` — one decoding step (one new token per row) with a KV cache
  holding such a prompt; every timed run decodes the same position again, so
  the runs do the same work;
* ``params_no_embed`` and ``kv_bytes_per_token`` — exact, from ``supernet.costs``.

Both latencies use the one timing protocol (:func:`~sliver.measure.timing.time_runs`)
on the target's runtime: PyTorch eager with :class:`~sliver.elastic.llama.KVCache`,
or, for ONNX Runtime and OpenVINO, two ONNX graphs of the extracted decoder —
the prefill graph (``input_ids`` -> ``logits``, ``present.{i}.key``,
``present.{i}.value``) and the decode-step graph (``input_ids`` of one token and
``past_key_values.{i}.key`` / ``.value`` of every layer -> ``logits`` and the
grown ``present`` keys and values), with free batch and sequence axes.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from sliver.elastic.llama import ElasticLlama, KVCache
from sliver.errors import UserError
from sliver.measure.hardware import HardwareTarget
from sliver.measure.latency import onnx_graph, torch_latency, torch_threads
from sliver.measure.timing import LatencyResult, time_onnx

#: latency objectives of a language model (keyed by the hardware fingerprint, like latency_ms)
LM_HARDWARE = frozenset({"prefill_ms", "decode_ms"})
#: exact costs of a language model, from ``supernet.costs``
LM_COSTS = frozenset({"params_no_embed", "kv_bytes_per_token"})
#: every objective only a language model has
LM_OBJECTIVES = LM_HARDWARE | LM_COSTS | {"perplexity"}
#: what ModelEvaluator measures of a language model when no objectives are named (perplexity only with data)
DEFAULT_LM_OBJECTIVES = ("perplexity", "prefill_ms", "decode_ms", "params", "params_no_embed", "kv_bytes_per_token")
#: rows per forward pass of the perplexity: the logits of a batch take rows x sequence x vocabulary floats
PERPLEXITY_BATCH = 8
#: objectives ModelEvaluator measures for other families that mean nothing for a language model
_NOT_FOR_LM = {
    "accuracy": "it is the top-1 of a classifier; measure a language model by 'perplexity'",
    # the decoder runs its layers as functions of their weights, so the per-module hooks would see no activation
    "peak_memory": "its per-layer hooks do not see a decoder that runs its layers as functions",
}


def is_language_model(supernet: nn.Module) -> bool:
    """True for a decoder super-network whose objectives are this module's."""
    return isinstance(supernet, ElasticLlama)


def quality_objective(supernet: nn.Module) -> str:
    """The objective that says how good a sub-network is, measured on the data set: ``perplexity`` for a
    language model, ``accuracy`` for the rest (what an export re-measures)."""
    return "perplexity" if is_language_model(supernet) else "accuracy"


def check_objectives(supernet: nn.Module, names: Sequence[str]) -> None:
    """A one-line :class:`UserError` for an objective the super-network's kind cannot have."""
    if is_language_model(supernet):
        for name in names:
            if name in _NOT_FOR_LM:
                raise UserError(f"objective '{name}' is not measured for a language model: {_NOT_FOR_LM[name]}")
        return
    for name in names:
        if name in LM_OBJECTIVES:
            family = getattr(supernet, "family", type(supernet).__name__)
            raise UserError(f"objective '{name}' needs a language-model super-network (family 'llama'), "
                            f"not '{family}'; remove it from the objectives")


# --- perplexity -----------------------------------------------------------------------------------
def measure_perplexity(model: nn.Module, val: Any, deadline: float | None = None) -> float:
    """Perplexity of ``model`` on ``val`` rows of (inputs, next-token targets), ``PERPLEXITY_BATCH`` rows a pass."""
    from sliver.train.accuracy import perplexity

    return perplexity(model, val, batch_size=PERPLEXITY_BATCH, deadline=deadline)


# --- latency ------------------------------------------------------------------------------------------
def prefill_latency(model: nn.Module, prompt: torch.Tensor, target: HardwareTarget) -> LatencyResult:
    """Latency of ``prompt`` (B, S) token ids through the decoder while it fills a KV cache, on ``target``."""
    _check_local(target, "prefill_ms")
    if target.backend == "torch":
        return torch_latency(model, prompt, target, prepare=lambda m, ids: lambda: m(ids, KVCache()))
    target.require_available()  # before the export, which is the slow part
    with torch_threads(target.threads):
        graph = prefill_onnx(model, prompt)
    return time_onnx(graph, {"input_ids": prompt.numpy()}, target)


def decode_latency(model: nn.Module, prompt: torch.Tensor, target: HardwareTarget) -> LatencyResult:
    """Latency of one decoding step (one token per row) after ``prompt`` (B, S) fills a KV cache, on ``target``."""
    _check_local(target, "decode_ms")
    if target.backend == "torch":
        return torch_latency(model, prompt, target, prepare=decode_step)
    target.require_available()
    token, cache = _after_prompt(model, prompt)
    with torch_threads(target.threads):
        graph = decode_onnx(model, token, cache)
    return time_onnx(graph, decode_feed(token, cache), target)


def decode_step(model: nn.Module, prompt: torch.Tensor) -> Callable[[], object]:
    """One decoding step after ``prompt``, repeatable: each call decodes the same position again (the cache is
    set back to the prompt's) and returns that step's logits (B, 1, vocab)."""
    token, cache = _after_prompt(model, prompt)
    layers, length = list(cache.layers), cache.length

    def step() -> torch.Tensor:
        logits = model(token, cache)
        cache.layers[:], cache.length = layers, length
        return logits

    return step


def _after_prompt(model: nn.Module, prompt: torch.Tensor) -> tuple[torch.Tensor, KVCache]:
    """The greedy next token (B, 1) after ``prompt`` and the KV cache that holds the prompt."""
    cache = KVCache()
    with torch.inference_mode():
        token = model(prompt, cache)[:, -1:].argmax(-1)
    return token, cache


def _check_local(target: HardwareTarget, objective: str) -> None:
    if target.remote:
        raise UserError(f"objective '{objective}' is timed on this machine only; a remote worker "
                        f"({target.remote}) times one-input models (latency_ms): use a target without '@HOST:PORT'")


# --- the ONNX graphs -------------------------------------------------------------------------------
class PrefillGraph(nn.Module):
    """``input_ids`` (B, S) -> logits (B, S, vocab) and every layer's keys and values (B, kv_heads, S, head_dim)."""

    def __init__(self, decoder: nn.Module) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
        cache = KVCache()
        logits = self.decoder(ids, cache)
        return (logits, *[t for kv in cache.layers for t in kv])


class DecodeGraph(nn.Module):
    """``input_ids`` (B, 1) and every layer's past keys and values (B, kv_heads, P, head_dim) -> logits (B, 1, vocab)
    and the keys and values grown by the new token; the positions continue the past's length P."""

    def __init__(self, decoder: nn.Module) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, ids: torch.Tensor, *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
        cache = KVCache()
        cache.layers = [(past[2 * i], past[2 * i + 1]) for i in range(len(past) // 2)]
        # a size read from a tensor is traced, so the exported graph takes any past length
        cache.length = past[0].shape[2]
        logits = self.decoder(ids, cache)
        return (logits, *[t for kv in cache.layers for t in kv])


def kv_names(prefix: str, layers: int) -> list[str]:
    """``{prefix}.{i}.key``, ``{prefix}.{i}.value`` for every layer, in the graphs' order."""
    return [f"{prefix}.{i}.{part}" for i in range(layers) for part in ("key", "value")]


def _layers(model: nn.Module) -> int:
    n = len(getattr(model, "layers", ()))
    if n == 0:
        raise UserError("a decoder without layers has no KV cache to export; keep at least one layer")
    return n


def prefill_onnx(model: nn.Module, prompt: torch.Tensor) -> bytes:
    """The prefill graph of an extracted decoder (see the module docstring), batch and sequence free."""
    present = kv_names("present", _layers(model))
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "logits": {0: "batch", 1: "sequence"},
            **{name: {0: "batch", 2: "sequence"} for name in present}}
    with _fixed_branch():
        return onnx_graph(PrefillGraph(model), (prompt,), ["input_ids"], ["logits", *present], axes)


def decode_onnx(model: nn.Module, token: torch.Tensor, cache: KVCache) -> bytes:
    """The decode-step graph of an extracted decoder, traced with ``token`` (B, 1) after the prompt in ``cache``;
    batch and past length free."""
    n = _layers(model)
    past, present = kv_names("past_key_values", n), kv_names("present", n)
    axes = {"input_ids": {0: "batch"}, "logits": {0: "batch"},
            **{name: {0: "batch", 2: "past_sequence"} for name in past},
            **{name: {0: "batch", 2: "sequence"} for name in present}}
    tensors = tuple(t for kv in cache.layers for t in kv)
    with _fixed_branch():
        return onnx_graph(DecodeGraph(model), (token, *tensors), ["input_ids", *past], ["logits", *present], axes)


@contextmanager
def _fixed_branch() -> Iterator[None]:
    # the decoder skips the causal mask for a single new token; the trace fixes that branch, which is right for
    # both graphs (the prefill graph keeps the mask, also correct for one token; the decode graph takes one token)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        yield


def decode_feed(token: torch.Tensor, cache: KVCache) -> dict[str, np.ndarray]:
    """The decode-step graph's inputs: ``token`` (B, 1) and the cached keys and values."""
    names = kv_names("past_key_values", len(cache.layers))
    feed = {"input_ids": token.numpy()}
    feed.update({name: t.numpy() for name, t in zip(names, (t for kv in cache.layers for t in kv))})
    return feed

