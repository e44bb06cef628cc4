"""The LightningModule: the one place where Lightning meets nnmodel's math.

It wraps a :class:`~nnmodel.core.network.FeedForward`, computes the cost that matches the output
(categorical cross-entropy for softmax, the slide's J(Θ) for sigmoid), adds L2 as on the slides,
and builds the optimizer from its config.

**Many steps per call.** One Lightning batch is a :class:`~nnmodel.data.Chunk` of ``steps_per_execution``
minibatches (from :class:`~nnmodel.data.TensorBatches`), and :meth:`NNModule.training_step` takes one optimizer
step per minibatch with Lightning's manual optimisation, as Keras' ``steps_per_execution`` does. Every
cost Lightning has per batch (its hooks, loops, fetcher, logging) is paid once per chunk, while the
sequence of updates is exactly the one of a chunk of one: the same minibatches in the same order,
each ``opt.step()`` of Lightning's optimizer advancing ``trainer.global_step``.

**Logging at optimizer steps.** Lightning's ``self.log`` puts values on an x-axis that counts
Lightning batches, which are chunks here. So the step-indexed scalars are written through the
loggers' public ``log_metrics(metrics, step)`` at the optimizer step they belong to, and ``self.log``
(with ``logger=False``) only gives the validation and test metrics to ``trainer.callback_metrics``, which
ModelCheckpoint monitors, and to the progress bar. A value measured on the weights after N updates is logged
at step N.

With ``backprop="manual"`` the gradients come from the hand-written backprop of
:mod:`nnmodel.core.backprop` (written into ``.grad``), otherwise from ``manual_backward``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
import torchmetrics
from torch import nn

from nnmodel.core.backprop import Gradients, cost_from_logits, encode_targets, l2_penalty, write_grads
from nnmodel.core.backprop import backprop as manual_backprop
from nnmodel.core.network import FeedForward, classes, n_outputs
from nnmodel.data.batches import Chunk
from nnmodel.errors import DivergedError, unknown
from nnmodel.graphs import CapturedGradients
from nnmodel.optim import build_from_config

BACKPROP_MODES = ("autograd", "manual")
STAGES = ("train", "val", "test")
HISTORY_KEYS = ("train/loss_epoch", "train/acc", "val/loss", "val/acc")  # result.json's per-epoch curves


class ExampleMean(torchmetrics.Metric):
    """Σ_minibatches J·m / Σ m: the epoch's mean loss over its examples, summed over processes under DDP.

    torchmetrics' MeanMetric(weight=m) would say the same, but not exactly as we need it: with
    ``nan_strategy="disable"`` (which spares a device sync per update) torchmetrics 1.9 drops the
    weights, and its inputs are cast to the metric's dtype, which any device move resets to float32.
    Here the sums are float64 whatever Lightning does, so the mean does not depend on how the
    minibatches were grouped into chunks (J·m is exact in float64).
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("examples", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, losses: torch.Tensor, sizes: torch.Tensor) -> None:  # (k,) each
        self.total += (losses.double() * sizes.double()).sum()
        self.examples += sizes.double().sum()

    def compute(self) -> torch.Tensor:
        return (self.total / self.examples).float()


class StageMetrics(nn.Module):
    """A stage's epoch loss and accuracy, updated once per chunk with all its minibatches."""

    def __init__(self, n_classes: int) -> None:
        super().__init__()
        self.loss = ExampleMean()
        self.acc = torchmetrics.classification.MulticlassAccuracy(
            num_classes=max(n_classes, 2), average="micro", validate_args=False
        )

    def update(self, losses: list[torch.Tensor], logits: list[torch.Tensor], ys: list[torch.Tensor]) -> None:
        """One chunk: each minibatch's J, its output layer's z (m, K) and its labels y (m,)."""
        self.loss.update(torch.stack(losses), torch.tensor([len(y) for y in ys], device=losses[0].device))
        self.acc.update(classes(torch.cat(logits)), torch.cat(ys))  # one argmax for the chunk

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.loss.compute(), self.acc.compute()

    def reset(self) -> None:
        self.loss.reset()
        self.acc.reset()


