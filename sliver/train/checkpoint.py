"""Training checkpoints: written atomically, verified by a content hash on load.

A checkpoint is one ``torch.save`` file holding the super-network's constructor
arguments and weights, the optimiser, scheduler and sampling-rule states, the
step, the RNG states (python, numpy, torch), the YAML config and the data spec.
It is written to a temporary file in the same folder and renamed over the old
one (``os.replace`` is atomic), so a run killed at any moment leaves either the
previous checkpoint or the new one, never half a file.

The content hash of the weights identifies the super-network everywhere else
(the results store keys measurements by it).
"""

from __future__ import annotations

import glob
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
import yaml

from sliver.elastic.base import Supernet, build_supernet
from sliver.errors import UserError

FORMAT = "sliver-checkpoint/1"


class CheckpointError(UserError):
    """A checkpoint is missing, corrupt, or does not fit the super-network; the message is one line."""


def weights_hash(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 (hex, 24 characters) over the names, dtypes, shapes and bytes of a state dict, in name order."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:24]


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> str:
    """Atomically write ``state`` (which must hold ``model``, the weights) with format tag and hash; returns the hash."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {**state, "format": FORMAT, "hash": weights_hash(state["model"])}
    fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return state["hash"]


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}."


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Delete the half-written temporary files that a kill during :func:`save_checkpoint` left beside ``path``.

    Call it when a run starts, before anything saves (a save in progress
    elsewhere would lose its file). Returns the files removed.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    stale = sorted(path.parent.glob(f"{glob.escape(_temporary_prefix(path))}*.tmp"))
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, checking its format and weights hash."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # torch raises many types (and long messages) for a truncated or foreign file
        raise CheckpointError(f"{path}: not a readable sliver checkpoint (corrupt, truncated or not written by "
                              "sliver train); point to the run's checkpoint.pt, or retrain into a new folder") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a sliver checkpoint (expected format {FORMAT!r})")
    missing = [key for key in ("model", "supernet") if not isinstance(state.get(key), dict)]
    if missing:
        raise CheckpointError(f"{path}: the checkpoint has no '{missing[0]}' section (the weights and the super-network's "
                              "arguments); it is damaged or was not written by sliver train; retrain into a new folder")
    if not all(isinstance(v, torch.Tensor) for v in state["model"].values()):
        raise CheckpointError(f"{path}: its 'model' section is not a set of weight tensors (the file is damaged); retrain into a new folder")
    if weights_hash(state["model"]) != state.get("hash"):
        raise CheckpointError(f"{path}: the weights do not match the stored content hash (the file is corrupt)")
    return state


def load_weights(supernet: Supernet, state: dict[str, Any], source: str = "checkpoint") -> None:
    """Load a checkpoint's weights into ``supernet``, or raise if it was written for another architecture."""
    mine, theirs = supernet.supernet_config(), state.get("supernet")
    if mine != theirs:
        diff = _first_difference(theirs or {}, mine)
        raise CheckpointError(f"{source} was written for a different super-network ({diff}); use a new output folder or the matching supernet config")
    try:
        supernet.load_state_dict(state["model"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{source} does not fit this super-network: {str(exc).splitlines()[0]}") from None


def load_supernet(path: str | Path) -> tuple[Supernet, dict[str, Any]]:
    """Rebuild the super-network saved in a checkpoint, in eval mode.

    Returns ``(supernet, info)``; ``info`` holds ``hash`` (identity of the
    weights), ``data`` (the :func:`sliver.data.load_dataset` arguments used in
    training), ``config`` (the training YAML as a dict), ``supernet`` (the
    constructor arguments), ``step``, ``epoch`` and ``finished``.
    """
    state = load_checkpoint(path)
    try:
        supernet = build_supernet(state["supernet"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot rebuild its super-network ({exc})") from None
    load_weights(supernet, state, str(path))
    supernet.eval()
    info = {
        "hash": state["hash"],
        "data": state.get("data", {}),
        "config": yaml.safe_load(state.get("config_yaml") or "") or {},
        "supernet": state["supernet"],
        "step": state.get("step", 0),
        "epoch": state.get("epoch", 0),
        "finished": state.get("finished", False),
        "path": str(path),
    }
    return supernet, info



def checkpoint_data(info: dict[str, Any]) -> Any:
    """The data set a checkpoint was trained on, rebuilt from ``info["data"]`` (of :func:`load_supernet`), or None.

    None when the checkpoint records no data set; each caller says what to pass instead.
    """
    if not info.get("data"):
        return None
    from sliver.data import load_dataset  # imported here: loading a checkpoint needs no data set

    return load_dataset(**info["data"])


def _first_difference(a: dict[str, Any], b: dict[str, Any]) -> str:
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            return f"'{key}' is {a.get(key)!r} in the checkpoint but {b.get(key)!r} now"
    return "same arguments"
