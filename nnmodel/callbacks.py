"""Small Lightning callbacks that ``nnmodel.training`` adds to every run.

* :class:`HParamsCallback`: the HParams tab with ``val/acc``, ``val/loss`` and ``test/acc`` as metrics.
* :class:`PlainCudaCheck`: a CPU fit without the NVML load that torch's optimizers pay at every step.
* :class:`CallbackGroup`: several callbacks that Lightning sees as one, so that it dispatches each hook once.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Checkpoint, EarlyStopping, ModelCheckpoint, ProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.strategies import SingleDeviceStrategy
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.tensorboard.summary import hparams as hparams_summary
from torch.utils.tensorboard.writer import FileWriter

HPARAM_METRICS = ("val/acc", "val/loss", "test/acc")  # the HParams tab's metric columns

# Lightning's callback hooks: the public methods of L.Callback that take (trainer, pl_module, ...). state_dict
# and load_state_dict take neither; CallbackGroup merges them itself.
HOOKS = tuple(
    name
    for name, value in vars(L.Callback).items()
    if (name.startswith("on_") or name in ("setup", "teardown")) and callable(value)
)


# what Lightning looks for in trainer.callbacks by type (trainer.checkpoint_callback, progress_bar_callback,
# early_stopping_callback, and the checkpoint and early-stopping callbacks it runs last), never in a group
FOUND_BY_TYPE = (Checkpoint, EarlyStopping, ProgressBar)


def overrides(callback: L.Callback, hook: str) -> bool:
    """Whether the callback's class defines the hook itself, rather than inheriting L.Callback's no-op."""
    return getattr(type(callback), hook) is not getattr(L.Callback, hook)


class CallbackGroup(L.Callback):
    """Several callbacks as one: each hook reaches, in order, only the members that implement it.

    Lightning calls every hook of every callback in ``trainer.callbacks``, including the three it calls
    at each optimizer step (``on_before_backward``, ``on_after_backward``, ``on_before_optimizer_step``),
    and each call costs a few µs of its own (a profiler section, the callback's ``state_key``, the name of
    the running hook that Lightning sets on the module through ``nn.Module``'s attribute machinery) even
    when the hook does nothing. train.py's trainer had nine callbacks, and the three per-step hooks cost
    73-99 µs a step, about a fifth of what it added to a 784-100-10 step; with nnmodel's six grouped (four
    callbacks), 44-57 µs (README, Performance). Grouped, Lightning makes one
    call per hook, and the group calls only the members that override it. Lightning has no public way to
    say that a callback does not use a hook, so the grouping is ours.

    A member's state (``state_dict``) is checkpointed inside the group's, under the member's ``state_key``.
    The callbacks that Lightning looks for by type (:data:`FOUND_BY_TYPE`: checkpoints, early stopping,
    the progress bar) are refused as members: they stay in ``trainer.callbacks`` itself.
    """

    def __init__(self, callbacks: list[L.Callback]) -> None:
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if isinstance(cb, FOUND_BY_TYPE):
                raise ValueError(
                    f"CallbackGroup: {type(cb).__name__} must stay in trainer.callbacks itself, where Lightning "
                    "finds it by type; pass it to the Trainer beside the group"
                )
        keys = [cb.state_key for cb in self.callbacks]
        if len(set(keys)) != len(keys):
            raise ValueError(f"CallbackGroup: two members have the same state_key among {keys}")
        # bound methods, resolved once: a hook that no member overrides costs one empty loop a call
        self.implementers = {
            hook: [getattr(cb, hook) for cb in self.callbacks if overrides(cb, hook)] for hook in HOOKS
        }

    def find(self, cls: type[L.Callback]) -> L.Callback | None:
        """The first member of type ``cls``, or None."""
        return next((cb for cb in self.callbacks if isinstance(cb, cls)), None)

    def state_dict(self) -> dict[str, Any]:
        return {cb.state_key: state for cb in self.callbacks if (state := cb.state_dict())}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for cb in self.callbacks:
            if cb.state_key in state_dict:
                cb.load_state_dict(state_dict[cb.state_key])


def _forward(hook: str) -> Any:
    def forward(self: CallbackGroup, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any, **kw: Any) -> None:
        for fn in self.implementers[hook]:
            fn(trainer, pl_module, *args, **kw)

    forward.__name__ = forward.__qualname__ = hook
    forward.__doc__ = f"Lightning's ``{hook}``, to every member that implements it."
    return forward


for _hook in HOOKS:
    setattr(CallbackGroup, _hook, _forward(_hook))


def relocated(state: dict[str, Any], dirpath: str | None) -> dict[str, Any]:
    """A ModelCheckpoint's saved state, with its paths in ``dirpath`` when the run's directory has been moved or copied
    (off a cluster, say) and is resumed there. Lightning keeps such a state only where ``dirpath`` is unchanged: it
    would forget the best score, so the next epoch's checkpoint became "best" and was tested. A checkpoint that did
    not come along is forgotten, with the best score when it is the best one."""
    before = state.get("dirpath")
    if not before or not dirpath or os.path.abspath(before) == os.path.abspath(dirpath):
        return state

    def here(path: str | None) -> str:
        moved = os.path.join(dirpath, os.path.basename(path)) if path else ""
        return moved if moved and os.path.isfile(moved) else ""

    best_k = {here(path): score for path, score in (state.get("best_k_models") or {}).items()}
    best_k.pop("", None)
    paths = {key: here(state.get(key)) for key in ("best_model_path", "kth_best_model_path", "last_model_path")}
    state = {**state, **paths, "dirpath": dirpath, "best_k_models": best_k}
    if not paths["best_model_path"]:
        state["best_model_score"] = None
    if not paths["kth_best_model_path"]:
        state["kth_value"] = None
    return state


class BestCheckpoint(ModelCheckpoint):
    """A ModelCheckpoint whose ``{epoch}`` counts epochs from 1, as the run's history, run.history and the
    summary's "training N epochs" count them (Lightning's ``trainer.current_epoch`` counts from 0): the
    checkpoint of the 37th epoch is ``best-epoch037-…``. Through ``format_checkpoint_name``, the documented way
    to name a checkpoint; the checkpoint's own ``epoch`` entry stays Lightning's, which resuming reads. Its state
    follows the run's directory when that is moved or copied (:func:`relocated`)."""

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(relocated(state_dict, self.dirpath))

    def format_checkpoint_name(self, metrics: dict[str, Any], *args: Any, **kwargs: Any) -> str:
        if "epoch" in metrics:
            metrics = {**metrics, "epoch": metrics["epoch"] + 1}
        return super().format_checkpoint_name(metrics, *args, **kwargs)


