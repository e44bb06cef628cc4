"""From a composed config to a trained, tested model: what ``python train.py`` runs.

``train(cfg)`` validates the config, then only builds objects and calls ``fit``/``test``; every
decision lives in the config. Each run directory holds ``tb/`` (TensorBoard), ``checkpoints/``
(best, last) and ``result.json`` (status, final metrics, per-epoch history).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback as HydraCallback
from hydra.types import RunMode
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException
from omegaconf import DictConfig, OmegaConf

from nnmodel.callbacks import BestCheckpoint, CallbackGroup, HParamsCallback, PlainCudaCheck, set_env
from nnmodel.config import override_key
from nnmodel.console import StepProgressBar, quiet
from nnmodel.core.network import FeedForward, count_parameters
from nnmodel.data import DATASETS, TABLES, TensorDataModule, read_table
from nnmodel.diagnostics import DiagnosticsCallback, diagnostics_callbacks
from nnmodel.errors import (
    ConfigError,
    DivergedError,
    Interrupted,
    NNModelWarning,
    ctrl_c_as_keyboard_interrupt,
    exit_on_config_error,
    plural,
)
from nnmodel.module import NNModule
from nnmodel.resume import LAST, RunRecord, check_same_table, check_trains_on, run_config, settle
from nnmodel.validate import check_interpolations, check_keys, check_split_sizes, preset_origin, validate_config


def flat_hparams(cfg: DictConfig) -> dict[str, Any]:
    """The run's hyperparameters as flat ``group.key`` → scalar/str pairs (TensorBoard's HParams tab)."""
    out: dict[str, Any] = {"seed": cfg.seed}
    reads = DATASETS[cfg.data.name].keys_read  # the data.* keys the data set reads (None: a user's, all of them)
    for group in ("data", "model", "optimizer"):
        for key, value in _flatten(OmegaConf.to_container(cfg[group], resolve=True), group).items():
            if value is None:
                continue  # a knob left to its default (e.g. the other optimizers' settings)
            if group == "data" and reads is not None and key.split(".")[1] not in reads:
                continue  # data.noise of digits: a column that changes nothing
            out[key] = value if isinstance(value, int | float | str | bool) else str(value)
    out["trainer.max_epochs"] = cfg.trainer.get("max_epochs", -1)
    return out


def _flatten(d: dict, prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= _flatten(v, f"{prefix}.{k}")
        else:
            out[f"{prefix}.{k}"] = v
    return out


class InterruptCheckpoint(L.Callback):
    """On Ctrl-C (SIGINT) or SIGTERM, finish the chunk of steps in flight, save a resumable ``last.ckpt``, exit.

    The signal only sets a flag; the checkpoint is written at the next batch boundary within an epoch, where the
    weights, the optimizer state and the position of the training batches agree (the batches keep
    their own position, through Lightning's stateful-loader protocol: see TensorBatches).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.signal: int | None = None  # the signal that stopped the run
        self._previous: dict[int, Any] = {}

    def _request(self, signum: int, frame: Any) -> None:
        if self.signal is not None:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.signal = signum
        print(f"\n{signal.Signals(signum).name}: saving a resumable checkpoint after this batch ...", flush=True)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread():  # signal handlers live there only
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._request)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.on_train_end(trainer, pl_module)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        # Not after an epoch's last batch: a run restored from there would skip that epoch's validation
        # (Lightning counts the epoch as done); the epoch's end is handled by on_train_epoch_start.
        if self.signal is not None and not trainer.is_last_batch:
            if not trainer.fast_dev_run:  # a smoke run keeps no checkpoint (nor does Lightning's ModelCheckpoint)
                trainer.save_checkpoint(self.path, weights_only=False)  # atomic: a temporary file, then renamed
                print(f"interrupted: saved a resumable checkpoint to {self.path}", flush=True)
            raise KeyboardInterrupt  # Lightning shuts down cleanly; train() raises Interrupted (exit 128 + signum)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A signal that came in an epoch's last batch or its validation (all of the epoch when it is one execution):
        # stop before the next epoch's first step. The last.ckpt that the ModelCheckpoint wrote at the epoch's end
        # resumes the run. Not saved here: this callback's on_train_epoch_end runs before the LightningModule's,
        # Lightning's ModelCheckpoint after it. In the last epoch the run just finishes.
        if self.signal is not None:
            if not trainer.fast_dev_run:
                print(f"interrupted between epochs: the run resumes from {self.path}", flush=True)
            raise KeyboardInterrupt


