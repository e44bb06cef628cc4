"""``hydra/launcher=fork``: a sweep's runs N at a time on this machine, in processes forked from the sweep's.

Why we write this one ourselves: Hydra's joblib launcher (hydra-joblib-launcher) hard-codes joblib's loky
backend, whose workers are fresh interpreters. Each imports torch, Lightning and nnmodel again before its first
run (5-6 s on 2 cores, longer than a default digits run of 2-3 s), so on a short sweep the parallel runs lose
what they gain. The sweep's own process has imported all of that already (train.py, with the collector frozen
over it): a worker forked from it starts in milliseconds, with nothing to import. This module is the pattern of
Hydra's example launcher plugin (Hydra's documented ``Launcher`` interface, the same loop as its basic
launcher) around the standard library's ``ProcessPoolExecutor`` with the ``fork`` start method. Jobs are
handed out as workers free up; the results come back in the sweep's order.

Stopping: after Ctrl-C (which a terminal sends to the workers too; ``kill -INT`` of the sweep's process alone lets
the runs under way finish), a SIGTERM to the sweep's process (passed on to
the workers), a run interrupted on its own, or a worker that died, no new run starts; the runs under way save their
resumable checkpoints, the sweep's report covers the runs there are, and one line says why it stopped (exit 130,
143 or 1). A worker dies with the sweep's process, even one killed with SIGKILL (Linux).

Forking is safe only from a process that runs one Python thread and has not started CUDA: the sweep's process only
composes configs, so :meth:`ForkLauncher.launch` checks both and otherwise refuses in one line, naming the
launcher to use instead. Forking needs a POSIX system; on Windows (and on macOS, where Python does not fork by
default) use ``hydra/launcher=joblib``. Plugins live in the ``hydra_plugins`` namespace package: Hydra loads only those.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import NoReturn

from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.errors import CompactHydraException  # Hydra prints its message alone, in one line, and exits 1
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies

# The launcher of the sweep being launched. Set in the sweep's process just before the workers fork, so each
# worker has it (with the task function, which need not be picklable) without it being pickled.
_launching: ForkLauncher | None = None
_ctrl_c = False  # in a worker: Ctrl-C came while no run was under way


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


def _note_ctrl_c(signum: int, frame: object) -> None:
    global _ctrl_c
    _ctrl_c = True


def _start_worker(sweep_pid: int) -> None:
    """A worker, as it starts: it dies with the sweep's process (Linux: ``PR_SET_PDEATHSIG``, so that a sweep killed
    by any means leaves no worker behind), and between runs it leaves Ctrl-C to the sweep's process."""
    # forked inside Stop.on_signals: the sweep's handlers are not the worker's. SIGTERM ends an idle worker (in a
    # run, Lightning's handler saves the run first); a Ctrl-C between runs is noted, and the next run does not start
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, _note_ctrl_c)
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):  # a C library without prctl: the worker outlives a kill -9
            ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    _leave_if_orphaned(sweep_pid)  # the sweep's process may have died before prctl took effect


def _leave_if_orphaned(sweep_pid: int) -> None:
    """End this worker when the sweep's process is gone: nothing would hand it a run or read its result."""
    if os.getppid() != sweep_pid:
        os._exit(1)


