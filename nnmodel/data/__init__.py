"""Data sets as in-memory tensors, batched by one indexing op per chunk of minibatches.

Every data set here is small enough to live in memory (MNIST's 60,000 × 784 floats are 188 MB), so a
minibatch is ``x[perm[i:i + B]]`` instead of B calls to ``__getitem__`` and a collate: that is most of
what makes small networks train fast.

    registry.py    DATASETS, register_dataset: a loader and describe(cfg) -> DatasetInfo (n_features, ...)
    builtin.py     digits, xor/and/or, circles, moons; stratified splits; the quality knobs
    mnist.py       MNIST, Fashion-MNIST, KMNIST from torchvision's raw IDX files
    tables.py      csv and npz: the user's own table, read once per file version; standardisation
    batches.py     TensorBatches: Chunks of minibatches, resumable mid-epoch
    datamodule.py  TensorDataModule, the LightningDataModule

A new data set: a function ``load(cfg: DataConfig) -> {"train": (x, y), "val": ..., "test": ...}``
decorated with ``@register_dataset("name", n_features=..., n_classes=...)`` (or ``describe=fn``, a function
of the config that reads them from the data, as the tables do), and a ``configs/data/name.yaml`` that starts
from the ``schema``.
"""

from nnmodel.data import builtin, mnist, tables  # noqa: F401  (registers the data sets)
from nnmodel.data.batches import Chunk, TensorBatches
from nnmodel.data.builtin import degrade, stratified_split, three_way_counts
from nnmodel.data.datamodule import GPU_RESIDENT_BYTES, TensorDataModule
from nnmodel.data.mnist import TORCHVISION, check_idx_files, write_idx
from nnmodel.data.registry import DATASETS, DatasetInfo, DatasetSpec, Split, Splits, register_dataset
from nnmodel.data.tables import TABLES, Table, read_table, standardize
from nnmodel.schema import DataConfig

__all__ = [
    "DATASETS",
    "GPU_RESIDENT_BYTES",
    "TABLES",
    "TORCHVISION",
    "Chunk",
    "DataConfig",
    "DatasetInfo",
    "DatasetSpec",
    "Split",
    "Splits",
    "Table",
    "TensorBatches",
    "TensorDataModule",
    "check_idx_files",
    "degrade",
    "read_table",
    "register_dataset",
    "standardize",
    "stratified_split",
    "three_way_counts",
    "write_idx",
]
