"""The data-set registry: each data set is a loader plus what is known of it before its splits are built."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from nnmodel.schema import DataConfig

Split = tuple[torch.Tensor, torch.Tensor]  # x (n, n_features) float32, y (n,) int64
Splits = dict[str, Split]  # keys "train", "val", "test"

# data.* keys every data set reads (the batches and the training-set quality knobs, applied by TensorDataModule)
COMMON_KEYS = frozenset({"name", "batch_size", "train_fraction", "label_noise", "input_noise"})
SPLIT_KEYS = ("val_fraction", "test_fraction", "split_seed", "test_seed")  # a stratified train/val/test split


@dataclass(frozen=True)
class DatasetInfo:
    """What the model and the checks need of a data set: its shape, and what its class indices mean."""

    n_features: int
    n_classes: int
    image_shape: tuple[int, int] | None = None
    class_names: tuple[str, ...] | None = None  # for display; None: "0", "1", ...
    classes: tuple[Any, ...] | None = None  # the label values behind the indices 0..K-1 (a table's); None: the indices


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: `load(cfg) -> {"train": (x, y), "val": ..., "test": ...}` and `describe(cfg)`.

    `describe(cfg)` is the one way to ask a data set its :class:`DatasetInfo`, so a model can be built and a
    config checked before `setup()`. For the built-in sets it is a constant; for a user's table (data=csv,
    data=npz) it reads the file, once per path and modification time (nnmodel.data.tables caches it).
    """

    load: Callable[[DataConfig], Splits]
    describe: Callable[[DataConfig], DatasetInfo]
    prepare: Callable[[DataConfig], None] | None = None  # download/check files, once per node
    standardizes: bool = False  # data.standardize applies: the inputs are rescaled by the training split's mean/std
    reads: frozenset[str] | None = None  # the data.* keys it reads beyond COMMON_KEYS; None: not declared

    def __call__(self, cfg: DataConfig) -> Splits:
        return self.load(cfg)

    @property
    def keys_read(self) -> frozenset[str] | None:
        """The data.* keys it reads, COMMON_KEYS included; None: not declared (a user's data set reads any)."""
        return None if self.reads is None else self.reads | COMMON_KEYS


DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(
    name: str,
    *,
    n_features: int | None = None,
    n_classes: int | None = None,
    image_shape: tuple[int, int] | None = None,
    class_names: tuple[str, ...] | None = None,
    describe: Callable[[DataConfig], DatasetInfo] | None = None,
    prepare: Callable[[DataConfig], None] | None = None,
    standardizes: bool = False,
    reads: Iterable[str] | None = None,
) -> Callable[[Callable[[DataConfig], Splits]], Callable[[DataConfig], Splits]]:
    """Decorator over `load(cfg) -> Splits`: `@register_dataset("mine", n_features=3, n_classes=2)` for a set
    whose shape is fixed, or `@register_dataset("mine", describe=fn)` for one whose shape is read from its data.

    ``reads``: the ``data.*`` keys the loader reads beyond :data:`COMMON_KEYS`. Declared, a key it does not read
    is refused when set (``data.path`` with ``data=digits`` would otherwise train on digits without a word)."""
    fixed = n_features is not None and n_classes is not None
    if fixed == (describe is not None):
        raise TypeError(f"register_dataset({name!r}): give n_features and n_classes, or describe, not both")
    if describe is None:
        info = DatasetInfo(n_features, n_classes, image_shape, class_names)
        describe = lambda cfg: info

    def decorate(load: Callable[[DataConfig], Splits]) -> Callable[[DataConfig], Splits]:
        DATASETS[name] = DatasetSpec(load, describe, prepare, standardizes, None if reads is None else frozenset(reads))
        return load

    return decorate
