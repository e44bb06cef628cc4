"""From a composed config to a trained, tested model: what ``python train.py`` runs.

``train(cfg)`` validates the config, then only builds objects and calls ``fit``/``test``; every
decision lives in the config. Each run directory holds ``tb/`` (TensorBoard), ``checkpoints/``
(best, last) and ``result.json`` (status, final metrics, per-epoch history).
"""

from __future__ import annotations

import json
import signal
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from nnmodel.callbacks import DivergedError, DivergenceGuard, EpochHistory, HParamsCallback, skip_unused_hooks
from nnmodel.data import TensorDataModule
from nnmodel.diagnostics import DiagnosticsCallback, diagnostics_callbacks
from nnmodel.module import NNModule
from nnmodel.network import count_parameters
from nnmodel.validate import ConfigError, check_checkpoint, validate_config

LAST = "last.ckpt"
# InterruptCheckpoint makes our batches resumable mid-epoch (it skips the batches already done), which
# Lightning cannot see for an iterable without state_dict(): its warning about that would mislead.
warnings.filterwarnings("ignore", message=".*your dataloader is not resumable.*")


def flat_hparams(cfg: DictConfig) -> dict[str, Any]:
    """The run's hyperparameters as flat ``group.key`` → scalar/str pairs (TensorBoard's HParams tab)."""
    out: dict[str, Any] = {"seed": cfg.seed}
    for group in ("data", "model", "optimizer"):
        for key, value in _flatten(OmegaConf.to_container(cfg[group], resolve=True), group).items():
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
    """On Ctrl-C (SIGINT) or SIGTERM, finish the batch in flight, save a resumable ``last.ckpt``, exit.

    The signal only sets a flag; the checkpoint is written at the next batch boundary, where the
    weights, the optimizer state and the count of batches done in this epoch agree. That count is
    kept in the checkpoint, and on resume the training batches skip exactly those, so the resumed
    run sees the same batches in the same order as an uninterrupted one.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.skip = 0  # batches of the current epoch done before a resume
        self._done = 0  # batches of the current epoch done so far
        self._resumed_mid_epoch = False
        self._signal: int | None = None
        self._previous: dict[int, Any] = {}

    def _request(self, signum: int, frame: Any) -> None:
        if self._signal is not None:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self._signal = signum
        print(f"\n{signal.Signals(signum).name}: saving a resumable checkpoint after this batch ...", flush=True)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread():  # signal handlers live there only
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._request)
        # Resuming mid-epoch: Lightning continues the restored epoch (without on_train_epoch_start)
        # and stops it after the batches that remain; the data must skip the ones already done.
        self._done, self._resumed_mid_epoch = self.skip, self.skip > 0
        if self.skip:
            trainer.train_dataloader.skip_next = self.skip  # TensorBatches
            self.skip = 0

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.on_train_end(trainer, pl_module)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._resumed_mid_epoch:  # the restored epoch goes on counting from the skipped batches
            self._resumed_mid_epoch = False
        else:
            self._done = 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self._done += 1
        if self._signal is not None:
            self.skip = self._done
            trainer.save_checkpoint(self.path, weights_only=False)  # atomic: a temporary file, then renamed
            self.skip = 0
            print(f"interrupted: saved a resumable checkpoint to {self.path}", flush=True)
            raise KeyboardInterrupt  # Lightning shuts down cleanly and exits with status 1

    def state_dict(self) -> dict[str, Any]:
        return {"skip": self.skip}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skip = int(state_dict.get("skip", 0))


class InitialCheckpoint(L.Callback):
    """Save ``last.ckpt`` before the first step, so even a run that diverges or is killed in its
    first epoch leaves a good, loadable checkpoint behind."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Every rank must take the same branch: save_checkpoint is collective under DDP.
        if not trainer.strategy.broadcast(self.path.exists()):
            trainer.save_checkpoint(self.path, weights_only=False)


def build_datamodule(cfg: DictConfig) -> TensorDataModule:
    return TensorDataModule(**OmegaConf.to_container(cfg.data, resolve=True), seed=cfg.seed)


def build_module(cfg: DictConfig, dm: TensorDataModule) -> NNModule:
    # cfg.model's keys are NNModule's arguments (validate.MODEL_KEYS); the rest come from the data
    return NNModule(
        n_in=dm.n_features,
        n_classes=dm.n_classes,
        **OmegaConf.to_container(cfg.model, resolve=True),
        optimizer=OmegaConf.to_container(cfg.optimizer, resolve=True),
        seed=cfg.seed,
    )


def build_trainer(
    cfg: DictConfig, run_dir: Path, dm: TensorDataModule | None = None, extra_callbacks: list[L.Callback] = ()
) -> L.Trainer:
    logger = TensorBoardLogger(save_dir=str(run_dir), name="tb", version="", default_hp_metric=False)
    ckpt_dir = run_dir / "checkpoints"
    callbacks: list[L.Callback] = [
        ModelCheckpoint(
            dirpath=ckpt_dir,
            filename="best-epoch{epoch:03d}-val_acc{val/acc:.4f}",
            auto_insert_metric_name=False,
            monitor="val/acc",
            mode="max",
            save_last=True,
            enable_version_counter=False,  # one last.ckpt per run, overwritten in place (atomically)
        ),
        InitialCheckpoint(ckpt_dir / LAST),
        InterruptCheckpoint(ckpt_dir / LAST),
        DivergenceGuard(max_loss=float(cfg.get("diverge_above", 1e4))),
        EpochHistory(),
        LearningRateMonitor(logging_interval="epoch"),
        HParamsCallback(flat_hparams(cfg)),
        *extra_callbacks,
    ]
    if dm is not None and "diagnostics" in cfg:
        callbacks += diagnostics_callbacks(OmegaConf.to_container(cfg.diagnostics, resolve=True), dm)
    refresh = int(cfg.get("progress_refresh_rate", 50))
    if refresh > 0:
        callbacks.append(TQDMProgressBar(refresh_rate=refresh))
    trainer_kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer_kwargs.setdefault("enable_progress_bar", refresh > 0)
    trainer = L.Trainer(**trainer_kwargs, logger=logger, callbacks=callbacks, default_root_dir=str(run_dir))
    for callback in trainer.callbacks:  # ours and the ones Lightning adds
        skip_unused_hooks(callback, L.Callback)
    return trainer


