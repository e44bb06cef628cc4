"""What nnmodel is measured against: a bare PyTorch loop, scikit-learn's MLPClassifier, torchvision's loader."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from bench.harness import Timing, time_call
from nnmodel.callbacks import NVML_CHECK, set_env
from nnmodel.data import TensorDataModule
from nnmodel.training import build_module


@contextlib.contextmanager
def as_without_lightning() -> Iterator[None]:
    """The environment of a plain PyTorch script, which never imported Lightning.

    ``import lightning`` sets PYTORCH_NVML_BASED_CUDA_CHECK=1 for the whole process; on a CUDA build of
    torch, every Adam step then asks NVML whether CUDA is available (tens of µs). A bare loop in its
    own process would never pay that, so the bare side runs without the variable.
    """
    saved = os.environ.pop(NVML_CHECK, None)
    try:
        yield
    finally:
        set_env(NVML_CHECK, saved)


def bare_epoch(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, batch: int) -> None:
    """One epoch of the bare loop: a new randperm (on x's device), index_select minibatches, one step each."""
    perm = torch.randperm(len(x), device=x.device)
    for i in range(0, len(x), batch):
        idx = perm[i : i + batch]
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x.index_select(0, idx)), y.index_select(0, idx)).backward()
        opt.step()


def bare_fit(cfg: DictConfig, dm: TensorDataModule, device: torch.device) -> tuple[Timing, nn.Module]:
    """The same training as ``fit`` in plain PyTorch, timed: nn.Sequential of nnmodel's initial layers, the
    optimizer nnmodel builds (fused Adam), a new randperm every epoch, index_select minibatches, one
    optimizer step each, then a validation pass (loss and accuracy summed on the device, read once).

    On ``device``, with the data moved there before the clock starts, as nnmodel keeps it.
    """
    if cfg.model.activation != "relu" or cfg.model.output != "softmax":
        raise ValueError("the bare loop is ReLU hidden layers and a softmax output")
    ref = build_module(cfg, dm)  # the initial weights and the optimizer nnmodel would build
    layers: list[nn.Module] = []
    for layer in ref.net.layers:
        layers += [layer, nn.ReLU()]
    model = nn.Sequential(*layers[:-1]).to(device)
    built = ref.configure_optimizers()
    optimizer = built["optimizer"] if isinstance(built, dict) else built
    x, y = (t.to(device) for t in dm.split("train"))
    xv, yv = (t.to(device) for t in dm.split("val"))
    batch, epochs = cfg.data.batch_size, cfg.trainer.max_epochs

    def train() -> None:
        opt = type(optimizer)(model.parameters(), **optimizer.defaults)
        for _ in range(epochs):
            model.train()
            bare_epoch(model, opt, x, y, batch)
            model.eval()
            with torch.no_grad():
                correct, total = torch.zeros((), device=device), torch.zeros((), device=device)
                for i in range(0, len(xv), batch):
                    z = model(xv[i : i + batch])
                    total += F.cross_entropy(z, yv[i : i + batch], reduction="sum")
                    correct += (z.argmax(1) == yv[i : i + batch]).sum()
                total.item(), correct.item()

    with as_without_lightning():
        timing, _ = time_call(train)
    return timing, model


def sklearn_fit(
    x: torch.Tensor, y: torch.Tensor, hidden: int, batch: int, lr: float, epochs: int
) -> tuple[Timing, object]:
    """scikit-learn's MLPClassifier with nnmodel's settings (ReLU, Adam, no L2), exactly ``epochs`` epochs."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(
        hidden_layer_sizes=(hidden,),
        activation="relu",
        solver="adam",
        alpha=0.0,  # nnmodel's model.l2 = 0
        batch_size=batch,
        learning_rate_init=lr,
        max_iter=epochs,
        tol=0.0,
        n_iter_no_change=10**9,  # with tol=0: never stop early, run every epoch
        shuffle=True,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        timing, _ = time_call(lambda: clf.fit(x.numpy(), y.numpy()))  # float32 kept (no float64 copy)
    return timing, clf


def torchvision_loader(root: Path, batch: int) -> torch.utils.data.DataLoader:
    """The textbook MNIST input pipeline: torchvision's MNIST, ToTensor, a shuffling DataLoader."""
    import torchvision
    from torch.utils.data import DataLoader

    dataset = torchvision.datasets.MNIST(
        str(root), train=True, download=False, transform=torchvision.transforms.ToTensor()
    )
    return DataLoader(dataset, batch_size=batch, shuffle=True)
