"""The measures: R1 and the K sweep (nnmodel fit ÷ a bare loop), R2 (÷ scikit-learn), R3 (data path), R4 (backprop).

"nnmodel" is a fit with the trainer exactly as ``train.py`` builds it (``build_trainer``: validation
every epoch, TensorBoard, checkpoints, the progress bar, diagnostics), on data loaded beforehand, as
the bare loop's is; only ``build_trainer`` and ``fit`` are timed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch

from bench.baselines import bare_fit, sklearn_fit, torchvision_loader
from bench.data import Workspace
from bench.harness import Timing, discard_output, interleaved, median, ratio, time_call
from nnmodel.console import quiet
from nnmodel.data import TensorBatches
from nnmodel.module import NNModule
from nnmodel.training import build_module, build_trainer

K_SWEEP = (1, 4, 16, 64)  # steps_per_execution values of the sweep
R2_CASES = (("digits", "digits", 64), ("mnist_like", "mnist", 128))  # name, data=, batch (as configs/data/)
R2_HIDDEN = 128  # configs/model/mlp.yaml's hidden: [128]


@dataclass(frozen=True)
class Settings:
    n_train: int  # MNIST-shaped training images written (10% become the val split, as data=mnist does)
    n_test: int
    epochs: int  # R1/K sweep/R4 epochs per timed fit
    repeats: int  # timed runs per side (medians over these)
    r2_epochs: int  # R2 epochs (both libraries)
    r2_repeats: int
    r3_samples: int  # samples drawn per R3 measurement
    sweep_fraction: float  # the K sweep trains on this stratified fraction of the training split
    r2_fraction: float  # R2's MNIST-shaped case too (digits: always all of it)


MODES = {
    "full": Settings(60_000, 10_000, 3, 3, 20, 3, 30_000, 0.1, 0.25),  # MNIST's own size
    "quick": Settings(6_000, 1_000, 2, 3, 20, 2, 10_000, 0.5, 1.0),
    "tiny": Settings(1_000, 300, 1, 1, 2, 1, 1_000, 1.0, 1.0),
}


def key(hidden: int, batch: int = 128) -> str:
    return f"784-{hidden}-10 b{batch}"


class Bench:
    """Every measure, on one Workspace (configs and loaded data); ``device`` is where the bare loop trains."""

    def __init__(self, ws: Workspace, s: Settings, device: str = "cpu", silent: bool = False) -> None:
        self.ws, self.s, self.silent = ws, s, silent
        self.device = torch.device(device)

    def log(self, line: str) -> None:
        if not self.silent:
            print(f"  {line}", flush=True)

    # ------------------------------------------------------------------------- the two training loops

    def nnmodel_fit(self, cfg: Any) -> tuple[Timing, NNModule]:
        """``build_trainer(cfg, run_dir, dm)`` and ``fit``, timed, as ``train.py`` runs them (less loading)."""
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        dm = self.ws.datamodule(cfg)
        module = build_module(cfg, dm)

        def fit() -> None:
            trainer = build_trainer(cfg, Path(cfg.paths.output_dir), dm)
            trainer.fit(module, datamodule=dm)

        with quiet(), discard_output():
            timing, _ = time_call(fit)
        return timing, module

    def bare_fit(self, cfg: Any) -> tuple[Timing, torch.nn.Module]:
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        return bare_fit(cfg, self.ws.datamodule(cfg), self.device)

    def warm_up(self) -> None:
        """One short fit of each kind (imports, allocator, thread pools) before anything is timed."""
        for backprop in ("autograd", "manual"):
            self.nnmodel_fit(self.ws.cfg("mnist", 100, 128, 1, backprop=backprop))
        self.bare_fit(self.ws.cfg("mnist", 100, 128, 1))

    # ------------------------------------------------------------------------- R1 and the K sweep

    def sweep(
        self, hidden: int, ks: tuple[int, ...], batch: int = 128, small: bool = False, graphs: bool = False
    ) -> dict[str, dict]:
        """nnmodel at each K ÷ the bare loop, all interleaved: per side, R1 and the overhead per optimizer step.

        Sides "K=k" for each k, and with ``graphs`` also "K=k cuda_graphs" (``cuda_graphs=true``: a GPU only).
        ``small``: on the K sweep's fraction of the training split (Settings.sweep_fraction)."""
        s = self.s
        fraction = s.sweep_fraction if small else 1.0
        cfg = lambda k=None, *extra: self.ws.cfg("mnist", hidden, batch, s.epochs, k, train_fraction=fraction,
                                                 extra=extra)  # fmt: skip
        n = self.ws.n_train("mnist", fraction)
        steps = -(-n // batch) * s.epochs  # optimizer steps per fit: every minibatch, the last one short
        variants = {f"K={k}": (k, ()) for k in ks}
        if graphs:
            variants |= {f"K={k} cuda_graphs": (k, ("cuda_graphs=true",)) for k in ks}
        sides: dict[str, Callable[[], Timing]] = {"bare": lambda: self.bare_fit(cfg())[0]}
        for name, (k, extra) in variants.items():
            sides[name] = lambda k=k, extra=extra: self.nnmodel_fit(cfg(k, *extra))[0]
        times = interleaved(sides, s.repeats)
        out = {}
        for name, (k, extra) in variants.items():
            out[name] = {"K": k, "cuda_graphs": bool(extra), "epochs": s.epochs, "train_images": n}
            out[name] |= ratio(times[name], times["bare"], n * s.epochs, steps)
            self.log(
                f"R1 {key(hidden, batch)} {name:<16s} {out[name]['ratio']:.3f} (cpu {out[name]['ratio_cpu']:.3f}), "
                f"{out[name]['overhead_us']:.0f} µs/step, {n} images, {torch.get_num_threads()} thread(s)"
            )
        return out

    def r1(self, default_k: int) -> dict[str, Any]:
        """R1 at 784-800-10 and 784-100-10 b128 with the default K, on the whole training split."""
        return {key(hidden): self.sweep(hidden, (default_k,))[f"K={default_k}"] for hidden in (800, 100)}

    def k_sweep(self, default_k: int) -> dict[str, Any]:
        """The K sweep at 784-100-10 b128 (K_SWEEP and the default K), on the smaller training split."""
        return self.sweep(100, tuple(sorted({*K_SWEEP, default_k})), small=True)

    # ------------------------------------------------------------------------- R2

    def r2(self) -> dict[str, Any]:
        return {name: self.r2_case(name, data, batch) for name, data, batch in R2_CASES}

    def r2_case(self, name: str, data: str, batch: int) -> dict[str, Any]:
        """scikit-learn's fit time ÷ nnmodel's (and ÷ the bare loop's: the ceiling), and each one's test accuracy."""
        s = self.s
        fraction = s.r2_fraction if data == "mnist" else 1.0
        cfg = lambda: self.ws.cfg(data, R2_HIDDEN, batch, s.r2_epochs, train_fraction=fraction)
        cfg0 = cfg()
        dm = self.ws.datamodule(cfg0)
        (x, y), (xt, yt) = dm.split("train"), dm.split("test")
        acc: dict[str, float] = {}

        def accuracy(model: Callable[[torch.Tensor], torch.Tensor]) -> float:
            with torch.no_grad():
                return float((model(xt.to(self.device)).argmax(1).cpu() == yt).float().mean())

        def nnmodel_side() -> Timing:
            timing, module = self.nnmodel_fit(cfg())
            acc["nnmodel"] = accuracy(module.net)  # the last epoch's weights, as scikit-learn's
            return timing

        def bare_side() -> Timing:
            timing, model = self.bare_fit(cfg())
            acc["bare"] = accuracy(model)
            return timing

        def sklearn_side() -> Timing:
            timing, clf = sklearn_fit(x, y, R2_HIDDEN, batch, float(cfg0.optimizer.lr), s.r2_epochs)
            acc["sklearn"] = float((clf.predict(xt.numpy()) == yt.numpy()).mean())
            return timing

        times = interleaved({"nnmodel": nnmodel_side, "sklearn": sklearn_side, "bare": bare_side}, s.r2_repeats)
        t_nn, t_sk, t_bare = median(times["nnmodel"]), median(times["sklearn"]), median(times["bare"])
        out = {
            "ratio": t_sk.wall / t_nn.wall,
            "ratio_cpu": t_sk.cpu / t_nn.cpu,
            "bare_ratio": t_sk.wall / t_bare.wall,  # a loop without any framework: R2's ceiling
            "nnmodel_s": t_nn.wall,
            "sklearn_s": t_sk.wall,
            "bare_s": t_bare.wall,
            "nnmodel_acc": acc["nnmodel"],
            "sklearn_acc": acc["sklearn"],
            "bare_acc": acc["bare"],
            "network": f"{x.shape[1]}-{R2_HIDDEN}-10",
            "batch": batch,
            "epochs": s.r2_epochs,
            "n_train": len(y),
        }
        self.log(f"R2 {name}: {out['ratio']:.3f} (bare {out['bare_ratio']:.3f}), acc {acc}")
        return out

    # ------------------------------------------------------------------------- R3, R4

    def r3(self, k: int, batch: int = 128) -> dict[str, Any]:
        """nnmodel's data path (TensorBatches: chunks of K minibatches) ÷ torchvision's, in samples/s."""
        x, y = self.ws.datamodule(self.ws.cfg("mnist", 100, batch, 1, k)).split("train")
        loaders = {
            "nnmodel": TensorBatches(x, y, batch, steps_per_execution=k, shuffle=True),
            "torchvision": torchvision_loader(self.ws.data_root, batch),
        }

        def chunks(name: str):  # a chunk of minibatches from nnmodel, one minibatch from torchvision
            for item in loaders[name]:
                yield item if name == "nnmodel" else (item,)

        def drain(name: str) -> Timing:
            def run() -> None:
                n = 0
                while n < self.s.r3_samples:
                    for chunk in chunks(name):
                        for xb, yb in chunk:
                            xb.reshape(len(xb), -1)  # (B, 784), as the network takes it
                            n += len(yb)
                        if n >= self.s.r3_samples:
                            break

            return time_call(run)[0]

        drain("nnmodel"), drain("torchvision")  # warm-up
        times = interleaved({name: lambda name=name: drain(name) for name in loaders}, 3)
        out = ratio(times["nnmodel"], times["torchvision"], self.s.r3_samples, names=("nnmodel", "torchvision"))
        self.log(f"R3: {out['ratio']:.1f}")
        return out | {"batch": batch, "K": k, "samples": self.s.r3_samples}

    def r4(self, hidden: int, batch: int = 128) -> dict[str, Any]:
        """model.backprop=manual ÷ autograd, samples/s through fit."""
        s = self.s
        n = self.ws.n_train("mnist")
        sides = {
            mode: lambda mode=mode: self.nnmodel_fit(self.ws.cfg("mnist", hidden, batch, s.epochs, backprop=mode))[0]
            for mode in ("manual", "autograd")
        }
        times = interleaved(sides, s.repeats)
        out = ratio(times["manual"], times["autograd"], n * s.epochs, names=("manual", "autograd"))
        self.log(f"R4 {key(hidden, batch)}: {out['ratio']:.3f} (cpu {out['ratio_cpu']:.3f})")
        return out
