"""The LightningModule: the one place where Lightning meets nnmodel's math.

It wraps a :class:`~nnmodel.network.FeedForward`, computes the cost that matches the output
(categorical cross-entropy for softmax, the slide's J(Θ) for sigmoid), adds L2 as on the slides,
logs ``train/loss_step``, ``train/loss_epoch``, ``train/acc``, ``val/*`` and ``test/*``, and builds the
optimizer from its config.

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
from nnmodel.callbacks import skip_unused_hooks
from nnmodel.network import FeedForward, classes, n_outputs
from nnmodel.optim import build_from_config

BACKPROP_MODES = ("autograd", "manual")
STAGES = ("train", "val", "test")


# Why two small metrics instead of `self.log(value)` every step: each `self.log` call costs Lightning
# ~0.2 ms (it walks its result objects), and torchmetrics' `Accuracy.forward` ~0.2 ms, more than a
# whole training step of a 784-100-10 network. `update` below costs ~15 µs and stays on the device;
# the metric objects are handed to `self.log` once per epoch, and Lightning computes, logs and resets
# them at the epoch's end exactly as it does for values logged every step.


class EpochMean(torchmetrics.Metric):
    """Σ_batches J·m / Σ_batches m: the epoch mean ``self.log(J, on_epoch=True)`` computes, by the same
    float32 operations (so the same bits), without syncing across processes (like ``sync_dist=False``)."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__(sync_on_compute=False)
        self.add_state("total", torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0), dist_reduce_fx="sum")

    def update(self, value: torch.Tensor, m: int) -> None:
        self.total.add_(value * m)  # in place: assigning a Metric's state goes through nn.Module.__setattr__
        self.count.add_(m)

    def compute(self) -> torch.Tensor:
        return self.total / self.count


