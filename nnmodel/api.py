"""nnmodel from Python and Jupyter: ``nnmodel.train(*overrides)`` and ``nnmodel.load(path)``.

    run = nnmodel.train("model.activation=tanh", "optimizer=sgd", "optimizer.lr=0.5")
    run.metrics["test/acc"], run.history, run.plot()
    model = nnmodel.load(run.checkpoint)
    model.predict(x), model.predict_proba(x)

``train`` takes the command line's keys and defaults (the same configs/, the same checks, the same
files on disk: ``outputs/DATE/TIME/`` with tb/, checkpoints/, result.json) and raises nnmodel's
one-line :class:`~nnmodel.errors.ConfigError` instead of exiting; a run whose loss diverges raises
:class:`~nnmodel.errors.DivergedError` (its result.json says ``diverged``: ``Run.from_dir`` reads it).
It can be called again and again in one process: each call composes its config afresh and seeds
everything from ``seed``, then puts the global random generators (Python's, NumPy's, torch's) and torch's
determinism settings back as they were.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from nnmodel.config import compose_checked, override_key
from nnmodel.core.network import FeedForward
from nnmodel.errors import ConfigError

if TYPE_CHECKING:  # pandas and matplotlib load when a run's history or plot is asked for
    import pandas as pd
    from matplotlib.figure import Figure


def train(*overrides: str) -> Run:
    """Train (and test) as ``python train.py OVERRIDES`` does; return the :class:`Run`."""
    from nnmodel.training import train as train_config

    for override in overrides:
        if not isinstance(override, str):
            unpack = " (unpack a list: nnmodel.train(*overrides))" if isinstance(override, list | tuple) else ""
            raise ConfigError(
                "nnmodel.train takes each override as a string, e.g. nnmodel.train('model.activation=tanh', "
                f"'trainer.max_epochs=5'), but got {type(override).__name__} {override!r}{unpack}"
            )
        key = override_key(override)  # what only train.py's Hydra command line reads would be ignored here
        if not key:
            raise ConfigError(
                f"nnmodel.train: {override!r} names no key before '='; give key=value, e.g. 'optimizer.lr=0.1'"
            )
        if override.startswith("-"):
            raise ConfigError(
                f"nnmodel.train runs one run: {override!r} is a flag of train.py's command line; for a sweep, run "
                "python train.py -m ..., or call nnmodel.train once per setting"
            )
        if key == "hparams_search":
            raise ConfigError(
                f"nnmodel.train runs one run: {override!r} configures a search of train.py -m; run "
                f"python train.py -m {override}"
            )
        if key.split("/")[0].split(".")[0] == "hydra":
            where = "; give paths.output_dir=DIR for the run's directory" if key.startswith("hydra.run") else ""
            raise ConfigError(
                f"nnmodel.train: {override!r} is a setting of Hydra's command line (train.py), which nnmodel.train "
                f"does not use{where}"
            )
    cfg = compose_checked(overrides)
    processes, nodes = _processes(cfg.trainer), int(cfg.trainer.get("num_nodes") or 1)
    if processes > 1:
        raise ConfigError(
            f"nnmodel.train runs in this process, but trainer.devices={cfg.trainer.devices} with "
            f"trainer.num_nodes={nodes} asks for {processes} processes, and Lightning's DDP launcher starts the "
            "others by running the calling script again from its top; train on several devices from the command "
            f"line: python train.py trainer=ddp trainer.devices={processes // nodes}"
            + (f" trainer.num_nodes={nodes}" if nodes > 1 else "")
        )
    result = train_config(cfg, overrides)
    return Run(Path(result["run_dir"]), result)


def _processes(t: Any) -> int:
    """How many processes Lightning's Trainer would run for the trainer config ``t``: its devices (a count, a list,
    ``"0,1"``, or ``-1`` and ``"auto"`` for every GPU there is; on the CPU ``"auto"`` is 1) on each of its
    ``num_nodes``."""
    devices, gpu = t.get("devices", "auto"), str(t.get("accelerator", "auto")) in ("gpu", "cuda", "auto")
    everything = torch.cuda.device_count() if gpu and torch.cuda.is_available() else None
    if isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
        devices = int(devices)
    if devices == "auto":
        count = everything or 1
    elif devices == -1:
        count = everything or os.cpu_count() or 1
    elif isinstance(devices, str):  # "0,1": device indices
        count = len([d for d in devices.split(",") if d.strip()])
    elif isinstance(devices, int):
        count = devices
    else:  # a list of device indices
        count = len(devices)
    return count * int(t.get("num_nodes") or 1)


@dataclass
class Run:
    """A finished run: its directory and its record (result.json)."""

    run_dir: Path
    result: dict[str, Any]
    _model: FeedForward | None = field(default=None, repr=False)

    @classmethod
    def from_dir(cls, run_dir: str | Path) -> Run:
        """A run that is on disk (its result.json), e.g. one of a sweep."""
        record = Path(run_dir) / "result.json"
        try:
            return cls(Path(run_dir), json.loads(record.read_text()))
        except FileNotFoundError:
            raise ConfigError(f"Run.from_dir: no result.json in '{run_dir}' (give a run's directory)") from None
        except (OSError, ValueError) as err:  # unreadable, or not JSON (a run killed while writing it)
            raise ConfigError(f"Run.from_dir: '{record}' cannot be read ({err})") from None

    @property
    def metrics(self) -> dict[str, Any]:
        """result.json without the per-epoch history: ``"val/acc"``, ``"test/acc"``, ``"status"``, ..."""
        return {k: v for k, v in self.result.items() if k != "history"}

    @property
    def history(self) -> pd.DataFrame:
        """One row per epoch (``epoch`` from 1), a column per curve: train/loss_epoch, train/acc, val/loss, val/acc
        (NaN in an epoch that did not validate, e.g. with ``trainer.check_val_every_n_epoch=2``)."""
        import pandas as pd

        curves = {k: pd.Series(v, dtype=float) for k, v in (self.result.get("history") or {}).items()}
        frame = pd.DataFrame(curves)
        frame.index = pd.RangeIndex(1, len(frame) + 1, name="epoch")
        return frame

    @property
    def checkpoint(self) -> Path | None:
        """The best checkpoint (by val/acc): the one that was tested."""
        best = self.result.get("best_ckpt")
        return Path(best) if best else None

    @property
    def model(self) -> FeedForward:
        """The trained network of :attr:`checkpoint` (a plain ``nn.Module``, in eval mode)."""
        if self._model is None:
            self._model = load(self).net
        return self._model

    def _tested_checkpoint(self) -> Path:
        """:attr:`checkpoint`, or a :class:`ConfigError` that says why the run has none and where its weights are."""
        if self.checkpoint is not None:
            return self.checkpoint
        last = self.run_dir / "checkpoints" / "last.ckpt"
        status = self.result.get("status")
        if last.is_file():  # a diverged or interrupted run: no tested best, but its last good weights
            raise ConfigError(
                f"run {self.run_dir} has no tested best checkpoint (status {status}); its last good weights "
                f"are in {last}: nnmodel.load('{last}')"
            )
        raise ConfigError(f"run {self.run_dir} saved no checkpoint (status {status})")

    def plot(self) -> Figure:
        """The curves per epoch: the losses (log scale) and the accuracies."""
        from matplotlib.figure import Figure

        history = self.history
        fig = Figure(figsize=(9, 3.2))
        loss, acc = fig.subplots(1, 2)
        for key, ax in (("train/loss_epoch", loss), ("val/loss", loss), ("train/acc", acc), ("val/acc", acc)):
            curve = history[key].dropna() if key in history else ()  # val/: at the epochs that validated
            if len(curve):
                ax.plot(curve.index, curve, marker=".", label=key)
        tested = self.metrics.get("test/acc")
        loss.set(xlabel="epoch", ylabel="J(Θ)", yscale="log", title="loss")
        acc.set(
            xlabel="epoch",
            ylabel="accuracy",
            title="accuracy" + (f" (test {tested:.4f})" if tested is not None else ""),
        )
        for ax in (loss, acc):
            ax.grid(alpha=0.3)
            if ax.get_lines():  # a run that diverged at once has no curve
                ax.legend(fontsize=8)
        fig.tight_layout()
        return fig


def refuse_missing(array: np.ndarray) -> None:
    """A missing value among objects (None, or pandas' NA of a nullable column) said as one, where it is: NumPy reads
    None as NaN and refuses NA with "float() argument must be ... not 'NAType'"."""
    if array.dtype != object or array.ndim != 2:
        return
    import pandas as pd  # its isna: None, NA and NaN among objects, in one vectorised pass

    missing = np.argwhere(pd.isna(array))
    if len(missing):
        row, column = (int(i) for i in missing[0])
        raise ConfigError(
            f"X holds a missing value ({array[row, column]!r}) at row {row}, column {column}: missing values cannot "
            "be predicted on (impute or drop such rows first)"
        )


def check_inputs(x: Any, n_features: int, who: str = "the model", dtype: Any = np.float32) -> np.ndarray:
    """``x`` as the (examples × ``n_features``) array of ``dtype`` a prediction takes, or one :class:`ConfigError` line.

    One way to say each thing, for :class:`Model` and :class:`nnmodel.MLPClassifier` alike: a numpy array, a
    nested list, a DataFrame or a tensor of numbers, exactly 2-D (one row per example; a single example is
    ``[[...]]``), of ``n_features`` columns, with at least one row, and no NaN or infinity (a value beyond
    ``dtype``'s range is one). ``who`` names the network in the message of a wrong number of features, worded
    as scikit-learn words it (its estimator checks match it).
    """
    shape_wanted = f"a 2-D array (examples × {n_features} feature{'s' if n_features != 1 else ''})"
    if hasattr(x, "toarray") and hasattr(x, "nnz"):  # a scipy.sparse matrix
        raise ConfigError(f"X is a sparse matrix; {who} takes {shape_wanted} of numbers: give X.toarray()")
    try:
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu()
            array = x.numpy() if x.is_complex() else x.to(torch.float64).numpy()
        else:
            array = np.asarray(x)
        refuse_text(array, shape_wanted)
        refuse_missing(array)
        values = None if np.iscomplexobj(array) else np.asarray(array, dtype=np.float64)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"X must be {shape_wanted} of numbers: {reason}") from None
    if values is None:
        raise ConfigError(f"X holds complex numbers; {who} takes {shape_wanted} of real numbers")
    if values.ndim != 2:
        if values.ndim == 1:
            how = ": X.reshape(1, -1) if it is one example" if n_features != 1 else ": X.reshape(-1, 1), a value a row"
        else:
            how = f" to (examples, {n_features})"
        raise ConfigError(
            f"expected {shape_wanted}, got a {values.ndim}-D array of shape {values.shape}. Reshape your data{how}"
        )
    if values.shape[1] != n_features:
        raise ConfigError(f"X has {values.shape[1]} features, but {who} is expecting {n_features} features as input")
    if values.shape[0] == 0:
        raise ConfigError(f"X has no examples (shape {values.shape}); give {shape_wanted} with at least one row")
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(values, dtype=dtype)
    bad = ~np.isfinite(out)
    if bad.any():
        row, column = (int(i) for i in np.argwhere(bad)[0])
        value = float(values[row, column])
        beyond = "" if not np.isfinite(value) else f", beyond {np.dtype(dtype).name}'s range"
        raise ConfigError(
            f"X holds {value!r} at row {row}, column {column}{beyond}: NaN and inf cannot be predicted on "
            "(impute or drop such rows first)"
        )
    return out


def refuse_text(array: np.ndarray, shape_wanted: str = "a 2-D array (examples × features)") -> None:
    """Text in X is refused, as scikit-learn refuses it: numpy would read "1.5" as 1.5 and "a" not at all."""
    if array.dtype.kind in "USO":
        text = next((v for v in array.ravel() if isinstance(v, str | bytes)), None)
        if text is not None:
            raise ConfigError(f"X must be {shape_wanted} of numbers, but it holds text ({str(text)!r})")


def no_probabilities(output: str) -> str | None:
    """Why a network with this ``output`` has no ``predict_proba`` (None: it has one)."""
    if output != "linear":
        return None
    return (
        "predict_proba: this network's output is 'linear', whose units are scores fitted to the one-hot labels by "
        "squared error, not probabilities (they can be negative or above 1); use predict, or train with output "
        "softmax or sigmoid"
    )


@dataclass
class Model:
    """A trained network with what nnmodel added to its inputs and outputs, from any nnmodel checkpoint.

    ``predict``/``predict_proba`` take inputs in the form the data preset's loader gives them (digits:
    pixels/16; MNIST: pixels/255): a 2-D array (examples × features) of finite numbers, checked by
    :func:`check_inputs`; the preprocessing nnmodel itself added (a table's standardisation) is re-applied
    here, and labels come back as the data's own (a table's label values, or class indices).
    """

    net: FeedForward
    classes: list[Any]
    mean: torch.Tensor | None = None  # (n_features,): a table's standardisation, from its training split
    std: torch.Tensor | None = None
    columns: list[str] | None = None  # a CSV table's input columns, in the network's order

    def _inputs(self, x: Any) -> torch.Tensor:
        if self.columns is not None and _named_columns(x):  # a DataFrame: the network's inputs picked by name
            missing = [c for c in self.columns if c not in x.columns]
            if missing:
                raise ConfigError(
                    f"X has no column {', '.join(map(repr, missing))}; the network takes the columns {self.columns} "
                    "(a DataFrame's are picked by name, other columns ignored; an array's by position)"
                )
            x = x[self.columns]
        dtype = self.net.layers[0].weight.dtype  # float32, unless the network was made another
        checked = check_inputs(x, self.net.n_in, dtype=np.float64 if dtype == torch.float64 else np.float32)
        x = torch.from_numpy(checked).to(dtype)
        return (x - self.mean) / self.std if self.mean is not None else x

    @torch.no_grad()
    def predict_proba(self, x: Any) -> np.ndarray:
        """(m, K) class probabilities, each row summing to 1, in the order of ``classes``.

        softmax: the softmax. sigmoid: [1 − h, h] for the single logistic unit of two classes; for K ≥ 3
        classes, the K logistic units h_k = σ(z_k) are one-vs-rest probabilities that need not sum to 1, so each
        row is divided by its sum (as scikit-learn's one-vs-rest classifiers do; computed as the softmax of
        log σ(z), which stays exact where every h_k underflows). linear: refused (:func:`no_probabilities`).
        ``predict`` gives the class of the highest probability.
        """
        problem = no_probabilities(self.net.output)
        if problem is not None:
            raise ConfigError(problem)
        x = self._inputs(x)
        if self.net.output == "sigmoid" and self.net.n_out > 1:
            h = torch.softmax(torch.nn.functional.logsigmoid(self.net(x)), dim=1)
        else:
            h = self.net.h(x)
        if h.shape[1] == 1:
            h = torch.cat([1 - h, h], dim=1)
        return h.numpy()

    def predict(self, x: Any) -> np.ndarray:
        """(m,) predicted labels: values of ``classes`` (a table's labels, or the class indices)."""
        with torch.no_grad():
            index = self.net.predict(self._inputs(x)).numpy()
        return np.asarray(self.classes)[index]


def _named_columns(x: Any) -> bool:
    """Whether x is a DataFrame with column names (a frame made from an array has the numbers 0, 1, ...)."""
    columns = getattr(x, "columns", None)
    return columns is not None and hasattr(x, "iloc") and any(isinstance(c, str) for c in columns)


def load(path: str | Path | Run) -> Model:
    """The trained model of any nnmodel checkpoint (loaded weights-only: no code in it runs), or of a :class:`Run`
    or a run's directory (its :attr:`~Run.checkpoint`, the best one, the one tested). ``"last"`` is what
    ``ckpt_path=last`` names: the newest run's last.ckpt under the current directory.

    A file that is not one (no file, not a checkpoint, one that would run code, or a checkpoint of something
    else, even a dict with some of the right keys) is refused with one :class:`ConfigError` line.
    """
    from nnmodel.core.activations import get_activation
    from nnmodel.module import NNModule
    from nnmodel.resume import recorded_columns, resolve_ckpt_path
    from nnmodel.validate import check_checkpoint

    if not isinstance(path, str | os.PathLike | Run):
        raise ConfigError(
            f"nnmodel.load takes a checkpoint's path, a run's directory, a Run or 'last', not {type(path).__name__} "
            f"{path!r}"
        )
    if not isinstance(path, Run) and (Path(path) / "result.json").is_file():  # a run's directory: its tested model
        path = Run.from_dir(path)
    if isinstance(path, Run):
        path = path._tested_checkpoint()
    spell = lambda value: f"nnmodel.load('{value}')"  # the messages in a Python user's words, not ckpt_path's
    path = resolve_ckpt_path(str(path), spell=spell)
    # a weights-only checkpoint with a state_dict and hyper_parameters.n_in, n_classes
    check_checkpoint(str(path), key="nnmodel.load", spell=spell)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    hp = dict(ckpt["hyper_parameters"])
    activation = hp.get("activation", "relu")
    for name in activation if isinstance(activation, list | tuple) else [activation]:
        try:  # a user's activation (an import path, or a name registered in the training session) must exist here
            get_activation(name, hp.get("leaky_slope"))
        except ValueError as err:
            raise ConfigError(
                f"nnmodel.load: '{path}' was trained with the activation {name!r}, which is not available here "
                f"({str(err).split('; ')[0]}); import or register it (nnmodel.register_activation) first"
            ) from None
    try:
        module = NNModule(**hp)
        module.load_state_dict(ckpt["state_dict"])
        module.eval()
        data = ckpt.get("TensorDataModule") or {}  # the datamodule's state_dict (see TensorDataModule.state_dict)
        classes = list(data.get("classes") or range(hp["n_classes"]))
        mean, std = (torch.tensor(data[k]) if data.get(k) is not None else None for k in ("mean", "std"))
        if len(classes) != hp["n_classes"]:
            raise ValueError(f"{len(classes)} class labels for a network of {hp['n_classes']} classes")
        if any(t is not None and tuple(t.shape) != (hp["n_in"],) for t in (mean, std)):
            raise ValueError(f"its standardisation does not have the network's {hp['n_in']} inputs")
    except Exception as err:  # a checkpoint of another model, or one whose parts disagree
        reason = " ".join(str(err).split())[:160] or type(err).__name__
        if isinstance(err, KeyError):
            reason = f"it has no {err.args[0]!r}" if err.args else reason
        raise ConfigError(
            f"nnmodel.load: '{path}' cannot be loaded as an nnmodel checkpoint ({reason}); give one that "
            "python train.py wrote (checkpoints/best-*.ckpt or last.ckpt)"
        ) from None
    return Model(module.net.eval(), classes, mean, std, recorded_columns(ckpt))
