"""Timing for the benchmark: wall clock and process CPU time, interleaved sides, medians, ratio records.

A shared machine slows whatever runs while another job holds a core. So every comparison runs its
sides in one process, alternating their order every round (A B, B A, A B, ...) after a warm-up, and
reports medians: both sides meet the same noise. The process CPU time (all its threads) is recorded
too; waiting for a core does not inflate it.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import torch


class Timing(NamedTuple):
    wall: float  # seconds, wall clock
    cpu: float  # seconds of CPU time of this process (all its threads)


@contextlib.contextmanager
def timed(out: list[Timing]) -> Iterator[None]:
    """Time the block into ``out``; on a CUDA machine it ends when the queued GPU work does."""
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    if torch.cuda.is_initialized():  # only a process that has used CUDA has work queued there
        torch.cuda.synchronize()
    out.append(Timing(time.perf_counter() - wall, time.process_time() - cpu))


def time_call(fn: Callable[[], Any]) -> tuple[Timing, Any]:
    """``fn()`` timed, and what it returned."""
    times: list[Timing] = []
    with timed(times):
        value = fn()
    return times[0], value


def median(times: list[Timing]) -> Timing:
    return Timing(float(statistics.median(t.wall for t in times)), float(statistics.median(t.cpu for t in times)))


def interleaved(sides: dict[str, Callable[[], Timing]], repeats: int) -> dict[str, list[Timing]]:
    """Time each side ``repeats`` times, the order reversed every other round (A B, B A, ...)."""
    names = list(sides)
    out: dict[str, list[Timing]] = {n: [] for n in names}
    for r in range(repeats):
        for n in names if r % 2 == 0 else names[::-1]:
            out[n].append(sides[n]())
    return out


def ratio(
    ours: list[Timing], theirs: list[Timing], work: float, steps: int = 0, names: tuple[str, str] = ("nnmodel", "bare")
) -> dict[str, Any]:
    """Their median time ÷ ours (> 1: ours is faster), wall and CPU, with both rates for ``work`` samples.

    With ``steps`` (optimizer steps per run), also what ours adds to each step over theirs, in µs:
    (t_ours − t_theirs) / steps.
    """
    a, b = median(ours), median(theirs)
    record: dict[str, Any] = {
        "ratio": b.wall / a.wall,
        "ratio_cpu": b.cpu / a.cpu,
        f"{names[0]}_samples_per_s": work / a.wall,
        f"{names[1]}_samples_per_s": work / b.wall,
        f"{names[0]}_s": [round(t.wall, 4) for t in ours],
        f"{names[1]}_s": [round(t.wall, 4) for t in theirs],
    }
    if steps:
        record |= {
            "steps": steps,
            "overhead_us": (a.wall - b.wall) / steps * 1e6,
            "overhead_cpu_us": (a.cpu - b.cpu) / steps * 1e6,
        }
    return record


@contextlib.contextmanager
def discard_output(show: bool = False) -> Iterator[None]:
    """Send stdout and stderr (the progress bar) to /dev/null unless ``show``.

    tqdm still formats every refresh, so its cost is measured; only the terminal's drawing is not.
    """
    if show:
        yield
        return
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull), contextlib.redirect_stderr(devnull):
        yield


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """torch's intra-op threads and the BLAS pools (numpy, scikit-learn) set to ``n`` inside the block."""
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(n):
            yield
    finally:
        torch.set_num_threads(before)
