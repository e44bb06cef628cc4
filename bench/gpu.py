"""nnmodel on one GPU: R1 (nnmodel fit ÷ a bare PyTorch loop) and the time per epoch, MNIST-shaped data.

    python bench/gpu.py                      # on a CUDA machine (~3 minutes); prints a table, writes JSON
    python bench/gpu.py --device cpu --tiny  # a dry run of the same code on CPU (what the test runs)

Both sides keep the whole data set on the device, as nnmodel does on a GPU (TensorDataModule puts
splits smaller than nnmodel.data.GPU_RESIDENT_BYTES, 2 GiB, there): a batch is one index_select on
device tensors, no host-to-device copies.
"nnmodel" is `train.py trainer=gpu` as built by `build_trainer` (validation each epoch, checkpoints,
TensorBoard, progress bar, diagnostics); the bare loop does the same epochs, with a validation pass,
in plain PyTorch (bench/run.py's Bench.bare_fit). Each side ends with `torch.cuda.synchronize()`
inside its timing. The sides are interleaved after a warm-up and the medians reported, as in
bench/run.py.

Needs no download: the MNIST-shaped IDX files are synthetic (bench/run.py's write_mnist_like).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as cpu_bench  # bench/run.py: data, configs, timing, the nnmodel side (it puts the root on sys.path)
import torch
from omegaconf import DictConfig


class GpuBench(cpu_bench.Bench):
    """bench/run.py's R1 with both sides on ``args.device``: nnmodel through `trainer=gpu`."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        settings = dataclasses.replace(cpu_bench.MODES[args.size], widths=(800, 100), batches=(128,))
        super().__init__(args, settings, tmp)
        self.device = torch.device(args.device)
        self.trainer_override = "trainer=gpu" if self.device.type == "cuda" else "trainer.accelerator=cpu"

    def cfg(self, *args: Any, extra: tuple[str, ...] = (), **kwargs: Any) -> DictConfig:
        return super().cfg(*args, extra=(self.trainer_override, *extra), **kwargs)

    def measure(self) -> dict[str, Any]:
        for hidden in self.s.widths:  # warm-up: CUDA context, kernels, allocator
            self.nnmodel_fit(self.cfg("mnist", hidden, self.s.batches[0], self.s.epochs))
            self.bare_fit(self.cfg("mnist", hidden, self.s.batches[0], self.s.epochs))
        out, _ = self.r1()
        for r in out.values():
            n = r["train_images"] = self.n_train("mnist", self.s.batches[0])
            r |= {
                "epochs": self.s.epochs,
                "nnmodel_s_per_epoch": n / r["nnmodel_samples_per_s"],
                "bare_s_per_epoch": n / r["bare_samples_per_s"],
            }
        return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu for a dry run")
    p.add_argument("--tiny", action="store_const", dest="size", const="tiny", default="full", help="smallest sizes")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "gpu_results.json")
    p.add_argument("--silent", action="store_true", help="print only the final table")
    args = p.parse_args(argv)
    args.show_progress, args.skip_no_diagnostics = False, True
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: no CUDA device is visible; run on a GPU machine, or use --device cpu for a dry run")
        raise SystemExit(2)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("lightning.fabric").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    print(f"nnmodel GPU bench: {args.size}, {device_name}, torch {torch.__version__}", flush=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nnmodel-gpu-bench-") as tmp:
        bench = GpuBench(args, Path(tmp))
        cpu_bench.write_mnist_like(bench.data_root, bench.s.n_train, bench.s.n_test)
        results = {
            "device": device_name,
            "size": args.size,
            "versions": {"torch": torch.__version__, "python": platform.python_version()},
            "R1": bench.measure(),
        }
    results["seconds"] = time.perf_counter() - started
    print("\n| network, batch | nnmodel s/epoch | bare s/epoch | nnmodel samples/s | bare samples/s | R1 |")
    print("|---|---:|---:|---:|---:|---:|")
    for key, r in results["R1"].items():
        print(
            f"| {key} | {r['nnmodel_s_per_epoch']:.3f} | {r['bare_s_per_epoch']:.3f} | "
            f"{r['nnmodel_samples_per_s']:,.0f} | {r['bare_samples_per_s']:,.0f} | {r['ratio']:.2f} |"
        )
    images = next(iter(results["R1"].values()))["train_images"]
    print(f"\n{results['seconds']:.0f} s; {images:,} training images; JSON: {args.out}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
