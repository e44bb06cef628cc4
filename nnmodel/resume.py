"""Resuming or evaluating a checkpoint with the configuration it was trained with.

Every nnmodel checkpoint carries its run's config (:class:`RunRecord`). With ``ckpt_path``, that
config is the run's: ``python train.py ckpt_path=last trainer.max_epochs=4`` continues the newest
run with its own network, data and optimizer. What the command line changes is applied where a
resumed run can change (:data:`MUTABLE`: the trainer, diagnostics, testing, the progress bar, ...)
and refused, in one line naming the key and both values, where it would contradict the checkpoint
(another network, data set, optimizer, backprop mode or seed). ``eval_only=true`` may also take
another data set (``data=...``) whose examples fit the network.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from nnmodel.config import compose, leaves
from nnmodel.errors import ConfigError
from nnmodel.validate import check_checkpoint

LAST = "last.ckpt"
RECORD_KEY = "nnmodel"  # the checkpoint's top-level key that holds the run's config
RUN_KEYS = ("data", "model", "optimizer", "seed")  # what a run is: a checkpoint keeps them
# what may differ when a run is resumed (or evaluated): how it is trained, watched and where files are
MUTABLE = (
    "trainer",
    "diagnostics",
    "test",
    "progress_refresh_rate",
    "diverge_above",
    "steps_per_execution",
    "cuda_graphs",
    "ckpt_path",
    "eval_only",
    "paths",
    "data.root",
    "data.download",
)


class RunRecord(L.Callback):
    """Keeps the run's resolved config in every checkpoint it saves (``checkpoint["nnmodel"]``)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint[RECORD_KEY] = {"config": self.config}


def run_config(cfg: DictConfig) -> dict[str, Any]:
    """What a checkpoint keeps of ``cfg``: every key but ``paths`` (where this machine keeps files)."""
    return {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k != "paths"}


def resolve_ckpt_path(value: str | None, outputs: Path = Path("outputs")) -> str | None:
    """``last`` means the newest ``last.ckpt`` under ``outputs/``; anything else is a path."""
    if value != "last":
        return value
    found = sorted(outputs.glob(f"*/*/checkpoints/{LAST}"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise ConfigError(f"ckpt_path=last: no {outputs}/*/*/checkpoints/{LAST} to resume from; give a path")
    return str(found[-1])


def saved_config(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The run config a checkpoint was trained with; from its hyperparameters if it predates RunRecord."""
    record = ckpt.get(RECORD_KEY)
    if isinstance(record, dict) and isinstance(record.get("config"), dict):
        return record["config"]
    hp = dict(ckpt.get("hyper_parameters") or {})
    data = dict(ckpt.get("datamodule_hyper_parameters") or {})
    model = {k: v for k, v in hp.items() if k not in ("n_in", "n_classes", "optimizer", "seed")}
    config: dict[str, Any] = {"model": model, "data": {k: v for k, v in data.items() if k != "seed"}}
    if "optimizer" in hp:
        config["optimizer"] = hp["optimizer"]
    if "seed" in hp:
        config["seed"] = hp["seed"]
    return config


def changed_keys(cfg: DictConfig, overrides: Sequence[str] | None) -> set[str]:
    """The keys the user set: every leaf where ``cfg`` differs from the default config, and the keys the
    overrides name (``data=xor`` names the group ``data``), so that a value typed equal to a default counts."""
    default, mine = leaves(compose()), leaves(cfg)
    keys = {k for k in default.keys() | mine.keys() if default.get(k, _ABSENT) != mine.get(k, _ABSENT)}
    for override in overrides or ():
        key = override.lstrip("+~").partition("=")[0]
        if key and not key.startswith("hydra"):
            keys.add(key)
    return keys


_ABSENT = object()


def _under(key: str, prefixes: Sequence[str]) -> bool:
    return any(key == p or key.startswith(f"{p}.") for p in prefixes)


def _show(value: Any) -> str:
    return str(OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value)


def merge(cfg: DictConfig, saved: dict[str, Any], changed: set[str], evaluating: bool) -> DictConfig:
    """The checkpoint's run config with the user's changes where they may differ; ConfigError where not."""
    mutable = (*MUTABLE, "data") if evaluating else MUTABLE
    mine, theirs = leaves(cfg), leaves(saved)
    touched = lambda key: any(_under(key, [c]) or _under(c, [key]) for c in changed)
    for key in sorted(mine.keys() & theirs.keys(), key=lambda k: (not k.endswith(".name"), k)):  # names first
        if touched(key) and not _under(key, mutable) and _show(mine[key]) != _show(theirs[key]):
            what = "evaluate" if evaluating else "resume"
            raise ConfigError(
                f"ckpt_path: cannot {what} with {key}={_show(mine[key])}: the checkpoint was trained with "
                f"{key}={_show(theirs[key])}; drop that override (a checkpoint keeps its network, data, "
                "optimizer and seed), or start a new run without ckpt_path"
            )
    merged = cfg.copy()
    for key in mine.keys() & theirs.keys():
        if not (touched(key) and _under(key, mutable)):  # the user's own value wins only where it may
            OmegaConf.update(merged, key, theirs[key], merge=False)
    return merged


def settle(cfg: DictConfig, overrides: Sequence[str] | None = None) -> tuple[DictConfig, dict[str, Any] | None]:
    """``cfg`` as the run will use it: with ``ckpt_path``, the checkpoint's config and the user's changes.

    Returns the config (``ckpt_path`` resolved to a file) and the loaded checkpoint (None without one).
    Raises ConfigError, before anything is written.
    """
    path = resolve_ckpt_path(cfg.get("ckpt_path"))
    if path is None:
        return cfg, None
    check_checkpoint(path)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    merged = merge(cfg, saved_config(ckpt), changed_keys(cfg, overrides), bool(cfg.get("eval_only")))
    OmegaConf.update(merged, "ckpt_path", path)
    return merged, ckpt
