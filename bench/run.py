"""How fast nnmodel trains small networks, side by side with the alternatives, in one run.

    python bench/run.py                 # the full table, MNIST-sized data (~6 minutes on 2 cores)
    python bench/run.py --quick         # under 2 minutes
    python bench/run.py --tiny          # seconds: what tests/test_bench.py runs

Every comparison runs both sides in the same process, interleaved (A B, B A, A B, ...) after a
warm-up, and reports medians, so a noisy shared machine slows both sides alike. Each side is timed
twice: wall clock (the headline ratios) and the process's CPU time (`ratio_cpu`, which time spent
waiting for a core shared with other jobs does not inflate).

    R1  nnmodel fit (build_trainer exactly as `train.py` builds it: TensorBoard, checkpoints, LR
        monitor, progress bar, diagnostics where configured) ÷ a bare PyTorch loop (same network,
        data, batch, optimizer; shuffled index batching; a validation pass per epoch, as fit does),
        in samples/s
    R2  scikit-learn MLPClassifier's training time ÷ nnmodel's (>1: nnmodel is faster), and the
        test accuracy each reaches, on 8x8 digits and on MNIST-shaped data; a bare PyTorch loop is
        timed against scikit-learn too (`bare_ratio`: the ceiling for any framework on top of torch)
    R3  nnmodel's data path (TensorBatches) ÷ torchvision MNIST + ToTensor + DataLoader, samples/s
    R4  model.backprop=manual ÷ autograd, samples/s through fit
    overhead_us  (t_nnmodel − t_bare) / training steps: what the framework adds to each step

The MNIST-shaped data is synthetic (no download): written as IDX files to a temporary directory
and read back through `data=mnist`, so the real loading path runs too.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import lightning as L  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import DictConfig  # noqa: E402
from torch import nn  # noqa: E402

from nnmodel.data import TensorDataModule, write_idx  # noqa: E402
from nnmodel.module import NNModule  # noqa: E402
from nnmodel.training import build_datamodule, build_module, build_trainer  # noqa: E402

GOALS = {  # measure -> minimum ratio (issue #5)
    "R1 784-800-10 b128": 0.85,
    "R1 784-100-10 b128": 0.70,
    "R2 mnist_like": 1.0,
    "R2 digits": 1 / 1.5,
    "R3": 10.0,
    "R4 784-800-10 b128": 1.0,
    "R4 784-100-10 b128": 1.0,
}


@dataclass(frozen=True)
class Settings:
    n_train: int  # MNIST-shaped training images written (10% become the val split, as data=mnist does)
    n_test: int
    epochs: int  # R1/R4 epochs per timed fit
    repeats: int  # timed runs per side (medians over these)
    r2_epochs: int  # R2 epochs (both libraries)
    r2_repeats: int
    r3_samples: int  # samples drawn per R3 measurement
    widths: tuple[int, ...]  # R1/R4 hidden sizes
    batches: tuple[int, ...]  # R1 batch sizes (R4 uses the first)


# configs/diagnostics/off.yaml, where that group exists: R1 is also measured without diagnostics
DIAGNOSTICS_OFF = ("diagnostics=off",) if (ROOT / "configs" / "diagnostics" / "off.yaml").is_file() else None
# --breakdown: the defaults taken away one group at a time, each level keeping the previous removals
BREAKDOWN = (
    ("train.py defaults", ""),
    ("diagnostics off", "diagnostics"),
    ("progress bar off", "bar"),
    ("other callbacks off", "callbacks"),
    ("checkpoints off", "checkpoints"),
    ("TensorBoard logger off", "logger"),
    ("no metrics or self.log: Lightning alone", "logging"),
)
BARE_LABEL = "bare PyTorch loop (its group: Lightning's own loop)"
CALLBACK_GROUPS = {  # class name -> breakdown group; any other callback is in "callbacks"
    "DiagnosticsCallback": "diagnostics",
    "TQDMProgressBar": "bar",
    "RichProgressBar": "bar",
    "ModelCheckpoint": "checkpoints",
    "InitialCheckpoint": "checkpoints",
    "InterruptCheckpoint": "checkpoints",
}

R2_CASES = (("digits", "digits", 64), ("mnist_like", "mnist", 128))  # name, data=, batch (as configs/data/)

MODES = {
    # full: MNIST's own size (60,000 training and 10,000 test images), so a fit's fixed costs (trainer
    # set-up, the first checkpoint, the sanity check) weigh on the ratios as much as they do in real use
    "full": Settings(60_000, 10_000, 3, 3, 20, 3, 20_000, (800, 100), (128, 64)),
    "quick": Settings(20_000, 2_000, 2, 3, 8, 2, 10_000, (800, 100), (128,)),
    "tiny": Settings(1_000, 300, 1, 1, 2, 1, 1_000, (100,), (128,)),
}


# ----------------------------------------------------------------------------- data and configs


def write_mnist_like(root: Path, n_train: int, n_test: int, seed: int = 0) -> None:
    """MNIST-format IDX files: each class a smooth random template, faint under uniform pixel noise and
    shifted by up to 3 pixels, so a 784-128-10 MLP reaches about 90-96% in a few epochs, not 100%."""
    rng = np.random.default_rng(seed)
    templates = np.kron(rng.random((10, 7, 7)), np.ones((4, 4)))  # (10, 28, 28), values in [0, 1]
    for split, n in (("train", n_train), ("t10k", n_test)):
        y = rng.permutation(np.arange(n) % 10).astype(np.uint8)
        x = templates[y] * 0.4 + rng.random((n, 28, 28))  # (n, 28, 28)
        shifts = rng.integers(-3, 4, (n, 2))
        for s in np.unique(shifts, axis=0):  # one roll per distinct shift, not per image
            rows = np.all(shifts == s, axis=1)
            x[rows] = np.roll(x[rows], tuple(s), axis=(1, 2))
        images = np.clip(x / 1.4 * 255, 0, 255).astype(np.uint8)
        write_idx(root / "MNIST" / "raw" / f"{split}-images-idx3-ubyte", images)
        write_idx(root / "MNIST" / "raw" / f"{split}-labels-idx1-ubyte", y)


def compose_config(overrides: list[str], run_dir: Path) -> DictConfig:
    """The config `python train.py OVERRIDES` runs (composed as tests/conftest.py does, but with the
    default progress bar left on)."""
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose("train", overrides=[*overrides, f"paths.output_dir={run_dir}"])


# ----------------------------------------------------------------------------- timing


class Timing(NamedTuple):
    wall: float  # seconds, wall clock
    cpu: float  # seconds of CPU time of this process (all its threads)


@contextlib.contextmanager
def timed(out: list[Timing]) -> Iterator[None]:
    """Time the block; on a CUDA machine it ends when the queued GPU work does, not when it is queued."""
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    if torch.cuda.is_initialized():  # only a process that has used CUDA has work queued there
        torch.cuda.synchronize()
    out.append(Timing(time.perf_counter() - wall, time.process_time() - cpu))


def medians(times: list[Timing]) -> Timing:
    return Timing(float(statistics.median(t.wall for t in times)), float(statistics.median(t.cpu for t in times)))


def interleaved(sides: dict[str, Callable[[], Timing]], repeats: int) -> dict[str, list[Timing]]:
    """Time each side `repeats` times, alternating the order every round (A B, B A, ...)."""
    names = list(sides)
    out: dict[str, list[Timing]] = {n: [] for n in names}
    for r in range(repeats):
        for n in names if r % 2 == 0 else names[::-1]:
            out[n].append(sides[n]())
    return out


def compare(times: dict[str, list[Timing]], ours: str, theirs: str, work: float, unit: str) -> dict[str, Any]:
    """Ratio their_time / our_time (wall and CPU) and our/their rates for `work` units (samples)."""
    a, b = medians(times[ours]), medians(times[theirs])
    return {
        "ratio": b.wall / a.wall,
        "ratio_cpu": b.cpu / a.cpu,
        f"{ours}_{unit}": work / a.wall,
        f"{theirs}_{unit}": work / b.wall,
        f"{ours}_s": [round(t.wall, 4) for t in times[ours]],
        f"{theirs}_s": [round(t.wall, 4) for t in times[theirs]],
        f"{ours}_cpu_s": [round(t.cpu, 4) for t in times[ours]],
        f"{theirs}_cpu_s": [round(t.cpu, 4) for t in times[theirs]],
    }


def with_no_diagnostics(out: dict[str, Any], plain: dict[str, Any]) -> None:
    """Add the diagnostics=off comparison to ``out``: its ratios get the suffix ``_no_diagnostics``."""
    out |= {f"{k}_no_diagnostics" if k.startswith("ratio") else k: v for k, v in plain.items()}


@contextlib.contextmanager
def quiet(show: bool) -> Iterator[None]:
    """Send the progress bar (Lightning's tqdm writes to stdout) to /dev/null unless --show-progress.

    tqdm still formats every refresh, so its cost is measured; only the terminal's drawing is not.
    """
    if show:
        yield
        return
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull), contextlib.redirect_stderr(devnull):
        yield


@contextlib.contextmanager
def as_without_lightning() -> Iterator[None]:
    """The environment of a plain PyTorch script, which never imported Lightning.

    `import lightning` sets PYTORCH_NVML_BASED_CUDA_CHECK=1 for the whole process; on a CUDA build of
    torch with no GPU, every Adam/RMSprop/... step then asks NVML (a dlopen) whether CUDA is
    available, ~50 us per step. nnmodel's optimizers skip that check for CPU parameters; a bare loop in
    its own process would never pay it, so the bare side here runs without the variable.
    """
    key = "PYTORCH_NVML_BASED_CUDA_CHECK"
    saved = os.environ.pop(key, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[key] = saved


# ----------------------------------------------------------------------------- the measurements


class _Unlogged(NNModule):
    """NNModule without its epoch metrics and self.log calls: what Lightning's loop alone costs."""

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return self.loss(self.net(x), y)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.loss(self.net(x), y)


def strip(trainer: L.Trainer, module: NNModule, removed: set[str]) -> None:
    """Take the `removed` breakdown groups out of a trainer built by build_trainer, before fit."""
    group = lambda cb: CALLBACK_GROUPS.get(type(cb).__name__, "callbacks")
    trainer.callbacks = [cb for cb in trainer.callbacks if group(cb) not in removed]
    if "logger" in removed:
        trainer.logger = None
    if "logging" in removed:
        module.__class__ = _Unlogged


class Bench:
    def __init__(self, args: argparse.Namespace, settings: Settings, tmp: Path) -> None:
        self.args, self.s, self.tmp = args, settings, tmp
        self.data_root = tmp / "data"
        self.runs = 0
        self._dms: dict[tuple[str, int], TensorDataModule] = {}
        self.device = torch.device("cpu")  # where the bare loop trains (bench/gpu.py: the GPU)
        # the extra diagnostics=off sides of R1 and R4, unless skipped or the group does not exist
        self.no_diagnostics = None if args.skip_no_diagnostics else DIAGNOSTICS_OFF

    def cfg(
        self, data: str, hidden: int, batch: int, epochs: int, backprop: str = "autograd", extra: tuple[str, ...] = ()
    ) -> DictConfig:
        self.runs += 1
        overrides = [
            *extra,
            f"data={data}",
            f"data.batch_size={batch}",
            f"model.hidden=[{hidden}]",
            f"model.backprop={backprop}",
            f"trainer.max_epochs={epochs}",
            "test=false",
        ]
        if data == "mnist":
            overrides.append(f"paths.data_dir={self.data_root}")
        return compose_config(overrides, self.tmp / f"run{self.runs}")

    def datamodule(self, cfg: DictConfig) -> TensorDataModule:
        """Loaded once per (data, batch) and reused: both sides get the data as ready tensors."""
        key = (cfg.data.name, cfg.data.batch_size)
        if key not in self._dms:
            dm = build_datamodule(cfg)
            dm.prepare_data()
            dm.setup("fit")
            self._dms[key] = dm
        return self._dms[key]

    def n_train(self, data: str, batch: int) -> int:
        return len(self.datamodule(self.cfg(data, 100, batch, 1)).splits["train"][1])

    # ------------------------------------------------------------------------- the two training loops

    def nnmodel_fit(self, cfg: DictConfig, removed: set[str] = frozenset()) -> tuple[Timing, NNModule]:
        """build_trainer + fit, timed: validation each epoch, checkpoints, logging, progress bar.

        `removed`: breakdown groups taken out of the trainer first (see BREAKDOWN); none by default.
        """
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        dm = self.datamodule(cfg)
        module = build_module(cfg, dm)
        run_dir = Path(cfg.paths.output_dir)
        # with the datamodule where build_trainer takes one: what train.py builds (diagnostics included)
        takes_dm = "dm" in inspect.signature(build_trainer).parameters
        times: list[Timing] = []
        with quiet(self.args.show_progress), timed(times):
            trainer = build_trainer(cfg, run_dir, dm) if takes_dm else build_trainer(cfg, run_dir)
            strip(trainer, module, set(removed))
            trainer.fit(module, datamodule=dm)
        return times[0], module

    def bare_fit(self, cfg: DictConfig) -> tuple[Timing, nn.Module]:
        """The same training in plain PyTorch: nn.Sequential, randperm batches, one val pass per epoch.

        On ``self.device``, with the data moved there before the clock starts, as nnmodel keeps it.
        """
        device = self.device
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        dm = self.datamodule(cfg)
        ref = build_module(cfg, dm)  # only for the initial weights and the optimizer nnmodel would build
        model = nn.Sequential(ref.net.layers[0], nn.ReLU(), ref.net.layers[1]).to(device)
        opt_ref = ref.configure_optimizers()
        opt_ref = opt_ref["optimizer"] if isinstance(opt_ref, dict) else opt_ref
        x, y = (t.to(device) for t in dm.splits["train"])
        xv, yv = (t.to(device) for t in dm.splits["val"])
        batch, epochs = cfg.data.batch_size, cfg.trainer.max_epochs
        times: list[Timing] = []
        with as_without_lightning(), timed(times):
            opt = type(opt_ref)(model.parameters(), **opt_ref.defaults)  # Adam, fused, as nnmodel picks it
            for _ in range(epochs):
                model.train()
                perm = torch.randperm(len(x), device=device)
                for i in range(0, len(x), batch):
                    idx = perm[i : i + batch]
                    xb, yb = x.index_select(0, idx), y.index_select(0, idx)
                    opt.zero_grad(set_to_none=True)
                    loss = F.cross_entropy(model(xb), yb)
                    loss.backward()
                    opt.step()
                model.eval()
                with torch.no_grad():  # summed on the device, read once an epoch, as nnmodel's metrics are
                    correct, total_loss = torch.zeros((), device=device), torch.zeros((), device=device)
                    for i in range(0, len(xv), batch):
                        z = model(xv[i : i + batch])
                        total_loss += F.cross_entropy(z, yv[i : i + batch], reduction="sum")
                        correct += (z.argmax(1) == yv[i : i + batch]).sum()
                    total_loss.item(), correct.item()
        return times[0], model

    # ------------------------------------------------------------------------- R1, R4, overhead

    def r1(self) -> tuple[dict[str, Any], dict[str, float]]:
        s, out, overhead = self.s, {}, {}
        for hidden in s.widths:
            for batch in s.batches:
                key = f"784-{hidden}-10 b{batch}"
                n = self.n_train("mnist", batch)
                steps = -(-n // batch) * s.epochs
                sides = {
                    "nnmodel": lambda h=hidden, b=batch: self.nnmodel_fit(self.cfg("mnist", h, b, s.epochs))[0],
                    "bare": lambda h=hidden, b=batch: self.bare_fit(self.cfg("mnist", h, b, s.epochs))[0],
                }
                if self.no_diagnostics:
                    sides["no_diagnostics"] = lambda h=hidden, b=batch: self.nnmodel_fit(
                        self.cfg("mnist", h, b, s.epochs, extra=self.no_diagnostics)
                    )[0]
                times = interleaved(sides, s.repeats)
                out[key] = compare(times, "nnmodel", "bare", n * s.epochs, "samples_per_s") | {"steps": steps}
                t_nn, t_bare = medians(times["nnmodel"]), medians(times["bare"])
                overhead[key] = (t_nn.wall - t_bare.wall) / steps * 1e6
                out[key]["overhead_cpu_us"] = (t_nn.cpu - t_bare.cpu) / steps * 1e6
                if "no_diagnostics" in times:
                    plain = compare(times, "no_diagnostics", "bare", n * s.epochs, "samples_per_s")
                    with_no_diagnostics(out[key], plain)
                    t_plain = medians(times["no_diagnostics"])
                    out[key]["overhead_us_no_diagnostics"] = (t_plain.wall - t_bare.wall) / steps * 1e6
                self.log(f"R1 {key}: {out[key]['ratio']:.3f} (cpu {out[key]['ratio_cpu']:.3f})")
        return out, overhead

    def r4(self) -> dict[str, Any]:
        s, out = self.s, {}
        batch = s.batches[0]
        configs = {"": ()}
        if self.no_diagnostics:
            configs["_no_diagnostics"] = self.no_diagnostics
        for hidden in s.widths:
            key = f"784-{hidden}-10 b{batch}"
            n = self.n_train("mnist", batch)
            sides = {
                f"{mode}{suffix}": lambda h=hidden, m=mode, e=extra: self.nnmodel_fit(
                    self.cfg("mnist", h, batch, s.epochs, m, extra=e)
                )[0]
                for suffix, extra in configs.items()
                for mode in ("manual", "autograd")
            }
            times = interleaved(sides, s.repeats)
            out[key] = compare(times, "manual", "autograd", n * s.epochs, "samples_per_s")
            if "manual_no_diagnostics" in times:
                work = n * s.epochs
                with_no_diagnostics(
                    out[key], compare(times, "manual_no_diagnostics", "autograd_no_diagnostics", work, "samples_per_s")
                )
            self.log(f"R4 {key}: {out[key]['ratio']:.3f} (cpu {out[key]['ratio_cpu']:.3f})")
        return out

    def breakdown(self) -> dict[str, Any]:
        """Per-step cost of each default: the levels of BREAKDOWN (each removes one more group) and the
        bare loop, interleaved, for R1's two networks at batch 128 and R2's digits run; CPU µs per step."""
        s, out = self.s, {}
        cases = (("mnist", 100, 128, s.epochs), ("mnist", 800, 128, s.epochs), ("digits", 128, 64, s.r2_epochs))
        for data, hidden, batch, epochs in cases:
            n = self.n_train(data, batch)
            key = f"{'784' if data == 'mnist' else data + ' 64'}-{hidden}-10 b{batch}"
            steps = -(-n // batch) * epochs
            sides: dict[str, Callable[[], Timing]] = {}
            removed: set[str] = set()
            for label, group in BREAKDOWN:
                removed = removed | {group} if group else removed
                sides[label] = lambda d=data, h=hidden, b=batch, e=epochs, r=frozenset(removed): self.nnmodel_fit(
                    self.cfg(d, h, b, e), r
                )[0]
            sides[BARE_LABEL] = lambda d=data, h=hidden, b=batch, e=epochs: self.bare_fit(self.cfg(d, h, b, e))[0]
            times = interleaved(sides, s.repeats)
            bare = medians(times[BARE_LABEL])
            rows, previous = [], None
            for label in sides:
                t = medians(times[label])
                rows.append(
                    {
                        "level": label,
                        "wall_s": t.wall,
                        "cpu_s": t.cpu,
                        "ratio": bare.wall / t.wall,
                        "ratio_cpu": bare.cpu / t.cpu,
                        "cpu_us_per_step_above_bare": (t.cpu - bare.cpu) / steps * 1e6,
                        "cpu_us_per_step_of_this_group": None if previous is None else (previous - t.cpu) / steps * 1e6,
                    }
                )
                previous = t.cpu
            out[key] = {"steps": steps, "levels": rows}
            for row in rows:
                group = row["cpu_us_per_step_of_this_group"]
                self.log(
                    f"{key} {row['level']:42s} ratio {row['ratio']:.2f} (cpu {row['ratio_cpu']:.2f})"
                    + ("" if group is None else f"  this group: {group:6.0f} µs/step")
                )
        return out

    # ------------------------------------------------------------------------- R2

    def r2(self) -> dict[str, Any]:
        return {name: self.r2_case(name, data, batch) for name, data, batch in R2_CASES}

    def r2_case(self, name: str, data: str, batch: int) -> dict[str, Any]:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier

        s, hidden = self.s, 128  # configs/model/mlp.yaml's hidden: [128]
        cfg0 = self.cfg(data, hidden, batch, s.r2_epochs)
        dm = self.datamodule(cfg0)
        (x, y), (xt, yt) = dm.splits["train"], dm.splits["test"]
        acc: dict[str, float] = {}

        def nnmodel_side() -> Timing:
            timing, module = self.nnmodel_fit(self.cfg(data, hidden, batch, s.r2_epochs))
            with torch.no_grad():
                acc["nnmodel"] = float((module.net(xt).argmax(1) == yt).float().mean())  # the last epoch's model
            return timing

        def sklearn_side() -> Timing:
            clf = MLPClassifier(
                hidden_layer_sizes=(hidden,),
                activation="relu",
                solver="adam",
                alpha=0.0,  # nnmodel's model.l2 = 0
                batch_size=batch,
                learning_rate_init=float(cfg0.optimizer.lr),
                max_iter=s.r2_epochs,
                tol=0.0,
                n_iter_no_change=10**9,  # with tol=0: never stop early, run every epoch
                shuffle=True,
                random_state=0,
            )
            times: list[Timing] = []
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                with timed(times):
                    clf.fit(x.numpy(), y.numpy())  # float32: scikit-learn keeps it (no float64 copy)
            acc["sklearn"] = float((clf.predict(xt.numpy()) == yt.numpy()).mean())
            return times[0]

        def bare_side() -> Timing:  # the limit: a plain PyTorch loop, the same network, data and epochs
            timing, model = self.bare_fit(self.cfg(data, hidden, batch, s.r2_epochs))
            with torch.no_grad():
                acc["bare"] = float((model(xt).argmax(1) == yt).float().mean())
            return timing

        sides = {"nnmodel": nnmodel_side, "sklearn": sklearn_side, "bare": bare_side}
        times = interleaved(sides, s.r2_repeats)
        t_nn, t_sk, t_bare = medians(times["nnmodel"]), medians(times["sklearn"]), medians(times["bare"])
        out = {
            "ratio": t_sk.wall / t_nn.wall,
            "ratio_cpu": t_sk.cpu / t_nn.cpu,
            "bare_ratio": t_sk.wall / t_bare.wall,  # how fast a loop without any framework gets: R2's ceiling
            "nnmodel_s": t_nn.wall,
            "sklearn_s": t_sk.wall,
            "bare_s": t_bare.wall,
            "bare_acc": acc["bare"],
            "nnmodel_acc": acc["nnmodel"],
            "sklearn_acc": acc["sklearn"],
            "network": f"{x.shape[1]}-{hidden}-10",
            "batch": batch,
            "epochs": s.r2_epochs,
            "n_train": len(y),
            "nnmodel_all_s": [round(t.wall, 4) for t in times["nnmodel"]],
            "sklearn_all_s": [round(t.wall, 4) for t in times["sklearn"]],
        }
        self.log(f"R2 {name}: {out['ratio']:.3f} acc {acc['nnmodel']:.4f} vs {acc['sklearn']:.4f}")
        return out

    # ------------------------------------------------------------------------- R3

    def r3(self) -> dict[str, Any]:
        import torchvision
        from torch.utils.data import DataLoader

        batch = 128
        dm = self.datamodule(self.cfg("mnist", 100, batch, 1))
        tv = torchvision.datasets.MNIST(
            str(self.data_root), train=True, download=False, transform=torchvision.transforms.ToTensor()
        )
        loaders = {"nnmodel": dm.train_dataloader(), "torchvision": DataLoader(tv, batch_size=batch, shuffle=True)}
        want = self.s.r3_samples
        delivered: dict[str, int] = {}

        def drain(name: str) -> Timing:
            n, times = 0, []
            with timed(times):
                while n < want:
                    for x, y in loaders[name]:
                        x = x.reshape(len(x), -1)  # (B, 784), as the network takes it
                        n += len(y)
                        if n >= want:
                            break
            delivered[name] = n
            return times[0]

        drain("nnmodel"), drain("torchvision")  # warm-up
        times = interleaved({"nnmodel": lambda: drain("nnmodel"), "torchvision": lambda: drain("torchvision")}, 3)
        out = compare(times, "nnmodel", "torchvision", want, "samples_per_s")
        self.log(f"R3: {out['ratio']:.1f}")
        return out | {"batch": batch, "samples": delivered}

    def warm_up(self) -> None:
        """One short fit of each kind, so imports, allocator and caches are warm before timing."""
        hidden, batch = self.s.widths[-1], self.s.batches[0]
        for backprop in ("autograd", "manual"):
            self.nnmodel_fit(self.cfg("mnist", hidden, batch, 1, backprop))
        self.bare_fit(self.cfg("mnist", hidden, batch, 1))

    def log(self, line: str) -> None:
        if not self.args.silent:
            print(f"  {line}", flush=True)


# ----------------------------------------------------------------------------- report


def table(results: dict[str, Any]) -> str:
    """The results as a markdown table: one row per measure, ratio > 1 means nnmodel is faster."""
    rows = [("measure", "nnmodel", "other", "ratio", "ratio (CPU time)", "goal")]

    def goal(key: str, ratio: float) -> str:
        if key not in GOALS:
            return ""
        return f"≥ {GOALS[key]:.2f} {'✓' if ratio >= GOALS[key] else '✗'}"

    def rates(r: dict[str, Any], ours: str, theirs: str, digits: int = 2, suffix: str = "") -> tuple[str, ...]:
        ratios = (f"{r['ratio' + suffix]:.{digits}f}", f"{r['ratio_cpu' + suffix]:.{digits}f}")
        return (f"{r[f'{ours}_samples_per_s']:,.0f}/s", f"{r[f'{theirs}_samples_per_s']:,.0f}/s", *ratios)

    off = "_no_diagnostics"
    for key, r in results.get("R1", {}).items():
        rows.append((f"R1 {key} vs bare PyTorch", *rates(r, "nnmodel", "bare"), goal(f"R1 {key}", r["ratio"])))
        if "ratio" + off in r:
            rows.append((f"R1 {key}, diagnostics=off", *rates(r, "no_diagnostics", "bare", suffix=off), ""))
    for key, r in results.get("R2", {}).items():
        row = (
            f"{r['nnmodel_s']:.2f} s, acc {r['nnmodel_acc']:.3f}",
            f"{r['sklearn_s']:.2f} s, acc {r['sklearn_acc']:.3f}",
            f"{r['ratio']:.2f}",
            f"{r['ratio_cpu']:.2f}",
        )
        rows.append((f"R2 {key} {r['network']} b{r['batch']} vs scikit-learn", *row, goal(f"R2 {key}", r["ratio"])))
        if "bare_ratio" in r:
            bare = f"{r['bare_s']:.2f} s, acc {r['bare_acc']:.3f}"
            rows.append(
                (f"R2 {key}: bare PyTorch loop vs scikit-learn", bare, row[1], f"{r['bare_ratio']:.2f}", "", "")
            )
    if "R3" in results:
        r = results["R3"]
        row = rates(r, "nnmodel", "torchvision", digits=0)
        rows.append(("R3 data path vs torchvision DataLoader", *row, goal("R3", r["ratio"])))
    for key, r in results.get("R4", {}).items():
        row = rates(r, "manual", "autograd")
        rows.append((f"R4 {key} manual vs autograd backprop", *row, goal(f"R4 {key}", r["ratio"])))
        if "ratio" + off in r:
            row = rates(r, "manual" + off, "autograd" + off, suffix=off)
            rows.append((f"R4 {key}, diagnostics=off", *row, ""))
    for key, us in results.get("overhead_us", {}).items():
        cpu = results["R1"][key]["overhead_cpu_us"]
        rows.append((f"framework overhead per step, {key}", f"{us:.0f} µs", "", "", f"{cpu:.0f} µs", ""))
        if "overhead_us" + off in results["R1"][key]:
            us_off = results["R1"][key]["overhead_us" + off]
            rows.append((f"framework overhead per step, {key}, diagnostics=off", f"{us_off:.0f} µs", "", "", "", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for i, row in enumerate(rows):
        cells = [c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))]
        lines.append("| " + " | ".join(cells) + " |")
        if i == 0:  # the header's rule: first column left-aligned, the numbers right-aligned
            rule = ["-" * (w + 2) if j == 0 else "-" * (w + 1) + ":" for j, w in enumerate(widths)]
            lines.append("|" + "|".join(rule) + "|")
    return "\n".join(lines)


def breakdown_table(breakdown: dict[str, Any]) -> str:
    """--breakdown as a markdown table: per network, each level's ratio and the CPU µs/step its group costs."""
    nets = list(breakdown)
    lines = [
        "| level (each removes one more group) | " + " | ".join(f"{k}: ratio, group's µs/step" for k in nets) + " |",
        "|---|" + "---:|" * len(nets),
    ]
    for i, row in enumerate(breakdown[nets[0]]["levels"]):
        cells = []
        for k in nets:
            level = breakdown[k]["levels"][i]
            cost = level["cpu_us_per_step_of_this_group"]
            cells.append(f"{level['ratio']:.2f}" + ("" if cost is None else f", {cost:.0f} µs"))
        lines.append(f"| {row['level']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def goals_met(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for key, minimum in GOALS.items():
        part, _, sub = key.partition(" ")
        entry = results.get(part) if part == "R3" else results.get(part, {}).get(sub)
        if entry is not None:
            out[key] = {"ratio": entry["ratio"], "goal": minimum, "met": entry["ratio"] >= minimum}
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_const", dest="mode", const="quick", help="fewer samples and repeats")
    mode.add_argument("--tiny", action="store_const", dest="mode", const="tiny", help="smallest settings (the test)")
    p.add_argument("--threads", type=int, default=1, help="torch and BLAS threads, every side (default 1)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json", help="JSON of medians and ratios")
    p.add_argument("--only", default="R1,R2,R3,R4", help="a comma-separated subset, e.g. R1,R4")
    p.add_argument("--breakdown", action="store_true", help="also: the per-step cost of each default (~3 min)")
    p.add_argument("--skip-no-diagnostics", action="store_true", help="R1, R4: skip the extra diagnostics=off sides")
    p.add_argument("--show-progress", action="store_true", help="draw the progress bars instead of discarding them")
    p.add_argument("--silent", action="store_true", help="print only the final table")
    args = p.parse_args(argv)
    args.mode = args.mode or "full"
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    settings = MODES[args.mode]
    from threadpoolctl import threadpool_limits

    # One thread by default, for every side: on an idle 2-core machine two threads are ~1.5-1.9x faster,
    # but while other jobs hold a core, the second thread waits for it and small products get many
    # times slower (20x was measured); one thread makes runs on a shared machine comparable.
    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    # trainer.deterministic=true (configs/trainer/cpu.yaml) makes Lightning set this on the first fit;
    # set it first so that the bare loop and scikit-learn run under the same flags from the start.
    torch.use_deterministic_algorithms(True)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("lightning.fabric").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    only = set(args.only.split(","))

    started = time.perf_counter()
    print(f"nnmodel bench: {args.mode}, torch {torch.__version__}, {torch.get_num_threads()} thread(s)", flush=True)
    results: dict[str, Any] = {
        "mode": args.mode,
        "threads": torch.get_num_threads(),
        "settings": asdict(settings),
        "versions": {"torch": torch.__version__, "lightning": L.__version__, "python": platform.python_version()},
        "cpus": os.cpu_count(),
        "load_average_start": os.getloadavg()[0],
    }
    with tempfile.TemporaryDirectory(prefix="nnmodel-bench-") as tmp:
        bench = Bench(args, settings, Path(tmp))
        write_mnist_like(bench.data_root, settings.n_train, settings.n_test)
        bench.warm_up()
        if "R1" in only:
            results["R1"], results["overhead_us"] = bench.r1()
        if "R4" in only:
            results["R4"] = bench.r4()
        if "R2" in only:
            results["R2"] = bench.r2()
        if "R3" in only:
            results["R3"] = bench.r3()
        if args.breakdown:
            results["breakdown"] = bench.breakdown()
    results["load_average_end"] = os.getloadavg()[0]
    results["seconds"] = time.perf_counter() - started
    results["goals"] = goals_met(results)
    if any(key in results for key in ("R1", "R2", "R3", "R4")):
        print()
        print(table(results))
    if "breakdown" in results:
        print()
        print(breakdown_table(results["breakdown"]))
    print(
        f"\n{results['seconds']:.0f} s; {results['threads']} thread(s); load average "
        f"{results['load_average_start']:.1f} → {results['load_average_end']:.1f} on {results['cpus']} CPUs; "
        f"ratio > 1: nnmodel faster; JSON: {args.out}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
