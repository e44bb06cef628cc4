"""``hydra/launcher=fork``: a sweep's runs N at a time on this machine, in processes forked from the sweep's.

Why we write this one ourselves: Hydra's joblib launcher (hydra-joblib-launcher) hard-codes joblib's loky
backend, whose workers are fresh interpreters. Each imports torch, Lightning and nnmodel again before its first
run (5-6 s on 2 cores, longer than a default digits run of 2-3 s), so on a short sweep the parallel runs lose
what they gain. The sweep's own process has imported all of that already (train.py, with the collector frozen
over it): a worker forked from it starts in milliseconds, with nothing to import. This module is the pattern of
Hydra's example launcher plugin (Hydra's documented ``Launcher`` interface, the same loop as its basic
launcher) around the standard library's ``ProcessPoolExecutor`` with the ``fork`` start method. Jobs are
handed out as workers free up; the results come back in the sweep's order.

Forking is safe only from a process that runs one Python thread and has not started CUDA: the sweep's process only
composes configs, so :meth:`ForkLauncher.launch` checks both and otherwise refuses in one line, naming the
launcher to use instead. Forking needs a POSIX system; on Windows (and on macOS, where Python does not fork by
default) use ``hydra/launcher=joblib``. Plugins live in the ``hydra_plugins`` namespace package: Hydra loads only those.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.errors import CompactHydraException  # Hydra prints its message alone, in one line, and exits 1
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)

# The launcher of the sweep being launched. Set in the sweep's process just before the workers fork, so each
# worker has it (with the task function, which need not be picklable) without it being pickled.
_launching: ForkLauncher | None = None


def concurrent_jobs(n_jobs: int, cores: int) -> int:
    """Jobs at once for ``n_jobs`` (joblib's convention: −1 = one per core, −2 = one fewer, ...)."""
    return max(1, cores + 1 + n_jobs if n_jobs < 0 else n_jobs)


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def fork_unsafe_reason() -> str | None:
    """Why this process must not fork, or None: more than one thread, CUDA started, no fork."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return "this platform cannot fork"
    # Python's threads, not the OS's: numpy's and SciPy's OpenBLAS start idle pool threads as they load, and
    # OpenBLAS stops them around a fork itself (its pthread_atfork handler), as every forked numpy worker relies on.
    threads = threading.active_count()
    if threads > 1:
        return f"the sweep's process runs {threads} threads, and a threaded process can deadlock when it forks"
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        return "the sweep's process has started CUDA, which a forked process cannot use"
    return None


def _run_job(idx: int, overrides: list[str]) -> JobReturn:
    """One job, in a worker: what Hydra's basic launcher does for each job of its loop."""
    launcher = _launching
    assert launcher is not None and launcher.config is not None and launcher.hydra_context is not None
    sweep_config = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, overrides)
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = idx
        sweep_config.hydra.job.num = idx
    return run_job(
        hydra_context=launcher.hydra_context,
        task_function=launcher.task_function,
        config=sweep_config,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )


class ForkLauncher(Launcher):
    def __init__(self, n_jobs: int = -1) -> None:
        self.n_jobs = int(n_jobs)
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.task_function = task_function
        self.hydra_context = hydra_context

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        global _launching
        # Refused here, not in __init__: Hydra prints an error of instantiation in several lines.
        if self.n_jobs == 0:  # joblib refuses it too
            raise CompactHydraException("error: hydra.launcher.n_jobs=0: give the runs at once, or -1 for one per core")
        reason = fork_unsafe_reason()
        if reason is not None:
            raise CompactHydraException(f"error: hydra/launcher=fork: {reason}; use hydra/launcher=joblib instead")
        setup_globals()
        assert self.config is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        workers = min(concurrent_jobs(self.n_jobs, usable_cores()), len(job_overrides))
        log.info(f"Launching {len(job_overrides)} jobs, {workers} at a time in forked processes")
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
        _launching = self
        # With "fork", the pool starts all its workers at the first submit, before its own thread.
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
        try:
            futures = [
                pool.submit(_run_job, idx, list(overrides))
                for idx, overrides in enumerate(job_overrides, start=initial_job_idx)
            ]
            return [future.result() for future in futures]
        except BrokenProcessPool as err:
            raise CompactHydraException(
                "error: hydra/launcher=fork: a worker process died (killed, or out of memory) in the middle of a run"
            ) from err
        finally:
            pool.shutdown(cancel_futures=True)  # after Ctrl-C or a dead worker, start no more runs
            _launching = None
