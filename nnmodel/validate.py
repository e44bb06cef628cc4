"""Check a whole composed config before any data is loaded or any file is written.

Every problem becomes one :class:`ConfigError` line that names the key, the bad value and what is
allowed; ``train.py`` prints it and exits with status 2, without a traceback.
"""

from __future__ import annotations

import difflib
import inspect
import itertools
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from nnmodel.activations import get_activation
from nnmodel.data import DATASETS, TORCHVISION, check_idx_files, validate_data_config
from nnmodel.init import check_epsilon, get_init
from nnmodel.module import BACKPROP_MODES, NNModule
from nnmodel.network import OUTPUTS, n_outputs
from nnmodel.optim import state_tensors, validate_optimizer_config

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
# model.* keys: NNModule's arguments, less those that come from the data, the optimizer group and seed
NOT_MODEL_KEYS = ("n_in", "n_classes", "optimizer", "seed", "diverge_above")
MODEL_KEYS = tuple(p for p in inspect.signature(NNModule).parameters if p not in NOT_MODEL_KEYS)


class ConfigError(ValueError):
    """A user mistake in the config: reported as one line, never as a traceback."""


def _positive_int(key: str, value: Any, allow: tuple = ()) -> None:
    if value in allow:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{key} must be a positive integer, got {value!r}")


