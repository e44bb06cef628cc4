"""Train a feedforward network: `python train.py [overrides]`, e.g.

    python train.py                                   # digits, 128 ReLU hidden units, Adam
    python train.py model.activation=tanh optimizer=sgd optimizer.lr=0.5
    python train.py -m model.activation=sigmoid,tanh,relu seed=0,1,2   # a sweep

The config lives in configs/ (Hydra); the work is done by nnmodel.training.train. A mistake in the
config is reported as one line (exit 2) before anything is written; a diverged run exits 1, one stopped by
Ctrl-C or SIGTERM 130 or 143 once it has saved a resumable checkpoint. A sweep exits 1 when none of its runs
finished ok (nnmodel.sweep.SweepReport).
"""

from __future__ import annotations

import gc

# Python's cyclic garbage collector walks every object it tracks at each full collection. Importing torch,
# Lightning and Hydra creates about 750,000 such objects and, as they accumulate, seven or eight full
# collections (1.2-1.5 s of a default run of about 8 s here, counted with gc.callbacks), none of which finds
# anything: modules live as long as the process. So the collector is off while this script imports, and what
# was imported is then frozen (gc.freeze, Python's documented way: a permanent generation that collections
# skip), so that from there on the collections walk only what the run itself creates.
_collecting = gc.isenabled()
gc.disable()

import contextlib  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import hydra  # noqa: E402
import torch  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.core.override_parser.types import ValueType  # noqa: E402
from hydra.types import RunMode  # noqa: E402
from lightning.pytorch.utilities.exceptions import SIGTERMException  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

import nnmodel.schema  # noqa: E402, F401  (stores the config groups' schemas before Hydra composes)
from hydra_plugins.nnmodel_fork_launcher.fork_launcher import concurrent_jobs, usable_cores  # noqa: E402
from nnmodel.config import (  # noqa: E402
    GROUPS,
    check_group_choices,
    check_hydra_keys,
    compose_checked,
    override_key,
    parse_overrides,
)
from nnmodel.console import format_warning  # noqa: E402
from nnmodel.errors import ConfigError, DivergedError, Interrupted  # noqa: E402
from nnmodel.training import command_line, discard_hydra_files, train, write_result  # noqa: E402
from nnmodel.validate import validate_config  # noqa: E402

gc.freeze()
if _collecting:
    gc.enable()

# What a run returns to the sweeper: val/acc, or −inf for a run that diverged, failed or has no val/acc.
# hydra-optuna-sweeper tells Optuna a float as a complete trial (−inf: the worst, so the search goes on,
# it never wins, and TPE learns to avoid that region); None becomes a failed trial and a search of failed
# trials ends in a traceback, NaN stops the search (README, "Sweeps that scale").
FAILED_OBJECTIVE = float("-inf")
log = logging.getLogger("train")


OTHER_CONFIG = ("-cp", "--config-path", "-cn", "--config-name", "-cd", "--config-dir", "hydra.searchpath")


