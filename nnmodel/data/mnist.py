"""MNIST, Fashion-MNIST and KMNIST: torchvision's raw IDX files, checked, read as one tensor each."""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nnmodel.data.builtin import stratified_split, tensors
from nnmodel.data.registry import Splits, register_dataset
from nnmodel.errors import ConfigError, unknown
from nnmodel.schema import DataConfig

TORCHVISION = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "kmnist": "KMNIST"}  # name -> class
_FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_TORCHVISION_CLASSES: dict[str, tuple[str, ...] | None] = {
    "mnist": None,  # "0".."9"
    "fashion_mnist": _FASHION,
    "kmnist": ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),  # romanized hiragana
}
IDX_MAGIC = {3: 2051, 1: 2049}  # ndim -> magic: 0x08 (uint8) << 8 | ndim


def write_idx(path: str | os.PathLike, array: np.ndarray | torch.Tensor) -> None:
    """Write uint8 images (n, rows, cols) (magic 2051) or labels (n,) (magic 2049) as an IDX file.

    Layout: big-endian int32 magic, one big-endian int32 per dimension, then the raw bytes.
    """
    a = np.asarray(array)
    if a.dtype != np.uint8 or a.ndim not in IDX_MAGIC:
        raise ValueError(f"write_idx needs uint8 of shape (n, rows, cols) or (n,), got {a.dtype} {a.shape}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    header = np.array([IDX_MAGIC[a.ndim], *a.shape], dtype=">i4")
    Path(path).write_bytes(header.tobytes() + np.ascontiguousarray(a).tobytes())


def _read_idx_header(path: Path, ndim: int, fix: str) -> tuple[int, ...]:
    """The dims of a well-formed IDX file with `ndim` dims, else a one-line error."""
    gz = path.with_name(path.name + ".gz")
    if not path.is_file():
        found = f" ({gz.name} is there: decompress it, gunzip {gz})" if gz.is_file() else ""
        raise FileNotFoundError(f"missing {path}{found}; {fix}")
    size, n_header = path.stat().st_size, 4 * (1 + ndim)
    if size < n_header:
        raise ValueError(f"corrupt {path}: {size} bytes, shorter than its {n_header}-byte header; {fix}")
    with path.open("rb") as f:
        head = f.read(n_header)
    if head[:2] == b"\x1f\x8b":  # gzip's magic bytes
        raise ValueError(f"corrupt {path}: it is gzip-compressed; decompress it (mv {path} {gz}; gunzip {gz})")
    header = np.frombuffer(head, dtype=">i4")
    if header[0] != IDX_MAGIC[ndim]:
        raise ValueError(f"corrupt {path}: magic number {header[0]}, expected {IDX_MAGIC[ndim]}; {fix}")
    dims = tuple(int(d) for d in header[1:])
    expected = n_header + int(np.prod(dims))
    if size != expected:
        raise ValueError(f"corrupt {path}: {size} bytes, header {dims} implies {expected}; {fix}")
    return dims


N_CLASSES = 10  # every data set of the MNIST family
# the raw IDX files of each split, (images, labels), as torchvision names them
IDX_FILES = {split: (f"{split}-images-idx3-ubyte", f"{split}-labels-idx1-ubyte") for split in ("train", "t10k")}
RAW_FILES = tuple(file for pair in IDX_FILES.values() for file in pair)


def check_idx_files(root: str | os.PathLike, name: str, download: bool = False) -> None:
    """Check `<root>/<ClassName>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte` for dataset `name`.

    Magic numbers, 28x28 images, file sizes matching the headers, equal image and label counts (not none), and
    labels 0-9; the first problem raises FileNotFoundError or ValueError in one line.
    """
    if name not in TORCHVISION:
        raise unknown("MNIST-family data set", name, TORCHVISION)
    raw = Path(root) / TORCHVISION[name] / "raw"
    fix = (  # with download=true and the 4 files there, torchvision fetches none: they must go first
        f"delete the 4 files of {raw}/ so that data.download=true fetches them again, or put good ones there"
        if download
        else f"put the raw (uncompressed) IDX files in {raw}/ or set data.download=true to fetch them"
    )
    for split, (images_file, labels_file) in IDX_FILES.items():
        images = _read_idx_header(raw / images_file, 3, fix)
        labels = _read_idx_header(raw / labels_file, 1, fix)
        if images[1:] != (28, 28):
            raise ValueError(f"corrupt {raw / images_file}: images are {images[1:]}, not 28x28; {fix}")
        if images[0] != labels[0]:
            raise ValueError(f"corrupt {raw}/{split}-*: {images[0]} images but {labels[0]} labels; {fix}")
        if images[0] == 0:
            raise ValueError(f"corrupt {raw / images_file}: it holds no images; {fix}")
        path = raw / labels_file
        values = np.fromfile(path, dtype=np.uint8, offset=8)  # 60,000 bytes at most: read them all
        if len(values) and int(values.max()) >= N_CLASSES:
            row = int(np.argmax(values >= N_CLASSES))
            raise ValueError(
                f"corrupt {path}: label {int(values[row])} at row {row}, but the classes are 0-{N_CLASSES - 1}; {fix}"
            )


def check_files_there(root: str | os.PathLike, name: str, download: bool) -> None:
    """:func:`check_idx_files` where the files are nnmodel's to check: always with ``download=false``, and with
    ``download=true`` when the 4 are there: torchvision then fetches none, and reads a bad one as it is (a label 12
    crashed training; 299 labels for 300 images dropped an image without a word)."""
    raw = Path(root) / TORCHVISION[name] / "raw"
    if not download or all((raw / file).is_file() for file in RAW_FILES):
        check_idx_files(root, name, download)


def _torchvision_set(name: str, cfg: DataConfig, train: bool) -> Any:
    """torchvision's dataset object; files checked first so a bad file fails with our message."""
    import torchvision.datasets

    check_files_there(cfg.root, name, cfg.download)
    cls = getattr(torchvision.datasets, TORCHVISION[name])
    try:
        return cls(cfg.root, train=train, download=cfg.download)
    except Exception as err:  # torchvision raises RuntimeError or URLError across several mirrors
        if not cfg.download:
            raise
        # torchvision's: "Error downloading F:", then "Tried MIRROR, got:" and the reason, for each mirror
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        first = f"{lines[0].rstrip(':')}: {lines[-1]}" if len(lines) > 1 else lines[0] if lines else type(err).__name__
        raw = Path(cfg.root) / TORCHVISION[name] / "raw"
        raise ConfigError(  # the user's to fix (a network, or the files): one line, like a missing file
            f"could not download {name} into {raw} ({first}); without network, copy the 4 raw IDX files there "
            f"and set data.download=false"
        ) from None


def _prepare_torchvision(name: str, cfg: DataConfig) -> None:
    """Download the missing files, or (download=false) only check them: loading waits for setup()."""
    if not cfg.download:
        return check_idx_files(cfg.root, name)
    for train in (True, False):
        _torchvision_set(name, cfg, train)


def _load_torchvision(name: str, cfg: DataConfig) -> Splits:
    """Val: stratified `val_fraction` of the official train set; test: the official test set.

    Fast path: torchvision already holds all images as one uint8 tensor in `.data`, so we
    convert it in one op instead of going through PIL and ToTensor 70,000 times.
    """
    train_set, test_set = (_torchvision_set(name, cfg, train) for train in (True, False))
    x, y = train_set.data, train_set.targets  # (60000, 28, 28) uint8, (60000,)
    val, train = stratified_split(y.numpy(), cfg.val_fraction, cfg.split_seed)
    return {  # indexed as uint8, then converted: no float copy of the whole set before the split
        "train": tensors(_pixels(x[train]), y[train]),
        "val": tensors(_pixels(x[val]), y[val]),
        "test": tensors(_pixels(test_set.data), test_set.targets),
    }


def _pixels(images: torch.Tensor) -> torch.Tensor:
    """(m, h, w) uint8 images as (m, h·w) float32 in [0, 1]."""
    # (len, h·w) spelt out: reshape(0, -1) of an empty split cannot infer the -1, and the empty split must reach
    # nnmodel.validate.check_split_sizes, which says which fraction to change
    return images.reshape(len(images), math.prod(images.shape[1:])).float().div_(255.0)


for _name in TORCHVISION:
    register_dataset(
        _name,
        n_features=784,
        n_classes=N_CLASSES,
        image_shape=(28, 28),
        class_names=_TORCHVISION_CLASSES[_name],
        prepare=functools.partial(_prepare_torchvision, _name),
        reads=["root", "download", "val_fraction", "split_seed"],  # the test split is the official 10,000 images
    )(functools.partial(_load_torchvision, _name))