def suggest(key: str, value: Any, choices: list[str]) -> ConfigError:
    close = difflib.get_close_matches(str(value), choices, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return ConfigError(f"unknown {key} '{value}'; {hint}choose one of: {', '.join(sorted(choices))}")


def check_model(m: DictConfig) -> None:
    for key in m:
        if key not in MODEL_KEYS:
            raise suggest("model key", key, list(MODEL_KEYS))
    hidden = m.hidden
    if not OmegaConf.is_list(hidden):
        raise ConfigError(f"model.hidden must be a list of sizes such as [64] or [128, 64], got {hidden!r}")
    for i, h in enumerate(hidden):
        _positive_int(f"model.hidden[{i}]", h)
    acts = list(m.activation) if OmegaConf.is_list(m.activation) else [m.activation]
    if OmegaConf.is_list(m.activation) and len(acts) != len(hidden):
        raise ConfigError(f"model.activation lists {len(acts)} activations for {len(hidden)} hidden layers")
    for act in acts:
        try:
            get_activation(act)
        except ValueError as err:
            raise ConfigError(f"model.activation: {err}") from None
    if m.output not in OUTPUTS:
        raise suggest("model.output", m.output, list(OUTPUTS))
    for check, key in ((get_init, "init"), (check_epsilon, "epsilon")):
        try:
            check(m[key])
        except ValueError as err:
            raise ConfigError(f"model.{key}: {err}") from None
    if m.backprop not in BACKPROP_MODES:
        raise suggest("model.backprop", m.backprop, list(BACKPROP_MODES))
    for key in ("l2", "leaky_slope"):
        value = m[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(f"model.{key} must be a number >= 0, got {value!r}")


def check_trainer(t: DictConfig) -> None:
    valid = set(inspect.signature(L.Trainer.__init__).parameters) - {"self", "logger", "callbacks"}
    for key in t:
        if key not in valid:
            raise suggest("trainer key", key, sorted(valid))
    _positive_int("trainer.max_epochs", t.get("max_epochs", 1), allow=(-1,))
    devices = t.get("devices", 1)
    if devices not in ("auto", -1):
        _positive_int("trainer.devices", devices)
    _positive_int("trainer.num_nodes", t.get("num_nodes", 1))
    if t.get("accelerator", "auto") not in ACCELERATORS:
        raise suggest("trainer.accelerator", t.accelerator, list(ACCELERATORS))


def check_machine(t: DictConfig) -> None:
    """The hardware the trainer asks for must be there: a GPU for ``accelerator=gpu``, enough of them."""
    accelerator, devices = str(t.get("accelerator", "auto")), t.get("devices", "auto")
    mps = torch.backends.mps.is_available()
    if accelerator in ("gpu", "cuda") and not (torch.cuda.is_available() or (accelerator == "gpu" and mps)):
        cuda = torch.version.cuda
        build = "a CPU-only build of torch" if cuda is None else f"torch built for CUDA {cuda}"
        raise ConfigError(
            f"trainer.accelerator={accelerator}: no GPU is visible here ({build}, torch.cuda.is_available() is "
            "False); use trainer=cpu, or trainer.accelerator=auto to take a GPU only where there is one"
        )
    if accelerator == "mps" and not mps:
        raise ConfigError("trainer.accelerator=mps: no Apple GPU (MPS) is available here; use trainer=cpu")
    visible = torch.cuda.device_count() if accelerator in ("gpu", "cuda") and torch.cuda.is_available() else None
    if visible is not None and isinstance(devices, int) and not isinstance(devices, bool) and devices > visible:
        raise ConfigError(
            f"trainer.devices={devices}: only {visible} GPU{'s' if visible != 1 else ''} visible here; "
            f"use trainer.devices={visible} or fewer"
        )


def available_memory(t: DictConfig) -> tuple[int, str] | None:
    """Bytes one training process can use and where: the GPU's free memory, else the host's available RAM."""
    accelerator, strategy = str(t.get("accelerator", "auto")), str(t.get("strategy", "auto"))
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available() and "fork" not in strategy:
        free, _ = torch.cuda.mem_get_info(0)  # (forked DDP processes need CUDA left uninitialised)
        return free, "free GPU"
    try:  # Linux: what the kernel says can be allocated without swapping
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024, "available"
    except (OSError, KeyError, ValueError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "physical"
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(cfg: DictConfig, n_features: int, n_classes: int) -> None:
    """Refuse a network whose weights, gradients and optimizer state cannot fit in memory.

    The estimate is a lower bound in float32: the parameters (weights and biases) times 2 + the
    optimizer's state tensors per parameter (Adam keeps 2), plus one batch's z, a and δ of every layer.
    """
    sizes = [n_features, *cfg.model.hidden, n_outputs(n_classes, cfg.model.output)]
    n_params = sum((a + 1) * b for a, b in itertools.pairwise(sizes))
    knobs = OmegaConf.to_container(cfg.optimizer, resolve=True)
    slots = state_tensors(knobs.pop("name"), **{k: v for k, v in knobs.items() if k != "scheduler"})
    need = 4 * (n_params * (2 + slots) + 3 * cfg.data.batch_size * sum(sizes))
    t = cfg.trainer
    if str(t.get("accelerator", "auto")) == "cpu" and isinstance(t.get("devices"), int):
        need *= t.get("devices")  # CPU DDP: every process holds its own copy, in the same RAM
    have = available_memory(t)
    if have is not None and need > have[0]:
        raise ConfigError(
            f"model.hidden={list(cfg.model.hidden)}: the network {'-'.join(map(str, sizes))} has {n_params:,} "
            f"parameters, and its weights, gradients and {cfg.optimizer.name} state need about {need / 1e9:.1f} GB, "
            f"but {have[0] / 1e9:.1f} GB of {have[1]} memory is left here; choose smaller hidden layers"
        )


def check_checkpoint(path: str) -> None:
    """A ``ckpt_path`` must exist and be a checkpoint that loads without running code (weights only)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"ckpt_path: no checkpoint at '{path}' (give a .ckpt file, or `last`)")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # any failure means "not a checkpoint we will load"
        reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise ConfigError(
            f"ckpt_path: '{path}' is not a safe nnmodel checkpoint (refused by weights-only loading: {reason})"
        ) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ConfigError(f"ckpt_path: '{path}' is not a Lightning checkpoint (no state_dict)")


def validate_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for the first bad value; return quietly when the config can run."""
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int) or cfg.seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {cfg.seed!r}")
    data = OmegaConf.to_container(cfg.data, resolve=True)
    if data.get("name") not in DATASETS:
        raise suggest("data.name (dataset)", data.get("name"), list(DATASETS))
    try:
        # with data.py's defaults filled in; steps_per_execution is a top-level key that the batches use
        data_cfg = validate_data_config(**data, seed=cfg.seed, steps_per_execution=cfg.get("steps_per_execution", 1))
    except ValueError as err:
        raise ConfigError(str(err).replace("data.steps_per_execution", "steps_per_execution")) from None
    check_model(cfg.model)
    try:
        validate_optimizer_config(**OmegaConf.to_container(cfg.optimizer, resolve=True))
    except ValueError as err:
        raise ConfigError(str(err)) from None
    check_trainer(cfg.trainer)
    check_machine(cfg.trainer)
    spec = DATASETS[data_cfg.name]
    check_memory(cfg, spec.n_features, spec.n_classes)
    if "diagnostics" in cfg:
        from nnmodel.diagnostics import diagnostics_callbacks

        try:  # the callback checks its own keys and values; building it touches no data
            diagnostics_callbacks(OmegaConf.to_container(cfg.diagnostics, resolve=True), datamodule=None)
        except (TypeError, ValueError) as err:
            raise ConfigError(str(err)) from None
    if cfg.trainer.get("accumulate_grad_batches", 1) != 1:
        raise ConfigError(
            "trainer.accumulate_grad_batches: nnmodel steps the optimizer itself, once per minibatch; "
            "for larger steps, raise data.batch_size instead"
        )
    if cfg.trainer.get("gradient_clip_val") is not None:
        raise ConfigError("trainer.gradient_clip_val: gradient clipping is not supported by nnmodel's training step")
    refresh = cfg.get("progress_refresh_rate", 50)
    if isinstance(refresh, bool) or not isinstance(refresh, int) or refresh < 0:
        raise ConfigError(f"progress_refresh_rate must be an integer >= 0, got {refresh!r}")
    if cfg.get("eval_only") and not cfg.get("ckpt_path"):
        raise ConfigError("eval_only=true needs ckpt_path=PATH (the checkpoint to evaluate)")
    if data_cfg.name in TORCHVISION and not data_cfg.download:
        try:
            check_idx_files(data_cfg.root, data_cfg.name)
        except (OSError, ValueError) as err:
            raise ConfigError(f"data.root: {err}") from None
