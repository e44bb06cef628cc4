"""Data sets as in-memory tensors, batched by one indexing op per minibatch.

Every data set here is small enough to live in memory (MNIST's 60,000 × 784 floats are 188 MB), so a
minibatch is ``x[perm[i:i + B]]`` instead of B calls to ``__getitem__`` and a collate: that is most of
what makes small networks train fast.

    registry.py    DATASETS, register_dataset: a loader and its n_features, n_classes, ...
    builtin.py     digits, xor/and/or, circles, moons; stratified splits; the quality knobs
    mnist.py       MNIST, Fashion-MNIST, KMNIST from torchvision's raw IDX files
    batches.py     TensorBatches: chunks of minibatches, resumable mid-epoch
    datamodule.py  TensorDataModule, the LightningDataModule

A new data set: a function ``load(cfg: DataConfig) -> {"train": (x, y), "val": ..., "test": ...}``
decorated with ``@register_dataset("name", n_features=..., n_classes=...)``, and a
``configs/data/name.yaml`` that starts from the ``schema``.
"""

from nnmodel.data import builtin, mnist  # noqa: F401  (registers the built-in data sets)
from nnmodel.data.batches import TensorBatches
from nnmodel.data.builtin import degrade, stratified_split
from nnmodel.data.datamodule import GPU_RESIDENT_BYTES, TensorDataModule
from nnmodel.data.mnist import TORCHVISION, check_idx_files, write_idx
from nnmodel.data.registry import DATASETS, DatasetSpec, Split, Splits, register_dataset
from nnmodel.schema import DataConfig

__all__ = [
    "DATASETS",
    "GPU_RESIDENT_BYTES",
    "TORCHVISION",
    "DataConfig",
    "DatasetSpec",
    "Split",
    "Splits",
    "TensorBatches",
    "TensorDataModule",
    "check_idx_files",
    "degrade",
    "register_dataset",
    "stratified_split",
    "write_idx",
]
