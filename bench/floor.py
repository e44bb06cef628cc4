"""Where the framework's cost per step comes from: the same training with more and more of nnmodel around it.

    python bench/floor.py              # 784-100-10, batch 128, 400 optimizer steps a fit, 5 rounds (~1 minute)
    python bench/floor.py --net digits # 64-128-10, batch 64 (digits' shape), 400 steps: where a step is small
    python bench/floor.py --tiny       # seconds (what tests/test_bench.py runs)

Sides, all at one thread on the same synthetic data, interleaved, medians:

    bare        a plain PyTorch loop over TensorBatches (no Lightning imported into its timing)
    lightning   a minimal LightningModule with manual optimisation, K = 16, no callbacks, no logger
    nnmodule    nnmodel's NNModule in the same bare Trainer (its metrics, divergence check, step logging)
    train.py    NNModule in ``build_trainer`` as train.py builds it (TensorBoard, checkpoints, progress bar,
                diagnostics, validation each epoch: the per-epoch work is paid on every side but bare)

Each row says what it adds per optimizer step over ``bare``, in µs (per-fit set-up included).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import lightning as L  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bench.baselines import as_without_lightning  # noqa: E402
from bench.harness import discard_output, interleaved, ratio, threads, time_call  # noqa: E402
from nnmodel.callbacks import PlainCudaCheck  # noqa: E402
from nnmodel.config import compose  # noqa: E402
from nnmodel.console import quiet  # noqa: E402
from nnmodel.data import TensorBatches, TensorDataModule  # noqa: E402
from nnmodel.module import NNModule  # noqa: E402
from nnmodel.training import build_trainer  # noqa: E402

K = 16
# name: (inputs, hidden units, batch, image shape); 400 optimizer steps a fit either way
NETS = {"mnist": (784, 100, 128, (28, 28)), "digits": (64, 128, 64, (8, 8))}


def network(n_in: int, hidden: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(n_in, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10))


class Minimal(L.LightningModule):
    """The least a LightningModule with K steps per call can be."""

    def __init__(self, n_in: int, hidden: int) -> None:
        super().__init__()
        self.net, self.automatic_optimization = network(n_in, hidden), False

    def training_step(self, chunk, batch_idx: int) -> None:
        opt = self.optimizers()
        for x, y in chunk:
            loss = F.cross_entropy(self.net(x), y)
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.net.parameters(), fused=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--net", choices=tuple(NETS), default="mnist", help="784-100-10 b128, or 64-128-10 b64")
    args = parser.parse_args(argv)
    n_in, hidden, batch, image = NETS[args.net]
    steps, rounds = (20, 2) if args.tiny else (400, 5)
    n = steps * batch
    x, y = torch.randn(n, n_in), torch.randint(0, 10, (n,))
    batches = lambda: TensorBatches(x, y, batch, steps_per_execution=K, shuffle=True)
    tmp = Path(tempfile.mkdtemp(prefix="nnmodel-floor-"))

    def bare() -> None:
        net = network(n_in, hidden)
        opt = torch.optim.Adam(net.parameters(), fused=True)
        with as_without_lightning():
            for chunk in batches():
                for xb, yb in chunk:
                    opt.zero_grad()
                    F.cross_entropy(net(xb), yb).backward()
                    opt.step()

    def bare_trainer(module: L.LightningModule) -> None:
        trainer = L.Trainer(
            max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, callbacks=[PlainCudaCheck()],
        )  # fmt: skip
        trainer.fit(module, train_dataloaders=batches())

    cfg = compose(["data=mnist", f"steps_per_execution={K}", "trainer.max_epochs=1", f"model.hidden=[{hidden}]",
                   f"data.batch_size={batch}"])  # fmt: skip

    def full(run: list[int]) -> None:
        run[0] += 1
        # a datamodule holding the other sides' tensors
        dm = TensorDataModule(name="digits", batch_size=batch, steps_per_execution=K)
        val = n * 6000 // 51200  # mnist: 6,000 validation images against 51,200 training ones, as data=mnist
        dm.splits = {"train": (x, y), "val": (x[:val], y[:val]), "test": (x[:batch], y[:batch])}
        dm.n_features, dm.n_classes, dm.image_shape = n_in, 10, image
        module = NNModule(n_in, [hidden], 10, optimizer={"name": "adam"}, seed=0)
        trainer = build_trainer(cfg, tmp / str(run[0]), dm)
        trainer.fit(module, datamodule=dm)

    counter = [0]
    sides = {
        "bare": bare,
        "lightning": lambda: bare_trainer(Minimal(n_in, hidden)),
        "nnmodule": lambda: bare_trainer(NNModule(n_in, [hidden], 10, optimizer={"name": "adam"}, seed=0)),
        "train.py": lambda: full(counter),
    }
    with threads(1), quiet(), discard_output():
        for side in sides.values():  # warm-up
            side()
        times = interleaved({k: (lambda f=f: time_call(f)[0]) for k, f in sides.items()}, rounds)
    print(f"{n_in}-{hidden}-10 b{batch}, K={K}, {steps} optimizer steps a fit, 1 thread, median of {rounds}\n")
    print("| side | s a fit | µs a step over bare | R1 (bare ÷ side) |\n|---|---:|---:|---:|")
    for name, t in times.items():
        r = ratio(t, times["bare"], work=n, steps=steps)
        print(f"| {name} | {sorted(x.wall for x in t)[len(t) // 2]:.3f} | {r['overhead_us']:.0f} | {r['ratio']:.2f} |")


if __name__ == "__main__":
    main()
