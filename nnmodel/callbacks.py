"""Small Lightning callbacks that ``nnmodel.training`` adds to every run.

* :class:`HParamsCallback`: the HParams tab with ``val/acc``, ``val/loss`` and ``test/acc`` as metrics.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.tensorboard.summary import hparams as hparams_summary
from torch.utils.tensorboard.writer import FileWriter

HPARAM_METRICS = ("val/acc", "val/loss", "test/acc")  # the HParams tab's metric columns


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
