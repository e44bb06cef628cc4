"""Small Lightning callbacks that ``nnmodel.training`` adds to every run.

* :class:`HParamsCallback`: the HParams tab with ``val/acc``, ``val/loss`` and ``test/acc`` as metrics.
* :class:`PlainCudaCheck`: a CPU fit without the NVML load that torch's optimizers pay at every step.
"""

from __future__ import annotations

import os
from typing import Any

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.strategies import SingleDeviceStrategy
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


NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"


class PlainCudaCheck(L.Callback):
    """On one CPU process, fit with torch's plain ``torch.cuda.is_available()`` instead of the NVML-based one.

    ``import lightning`` sets the documented torch variable PYTORCH_NVML_BASED_CUDA_CHECK=1, so that asking
    whether CUDA is there does not initialise CUDA before a process forks. Every ``step()`` of a torch
    optimizer asks (its graph-capture check), and with the variable set each answer loads NVML with
    ctypes: about 75-125 µs a step on this machine, a tenth of a 64-100-10 step (bench/profiling.py). A
    single CPU process forks nothing that uses CUDA, so during its fit the variable is set to 0 (torch's
    own default), and put back as it was when the fit ends or fails. Multi-process and GPU runs keep it.
    """

    def __init__(self) -> None:
        self._before: str | None = None
        self._active = False

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if isinstance(trainer.strategy, SingleDeviceStrategy) and trainer.strategy.root_device.type == "cpu":
            self._before, self._active = os.environ.get(NVML_CHECK), True
            os.environ[NVML_CHECK] = "0"

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._active:
            if self._before is None:
                os.environ.pop(NVML_CHECK, None)
            else:
                os.environ[NVML_CHECK] = self._before
            self._active = False

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.on_fit_end(trainer, pl_module)
