"""How fast nnmodel trains small networks, side by side with the alternatives, in one run.

    python bench/run.py              # the full tables, MNIST-sized data (about 5 minutes on 2 cores)
    python bench/run.py --quick      # 1-2 minutes on idle cores (about 3 on a loaded 2-core machine)
    python bench/run.py --tiny       # seconds: what tests/test_bench.py runs

    R1       nnmodel fit ÷ a bare PyTorch loop, samples/s, at 784-800-10 and 784-100-10, batch 128, default K,
             and the framework's overhead per optimizer step, (t_nnmodel − t_bare) / optimizer steps
    K sweep  the same for steps_per_execution K = 1, 4, 16, 64 at 784-100-10 b128, on a fraction of the
             training split (Settings.sweep_fraction); at --threads and at torch's default thread count
    R2       scikit-learn MLPClassifier's fit time ÷ nnmodel's, and the test accuracy of each (and of the
             bare loop, whose ratio is the ceiling), on 8x8 digits and on MNIST-shaped data, 20 epochs
    R3       nnmodel's data path (TensorBatches) ÷ torchvision MNIST + ToTensor + DataLoader, samples/s
    R4       model.backprop=manual ÷ autograd, samples/s through fit

Every comparison runs its sides in this one process, interleaved after a warm-up, and reports
medians (bench/harness.py); ratio > 1 means nnmodel is faster. See the README's Performance section.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the nnmodel and bench of this checkout

import lightning as L  # noqa: E402
import torch  # noqa: E402

from bench.data import Workspace, write_mnist_like  # noqa: E402
from bench.harness import threads  # noqa: E402
from bench.measures import MODES, Bench, key  # noqa: E402
from bench.report import best_k, goals_met, k_sweep_table, overhead_split, table  # noqa: E402

MEASURES = ("R1", "R2", "R3", "R4")  # R1 includes the K sweep


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_const", dest="mode", const="quick", help="fewer samples, 1-3 min")
    mode.add_argument("--tiny", action="store_const", dest="mode", const="tiny", help="smallest settings (the test)")
    p.add_argument("--threads", type=int, default=1, help="torch and BLAS threads for every side (default 1)")
    p.add_argument(
        "--default-threads",
        choices=("also", "skip"),
        default="also",
        help="also: run the K sweep again at torch's default thread count (default); skip: do not",
    )
    p.add_argument("--only", default=",".join(MEASURES), help="a comma-separated subset, e.g. R1,R4")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json", help="JSON of medians and ratios")
    p.add_argument("--silent", action="store_true", help="print only the final tables")
    args = p.parse_args(argv)
    args.mode = args.mode or "full"
    args.only = set(args.only.split(","))
    if not args.only <= set(MEASURES):
        p.error(f"--only takes some of {','.join(MEASURES)}")
    return args


def measure(args: argparse.Namespace, bench: Bench, default_k: int, default_threads: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with threads(args.threads):
        bench.warm_up()
        if "R1" in args.only:
            results["R1"] = bench.r1(default_k)
            results["overhead_us"] = {net: r["overhead_us"] for net, r in results["R1"].items()}
            results["K_sweep"] = {f"{args.threads} thread(s)": bench.k_sweep(default_k)}
        if "R4" in args.only:
            results["R4"] = {key(hidden): bench.r4(hidden) for hidden in (800, 100)}
        if "R2" in args.only:
            results["R2"] = bench.r2()
        if "R3" in args.only:
            results["R3"] = bench.r3(default_k)
    if "R1" in args.only and args.default_threads == "also" and default_threads != args.threads:
        with threads(default_threads):
            bench.warm_up()
            results["K_sweep"][f"{default_threads} thread(s)"] = bench.k_sweep(default_k)
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    settings = MODES[args.mode]
    default_threads = torch.get_num_threads()  # torch's own choice for this machine, before anything sets it
    # trainer.deterministic=true (configs/trainer/cpu.yaml) makes Lightning set this at the first fit;
    # set it first, so that the bare loop and scikit-learn run under the same flags from the start.
    torch.use_deterministic_algorithms(True)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    started = time.perf_counter()
    print(
        f"nnmodel bench: {args.mode}, torch {torch.__version__}, lightning {L.__version__}, "
        f"{args.threads} thread(s) (torch's default here: {default_threads})",
        flush=True,
    )
    results: dict[str, Any] = {
        "mode": args.mode,
        "threads": args.threads,
        "default_threads": default_threads,
        "settings": asdict(settings),
        "versions": {"torch": torch.__version__, "lightning": L.__version__, "python": platform.python_version()},
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
        "load_average_start": os.getloadavg()[0],
    }
    with tempfile.TemporaryDirectory(prefix="nnmodel-bench-") as tmp:
        ws = Workspace(Path(tmp))
        write_mnist_like(ws.data_root, settings.n_train, settings.n_test)
        default_k = int(ws.cfg("mnist", 100, 128, 1).steps_per_execution)
        results["default_K"] = default_k
        results |= measure(args, Bench(ws, settings, silent=args.silent), default_k, default_threads)
    results["load_average_end"] = os.getloadavg()[0]
    results["seconds"] = time.perf_counter() - started
    results["goals"] = goals_met(results)
    if "K_sweep" in results:
        results["K_best"] = best_k(results, default_k)
        results["overhead_split"] = overhead_split(results, default_k)
    print("\n" + table(results))
    if "K_sweep" in results:
        print("\n" + k_sweep_table(results))
    if results.get("overhead_split"):
        split = results["overhead_split"]
        print(
            f"\noverhead of 784-100-10 b128 K={default_k}: {split['per_fit_s']:.3f} s per fit of "
            f"{settings.epochs} epoch(s) + {split['per_step_us']:.1f} µs per optimizer step"
        )
    print(
        f"\n{results['seconds']:.0f} s; {results['threads']} thread(s); load average "
        f"{results['load_average_start']:.1f} → {results['load_average_end']:.1f} on {os.cpu_count()} CPUs; "
        f"ratio > 1: nnmodel faster; JSON: {args.out}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
