"""The LightningModule: the one place where Lightning meets nnmodel's math.

It wraps a :class:`~nnmodel.network.FeedForward`, computes the cost that matches the output
(categorical cross-entropy for softmax, the slide's J(Θ) for sigmoid), adds L2 as on the slides,
logs ``train/loss``, ``train/acc``, ``val/*`` and ``test/*``, and builds the optimizer from its config.

With ``backprop="manual"`` it trains with the hand-written backprop of :mod:`nnmodel.backprop`:
Lightning's manual optimisation, our D^(l) written into ``.grad``, then the optimizer steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
import torchmetrics

from nnmodel.backprop import backprop as manual_backprop
from nnmodel.backprop import cost_from_logits, encode_targets, l2_penalty, write_grads
from nnmodel.network import FeedForward, n_outputs
from nnmodel.optim import build_optimizer, build_scheduler

BACKPROP_MODES = ("autograd", "manual")


class NNModule(L.LightningModule):
    """A classifier h_Θ(x) trained by Lightning.

    Args:
        n_in, hidden, n_classes: s_1, the hidden sizes, and the number of classes (K = n_classes,
            or 1 for a two-class problem with a sigmoid output: the lecture's single logistic unit).
        activation, output, init, epsilon, leaky_slope: as in :class:`FeedForward`.
        l2: λ, the L2 strength: J += λ/(2m) Σ W² on weights, never biases.
        backprop: ``"autograd"`` (torch computes the gradients) or ``"manual"`` (ours).
        optimizer: the optimizer's config: ``name``, ``lr`` and its knobs, and optionally a
            ``scheduler`` dict (see :mod:`nnmodel.optim`).
        seed: seeds the initial weights.
    """

    def __init__(
        self,
        n_in: int,
        hidden: Sequence[int],
        n_classes: int,
        activation: str | Sequence[str] = "relu",
        output: str = "softmax",
        init: str = "epsilon_uniform",
        epsilon: float | str = 0.12,
        leaky_slope: float = 0.01,
        l2: float = 0.0,
        backprop: str = "autograd",
        optimizer: dict[str, Any] | None = None,
        seed: int | None = 0,
    ) -> None:
        super().__init__()
        if backprop not in BACKPROP_MODES:
            raise ValueError(f"unknown backprop mode '{backprop}'; choose one of: {', '.join(BACKPROP_MODES)}")
        if not (isinstance(l2, int | float) and l2 >= 0):
            raise ValueError(f"l2 must be >= 0, got {l2!r}")
        self.save_hyperparameters()
        self.net = FeedForward(
            n_in,
            list(hidden),
            n_outputs(n_classes, output),
            activation=list(activation)
            if isinstance(activation, Sequence) and not isinstance(activation, str)
            else activation,
            output=output,
            init=init,
            epsilon=epsilon,
            leaky_slope=leaky_slope,
            seed=seed,
        )
        self.l2 = float(l2)
        self.optimizer_config = dict(optimizer or {"name": "adam"})
        self.automatic_optimization = backprop == "autograd"
        task = "binary" if n_classes == 2 else "multiclass"
        # torchmetrics accumulate on the device and sync once per epoch: no .item() per step.
        self.train_acc = torchmetrics.Accuracy(task=task, num_classes=n_classes)
        self.val_acc = torchmetrics.Accuracy(task=task, num_classes=n_classes)
        self.test_acc = torchmetrics.Accuracy(task=task, num_classes=n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def loss(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """J(Θ) for the batch from the output layer's z (logits), plus λ/(2m) Σ W²."""
        if self.net.output == "softmax" and y.ndim == 1:
            j = F.cross_entropy(z, y)  # the same −(1/m) Σ log softmax(z)_y, without the one-hot matrix
        else:
            j = cost_from_logits(z, encode_targets(y, self.net.n_out, z.dtype), self.net.output)
        return j + l2_penalty(self.net, self.l2, z.shape[0]) if self.l2 else j

    def _predictions(self, z: torch.Tensor) -> torch.Tensor:
        return (z[:, 0] > 0).long() if z.shape[1] == 1 else z.argmax(dim=1)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        x, y = batch
        if self.automatic_optimization:
            z = self.net(x)
            loss = self.loss(z, y)
        else:
            opt = self.optimizers()
            grads = manual_backprop(self.net, x, y, self.l2)  # no autograd graph at all
            write_grads(self.net, grads)
            opt.step()
            loss, z = grads.cost, grads.logits
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        self.train_acc(self._predictions(z.detach()), y)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        return loss if self.automatic_optimization else None

    def on_train_epoch_end(self) -> None:
        if not self.automatic_optimization:
            sched = self.lr_schedulers()
            if sched is not None:
                sched.step()

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str, metric: torchmetrics.Metric) -> None:
        x, y = batch
        z = self.net(x)
        self.log(f"{stage}/loss", self.loss(z, y), on_epoch=True, prog_bar=stage == "val")
        metric(self._predictions(z), y)
        self.log(f"{stage}/acc", metric, on_epoch=True, prog_bar=stage == "val")

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_acc)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_acc)

    def predict_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._predictions(self.net(batch[0]))

    def configure_optimizers(self) -> Any:
        cfg = dict(self.optimizer_config)
        sched_cfg = dict(cfg.pop("scheduler", None) or {})
        optimizer = build_optimizer(cfg.pop("name"), self.net.parameters(), **cfg)
        scheduler = build_scheduler(sched_cfg.pop("name", "none"), optimizer, **sched_cfg)
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
