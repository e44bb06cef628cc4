"""Sweeps whose runs fail: every launched job is a run of the report (status, one-line message), a swept key is
never "the same in every run", and an Optuna search of no trials is refused in one line (nnmodel.sweep)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from cli import summary
from omegaconf import OmegaConf
from test_search import QUICK, ROOT
from test_search import sweep as search_sweep
from test_sweep import cells, fake_run, ok

from nnmodel.errors import ConfigError
from nnmodel.sweep import SweepReport, check_sweeper, swept_keys, write_report

RELUX = (
    "model.activation: unknown activation 'relux'; did you mean 'relu'? choose one of: leaky_relu, linear, relu, "
    "sigmoid, step, tanh (or register your own, in the process that trains, or give an import path "
    "'package.module:function', which worker processes such as GridSearchCV(n_jobs=2)'s import too)"
)
LR0 = "optimizer.lr must be a number in (0, inf), got 0.0"
OPTUNA = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
FORK = "hydra_plugins.nnmodel_fork_launcher.fork_launcher.ForkLauncher"
SMALL = ["data=xor", "trainer.max_epochs=1", "test=false"]


# ----------------------------------------------------------------------------- the report


def test_failed_runs_are_listed_with_their_messages_and_counted_in_their_setting(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    fake_run(sweep, 0, ["model.activation=relux", "seed=0"], {"status": "failed", "message": RELUX})
    fake_run(sweep, 1, ["model.activation=tanh", "seed=0"], ok(0.75, 0.5, 0.6))
    out = write_report(sweep)
    assert out["runs"] == 2 and out["keys"] == ["model.activation"] and out["constant"] == {}
    assert [(r["model.activation"], r["status"], r["message"]) for r in summary(sweep)] == [
        ("relux", "failed", RELUX),
        ("tanh", "ok", ""),
    ]
    lines = out["report_md"].read_text().splitlines()
    assert (
        "- 2 runs in 2 settings; mean ± std over each setting's `ok` runs (seeds; one run: its value), best mean val/acc first"
        in lines
    )
    start = lines.index("- 1 run did not finish `ok`:")
    assert lines[start + 1] == f"  - job 0, failed: `python train.py model.activation=relux seed=0`: {RELUX}"
    table = [cells(line) for line in lines if line.startswith("| `")]
    assert table == [
        ["`tanh`", "1", "0.7500 (1 run)", "0.5000 (1 run)", "0.6000 (1 run)", "0", "0"],
        ["`relux`", "1", "—", "—", "—", "0", "1"],
    ]


def test_a_swept_key_is_never_the_same_in_every_run(tmp_path: Path) -> None:
    # a sweep of two values of which only one left a run (the other's job killed with its directory)
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    task = ["model.activation=relux,tanh", "trainer.max_epochs=1"]
    (sweep / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {"overrides": {"task": task}}}))
    fake_run(sweep, 1, ["model.activation=tanh", "trainer.max_epochs=1"], ok(0.75, 0.5, 0.6))
    out = write_report(sweep)
    assert out["keys"] == ["model.activation"] and out["constant"] == {"trainer.max_epochs": "1"}
    lines = out["report_md"].read_text().splitlines()
    assert "- the same in every run: `trainer.max_epochs=1`" in lines
    assert ["model.activation", "n", "val/acc", "test/acc", "val/loss", "diverged", "failed"] in map(cells, lines)
    assert [cells(line) for line in lines if line.startswith("| `")] == [
        ["`tanh`", "1", "0.7500 (1 run)", "0.5000 (1 run)", "0.6000 (1 run)", "0", "0"]
    ]


def test_the_swept_keys_come_from_the_command_line_and_the_sweeper_params() -> None:
    hydra_cfg = {
        "overrides": {"task": ["seed=range(3)", "optimizer=sgd", "'model.hidden=[8]'", "+x=a,b", "data=xor"]},
        "sweeper": {"params": {"optimizer": "choice(sgd, adam)", "optimizer.lr": "tag(log, interval(1e-4, 1.0))"}},
    }
    # optimizer=sgd on the command line fixes what the params searched over
    assert swept_keys(hydra_cfg) == {"seed", "x", "optimizer.lr"}
    assert swept_keys({}) == set()


def test_a_sweep_in_which_every_run_was_refused_says_so_in_one_line(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    for seed in (0, 1):
        fake_run(sweep, seed, [f"seed={seed}", "optimizer.lr=0"], {"status": "failed", "message": LR0})
    out = write_report(sweep)
    assert out["best"] is None and out["runs"] == 2
    lines = out["report_md"].read_text().splitlines()
    assert "- no run succeeded: all 2 runs diverged or failed (0 diverged, 2 failed)" in lines
    assert f"  - job 1, failed: `python train.py seed=1 optimizer.lr=0`: {LR0}" in lines


# ----------------------------------------------------------------------------- an Optuna search of no trials


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("n_trials", 0, "hydra.sweeper.n_trials must be an integer >= 1, got 0"),
        ("n_trials", -1, "hydra.sweeper.n_trials must be an integer >= 1, got -1"),
        ("n_jobs", 0, "hydra.sweeper.n_jobs must be an integer >= 1, got 0"),
    ],
)
def test_an_optuna_search_of_no_trials_is_refused(key, value, message) -> None:
    sweeper = {"_target_": OPTUNA, "n_trials": 30, "n_jobs": 1, "direction": "maximize"} | {key: value}
    with pytest.raises(ConfigError) as refused:
        check_sweeper(OmegaConf.create({"sweeper": sweeper, "launcher": {}}))
    assert str(refused.value) == message
    basic = {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"}
    check_sweeper(OmegaConf.create({"sweeper": basic, "launcher": {}}))


@pytest.mark.parametrize(
    ("sweeper", "task", "message"),
    [
        (
            {"direction": "minimize"},
            [],
            "hydra.sweeper.direction=minimize: a trial's value is its val/acc, and a failed trial's -inf (which a "
            "search that minimizes would take as its best); leave it maximize",
        ),
        (
            {},
            ["optimizer.lr=interval(1.0,0.1)"],
            "optimizer.lr=interval(1.0,0.1): an interval(low, high) needs low < high",
        ),
        (
            {},
            ["optimizer.lr=tag(log,interval(0.0,1.0))"],
            "optimizer.lr=tag(log,interval(0.0,1.0)): an interval(low, high) needs 0 < low < high (a log scale)",
        ),
        (
            {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"},
            ["optimizer.lr=interval(0.1,1)"],
            "optimizer.lr=interval(0.1,1): an interval is a range of numbers that only a search draws from; add "
            "hparams_search=optuna, or give the values to run (optimizer.lr=0.1,0.5)",
        ),
    ],
)
def test_a_search_that_could_not_run_as_meant_is_refused(sweeper: dict, task: list[str], message: str) -> None:
    optuna = {"_target_": OPTUNA, "n_trials": 30, "n_jobs": 1, "direction": "maximize"}
    hydra_cfg = {"sweeper": optuna | sweeper, "launcher": {}, "overrides": {"task": task}}
    with pytest.raises(ConfigError) as refused:
        check_sweeper(OmegaConf.create(hydra_cfg))
    assert str(refused.value) == message
    check_sweeper(
        OmegaConf.create({**hydra_cfg, "sweeper": optuna, "overrides": {"task": ["optimizer.lr=interval(0.1,1)"]}})
    )


def test_a_database_the_installed_optuna_cannot_use_is_refused() -> None:
    from importlib.metadata import version

    from nnmodel.sweep import check_storage

    check_storage(None)
    optuna, sqlalchemy = version("optuna"), version("sqlalchemy")
    if int(optuna.split(".")[0]) >= 3 or int(sqlalchemy.split(".")[0]) < 2:
        check_storage("sqlite:///optuna.db")  # a pair that works together
        return
    with pytest.raises(ConfigError) as refused:
        check_storage("sqlite:///optuna.db")
    assert str(refused.value) == (
        f"hydra.sweeper.storage=sqlite:///optuna.db: optuna {optuna} (what hydra-optuna-sweeper allows) cannot use a "
        f"database with SQLAlchemy {sqlalchemy}; leave hydra.sweeper.storage=null (the study in memory)"
    )


@pytest.mark.parametrize("launcher", ["hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", FORK])
def test_a_launcher_of_no_jobs_is_refused(launcher: str) -> None:
    hydra_cfg = lambda n_jobs: OmegaConf.create({"sweeper": {}, "launcher": {"_target_": launcher, "n_jobs": n_jobs}})
    with pytest.raises(ConfigError) as refused:
        check_sweeper(hydra_cfg(0))
    message = "hydra.launcher.n_jobs must be a number of jobs at once (1, 2, ...) or -1 (one per core), got 0"
    assert str(refused.value) == message
    for n_jobs in (None, 1, 3, -1, -2):
        check_sweeper(hydra_cfg(n_jobs))


def test_the_callback_refuses_it_before_the_search_starts(capsys) -> None:
    sweeper = {"_target_": OPTUNA, "n_trials": 0, "n_jobs": 1, "direction": "maximize"}
    config = OmegaConf.create({"hydra": {"sweeper": sweeper, "launcher": {}}})
    with pytest.raises(SystemExit) as exited:
        SweepReport().on_multirun_start(config)
    assert exited.value.code == 2
    assert capsys.readouterr().err == "error: hydra.sweeper.n_trials must be an integer >= 1, got 0\n"


# ----------------------------------------------------------------------------- real sweeps


def sweep(sweep_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    return search_sweep(sweep_dir, *overrides, *SMALL)  # test_search's, on a smaller run


@pytest.mark.slow
@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=fork", "hydra.launcher.n_jobs=2"]], ids=["basic", "fork"])
def test_a_sweep_records_the_run_it_refused(tmp_path: Path, launcher: list[str]) -> None:
    proc = sweep(tmp_path, "model.activation=relux,tanh", *launcher)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [(r["model.activation"], r["status"], r["message"]) for r in summary(tmp_path)] == [
        ("relux", "failed", RELUX),
        ("tanh", "ok", ""),
    ]
    assert f"error: {RELUX}" in proc.stderr.splitlines()
    assert f"sweep report: {tmp_path / 'report.md'} (2 runs), " in proc.stdout
    report = (tmp_path / "report.md").read_text()
    assert "`model.activation=" not in report.split("- the same in every run: ")[1].splitlines()[0]
    assert "- 2 runs in 2 settings;" in report


@pytest.mark.slow
def test_a_sweep_whose_every_run_would_be_refused_is_refused_once_before_it_starts(tmp_path: Path) -> None:
    # before: both runs launched, each recorded as failed, and the sweep exited 0
    proc = sweep(tmp_path / "s", "seed=0,1", "optimizer.lr=0")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.splitlines()[-1] == (
        f"error: {LR0} (the first of the sweep's 2 runs; each other is refused too: none was started)"
    )
    assert not (tmp_path / "s").exists()
    # a mistake in one value of a swept key leaves the other runs: the sweep starts, and records the refused run
    ok = sweep(tmp_path / "t", "seed=0", "optimizer.lr=0,0.01")
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert [(r["optimizer.lr"], r["status"]) for r in summary(tmp_path / "t")] == [("0", "failed"), ("0.01", "ok")]


@pytest.mark.slow
def test_a_sweep_none_of_whose_runs_finishes_ok_writes_its_report_and_exits_1(tmp_path: Path) -> None:
    # both runs start (nothing in their configs is refused) and diverge: before, the sweep exited 0
    proc = sweep(tmp_path, "seed=0,1", "optimizer=sgd", "optimizer.lr=1e5")
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert [(r["seed"], r["status"]) for r in summary(tmp_path)] == [("0", "diverged"), ("1", "diverged")]
    assert proc.stderr.splitlines()[-1] == "no run succeeded: all 2 runs diverged or failed (2 diverged, 0 failed)"
    assert (tmp_path / "report.md").is_file() and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_an_optuna_search_records_its_refused_trials(tmp_path: Path) -> None:
    proc = sweep(tmp_path, "hparams_search=optuna", "hydra.sweeper.n_trials=3", "model.activation=choice(relux,tanh)")
    assert proc.returncode == 0, proc.stderr[-3000:]
    # TPE's seed 0 draws relux, relux, tanh
    assert [(r["model.activation"], r["status"], r["message"]) for r in summary(tmp_path)] == [
        ("relux", "failed", RELUX),
        ("relux", "failed", RELUX),
        ("tanh", "ok", ""),
    ]
    assert f"sweep report: {tmp_path / 'report.md'} (3 runs), " in proc.stdout
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("n_trials", [0, -1])
def test_an_optuna_search_of_no_trials_is_one_line_and_exit_2(tmp_path: Path, n_trials: int) -> None:
    proc = sweep(tmp_path / "sweep", "hparams_search=optuna", f"hydra.sweeper.n_trials={n_trials}")
    assert proc.returncode == 2
    assert proc.stderr == f"error: hydra.sweeper.n_trials must be an integer >= 1, got {n_trials}\n"
    assert not (tmp_path / "sweep").exists()


@pytest.mark.slow
def test_a_sweep_into_the_directory_of_another_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    first = sweep(tmp_path, "seed=0,1", "optimizer.lr=0,0.01")  # half of it refused: a sweep directory made quickly
    assert first.returncode == 0, first.stderr[-3000:]
    before = {p: p.read_bytes() if p.is_file() else None for p in tmp_path.rglob("*")}
    again = sweep(tmp_path, "seed=0,1")
    assert again.returncode == 2
    assert again.stderr == (
        f"error: hydra.sweep.dir: '{tmp_path}' already holds a sweep (multirun.yaml, summary.csv, report.md, 0/, 1/, "
        "2/); "
        "give a new directory\n"
    )
    assert {p: p.read_bytes() if p.is_file() else None for p in tmp_path.rglob("*")} == before


# ----------------------------------------------------------------------------- a fork sweep stopped


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "to_group"), [(signal.SIGINT, True), (signal.SIGTERM, False)], ids=["ctrl_c", "kill"])
def test_a_fork_sweep_stopped_starts_no_new_run_reports_and_leaves_no_process(
    tmp_path: Path, sig: signal.Signals, to_group: bool
) -> None:
    # Ctrl-C reaches the whole process group from a terminal; `kill PID` (SIGTERM) only the sweep's own process
    args = ["data=xor", "trainer.max_epochs=100000", "seed=0,1,2,3", "hydra/launcher=fork", "hydra.launcher.n_jobs=2"]
    proc = subprocess.Popen(
        [sys.executable, "train.py", "-m", *args, *QUICK, f"hydra.sweep.dir={tmp_path}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not all((tmp_path / n / "checkpoints" / "last.ckpt").exists() for n in "01"):  # both runs under way
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.2)
    time.sleep(1)
    os.killpg(proc.pid, sig) if to_group else proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err[-3000:]
    assert "Traceback" not in err
    assert (
        err.splitlines()[-1]
        == f"error: hydra/launcher=fork: the sweep stopped ({sig.name}); 2 of its runs did not start"
    )
    assert [(r["seed"], r["status"]) for r in summary(tmp_path)] == [("0", "interrupted"), ("1", "interrupted")]
    assert not (tmp_path / "2").exists() and not (tmp_path / "3").exists()
    assert "- 2 runs did not finish `ok`:" in (tmp_path / "report.md").read_text().splitlines()
    time.sleep(1)
    with pytest.raises(ProcessLookupError):  # no worker left behind
        os.killpg(proc.pid, 0)


@pytest.mark.slow
def test_a_fork_sweep_killed_with_sigkill_leaves_no_worker_idle_or_in_a_run(tmp_path: Path) -> None:
    # job 0 ends at once and leaves its worker idle; job 1 trains on: kill -9 of the sweep's process reaches both
    # only through PR_SET_PDEATHSIG's SIGTERM, which the idle worker must not ignore, nor the other outlive its run
    args = ["data=xor", "trainer.max_epochs=1,100000", "hydra/launcher=fork", "hydra.launcher.n_jobs=2"]
    proc = subprocess.Popen(
        [sys.executable, "train.py", "-m", *args, *QUICK, f"hydra.sweep.dir={tmp_path}"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not ((tmp_path / "0" / "result.json").exists() and (tmp_path / "1" / "checkpoints" / "last.ckpt").exists()):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    time.sleep(1)
    proc.kill()
    proc.wait(timeout=10)
    deadline = time.monotonic() + 60
    while True:  # the workers are in the sweep's process group; it is empty once they are gone
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "a worker outlived the sweep's process"
        time.sleep(0.2)
    assert [json.loads((tmp_path / n / "result.json").read_text())["status"] for n in "01"] == ["ok", "interrupted"]


@pytest.mark.slow
@pytest.mark.parametrize("search", [["seed=0,1,2"], ["hparams_search=optuna", "hydra.sweeper.n_trials=3"]],
                         ids=["grid", "optuna"])  # fmt: skip
def test_a_sweep_of_one_run_at_a_time_stopped_by_ctrl_c_reports_and_starts_no_new_run(
    tmp_path: Path, search: list[str]
) -> None:
    args = ["data=xor", "trainer.max_epochs=100000", *search]
    proc = subprocess.Popen(
        [sys.executable, "train.py", "-m", *args, *QUICK, f"hydra.sweep.dir={tmp_path}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not (tmp_path / "0" / "checkpoints" / "last.ckpt").exists():
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.2)
    time.sleep(1)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]  # 128 + SIGINT, as the fork launcher's sweep and a run of its own
    assert "Traceback" not in err
    assert err.splitlines()[-1] == (
        "error: the sweep stopped: run 0 was interrupted (Ctrl-C or SIGTERM); the runs after it did not start"
    )
    assert [(r["seed"], r["status"]) for r in summary(tmp_path)] == [("0", "interrupted")]
    assert "no run succeeded: its 1 run was interrupted (0 diverged, 0 failed, 1 interrupted)" in err
    assert not (tmp_path / "1").exists()
    # the sweep's command, also for Optuna's sweeper, which writes no multirun.yaml of its own
    command = next(line for line in (tmp_path / "report.md").read_text().splitlines() if line.startswith("- command:"))
    assert command.startswith("- command: `python train.py -m data=xor trainer.max_epochs=100000 ")
    assert set(search) <= set(command.strip("`").split())
