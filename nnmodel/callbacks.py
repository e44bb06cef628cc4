"""Small Lightning callbacks that ``nnmodel.training`` adds to every run.

* :class:`HParamsCallback`: the HParams tab with ``val/acc``, ``val/loss`` and ``test/acc`` as metrics.
* :class:`EpochHistory`: per-epoch metrics kept in memory, for ``result.json`` and sweep reports.
* :class:`DivergenceGuard`: stops at the first NaN/inf training loss with a clear message.
* :func:`skip_unused_hooks`: what keeps Lightning's per-batch hook calls cheap.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.tensorboard.summary import hparams as hparams_summary
from torch.utils.tensorboard.writer import FileWriter

HPARAM_METRICS = ("val/acc", "val/loss", "test/acc")  # the HParams tab's metric columns
HISTORY_KEYS = ("train/loss_epoch", "train/acc", "val/loss", "val/acc")


# The hooks Lightning calls at every training step, on every callback and on the module, and whose
# signatures it never inspects (it does inspect the validation/test batch hooks, so those stay).
PER_STEP_HOOKS = (
    "on_train_batch_start",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
    "on_before_zero_grad",
    "on_train_batch_end",
)


def skip_unused_hooks(obj: Any, base: type) -> Any:
    """Set the per-step hooks that ``obj``'s class inherits unchanged from ``base`` to None on ``obj``.

    Written by hand because Lightning has no switch for it: at every step it calls each of these hooks
    on each callback and on the module, inherited no-ops included, each inside a profiler context, and
    for a ``ModelCheckpoint`` it formats the callback's ``state_key`` every time. Lightning skips a hook
    attribute that is not callable (``lightning.pytorch.trainer.call``), so only calls that do nothing
    are dropped. With our nine callbacks this (with the batch transfer in ``NNModule``) saved about
    0.1 ms per step, 13 % of a 784-100-10 step at batch 128 (``python bench/run.py --breakdown``).
    Returns ``obj``.
    """
    for name in PER_STEP_HOOKS:
        inherited = getattr(base, name, None)
        if inherited is not None and getattr(type(obj), name, None) is inherited:
            object.__setattr__(obj, name, None)
    return obj


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite."""


class HParamsCallback(L.Callback):
    """Write the HParams summary with ``val/acc``, ``val/loss`` and ``test/acc`` as its metrics.

    TensorBoard's HParams tab shows, for each metric tag the summary declares, the run's own scalar of
    that tag (see ``SummaryWriter.add_hparams``' note on keys), so declaring our real metric tags is
    enough: no placeholder values are written. We write the summary ourselves because both public
    helpers write values: ``SummaryWriter.add_hparams`` logs the metric values into a sub-run, and
    Lightning's ``log_hyperparams(params, metrics)`` logs them at step 0 into the run's own curves.
    torch's public ``FileWriter`` puts the summary in an event file of its own beside the logger's.
    """

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params

    @rank_zero_only
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not isinstance(trainer.logger, TensorBoardLogger):  # e.g. fast_dev_run's DummyLogger, or none
            return
        writer = FileWriter(trainer.logger.log_dir, filename_suffix=".hparams")
        for summary in hparams_summary(self.params, dict.fromkeys(HPARAM_METRICS, 0.0)):
            writer.add_summary(summary)
        writer.close()


class EpochHistory(L.Callback):
    """The per-epoch values of :data:`HISTORY_KEYS`, read once per epoch (one host sync each)."""

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {k: [] for k in HISTORY_KEYS}

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for key in HISTORY_KEYS:
            value = trainer.callback_metrics.get(key)
            if value is not None:
                self.history[key].append(float(value))

    def state_dict(self) -> dict[str, Any]:  # kept in checkpoints, so a resumed run has the whole curve
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = state_dict["history"]


class DivergenceGuard(L.Callback):
    """Stop at the first NaN/inf training loss, or one above ``max_loss``: a clear error, not hours of NaN.

    ``max_loss`` catches the runs whose loss explodes without overflowing: a softmax or sigmoid cost
    computed from logits stays finite even when a far too large learning rate has blown the weights
    up to 1e6 (the cost of a sane classifier starts near ln K, about 2.3 for 10 classes).
    The check reads the loss on the host; on a CPU that costs nothing, on a GPU it synchronises,
    so there it runs every ``every_n_steps_gpu`` steps (a diverged loss stays diverged).
    """

    def __init__(self, max_loss: float = 1e4, every_n_steps_gpu: int = 50) -> None:
        self.max_loss = max_loss
        self.every_n_steps_gpu = every_n_steps_gpu

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        distributed = trainer.world_size > 1
        if not isinstance(loss, torch.Tensor) or (
            (loss.device.type != "cpu" or distributed) and trainer.global_step % self.every_n_steps_gpu
        ):
            return
        value = float(loss)
        diverged = not math.isfinite(value) or value > self.max_loss
        if distributed:  # all ranks stop together, or the others would wait forever in the next all-reduce
            diverged = trainer.strategy.reduce_boolean_decision(diverged, all=False)
        if diverged:
            raise DivergedError(
                f"training diverged: the loss became {value:.4g} at step {trainer.global_step} "
                f"(epoch {trainer.current_epoch}); lower the learning rate (optimizer.lr={_lr(trainer)})"
            )


def _lr(trainer: L.Trainer) -> float | str:
    try:
        return trainer.optimizers[0].param_groups[0]["lr"]
    except (IndexError, KeyError):
        return "?"
