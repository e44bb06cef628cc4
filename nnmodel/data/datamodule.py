"""The LightningDataModule: a registered data set as train/val/test tensors, batched by TensorBatches."""

from __future__ import annotations

import dataclasses
from typing import Any

import lightning as L
import torch

from nnmodel.data.batches import TensorBatches
from nnmodel.data.builtin import degrade
from nnmodel.data.registry import DATASETS, Split, Splits
from nnmodel.errors import unknown
from nnmodel.schema import DataConfig

GPU_RESIDENT_BYTES = 2 * 1024**3  # below this, a split moves to the GPU once, not batch by batch


class TensorDataModule(L.LightningDataModule):
    """A dataset from DATASETS as train/val/test tensors; the keywords are DataConfig's (``data.*``), the
    run's ``seed`` (shuffling, and the training-set quality knobs) and ``steps_per_execution``.

    `n_features`, `n_classes`, `image_shape`, `class_names` and `name` are set at
    construction (no loading), so the model can be built first. `setup()` loads the
    splits and applies the training-set quality knobs to the training split only.
    """

    def __init__(self, seed: int = 0, steps_per_execution: int = 1, **kwargs: Any) -> None:
        super().__init__()
        self.cfg = DataConfig(**kwargs)
        self.seed, self.steps_per_execution = seed, steps_per_execution
        self.save_hyperparameters({**dataclasses.asdict(self.cfg), "seed": seed})
        if self.cfg.name not in DATASETS:
            raise unknown("data set", self.cfg.name, DATASETS)
        spec = DATASETS[self.cfg.name]
        self.spec = spec
        self.name = self.cfg.name
        self.n_features, self.n_classes, self.image_shape = spec.n_features, spec.n_classes, spec.image_shape
        self.class_names = list(spec.class_names or [str(c) for c in range(spec.n_classes)])
        self.splits: Splits | None = None
        self._placed: dict[str, Split] = {}  # split -> tensors on the training device

    def prepare_data(self) -> None:
        """Download or check files (Lightning calls this on one process per node)."""
        if self.spec.prepare is not None:
            self.spec.prepare(self.cfg)

    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        splits = self.spec(self.cfg)
        for key, (x, y) in splits.items():
            if x.shape[1:] != (self.n_features,) or len(y) != len(x):
                raise ValueError(
                    f"dataset {self.name!r} loaded {key} x {tuple(x.shape)}, y {tuple(y.shape)}; "
                    f"registered n_features={self.n_features}"
                )
        splits["train"] = degrade(*splits["train"], self.cfg, self.n_classes, self.seed)
        self.splits = splits

    def split(self, name: str) -> Split:
        """The split ``name`` (train, val or test) as (x, y) tensors, loading the data first if needed."""
        if self.splits is None:
            self.setup()
        return self.splits[name]

    def _split_on_device(self, split: str) -> Split:
        x, y = self.split(split)
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        if device.type != "cuda" or x.nbytes + y.nbytes >= GPU_RESIDENT_BYTES:
            return x, y  # on CPU, Lightning moves each batch to the device
        if split not in self._placed or self._placed[split][0].device != device:
            self._placed[split] = (x.to(device), y.to(device))
        return self._placed[split]

    def _batches(self, split: str, shuffle: bool) -> TensorBatches:
        x, y = self._split_on_device(split)
        trainer = self.trainer
        return TensorBatches(
            x,
            y,
            self.cfg.batch_size,
            steps_per_execution=self.steps_per_execution,
            shuffle=shuffle,
            pad=shuffle,  # training: equal step counts on every rank; evaluation: every example once
            seed=self.seed,
            rank=trainer.global_rank if trainer is not None else 0,
            world_size=trainer.world_size if trainer is not None else 1,
            # read when each epoch starts, so a resumed run continues the same sequence of orders
            epoch_fn=(lambda: trainer.current_epoch) if trainer is not None else None,
        )

    def train_dataloader(self) -> TensorBatches:
        return self._batches("train", shuffle=True)

    def val_dataloader(self) -> TensorBatches:
        return self._batches("val", shuffle=False)

    def test_dataloader(self) -> TensorBatches:
        return self._batches("test", shuffle=False)

    def predict_dataloader(self) -> TensorBatches:
        return self._batches("test", shuffle=False)

    def describe(self) -> str:
        """One line for the run summary: split sizes, features, classes."""
        if self.splits is None:
            return f"{self.n_features} features, {self.n_classes} classes"
        sizes = "/".join(str(len(self.splits[k][1])) for k in ("train", "val", "test"))
        return f"{sizes} train/val/test examples, {self.n_features} features, {self.n_classes} classes"