class InitialCheckpoint(L.Callback):
    """Save ``last.ckpt`` before the first step, so even a run that diverges or is killed in its
    first epoch leaves a good, loadable checkpoint behind."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.fast_dev_run:  # trainer=debug: a smoke run keeps no checkpoint, ckpt_path=last must not find one
            return
        # Every rank must take the same branch: save_checkpoint is collective under DDP.
        if not trainer.strategy.broadcast(self.path.exists()):
            trainer.save_checkpoint(self.path, weights_only=False)


def build_datamodule(cfg: DictConfig) -> TensorDataModule:
    data = OmegaConf.to_container(cfg.data, resolve=True)
    return TensorDataModule(**data, seed=cfg.seed, steps_per_execution=cfg.steps_per_execution)


def build_module(cfg: DictConfig, dm: TensorDataModule) -> NNModule:
    # cfg.model's keys are NNModule's arguments (nnmodel.schema.ModelConfig); the rest come from the data
    return NNModule(
        n_in=dm.n_features,
        n_classes=dm.n_classes,
        **OmegaConf.to_container(cfg.model, resolve=True),
        optimizer=OmegaConf.to_container(cfg.optimizer, resolve=True),
        seed=cfg.seed,
        diverge_above=float(cfg.get("diverge_above", 1e4)),
        cuda_graphs=bool(cfg.get("cuda_graphs", False)),
    )


def build_trainer(
    cfg: DictConfig, run_dir: Path, dm: TensorDataModule | None = None, extra_callbacks: list[L.Callback] = ()
) -> L.Trainer:
    logger = TensorBoardLogger(save_dir=str(run_dir), name="tb", version="", default_hp_metric=False)
    ckpt_dir = run_dir / "checkpoints"
    # nnmodel's own callbacks go in one CallbackGroup (one dispatch per hook, three of them at each optimizer
    # step); what Lightning looks for by type (the ModelCheckpoints, the progress bar) stays beside it.
    ours: list[L.Callback] = [HParamsCallback(flat_hparams(cfg), tested=bool(cfg.get("test", True))), PlainCudaCheck()]
    checkpoints: list[L.Callback] = []
    if not cfg.get("eval_only"):  # evaluating a checkpoint saves none and has nothing to diverge
        record = RunRecord(run_config(cfg), input_columns(cfg))
        ours += [InitialCheckpoint(ckpt_dir / LAST), InterruptCheckpoint(ckpt_dir / LAST), record]
        checkpoints = [
            BestCheckpoint(  # the first ModelCheckpoint is trainer.checkpoint_callback: the best one
                dirpath=ckpt_dir,
                filename="best-epoch{epoch:03d}-val_acc{val/acc:.4f}",
                auto_insert_metric_name=False,
                monitor="val/acc",
                mode="max",
            ),
            # last.ckpt after every epoch. Not save_last=True: since Lightning 2.6 that writes last.ckpt only
            # when the best one improved, and a resume would restart from the best epoch, not the last one.
            # At the epoch's end, after the LightningModule's on_train_epoch_end has added the epoch to the history
            # (Lightning calls checkpoint callbacks after it), and at every epoch: its default saved at the end of
            # validation, before that, and with trainer.check_val_every_n_epoch=N only every N epochs, so a resumed
            # run lost that epoch's place in the history and trained up to N - 1 epochs again.
            ModelCheckpoint(
                dirpath=ckpt_dir,
                filename=LAST.removesuffix(".ckpt"),
                enable_version_counter=False,
                save_on_train_epoch_end=True,
            ),
        ]
    if dm is not None and "diagnostics" in cfg:
        ours += diagnostics_callbacks(OmegaConf.to_container(cfg.diagnostics, resolve=True), dm)
    callbacks = [CallbackGroup(ours), *extra_callbacks, *checkpoints]
    refresh = int(cfg.get("progress_refresh_rate", 50))
    if refresh > 0:
        callbacks.append(StepProgressBar(refresh_rate=refresh))
    trainer_kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    if trainer_kwargs.get("enable_progress_bar") is None:
        trainer_kwargs["enable_progress_bar"] = refresh > 0
    if cfg.get("eval_only"):
        trainer_kwargs["enable_checkpointing"] = False
    if isinstance(trainer_kwargs.get("val_check_interval"), int):  # optimizer steps (validate: a multiple of K)
        trainer_kwargs["val_check_interval"] //= cfg.steps_per_execution  # Lightning counts its batches: executions
    try:
        trainer = L.Trainer(**trainer_kwargs, logger=logger, callbacks=callbacks, default_root_dir=str(run_dir))
    except (MisconfigurationException, ValueError, TypeError) as err:  # Lightning's words for a setting it refuses
        raise ConfigError(f"trainer: {str(err).strip().splitlines()[0]}") from None
    return trainer


def nnmodel_callback(trainer: L.Trainer, cls: type[L.Callback]) -> L.Callback | None:
    """The callback of type ``cls`` that build_trainer put in the trainer's CallbackGroup, or None."""
    group = next((cb for cb in trainer.callbacks if isinstance(cb, CallbackGroup)), None)
    return group.find(cls) if group is not None else None


def describe_network(module: NNModule) -> str:
    net = module.net
    acts = ",".join(dict.fromkeys(a.name for a in net.activations)) or "none"
    n_params = count_parameters(net)
    return f"{'-'.join(map(str, net.sizes))} ({acts} → {net.output}, {n_params:,} parameters, init {net.init})"


def input_columns(cfg: DictConfig) -> list[str] | None:
    """A CSV table's input columns, in the network's order (what RunRecord keeps); None for other data."""
    d = cfg.data
    if d.name != "csv":
        return None
    columns = read_table(d.name, d.path, d.target, d.features).columns  # cached: read once per run
    return None if columns is None else list(columns)


