"""Sweeps that scale: the Optuna search preset, failure-resistant trials, joblib, fork, submitit and SLURM."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import pickle
import shlex
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from cli import summary
from hydra import compose, initialize_config_dir
from hydra.errors import CompactHydraException
from omegaconf import OmegaConf

from hydra_plugins.nnmodel_fork_launcher.fork_launcher import ForkLauncher, concurrent_jobs, fork_unsafe_reason

# optuna 2.10 (hydra-optuna-sweeper's pin) uses SQLAlchemy's pre-2.0 API: imported inside the tests, so this applies
pytestmark = pytest.mark.filterwarnings("ignore:.*declarative_base:DeprecationWarning")
ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
QUICK = ["progress_refresh_rate=0", "diagnostics=off"]
CORES = len(os.sched_getaffinity(0))

spec = importlib.util.spec_from_file_location("train_script", ROOT / "train.py")
train_script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(train_script)


def compose_hydra(*overrides: str):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def sweep(sweep_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "train.py", "-m", *overrides, *QUICK, f"hydra.sweep.dir={sweep_dir}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


# ----------------------------------------------------------------------------- what a trial reports


def test_a_run_reports_its_val_acc_and_a_run_without_one_minus_infinity() -> None:
    assert train_script.objective({"status": "ok", "val/acc": 0.95}) == 0.95
    assert train_script.objective({"status": "ok", "val/acc": None}) == -math.inf
    assert train_script.objective({"status": "ok", "val/acc": math.nan}) == -math.inf
    assert math.isinf(train_script.FAILED_OBJECTIVE) and train_script.FAILED_OBJECTIVE < 0


def test_optuna_takes_minus_infinity_as_a_complete_trial_that_never_wins() -> None:
    import optuna

    # The protocol rests on this: −inf is a value Optuna accepts; NaN it refuses (and the
    # hydra-optuna-sweeper then stops the search: README, "Sweeps that scale").
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    for value in (-math.inf, 0.5, -math.inf):
        study.tell(study.ask(), value)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert study.best_trial.number == 1 and study.best_value == 0.5
    with pytest.raises(ValueError, match="nan"):
        study.tell(study.ask(), math.nan)


@pytest.mark.parametrize(
    ("launcher", "sweeper", "cores", "threads"),
    [
        ({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, {}, 8, None),
        ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 2}, {}, 2, 1),
        ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 4}, {}, 16, 4),
        ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": -1}, {}, 16, 1),
        ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": -3}, {}, 16, 1),
        (
            {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 4},
            {"_target_": "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper", "n_jobs": 2},
            16,
            8,  # Optuna asks 2 trials at a time: only 2 jobs run at once
        ),
        ({"_target_": "hydra_plugins.nnmodel_fork_launcher.fork_launcher.ForkLauncher", "n_jobs": 2}, {}, 2, 1),
        ({"_target_": "hydra_plugins.nnmodel_fork_launcher.fork_launcher.ForkLauncher", "n_jobs": -1}, {}, 16, 1),
        ({"_target_": "hydra_plugins.nnmodel_fork_launcher.fork_launcher.ForkLauncher", "n_jobs": -13}, {}, 16, 4),
        ({"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"}, {}, 8, None),
        (
            {"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher", "cpus_per_task": 3},
            {},
            64,
            3,
        ),
    ],
    ids=[
        "basic",
        "joblib-2-of-2",
        "joblib-4-of-16",
        "joblib-all-of-16",
        "joblib-14-of-16",
        "joblib-optuna",
        "fork-2-of-2",
        "fork-all-of-16",
        "fork-4-of-16",
        "submitit",
        "slurm-3",
    ],
)
def test_each_job_of_a_parallel_sweep_gets_its_share_of_the_cores(launcher, sweeper, cores, threads) -> None:
    hydra_cfg = OmegaConf.create({"launcher": launcher, "sweeper": sweeper})
    assert train_script.thread_share(hydra_cfg, cores) == threads


def test_n_jobs_follows_joblibs_convention() -> None:
    assert [concurrent_jobs(n, 8) for n in (1, 3, 8, 20, -1, -2, -8, -20)] == [1, 3, 8, 20, 8, 7, 1, 1]


def test_the_fork_launcher_refuses_zero_jobs() -> None:
    with pytest.raises(CompactHydraException, match=r"^error: hydra.launcher.n_jobs=0: give the runs at once, or -1"):
        ForkLauncher(n_jobs=0).launch([["seed=0"]], initial_job_idx=0)


def test_the_fork_launcher_refuses_to_fork_a_process_that_runs_a_second_thread() -> None:
    # (other tests of the session may have left threads of their own: the count is whatever runs now)
    stop = threading.Event()
    waiting = threading.Thread(target=stop.wait)
    waiting.start()
    try:
        reason = f"the sweep's process runs {threading.active_count()} threads, and a threaded process can deadlock when it forks"
        assert fork_unsafe_reason() == reason
        launcher = ForkLauncher(n_jobs=2)
        launcher.setup(hydra_context=None, task_function=print, config=compose_hydra())
        with pytest.raises(CompactHydraException) as refused:  # Hydra prints it alone, as one line
            launcher.launch([["seed=0"], ["seed=1"]], initial_job_idx=0)
        assert str(refused.value) == f"error: hydra/launcher=fork: {reason}; use hydra/launcher=joblib instead"
    finally:
        stop.set()
        waiting.join()


def test_a_composed_config_pickles_to_a_forked_worker_and_back() -> None:
    cfg = compose_hydra("trainer.max_epochs=3")
    again = pickle.loads(pickle.dumps(cfg))
    assert OmegaConf.to_container(again) == OmegaConf.to_container(cfg)  # unresolved: hydra's ${now:} stays
    assert again.trainer.max_epochs == 3 and OmegaConf.get_type(again.trainer).__name__ == "TrainerConfig"


# ----------------------------------------------------------------------------- the presets


def test_the_optuna_preset_is_tpe_with_a_fixed_seed_maximising_val_acc() -> None:
    sweeper = compose_hydra("hparams_search=optuna").hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper")
    assert (sweeper.sampler._target_, sweeper.sampler.seed) == ("optuna.samplers.TPESampler", 0)
    assert (sweeper.direction, sweeper.n_trials) == ("maximize", 30)
    assert set(sweeper.params) == {"optimizer.lr", "model.hidden", "model.activation", "optimizer", "model.l2"}


def test_the_search_space_samples_the_lr_on_a_log_scale() -> None:
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides
    from optuna.distributions import CategoricalDistribution, LogUniformDistribution

    params = compose_hydra("hparams_search=optuna").hydra.sweeper.params
    space, fixed = create_params_from_overrides([f"{k}={v}" for k, v in params.items()])
    assert space["optimizer.lr"] == LogUniformDistribution(1e-4, 1.0)
    assert space["model.hidden"] == CategoricalDistribution(["[32]", "[64]", "[128]", "[256]"])
    assert set(space["optimizer"].choices) <= {p.stem for p in (ROOT / "configs" / "optimizer").glob("*.yaml")}
    assert fixed == {}


def test_a_command_line_range_replaces_the_presets_and_a_value_fixes_it() -> None:
    # what hydra-optuna-sweeper does with our params and a command line: later overrides win
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides
    from optuna.distributions import UniformDistribution

    params = compose_hydra("hparams_search=optuna").hydra.sweeper.params
    command_line = ["optimizer.lr=interval(0.001,1.0)", "optimizer=sgd"]
    space, fixed = create_params_from_overrides([*(f"{k}={v}" for k, v in params.items()), *command_line])
    assert space["optimizer.lr"] == UniformDistribution(0.001, 1.0)
    assert fixed == {"optimizer": "sgd"}  # the sweeper drops a fixed key from the search space


def test_the_search_preset_changes_nothing_but_hydra_keys() -> None:
    # so the best trial's command line (without hparams_search=) trains exactly that trial
    def task(*overrides: str) -> dict:
        with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
            return OmegaConf.to_container(compose("train", overrides=list(overrides)))

    assert task("hparams_search=optuna") == task()


def test_the_slurm_preset_runs_one_task_per_device_on_each_node() -> None:
    launcher = compose_hydra(
        "hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2"
    ).hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.nodes, launcher.tasks_per_node, launcher.cpus_per_task) == (2, 4, 2)


def test_an_unknown_search_preset_is_one_line_with_a_suggestion() -> None:
    proc = subprocess.run(
        [sys.executable, "train.py", "-m", "hparams_search=optna"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr == "error: unknown hparams_search 'optna'; did you mean 'optuna'? choose one of: optuna\n"


# ----------------------------------------------------------------------------- real searches and launchers


@pytest.mark.slow
def test_an_optuna_search_records_diverged_trials_and_names_a_best_trial_that_reruns(tmp_path: Path) -> None:
    # the done-point command, shrunk: 4 trials of 3 epochs
    search = ["hparams_search=optuna", "hydra.sweeper.n_trials=4", "optimizer=sgd", "optimizer.lr=choice(0.5,100000.0)"]
    proc = sweep(tmp_path, *search, "trainer.max_epochs=3", "test=false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = summary(tmp_path)
    # TPE's seed 0 draws the same trials every time; a diverged trial (−inf) neither stops nor wins the search
    assert [(r["optimizer.lr"], r["optimizer"], r["status"]) for r in rows] == [
        ("100000.0", "sgd", "diverged"),
        ("100000.0", "sgd", "diverged"),
        ("0.5", "sgd", "ok"),
        ("0.5", "sgd", "ok"),
    ]
    best = max(float(r["val/acc"]) for r in rows if r["status"] == "ok")
    assert best >= 0.9
    optuna_result = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert optuna_result["best_value"] == pytest.approx(best)
    assert (tmp_path / "optimization_history.png").read_bytes()[:8] == PNG_MAGIC
    report = (tmp_path / "report.md").read_text()
    assert "[optimization_history.png](optimization_history.png)" in report
    line = next(line for line in report.splitlines() if line.startswith("- best run: job 2,"))
    assert f"best run: job 2, val/acc {best:.4f}:" in proc.stdout

    # the ready command line trains that trial again, alone, to the same val/acc
    command = shlex.split(line.split("`")[1])
    assert command[:2] == ["python", "train.py"] and "hparams_search=optuna" not in command
    rerun = subprocess.run(
        [sys.executable, *command[1:], f"hydra.run.dir={tmp_path / 'rerun'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert json.loads((tmp_path / "rerun" / "result.json").read_text())["val/acc"] == best


@pytest.mark.slow
def test_a_search_in_which_every_trial_diverges_says_so_in_one_line_and_exits_1(tmp_path: Path) -> None:
    proc = sweep(tmp_path, "hparams_search=optuna", "hydra.sweeper.n_trials=2", "optimizer=sgd", "optimizer.lr=1e5")
    assert proc.returncode == 1, proc.stderr[-3000:]  # a script or CI job sees that the search found nothing
    assert [r["status"] for r in summary(tmp_path)] == ["diverged", "diverged"]
    said = [line for line in proc.stderr.splitlines() if line.startswith("no run succeeded")]
    assert said == ["no run succeeded: all 2 runs diverged or failed (2 diverged, 0 failed)"]
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_joblib_and_fork_run_jobs_in_parallel_with_their_share_of_the_cores_and_the_sequential_results(
    tmp_path: Path,
) -> None:
    runs = ["seed=0,1", "trainer.max_epochs=1"]
    sequential = sweep(tmp_path / "sequential", *runs)
    assert sequential.returncode == 0, sequential.stderr[-3000:]

    def metrics(sweep_dir: Path) -> list[tuple[str, str, str, str]]:
        return [(r["seed"], r["status"], r["val/acc"], r["test/acc"]) for r in summary(sweep_dir)]

    share = max(1, CORES // 2)
    for launcher in ("joblib", "fork"):
        parallel = sweep(tmp_path / launcher, *runs, f"hydra/launcher={launcher}", "hydra.launcher.n_jobs=2")
        assert parallel.returncode == 0, parallel.stderr[-3000:]
        assert metrics(tmp_path / launcher) == metrics(tmp_path / "sequential")
        assert [m[1] for m in metrics(tmp_path / launcher)] == ["ok", "ok"]
        for job in (0, 1):
            assert (
                f"job {job}: {share} torch threads ({CORES} cores)"
                in (tmp_path / launcher / str(job) / "train.log").read_text()
            )
        assert parallel.stdout.count("sweep report:") == 1  # once, after every job
    assert "Launching 2 jobs, 2 at a time in forked processes" in parallel.stderr + parallel.stdout


@pytest.mark.slow
def test_a_submitit_local_sweep_of_two_runs(tmp_path: Path) -> None:
    proc = sweep(
        tmp_path,
        "seed=0,1",
        "trainer.max_epochs=1",
        "test=false",
        "hydra/launcher=submitit_local",
        "hydra.launcher.cpus_per_task=1",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [(r["seed"], r["status"], r["epochs"]) for r in summary(tmp_path)] == [("0", "ok", "1"), ("1", "ok", "1")]
    assert (tmp_path / ".submitit").is_dir()  # submitit's own logs, one folder per job
    assert "job 1: 1 torch threads" in (tmp_path / "1" / "train.log").read_text()
    assert "sweep report:" in proc.stdout


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["experiment=lr,architecture"],
            "error: experiment=lr,architecture: a preset is a study with its own sweep and cannot be swept itself; run "
            "one preset per command (python train.py -m experiment=lr, then python train.py -m experiment=architecture)\n",
        ),
        (  # Optuna would take the preset's grid (seed=0,1,2 among it) as choices beside its own space
            ["experiment=architecture", "hparams_search=optuna"],
            "error: experiment=architecture sweeps its own grid and hparams_search=optuna its own space (the preset's "
            "seeds would become a parameter to tune); choose one: the preset, or the search with the preset's keys "
            "given on the command line\n",
        ),
    ],
)
def test_a_preset_is_not_swept_nor_searched_before_any_run(overrides: list[str], message: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "-m", *overrides],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (proc.returncode, proc.stderr) == (2, message)
    assert not list(tmp_path.iterdir())
