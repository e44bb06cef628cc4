"""Resuming or evaluating a checkpoint with the configuration it was trained with.

Every nnmodel checkpoint carries its run's config (:class:`RunRecord`). With ``ckpt_path``, that
config is the run's: ``python train.py ckpt_path=last trainer.max_epochs=4`` continues the newest
run with its own network, data and optimizer. What the command line changes is applied where a
resumed run can change (:data:`MUTABLE`: the trainer, diagnostics, testing, the progress bar, ...)
and refused, in one line naming the key and both values, where it would contradict the checkpoint
(another network, data set, optimizer, backprop mode or seed). ``eval_only=true`` may also take
another data set (``data=...``, ``data.path=...``, ``data.target=...``) whose examples fit the network, but
not another meaning of its inputs (:data:`EVAL_FIXED`), nor, on the checkpoint's own data, another split
(:data:`SPLIT_KEYS`); the table's input columns are picked by the names the checkpoint recorded.

``ckpt_path=last`` is the newest run of the current directory (:func:`resolve_ckpt_path`), and a run that
has finished (:func:`check_trains_on`) is refused before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from nnmodel.config import compose, leaves, override_key
from nnmodel.data.tables import TABLES, csv_columns, fingerprint
from nnmodel.errors import ConfigError
from nnmodel.validate import check_checkpoint

LAST = "last.ckpt"
RECORD_KEY = "nnmodel"  # the checkpoint's top-level key that holds the run's config (and a table's input columns)
# Where ``ckpt_path=last`` looks for checkpoints/last.ckpt, under the current directory: a run directory one to four
# levels down, which holds those of train.py and nnmodel.train (outputs/DATE/TIME), of a sweep's runs
# (multirun/DATE/TIME/N) and those paths.output_dir named (NAME, runs/s0, runs/study/s0).
LAST_SEARCHED = ("*", "*/*", "*/*/*", "*/*/*/*")
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
    "threads",
    "ckpt_path",
    "eval_only",
    "paths",
    "data.root",
    "data.download",
)
# When evaluating, all of ``data`` may differ (another data set or table, whose examples fit the network:
# nnmodel.training.check_fits) except what gives the network's inputs their meaning: these stay the checkpoint's.
EVAL_FIXED = ("data.features", "data.standardize")
# ... and, on the checkpoint's own data set (the same data.name and data.path), its split: another one would put
# training examples in the val and test splits, and the accuracies measured on them would be too high.
SPLIT_KEYS = ("data.val_fraction", "data.test_fraction", "data.split_seed", "data.test_seed")


class RunRecord(L.Callback):
    """Keeps the run's resolved config in every checkpoint it saves (``checkpoint["nnmodel"]``), and for a CSV
    table the names of its input columns in the network's order (``columns``), so that an evaluation on
    another table picks its inputs by name."""

    def __init__(self, config: dict[str, Any], columns: Sequence[str] | None = None) -> None:
        self.config = config
        self.columns = None if columns is None else list(columns)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint[RECORD_KEY] = {"config": self.config}
        if self.columns is not None:
            checkpoint[RECORD_KEY]["columns"] = self.columns


def run_config(cfg: DictConfig) -> dict[str, Any]:
    """What a checkpoint keeps of ``cfg``: every key but ``paths`` (where this machine keeps files)."""
    return {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k != "paths"}


def resolve_ckpt_path(
    value: str | None, root: Path = Path("."), spell: Callable[[str], str] = lambda value: f"ckpt_path={value}"
) -> str | None:
    """``last`` means the newest run of ``root`` (the current directory): of the ``checkpoints/last.ckpt`` files
    of the run directories one to four levels down (:data:`LAST_SEARCHED`: outputs/DATE/TIME, multirun/DATE/TIME/N,
    and what ``paths.output_dir`` named), the one written last. Anything else is a path. ``spell`` writes a value
    as the caller gives it (``nnmodel.load('last')``)."""
    if value != "last":
        return value
    found = [p for pattern in LAST_SEARCHED for p in root.glob(f"{pattern}/checkpoints/{LAST}") if p.is_file()]
    if not found:
        raise ConfigError(
            f"{spell('last')}: no run here (no checkpoints/{LAST} in a directory one to {len(LAST_SEARCHED)} levels "
            f"under {root.absolute()}); give {spell('PATH')}"
        )
    newest = max(found, key=lambda p: (p.stat().st_mtime_ns, str(p)))  # the path breaks a tie, never the order
    return str(newest)


def recorded_columns(ckpt: dict[str, Any]) -> list[str] | None:
    """The input columns of the CSV table a checkpoint was trained on, in the network's order (None: not a CSV,
    or a checkpoint from before nnmodel recorded them)."""
    record = ckpt.get(RECORD_KEY)
    columns = record.get("columns") if isinstance(record, dict) else None
    return list(columns) if isinstance(columns, list) and all(isinstance(c, str) for c in columns) else None


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
        key = override_key(override)
        if key and not key.startswith("hydra"):
            keys.add(key)
    return keys


_ABSENT = object()


def _under(key: str, prefixes: Sequence[str]) -> bool:
    return any(key == p or key.startswith(f"{p}.") for p in prefixes)


def _show(value: Any) -> str:
    return str(OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value)


def _same_path(a: Any, b: Any) -> bool:
    return a == b or (a is not None and b is not None and Path(str(a)).absolute() == Path(str(b)).absolute())


def merge(cfg: DictConfig, saved: dict[str, Any], changed: set[str], evaluating: bool) -> DictConfig:
    """The checkpoint's run config with the user's changes where they may differ; ConfigError where not.

    A key the user changed (``changed``: the key, or a group above it such as ``data=csv``) takes the user's
    value where it may differ (:data:`MUTABLE`; when evaluating, ``data`` too), and is refused where it would
    contradict the checkpoint. When evaluating, the keys of :data:`EVAL_FIXED` (and on the checkpoint's own data
    set those of :data:`SPLIT_KEYS`) are always the checkpoint's: one the user named itself with another value
    is refused; one a group brought along (``data=npz`` has data.features=null) is quietly the checkpoint's.
    """
    mutable = (*MUTABLE, "data") if evaluating else MUTABLE
    mine, theirs = leaves(cfg), leaves(saved)
    touched = lambda key: any(_under(key, [c]) or _under(c, [key]) for c in changed)
    named = lambda key: any(_under(key, [c]) for c in changed if "." in c)  # data.features=..., not data=...
    takes_mine = lambda key: touched(key) and _under(key, mutable)
    effective = lambda key: mine.get(key) if takes_mine(key) else theirs.get(key)
    fixed: tuple[str, ...] = ()
    if evaluating:
        same_data = effective("data.name") == theirs.get("data.name") and _same_path(
            effective("data.path"), theirs.get("data.path")
        )
        fixed = EVAL_FIXED + (SPLIT_KEYS if same_data else ())
    what = "evaluate" if evaluating else "resume"
    for key in sorted(mine.keys() & theirs.keys(), key=lambda k: (not k.endswith(".name"), k)):  # names first
        refused = named(key) if key in fixed else touched(key) and not _under(key, mutable)
        if refused and _show(mine[key]) != _show(theirs[key]):
            if key in SPLIT_KEYS and key in fixed:
                why = "on its own data a checkpoint is evaluated on its val and test splits, free of training examples"
            elif key in fixed:
                why = "evaluating a checkpoint keeps what its inputs mean"
            else:
                why = "a checkpoint keeps its network, data, optimizer and seed"
            raise ConfigError(
                f"ckpt_path: cannot {what} with {key}={_show(mine[key])}: the checkpoint was trained with "
                f"{key}={_show(theirs[key])}; drop that override ({why}), or start a new run without ckpt_path"
            )
    merged = cfg.copy()
    for key in mine.keys() & theirs.keys():
        if key in fixed or not takes_mine(key):  # the user's own value wins only where it may
            OmegaConf.update(merged, key, theirs[key], merge=False)
    return merged


def with_recorded_columns(saved: dict[str, Any], ckpt: dict[str, Any]) -> dict[str, Any]:
    """The saved config with ``data.features`` the input columns the checkpoint recorded (where it was null: all
    the columns but the target): an evaluation on a CSV table then picks the network's inputs by name, in the
    network's order, whatever the order of the table's columns and whatever other columns it has."""
    columns, data = recorded_columns(ckpt), saved.get("data")
    if columns is None or not isinstance(data, dict) or data.get("features") is not None:
        return saved
    return {**saved, "data": {**data, "features": columns}}


def unnamed_columns(cfg: DictConfig, changed: set[str]) -> None:
    """Evaluating on another kind of data (data=npz): it has no column names and reads no ``data.features``, so the
    checkpoint's (or the names :func:`with_recorded_columns` put there) go, unless the user gave them."""
    if cfg.data.name != "csv" and cfg.data.get("features") is not None and "data.features" not in changed:
        OmegaConf.update(cfg, "data.features", None)