def prepare(cfg: DictConfig, overrides: Sequence[str] | None = None) -> tuple[DictConfig, Path, dict | None]:
    """The config the run uses (with ``ckpt_path``: the checkpoint's own, see :mod:`nnmodel.resume`) and
    where it writes (:func:`train` checks that directory with :func:`check_run_dir`). Raises
    :class:`ConfigError`; writes nothing."""
    if overrides is None and HydraConfig.initialized():
        overrides = command_line(HydraConfig.get())
    check_interpolations(cfg)  # first: a ${...} that resolves to nothing, and a key deleted with ~key (next) are
    check_keys(cfg)  # said as such, before anything reads them
    check_output_dir_value(cfg)
    cfg, ckpt = settle(cfg, overrides)
    try:
        validate_config(cfg)
    except ConfigError as err:
        raise preset_origin(err, overrides) from None
    evaluating, resuming = ckpt is not None and cfg.eval_only, ckpt is not None and not cfg.eval_only
    if evaluating:
        check_fits(cfg, ckpt)
    if resuming:
        check_trains_on(cfg, ckpt)
        check_fits(cfg, ckpt, "resume")  # the table may have changed since: one line, not load_state_dict's traceback
        check_same_table(cfg, ckpt)
    if resumes_in_place(cfg, ckpt):
        # resuming continues the same run, in its own directory: same tb/, same checkpoints/, same result.json
        run_dir = Path(os.path.abspath(Path(cfg.ckpt_path).parent.parent))
        typed = any(override_key(o) == "paths.output_dir" for o in overrides or ())
        given = cfg.paths.get("output_dir")
        if typed and given is not None and Path(os.path.abspath(given)) != run_dir:
            raise ConfigError(
                f"paths.output_dir={given}: a resumed run goes on in its own directory, '{run_dir}'; drop "
                "paths.output_dir (to go on elsewhere, copy the run's directory there and resume the copy)"
            )
        return cfg, run_dir, ckpt
    return cfg, output_dir(cfg), ckpt


def command_line(hydra_cfg: DictConfig) -> list[str]:
    """The overrides as typed (``hydra.overrides.task``): unresolved, since OmegaConf would resolve the ``${seed}`` of
    ``paths.output_dir=runs/s${seed}`` inside the string itself."""
    return [str(o) for o in OmegaConf.to_container(hydra_cfg.overrides.task, resolve=False)]


def resumes_in_place(cfg: DictConfig, ckpt: dict | None) -> bool:
    """Whether the run resumes a checkpoint of a run directory (``RUN/checkpoints/X.ckpt``), and so goes on there."""
    return ckpt is not None and not cfg.eval_only and Path(cfg.ckpt_path).parent.name == "checkpoints"


def check_output_dir_value(cfg: DictConfig) -> None:
    """``paths.output_dir`` is null (Hydra's outputs/DATE/TIME) or names a directory: never the empty string,
    which would put checkpoints/, tb/ and result.json into the current directory."""
    given = cfg.paths.get("output_dir")
    if given is not None and not str(given).strip():
        raise ConfigError(
            f"paths.output_dir={given!r} is empty; name the run's directory (paths.output_dir=myrun), or leave it "
            "null for a new outputs/DATE/TIME"
        )


# What a directory holds once a run has written into it
RUN_FILES = ("result.json", "checkpoints", "tb")
OWN_DIRS = ("tb", "checkpoints", ".hydra")  # a run's own folders: no other run goes there


def check_run_dir(cfg: DictConfig, run_dir: Path) -> None:
    """The directory a new run (or an evaluation) writes into must be one that can be made or written to, and
    must not hold another run already: its result.json would be overwritten, its checkpoints mixed with the new
    ones (best-...-v1.ckpt beside them, last.ckpt replaced) and its TensorBoard curves with the new run's."""
    given = cfg.paths.get("output_dir")
    key, shown = "paths.output_dir", str(given) if given is not None else str(run_dir)
    if given is None and HydraConfig.initialized():  # the directory Hydra made
        # in a sweep, the run's own directory: hydra.sweep.subdir names it (under hydra.sweep.dir, checked before)
        key = "hydra.sweep.subdir" if HydraConfig.get().mode == RunMode.MULTIRUN else "hydra.run.dir"
    check_can_make(key, shown, run_dir)
    if not rank_zero():  # DDP's other processes start after rank 0 has begun writing into the run directory
        return
    check_holds_no_run(key, shown, run_dir, hint=cfg.get("ckpt_path") is None)
    check_not_in_run(key, shown, run_dir)


def check_not_in_run(key: str, shown: str, run_dir: Path) -> None:
    """Refuse a run directory that is, or is inside, another run's ``tb/``, ``checkpoints/`` or ``.hydra/``:
    TensorBoard would show its curves as a second run of the other one, and ``ckpt_path=last`` could pick its
    checkpoints."""
    run_dir = Path(os.path.abspath(run_dir))
    # another run's: its parent holds a run besides it (a folder of the user's named tb or checkpoints is not one)
    held = lambda d: any((d.parent / name).exists() for name in RUN_FILES if name != d.name)
    found = next((d for d in (run_dir, *run_dir.parents) if d.name in OWN_DIRS and held(d)), None)
    if found is not None:
        where = f"is the {found.name}/ of another run" if found == run_dir else f"is inside '{found}' of another run"
        raise ConfigError(f"{key}: '{shown}' {where} ('{found.parent}'); give a directory outside it")


def check_can_make(key: str, shown: str, run_dir: Path) -> None:
    """``run_dir`` is a directory, or one can be made there: not a file, not under a file, somewhere writable."""
    if not shown.strip():
        raise ConfigError(f"{key}={shown!r} is empty; name a directory")
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"{key}: '{shown}' is a file, not a directory; give the name of a new directory")
    ancestor = run_dir
    while not ancestor.exists() and ancestor != ancestor.parent:  # the nearest part of the path that exists
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ConfigError(f"{key}: '{shown}' cannot be a directory, '{ancestor}' is a file; give another path")
    try:  # whether a directory can be made there: one is made and removed at once (os.access says yes to root)
        os.rmdir(tempfile.mkdtemp(prefix=".nnmodel-check-", dir=ancestor))
    except OSError as err:
        raise ConfigError(
            f"{key}: cannot create '{shown}': '{ancestor}' takes no new directory ({err.strerror}); give a "
            "directory you can write to"
        ) from None


