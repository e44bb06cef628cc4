"""From a composed config to a trained, tested model: what ``python train.py`` runs.

``train(cfg)`` only builds objects and calls ``fit``/``test``; every decision lives in the config.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from torch.utils.tensorboard.summary import hparams as hparams_summary

from nnmodel.data import TensorDataModule
from nnmodel.module import NNModule

HPARAM_METRICS = ("val/acc", "val/loss", "test/acc")  # the HParams tab's metric columns


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


class HParamsCallback(L.Callback):
    """Write the HParams summary with ``val/acc``, ``val/loss`` and ``test/acc`` as its metrics.

    Lightning's own ``log_hyperparams`` only pairs hyperparameters with a ``hp_metric`` scalar that it
    writes itself; TensorBoard reads each metric column from the run's scalars of that tag, so
    declaring our real metric tags is enough (no fake values are written).
    """

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params

    @rank_zero_only
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writer = trainer.logger.experiment if trainer.logger else None
        if writer is None:
            return
        exp, ssi, sei = hparams_summary(self.params, dict.fromkeys(HPARAM_METRICS, 0.0))
        file_writer = writer._get_file_writer()
        for summary in (exp, ssi, sei):
            file_writer.add_summary(summary)


def build_datamodule(cfg: DictConfig) -> TensorDataModule:
    return TensorDataModule(**OmegaConf.to_container(cfg.data, resolve=True), seed=cfg.seed)


def build_module(cfg: DictConfig, dm: TensorDataModule) -> NNModule:
    m = cfg.model
    return NNModule(
        n_in=dm.n_features,
        hidden=list(m.hidden),
        n_classes=dm.n_classes,
        activation=OmegaConf.to_container(m.activation) if OmegaConf.is_list(m.activation) else m.activation,
        output=m.output,
        init=m.init,
        epsilon=m.epsilon,
        leaky_slope=m.leaky_slope,
        l2=m.l2,
        backprop=m.backprop,
        optimizer=OmegaConf.to_container(cfg.optimizer, resolve=True),
        seed=cfg.seed,
    )


def build_trainer(cfg: DictConfig, run_dir: Path, extra_callbacks: list[L.Callback] = ()) -> L.Trainer:
    logger = TensorBoardLogger(save_dir=str(run_dir), name="tb", version="", default_hp_metric=False)
    callbacks: list[L.Callback] = [
        ModelCheckpoint(
            dirpath=run_dir / "checkpoints",
            filename="best-epoch{epoch:03d}-val_acc{val/acc:.4f}",
            auto_insert_metric_name=False,
            monitor="val/acc",
            mode="max",
            save_last=True,
        ),
        LearningRateMonitor(logging_interval="epoch"),
        HParamsCallback(flat_hparams(cfg)),
        *extra_callbacks,
    ]
    refresh = int(cfg.get("progress_refresh_rate", 10))
    if refresh > 0:
        callbacks.append(TQDMProgressBar(refresh_rate=refresh))
    trainer_kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer_kwargs.setdefault("enable_progress_bar", refresh > 0)
    return L.Trainer(**trainer_kwargs, logger=logger, callbacks=callbacks, default_root_dir=str(run_dir))


def describe_network(module: NNModule) -> str:
    net = module.net
    acts = ",".join(sorted({a.name for a in net.activations})) or "none"
    n_params = sum(p.numel() for p in net.parameters())
    return f"{'-'.join(map(str, net.sizes))} ({acts} → {net.output}, {n_params:,} parameters, init {net.init})"


def train(cfg: DictConfig, run_dir: str | Path | None = None) -> dict[str, Any]:
    """Fit and test as the config says; return the final metrics and where the outputs are."""
    run_dir = Path(run_dir or cfg.paths.output_dir)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = build_datamodule(cfg)
    module = build_module(cfg, dm)
    trainer = build_trainer(cfg, run_dir)

    started = time.perf_counter()
    if cfg.get("eval_only", False):
        trainer.validate(module, datamodule=dm, ckpt_path=cfg.ckpt_path, verbose=False)
    else:
        trainer.fit(module, datamodule=dm, ckpt_path=cfg.get("ckpt_path"))
    seconds = time.perf_counter() - started

    ckpt = trainer.checkpoint_callback
    best = ckpt.best_model_path if ckpt and ckpt.best_model_path else None
    results: dict[str, Any] = {
        "val/acc": _metric(trainer, "val/acc"),
        "val/loss": _metric(trainer, "val/loss"),
        "epochs": trainer.current_epoch,
        "seconds": seconds,
        "run_dir": str(run_dir),
        "best_ckpt": best,
    }
    if cfg.get("test", True):
        tested = trainer.test(module, datamodule=dm, ckpt_path=best or cfg.get("ckpt_path"), verbose=False)
        results["test/acc"] = tested[0].get("test/acc") if tested else None
        results["test/loss"] = tested[0].get("test/loss") if tested else None
    if trainer.is_global_zero:
        print_summary(cfg, dm, module, results)
    return results


def _metric(trainer: L.Trainer, key: str) -> float | None:
    value = trainer.callback_metrics.get(key)
    return float(value) if isinstance(value, torch.Tensor) else value


def print_summary(cfg: DictConfig, dm: TensorDataModule, module: NNModule, r: dict[str, Any]) -> None:
    opt = cfg.optimizer
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    lines = [
        "",
        "nnmodel summary",
        f"  data       {dm.name}: {dm.describe()}",
        f"  network    {describe_network(module)}",
        f"  optimizer  {opt.name} (lr {opt.lr}), batch {cfg.data.batch_size}, backprop {cfg.model.backprop}",
        f"  training   {r['epochs']} epochs in {r['seconds']:.1f} s",
        f"  accuracy   val {fmt(r['val/acc'])} (loss {fmt(r['val/loss'])})   test {fmt(r.get('test/acc'))}",
        f"  logs       {r['run_dir']}/tb    →  tensorboard --logdir {r['run_dir']}",
        f"  checkpoint {r['best_ckpt'] or 'none'}",
    ]
    print("\n".join(lines), flush=True)
