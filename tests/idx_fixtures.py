"""Small MNIST-format files written by the tests themselves (no downloads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nnmodel.data import write_idx


def write_mnist_like(root: Path, n_train: int = 400, n_test: int = 100) -> None:
    """MNIST-format IDX files whose classes are learnable: class c lights up a 4x4 block at position c."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(labels):
            r, col = divmod(int(c), 5)
            images[i, 4 + 10 * r : 8 + 10 * r, 2 + 5 * col : 6 + 5 * col] = 255
        write_idx(root / "MNIST" / "raw" / f"{split}-images-idx3-ubyte", images)
        write_idx(root / "MNIST" / "raw" / f"{split}-labels-idx1-ubyte", labels)