def holds_run(path: Path) -> bool:
    """Whether a run has written into ``path`` (any of :data:`RUN_FILES`)."""
    return any((path / name).exists() for name in RUN_FILES)


def check_holds_no_run(key: str, shown: str, run_dir: Path, hint: bool = True) -> None:
    """Refuse a directory that already holds a run (any of :data:`RUN_FILES`); ``hint``: say how to resume it."""
    held = [name for name in RUN_FILES if (run_dir / name).exists()]
    if held:
        last = run_dir / "checkpoints" / LAST
        hint = hint and last.is_file()
        resume = f", or resume that run with ckpt_path={Path(shown) / 'checkpoints' / LAST}" if hint else ""
        raise ConfigError(f"{key}: '{shown}' already holds a run ({', '.join(held)}); give a new directory{resume}")
    if held := sweep_held(run_dir):  # a run written there would be a run of that sweep's report
        raise ConfigError(f"{key}: '{shown}' holds a sweep ({', '.join(held)}); give a new directory")


# What a sweep directory holds once a sweep has run there (beside its runs' sub-directories)
SWEEP_FILES = ("multirun.yaml", "summary.csv", "report.md")


def sweep_held(path: Path) -> list[str]:
    """The files that show a sweep has run in ``path`` (:data:`SWEEP_FILES`): Hydra's multirun.yaml, or a report's
    summary.csv and report.md together (a report.md alone may be anyone's); a folder of runs alone is not one."""
    held = [name for name in SWEEP_FILES if (path / name).exists()]
    return held if "multirun.yaml" in held or {"summary.csv", "report.md"} <= set(held) else []


def check_sweep_dir(hydra_sweep_dir: Path, numbered: bool = True) -> None:
    """A ``-m`` sweep's directory must not hold another sweep whose runs' sub-directories (0/, 1/, ...: a
    ``hydra.sweep.subdir`` numbered by ``hydra.job.num``) would be written into again. Sub-directories named
    otherwise (``${hydra.job.override_dirname}``) may add runs to a study: each run checks its own directory, and
    the report then covers them all."""
    check_can_make("hydra.sweep.dir", str(hydra_sweep_dir), hydra_sweep_dir)
    if held := [name for name in RUN_FILES if (hydra_sweep_dir / name).exists()]:  # a report would count it as a run
        raise ConfigError(f"hydra.sweep.dir: '{hydra_sweep_dir}' holds a run ({', '.join(held)}); give a new directory")
    if not numbered or not hydra_sweep_dir.is_dir():
        return
    held = sweep_held(hydra_sweep_dir)
    held += sorted(d.name + "/" for d in hydra_sweep_dir.iterdir() if d.is_dir() and (d / "result.json").exists())[:3]
    if held:
        raise ConfigError(
            f"hydra.sweep.dir: '{hydra_sweep_dir}' already holds a sweep ({', '.join(held)}); give a new directory"
        )


# What the directory hydra.run.dir names held before Hydra wrote its .hydra/ and train.log there (None: it was not
# there), and the directories Hydra makes for it (it and the missing ones above it), as RunDirGuard found them, by
# absolute path as Hydra gives it (os.path.abspath: a/../b is b): a run that writes nothing takes back only what
# Hydra added (discard_hydra_files)
FOUND_BEFORE: dict[Path, tuple[frozenset[str] | None, tuple[Path, ...]]] = {}
# What Hydra writes into a run's directory itself
HYDRA_FILES = (".hydra", "train.log")


def found_before(run_dir: Path) -> tuple[frozenset[str] | None, tuple[Path, ...]]:
    """What ``run_dir`` holds now (None: it is not there), and the directories a ``mkdir -p`` of it would make."""
    run_dir = Path(os.path.abspath(run_dir))
    made = tuple(d for d in (run_dir, *run_dir.parents) if not d.exists())
    return (frozenset(p.name for p in run_dir.iterdir()) if run_dir.is_dir() else None), made


def discard_hydra_files(run_dir: Path) -> None:
    """Take back what Hydra wrote for a run that wrote nothing itself (refused, stopped early, or writing elsewhere:
    ``paths.output_dir``, a resumed run's own directory). The directories Hydra made go when they are left empty
    (``outputs/DATE/TIME``, ``outputs/DATE``, ``outputs``); one that was there before (``hydra.run.dir=mine``) keeps
    what it held."""
    if not run_dir.is_dir():
        return
    run_dir = Path(os.path.abspath(run_dir))
    # (no record: RunDirGuard did not look, e.g. an unresolvable hydra.run.dir; Hydra's outputs/DATE/TIME layout)
    before, made = FOUND_BEFORE.get(run_dir, (None, (run_dir, run_dir.parent, run_dir.parent.parent)))
    added = [p for p in run_dir.iterdir() if p.name not in (before or ())]
    if not all(p.name in HYDRA_FILES for p in added):
        return  # the run wrote here
    for path in added:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    for directory in made:  # the deepest first, while empty
        if not directory.is_dir() or any(directory.iterdir()):
            break
        directory.rmdir()


