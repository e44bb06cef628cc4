"""nnmodel.callbacks.CallbackGroup: several callbacks that Lightning dispatches to once per hook."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from nnmodel.callbacks import HOOKS, BestCheckpoint, CallbackGroup, HParamsCallback, PlainCudaCheck
from nnmodel.config import compose
from nnmodel.console import StepProgressBar
from nnmodel.data import TensorBatches
from nnmodel.diagnostics import DiagnosticsCallback
from nnmodel.module import NNModule
from nnmodel.resume import RunRecord
from nnmodel.training import InitialCheckpoint, InterruptCheckpoint, build_datamodule, build_trainer, nnmodel_callback


class Steps(L.Callback):
    """Records the per-step hooks it implements, and keeps a count as its checkpointed state."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log, self.count = name, log, 0

    @property
    def state_key(self) -> str:
        return f"Steps[{self.name}]"

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.log.append(f"{self.name}.train_start")

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        self.count += 1

    def state_dict(self) -> dict[str, int]:
        return {"count": self.count}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self.count = state_dict["count"]


class Starts(L.Callback):
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.log.append("starts.train_start")


def fit(group: CallbackGroup, root: Path, epochs: int, ckpt_path: str | None = None) -> L.Trainer:
    x, y = torch.randn(96, 3, generator=torch.Generator().manual_seed(0)), torch.arange(96) % 2
    trainer = L.Trainer(
        max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[group], default_root_dir=str(root),
    )  # fmt: skip
    batches = TensorBatches(x, y, 16, steps_per_execution=4, shuffle=True)  # 6 steps an epoch, in 2 chunks
    trainer.fit(NNModule(3, [4], 2), train_dataloaders=batches, ckpt_path=ckpt_path, weights_only=False)
    return trainer


def test_each_hook_reaches_in_order_only_the_members_that_implement_it(tmp_path):
    log: list[str] = []
    a, starts, b = Steps("a", log), Starts(log), Steps("b", log)
    group = CallbackGroup([a, starts, b])
    assert group.implementers["on_train_start"] == [a.on_train_start, starts.on_train_start, b.on_train_start]
    assert group.implementers["on_before_optimizer_step"] == [a.on_before_optimizer_step, b.on_before_optimizer_step]
    assert group.implementers["on_before_backward"] == [] == group.implementers["on_after_backward"]
    trainer = fit(group, tmp_path, epochs=2)
    assert log == ["a.train_start", "starts.train_start", "b.train_start"]
    assert a.count == b.count == trainer.global_step == 12  # one call per optimizer step, 2 epochs × 6
    assert group.find(Starts) is starts and group.find(Steps) is a and group.find(ModelCheckpoint) is None


def test_the_members_state_is_checkpointed_in_the_groups_and_restored_on_resume(tmp_path):
    log: list[str] = []
    trainer = fit(CallbackGroup([Steps("a", log), Starts(log)]), tmp_path, epochs=1)
    trainer.save_checkpoint(tmp_path / "one.ckpt")
    saved = torch.load(tmp_path / "one.ckpt", weights_only=False)["callbacks"]
    assert saved == {"CallbackGroup": {"Steps[a]": {"count": 6}}}  # a stateless member adds nothing
    resumed = Steps("a", log)
    fit(CallbackGroup([resumed, Starts(log)]), tmp_path, epochs=2, ckpt_path=str(tmp_path / "one.ckpt"))
    assert resumed.count == 12  # 6 restored + the second epoch's 6


def test_two_members_with_one_state_key_are_refused():
    with pytest.raises(ValueError, match=r"CallbackGroup: two members have the same state_key among \['Steps\[a\]'"):
        CallbackGroup([Steps("a", []), Steps("a", [])])


def test_every_lightning_hook_is_forwarded():
    assert {"on_before_backward", "on_after_backward", "on_before_optimizer_step", "setup", "on_exception"} <= set(
        HOOKS
    )
    assert all(getattr(CallbackGroup, hook) is not getattr(L.Callback, hook) for hook in HOOKS)
    assert "state_dict" not in HOOKS and "load_state_dict" not in HOOKS