def check_command_line(argv: list[str]) -> None:
    """For a single run, compose the config first (nnmodel.config.compose_checked) so that a key that is
    not in the config, a value of the wrong type or an override Hydra cannot parse is one line, exit 2;
    Hydra itself says these in several lines. Sweeps (-m) and other flags go to Hydra as they are."""
    if any(a.split("=")[0] in OTHER_CONFIG for a in argv):
        return  # another config than configs/train.yaml: Hydra's own checks only
    overrides = [a for a in argv if ("=" in a or a.startswith("~")) and not a.lstrip("+~").startswith("hydra.")]
    try:
        check_group_choices(overrides)
        if {"-m", "--multirun"} & set(argv):
            check_sweep_presets(overrides)
            if not any(a.lstrip("+").startswith("hydra.sweeper.params") for a in argv):  # keys swept there too
                check_some_run_starts(overrides)
        if not any(a.startswith("-") for a in argv):
            check_hydra_keys(argv)
            if overrides:
                compose_checked(overrides)
        elif {"-m", "--multirun"} & set(argv) and any(a.startswith("~") for a in overrides):
            # a sweep's deletions (~data.batch_size), with the group choices they may need, when none is swept
            chosen = [a for a in overrides if a.partition("=")[0] in GROUPS]
            if not any("," in a or "(" in a for a in chosen):
                compose_checked([*chosen, *(a for a in overrides if a.startswith("~"))])
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def check_sweep_presets(overrides: list[str]) -> None:
    """An ``experiment=`` preset is a study that sweeps its own grid (its ``hydra.sweeper.params``): swept itself,
    Hydra would run each preset once at its base values, and under ``hparams_search=optuna`` its grid would become
    Optuna's choices (its seeds a parameter to tune) beside the search's own space. Both are refused."""
    chosen = [o.partition("=")[2] for o in overrides if override_key(o) == "experiment"]
    if not chosen:
        return
    if any("," in value or "(" in value for value in chosen):
        raise ConfigError(
            f"experiment={chosen[-1]}: a preset is a study with its own sweep and cannot be swept itself; run one "
            "preset per command (python train.py -m experiment=lr, then python train.py -m experiment=architecture)"
        )
    search = [o.partition("=")[2] for o in overrides if override_key(o) == "hparams_search"]
    if search:
        raise ConfigError(
            f"experiment={chosen[-1]} sweeps its own grid and hparams_search={search[-1]} its own space (the preset's "
            "seeds would become a parameter to tune); choose one: the preset, or the search with the preset's keys "
            "given on the command line"
        )


MOST_RUNS_CHECKED = 64  # a grid of more runs is not composed run by run here; its refused runs are recorded as failed


def check_some_run_starts(overrides: list[str]) -> None:
    """A grid sweep none of whose runs would start (a mistake in a key it does not vary, ``-m seed=0,1
    model.hidden=[0]``) is refused once, before anything is launched or written, instead of recording every run as
    failed. Each run's config is composed and checked as train.py checks a run's (up to :data:`MOST_RUNS_CHECKED`
    runs). Not for what the command line does not enumerate: an Optuna search, ``interval()`` or ``glob()``, a preset's
    own grid (``experiment=``)."""
    launcher = next((o.partition("=")[2] for o in reversed(overrides) if override_key(o) == "hydra/launcher"), "")
    if "slurm" in launcher:  # the runs start on the cluster's nodes, not in this (login) node's process
        return
    runs: list[list[str]] = [[]]
    for override in parse_overrides([o for o in overrides if not o.startswith("hydra/")]):
        if override.key_or_group in ("experiment", "hparams_search"):
            return
        if not override.is_sweep_override():
            values = [override.input_line]
        elif override.value_type in (ValueType.CHOICE_SWEEP, ValueType.SIMPLE_CHOICE_SWEEP, ValueType.RANGE_SWEEP):
            values = [f"{override.get_key_element()}={value}" for value in override.sweep_string_iterator()]
        else:
            return
        runs = [[*run, value] for run in runs for value in values]
        if len(runs) > MOST_RUNS_CHECKED:
            return
    refused: ConfigError | None = None
    for run in runs:
        try:
            with warnings.catch_warnings():  # a setting that changes nothing: each run says it, once, as it starts
                warnings.simplefilter("ignore")
                validate_config(compose_checked(run), memory=False)  # CUDA stays unstarted: fork may follow
            return  # this one would start
        except ConfigError as err:
            refused = refused or err
    if refused is not None:
        n = len(runs)
        which = "the sweep's one run" if n == 1 else f"the first of the sweep's {n} runs; each other is refused too"
        raise ConfigError(f"{refused} ({which}: none was started)")


def objective(result: dict) -> float:
    """The value a sweeper optimises: the run's val/acc, or :data:`FAILED_OBJECTIVE`."""
    value = result.get("val/acc")
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else FAILED_OBJECTIVE