class RunDirGuard(HydraCallback):
    """Hydra callback (``hydra.callbacks.run_dir_guard`` in configs/train.yaml): before Hydra writes its ``.hydra/``
    files into the run's (or the sweep's) directory, which would replace an earlier run's record of its config,
    refuse a ``hydra.run.dir`` that holds a run or a ``hydra.sweep.dir`` that holds a sweep, and
    ``paths.output_dir`` in a sweep (it names one directory, and every run of the sweep would write there).
    :func:`check_run_dir` checks the directory again when the run starts: this is what Hydra lets us check first."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Not where Hydra writes no .hydra/ (hydra.output_subdir=null: so Lightning starts DDP's other processes,
        # with rank 0's hydra.run.dir), nor in a process other than rank 0 (torchrun, SLURM)
        if config.hydra.get("output_subdir") is None or not rank_zero():
            return
        with exit_on_config_error():
            if (run_dir := hydra_dir(config, "hydra.run.dir")) is None:
                return
            check_can_make("hydra.run.dir", str(config.hydra.run.dir), run_dir)
            check_not_in_run("hydra.run.dir", str(config.hydra.run.dir), run_dir)
            FOUND_BEFORE[Path(os.path.abspath(run_dir))] = found_before(run_dir)
            if not holds_run(run_dir) and not sweep_held(run_dir):
                return
            if config.get("ckpt_path") is not None and not config.get("eval_only"):
                raise ConfigError(
                    f"hydra.run.dir: '{run_dir}' already holds a run; drop hydra.run.dir: a resumed run goes on in its "
                    "own directory"
                )
            check_holds_no_run("hydra.run.dir", str(run_dir), run_dir, hint=config.get("ckpt_path") is None)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not rank_zero():
            return
        with exit_on_config_error():
            check_output_dir_in_sweep(config)
            check_sweep_subdir(config)
            if (sweep_dir := hydra_dir(config, "hydra.sweep.dir")) is not None:
                subdir = str(OmegaConf.to_container(config.hydra.sweep, resolve=False).get("subdir"))
                check_sweep_dir(sweep_dir, numbered="hydra.job.num" in subdir)


def several_runs(config: DictConfig) -> bool:
    """Whether a ``-m`` starts several runs: an Optuna search, or a sweep on the command line (a=1,2, range(...),
    choice(...), interval(...), glob(...), as Hydra parses them: ``model.hidden=[64,32]`` is one value)."""
    if "optuna" in str(config.hydra.sweeper.get("_target_", "")):
        return True
    try:
        return any(o.is_sweep_override() for o in OverridesParser.create().parse_overrides(command_line(config.hydra)))
    except Exception:
        return False  # an override Hydra cannot parse: Hydra says so itself


def check_sweep_subdir(config: DictConfig) -> None:
    """``hydra.sweep.subdir`` must tell a sweep's runs apart (``${hydra.job.num}``, ``${hydra.job.override_dirname}``):
    a constant one sends every run into one directory, where Hydra rewrites the first run's .hydra/ before the second
    is refused."""
    subdir = OmegaConf.to_container(config.hydra.sweep, resolve=False).get("subdir")
    if subdir is not None and "${" not in str(subdir) and several_runs(config):
        raise ConfigError(
            f"hydra.sweep.subdir={subdir} is the same for every run of this sweep, which would all write there; give "
            "one that tells them apart, such as hydra.sweep.subdir=${hydra.job.num} (the default)"
        )


def check_output_dir_in_sweep(config: DictConfig) -> None:
    """``paths.output_dir`` names one run's directory: a sweep of several runs would send them all there. Fine in a
    ``-m`` of one run (one job sent to SLURM) and as an interpolation (``runs/s${seed}``), one directory per run."""
    if "paths" not in config or OmegaConf.is_interpolation(config.paths, "output_dir"):
        return  # (~paths, or an interpolation: the run says in one line what is wrong with it)
    if (given := config.paths.get("output_dir", None)) is None:
        return
    if several_runs(config):
        raise ConfigError(
            f"paths.output_dir={given} names one run's directory, but this sweep starts several runs, each of which "
            f"would write there; give hydra.sweep.dir={given} instead (a sub-directory per run), or an "
            "interpolation such as paths.output_dir=runs/s${seed}"
        )


def hydra_dir(config: DictConfig, key: str) -> Path | None:
    """``hydra.run.dir`` or ``hydra.sweep.dir`` as a path; None when it cannot be resolved before the job starts
    (an interpolation of what only the job knows: then the run's own check is the only one)."""
    try:
        return Path(str(OmegaConf.select(config, key, throw_on_missing=True)))
    except Exception:
        return None


def rank_zero() -> bool:
    """Whether this process is the first of its job: Lightning's ``rank_zero_only.rank``, which it reads at import
    from the environment of torchrun, its own DDP launcher and SLURM (a process none of them started is 0)."""
    return getattr(rank_zero_only, "rank", 0) == 0


def output_dir(cfg: DictConfig) -> Path:
    """Where a new run writes: ``paths.output_dir``; else Hydra's run directory under ``train.py``, and from
    Python a new ``outputs/DATE/TIME`` directory of the same form (never one that exists)."""
    if cfg.paths.output_dir is not None:
        return Path(cfg.paths.output_dir).absolute()
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir).absolute()
    while (path := Path("outputs") / datetime.now().strftime("%Y-%m-%d/%H-%M-%S-%f")).exists():
        pass
    return path.absolute()


