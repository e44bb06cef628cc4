"""nnmodel on one GPU: R1 (nnmodel fit ÷ a bare PyTorch loop) and the time per epoch, K=1 and the default K,
each with and without ``cuda_graphs=true``.

    python bench/gpu.py                      # on a CUDA machine (a few minutes); prints a table, writes JSON
    python bench/gpu.py --device cpu --tiny  # a dry run of the same code on CPU (what the test runs)

Both sides keep the whole data set on the device, as nnmodel does on a GPU (TensorDataModule puts
splits smaller than nnmodel.data.GPU_RESIDENT_BYTES, 2 GiB, there): a minibatch is one index_select
on device tensors. "nnmodel" is ``train.py trainer=gpu`` as ``build_trainer`` builds it; the bare loop
is bench/baselines.py's. Each side's timing ends with ``torch.cuda.synchronize()``; the sides are
interleaved after a warm-up and the medians reported (bench/harness.py). The MNIST-shaped IDX files
are synthetic (bench/data.py): no download. The goals (#11): at most 0.1 s per 60,000 images of
784-800-10 at batch 128, and R1 >= 0.8.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the nnmodel and bench of this checkout

import torch  # noqa: E402

from bench.data import Workspace, write_mnist_like  # noqa: E402
from bench.measures import MODES, Bench, key  # noqa: E402
from bench.report import markdown  # noqa: E402


def measure(bench: Bench, default_k: int, graphs: bool) -> dict[str, dict[str, Any]]:
    """R1 and the seconds per epoch of both sides at 784-800-10 and 784-100-10 b128, all sides interleaved: K=1, the
    default K, and with ``graphs`` each of them again with ``cuda_graphs=true``. Keyed by side, then network."""
    bench.warm_up()  # CUDA context, kernels, allocator
    by_side: dict[str, dict[str, Any]] = {}
    for hidden in (800, 100):
        for side, r in bench.sweep(hidden, tuple(sorted({1, default_k})), graphs=graphs).items():
            r["nnmodel_s_per_epoch"] = r["train_images"] / r["nnmodel_samples_per_s"]
            r["bare_s_per_epoch"] = r["train_images"] / r["bare_samples_per_s"]
            r["nnmodel_s_per_60k"] = 60_000 / r["nnmodel_samples_per_s"]  # the goal's unit: MNIST's 60,000 images
            by_side.setdefault(side, {})[key(hidden)] = r
    return by_side


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu for a dry run")
    p.add_argument("--tiny", action="store_const", dest="size", const="tiny", default="full", help="smallest sizes")
    p.add_argument("--out", type=Path, help="default: bench/gpu_results.json (a dry run: bench/gpu_dry_run.json)")
    p.add_argument("--silent", action="store_true", help="print only the final table")
    args = p.parse_args(argv)
    if args.out is None:  # a dry run's figures are not the GPU's: a file of their own, which git ignores
        args.out = ROOT / "bench" / ("gpu_results.json" if args.device.startswith("cuda") else "gpu_dry_run.json")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: no CUDA device is visible; run on a GPU machine, or use --device cpu for a dry run")
        raise SystemExit(2)
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    print(f"nnmodel GPU bench: {args.size}, {device_name}, torch {torch.__version__}", flush=True)
    started = time.perf_counter()
    cuda = args.device.startswith("cuda")  # the cuda_graphs sides need one; a CPU dry run has none
    trainer = "trainer=gpu" if cuda else "trainer.accelerator=cpu"
    with tempfile.TemporaryDirectory(prefix="nnmodel-gpu-bench-") as tmp:
        ws = Workspace(Path(tmp), extra=(trainer,))
        settings = MODES[args.size]
        write_mnist_like(ws.data_root, settings.n_train, settings.n_test)
        default_k = int(ws.cfg("mnist", 100, 128, 1).steps_per_execution)
        results = {
            "device": device_name,
            "size": args.size,
            "default_K": default_k,
            "versions": {"torch": torch.__version__, "python": platform.python_version()},
            "R1": measure(Bench(ws, settings, device=args.device, silent=args.silent), default_k, graphs=cuda),
        }
    results["seconds"] = time.perf_counter() - started
    rows = [("network, batch", "side", "nnmodel s/epoch", "bare s/epoch", "nnmodel s/60k images", "R1")]
    for side, nets in results["R1"].items():
        for net, r in nets.items():
            rows.append(
                (
                    net,
                    side,
                    f"{r['nnmodel_s_per_epoch']:.3f}",
                    f"{r['bare_s_per_epoch']:.3f}",
                    f"{r['nnmodel_s_per_60k']:.3f}",
                    f"{r['ratio']:.2f}",
                )
            )
    print("\n" + markdown(rows))
    images = next(iter(next(iter(results["R1"].values())).values()))["train_images"]
    print(f"\n{results['seconds']:.0f} s; {images:,} training images; JSON: {args.out}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