def check_recorded_columns(cfg: DictConfig, ckpt: dict[str, Any], changed: set[str]) -> None:
    """Evaluating on a CSV table: it must have every input column the checkpoint was trained on, and its label
    column must not be one of them (said here in the checkpoint's terms; the user may not have named data.features
    at all)."""
    columns, data = recorded_columns(ckpt), cfg.data
    if columns is None or data.name != "csv" or data.path is None or not Path(data.path).is_file():
        return  # no names to look for, or no file to look in (nnmodel.validate says so)
    if data.target in columns and "data.features" not in changed:
        trained = (saved_config(ckpt).get("data") or {}).get("target")
        hint = f" (data.target={trained})" if trained is not None and trained not in columns else ""
        raise ConfigError(
            f"data.target: '{data.target}' is an input of the checkpoint's network (its inputs: {', '.join(columns)}), "
            f"not a column of labels; evaluate with the label column it was trained on{hint}"
        )
    header = csv_columns(data.path)
    missing = [name for name in columns if header is not None and name not in header]
    if missing:
        raise ConfigError(
            f"data.path: '{data.path}' has no column '{missing[0]}', an input of the checkpoint's network (its "
            f"inputs: {', '.join(columns)}); evaluate it on a table with those columns"
        )


def check_trains_on(cfg: DictConfig, ckpt: dict[str, Any]) -> None:
    """A resumed run must have training left to do: a checkpoint that has reached ``trainer.max_epochs`` (or
    ``trainer.max_steps``) would be fitted for nothing, and a run past them is Lightning's traceback. Counted as
    Lightning counts: the epochs its fit loop has processed, the optimizer steps (global_step).

    The epochs are read from the fit loop's state in the checkpoint (``loops``, a documented part of a Lightning
    checkpoint whose inner layout is Lightning's own): the top-level ``epoch`` is the same for a run that finished
    epoch N and one interrupted inside it. If that layout changes, this check says nothing and Lightning refuses
    the run in its own words; tests/test_resume_eval.py fails then."""
    progress = ((ckpt.get("loops") or {}).get("fit_loop") or {}).get("epoch_progress") or {}
    epochs = (progress.get("current") or {}).get("processed")
    steps = ckpt.get("global_step")
    max_epochs, max_steps = cfg.trainer.get("max_epochs"), cfg.trainer.get("max_steps")
    if max_epochs is None and max_steps in (None, -1):
        max_epochs = 1000  # Lightning's default when neither is set
    if isinstance(steps, int) and max_steps not in (None, -1) and steps >= max_steps:
        raise ConfigError(
            f"ckpt_path: the checkpoint has made {steps} steps (trainer.max_steps={max_steps}); to train on, raise "
            f"trainer.max_steps above {steps}, or evaluate it with eval_only=true"
        )
    if isinstance(epochs, int) and max_epochs not in (None, -1) and epochs >= max_epochs:
        raise ConfigError(
            f"ckpt_path: the checkpoint has finished {epochs} epoch{'s' if epochs != 1 else ''} "
            f"(trainer.max_epochs={max_epochs}); to train on, raise trainer.max_epochs above {epochs}, or evaluate "
            "it with eval_only=true"
        )