def check_fits(cfg: DictConfig, ckpt: dict[str, Any], action: str = "evaluate") -> None:
    """The data set to evaluate on (or to resume training on: ``action="resume"``) must have the checkpoint
    network's number of features and classes, and the labels it was trained on (a table's label values, or the
    class indices 0..K-1): the network's outputs are the checkpoint's classes in their sorted order, so another set
    of labels would pair with them by position."""
    hp = ckpt.get("hyper_parameters") or {}
    info = DATASETS[cfg.data.name].describe(cfg.data)
    trained = (ckpt.get("TensorDataModule") or {}).get("classes")  # None: a checkpoint that does not say
    labels = list(info.classes) if info.classes is not None else list(range(info.n_classes))
    # the labels first where both are named (a table with some of the checkpoint's classes: which ones), then the shape
    named = trained is not None and info.classes is not None and info.n_features == hp.get("n_in")
    if not named and (info.n_features, info.n_classes) != (hp.get("n_in"), hp.get("n_classes")):
        raise ConfigError(
            f"data={cfg.data.name}: its examples have {info.n_features} features and {info.n_classes} classes, but "
            f"the checkpoint's network takes {hp.get('n_in')} features and predicts {hp.get('n_classes')} classes; "
            f"{action} it on data of that shape"
        )
    if trained is not None and not same_labels(labels, list(trained)):
        if cfg.data.name in TABLES:
            table = read_table(cfg.data.name, cfg.data.path, cfg.data.target, cfg.data.features)
            key = "data.target" if cfg.data.name == "csv" else "data.path"
            where = f"{key}: the labels of '{cfg.data.path}' ({table.label})"
        else:
            where = f"data={cfg.data.name}: its labels"
        raise ConfigError(
            f"{where} are {show_labels(labels)}, but the checkpoint was trained on {show_labels(list(trained))}; "
            f"{action} it on data with the same labels"
        )


def same_labels(a: Sequence[Any], b: Sequence[Any]) -> bool:
    """The same label values in the same order, of the same types: 1 and '1' (or 1.0) are other labels."""
    return len(a) == len(b) and all(type(x) is type(y) and x == y for x, y in zip(a, b, strict=True))


def show_labels(labels: Sequence[Any], most: int = 12) -> str:
    """A list of labels as Python writes it (strings quoted, so '1' and 1 differ), the first ``most`` of many."""
    shown = ", ".join(map(repr, labels[:most]))
    return f"[{shown}, ... ({len(labels)} in all)]" if len(labels) > most else f"[{shown}]"


