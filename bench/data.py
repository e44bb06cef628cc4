"""The benchmark's data and configs: synthetic MNIST-shaped IDX files, read back through ``data=mnist``.

No download: the files are written to a temporary directory in MNIST's own format, so the real
loading path (nnmodel.data.mnist: checked IDX files, one tensor each) runs too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from nnmodel.config import compose
from nnmodel.data import TensorDataModule, write_idx
from nnmodel.training import build_datamodule


def write_mnist_like(root: Path, n_train: int, n_test: int, seed: int = 0) -> None:
    """MNIST-format IDX files under ``root/MNIST/raw``: each class a smooth random template, faint under
    uniform pixel noise and shifted by up to 3 pixels, so that a 784-128-10 MLP reaches about 90-96%
    in a few epochs, not 100%."""
    rng = np.random.default_rng(seed)
    templates = np.kron(rng.random((10, 7, 7)), np.ones((4, 4)))  # (10, 28, 28), values in [0, 1]
    for split, n in (("train", n_train), ("t10k", n_test)):
        y = rng.permutation(np.arange(n) % 10).astype(np.uint8)
        x = templates[y] * 0.4 + rng.random((n, 28, 28))  # (n, 28, 28)
        shifts = rng.integers(-3, 4, (n, 2))
        for s in np.unique(shifts, axis=0):  # one roll per distinct shift, not per image
            rows = np.all(shifts == s, axis=1)
            x[rows] = np.roll(x[rows], tuple(s), axis=(1, 2))
        images = np.clip(x / 1.4 * 255, 0, 255).astype(np.uint8)
        write_idx(root / "MNIST" / "raw" / f"{split}-images-idx3-ubyte", images)
        write_idx(root / "MNIST" / "raw" / f"{split}-labels-idx1-ubyte", y)


class Workspace:
    """Configs as ``python train.py OVERRIDES`` composes them, each run in its own directory under ``tmp``,
    and the data sets loaded once per (data set, batch size, K, training fraction), so that every side gets
    ready tensors."""

    def __init__(self, tmp: Path, extra: tuple[str, ...] = ()) -> None:
        self.tmp, self.extra = tmp, extra  # extra: overrides every config gets (bench/gpu.py: the trainer)
        self.data_root = tmp / "data"
        self.runs = 0
        self._datamodules: dict[tuple[str, int, int, float], TensorDataModule] = {}

    def cfg(
        self,
        data: str,
        hidden: int,
        batch: int,
        epochs: int,
        k: int | None = None,
        backprop: str = "autograd",
        train_fraction: float = 1.0,
        extra: tuple[str, ...] = (),
    ) -> DictConfig:
        """The config of one fit: ``k`` None keeps the default ``steps_per_execution``; ``train_fraction`` is
        ``data.train_fraction``, a stratified part of the training split; ``extra``: more overrides."""
        self.runs += 1
        overrides = [
            *self.extra,
            f"data={data}",
            f"data.batch_size={batch}",
            f"model.hidden=[{hidden}]",
            f"model.backprop={backprop}",
            f"trainer.max_epochs={epochs}",
            f"data.train_fraction={train_fraction}",
            "test=false",
            f"paths.data_dir={self.data_root}",
            f"paths.output_dir={self.tmp / f'run{self.runs}'}",
            *extra,
        ]
        if k is not None:
            overrides.append(f"steps_per_execution={k}")
        return compose(overrides)

    def datamodule(self, cfg: DictConfig) -> TensorDataModule:
        """The datamodule ``build_datamodule(cfg)`` builds, set up once and reused."""
        key = (cfg.data.name, cfg.data.batch_size, cfg.steps_per_execution, cfg.data.train_fraction)
        if key not in self._datamodules:
            dm = build_datamodule(cfg)
            dm.prepare_data()
            dm.setup("fit")
            self._datamodules[key] = dm
        return self._datamodules[key]

    def n_train(self, data: str, train_fraction: float = 1.0) -> int:
        """Training examples of ``data`` (MNIST-shaped: 90% of the images written, as data=mnist splits)."""
        return len(self.datamodule(self.cfg(data, 100, 128, 1, train_fraction=train_fraction)).split("train")[1])