def test_train_py_trainer_has_one_group_beside_what_lightning_looks_for_by_type(tmp_path):
    cfg = compose([])
    dm = build_datamodule(cfg)
    trainer = build_trainer(cfg, tmp_path / "run", dm)
    kinds = [type(cb) for cb in trainer.callbacks]
    # Lightning moves the ModelCheckpoints to the end of the list
    assert kinds == [CallbackGroup, StepProgressBar, BestCheckpoint, ModelCheckpoint]
    group = trainer.callbacks[0]
    assert [type(cb) for cb in group.callbacks] == [
        HParamsCallback, PlainCudaCheck, InitialCheckpoint, InterruptCheckpoint, RunRecord, DiagnosticsCallback,
    ]  # fmt: skip
    assert nnmodel_callback(trainer, DiagnosticsCallback) is group.callbacks[-1]
    assert trainer.checkpoint_callback is trainer.callbacks[2] and trainer.checkpoint_callback.monitor == "val/acc"


def bar_trainer(epochs: int) -> tuple[StepProgressBar, NNModule, L.Trainer, Callable[[], TensorBatches]]:
    """A StepProgressBar redrawing at every step on a trainer of its own, a module, and 6 steps an epoch."""
    x, y = torch.randn(96, 3, generator=torch.Generator().manual_seed(0)), torch.arange(96) % 2
    bar, module = StepProgressBar(refresh_rate=1), NNModule(3, [4], 2)
    trainer = L.Trainer(
        max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False, enable_model_summary=False,
        callbacks=[bar],
    )  # fmt: skip
    return bar, module, trainer, lambda: TensorBatches(x, y, 16, steps_per_execution=4)


def test_the_progress_bar_shows_the_last_steps_loss_read_from_the_module():
    bar, module, trainer, batches = bar_trainer(epochs=1)
    assert bar.get_metrics(trainer, module) == {}  # nothing trained yet: no loss to show
    trainer.fit(module, train_dataloaders=batches())
    assert bar.get_metrics(trainer, module)["train/loss_step"] == float(module.last_loss)
    assert bar.train_progress_bar.n == 6 == trainer.global_step  # the bar counts optimizer steps
    assert "train/loss_step" not in trainer.callback_metrics  # not through self.log (1 ms a call)


def test_the_validation_inside_fit_shows_in_the_epochs_bar_not_in_a_bar_of_its_own(capsys):
    _, module, trainer, batches = bar_trainer(epochs=2)
    trainer.fit(module, train_dataloaders=batches(), val_dataloaders=batches())
    fit_output = "".join(capsys.readouterr())  # Lightning's bars write to stdout
    assert "Validation" not in fit_output
    # epochs counted from 1 (Lightning's own "Epoch 0: 0%" shows for the moment before the epoch's first redraw)
    assert "Epoch 1: 100%" in fit_output and "Epoch 2: 100%" in fit_output and "Epoch 0: 100%" not in fit_output
    assert f"val/acc={float(trainer.callback_metrics['val/acc']):.3f}" in fit_output  # in the epoch's bar
    trainer.validate(module, dataloaders=batches(), verbose=False)
    assert "Validation DataLoader 0: 100%" in "".join(capsys.readouterr())  # trainer.validate keeps its own bar


@pytest.mark.parametrize("callback", [ModelCheckpoint(), StepProgressBar(), EarlyStopping(monitor="val/acc")])
def test_what_lightning_finds_by_type_is_refused_as_a_member(callback):
    name = type(callback).__name__
    with pytest.raises(ValueError) as err:
        CallbackGroup([PlainCudaCheck(), callback])
    assert str(err.value) == (
        f"CallbackGroup: {name} must stay in trainer.callbacks itself, where Lightning finds it by type; "
        "pass it to the Trainer beside the group"
    )