@contextlib.contextmanager
def process_state_restored() -> Iterator[None]:
    """Put what a run changes of the process back as it was after the block: a run changes nothing outside itself.

    - torch's determinism settings: ``lightning.Trainer(deterministic=True)`` (trainer=cpu, and the estimator on CPU)
      calls ``torch.use_deterministic_algorithms(True)``, sets cuDNN's flags and CUBLAS_WORKSPACE_CONFIG, and leaves
      them so: in a notebook, the user's own CUDA code after a fit would then fail on every op that has no
      deterministic kernel.
    - torch's thread count (``threads``: a run's own);
    - the global random generators (Python's, NumPy's, torch's: ``torch.random.fork_rng``), ``PL_GLOBAL_SEED`` and
      ``PL_SEED_WORKERS``, which ``seed_everything(seed)`` resets: a random search that draws its settings from
      ``np.random`` in a loop of ``nnmodel.train`` calls would draw the same values after the first call.
    """
    algorithms = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    threads = torch.get_num_threads()  # a run's own (threads=auto: 1 for a small network)
    env = {name: os.environ.get(name) for name in ("CUBLAS_WORKSPACE_CONFIG", "PL_GLOBAL_SEED", "PL_SEED_WORKERS")}
    python_rng, numpy_rng = random.getstate(), np.random.get_state()
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []  # not started here
    try:
        with torch.random.fork_rng(devices=cuda):
            yield
    finally:
        torch.use_deterministic_algorithms(algorithms[0], warn_only=algorithms[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
        torch.set_num_threads(threads)
        for name, value in env.items():
            set_env(name, value)
        random.setstate(python_rng)
        np.random.set_state(numpy_rng)


# Below this many multiply-adds in one minibatch's forward pass, one torch thread trains as fast as several on an idle
# machine and 2-3x faster on a busy one, where OpenMP's threads wait for each other at every parallel region
# (python bench/threads.py: README, Performance). digits' default 64-128-10 at batch 64: 606,208; MNIST's 784-100-10
# at batch 128: 10,163,200, which two threads train 1.2-1.3x faster on an idle machine.
SMALL_NETWORK_MACS = 2_000_000


def run_threads(setting: str | int, net: FeedForward, batch_size: int) -> int:
    """torch's intra-op threads for a run: ``setting`` when it is a number; for ``auto``, 1 for a small network
    (:data:`SMALL_NETWORK_MACS`), else as many as torch has now (its default, or a parallel sweep's share)."""
    if setting != "auto":
        return int(setting)
    macs = batch_size * sum(layer.in_features * layer.out_features for layer in net.layers)
    return 1 if macs < SMALL_NETWORK_MACS else torch.get_num_threads()


def train(cfg: DictConfig, overrides: Sequence[str] | None = None) -> dict[str, Any]:
    """Fit and test as the config says; return the final metrics and where the outputs are.

    ``overrides`` are the command line's (``train.py`` passes Hydra's); with ``ckpt_path`` they tell
    which keys the user set (see :mod:`nnmodel.resume`). Raises :class:`ConfigError` (before anything
    is written) for a bad config and :class:`DivergedError` when the loss becomes NaN/inf or too large;
    ``result.json`` records either outcome.
    """
    if overrides is None and HydraConfig.initialized():
        overrides = command_line(HydraConfig.get())
    cfg, run_dir, ckpt = prepare(cfg, overrides)
    if resumes_in_place(cfg, ckpt):
        overrides = resumed_overrides(run_dir, overrides or ())
    else:
        check_run_dir(cfg, run_dir)  # a new run's directory, or an evaluation's (a resumed run goes on in its own)
    with quiet(), process_state_restored():
        return run(cfg, run_dir, ckpt, overrides or ())


def resumed_overrides(run_dir: Path, overrides: Sequence[str]) -> list[str]:
    """What a run resumed in its own directory records as asked for: the overrides it recorded (its result.json, or
    Hydra's .hydra/overrides.yaml for a run killed before writing one), with the keys this command sets in their
    place and ``ckpt_path`` left out. A sweep's report reads them: a resumed job keeps its swept values."""
    recorded: Any = None
    with contextlib.suppress(OSError, ValueError):
        recorded = json.loads((run_dir / "result.json").read_text())
    recorded = recorded.get("overrides") if isinstance(recorded, dict) else None
    if not isinstance(recorded, list):
        with contextlib.suppress(OSError, yaml.YAMLError):
            recorded = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())
    if not isinstance(recorded, list):
        recorded = []

    changed = {override_key(o): str(o) for o in overrides if override_key(o) != "ckpt_path"}
    kept = [changed.pop(override_key(str(o)), str(o)) for o in recorded]
    return [*kept, *changed.values()]


def run(cfg: DictConfig, run_dir: Path, ckpt: dict[str, Any] | None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Build the data, the module and the trainer, then fit (or only evaluate) and test; see :func:`train`.
    result.json records ``overrides`` and the seed: what the run was asked for, in its own record (a sweep's report
    reads them there: Hydra's ``.hydra/`` of a directory is rewritten by any later command given that directory)."""
    if ckpt is not None and not cfg.get("eval_only"):
        print(f"resuming {run_dir} from {cfg.ckpt_path} (step {ckpt.get('global_step')})", flush=True)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = build_datamodule(cfg)
    if cfg.get("eval_only"):
        dm.evaluate_as(ckpt.get("TensorDataModule") or {})  # the checkpoint's scaling and labels, not the data's
    elif ckpt is not None and ckpt.get("TensorDataModule"):
        # a resumed run's inputs must be scaled as the checkpoint's were: load_splits then checks the table's mean and
        # std against them (one line, before anything is written), as Lightning's restore would once fit had begun
        dm.load_state_dict(ckpt["TensorDataModule"])
    load_splits(cfg, dm)
    module = build_module(cfg, dm)
    batch = cfg.data.batch_size if dm.splits is None else min(cfg.data.batch_size, len(dm.split("train")[1]))
    torch.set_num_threads(run_threads(cfg.get("threads", "auto"), module.net, batch))  # process_state_restored after
    trainer = build_trainer(cfg, run_dir, dm)
    results: dict[str, Any] = {"status": "ok", "run_dir": str(run_dir), "overrides": list(overrides), "seed": cfg.seed}
    results["threads"] = torch.get_num_threads()
    last = run_dir / "checkpoints" / LAST  # what a diverged or interrupted run resumes from
    started = time.perf_counter()
    try:
        with ctrl_c_as_keyboard_interrupt():
            if cfg.get("eval_only", False):
                module.load_state_dict(ckpt["state_dict"])  # the weights only: nothing of the run's training state
                module.steps_before = int(ckpt.get("global_step") or 0)  # its metrics at the step it was saved
                trainer.validate(module, datamodule=dm, verbose=False)
            else:
                trainer.fit(module, datamodule=dm, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
    except DivergedError as err:
        message = f"{err}; the last good checkpoint is {last}"
        results |= {"status": "diverged", "message": message}
        raise DivergedError(message) from None
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM (InterruptCheckpoint), or a Ctrl-C before it listened
        resume = f"; resume with ckpt_path={last}" if last.is_file() else " (no checkpoint to resume)"
        results |= {"status": "interrupted", "message": f"stopped by Ctrl-C or SIGTERM{resume}"}
        stopper = nnmodel_callback(trainer, InterruptCheckpoint)
        if stopper is None or stopper.signal is None:  # e.g. in the sanity check, before training began
            raise
        raise Interrupted(stopper.signal, signal.Signals(stopper.signal).name) from None
    finally:
        results |= {
            "val/acc": _metric(trainer, "val/acc"),
            "val/loss": _metric(trainer, "val/loss"),
            "epochs": trainer.current_epoch,
            "global_step": trainer.global_step,
            "seconds": time.perf_counter() - started,
            "history": module.history,
        }
        diagnostics = nnmodel_callback(trainer, DiagnosticsCallback)
        if diagnostics is not None:
            results["diagnostics"] = diagnostics.summary()
        best = trainer.checkpoint_callback
        results["best_ckpt"] = best.best_model_path if best and best.best_model_path else None
        if cfg.get("eval_only"):  # the checkpoint given is what was evaluated, whatever its run found best
            results |= {"best_ckpt": cfg.ckpt_path, "epochs": None, "global_step": ckpt.get("global_step")}
        elif results["status"] == "ok" and results["best_ckpt"] is None and results["val/acc"] is None:
            # No validation ran, so no checkpoint is the best: the last weights are what the test measures. last.ckpt
            # (saved at each epoch's end) is written again here at the end of fit, which a resume continues from
            # (collective under DDP: every rank takes this branch, its conditions are the same on each).
            trainer.save_checkpoint(last)
            if cfg.test:
                t = cfg.trainer
                why = (
                    f"trainer.limit_val_batches={t.limit_val_batches}"
                    if t.get("limit_val_batches") == 0
                    else f"trainer.check_val_every_n_epoch={t.get('check_val_every_n_epoch')} in "
                    f"{plural(trainer.current_epoch, 'epoch')}"
                )
                warnings.warn(
                    f"no validation ran ({why}), so no checkpoint is the best by val/acc: the last weights, saved as "
                    f"{last}, are tested",
                    NNModelWarning,
                    stacklevel=1,
                )
        if results["status"] != "ok" and trainer.is_global_zero:
            write_result(run_dir, results)

    if cfg.get("test", True):
        try:
            with ctrl_c_as_keyboard_interrupt():
                trainer.test(
                    module,
                    datamodule=dm,
                    ckpt_path=None if cfg.get("eval_only") else results["best_ckpt"] or cfg.get("ckpt_path"),
                    verbose=False,
                    weights_only=True,
                )
        except (KeyboardInterrupt, SIGTERMException):  # the training is done and saved: record it, and what to test
            tested = results["best_ckpt"] or last  # no validation: the last weights, saved again above
            when = "" if cfg.get("eval_only") else ", after training"
            message = f"stopped by Ctrl-C or SIGTERM in the test{when}; test with eval_only=true ckpt_path={tested}"
            results |= {"status": "interrupted", "message": message}
            if trainer.is_global_zero:
                write_result(run_dir, results)
            raise
        results["test/acc"] = _metric(trainer, "test/acc")
        results["test/loss"] = _metric(trainer, "test/loss")
    if trainer.is_global_zero:
        write_result(run_dir, results)
        print_summary(cfg, dm, module, results)
    return results


def load_splits(cfg: DictConfig, dm: TensorDataModule) -> None:
    """Load the data now, before the trainer and its logger exist, so that a split that comes out empty (or a
    trainer.val_check_interval longer than an epoch) is refused before anything is written; Lightning's own
    ``prepare_data``/``setup`` calls in ``fit`` then find the files there and the splits loaded. Under DDP the other
    processes start inside ``fit``, after rank 0 has prepared (downloaded) the data here; under torchrun or SLURM all
    start at once, and Lightning loads the data (an empty split is then Lightning's error)."""
    if launched_together():
        return  # Lightning prepares the data on each node's first process, the others wait (a barrier), then setup
    dm.prepare_data()
    dm.setup("fit")
    check_split_sizes(cfg, {name: len(dm.split(name)[1]) for name in ("train", "val", "test")})
    seen = torch.unique(dm.split("train")[1]).tolist()
    if len(seen) < dm.n_classes:  # e.g. MNIST-format files of a few digits: the others can never be predicted
        missing = sorted(set(range(dm.n_classes)) - set(seen))
        names = [dm.class_names[i] for i in missing]
        warnings.warn(
            f"data={cfg.data.name}: the train split holds {len(seen)} of the {dm.n_classes} classes; the network "
            f"cannot learn {plural(len(missing), 'class', 'classes')} it never sees ({show_labels(names)})",
            NNModelWarning,
            stacklevel=2,
        )


def launched_together() -> bool:
    """Whether this process is one of several that were started at once (torchrun, srun, or Lightning's DDP launcher
    for its other processes): the environment says so in WORLD_SIZE or SLURM_NTASKS."""
    return any(int(os.environ.get(key) or 1) > 1 for key in ("WORLD_SIZE", "SLURM_NTASKS"))


def write_result(run_dir: Path, results: dict[str, Any]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / "result.json.tmp"
    tmp.write_text(json.dumps(results, indent=2, default=str))
    tmp.replace(run_dir / "result.json")  # atomic: a reader never sees half a file


def _metric(trainer: L.Trainer, key: str) -> float | None:
    value = trainer.callback_metrics.get(key)
    return float(value) if isinstance(value, torch.Tensor) else value


def print_summary(cfg: DictConfig, dm: TensorDataModule, module: NNModule, r: dict[str, Any]) -> None:
    opt = cfg.optimizer

    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    last = Path(r["run_dir"]) / "checkpoints" / LAST
    lines = [
        "",
        "nnmodel summary",
        f"  data       {dm.name}: {dm.describe()}",
        f"  network    {describe_network(module)}",
        f"  optimizer  {opt.name} (lr {opt.lr}), batch {cfg.data.batch_size}, backprop {cfg.model.backprop}",
        f"  evaluated  the checkpoint at step {r['global_step']} in {r['seconds']:.1f} s"
        if cfg.get("eval_only")
        else f"  training   {plural(r['epochs'], 'epoch')} ({plural(r['global_step'], 'step')}) in "
        f"{r['seconds']:.1f} s",
        f"  accuracy   val {fmt(r['val/acc'])} (loss {fmt(r['val/loss'])})   test {fmt(r.get('test/acc'))}",
        f"  logs       {r['run_dir']}/tb    →  tensorboard --logdir {r['run_dir']}"
        if (Path(r["run_dir"]) / "tb").is_dir()
        else "  logs       none (trainer.fast_dev_run writes no TensorBoard logs)"
        if cfg.trainer.get("fast_dev_run")
        else "  logs       none",
        f"  checkpoint {r['best_ckpt']}"
        if r["best_ckpt"]
        else f"  checkpoint none by val/acc (no validation ran); the last weights: {last}"
        if r["status"] == "ok" and last.is_file()
        else "  checkpoint none",
    ]
    print("\n".join(lines), flush=True)