class EpochAccuracy(torchmetrics.Metric):
    """Correct predictions / examples over the epoch, summed over processes at compute: the value of
    ``torchmetrics.Accuracy`` (micro average) for class-index predictions, whose input checks make each
    of its updates four times as slow."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("correct", torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0), dist_reduce_fx="sum")

    def update(self, predictions: torch.Tensor, y: torch.Tensor) -> None:
        self.correct.add_((predictions == y).sum())
        self.total.add_(y.numel())

    def compute(self) -> torch.Tensor:
        return self.correct.float() / self.total


class NNModule(L.LightningModule):
    """A classifier h_Θ(x) trained by Lightning.

    Args:
        n_in, hidden, n_classes: s_1, the hidden sizes, and the number of classes (K = n_classes,
            or 1 for a two-class problem with a sigmoid output: the lecture's single logistic unit).
        activation, output, init, epsilon, leaky_slope: as in :class:`FeedForward`.
        l2: λ, the L2 strength: J += λ/(2m) Σ W² on weights, never biases, with m the batch's size
            (see :func:`nnmodel.backprop.l2_penalty`; a full batch gives the slide's J(Θ) exactly).
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
        # Accumulated on the device, read once per epoch: no .item() per step.
        self.train_loss, self.val_loss, self.test_loss = EpochMean(), EpochMean(), EpochMean()
        self.train_acc, self.val_acc, self.test_acc = EpochAccuracy(), EpochAccuracy(), EpochAccuracy()
        self._unregistered: set[str] = set(STAGES)  # stages whose metrics self.log has not seen this epoch
        skip_unused_hooks(self, L.LightningModule)  # the per-batch no-op hooks (see nnmodel.callbacks)

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning sets `_current_fx_name` (a plain string) around every hook call, some 40 times a step;
        # nn.Module.__setattr__ checks each value against parameters, modules and buffers first, which cost
        # ~65 µs a step, 8 % of a 784-100-10 step at batch 128. The attribute is never one of those.
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def loss(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """J(Θ) for the batch from the output layer's z (logits), plus λ/(2m) Σ W²."""
        if self.net.output == "softmax" and y.ndim == 1:
            j = F.cross_entropy(z, y)  # the same −(1/m) Σ log softmax(z)_y, without the one-hot matrix
        else:
            j = cost_from_logits(z, encode_targets(y, self.net.n_out, z.dtype), self.net.output)
        return j + l2_penalty(self.net, self.l2, z.shape[0]) if self.l2 else j

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        x, y = batch
        step = self.global_step  # read before a manual opt.step() advances it
        if self.automatic_optimization:
            z = self.net(x)
            loss = self.loss(z, y)
        else:
            opt = self.optimizers()
            grads = manual_backprop(self.net, x, y, self.l2)  # no autograd graph at all
            write_grads(self.net, grads)
            opt.step()
            loss, z = grads.cost, grads.logits
        self._accumulate("train", loss.detach(), z.detach(), y)
        if self._loss_step_is_seen(step, batch_idx):
            self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True)
        return loss  # manual mode: Lightning only passes it on to callbacks (the divergence guard)

    def _accumulate(self, stage: str, loss: torch.Tensor, z: torch.Tensor, y: torch.Tensor) -> None:
        """Add the batch to the stage's epoch loss and accuracy; register them with self.log once an epoch."""
        loss_metric, acc_metric = getattr(self, f"{stage}_loss"), getattr(self, f"{stage}_acc")
        loss_metric.update(loss, len(y))
        acc_metric.update(classes(z), y)
        if stage in self._unregistered:
            self._unregistered.discard(stage)
            loss_key = "train/loss_epoch" if stage == "train" else f"{stage}/loss"
            self.log(loss_key, loss_metric, on_step=False, on_epoch=True, prog_bar=stage != "test")
            self.log(f"{stage}/acc", acc_metric, on_step=False, on_epoch=True, prog_bar=stage == "val")

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Our batches are slices of tensors that already live on the device (TensorBatches); Lightning's
        generic move walks the batch as a collection at every step, which costs more than this check."""
        if isinstance(batch, tuple | list) and all(isinstance(t, torch.Tensor) and t.device == device for t in batch):
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def _loss_step_is_seen(self, step: int, batch_idx: int) -> bool:
        """Whether anything reads this step's ``train/loss_step``: the logger writes step values every
        ``log_every_n_steps`` optimizer steps, the progress bar redraws every ``refresh_rate`` batches
        and at the epoch's last one. On the other steps, logging it would cost more than the step."""
        trainer = self._trainer
        if trainer is None or trainer.fast_dev_run or trainer.should_stop:
            return True
        if batch_idx + 1 >= trainer.num_training_batches:
            return True  # the epoch's last batch: the bar redraws, and callback_metrics keep the last value
        if trainer.log_every_n_steps and (step + 1) % trainer.log_every_n_steps == 0:
            return True  # Lightning's own test for writing step metrics (its `should_update_logs`)
        bar = trainer.progress_bar_callback
        if bar is None or not bar.is_enabled:
            return False
        refresh = getattr(bar, "refresh_rate", 1)  # TQDM and Rich bars; any other bar: every batch
        return not isinstance(refresh, int) or refresh <= 1 or (batch_idx + 1) % refresh == 0

    def on_train_epoch_start(self) -> None:
        self._unregistered.add("train")

    def on_validation_epoch_start(self) -> None:
        self._unregistered.add("val")

    def on_test_epoch_start(self) -> None:
        self._unregistered.add("test")

    def on_train_epoch_end(self) -> None:
        if not self.automatic_optimization:
            sched = self.lr_schedulers()
            if sched is not None:
                sched.step()

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> None:
        x, y = batch
        z = self.net(x)
        self._accumulate(stage, self.loss(z, y), z, y)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def predict_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.net.predict(batch[0])

    def configure_optimizers(self) -> Any:
        optimizer, scheduler = build_from_config(self.optimizer_config, self.net.parameters())
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