def resolve_ckpt_path(value: str | None, outputs: Path = Path("outputs")) -> str | None:
    """``last`` means the newest ``last.ckpt`` under ``outputs/``; anything else is a path."""
    if value != "last":
        return value
    found = sorted(outputs.glob(f"*/*/checkpoints/{LAST}"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise ConfigError(f"ckpt_path=last: no {outputs}/*/*/checkpoints/{LAST} to resume from; give a path")
    return str(found[-1])


def describe_network(module: NNModule) -> str:
    net = module.net
    acts = ",".join(dict.fromkeys(a.name for a in net.activations)) or "none"
    n_params = count_parameters(net)
    return f"{'-'.join(map(str, net.sizes))} ({acts} → {net.output}, {n_params:,} parameters, init {net.init})"


def prepare(cfg: DictConfig) -> tuple[DictConfig, Path]:
    """Validate ``cfg`` and settle where the run writes. Raises :class:`ConfigError`; writes nothing."""
    validate_config(cfg)
    cfg = cfg.copy()
    ckpt = resolve_ckpt_path(cfg.get("ckpt_path"))
    if ckpt is not None:
        check_checkpoint(ckpt)
        OmegaConf.update(cfg, "ckpt_path", ckpt)
    run_dir = Path(cfg.paths.output_dir)
    if ckpt is not None and not cfg.get("eval_only") and Path(ckpt).parent.name == "checkpoints":
        run_dir = Path(ckpt).parent.parent  # resuming continues the same run: same tb/, same checkpoints/
    return cfg, run_dir


def train(cfg: DictConfig, run_dir: str | Path | None = None) -> dict[str, Any]:
    """Fit and test as the config says; return the final metrics and where the outputs are.

    Raises :class:`ConfigError` (before anything is written) for a bad config and
    :class:`DivergedError` when the loss becomes NaN/inf; ``result.json`` records either outcome.
    """
    cfg, default_dir = prepare(cfg)
    run_dir = Path(run_dir) if run_dir is not None and not cfg.get("ckpt_path") else default_dir
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = build_datamodule(cfg)
    module = build_module(cfg, dm)
    trainer = build_trainer(cfg, run_dir, dm)
    history = next(cb for cb in trainer.callbacks if isinstance(cb, EpochHistory))
    results: dict[str, Any] = {"status": "ok", "run_dir": str(run_dir)}
    started = time.perf_counter()
    try:
        if cfg.get("eval_only", False):
            trainer.validate(module, datamodule=dm, ckpt_path=cfg.ckpt_path, verbose=False, weights_only=True)
        else:
            trainer.fit(module, datamodule=dm, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
    except DivergedError as err:
        results |= {"status": "diverged", "message": str(err)}
        raise
    finally:
        results |= {
            "val/acc": _metric(trainer, "val/acc"),
            "val/loss": _metric(trainer, "val/loss"),
            "epochs": trainer.current_epoch,
            "global_step": trainer.global_step,
            "seconds": time.perf_counter() - started,
            "history": history.history,
        }
        diagnostics = next((cb for cb in trainer.callbacks if isinstance(cb, DiagnosticsCallback)), None)
        if diagnostics is not None:
            results["diagnostics"] = diagnostics.summary()
        ckpt = trainer.checkpoint_callback
        results["best_ckpt"] = ckpt.best_model_path if ckpt and ckpt.best_model_path else None
        if results["status"] != "ok" and trainer.is_global_zero:
            write_result(run_dir, results)

    if cfg.get("test", True):
        tested = trainer.test(
            module,
            datamodule=dm,
            ckpt_path=results["best_ckpt"] or cfg.get("ckpt_path"),
            verbose=False,
            weights_only=True,
        )
        results["test/acc"] = tested[0].get("test/acc") if tested else None
        results["test/loss"] = tested[0].get("test/loss") if tested else None
    if trainer.is_global_zero:
        write_result(run_dir, results)
        print_summary(cfg, dm, module, results)
    return results


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

    lines = [
        "",
        "nnmodel summary",
        f"  data       {dm.name}: {dm.describe()}",
        f"  network    {describe_network(module)}",
        f"  optimizer  {opt.name} (lr {opt.lr}), batch {cfg.data.batch_size}, backprop {cfg.model.backprop}",
        f"  training   {r['epochs']} epochs ({r['global_step']} steps) in {r['seconds']:.1f} s",
        f"  accuracy   val {fmt(r['val/acc'])} (loss {fmt(r['val/loss'])})   test {fmt(r.get('test/acc'))}",
        f"  logs       {r['run_dir']}/tb    →  tensorboard --logdir {r['run_dir']}",
        f"  checkpoint {r['best_ckpt'] or 'none'}",
    ]
    print("\n".join(lines), flush=True)