def recorded_fingerprint(ckpt: dict[str, Any]) -> str | None:
    """The SHA-256 of the table a checkpoint was trained on (None: not a table, or a checkpoint from before
    nnmodel recorded it)."""
    state = ckpt.get("TensorDataModule")
    value = state.get("fingerprint") if isinstance(state, dict) else None
    return value if isinstance(value, str) else None


def same_table(path: Any, ckpt: dict[str, Any]) -> bool:
    """Whether ``path`` is a file with the bytes of the table the checkpoint was trained on."""
    recorded = recorded_fingerprint(ckpt)
    return recorded is not None and isinstance(path, str) and Path(path).is_file() and fingerprint(path) == recorded


def check_table_found(path: str, evaluating: bool) -> None:
    """The checkpoint's own table, by the path it recorded (as typed: relative to the directory the run was started
    in), when the user gives no other."""
    if not Path(path).is_file():
        which = "another table with its columns, or that one" if evaluating else "that table (the same file, anywhere)"
        raise ConfigError(
            f"data.path: no file at '{path}', the table the checkpoint was trained on (its data.path, relative to the "
            f"directory that run was started in); give data.path=PATH of {which}"
        )


def check_same_table(cfg: DictConfig, ckpt: dict[str, Any]) -> None:
    """A resumed run trains on the table it was trained on: the same bytes (its splits and its standardisation come
    from them). Checkpoints from before nnmodel recorded the table's SHA-256 are checked by their mean and std only
    (TensorDataModule._same_scaling)."""
    path = cfg.data.get("path")
    if cfg.data.name in TABLES and recorded_fingerprint(ckpt) is not None and not same_table(path, ckpt):
        raise ConfigError(
            f"data.path: '{path}' is not the table the checkpoint was trained on (its bytes differ: the file has "
            "changed since); resume on that table, or start a new run without ckpt_path"
        )