def thread_share(hydra_cfg: DictConfig, cores: int) -> int | None:
    """torch threads for one job of a parallel sweep: its share of the cores, not all of them each.

    joblib and fork run ``hydra.launcher.n_jobs`` jobs at once (−1 = as many as cores, −2 = one fewer:
    joblib's convention), at most ``hydra.sweeper.n_jobs`` for an Optuna search; submitit gives each task
    ``hydra.launcher.cpus_per_task``. None: one job at a time, torch's default is right.
    """
    launcher, sweeper = hydra_cfg.launcher, hydra_cfg.sweeper
    target = str(launcher.get("_target_", ""))
    if "joblib" in target or target.endswith(".ForkLauncher"):
        n_jobs = concurrent_jobs(int(launcher.get("n_jobs") or -1), cores)
        if "optuna" in str(sweeper.get("_target_", "")):
            n_jobs = min(n_jobs, int(sweeper.get("n_jobs") or 1))
        return max(1, cores // n_jobs)
    if "submitit" in target and launcher.get("cpus_per_task"):
        return int(launcher.cpus_per_task)
    return None


def use_thread_share(hydra_cfg: DictConfig) -> None:
    cores = usable_cores()
    threads = thread_share(hydra_cfg, cores)
    if threads is not None:
        torch.set_num_threads(threads)
        log.info(f"job {hydra_cfg.job.num}: {threads} torch threads ({cores} cores)")


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    sweeping = hydra_cfg.mode == RunMode.MULTIRUN
    if sweeping:
        use_thread_share(hydra_cfg)
    try:
        return objective(train(cfg))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        if not sweeping:
            sys.exit(2)
        # in a sweep the refused job is a run of the report: recorded as failed, with the line that says why
        # (never over the result.json of a run that is there: the refusal may be that the directory holds one)
        if not (run_dir / "result.json").exists():
            write_result(run_dir, {"status": "failed", "message": str(err), "overrides": command_line(hydra_cfg)})
    except DivergedError as err:
        print(f"error: {err}", file=sys.stderr)
        if not sweeping:
            sys.exit(1)
    except SIGTERMException:
        sys.exit(143)
    except (KeyboardInterrupt, SystemExit) as err:  # Ctrl-C or SIGTERM: the run has saved its checkpoint, result.json
        # the shell's status for a process a signal stopped, 128 + signum (130, 143), as the fork launcher's sweep
        status = err.exit_status if isinstance(err, Interrupted) else 130 if isinstance(err, KeyboardInterrupt) else 1
        if not sweeping:
            sys.exit(status)
        if "BasicLauncher" in str(hydra_cfg.launcher.get("_target_", "")):
            # the jobs run one after another in this process: the sweep stops here, with the report of its runs
            # (the fork launcher does the same for its workers; joblib's are Hydra's plugin's to stop)
            from nnmodel import sweep  # (pandas: imported by a sweep's end only)

            sweep.report_sweep(Path(str(hydra_cfg.sweep.dir)), sweep.running_sweep)
            print(
                f"error: the sweep stopped: run {hydra_cfg.job.num} was interrupted (Ctrl-C or SIGTERM); the runs "
                "after it did not start",
                file=sys.stderr,
            )
            sys.exit(status)
        raise
    except Exception as err:
        if not sweeping:
            raise
        # In a sweep one broken run must not stop the others: record it and go on.
        message = f"{type(err).__name__}: {err}"
        write_result(run_dir, {"status": "failed", "message": message, "overrides": command_line(hydra_cfg)})
        print(f"error: run {hydra_cfg.job.num} failed: {type(err).__name__}: {err}", file=sys.stderr)
    finally:
        # Hydra's directory, when the run wrote elsewhere (paths.output_dir, a resumed run's own directory) or was
        # refused or stopped before writing anything: whatever the outcome, no empty outputs/DATE/TIME is left
        with contextlib.suppress(OSError):  # e.g. Windows, where Hydra's train.log is still open
            discard_hydra_files(run_dir)
    return FAILED_OBJECTIVE


if __name__ == "__main__":
    warnings.formatwarning = format_warning  # nnmodel's warnings as one line, warning: ...
    check_command_line(sys.argv[1:])
    main()
