"""torch's CPU threads for one training step: 1 against torch's default, on an idle machine and on a busy one.

    python bench/threads.py            # 5 networks, idle then busy, 300 steps a side (~1 minute on 2 cores)
    python bench/threads.py --tiny     # seconds: what tests/test_bench.py runs

What ``threads=auto`` (configs/train.yaml) rests on. Each side is a bare PyTorch step (forward, cross-entropy,
backward, Adam) of the same network on the same minibatch; the two thread counts alternate in one process (1,
default, 1, default, ...) and each side's best of 3 is kept. "Busy" runs the same while one process per core spins
in pure Python, as a browser, a compile or another run would: torch's OpenMP threads then wait for each other at
every parallel region, and a step of a small network is many times slower with two threads than with one.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import time

import torch

# (layer sizes, batch): xor's 2-8-2 b4, a 64-32-10 and digits' default 64-128-10 at b64, MNIST's two at b128
NETWORKS = [((2, 8, 2), 4), ((64, 32, 10), 64), ((64, 128, 10), 64), ((784, 100, 10), 128), ((784, 800, 10), 128)]


def step_time(sizes: tuple[int, ...], batch: int, threads: int, steps: int) -> float:
    """µs per training step of a fresh network (seed 0), after a warm-up of 30 steps."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    layers: list[torch.nn.Module] = []
    for n_in, n_out in itertools.pairwise(sizes):
        layers += [torch.nn.Linear(n_in, n_out), torch.nn.ReLU()]
    net = torch.nn.Sequential(*layers[:-1])
    x, y = torch.randn(batch, sizes[0]), torch.randint(0, sizes[-1], (batch,))
    opt = torch.optim.Adam(net.parameters())

    def step() -> None:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()

    for _ in range(30):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps * 1e6


def spin(stop: multiprocessing.synchronize.Event) -> None:  # type: ignore[name-defined]
    while not stop.is_set():
        pass


def measure(steps: int, default: int) -> list[tuple[str, int, float, float]]:
    rows = []
    for sizes, batch in NETWORKS:
        best = {1: float("inf"), default: float("inf")}
        for _ in range(3):
            for threads in (1, default):
                best[threads] = min(best[threads], step_time(sizes, batch, threads, steps))
        macs = batch * sum(a * b for a, b in itertools.pairwise(sizes))
        rows.append(("-".join(map(str, sizes)) + f" b{batch}", macs, best[1], best[default]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a few steps a side: a smoke test of the script")
    args = parser.parse_args()
    steps = 5 if args.tiny else 300
    default = torch.get_num_threads()
    if default < 2:
        print(f"torch uses {default} thread here: nothing to compare")
        return
    print(f"torch's default: {default} threads; {os.cpu_count()} cores; µs per step, best of 3, interleaved")
    ratio = f"time at {default} ÷ at 1"
    print(f"| machine | network | multiply-adds / minibatch | 1 thread | {default} threads | {ratio} |")
    print("|---|---|---:|---:|---:|---:|")
    for busy in (False, True):
        stop = multiprocessing.Event()
        cores = os.cpu_count() or 1
        spinners = [multiprocessing.Process(target=spin, args=(stop,)) for _ in range(cores if busy else 0)]
        for p in spinners:
            p.start()
        try:
            rows = measure(steps, default)
        finally:
            stop.set()
            for p in spinners:
                p.join()
        for name, macs, one, many in rows:
            machine = "busy" if busy else "idle"
            print(f"| {machine} | {name} | {macs:,} | {one:,.0f} | {many:,.0f} | {many / one:.2f} |")


if __name__ == "__main__":
    main()
