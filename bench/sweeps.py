"""A sweep run one after another, with Hydra's joblib launcher, and with ours (fork), side by side in one run.

    python bench/sweeps.py              # seed=0,1,2,3, 40 epochs each, 3 interleaved rounds (~3 minutes)
    python bench/sweeps.py --tiny       # seconds: what tests/test_bench.py runs

Declared before the first measurement (#14): the sweep is ``python train.py -m seed=0,1,2,3`` with the
default config (digits, 40 epochs), the parallel launchers run 2 jobs at once (``hydra.launcher.n_jobs=2``),
and each side is the whole command's wall time, as a user waits for it (start-up, imports, every run and
the report), in rounds whose order reverses every other round. The ratio is the sequential sweep's
median time ÷ the side's (> 1: faster). The runs must give the same test/acc per seed on every side.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import Timing, interleaved  # noqa: E402

SIDES = {
    "sequential": [],
    "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    "fork": ["hydra/launcher=fork", "hydra.launcher.n_jobs=2"],
}


def run_sweep(sweep_dir: Path, overrides: list[str], accs: list[list[float]]) -> Timing:
    """The whole command, timed; appends each run's test/acc (by job number) to ``accs``."""
    command = [sys.executable, "train.py", "-m", *overrides, f"hydra.sweep.dir={sweep_dir}"]
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"error: {' '.join(command[1:])} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    jobs = sorted((p for p in sweep_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    accs.append([json.loads((job / "result.json").read_text())["test/acc"] for job in jobs])
    return Timing(wall, 0.0)  # the CPU time is the children's, not this process's: wall only


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="2 seeds, 1 epoch, 1 round: a smoke test")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    seeds, rounds = ("0,1", 1) if args.tiny else ("0,1,2,3", args.rounds)
    sweep = [f"seed={seeds}", *(["trainer.max_epochs=1", "diagnostics=off"] if args.tiny else [])]
    accs: dict[str, list[list[float]]] = {name: [] for name in SIDES}
    with tempfile.TemporaryDirectory() as tmp:
        count = itertools.count()

        def side(name: str):
            return lambda: run_sweep(Path(tmp) / f"{name}-{next(count)}", [*sweep, *SIDES[name]], accs[name])

        times = interleaved({name: side(name) for name in SIDES}, rounds)
    sequential = statistics.median(t.wall for t in times["sequential"])
    results: dict[str, Any] = {"sweep": sweep, "rounds": rounds, "sides": {}}
    print(f"python train.py -m {' '.join(sweep)}: {rounds} interleaved rounds, the whole command's wall time\n")
    print("| side | wall times (s) | median (s) | sequential ÷ side | test/acc per seed, same every round |")
    print("|---|---|---:|---:|---|")
    for name, extra in SIDES.items():
        walls = [t.wall for t in times[name]]
        same = all(a == accs["sequential"][0] for a in accs[name])
        results["sides"][name] = {
            "overrides": extra,
            "wall_s": [round(w, 2) for w in walls],
            "ratio": sequential / statistics.median(walls),
            "test_acc": accs[name][0],
            "same_as_sequential": same,
        }
        label = " ".join(extra) or "one after another"
        shown = ", ".join(f"{a:.4f}" for a in accs[name][0]) + ("" if same else " (DIFFERS from sequential)")
        print(
            f"| {name}: {label} | {', '.join(f'{w:.1f}' for w in walls)} | {statistics.median(walls):.1f} "
            f"| {results['sides'][name]['ratio']:.2f} | {shown} |"
        )
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