def settle(cfg: DictConfig, overrides: Sequence[str] | None = None) -> tuple[DictConfig, dict[str, Any] | None]:
    """``cfg`` as the run will use it: with ``ckpt_path``, the checkpoint's config and the user's changes.

    Returns the config (``ckpt_path`` resolved to a file) and the loaded checkpoint (None without one).
    Raises ConfigError, before anything is written.
    """
    given = cfg.get("ckpt_path")
    if given is not None and not isinstance(given, str):
        raise ConfigError(f"ckpt_path must be the path of a checkpoint, or last, got {given!r}")
    path = resolve_ckpt_path(given)
    if path is None:
        return cfg, None
    check_checkpoint(path)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    evaluating = bool(cfg.get("eval_only"))
    saved, changed = saved_config(ckpt), changed_keys(cfg, overrides)
    data = saved.get("data")
    if not evaluating and "data.path" in changed and isinstance(data, dict) and same_table(cfg.data.get("path"), ckpt):
        saved = {**saved, "data": {**data, "path": cfg.data.path}}  # the same file, found by another path
    elif isinstance(data, dict) and data.get("name") in TABLES and not {"data", "data.name", "data.path"} & changed:
        check_table_found(str(data.get("path")), evaluating)
    merged = merge(cfg, with_recorded_columns(saved, ckpt) if evaluating else saved, changed, evaluating)
    OmegaConf.update(merged, "ckpt_path", path)
    if evaluating:
        unnamed_columns(merged, changed)
        check_recorded_columns(merged, ckpt, changed)
    return merged, ckpt