def _run_job(idx: int, overrides: list[str]) -> JobReturn | None:
    """One job, in a worker: what Hydra's basic launcher does for each job of its loop. None: the run was stopped by
    Ctrl-C or SIGTERM (it has saved its checkpoint and its ``interrupted`` result.json)."""
    launcher = _launching
    assert launcher is not None and launcher.config is not None and launcher.hydra_context is not None
    sweep_config = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, overrides)
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = idx
        sweep_config.hydra.job.num = idx
    signal.signal(signal.SIGINT, signal.default_int_handler)  # the run takes Ctrl-C as a run of its own does
    try:
        if _ctrl_c:  # Ctrl-C came after this worker's last run: the sweep is stopping, this run does not start
            return None
        return run_job(
            hydra_context=launcher.hydra_context,
            task_function=launcher.task_function,
            config=sweep_config,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
    except (KeyboardInterrupt, SystemExit):
        return None
    finally:
        signal.signal(signal.SIGINT, _note_ctrl_c)
        _leave_if_orphaned(launcher.sweep_pid)  # e.g. a run that saved itself on the SIGTERM of PR_SET_PDEATHSIG


class ForkLauncher(Launcher):
    def __init__(self, n_jobs: int = -1) -> None:
        self.n_jobs = int(n_jobs)
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None
        self.sweep_pid = os.getpid()

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
        jobs = iter(enumerate(job_overrides, start=initial_job_idx))
        results: dict[int, JobReturn] = {}
        stop = Stop()
        _launching = self
        # With "fork", the pool starts all its workers at the first submit, before its own thread. A job is handed
        # out when a worker is free, not queued ahead, so that after Ctrl-C no run starts that has not started yet.
        self.sweep_pid = os.getpid()
        pool = ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_start_worker,
            initargs=(self.sweep_pid,),
        )
        running: dict[Future, int] = {}

        started = 0

        def hand_out() -> None:
            nonlocal started
            job = next(jobs, None) if not stop.why else None
            if job is not None:
                running[pool.submit(_run_job, job[0], list(job[1]))] = job[0]
                started += 1

        try:
            with stop.on_signals():
                for _ in range(workers):
                    hand_out()
                while running:
                    for future in wait(running, return_when=FIRST_COMPLETED).done:
                        idx = running.pop(future)
                        try:
                            result = future.result()
                        except BrokenProcessPool:
                            stop.why = stop.why or "a worker process died in a run: killed, or out of memory"
                            continue
                        if result is None:
                            stop.why = stop.why or "a run was interrupted (Ctrl-C or SIGTERM)"
                            continue
                        results[idx] = result
                        hand_out()
        finally:
            pool.shutdown(cancel_futures=True)
            _launching = None
        if stop.why:
            stop.end_sweep(self.config, len(job_overrides) - started)
        return [results[idx] for idx in sorted(results)]


class Stop:
    """Why the sweep stops before its end (None: it does not): Ctrl-C or SIGTERM to the sweep's process, a run that
    was interrupted, a worker that died."""

    def __init__(self) -> None:
        self.why: str | None = None
        self.signal: int | None = None

    def _request(self, signum: int, frame: object) -> None:
        if self.signal is None:
            if signum == signal.SIGTERM:
                doing = "the runs under way save a resumable checkpoint and stop"
            else:  # not passed on: a second SIGINT would stop a run at once, and Ctrl-C reaches the workers itself
                doing = "a run under way that got it too (Ctrl-C in a terminal) saves a resumable checkpoint, "
                doing += "others finish"
            print(f"\n{signal.Signals(signum).name}: no new run starts; {doing}")
        self.signal, self.why = signum, f"{signal.Signals(signum).name}"
        if signum == signal.SIGTERM:  # Ctrl-C reaches the workers from the terminal; a SIGTERM to this process does not
            for child in multiprocessing.active_children():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGTERM)

    @contextlib.contextmanager
    def on_signals(self) -> Iterator[None]:
        """Ctrl-C and SIGTERM set :attr:`why` in the block, instead of ending the sweep's process mid-wait."""
        if threading.current_thread() is not threading.main_thread():  # signal handlers live there only
            yield
            return
        previous = {sig: signal.signal(sig, self._request) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def end_sweep(self, config: DictConfig, not_started: int) -> NoReturn:
        """The report of the runs there are (when the sweep has one: ``hydra.callbacks.sweep_report``), one line of
        why the sweep stopped, and the exit status: 130 for Ctrl-C, 143 for SIGTERM, 1 otherwise."""
        from nnmodel.sweep import report_sweep  # (here: the launcher plugin loads before nnmodel's modules are needed)

        if "sweep_report" in (config.hydra.get("callbacks") or {}):
            report_sweep(Path(str(config.hydra.sweep.dir)), config)
        unstarted = f"; {not_started} of its runs did not start" if not_started else ""
        print(f"error: hydra/launcher=fork: the sweep stopped ({self.why}){unstarted}", file=sys.stderr)
        sys.exit(128 + self.signal if self.signal is not None else 1)
