"""What every data set is loaded into: :class:`DataBundle` (train / validation / calibration splits), and :class:`DataError`.

Its own module so that :mod:`sliver.data` (images, the user's files, the
dispatch by name) and :mod:`sliver.text` (the tokenised text sets) both build
bundles without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch.utils.data import TensorDataset

from sliver.errors import UserError


class DataError(UserError):
    """A data set is missing or malformed; the message says what to fix."""


@dataclass
class DataBundle:
    """Train / validation / calibration splits of one data set, normalised with train statistics.

    ``task`` says what the splits hold: ``classification`` (inputs, labels) or ``causal_lm``
    (token ids, next-token ids; ``num_classes`` is the vocabulary size). ``test``, when
    present, is a held-out split that neither training nor search looks at.
    """

    name: str
    train: TensorDataset
    val: TensorDataset
    calib: TensorDataset
    num_classes: int
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: list[str] = field(default_factory=list)
    #: keyword arguments of :func:`load_dataset` that rebuild exactly these splits: ``load_dataset(**spec)``
    spec: dict[str, Any] = field(default_factory=dict)
    test: TensorDataset | None = None
    task: str = "classification"
