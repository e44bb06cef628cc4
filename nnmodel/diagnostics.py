"""Diagnostics in TensorBoard: what the lectures ask you to look at while a network trains.

A Lightning callback, on by default and cheap enough to leave on: between samples it costs one
modulo per optimizer step and never syncs with the device. Layers are numbered from 1, as
``layer_1`` = the first ``nn.Linear`` (W^(1), feeding the first hidden layer a^(2)).

Every ``every_n_steps`` optimizer steps (a fixed probe batch of up to ``probe_size`` validation
examples goes through ``net.trace`` for the activations):

    grad_norm/layer_{i}           ‖∂J/∂W^(i)‖₂, every layer: vanishing gradients show here
    dead_fraction/layer_{i}       relu/leaky_relu/step hidden layers: units with a ≤ 0 on every probe example
    saturated_fraction/layer_{i}  sigmoid/tanh hidden layers: activations within 0.05 of an asymptote
    distinct_units/layer_{i}      hidden units that differ (nnmodel.core.network.distinct_units): symmetry
    mean_cosine/layer_{i}         mean pairwise cosine similarity of the incoming weight rows of W^(i)

Every ``every_n_epochs`` epochs: histograms ``weights/layer_{i}``, ``biases/layer_{i}`` and
``activations/layer_{i}`` (hidden, on the probe; binned on the device), and for image data the
picture ``first_layer_weights`` (one tile per unit, as in Ng's ex4 displayData), at most
``max_pictures`` of them a run (see :func:`picture_epochs`).

At the end of testing: ``confusion_matrix`` and, for image data, ``misclassified`` (figures).
For 2-D data, ``decision_boundary/last`` (the last weights) at the end of fit and ``decision_boundary/tested``
after the test.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from matplotlib.figure import Figure
from torch.utils.tensorboard import SummaryWriter
from torchmetrics.functional import confusion_matrix
from torchvision.utils import make_grid

from nnmodel.core.network import FeedForward, distinct_units

DYING = ("relu", "leaky_relu", "step")  # units that can be off (a ≤ 0) for every input
ASYMPTOTES = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}  # where g'(z) → 0
SATURATION_MARGIN = 0.05  # sigmoid: a < 0.05 or a > 0.95 (g' < 0.19·max); tanh: |a| > 0.95 (g' < 0.10·max)
HISTOGRAM_BINS = 64


# ----------------------------------------------------------------------------- the measures


def grad_norms(net: FeedForward) -> torch.Tensor:
    """‖∂J/∂W^(l)‖₂ for every layer, shape (L−1,), on the device (0 where no gradient)."""
    return torch.stack(
        [w.grad.norm() if (w := layer.weight).grad is not None else w.new_zeros(()) for layer in net.layers]
    )


def dead_fraction(a: torch.Tensor) -> torch.Tensor:
    """Fraction of units whose activation is ≤ 0 on every example; a (m, s) → scalar."""
    return (a <= 0).all(dim=0).float().mean()


def saturated_fraction(a: torch.Tensor, activation: str) -> torch.Tensor:
    """Fraction of the m·s activations within SATURATION_MARGIN of an asymptote of g."""
    low, high = ASYMPTOTES[activation]
    return ((a < low + SATURATION_MARGIN) | (a > high - SATURATION_MARGIN)).float().mean()


def mean_cosine(weight: torch.Tensor) -> torch.Tensor:
    """Mean cosine similarity over the s(s−1) ordered pairs of distinct rows of W (s, n); 1 = all alike.

    Σ_{i≠j} ŵ_i·ŵ_j = ‖Σ_i ŵ_i‖² − Σ_i ‖ŵ_i‖²: O(s·n), without the (s, s) matrix of all pairs
    (which took 10 ms for 800 × 784 on one core).
    """
    s = weight.shape[0]
    if s < 2:
        return weight.new_ones(())
    w = F.normalize(weight.detach(), dim=1)  # (s, n), zero rows stay zero
    total = w.sum(dim=0).square().sum()  # ‖Σ_i ŵ_i‖²
    return (total - w.square().sum()) / (s * (s - 1))


def weight_tiles(weight: torch.Tensor, image_shape: tuple[int, int], max_tiles: int = 100) -> torch.Tensor:
    """The rows of W (s, h·w) as a grid of h×w tiles, each scaled to its own [min, max]: (H, W) in [0, 1]."""
    w = weight[:max_tiles].detach().float().cpu()  # (n, h·w)
    lo, hi = w.min(dim=1, keepdim=True).values, w.max(dim=1, keepdim=True).values
    w = (w - lo) / (hi - lo).clamp_min(1e-12)
    tiles = w.reshape(-1, 1, *image_shape)  # (n, 1, h, w)
    scale = max(1, 28 // max(image_shape))  # blow 8×8 digits up to 24×24, nearest neighbour
    tiles = tiles.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    return make_grid(tiles, nrow=math.ceil(math.sqrt(len(tiles))), padding=1, pad_value=1.0)[0]


def picture_epochs(max_epochs: int | None, every_n_epochs: int = 1, max_pictures: int = 10) -> range | None:
    """The epochs (1-based) that get a ``first_layer_weights`` picture; None: every ``every_n_epochs``.

    At most ``max_pictures``, evenly spaced over the epochs that get histograms, the last of them always.
    TensorBoard keeps 10 images a tag unless it is started with ``--samples_per_plugin images=N``, so more
    are written for nothing, and one costs tens of ms: torch's ``add_image`` encodes a grey picture as RGB
    PNG (784-pixel inputs, 100 tiles: 209 KB, 24 ms), and TensorBoard checksums it in pure Python (36 ms),
    in the writer's thread, which holds the GIL. ``max_pictures=0``, or a run without ``max_epochs``: every
    ``every_n_epochs``.
    """
    if max_pictures <= 0 or max_epochs is None or max_epochs < 1:
        return None
    candidates = max_epochs // every_n_epochs  # the epochs with histograms: every_n_epochs · 1, 2, .., candidates
    if candidates == 0:
        return range(0)
    stride = -(-candidates // max_pictures)  # in candidates; ceil: at most max_pictures
    first = candidates - (candidates - 1) // stride * stride  # counted back from the last
    return range(first * every_n_epochs, candidates * every_n_epochs + 1, stride * every_n_epochs)


# ----------------------------------------------------------------------------- cheap writers


@torch.no_grad()
def add_histogram(writer: SummaryWriter, tag: str, values: torch.Tensor, step: int, bins: int = HISTOGRAM_BINS) -> None:
    """``writer.add_histogram``, binned on the values' device with one sync instead of a numpy copy.

    (SummaryWriter's own takes ~10 ms for 512×128 activations.) ``scatter_add_``, not ``histc``:
    it stays allowed on CUDA under ``deterministic=True``.
    """
    v = values.detach().flatten().float()  # (n,)
    lo, hi = v.aminmax()
    flat = hi <= lo  # all values equal: give them a bin of width 1 around the value
    left, right = torch.where(flat, lo - 0.5, lo), torch.where(flat, hi + 0.5, hi)
    idx = ((v - left) / (right - left) * bins).long().clamp_(0, bins - 1)  # (n,) bin of each value
    counts = torch.zeros(bins, device=v.device).scatter_add_(0, idx, torch.ones_like(v))  # (bins,)
    stats = torch.cat([torch.stack([lo, hi, left, right, v.sum(), v.dot(v)]), counts]).cpu().tolist()
    lo, hi, left, right, total, sum_sq = stats[:6]
    edges = torch.linspace(left, right, bins + 1).tolist()  # TensorBoard's buckets: right edges, first one empty
    writer.add_histogram_raw(tag, lo, hi, v.numel(), total, sum_sq, edges, [0.0, *stats[6:]], step)


# ----------------------------------------------------------------------------- the figures


MAX_WRITTEN_CLASSES = 30  # above this, the confusion matrix is a heat map without counts or class names


def confusion_figure(cm: torch.Tensor, class_names: list[str]) -> Figure:
    """Counts cm[true, pred] as a heat map with class names on both axes; with more than
    :data:`MAX_WRITTEN_CLASSES` classes the heat map alone, at a fixed size (k² counts at a size that grows with k
    took a minute and megabytes for 200 classes)."""
    k = len(class_names)
    written = k <= MAX_WRITTEN_CLASSES
    size = min(k, MAX_WRITTEN_CLASSES)
    fig = Figure(figsize=(max(4.0, 0.45 * size + 1.5), max(3.5, 0.4 * size + 1.5)))
    ax = fig.add_subplot()
    ax.imshow(cm.numpy(), cmap="Blues")
    if written:
        half = float(cm.max()) / 2
        for (i, j), n in np.ndenumerate(cm.numpy()):
            ax.text(j, i, str(n), ha="center", va="center", fontsize=7, color="white" if n > half else "black")
        ax.set(xticks=range(k), yticks=range(k))
        ax.set_xticklabels(class_names, rotation=45, ha="right", fontsize=7)
        ax.set_yticklabels(class_names, fontsize=7)
    ax.set(xlabel="predicted" if written else f"predicted ({k} classes, in their order)", ylabel="true")
    acc = cm.diagonal().sum() / cm.sum().clamp_min(1)
    ax.set_title(f"test confusion matrix (accuracy {acc:.4f})", fontsize=9)
    fig.tight_layout()
    return fig


def misclassified_figure(
    x: torch.Tensor, y: torch.Tensor, pred: torch.Tensor, image_shape: tuple[int, int], class_names: list[str]
) -> Figure:
    """Up to 36 wrong test images x (m, h·w), each under its "true→pred" label.

    One image of tiles (torchvision's make_grid, a band above each tile for its label) on one axes: a grid
    of 36 matplotlib axes took 0.6 to 1.5 s to draw at every test, this 0.1 to 0.2 s (digits, interleaved).
    """
    wrong = (pred != y).nonzero().flatten()[:36]
    side = max(1, math.ceil(math.sqrt(len(wrong))))
    h, w = image_shape
    band = math.ceil(0.35 * h)  # rows above each tile for its label
    fig = Figure(figsize=(1.2 * side, 1.2 * side * (h + band + 1) / (w + 1)))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.axis("off")
    if len(wrong) == 0:
        fig.text(0.5, 0.5, "no misclassified test examples", ha="center")
        return fig
    images = x[wrong].float().reshape(-1, 1, h, w)  # (n, 1, h, w)
    lo, hi = float(images.min()), float(images.max())
    tiles = F.pad(images, (0, 0, band, 0), value=lo)  # (n, 1, band + h, w): the band is blank
    grid = make_grid(tiles, nrow=side, padding=1, pad_value=lo)[0]  # (H, W)
    ax.imshow(grid.numpy(), cmap="gray_r", vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="nearest")
    for k, i in enumerate(wrong.tolist()):
        row, col = divmod(k, side)
        left, top = 1 + col * (w + 1), 1 + row * (h + band + 1)  # the tile's cell, after make_grid's padding
        label = f"{class_names[y[i]]}→{class_names[pred[i]]}"
        ax.text(left + (w - 1) / 2, top + band - 0.6, label, ha="center", va="bottom", fontsize=7)
    return fig


@torch.no_grad()
def boundary_figure(net: FeedForward, x: torch.Tensor, y: torch.Tensor, title: str, n: int = 200) -> Figure:
    """Filled contours of the predicted class over the range of x (m, 2), with the points on top."""
    lo, hi = x.min(dim=0).values, x.max(dim=0).values
    pad = 0.1 * (hi - lo).clamp_min(1e-3)
    g0, g1 = (torch.linspace(lo[d] - pad[d], hi[d] + pad[d], n) for d in (0, 1))
    mesh = torch.stack(torch.meshgrid(g0, g1, indexing="xy"), dim=-1).reshape(-1, 2)  # (n², 2)
    weight = net.layers[0].weight
    z = net.predict(mesh.to(weight.device, weight.dtype)).reshape(n, n).cpu()  # (n, n) classes
    k = int(max(z.max(), y.max())) + 1
    fig = Figure(figsize=(4.5, 4))
    ax = fig.add_subplot()
    ax.contourf(
        g0.numpy(), g1.numpy(), z.numpy(), levels=torch.arange(k + 1).sub(0.5).tolist(), cmap="coolwarm", alpha=0.35
    )
    ax.scatter(
        x[:1000, 0], x[:1000, 1], c=y[:1000], cmap="coolwarm", vmin=0, vmax=k - 1, s=12, edgecolors="k", linewidths=0.3
    )
    ax.set(xlabel="x₁", ylabel="x₂", title=title)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- the callback


class DiagnosticsCallback(L.Callback):
    """Writes the diagnostics above to the TensorBoard logger's SummaryWriter (rank zero only).

    Args:
        datamodule: a :class:`~nnmodel.data.TensorDataModule`: its splits feed the probe batch and
            the test figures; ``image_shape`` and ``n_features`` decide which pictures apply.
        every_n_steps: sample the scalars every N optimizer steps (step 0 included).
        every_n_epochs: histograms and the weight picture every N epochs.
        probe_size: at most this many validation examples in the probe batch.
        histograms: write the histograms.
        images: write the pictures and figures.
        max_tiles: at most this many first-layer units in ``first_layer_weights``.
        max_pictures: at most this many ``first_layer_weights`` pictures a run (:func:`picture_epochs`).
    """

    def __init__(
        self,
        datamodule: L.LightningDataModule,
        every_n_steps: int = 50,
        every_n_epochs: int = 1,
        probe_size: int = 256,
        histograms: bool = True,
        images: bool = True,
        max_tiles: int = 100,
        max_pictures: int = 10,
    ) -> None:
        self.dm = datamodule
        self.every_n_steps, self.every_n_epochs = every_n_steps, every_n_epochs
        self.probe_size, self.histograms, self.images, self.max_tiles = probe_size, histograms, images, max_tiles
        self.max_pictures = max_pictures
        self.pictures: range | None = None  # the epochs that get first_layer_weights (None: all), set at fit start
        self.probe: torch.Tensor | None = None  # (≤ probe_size, n_features) on the model's device
        # What result.json keeps of the samples (see summary()); in checkpoints, so a resumed run goes on
        self.record: dict[str, Any] = {"samples": 0, "grad_norm_sum": [], "last": {}}

    @staticmethod
    def _writer(trainer: L.Trainer) -> SummaryWriter | None:
        if not trainer.is_global_zero:
            return None
        return next((lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        x = self.dm.split("val")[0]
        x = x if len(x) else self.dm.split("train")[0]
        self.probe = x[: self.probe_size].to(pl_module.device, pl_module.net.layers[0].weight.dtype)
        self.pictures = picture_epochs(trainer.max_epochs, self.every_n_epochs, self.max_pictures)

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        if trainer.global_step % self.every_n_steps:
            return  # the whole per-step cost
        writer = self._writer(trainer)
        if writer is not None and self.probe is not None:
            self._log_step(writer, pl_module.net, trainer.global_step)

    @torch.no_grad()
    def _log_step(self, writer: SummaryWriter, net: FeedForward, step: int) -> None:
        tags = [f"grad_norm/layer_{i}" for i in range(1, len(net.layers) + 1)]
        values = [grad_norms(net)]
        hidden = net.trace(self.probe).a[1:-1]  # a^(2) .. a^(L−1), each (m, s_l)
        for i, (g, a, layer) in enumerate(zip(net.activations, hidden, net.layers), start=1):
            if g.name in DYING:
                tags.append(f"dead_fraction/layer_{i}")
                values.append(dead_fraction(a)[None])
            elif g.name in ASYMPTOTES:
                tags.append(f"saturated_fraction/layer_{i}")
                values.append(saturated_fraction(a, g.name)[None])
            tags.append(f"mean_cosine/layer_{i}")
            values.append(mean_cosine(layer.weight)[None])
        numbers = dict(zip(tags, torch.cat(values).cpu().tolist()))  # one device sync
        for i, layer in enumerate(net.layers[: len(hidden)], start=1):
            numbers[f"distinct_units/layer_{i}"] = distinct_units(layer)
        for tag, value in numbers.items():
            writer.add_scalar(tag, value, step)
        self._remember(numbers, len(net.layers))

    def _remember(self, numbers: dict[str, float], n_layers: int) -> None:
        """Keep the running sums and last values that :meth:`summary` needs."""
        sums = self.record["grad_norm_sum"] or [0.0] * n_layers
        self.record["grad_norm_sum"] = [s + numbers[f"grad_norm/layer_{i}"] for i, s in enumerate(sums, start=1)]
        self.record["samples"] += 1
        self.record["last"] = {k: v for k, v in numbers.items() if not k.startswith("grad_norm/")}

    def summary(self) -> dict[str, float]:
        """The run's diagnostics in four numbers, for result.json and sweep reports ({} before any sample):

        grad_ratio          mean ‖∂J/∂W^(1)‖ ÷ mean ‖∂J/∂W^(L)‖ over the samples: ≪ 1 means vanishing gradients
        distinct_units      the fewest distinct units in any hidden layer at the last sample: 1 = symmetry
        dead_fraction       relu/step units never on at the last sample, mean over those hidden layers
        saturated_fraction  sigmoid/tanh activations near an asymptote at the last sample, mean over those layers
        """
        out: dict[str, float] = {}
        sums, last = self.record["grad_norm_sum"], self.record["last"]
        if sums and sums[-1] > 0 and all(math.isfinite(s) for s in (sums[0], sums[-1])):
            out["grad_ratio"] = sums[0] / sums[-1]
        for name in ("distinct_units", "dead_fraction", "saturated_fraction"):
            values = [v for k, v in last.items() if k.startswith(f"{name}/")]
            if values:
                out[name] = min(values) if name == "distinct_units" else sum(values) / len(values)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"record": self.record}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.record = state_dict.get("record", self.record)

    @torch.no_grad()
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writer = self._writer(trainer)
        if writer is None or (trainer.current_epoch + 1) % self.every_n_epochs or self.probe is None:
            return
        net, step = pl_module.net, trainer.global_step
        if self.histograms:
            for i, layer in enumerate(net.layers, start=1):
                add_histogram(writer, f"weights/layer_{i}", layer.weight, step)
                add_histogram(writer, f"biases/layer_{i}", layer.bias, step)
            for i, a in enumerate(net.trace(self.probe).a[1:-1], start=1):
                add_histogram(writer, f"activations/layer_{i}", a, step)
        picture = self.pictures is None or trainer.current_epoch + 1 in self.pictures
        if self.images and self.dm.image_shape is not None and picture:
            tiles = weight_tiles(net.layers[0].weight, self.dm.image_shape, self.max_tiles)
            writer.add_image("first_layer_weights", tiles, step, dataformats="HW")

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writer = self._writer(trainer)
        if writer is not None and self.images and self.dm.n_features == 2:
            x, y = self.dm.split("train")
            title = f"decision boundary after epoch {trainer.current_epoch}"
            # two tags: the last weights here, the tested (best) ones after testing, both at the last step
            figure = boundary_figure(pl_module.net, x, y, title)
            writer.add_figure("decision_boundary/last", figure, trainer.global_step)

    @torch.no_grad()
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writer = self._writer(trainer)
        if writer is None or not self.images:
            return
        # at the run's last step (eval_only: the checkpoint's, NNModule.steps_before)
        net, names = pl_module.net, self.dm.class_names
        step = getattr(pl_module, "steps_before", 0) + trainer.global_step
        x, y = self.dm.split("test")
        pred = net.predict(x.to(pl_module.device, net.layers[0].weight.dtype)).cpu()  # (m,)
        cm = confusion_matrix(pred, y, task="multiclass", num_classes=len(names))  # (K, K), rows = true
        writer.add_figure("confusion_matrix", confusion_figure(cm, names), step)
        if self.dm.image_shape is not None:
            writer.add_figure("misclassified", misclassified_figure(x, y, pred, self.dm.image_shape, names), step)
        if self.dm.n_features == 2:
            x_train, y_train = self.dm.split("train")
            writer.add_figure(
                "decision_boundary/tested",
                boundary_figure(net, x_train, y_train, "decision boundary (tested model)"),
                step,
            )
        writer.flush()


def diagnostics_callbacks(cfg: dict[str, Any], datamodule: L.LightningDataModule) -> list[L.Callback]:
    """The callbacks for the ``diagnostics`` config group (checked by nnmodel.validate): ``[]`` when off."""
    cfg = dict(cfg)
    return [DiagnosticsCallback(datamodule, **cfg)] if cfg.pop("enabled", True) else []
