"""Export of a quantised sub-network: the ONNX file, its accuracy checked against the stored one, and a card."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from sliver.core import Config
from sliver.quant.evaluator import QuantEvaluator
from sliver.quant.quantize import onnx_node_names
from sliver.quant.space import QuantError, fp32_nodes, split_config

#: a re-measured accuracy of an exported model must agree with the stored one to rounding
ACCURACY_TOLERANCE = 1e-6


def export_quantized(
    evaluator: QuantEvaluator,
    config: Config,
    path: str | Path,
    stored: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Write the quantised ONNX model of ``config`` to ``path`` and verify its accuracy against ``stored``.

    The accuracy is re-measured on the written file; if ``stored`` (the values
    recorded in the store) holds an accuracy that differs, :class:`QuantError`
    is raised and the file is removed. Returns the checks and the excluded nodes;
    a ``<path>.json`` card records them with the config.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    config = evaluator.space.canonical(config)
    evaluator.quantized_model(config, path)
    accuracy = evaluator.accuracy(path, config)
    if stored and "accuracy" in stored and abs(stored["accuracy"] - accuracy) > ACCURACY_TOLERANCE:
        path.unlink(missing_ok=True)
        raise QuantError(
            f"re-measured accuracy {accuracy:.4f} of the quantised model differs from the stored {stored['accuracy']:.4f}: "
            "the checkpoint, data or calibration changed since the search"
        )
    float_path = evaluator.float_model(split_config(evaluator.supernet, config)[0])
    card = {
        "config": config,
        "key": evaluator.space.key(config),
        "accuracy": accuracy,
        "stored": dict(stored or {}),
        "model_size": os.path.getsize(path),
        "fp32_nodes": fp32_nodes(evaluator.supernet, config, onnx_node_names(float_path)),
        "supernet_hash": evaluator.supernet_hash,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }
    Path(f"{path}.json").write_text(json.dumps(card, indent=2))
    return card
