"""What a run prints: the progress bar and nnmodel's summary, not the libraries' chatter.

Lightning announces at INFO level what nnmodel's summary says better (devices found, checkpoints
restored, why fit stopped) and advertises its cloud logger; some of its warnings do not apply to how
nnmodel drives it, and one comes from torch's own deprecation of a type Lightning still uses. None
of that is something a user can act on, so :func:`quiet` silences exactly these, for the duration of
one run, and puts every filter and level back afterwards. Warnings that matter stay, or are said in
nnmodel's own words (``step`` units, divergence, a bad config).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar

from nnmodel.errors import NNModelWarning

# Lightning's loggers: its INFO lines (rank_zero_info) go through these; WARNING and above still show.
LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric")

# (message regex, module regex) of warnings that do not apply to nnmodel's runs, and why:
IRRELEVANT_WARNINGS = (
    # torch deprecates LeafSpec; Lightning's own pytree helper still builds one for every batch it walks
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", r"lightning\.pytorch\.utilities\._pytree"),
    # train/loss_step is logged by global step across epochs, so short epochs still get their points
    (r"The number of training batches \(\d+\) is smaller than the logging interval", r"lightning\.pytorch"),
    # the epoch metrics nnmodel logs under DDP are already reduced over the processes (torchmetrics)
    (r"It is recommended to use `self.log\(.*sync_dist=True\)`", r"lightning\.pytorch"),
    # a resumed run writes into its own checkpoints/ directory on purpose
    (r"Checkpoint directory .* exists and is not empty", r"lightning\.pytorch"),
    # a run resumed after its directory was moved: last.ckpt's callback keeps no state worth keeping but its path
    # (BestCheckpoint relocates its own, nnmodel.callbacks.relocated)
    (r"The dirpath has changed from", r"lightning\.pytorch"),
    # no validation ran (trainer.limit_val_batches=0): nnmodel's own warning says so, and which weights are tested
    (r"`ModelCheckpoint\(monitor='val/acc'\)` could not find the monitored key", r"lightning\.pytorch"),
)


_python_format = warnings.formatwarning


def format_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None
) -> str:
    """``warnings.formatwarning`` for the command line (train.py installs it): nnmodel's own warnings as one line,
    ``warning: ...``, like its errors; every other warning as Python writes it, with the file and line it came from."""
    if issubclass(category, NNModelWarning):
        return f"warning: {message}\n"
    return _python_format(message, category, filename, lineno, line)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence :data:`IRRELEVANT_WARNINGS` and Lightning's INFO lines inside the block, and only there."""
    loggers = [logging.getLogger(name) for name in LIGHTNING_LOGGERS]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        for message, module in IRRELEVANT_WARNINGS:
            warnings.filterwarnings("ignore", message=message, module=module)
        for logger in loggers:
            logger.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


class StepProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar, counting optimizer steps instead of Lightning batches (which are chunks of
    ``steps_per_execution`` steps here) and redrawing every ``refresh_rate`` steps and at the epoch's end.
    It shows the last step's loss as ``train/loss_step``, read from the module when it redraws.

    The validation inside ``fit`` gets no bar of its own: its result shows in the epoch's bar (``val/loss``,
    ``val/acc``) when it ends. Lightning's bar opens and closes a second tqdm bar for it every epoch, which
    on small data flashes a line per epoch for a pass of milliseconds, and took 0.6-1 ms of digits' 4-5 ms
    validation (medians of 60 epochs, old and new code alternated). ``trainer.validate`` and Lightning's
    sanity check keep theirs.
    """

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, int | str | float | dict]:
        metrics = super().get_metrics(trainer, pl_module)
        loss = getattr(pl_module, "last_loss", None)  # NNModule's; one device read per redraw
        return metrics if loss is None else {"train/loss_step": float(loss), **metrics}

    def on_train_epoch_start(self, trainer: L.Trainer, *args: Any) -> None:
        super().on_train_epoch_start(trainer, *args)
        # epochs counted from 1, as the history, the checkpoints' names and the messages count them (Lightning's
        # bar has drawn "Epoch 0: 0%" by now, for the moment before this redraw; no public hook comes earlier)
        self.train_progress_bar.set_description(f"Epoch {trainer.current_epoch + 1}")

    def _steps(self, trainer: L.Trainer) -> tuple[int, int]:
        """(steps per chunk, steps per epoch) of the training batches."""
        batches = trainer.train_dataloader
        k = getattr(batches, "steps_per_execution", 1)
        return k, getattr(batches, "minibatches", None) or len(batches) * k

    @property
    def total_train_batches(self) -> int | float:
        return (
            self._steps(self.trainer)[1] if self.trainer.train_dataloader is not None else super().total_train_batches
        )

    @staticmethod
    def _validation_bar(trainer: L.Trainer) -> bool:
        """Whether this validation gets its own bar: not the one inside fit."""
        return trainer.state.fn != "fit" or trainer.sanity_checking

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._validation_bar(trainer):
            super().on_validation_start(trainer, pl_module)

    def on_validation_batch_start(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if self._validation_bar(trainer):
            super().on_validation_batch_start(trainer, *args, **kwargs)

    def on_validation_batch_end(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if self._validation_bar(trainer):
            super().on_validation_batch_end(trainer, *args, **kwargs)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._validation_bar(trainer):
            super().on_validation_end(trainer, pl_module)
        elif not self.train_progress_bar.disable:
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        k, total = self._steps(trainer)
        n = min((batch_idx + 1) * k, total)
        bar = self.train_progress_bar
        if bar is None or bar.disable or not (n - bar.n >= self.refresh_rate or n >= total):
            return
        bar.n = n
        bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
        bar.refresh()