class NNModule(L.LightningModule):
    """A classifier h_Θ(x) trained by Lightning.

    Args:
        n_in, hidden, n_classes: s_1, the hidden sizes, and the number of classes (K = n_classes,
            or 1 for a two-class problem with a sigmoid output: the lecture's single logistic unit).
        activation, output, init, epsilon, leaky_slope: as in :class:`FeedForward`.
        l2: λ, the L2 strength: J += λ/(2m) Σ W² on weights, never biases, with m the batch's size
            (see :func:`nnmodel.core.backprop.l2_penalty`; a full batch gives the slide's J(Θ) exactly).
        backprop: ``"autograd"`` (torch computes the gradients) or ``"manual"`` (ours).
        optimizer: the optimizer's config: ``name``, ``lr`` and its knobs, and optionally a
            ``scheduler`` dict (see :mod:`nnmodel.optim`).
        seed: seeds the initial weights.
        diverge_above: a training loss above this, or NaN/inf, stops training (DivergedError).
        cuda_graphs: on one CUDA GPU, each minibatch's gradients are a replay of a CUDA graph recorded at the first
            step (:mod:`nnmodel.graphs`). How the run executes, not what it computes: not a hyperparameter.
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
        diverge_above: float = 1e4,
        cuda_graphs: bool = False,
    ) -> None:
        super().__init__()
        if backprop not in BACKPROP_MODES:
            raise unknown("backprop mode", backprop, BACKPROP_MODES)
        self.save_hyperparameters(ignore=["cuda_graphs"])
        self.net = FeedForward(
            n_in,
            list(hidden),
            n_outputs(n_classes, output),
            activation=activation if isinstance(activation, str) else list(activation),
            output=output,
            init=init,
            epsilon=epsilon,
            leaky_slope=leaky_slope,
            seed=seed,
        )
        self.l2 = float(l2)
        self.manual_gradients = backprop == "manual"
        self.optimizer_config = dict(optimizer or {"name": "adam"})
        self.diverge_above = float(diverge_above)
        self.cuda_graphs = bool(cuda_graphs)
        self._captured: CapturedGradients | None = None  # recorded at the first training step (cuda_graphs)
        self.automatic_optimization = False  # training_step steps itself, once per minibatch of its chunk
        # one per stage (attributes, so that Lightning moves them to the device with the module)
        self.train_metrics, self.val_metrics, self.test_metrics = (StageMetrics(n_classes) for _ in STAGES)
        self.history: dict[str, list[float | None]] = {key: [] for key in HISTORY_KEYS}  # one value an epoch
        self._fresh: dict[str, float] = {}  # epoch values logged since the last training epoch ended
        self.last_loss: torch.Tensor | None = None  # J of the last optimizer step, detached
        # optimizer steps taken before this trainer's (an earlier fit's, MLPClassifier.partial_fit; the checkpoint's,
        # for eval_only): the loggers' step axis goes on from there, where trainer.global_step starts again at 0
        self.steps_before = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def loss(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """J(Θ) for the batch from the output layer's z (logits), plus λ/(2m) Σ W²."""
        if self.net.output == "softmax" and y.ndim == 1:
            j = F.cross_entropy(z, y)  # the same −(1/m) Σ log softmax(z)_y, without the one-hot matrix
        else:
            j = cost_from_logits(z, encode_targets(y, self.net.n_out, z.dtype), self.net.output)
        return j + l2_penalty(self.net, self.l2, z.shape[0]) if self.l2 else j

    # ------------------------------------------------------------------------- training

    def training_step(self, chunk: Chunk, batch_idx: int) -> None:
        chunk, opt, trainer = self._in_dtype(chunk), self.optimizers(), self.trainer
        # On one CPU process, reading the loss costs nothing (no device to wait for): check it at every step,
        # so a divergence stops the run at its step. Elsewhere, once per chunk (see _check_divergence).
        check_each_step = self.device.type == "cpu" and trainer.world_size == 1
        first_step, every = self.global_step, trainer.log_every_n_steps
        # trainer.max_steps counts optimizer steps, and may fall inside a chunk
        room = len(chunk) if trainer.max_steps < 0 else max(0, min(len(chunk), trainer.max_steps - first_step))
        losses, logits, ys = [], [], []
        # `step` counts as trainer.global_step does: each opt.step() of Lightning's optimizer adds one
        for step, (x, y) in enumerate(itertools.islice(chunk, room), start=first_step):
            loss, z = self._gradients(opt, x, y)
            opt.step()
            loss = loss.detach()
            losses.append(loss)
            logits.append(z.detach())
            ys.append(y)
            if check_each_step and not (math.isfinite(value := float(loss)) and value <= self.diverge_above):
                self._diverged(value, step + 1)
            if (self.steps_before + step + 1) % every == 0:
                self._log_at_step({"train/loss_step": float(loss)}, step)
        if not losses:
            return
        if not check_each_step:
            self._check_divergence(losses, first_step)
        self.train_metrics.update(losses, logits, ys)
        # The progress bar (nnmodel.console.StepProgressBar) reads it when it redraws. Not self.log: that costs
        # about 1 ms a call on CPU (bench/floor.py), and nothing else reads the step's loss from Lightning.
        self.last_loss = losses[-1]

    def _gradients(self, opt: Any, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """J on the minibatch and its logits, with ∂J/∂Θ in every parameter's ``.grad``."""
        if self.cuda_graphs:
            # recorded at the first minibatch, again if a larger one comes (a run resumed at an epoch's short last
            # minibatch would otherwise keep a graph that no full one fits)
            if self._captured is None or (not self._captured.fits(x, y) and len(x) > len(self._captured.x)):
                fn = self._manual_gradients if self.manual_gradients else self._autograd_gradients
                self._captured = CapturedGradients(fn, x, y)
            if self._captured.fits(x, y):  # not an epoch's short last minibatch: that one runs as below
                grads = self._captured(x, y)
                write_grads(self.net, grads)
                return grads.cost, grads.logits
        if self.manual_gradients:
            grads = self._manual_gradients(x, y)  # no autograd graph at all
            write_grads(self.net, grads)
            if self.trainer.world_size > 1:
                self._average_gradients()
            return grads.cost, grads.logits
        z = self.net(x)
        loss = self.loss(z, y)
        opt.zero_grad()
        self.manual_backward(loss)  # under DDP, Lightning has DDP average the gradients of every backward
        return loss, z

    def _manual_gradients(self, x: torch.Tensor, y: torch.Tensor) -> Gradients:
        return manual_backprop(self.net, x, y, self.l2)

    def _autograd_gradients(self, x: torch.Tensor, y: torch.Tensor) -> Gradients:
        """What ``manual_backward`` computes, as a function with no side effect: what a CUDA graph can record."""
        layers = self.net.layers
        with torch.enable_grad():
            z = self.net(x)
            loss = self.loss(z, y)
            grads = torch.autograd.grad(loss, [p for layer in layers for p in (layer.weight, layer.bias)])
        return Gradients(loss.detach(), [], list(grads[0::2]), list(grads[1::2]), z.detach())

    def _average_gradients(self) -> None:
        """The hand-written backprop bypasses autograd, where DDP averages gradients; average them here,
        in one collective per step, with the strategy's public ``reduce``."""
        params = list(self.net.parameters())
        flat = self.trainer.strategy.reduce(torch.cat([p.grad.reshape(-1) for p in params]), reduce_op="mean")
        for p, g in zip(params, flat.split([p.numel() for p in params])):
            p.grad = g.view_as(p)

    def _check_divergence(self, losses: list[torch.Tensor], first_step: int) -> None:
        """The chunk's losses (of steps first_step, first_step + 1, ...) checked at once: one wait for the GPU,
        and under DDP one collective, so that every process stops at the same step (the first bad one)."""
        values = torch.stack(losses).float()  # (k,)
        bad = (~torch.isfinite(values) | (values > self.diverge_above)).float()  # (k,)
        if self.trainer.world_size > 1:
            bad = self.trainer.strategy.reduce(bad, reduce_op="sum")  # > 0 where some process diverged
        if bool(bad.any()):
            index = int(bad.nonzero()[0])
            self._diverged(float(values[index]), first_step + index + 1)

    def _diverged(self, value: float, step: int) -> None:
        """Stop with the loss and the step it happened at: the N-th optimizer step is "step N"."""
        at = f"at step {step} (epoch {self.current_epoch + 1})"  # epochs counted from 1, as the history counts
        if step == 1:  # J of the initial weights: no learning rate has acted yet
            hp = self.hparams
            # a finite J of the initial weights above a lowered diverge_above: the threshold is the suspect too
            low = f", or raise diverge_above={self.diverge_above:g}" if math.isfinite(value) and value < 1e4 else ""
            raise DivergedError(
                f"training diverged: the loss became {value:.4g} {at}, at the initial weights, before any update: "
                f"they or the inputs are too large; lower {self.spell('model.epsilon', hp.get('epsilon'))} (init "
                f"{hp.get('init')}), or scale the inputs{low}"
            )
        lr = self.optimizers().param_groups[0]["lr"]
        if str(self.trainer.precision) == "16-true":  # float16 weights and optimizer state, not the learning rate
            raise DivergedError(
                f"training diverged: the loss became {value:.4g} {at} in float16 (trainer.precision=16-true), which "
                "holds no number above 65504 nor below 6e-8 (an optimizer's eps=1e-8 is 0 there); use "
                "trainer.precision=32 or bf16-true, or 16-mixed on a GPU"
            )
        raise DivergedError(
            f"training diverged: the loss became {value:.4g} {at}; lower the learning rate "
            f"({self.spell('optimizer.lr', lr)})"
        )

    def spell(self, key: str, value: Any) -> str:
        """A setting as the user gives it: ``optimizer.lr=0.5`` on the command line (nnmodel.MLPClassifier, whose
        parameters are named after the keys' last parts, replaces this with ``lr=0.5``)."""
        return f"{key}={value}"

    def on_train_start(self) -> None:
        # A graph records memory addresses: a new fit (Lightning moves the module to the CPU after each) records anew
        self._captured = None

    def _in_dtype(self, chunk: Chunk) -> Chunk:
        """The chunk's inputs in the network's dtype. Lightning's precision plugins cast the tensors of the batch
        collections they know (``trainer.precision=64`` makes the network float64); a Chunk is nnmodel's own. (Not
        in ``on_after_batch_transfer``: Lightning warns at every fit when a LightningModule overrides it beside a
        LightningDataModule.)"""
        if chunk.x.dtype == self.dtype or not chunk.x.is_floating_point():
            return chunk
        return Chunk(chunk.x.to(self.dtype), chunk.y, chunk.batch_size)

    def on_train_epoch_start(self) -> None:
        opt = self.optimizers()
        self._log_at_step({f"lr-{type(opt.optimizer).__name__}": opt.param_groups[0]["lr"]}, self.global_step)

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train", {"loss": "train/loss_epoch", "acc": "train/acc"})
        # with val/ from the validation that ran before this hook; None in an epoch without one
        # (trainer.check_val_every_n_epoch=2): each curve has a value or None at every epoch, in its place
        for key, values in self.history.items():
            values.append(self._fresh.get(key))
        self._fresh = {}
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()  # epoch-interval schedules; manual optimisation steps them itself

    # ------------------------------------------------------------------------- evaluation

    def _evaluate(self, chunk: Chunk, stage: str) -> None:
        losses, logits, ys = [], [], []
        for x, y in self._in_dtype(chunk):
            z = self.net(x)
            losses.append(self.loss(z, y))
            logits.append(z)
            ys.append(y)
        getattr(self, f"{stage}_metrics").update(losses, logits, ys)

    def validation_step(self, chunk: Chunk, batch_idx: int) -> None:
        self._evaluate(chunk, "val")

    def test_step(self, chunk: Chunk, batch_idx: int) -> None:
        self._evaluate(chunk, "test")

    def predict_step(self, chunk: Chunk, batch_idx: int) -> torch.Tensor:
        return self.net.predict(self._in_dtype(chunk).x)  # the chunk's rows in order, in one forward pass

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:  # Lightning's check that validation runs; not a measurement
            self.val_metrics.reset()
            return
        self._log_epoch("val", {"loss": "val/loss", "acc": "val/acc"}, prog_bar=True)

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test", {"loss": "test/loss", "acc": "test/acc"})

    # ------------------------------------------------------------------------- logging

    def _log_epoch(self, stage: str, names: dict[str, str], prog_bar: bool = False) -> None:
        """The stage's epoch loss and accuracy, over every process: to the loggers at the current optimizer
        step, and for val and test to the progress bar and callback_metrics; then reset for the next epoch."""
        metrics = getattr(self, f"{stage}_metrics")
        if not metrics.acc.update_called:
            return  # no batch this epoch (e.g. limit_val_batches=0)
        loss, acc = metrics.compute()
        metrics.reset()
        values = {names["loss"]: loss, names["acc"]: acc}
        if stage != "train":
            # callback_metrics: ModelCheckpoint monitors val/acc, and a run's result.json reads val/ and test/
            # there. Nothing reads train/ there, and self.log_dict costs about 1 ms a call (a 50-epoch fit of
            # breast_cancer: 0.49 -> 0.39 s without it), so train/ goes to the loggers and the history only.
            self.log_dict(values, prog_bar=prog_bar, logger=False)
        numbers = {k: float(v) for k, v in values.items()}
        self._fresh |= numbers
        self._log_at_step(numbers, self.global_step)

    def _log_at_step(self, metrics: dict[str, float], step: int) -> None:
        if self.trainer.sanity_checking:
            return
        for logger in self.loggers:  # rank zero only: Lightning's loggers ignore the other processes
            logger.log_metrics(metrics, step=self.steps_before + step)

    # ------------------------------------------------------------------------- state

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["nnmodel_history"] = self.history  # so that a resumed run keeps its whole curve

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.history = checkpoint.get("nnmodel_history", self.history)

    def configure_optimizers(self) -> Any:
        optimizer, scheduler = build_from_config(self.optimizer_config, self.net.parameters())
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
