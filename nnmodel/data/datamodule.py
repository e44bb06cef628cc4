"""The LightningDataModule: a registered data set as train/val/test tensors, batched by TensorBatches."""

from __future__ import annotations

import dataclasses
from typing import Any

import lightning as L
import torch

from nnmodel.data.batches import TensorBatches
from nnmodel.data.builtin import degrade
from nnmodel.data.registry import DATASETS, Split, Splits
from nnmodel.data.tables import TABLES, fingerprint, standardize
from nnmodel.errors import ConfigError, plural, unknown
from nnmodel.schema import DataConfig

GPU_RESIDENT_BYTES = 2 * 1024**3  # below this, a split moves to the GPU once, not batch by batch


class TensorDataModule(L.LightningDataModule):
    """A dataset from DATASETS as train/val/test tensors; the keywords are DataConfig's (``data.*``), the
    run's ``seed`` (shuffling, and the training-set quality knobs) and ``steps_per_execution``.

    `n_features`, `n_classes`, `image_shape`, `class_names`, `classes` and `name` are set at
    construction (the data set's ``describe(cfg)``: a table reads its file, once), so the model can be
    built first. `setup()` loads the splits, standardises a table's inputs by the training split's
    mean and std (``data.standardize``; the whole training split, before ``train_fraction`` subsamples it,
    so that the scaling does not move with that knob), then applies the quality knobs to the training split.

    :meth:`state_dict` (which Lightning saves in every checkpoint under ``"TensorDataModule"``) holds what
    :func:`nnmodel.load` needs to take raw inputs and give the data's own labels: ``classes``, ``mean``, ``std``.
    """

    def __init__(self, seed: int = 0, steps_per_execution: int = 1, **kwargs: Any) -> None:
        super().__init__()
        self.cfg = DataConfig(**kwargs)
        self.seed, self.steps_per_execution = seed, steps_per_execution
        self.save_hyperparameters({**dataclasses.asdict(self.cfg), "seed": seed})
        if self.cfg.name not in DATASETS:
            raise unknown("data set", self.cfg.name, DATASETS)
        self.spec = DATASETS[self.cfg.name]
        self.name = self.cfg.name
        info = self.spec.describe(self.cfg)
        self.n_features, self.n_classes, self.image_shape = info.n_features, info.n_classes, info.image_shape
        self.class_names = list(info.class_names or [str(c) for c in range(info.n_classes)])
        self.classes = list(info.classes) if info.classes is not None else list(range(info.n_classes))
        self.standardizes = self.spec.standardizes and self.cfg.standardize
        self.mean: torch.Tensor | None = None  # (n_features,): the training split's, when standardizes
        self.std: torch.Tensor | None = None
        self.splits: Splits | None = None
        self.table_fingerprint: str | None = None  # a table's (csv, npz) file's SHA-256, once setup has read it
        self.scaling_given = False  # evaluate_as: the checkpoint's mean and std, not those of these data
        self._placed: dict[str, Split] = {}  # split -> tensors on the training device

    def prepare_data(self) -> None:
        """Download or check files (Lightning calls this on one process per node)."""
        if self.spec.prepare is not None:
            self.spec.prepare(self.cfg)

    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        # the file read, by its bytes, as it was read (a checkpoint records it: nnmodel.resume.check_same_table)
        self.table_fingerprint = fingerprint(self.cfg.path) if self.name in TABLES else None
        splits = self.spec(self.cfg)
        for key, (x, y) in splits.items():
            if x.shape[1:] != (self.n_features,) or len(y) != len(x):
                raise ValueError(
                    f"dataset {self.name!r} loaded {key} x {tuple(x.shape)}, y {tuple(y.shape)}; "
                    f"registered n_features={self.n_features}"
                )
        if self.scaling_given:
            if self.mean is not None:
                splits, _, _ = standardize(splits, self.mean, self.std)
        elif self.standardizes:
            splits, mean, std = standardize(splits)
            self._same_scaling(mean, std)  # as a checkpoint's, if one was loaded first
            self.mean, self.std = mean, std
        splits["train"] = degrade(*splits["train"], self.cfg, self.n_classes, self.seed)
        self.splits = splits

    def state_dict(self) -> dict[str, Any]:
        """``{"classes": [...], "mean": [...] or None, "std": [...] or None}``, plain lists (weights-only loadable)."""
        if self.standardizes and self.mean is None:
            self.setup()  # the statistics come from the training split
        plain = lambda t: None if t is None else t.tolist()
        state = {"classes": list(self.classes), "mean": plain(self.mean), "std": plain(self.std)}
        if self.table_fingerprint is not None:
            state["fingerprint"] = self.table_fingerprint
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """A checkpoint's classes and standardisation (a resumed run checks its own data against them)."""
        self.classes = list(state_dict["classes"])
        tensor = lambda v: None if v is None else torch.tensor(v, dtype=torch.float32)
        mean, std = tensor(state_dict.get("mean")), tensor(state_dict.get("std"))
        if self.splits is not None:
            self._same_scaling(mean, std)
        self.mean, self.std = mean, std

    def evaluate_as(self, state_dict: dict[str, Any]) -> None:
        """Evaluating a checkpoint (before setup): its classes, and its inputs scaled by the checkpoint's mean and
        std (its training split's, as :func:`nnmodel.load` applies them), never by statistics of the data evaluated
        on; a checkpoint that saved none sees the data as they are."""
        tensor = lambda v: None if v is None else torch.tensor(v, dtype=torch.float32)
        if state_dict.get("classes") is not None:
            self.classes = list(state_dict["classes"])
        self.mean, self.std, self.scaling_given = tensor(state_dict.get("mean")), tensor(state_dict.get("std")), True

    def _same_scaling(self, mean: torch.Tensor | None, std: torch.Tensor | None) -> None:
        """A resumed run must scale its inputs as the checkpoint did: the same table, the same training split."""
        ours = (self.mean, self.std)
        if mean is not None and ours[0] is not None and not all(map(torch.allclose, (mean, std), ours)):
            raise ConfigError(
                f"data={self.name}: the checkpoint was trained on inputs with another mean and std (the table or its "
                "split keys have changed since); resume on the same table, with the same splits"
            )

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
        shape = f"{plural(self.n_features, 'feature')}, {plural(self.n_classes, 'class', 'classes')}"
        if self.splits is None:
            return shape
        sizes = "/".join(str(len(self.splits[k][1])) for k in ("train", "val", "test"))
        return f"{sizes} train/val/test examples, {shape}"
