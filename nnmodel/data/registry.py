"""The data-set registry: each data set is a loader plus what is known of it without loading."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from nnmodel.schema import DataConfig

Split = tuple[torch.Tensor, torch.Tensor]  # x (n, n_features) float32, y (n,) int64
Splits = dict[str, Split]  # keys "train", "val", "test"


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: `load(cfg) -> {"train": (x, y), "val": ..., "test": ...}`.

    The metadata is known without loading, so a model can be built before `setup()`.
    """

    load: Callable[[DataConfig], Splits]
    n_features: int
    n_classes: int
    image_shape: tuple[int, int] | None = None
    class_names: tuple[str, ...] | None = None  # None: "0", "1", ...
    prepare: Callable[[DataConfig], None] | None = None  # download/check files, once per node

    def __call__(self, cfg: DataConfig) -> Splits:
        return self.load(cfg)


DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(
    name: str,
    *,
    n_features: int,
    n_classes: int,
    image_shape: tuple[int, int] | None = None,
    class_names: tuple[str, ...] | None = None,
    prepare: Callable[[DataConfig], None] | None = None,
) -> Callable[[Callable[[DataConfig], Splits]], Callable[[DataConfig], Splits]]:
    """Decorator: `@register_dataset("mine", n_features=3, n_classes=2)` over `load(cfg) -> Splits`."""

    def decorate(load: Callable[[DataConfig], Splits]) -> Callable[[DataConfig], Splits]:
        DATASETS[name] = DatasetSpec(load, n_features, n_classes, image_shape, class_names, prepare)
        return load

    return decorate
