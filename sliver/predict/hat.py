"""HAT (Hardware-Aware Transformers) latency data and its published MLP latency predictors.

The HAT latency files list 2,000 SubTransformers each, described by 10
averaged architecture features, with measured encoder and decoder latency. The
published predictors are MLPs (10 -> 400 x 3 -> 1) whose input is the features
divided by ``feature-norm`` and whose output times ``lat-norm`` is the
encoder + decoder latency in ms (see each predictor's YAML config).

Loading a published predictor needs torch (legacy pickles), imported inside
:meth:`HatMLP.load` only; its forward pass runs in numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sliver.config import numeric_columns, read_csv
from sliver.errors import UserError

#: the 10 architecture features of a HAT latency row, in file order
FEATURES = (
    "encoder_embed_dim", "encoder_layer_num", "encoder_ffn_embed_dim_avg", "encoder_self_attention_heads_avg",
    "decoder_embed_dim", "decoder_layer_num", "decoder_ffn_embed_dim_avg", "decoder_self_attention_heads_avg",
    "decoder_ende_attention_heads_avg", "decoder_arbitrary_ende_attn_avg",
)


def load_latency(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Features ``(n, 10)`` and total (encoder + decoder mean) latency in ms of one HAT latency CSV."""
    frame = read_csv(path, "HAT latency table")
    missing = [c for c in (*FEATURES, "latency_mean_encoder", "latency_mean_decoder") if c not in frame.columns]
    if missing:
        raise UserError(f"{path}: not a HAT latency file, column '{missing[0]}' is missing")
    frame = numeric_columns(frame, [*FEATURES, "latency_mean_encoder", "latency_mean_decoder"], path)
    total = frame["latency_mean_encoder"] + frame["latency_mean_decoder"]
    return frame[list(FEATURES)].to_numpy(np.float64), total.to_numpy(np.float64)


def cost_features(X: np.ndarray) -> np.ndarray:
    """The 10 features plus per-stack work terms that latency scales with.

    Latency grows with layers x (embedding x FFN) for the feed-forward blocks,
    layers x embedding^2 for the attention projections, layers x heads for the
    attention kernels, and, in the decoder, with the encoder layers it attends
    to. Giving these products explicitly lets a linear model fit them.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != len(FEATURES):
        raise ValueError(f"HAT features: expected {len(FEATURES)} columns {list(FEATURES)}, got shape {X.shape}")
    Ee, Le, Fe, He, Ed, Ld, Fd, Hd, Hx, A = X.T
    work = [
        Le * Ee * Fe, Le * Ee * Ee, Le * He, Le * Ee,
        Ld * Ed * Fd, Ld * Ed * Ed, Ld * Hd, Ld * Hx, Ld * Ed, Ld * Ed * Ee, Ld * A, Ld * A * Ee, Ld * Hx * A,
    ]
    return np.column_stack([X, *work])


@dataclass
class HatMLP:
    """A published HAT latency predictor, evaluated in numpy."""

    weights: list[tuple[np.ndarray, np.ndarray]]
    feature_norm: np.ndarray
    lat_norm: float

    @classmethod
    def load(cls, checkpoint: str | Path, config: str | Path) -> "HatMLP":
        """Read a ``predictors/*.pt`` state dict and its ``predictor_configs/*.yml``."""
        import torch
        import yaml

        cfg = yaml.safe_load(Path(config).read_text())
        for field in ("feature-norm", "lat-norm", "hidden-layer-num"):
            if field not in cfg:
                raise UserError(f"{config}: field '{field}' is missing; is this a HAT predictor config?")
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        names = ["first_layer"] + [f"layers.{i}" for i in range(int(cfg["hidden-layer-num"]))] + ["predict"]
        try:
            weights = [(state[f"{n}.weight"].numpy().astype(np.float64), state[f"{n}.bias"].numpy().astype(np.float64)) for n in names]
        except KeyError as exc:
            raise UserError(f"{checkpoint}: missing tensor {exc}; not a HAT latency predictor") from None
        return cls(weights, np.asarray(cfg["feature-norm"], dtype=np.float64), float(cfg["lat-norm"]))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted encoder + decoder latency (ms) of each feature row."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.feature_norm.size:
            raise ValueError(f"HAT features: expected {self.feature_norm.size} columns, got shape {X.shape}")
        h = X / self.feature_norm
        for i, (w, b) in enumerate(self.weights):
            h = h @ w.T + b
            if i < len(self.weights) - 1:
                h = np.maximum(h, 0.0)  # ReLU after every layer but the output
        return h[:, 0] * self.lat_norm


def datasets(root: str | Path) -> list[dict[str, Path | str]]:
    """Each HAT latency file with its published predictor and config: ``name``, ``csv``, ``checkpoint``, ``config``.

    Configs are named ``wmt14.en-de_cpu_xeon.yml``; files and checkpoints ``wmt14ende_cpu_xeon``.
    """
    root = Path(root)
    out: list[dict[str, Path | str]] = []
    for config in sorted((root / "predictor_configs").glob("*.yml")):
        name = config.stem.replace(".", "").replace("-", "")
        csv, checkpoint = root / "latency" / f"{name}_all.csv", root / "predictors" / f"{name}.pt"
        if csv.is_file() and checkpoint.is_file():
            out.append({"name": name, "csv": csv, "checkpoint": checkpoint, "config": config})
    return out
