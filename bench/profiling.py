"""Where a fit's time goes: cProfile on one nnmodel fit and one bare loop, costs per optimizer step.

    python bench/profiling.py                          # 784-100-10 b128, default K, 1 thread
    python bench/profiling.py --hidden 800 --k 1 --top 25
    python bench/profiling.py --data digits --hidden 128 --epochs 20 --match "save_checkpoint|on_train_epoch_end"

Prints two markdown tables of µs per optimizer step: the functions of the fit with the highest
cumulative time that belong to Lightning, nnmodel, TensorBoard, tqdm or torch.optim (what the
framework does around the math), and the highest self time (where the CPU actually is). cProfile
slows Python-heavy code more than native kernels, so the fit's profiled total is above its
benchmark time; read the tables for proportions.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the nnmodel and bench of this checkout

import torch  # noqa: E402

from bench.data import Workspace, write_mnist_like  # noqa: E402
from bench.harness import threads  # noqa: E402
from bench.measures import MODES, Bench  # noqa: E402
from bench.report import markdown  # noqa: E402

FRAMEWORK = ("lightning", "nnmodel", "tensorboard", "tqdm", "torchmetrics", "torch/optim", "torch/utils")


def label(func: tuple[str, int, str]) -> str:
    path, line, name = func
    parts = Path(path).parts
    tail = "/".join(parts[-3:]) if len(parts) >= 3 else path
    return f"{tail}:{line} {name}" if line else name


def top(stats: pstats.Stats, steps: int, n: int, cumulative: bool, match: str = "") -> list[tuple[str, ...]]:
    rows = []
    for func, (_, calls, tottime, cumtime, _) in stats.stats.items():
        if cumulative and not any(part in func[0] for part in FRAMEWORK):
            continue
        if match and not re.search(match, label(func)):
            continue
        rows.append((cumtime if cumulative else tottime, func, calls, tottime, cumtime))
    rows.sort(reverse=True)
    out = [("function", "calls per step", "self µs/step", "cumulative µs/step")]
    for _, func, calls, tottime, cumtime in rows[:n]:
        out.append(
            (label(func), f"{calls / steps:.2f}", f"{tottime / steps * 1e6:.1f}", f"{cumtime / steps * 1e6:.1f}")
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="mnist", choices=("mnist", "digits"))
    p.add_argument("--hidden", type=int, default=100)
    p.add_argument("--k", type=int, default=None, help="steps_per_execution (default: the config's)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--match", default="", help="only the framework functions whose name matches this regex")
    args = p.parse_args()
    s = MODES["full"]
    with tempfile.TemporaryDirectory(prefix="nnmodel-profile-") as tmp, threads(args.threads):
        torch.use_deterministic_algorithms(True)
        ws = Workspace(Path(tmp))
        write_mnist_like(ws.data_root, s.n_train, s.n_test)
        bench = Bench(ws, s)
        bench.warm_up()
        batch = 128 if args.data == "mnist" else 64  # as configs/data/
        cfg = ws.cfg(args.data, args.hidden, batch, args.epochs, args.k)
        steps = -(-ws.n_train(args.data) // batch) * args.epochs
        totals = {}
        for side, fit in (("nnmodel", bench.nnmodel_fit), ("bare", bench.bare_fit)):
            side_cfg = ws.cfg(args.data, args.hidden, batch, args.epochs, args.k)  # composed outside the profile
            profiler = cProfile.Profile()
            profiler.enable()
            timing, _ = fit(side_cfg)
            profiler.disable()
            totals[side] = timing.wall / steps * 1e6
            if side == "nnmodel":
                stats = pstats.Stats(profiler)
    print(
        f"{args.data}, {args.hidden} hidden, b{batch}, K={cfg.steps_per_execution}, {args.epochs} epochs, "
        f"{steps} optimizer steps, "
        f"{args.threads} thread(s); under cProfile: nnmodel {totals['nnmodel']:.0f} µs/step, "
        f"bare loop {totals['bare']:.0f} µs/step\n"
    )
    framework = top(stats, steps, args.top, cumulative=True, match=args.match)
    print("Framework functions by cumulative time:\n\n" + markdown(framework))
    print("\nAll functions by self time:\n\n" + markdown(top(stats, steps, args.top, cumulative=False)))


if __name__ == "__main__":
    main()
