"""Everything about a config that its schema (nnmodel.schema) cannot say, checked in one place before
any data is loaded or any file is written: ranges, names in the registries, rules across keys, files,
and the machine's limits.

Every problem becomes one :class:`~nnmodel.errors.ConfigError` line that names the key, the bad value
and what is allowed; ``train.py`` prints it and exits with status 2, ``nnmodel.train`` raises it.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import itertools
import math
import os
import pickle
import re
import types
import typing
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from hydra_plugins.nnmodel_fork_launcher.fork_launcher import usable_cores
from nnmodel.config import CONFIG_DIR, compose, override_key, own_trainer_key
from nnmodel.core.activations import Activation, get_activation
from nnmodel.core.init import TAKE_NO_EPSILON, check_epsilon, get_init
from nnmodel.core.network import OUTPUTS, n_outputs
from nnmodel.data import DATASETS, TABLES, TORCHVISION, read_table, three_way_counts
from nnmodel.data.mnist import check_files_there
from nnmodel.data.registry import SPLIT_KEYS
from nnmodel.errors import ConfigError, NNModelWarning, unknown
from nnmodel.module import BACKPROP_MODES
from nnmodel.optim import SCHEDULERS, spec, state_tensors
from nnmodel.schema import OWN_TRAINER_KEYS, SCHEMAS, DataConfig, ModelConfig

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def need(key: str, value: Any, ok: bool, what: str) -> None:
    """Refuse ``key=value`` unless ``ok``: "KEY must be WHAT, got VALUE"."""
    if not ok:
        raise ConfigError(f"{key} must be {what}, got {value!r}")


def at_least(key: str, value: Any, low: float, integer: bool = True) -> None:
    kind = "an integer" if integer else "a number"
    ok = (isinstance(value, int) and not isinstance(value, bool)) if integer else _number(value)
    need(key, value, ok and value >= low, f"{kind} >= {low:g}")


def in_range(key: str, value: Any, low: float, high: float, closed: str = "[]") -> None:
    ok = _number(value) and (low <= value if closed[0] == "[" else low < value)
    ok = ok and (value <= high if closed[1] == "]" else value < high)
    need(key, value, ok, f"a number in {closed[0]}{low:g}, {high:g}{closed[1]}")


def check_data(d: DictConfig) -> None:
    if d.name not in DATASETS:
        raise unknown("data", d.name, DATASETS)
    for key, low in [("batch_size", 1), ("repeats", 1), ("n_samples", 10), ("split_seed", 0), ("test_seed", 0)]:
        at_least(f"data.{key}", d[key], low)
    for key in ("val_fraction", "test_fraction", "label_noise"):
        in_range(f"data.{key}", d[key], 0, 1)
    in_range("data.train_fraction", d.train_fraction, 0, 1, "(]")
    for key in ("input_noise", "noise"):
        at_least(f"data.{key}", d[key], 0, integer=False)
    check_keys_read(d)
    if d.val_fraction + d.test_fraction >= 1.0:
        raise ConfigError(
            f"data.val_fraction + data.test_fraction must be < 1 to leave a training split, "
            f"got {d.val_fraction} + {d.test_fraction}"
        )
    if d.name in TORCHVISION:
        try:
            check_files_there(d.root, d.name, d.download)
        except (OSError, ValueError) as err:
            raise ConfigError(f"data.root: {err}") from None
    if d.name in TABLES:
        check_table(d)


def check_keys_read(d: DataConfig) -> None:
    """A data.* key that the chosen data set does not read is refused when set (it would change nothing), and a
    split the data set makes must not be empty."""
    spec = DATASETS[d.name]
    if spec.keys_read is not None:  # None: a user's data set that does not declare what it reads
        reads, defaults = spec.keys_read, DataConfig()
        for key in d:
            if key not in reads and d[key] != getattr(defaults, key):
                readers = sorted(n for n, s in DATASETS.items() if s.reads is None or key in s.reads)
                raise ConfigError(
                    f"data.{key} is not read by data={d.name}, only by data={','.join(readers)}: drop it, or choose "
                    "one of those"
                )
    splits_made = spec.reads if spec.reads is not None else SPLIT_KEYS
    for split in ("val", "test"):
        if f"{split}_fraction" in splits_made and d[f"{split}_fraction"] == 0:
            raise ConfigError(
                f"data.{split}_fraction=0 leaves the {split} split empty; a run needs val examples (they pick the best "
                "checkpoint) and test examples (they measure it)"
            )


TABLE_FILES = {"csv": "a CSV file with a header row", "npz": "a .npz file with arrays X and y"}


def check_table(d: DictConfig) -> None:
    """data=csv|npz: the file is there and parses (nnmodel.data.tables says where it does not), it has two
    classes or more, and every class has an example in each of the stratified train, val and test splits."""
    if d.path is None:
        raise ConfigError(f"data={d.name} needs data.path=FILE, {TABLE_FILES[d.name]}")
    if Path(d.path).is_dir():
        raise ConfigError(f"data.path: '{d.path}' is a directory; give {TABLE_FILES[d.name]}")
    if not Path(d.path).is_file():
        raise ConfigError(f"data.path: no file at '{d.path}'")
    try:
        table = read_table(d.name, d.path, d.target, d.features)  # cached: training reads it from there
    except ValueError as err:
        raise ConfigError(str(err)) from None
    where = f"data.path: '{d.path}'"
    if len(table.classes) < 2:
        raise ConfigError(f"{where} has a single class in {table.label} ({table.classes[0]!r}); a classifier needs 2")
    for label, n in zip(table.classes, np.bincount(table.y, minlength=len(table.classes))):
        train, val, test = three_way_counts(int(n), d)
        if min(train, val, test) == 0:
            need = next((n for n in range(1, 100_000) if min(three_way_counts(n, d)) > 0), None)
            raise ConfigError(
                f"{where} has {n} example{'s' if n != 1 else ''} of class {label!r} ({table.label}), too few for "
                f"stratified splits: data.val_fraction={d.val_fraction} and data.test_fraction={d.test_fraction} "
                f"give it {train} train, {val} val, {test} test; each class needs at least {need}"
            )


def check_model(m: DictConfig) -> None:
    for i, h in enumerate(m.hidden):
        at_least(f"model.hidden[{i}]", h, 1)
    acts = list(m.activation) if OmegaConf.is_list(m.activation) else [m.activation]
    if OmegaConf.is_list(m.activation) and len(acts) != len(m.hidden):
        raise ConfigError(f"model.activation lists {len(acts)} activations for {len(m.hidden)} hidden layers")
    for key, check, values in (
        ("activation", get_activation, acts),
        ("init", get_init, [m.init]),
        ("epsilon", check_epsilon, [m.epsilon]),
    ):
        for value in values:
            try:
                check(value)
            except ValueError as err:
                raise ConfigError(f"model.{key}: {err}") from None
    for name in acts:
        check_elementwise(name, get_activation(name, m.leaky_slope))
    if m.output not in OUTPUTS:
        raise unknown("model.output", m.output, OUTPUTS)
    if m.backprop not in BACKPROP_MODES:
        raise unknown("model.backprop", m.backprop, BACKPROP_MODES)
    for key in ("l2", "leaky_slope"):
        at_least(f"model.{key}", m[key], 0, integer=False)
    # a value that changes nothing: warned, not refused (a sweep over model.init with one ε is a fair question)
    defaults = ModelConfig()
    if m.init in TAKE_NO_EPSILON and m.epsilon != defaults.epsilon:
        unread(f"model.epsilon={m.epsilon}", f"model.init={m.init} takes no ε (epsilon_uniform does)")
    if m.leaky_slope != defaults.leaky_slope and "leaky_relu" not in acts:
        unread(f"model.leaky_slope={m.leaky_slope}", "no layer's activation is leaky_relu")


def unread(setting: str, why: str) -> None:
    """Warn (:class:`NNModelWarning`, one line on the command line) of a setting the run does not read."""
    warnings.warn(f"{setting} changes nothing: {why}", NNModelWarning, stacklevel=3)


def check_elementwise(name: str, act: Activation) -> None:
    """A user's activation must map each z to its own a = g(z), in a tensor of z's shape (``math:sqrt`` imports, but
    is a function of one number; a softmax mixes a row's units); tried on a small tensor, so that it fails here and
    not inside training."""
    # z requires grad, as it does in training: numpy's functions fail on it, and autograd must reach z through g
    z = torch.linspace(-2, 2, 12).reshape(3, 4).requires_grad_()
    # each unit moved to another row and column: an elementwise g gives each a back at its unit's new place
    moved = torch.tensor([5, 0, 9, 2, 11, 7, 1, 10, 3, 8, 4, 6])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. softmax's "implicit dimension": the refusal below says more
            a = act(z)
            ok = isinstance(a, torch.Tensor) and a.shape == z.shape and a.is_floating_point()
            problem = (
                ""
                if ok
                else f"given z of shape (3, 4), it returned {type(a).__name__} {tuple(getattr(a, 'shape', ()))}"
            )
            if ok and not torch.allclose(act(z.flatten()[moved].reshape(3, 4)), a.flatten()[moved].reshape(3, 4),
                                         atol=1e-6, equal_nan=True):  # fmt: skip
                problem = "a unit's a depends on other units' z, as a softmax's does"
            elif ok and not a.requires_grad:
                problem = "its a carries no gradient back to z (computed outside torch, or detached)"
            elif ok:
                a.sum().backward()  # backpropagation through g, which training does at every step
    except Exception as err:
        said = str(err).strip().splitlines()[0] if str(err).strip() else ""
        problem = f"given z of shape (3, 4) that requires grad, it raised {type(err).__name__}: {said}"
    if problem:
        raise ConfigError(
            f"model.activation: '{name}' is not an elementwise function of a tensor ({problem}); it must return a "
            "float tensor of z's shape holding g(z) for each z, computed with torch operations"
        )


# Ranges of the torch.optim knobs a config may set (None: the optimizer's default).
KNOB_RANGES = {
    "lr": (0, math.inf, "()"),
    "eps": (0, math.inf, "()"),
    "momentum": (0, 1, "[)"),
    "rho": (0, 1, "[)"),
    "alpha": (0, 1, "[)"),
    "dampening": (0, 1, "[]"),
    "weight_decay": (0, math.inf, "[)"),
    "lr_decay": (0, math.inf, "[)"),
    "momentum_decay": (0, math.inf, "[)"),
    "initial_accumulator_value": (0, math.inf, "[)"),
}


def check_optimizer(o: DictConfig) -> None:
    method = spec(o.name)
    for key, value in o.items():
        if key in ("name", "scheduler") or value is None:
            continue
        if key not in method.knobs:
            raise ConfigError(
                f"optimizer.{key} is not a setting of optimizer '{o.name}' ({method.cls.__name__}); "
                f"its settings: {', '.join(sorted(method.knobs))}"
            )
        if key in method.fixed and value != method.fixed[key]:
            raise ConfigError(
                f"optimizer.{key} is fixed to {method.fixed[key]} for '{o.name}' (it is what makes it {o.name}), "
                f"got {value!r}; choose another optimizer instead"
            )
        if key in KNOB_RANGES:
            in_range(f"optimizer.{key}", value, *KNOB_RANGES[key])
        if key == "betas":
            betas = list(value)
            need(
                "optimizer.betas",
                betas,
                len(betas) == 2 and all(_number(b) and 0 <= b < 1 for b in betas),
                "two numbers in [0, 1)",
            )
    given = {key: value for key, value in o.items() if key not in ("name", "scheduler") and value is not None}
    sgd = {**method.defaults, **given, **method.fixed}
    if method.cls is torch.optim.SGD and sgd.get("nesterov") and not (sgd.get("momentum", 0) > 0 and
                                                                       sgd.get("dampening", 0) == 0):  # fmt: skip
        set_by = f"optimizer={o.name}" if "nesterov" in method.fixed else "optimizer.nesterov=true"
        raise ConfigError(
            f"{set_by} (Nesterov momentum) needs optimizer.momentum > 0 and optimizer.dampening=0, got "
            f"momentum={sgd.get('momentum', 0)}, dampening={sgd.get('dampening', 0)}"
            + ("; for no momentum at all use optimizer=sgd" if o.name == "nag" else "")
        )
    if o.get("foreach") and o.get("fused"):
        raise ConfigError(
            "optimizer.foreach=true and optimizer.fused=true: torch.optim takes one or the other; drop one"
        )
    s = o.scheduler
    if s.name not in SCHEDULERS:
        raise unknown("optimizer.scheduler.name", s.name, SCHEDULERS)
    reads = SCHEDULERS[s.name].defaults
    for key, value in s.items():
        if key != "name" and value is not None and key not in reads:
            settings = f"its settings: {', '.join(reads)}" if reads else "it has no settings"
            unread(f"optimizer.scheduler.{key}={value}", f"scheduler '{s.name}' does not read it ({settings})")
    for key in ("step_size", "T_max"):
        if s[key] is not None:
            at_least(f"optimizer.scheduler.{key}", s[key], 1)
    if s.gamma is not None:
        in_range("optimizer.scheduler.gamma", s.gamma, 0, 1, "(]")
    if s.eta_min is not None:
        at_least("optimizer.scheduler.eta_min", s.eta_min, 0, integer=False)


def check_trainer(t: DictConfig) -> None:
    for key, value in t.items():  # each value against the type the installed lightning.Trainer declares for it
        ok, allowed = fits_annotation(value, TRAINER_TYPES[key])
        need(f"trainer.{key}", value, ok is not False, " or ".join(allowed) if len(allowed) < 3 else
             f"one of {', '.join(allowed)}")  # fmt: skip
    if t.max_epochs is not None:  # -1: Lightning's no limit (with max_steps, max_time, or until Ctrl-C)
        ok = t.max_epochs == -1 or t.max_epochs >= 1
        need("trainer.max_epochs", t.max_epochs, ok, "-1 (no limit) or an integer >= 1")
    # a run of no step would be recorded ok, with no checkpoint and the untrained weights tested
    if t.max_steps is not None:
        ok = t.max_steps == -1 or t.max_steps >= 1
        need("trainer.max_steps", t.max_steps, ok, "-1 (no limit) or an integer >= 1")
    for split in ("train", "val", "test"):  # a fraction of the split or a number of batches; 0 turns val/test off
        key, limit = f"trainer.limit_{split}_batches", t[f"limit_{split}_batches"]
        if split == "train" and limit is not None:
            need(key, limit, limit > 0, "a fraction of the epoch in (0, 1] or a number >= 1")
        if isinstance(limit, float):
            in_range(key, limit, 0, 1)
    for key in ("log_every_n_steps", "check_val_every_n_epoch"):  # their types allow 0, which divides by zero
        if t[key] is not None:
            at_least(f"trainer.{key}", t[key], 1)
    if t.devices not in ("auto", -1) and not OmegaConf.is_list(t.devices):
        at_least("trainer.devices", t.devices, 1)
    at_least("trainer.num_nodes", t.num_nodes, 1)
    if t.num_nodes > 1 and not cluster_detected():
        raise ConfigError(
            f"trainer.num_nodes={t.num_nodes}: this process was not started on a cluster (no SLURM, torchrun, LSF "
            "or MPI environment, no NODE_RANK and MASTER_ADDR), so it would wait for the other nodes for ever; "
            "start it on every node with torchrun or SLURM (README, the SLURM launcher), or set "
            "trainer.num_nodes=1"
        )
    if t.enable_checkpointing is False:
        raise ConfigError(
            "trainer.enable_checkpointing=false: nnmodel's run is its checkpoints (the best by val/acc is "
            "tested, last.ckpt resumes it, nnmodel.load reads them); leave it at true (a checkpoint of these "
            "networks is small)"
        )
    if isinstance(t.accelerator, str) and t.accelerator not in ACCELERATORS:
        raise unknown("trainer.accelerator", t.accelerator, ACCELERATORS)
    if t.accumulate_grad_batches != 1:
        raise ConfigError(
            "trainer.accumulate_grad_batches: nnmodel steps the optimizer itself, once per minibatch; "
            "for larger steps, raise data.batch_size instead"
        )
    if t.gradient_clip_val is not None:
        raise ConfigError("trainer.gradient_clip_val: gradient clipping is not supported by nnmodel's training step")
    check_machine(t)


def cluster_detected() -> bool:
    """Whether Lightning's cluster environments (their public ``detect``) or a hand launch (``NODE_RANK`` and
    ``MASTER_ADDR``, which Lightning's default environment reads) say this process is one of several nodes."""
    from lightning.fabric.plugins import environments as envs

    kinds = (envs.SLURMEnvironment, envs.TorchElasticEnvironment, envs.LSFEnvironment, envs.MPIEnvironment)
    # (Kubeflow's environment cannot be detected: it is chosen by hand)
    return {"NODE_RANK", "MASTER_ADDR"} <= os.environ.keys() or any(kind.detect() for kind in kinds)


# lightning.Trainer's own annotation of each keyword: what check_trainer holds a value to
TRAINER_TYPES = {name: p.annotation for name, p in inspect.signature(L.Trainer.__init__).parameters.items()}
SIMPLE_TYPES = {bool: ["true", "false"], int: ["an integer"], float: ["a number"], str: ["a string"], None: ["null"]}


def fits_annotation(value: Any, annotation: Any) -> tuple[bool | None, list[str]]:
    """Whether a config value fits a type annotation made of Union/Optional, Literal, bool, int, float, str and
    None, and the words for what does; None where the annotation has other types (a class, a list) that only
    Lightning can check."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in args), [repr(a) for a in args]
    if origin in (typing.Union, types.UnionType):
        verdicts, words = zip(*(fits_annotation(value, arm) for arm in args))
        ok = True if True in verdicts else (None if None in verdicts else False)
        return ok, [w for arm in words for w in arm]
    annotation = None if annotation is type(None) else annotation
    if annotation is None:
        return value is None, SIMPLE_TYPES[None]
    if annotation in SIMPLE_TYPES:
        if annotation is float:
            return _number(value), SIMPLE_TYPES[float]
        fits = isinstance(value, annotation) and not (annotation is int and isinstance(value, bool))
        return fits, SIMPLE_TYPES[annotation]
    return None, []


def check_cuda_graphs(t: DictConfig) -> None:
    """``cuda_graphs=true`` replays recorded steps in one process on one CUDA GPU, at the network's own precision:
    DDP averages gradients inside a backward that a replay skips, and so does mixed precision's loss scaling."""
    accelerator, devices, strategy = str(t.accelerator), t.devices, str(t.strategy)
    one = devices == 1 or (OmegaConf.is_list(devices) and len(devices) == 1)
    if accelerator not in ("gpu", "cuda") or not one or t.num_nodes != 1 or strategy not in ("auto", "single_device"):
        raise ConfigError(
            f"cuda_graphs=true records the training steps on one CUDA GPU in one process, but the trainer has "
            f"accelerator={accelerator}, devices={devices}, num_nodes={t.num_nodes}, strategy={strategy}; "
            "use trainer=gpu, or cuda_graphs=false"
        )
    if t.detect_anomaly:
        raise ConfigError(
            "cuda_graphs=true: trainer.detect_anomaly=true checks every backward output on the host, which a CUDA "
            "graph cannot record; set one of them to false"
        )
    if str(t.precision) not in ("None", "32", "32-true", "64", "64-true"):
        raise ConfigError(
            f"cuda_graphs=true: trainer.precision={t.precision} is not supported (a replay skips Lightning's "
            "mixed-precision backward); leave trainer.precision at its default, or set cuda_graphs=false"
        )


def check_diagnostics(d: DictConfig) -> None:
    for key in ("every_n_steps", "every_n_epochs", "probe_size", "max_tiles"):
        at_least(f"diagnostics.{key}", d[key], 1)
    at_least("diagnostics.max_pictures", d.max_pictures, 0)


def trainer_key(key: str, value: Any) -> str:
    """How the command line spells a trainer setting: ``trainer.accelerator=cpu``."""
    return f"trainer.{key}={value}"


def check_machine(t: DictConfig, spell: Callable[[str, Any], str] = trainer_key) -> None:
    """The hardware the trainer asks for must be there: a GPU for ``accelerator=gpu``, enough of them. ``spell``
    writes a setting as the caller's user gives it (the estimator's ``accelerator='cpu'``)."""
    accelerator, devices = str(t.get("accelerator", "auto")), t.get("devices", "auto")
    asked, cpu = spell("accelerator", accelerator), spell("accelerator", "cpu")
    mps = torch.backends.mps.is_available()
    if accelerator in ("gpu", "cuda") and not (torch.cuda.is_available() or (accelerator == "gpu" and mps)):
        cuda = torch.version.cuda
        build = "a CPU-only build of torch" if cuda is None else f"torch built for CUDA {cuda}"
        raise ConfigError(
            f"{asked}: no GPU is visible here ({build}, torch.cuda.is_available() is False); use {cpu}, or "
            f"{spell('accelerator', 'auto')} to take a GPU only where there is one"
        )
    if accelerator == "tpu" and importlib.util.find_spec("torch_xla") is None:
        raise ConfigError(f"{asked} needs the torch_xla package, which is not installed here; use {cpu}")
    if accelerator == "mps" and not mps:
        raise ConfigError(f"{asked}: no Apple GPU (MPS) is available here; use {cpu}")
    count = devices if isinstance(devices, int) and not isinstance(devices, bool) else None  # not a list, "auto"
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available() and not mps)
    if on_cpu and count is not None and count > (cores := usable_cores()):
        rank_zero_warn(  # Lightning runs them (DDP on CPU), each step waiting for the slowest: not refused
            f"{spell('devices', devices)} starts {devices} training processes (DDP) on {cores} CPU cores, which then "
            f"share them: each step waits for the slowest; {spell('devices', cores)} or fewer, or 1, is faster here",
            category=NNModelWarning,
            stacklevel=2,
        )
    visible = torch.cuda.device_count() if accelerator in ("gpu", "cuda") and torch.cuda.is_available() else None
    if visible is not None and count is not None and count > visible:
        raise ConfigError(
            f"{spell('devices', devices)}: only {visible} GPU{'s' if visible != 1 else ''} visible here; "
            f"use {spell('devices', visible)} or fewer"
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
    weights, batch = 4 * n_params * (2 + slots), 4 * 3 * cfg.data.batch_size * sum(sizes)
    t = cfg.trainer
    copies = t.get("devices") if str(t.get("accelerator", "auto")) == "cpu" and isinstance(t.get("devices"), int) else 1
    have = available_memory(t)  # CPU DDP: every process holds its own copy, in the same RAM
    if have is None or (weights + batch) * copies <= have[0]:
        return
    left = f"but {have[0] / 1e9:.1f} GB of {have[1]} memory is left here"
    if weights * copies > have[0] / 2:  # the network itself is what does not fit
        raise ConfigError(
            f"model.hidden={list(cfg.model.hidden)}: the network {'-'.join(map(str, sizes))} has {n_params:,} "
            f"parameters, and its weights, gradients and {cfg.optimizer.name} state need about "
            f"{(weights + batch) * copies / 1e9:.1f} GB, {left}; choose smaller hidden layers"
        )
    raise ConfigError(
        f"data.batch_size={cfg.data.batch_size}: one minibatch's z, a and δ through {'-'.join(map(str, sizes))} need "
        f"about {batch * copies / 1e9:.1f} GB, {left}; choose a smaller data.batch_size (a full batch is the number "
        "of training examples)"
    )


def check_checkpoint(path: str, key: str = "ckpt_path", spell: Callable[[str], str] | None = None) -> None:
    """A ``ckpt_path`` must exist and be an nnmodel checkpoint that loads without running code (weights only).
    ``key`` and ``spell`` say it in the caller's words (``nnmodel.load``: ``nnmodel.load('PATH')``)."""
    spell = spell or (lambda value: f"{key}={value}")
    p = Path(path)
    if p.is_dir():
        last = p / "checkpoints" / "last.ckpt"
        hint = f"; its run's last checkpoint is {spell(str(last))}" if last.is_file() else ""
        raise ConfigError(f"{key}: '{path}' is a directory, not a checkpoint (give a .ckpt file, or `last`){hint}")
    if not p.is_file():
        raise ConfigError(f"{key}: no checkpoint at '{path}' (give a .ckpt file, or `last`)")
    where = f"{key}: '{path}'"
    # torch.save writes a zip archive: say what a file is not before torch.load says it at length
    with open(p, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            raise ConfigError(f"{where} is not a checkpoint (torch.save writes a zip archive; this file is not one)")
    if not zipfile.is_zipfile(p):
        raise ConfigError(f"{where} is truncated or damaged (its zip archive has no end); save or copy it again")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # weights-only loading met a Python object it would have to run
        found = re.search(r"GLOBAL (\S+)", str(err))
        what = f" ({found.group(1)})" if found else ""
        raise ConfigError(
            f"{where} is not a safe nnmodel checkpoint: it holds a Python object{what} that loading would have to "
            "run, and nnmodel loads weights only"
        ) from None
    except Exception as err:  # any other failure means "not a checkpoint we will load"
        said = re.sub(r"\[enforce fail at [^\]]*\]", "", str(err)).strip(" .\n")  # torch's C++ location: no help
        reason = (said.splitlines()[0].split(". ")[0][:160] if said else "") or type(err).__name__
        raise ConfigError(f"{where} could not be read as a checkpoint ({reason})") from None
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    missing = [k for k in ("state_dict", "pytorch-lightning_version") if not isinstance(ckpt, dict) or k not in ckpt]
    missing += [f"hyper_parameters.{k}" for k in ("n_in", "n_classes") if not isinstance(hp, dict) or k not in hp]
    if missing:
        raise ConfigError(
            f"{where} is not a checkpoint of nnmodel's (it has no {', '.join(missing)}); give one that "
            "python train.py wrote (checkpoints/best-*.ckpt or last.ckpt)"
        )
    check_weight_shapes(where, ckpt["state_dict"], hp)


def check_weight_shapes(where: str, state: dict[str, Any], hp: dict[str, Any]) -> None:
    """The weights must have the shapes of the network the checkpoint records: layers of sizes n_in, hidden...,
    K outputs (nnmodel.core.network.FeedForward's ``net.layers.i.weight`` of (s_(i+1), s_i) and its bias; K is
    n_classes, or 1 for two classes with a sigmoid output)."""
    sizes = [hp["n_in"], *(hp.get("hidden") or []), n_outputs(hp["n_classes"], hp.get("output", "softmax"))]
    expected = {}
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        expected |= {f"net.layers.{i}.weight": (fan_out, fan_in), f"net.layers.{i}.bias": (fan_out,)}
    found = {k: tuple(v.shape) for k, v in state.items() if k.startswith("net.") and isinstance(v, torch.Tensor)}
    for key in sorted(expected.keys() | found.keys()):
        if expected.get(key) != found.get(key):
            has = f"has {key} of shape {found[key]}" if key in found else f"has no {key}"
            should = f"{expected[key]}" if key in expected else "none"
            raise ConfigError(
                f"{where} is damaged: it {has}, but the network it records ({'-'.join(map(str, sizes))}) has "
                f"{should}; use another checkpoint"
            )


def check_interpolations(cfg: DictConfig) -> None:
    """Every ``${...}`` of the config must resolve (``'paths.output_dir=runs/s${sed}'``, or a preset's
    ``init_variant=bogus``): said in one line with the key that holds it, before anything reads it."""
    try:
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "the config"
        raw = OmegaConf.select(cfg, key, throw_on_resolution_failure=False) if key != "the config" else None
        shown = f"={raw}" if isinstance(raw, str) else ""
        said = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"{key}{shown}: {said}") from None


def check_keys(cfg: DictConfig) -> None:
    """Hydra lets ``+group.key=value`` add a key even to a typed group; a key no schema has is never read. And
    ``~key`` deletes one that every run reads."""
    for key in [*top_level_keys(), *(f"paths.{k}" for k in main_config().paths)]:
        if OmegaConf.select(cfg, key, default=MISSING_KEY) is MISSING_KEY and key not in OPTIONAL_GROUPS:
            raise ConfigError(f"{key} is missing (~{key} deletes it), and every run needs it; drop that override")

    def walk(node: DictConfig, allowed: DictConfig, prefix: str) -> None:
        for key in node:
            if f"{prefix}{key}" in OWN_TRAINER_KEYS:  # +trainer.callbacks=[]: added, but nnmodel's to give
                raise ConfigError(own_trainer_key(f"{prefix}{key}"))
            if key not in allowed:
                raise unknown("key", f"{prefix}{key}", [f"{prefix}{k}" for k in allowed])
            if OmegaConf.is_dict(node[key]) and OmegaConf.is_dict(allowed[key]):
                walk(node[key], allowed[key], f"{prefix}{key}.")

    for group, schema in SCHEMAS.items():
        walk(cfg[group], OmegaConf.structured(schema), f"{group}.")
    # At the top level, configs/train.yaml is the schema; a preset may add a key of its own that its values refer
    # to (experiment=init's init_variant), so a key some interpolation reads is known too.
    referenced = set(re.findall(r"\$\{(\w+)", OmegaConf.to_yaml(cfg)))
    for key in cfg:
        if key not in top_level_keys() and key not in referenced:
            raise unknown("key", key, top_level_keys())


OPTIONAL_GROUPS = ("experiment", "hparams_search")  # null by default: a run has them only when chosen


@functools.cache
@functools.cache
def main_config() -> DictConfig:
    """configs/train.yaml as it is written (read once; do not change the object)."""
    return OmegaConf.load(CONFIG_DIR / "train.yaml")


def top_level_keys() -> tuple[str, ...]:
    """The keys of configs/train.yaml and its config groups: what a run reads at the top level."""
    main = main_config()
    groups = [next(iter(entry)) for entry in main.defaults if OmegaConf.is_dict(entry)]
    return tuple(key for key in [*main, *groups] if key not in ("defaults", "hydra"))


def check_seed(seed: Any) -> None:
    at_least("seed", seed, 0)
    need("seed", seed, seed < 2**32, "an integer < 2**32 (numpy's seeds are 32-bit)")


MISSING_KEY = object()


def check_split_sizes(cfg: DictConfig, sizes: dict[str, int]) -> None:
    """Once the data are loaded (nnmodel.training.load_splits), before the trainer is built: no split is empty, and
    an epoch has the optimizer steps that ``trainer.val_check_interval`` counts."""
    d, reads = cfg.data, DATASETS[cfg.data.name].reads or SPLIT_KEYS
    fractions = [f"data.{k}" for k in ("val_fraction", "test_fraction") if k in reads]
    evaluating = bool(cfg.get("eval_only"))  # trainer.validate and test read the val and test splits only
    for split in ("val", "test") if evaluating else ("train", "val", "test"):
        if sizes[split] == 0:
            knobs = ", ".join(f"{k}={OmegaConf.select(cfg, k)}" for k in fractions)
            fix = f"raise data.{split}_fraction" if f"data.{split}_fraction" in fractions else "give it more examples"
            if split == "train" and fractions:
                fix = f"lower {' or '.join(fractions)}"
            raise ConfigError(
                f"data={d.name}: the {split} split is empty (train {sizes['train']}, val {sizes['val']}, test "
                f"{sizes['test']} examples{f'; {knobs}' if knobs else ''}); {fix}"
            )
    for split in ("val", "test") if evaluating else ("train", "val", "test"):
        check_limit(cfg, split, sizes[split])
    interval, t = cfg.trainer.get("val_check_interval"), cfg.trainer
    if evaluating:
        return
    steps = minibatches(sizes["train"], d.batch_size)  # optimizer steps in an epoch (one process)
    if (
        isinstance(interval, int)
        and t.get("check_val_every_n_epoch") is not None
        and interval > steps
        and not evaluating
    ):
        k = cfg.get("steps_per_execution") or 1
        # what the other check (check_val_check_interval) also takes: a multiple of steps_per_execution
        most = f"at most {steps}" if k == 1 else f"a multiple of {k} up to {steps}" if steps >= k else None
        # (an execution longer than the epoch: no number of steps fits both checks until steps_per_execution falls)
        most = most or f"steps_per_execution={steps} or less with an interval that is a multiple of it up to {steps}"
        raise ConfigError(
            f"trainer.val_check_interval={interval} optimizer steps is more than an epoch's {steps} (train "
            f"{sizes['train']} examples, data.batch_size={d.batch_size}); give {most}, a fraction of an "
            "epoch (0.5), or trainer.check_val_every_n_epoch=null to count steps across epochs"
        )


def minibatches(size: int, batch_size: int) -> int:
    """The minibatches of a split of ``size`` examples in one process (the last may be short; a batch larger than
    the split is the whole split)."""
    return math.ceil(size / min(batch_size, size))


def check_limit(cfg: DictConfig, split: str, size: int) -> None:
    """``trainer.limit_{split}_batches`` as a fraction: Lightning takes int(fraction × its batches), and refuses
    none (in a traceback, after the run has started). Its batches are nnmodel's executions of
    ``steps_per_execution`` minibatches each, so a fraction that leaves no execution is refused here, in one line."""
    limit, k, batch_size = cfg.trainer.get(f"limit_{split}_batches"), cfg.steps_per_execution, cfg.data.batch_size
    if not isinstance(limit, float) or limit in (0.0, 1.0) or size == 0:
        return
    executions = math.ceil(minibatches(size, batch_size) / k)  # Lightning's batches, one process
    if int(executions * limit) == 0:
        least = math.ceil(100 / executions) / 100  # the smallest fraction, to two decimals, that keeps one
        per = f" (executions of steps_per_execution={k} minibatches each)" if k > 1 else ""
        raise ConfigError(
            f"trainer.limit_{split}_batches={limit} leaves no batch: the {split} split ({size} examples, "
            f"data.batch_size={batch_size}) has {executions} of Lightning's batches{per}; give at least {least} or a "
            "whole number >= 1" + (", or steps_per_execution=1 to count minibatches" if k > 1 else "")
        )


def check_val_check_interval(cfg: DictConfig) -> None:
    """``trainer.val_check_interval``: a fraction of an epoch in (0, 1], or a number of optimizer steps that
    validation can run after: a multiple of ``steps_per_execution`` (it runs between executions)."""
    interval, k = cfg.trainer.get("val_check_interval"), cfg.steps_per_execution
    if isinstance(interval, float):
        in_range("trainer.val_check_interval", interval, 0, 1, "(]")
    elif isinstance(interval, int) and not isinstance(interval, bool):
        at_least("trainer.val_check_interval", interval, 1)
        if interval % k:
            near = " or ".join(str(n) for n in (interval // k * k, (interval // k + 1) * k) if n)
            raise ConfigError(
                f"trainer.val_check_interval={interval} optimizer steps: validation runs between executions of "
                f"steps_per_execution={k} steps, so give a multiple of {k} ({near}), "
                "a fraction of an epoch (0.5), or steps_per_execution=1"
            )


def preset_origin(err: ConfigError, overrides: typing.Sequence[str] | None) -> ConfigError:
    """``err``, saying so when the key it refuses was set by the chosen ``experiment=`` preset and not on the command
    line (``experiment=gates data=csv``: the preset's ``data.repeats``), and how to undo it."""
    key = re.match(r"[a-z_]+(?:\.\w+)+", str(err))
    overrides = list(overrides or ())
    chosen = [o.partition("=")[2] for o in overrides if override_key(o) == "experiment"]
    typed = set(map(override_key, overrides))
    preset = CONFIG_DIR / "experiment" / f"{chosen[-1]}.yaml" if chosen else None
    if key is None or key[0] in typed or preset is None or not preset.is_file():
        return err
    value = OmegaConf.select(OmegaConf.load(preset), key[0], default=None)
    if value is None:
        return err
    default = OmegaConf.select(compose(), key[0], default=None)
    undo = f"; {key[0]}={default} undoes it" if default is not None else ""
    return ConfigError(f"{err} (experiment={chosen[-1]} sets {key[0]}={value}{undo})")


# trainer.precision's mixed settings, in Lightning's short forms too ("16" on a CPU is bf16-mixed as well)
MIXED_PRECISION = frozenset({"16", "16-mixed", "bf16", "bf16-mixed"})


def validate_config(cfg: DictConfig, memory: bool = True) -> None:
    """Raise :class:`ConfigError` for the first bad value; return quietly when the config can run. ``memory=False``
    leaves out the memory estimate, which asks a GPU for its free memory and so starts CUDA (a sweep's own process
    must not: the fork launcher forks it)."""
    check_keys(cfg)
    check_seed(cfg.seed)
    for key in ("eval_only", "test", "cuda_graphs"):  # top-level switches (the groups' are typed by their schemas)
        need(key, cfg[key], isinstance(cfg[key], bool), "true or false")
    at_least("steps_per_execution", cfg.steps_per_execution, 1)
    at_least("progress_refresh_rate", cfg.progress_refresh_rate, 0)
    threads = cfg.get("threads", "auto")
    need("threads", threads, threads == "auto" or (isinstance(threads, int) and not isinstance(threads, bool)
         and threads >= 1), "auto or an integer >= 1")  # fmt: skip
    in_range("diverge_above", cfg.diverge_above, 0, math.inf, "()")
    if cfg.eval_only and not cfg.ckpt_path:
        raise ConfigError("eval_only=true needs ckpt_path=PATH (the checkpoint to evaluate)")
    check_data(cfg.data)
    check_model(cfg.model)
    check_optimizer(cfg.optimizer)
    check_trainer(cfg.trainer)
    if cfg.model.backprop == "manual" and str(cfg.trainer.precision) in MIXED_PRECISION:
        raise ConfigError(
            f"trainer.precision={cfg.trainer.precision} with model.backprop=manual: mixed precision runs autograd's "
            "backward in lower precision, which the hand-written backprop does not; use model.backprop=autograd, "
            "or trainer.precision=32 (or 64, bf16-true)"
        )
    check_val_check_interval(cfg)
    if cfg.cuda_graphs and not cfg.eval_only:  # evaluating trains nothing: a GPU run's checkpoint evaluates anywhere
        check_cuda_graphs(cfg.trainer)
    check_diagnostics(cfg.diagnostics)
    if memory:
        info = DATASETS[cfg.data.name].describe(cfg.data)
        check_memory(cfg, info.n_features, info.n_classes)