class HParamsCallback(L.Callback):
    """Write the HParams summary with ``val/acc``, ``val/loss`` and ``test/acc`` as its metrics.

    TensorBoard's HParams tab shows, for each metric tag the summary declares, the run's own scalar of
    that tag (see ``SummaryWriter.add_hparams``' note on keys), so declaring our real metric tags is
    enough: no placeholder values are written. We write the summary ourselves because both public
    helpers write values: ``SummaryWriter.add_hparams`` logs the metric values into a sub-run, and
    Lightning's ``log_hyperparams(params, metrics)`` logs them at step 0 into the run's own curves.
    torch's public ``FileWriter`` puts the summary in an event file of its own beside the logger's.
    """

    def __init__(self, params: dict[str, Any], tested: bool = True) -> None:
        self.params = params
        self.metrics = [m for m in HPARAM_METRICS if tested or not m.startswith("test/")]  # test=false: no test/acc

    @rank_zero_only
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not isinstance(trainer.logger, TensorBoardLogger):  # e.g. fast_dev_run's DummyLogger, or none
            return
        writer = FileWriter(trainer.logger.log_dir, filename_suffix=".hparams")
        for summary in hparams_summary(self.params, dict.fromkeys(self.metrics, 0.0)):
            writer.add_summary(summary)
        writer.close()


NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"


def set_env(name: str, value: str | None) -> None:
    """Set an environment variable, or remove it for None: how each of nnmodel's runs puts one back."""
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


class PlainCudaCheck(L.Callback):
    """On one CPU process, fit with torch's plain ``torch.cuda.is_available()`` instead of the NVML-based one.

    ``import lightning`` sets the documented torch variable PYTORCH_NVML_BASED_CUDA_CHECK=1, so that asking
    whether CUDA is there does not initialise CUDA before a process forks. Every ``step()`` of a torch
    optimizer asks (its graph-capture check), and with the variable set each answer loads NVML with
    ctypes: about 75-125 µs a step on this machine, a tenth of a 64-100-10 step (bench/profiling.py). A
    single CPU process forks nothing that uses CUDA, so during its fit the variable is set to 0 (torch's
    own default), and put back as it was when the fit ends or fails. Multi-process and GPU runs keep it.

    The variable is the process's, so fits that overlap in threads of one process (scikit-learn's threading
    backend, a notebook's threads) share one change: the first to start saves the value and sets 0, the last
    to end puts the value back (a count under a lock). Each fit alone would otherwise put back the value it
    found, and the last could leave 0 behind for good.
    """

    _lock = threading.Lock()
    _fits = 0  # CPU fits running now in this process, across instances
    _saved: str | None = None  # the variable's value before the first of them

    def __init__(self) -> None:
        self._active = False

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if isinstance(trainer.strategy, SingleDeviceStrategy) and trainer.strategy.root_device.type == "cpu":
            cls = PlainCudaCheck  # not type(self): a subclass must share the one count
            with cls._lock:
                if cls._fits == 0:
                    cls._saved = os.environ.get(NVML_CHECK)
                    os.environ[NVML_CHECK] = "0"
                cls._fits += 1
            self._active = True

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._active:
            cls = PlainCudaCheck
            with cls._lock:
                cls._fits -= 1
                if cls._fits == 0:
                    set_env(NVML_CHECK, cls._saved)
            self._active = False

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.on_fit_end(trainer, pl_module)
