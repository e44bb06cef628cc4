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
everything from ``seed``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from nnmodel.config import compose_checked
from nnmodel.core.network import FeedForward
from nnmodel.errors import ConfigError

if TYPE_CHECKING:  # pandas and matplotlib load when a run's history or plot is asked for
    import pandas as pd
    from matplotlib.figure import Figure


def train(*overrides: str) -> Run:
    """Train (and test) as ``python train.py OVERRIDES`` does; return the :class:`Run`."""
    from nnmodel.training import train as train_config

    result = train_config(compose_checked(overrides), overrides)
    return Run(Path(result["run_dir"]), result)


@dataclass
class Run:
    """A finished run: its directory and its record (result.json)."""

    run_dir: Path
    result: dict[str, Any]
    _model: FeedForward | None = field(default=None, repr=False)

    @classmethod
    def from_dir(cls, run_dir: str | Path) -> Run:
        """A run that is on disk (its result.json), e.g. one of a sweep."""
        return cls(Path(run_dir), json.loads((Path(run_dir) / "result.json").read_text()))

    @property
    def metrics(self) -> dict[str, Any]:
        """result.json without the per-epoch history: ``"val/acc"``, ``"test/acc"``, ``"status"``, ..."""
        return {k: v for k, v in self.result.items() if k != "history"}

    @property
    def history(self) -> pd.DataFrame:
        """One row per epoch (``epoch`` from 1), a column per curve: train/loss_epoch, train/acc, val/loss, val/acc."""
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
            if self.checkpoint is None:
                raise ConfigError(f"run {self.run_dir} saved no checkpoint (status {self.result.get('status')})")
            self._model = load(self.checkpoint).net
        return self._model

    def plot(self) -> Figure:
        """The curves per epoch: the losses (log scale) and the accuracies."""
        from matplotlib.figure import Figure

        history = self.history
        fig = Figure(figsize=(9, 3.2))
        loss, acc = fig.subplots(1, 2)
        for key, ax in (("train/loss_epoch", loss), ("val/loss", loss), ("train/acc", acc), ("val/acc", acc)):
            if key in history and history[key].notna().any():
                ax.plot(history.index, history[key], marker=".", label=key)
        loss.set(xlabel="epoch", ylabel="J(Θ)", yscale="log", title="loss")
        acc.set(xlabel="epoch", ylabel="accuracy", title=f"accuracy (test {self.metrics.get('test/acc') or 0:.4f})")
        for ax in (loss, acc):
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        return fig


@dataclass
class Model:
    """A trained network with what nnmodel added to its inputs and outputs, from any nnmodel checkpoint.

    ``predict``/``predict_proba`` take inputs in the form the data preset's loader gives them (digits:
    pixels/16; MNIST: pixels/255); the preprocessing nnmodel itself added (a table's standardisation)
    is re-applied here, and labels come back as the data's own (a table's label values, or class indices).
    """

    net: FeedForward
    classes: list[Any]
    mean: torch.Tensor | None = None  # (n_features,): a table's standardisation, from its training split
    std: torch.Tensor | None = None

    def _inputs(self, x: Any) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(x, dtype=np.float32) if not isinstance(x, torch.Tensor) else x)
        x = x.reshape(len(x), -1).to(self.net.layers[0].weight.dtype)
        return (x - self.mean) / self.std if self.mean is not None else x

    @torch.no_grad()
    def predict_proba(self, x: Any) -> np.ndarray:
        """(m, K) class probabilities: softmax, or [1 − h, h] for a single logistic unit."""
        h = self.net.h(self._inputs(x))
        if h.shape[1] == 1:
            h = torch.cat([1 - h, h], dim=1)
        return h.numpy()

    def predict(self, x: Any) -> np.ndarray:
        """(m,) predicted labels: values of ``classes`` (a table's labels, or the class indices)."""
        with torch.no_grad():
            index = self.net.predict(self._inputs(x)).numpy()
        return np.asarray(self.classes)[index]


def load(path: str | Path) -> Model:
    """The trained model of any nnmodel checkpoint (loaded weights-only: no code in it runs)."""
    from nnmodel.module import NNModule
    from nnmodel.validate import check_checkpoint

    check_checkpoint(str(path))
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    hp = dict(ckpt["hyper_parameters"])
    module = NNModule(**hp)
    module.load_state_dict(ckpt["state_dict"])
    module.eval()
    data = ckpt.get("TensorDataModule") or {}  # the datamodule's state_dict (see TensorDataModule.state_dict)
    classes = data.get("classes") or list(range(hp["n_classes"]))
    mean, std = (torch.tensor(data[k]) if data.get(k) is not None else None for k in ("mean", "std"))
    return Model(module.net.eval(), classes, mean, std)
