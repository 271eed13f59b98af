"""Searching architecture and quantisation policy together: the ``quantization:`` section of a search YAML, and :func:`joint_search`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from sliver.config import StrictModel
from sliver.quant.evaluator import QuantEvaluator
from sliver.quant.space import ACT_MODES, PRECISIONS, WEIGHT_MODES, QuantError, quantization_space
from sliver.space import SearchSpace


def joint_search(
    evaluator: QuantEvaluator,
    objectives: tuple[str, ...] = ("accuracy", "latency_ms", "model_size"),
    strategy: str = "nsga2",
    budget: int = 50,
    **search_options: Any,
):
    """Search architecture and quantisation policy together with any strategy of :mod:`sliver.search`.

    A thin wrapper over :class:`sliver.search.Search` on ``evaluator.space``:
    ``search_options`` (``store``, ``study_name``, ``constraints``, ``seed``,
    ``strategy_options``, ...) pass through. Returns its ``SearchResult``.
    """
    from sliver.search import Search

    return Search(evaluator.space, evaluator, list(objectives), strategy=strategy, budget=budget, **search_options).run()


class QuantizationSection(StrictModel):
    """The ``quantization:`` section of a search YAML, e.g. ``quantization: {search: true}``.

    ``search: true`` searches the policy with the architecture; ``precisions``,
    ``weight_modes`` and ``act_modes`` narrow the genes (one choice pins it,
    e.g. ``precisions: [int8]`` quantises every layer).
    """

    search: bool = False
    precisions: list[Literal["int8", "fp32"]] = Field(default_factory=lambda: list(PRECISIONS), min_length=1)
    weight_modes: list[Literal["per_channel", "per_tensor"]] = Field(default_factory=lambda: list(WEIGHT_MODES), min_length=1)
    act_modes: list[Literal["asymmetric", "symmetric", "dynamic"]] = Field(default_factory=lambda: list(ACT_MODES), min_length=1)
    calib_samples: int = Field(256, ge=1, description="calibration images drawn (seeded) from the calibration split")
    accuracy_subset: float | None = Field(None, gt=0, le=1)
    seed: int = 0

    def space(self, supernet: Any) -> SearchSpace:
        """The super-network's space with this section's quantisation genes."""
        return quantization_space(supernet, tuple(self.precisions), tuple(self.weight_modes), tuple(self.act_modes))

    def evaluator(self, supernet: Any, data: Any, target: Any = "cpu-ort-b1", **kwargs: Any) -> QuantEvaluator:
        """The :class:`QuantEvaluator` this section describes (its ``space`` is what the search explores)."""
        return QuantEvaluator(supernet, data, target=target, space=self.space(supernet), calib_samples=self.calib_samples,
                              accuracy_subset=self.accuracy_subset, seed=self.seed, **kwargs)

    def evaluator_from_checkpoint(self, path: str | Path, target: Any = "cpu-ort-b1", **kwargs: Any) -> QuantEvaluator:
        """The same, for a training checkpoint (its data set and content hash come from the checkpoint)."""
        from sliver.train.checkpoint import checkpoint_data, load_supernet

        supernet, info = load_supernet(path)
        data = checkpoint_data(info)
        if data is None:
            raise QuantError(f"checkpoint {path} records no data set; build the evaluator with evaluator(supernet, data)")
        return self.evaluator(supernet, data, target, supernet_hash=info["hash"], **kwargs)
