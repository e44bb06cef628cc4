"""Sweep reports (nnmodel.sweep) and the lecture's study presets (configs/experiment/)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cli import summary
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser

from nnmodel.sweep import write_report
from nnmodel.training import train

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted(p.stem for p in (ROOT / "configs" / "experiment").glob("*.yaml"))
CALLBACK = "++hydra.callbacks.sweep_report._target_=nnmodel.sweep.SweepReport"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fake_run(sweep_dir: Path, num: int, overrides: list[str], result: dict | None) -> None:
    """A run directory as train.py leaves it: .hydra/overrides.yaml and result.json."""
    run_dir = sweep_dir / str(num)
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if result is not None:
        (run_dir / "result.json").write_text(json.dumps(result))


def cells(line: str) -> list[str]:
    """A markdown table row's cells, without the padding that aligns the columns."""
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def ok(val_acc: float, test_acc: float, val_loss: float) -> dict:
    return {
        "status": "ok",
        "val/acc": val_acc,
        "val/loss": val_loss,
        "test/acc": test_acc,
        "epochs": 2,
        "seconds": 1.5,
        "history": {
            "val/acc": [val_acc / 2, val_acc],
            "val/loss": [2 * val_loss, val_loss],
            "train/loss_epoch": [1.0, 0.5],
            "train/acc": [0.5, 0.7],
        },
    }


@pytest.fixture
def synthetic_sweep(tmp_path: Path) -> Path:
    """Two settings × two seeds: sigmoid (0.80, 0.90) and relu (0.95, and one diverged), plus a failed run."""
    sweep = tmp_path / "sweep"
    common = ["+trainer.max_epochs=2"]
    fake_run(sweep, 0, ["model.activation=sigmoid", "seed=0", *common], ok(0.80, 0.78, 0.6))
    fake_run(sweep, 1, ["model.activation=sigmoid", "seed=1", *common], ok(0.90, 0.88, 0.4))
    fake_run(sweep, 2, ["model.activation=relu", "seed=0", *common], ok(0.95, 0.94, 0.2))
    diverged = {
        "status": "diverged",
        "val/acc": None,
        "val/loss": None,
        "epochs": 0,
        "seconds": 0.25,
        "history": {"train/loss_epoch": [], "train/acc": [], "val/loss": [], "val/acc": []},
    }
    fake_run(sweep, 3, ["model.activation=relu", "seed=1", *common], diverged)
    fake_run(sweep, 10, ["model.activation=tanh", "seed=0", *common], None)  # killed before result.json
    return sweep


def test_summary_csv_has_one_row_per_run_with_override_and_result_columns(synthetic_sweep: Path) -> None:
    out = write_report(synthetic_sweep)
    assert out["runs"] == 5
    with open(synthetic_sweep / "summary.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == [
        "model.activation",
        "seed",
        "trainer.max_epochs",
        "status",
        "epochs",
        "val/acc",
        "val/loss",
        "test/acc",
        "seconds",
        "message",
    ]
    killed = "no result.json: the run was killed, or crashed before writing it"
    assert rows[1:] == [
        ["sigmoid", "0", "2", "ok", "2", "0.8", "0.6", "0.78", "1.5", ""],
        ["sigmoid", "1", "2", "ok", "2", "0.9", "0.4", "0.88", "1.5", ""],
        ["relu", "0", "2", "ok", "2", "0.95", "0.2", "0.94", "1.5", ""],
        ["relu", "1", "2", "diverged", "0", "", "", "", "0.25", ""],
        ["tanh", "0", "2", "failed", "", "", "", "", "", killed],  # job 10 after job 3: numeric order
    ]


def test_report_md_puts_the_best_mean_val_acc_first_with_mean_and_std(synthetic_sweep: Path) -> None:
    write_report(synthetic_sweep)
    report = (synthetic_sweep / "report.md").read_text()
    assert f"# Sweep report: `{synthetic_sweep}`" in report
    assert "`trainer.max_epochs=2`" in report  # constant overrides go to the header, not the table
    assert "[curves.png](curves.png)" in report
    # the table is pandas' to_markdown: cells padded to align the columns, compared without the padding
    table = [cells(line) for line in report.splitlines() if line.startswith("| `")]
    assert table == [
        ["`relu`", "2", "0.9500 (1 run)", "0.9400 (1 run)", "0.2000 (1 run)", "1", "0"],
        ["`sigmoid`", "2", "0.8500 ± 0.0707", "0.8300 ± 0.0707", "0.5000 ± 0.1414", "0", "0"],
        ["`tanh`", "1", "—", "—", "—", "0", "1"],
    ]
    header = ["model.activation", "n", "val/acc", "test/acc", "val/loss", "diverged", "failed"]
    assert header in [cells(line) for line in report.splitlines()]


def test_curves_png_is_written(synthetic_sweep: Path) -> None:
    out = write_report(synthetic_sweep)
    assert out["curves_png"].read_bytes()[:8] == PNG_MAGIC


def test_diagnostic_columns_come_from_result_json(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    diagnostics = {"grad_ratio": 0.01, "distinct_units": 1, "dead_fraction": 0.375}
    fake_run(sweep, 0, ["seed=0"], ok(0.5, 0.5, 1.0) | {"diagnostics": diagnostics})
    fake_run(sweep, 1, ["seed=1"], ok(0.6, 0.6, 1.0))  # diagnostics=off: its diagnostic cells stay empty
    write_report(sweep)
    with open(sweep / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[-3:] == ["grad_ratio", "distinct_units", "dead_fraction"]
    assert float(rows[0]["grad_ratio"]) == pytest.approx(0.01)
    assert rows[0]["distinct_units"] == "1"
    assert float(rows[0]["dead_fraction"]) == pytest.approx(0.375)
    assert rows[1]["grad_ratio"] == ""


def test_report_md_names_the_best_run_as_a_ready_command_line(synthetic_sweep: Path) -> None:
    write_report(synthetic_sweep)
    report = (synthetic_sweep / "report.md").read_text()
    assert (
        "- best run: job 2, val/acc 0.9500: `python train.py model.activation=relu seed=0 +trainer.max_epochs=2`"
        in report
    )


def test_the_command_line_quotes_for_the_shell_and_leaves_the_search_preset_out(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    fake_run(sweep, 0, ["model.hidden=[64]", "hparams_search=optuna", "optimizer=sgd"], ok(0.9, 0.9, 0.3))
    out = write_report(sweep)
    assert out["best"]["job"] == 0
    assert "`python train.py 'model.hidden=[64]' optimizer=sgd`" in out["report_md"].read_text()


def test_a_sweep_in_which_no_run_succeeded_says_so_in_one_line(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    fake_run(sweep, 0, ["optimizer.lr=1e5"], {"status": "diverged", "val/acc": None, "history": {}})
    fake_run(sweep, 1, ["optimizer.lr=1e6"], None)
    out = write_report(sweep)
    assert out["best"] is None
    lines = out["report_md"].read_text().splitlines()
    assert "- no run succeeded: all 2 runs diverged or failed (1 diverged, 1 failed)" in lines


def test_interrupted_runs_are_said_as_such_and_a_damaged_result_json_is_a_failed_run(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    fake_run(sweep, 0, ["seed=0"], {"status": "interrupted", "val/acc": 0.5, "history": {}, "message": "stopped"})
    fake_run(sweep, 1, ["seed=1"], None)
    (sweep / "1" / "result.json").write_text("[1, 2]")
    out = write_report(sweep)
    lines = out["report_md"].read_text().splitlines()
    assert (
        "- no run succeeded: all 2 runs diverged, failed or were interrupted (0 diverged, 1 failed, 1 interrupted)"
        in lines
    )
    assert "  - job 1, failed: `python train.py seed=1`: result.json holds a list, not a run's record" in lines
    assert cells(next(line for line in lines if line.startswith("|   n")))[-1] == "interrupted"


def test_the_runs_own_record_of_its_overrides_wins_over_a_rewritten_hydra_folder(tmp_path: Path) -> None:
    # a later command given the same directory (refused there) rewrote .hydra/: the result stays its run's
    sweep = tmp_path / "sweep"
    fake_run(
        sweep,
        0,
        ["model.activation=relu", "seed=1"],
        ok(0.9, 0.9, 0.3) | {"overrides": ["model.activation=tanh"], "seed": 0},
    )
    out = write_report(sweep)
    assert out["best"]["job"] == 0
    assert (out["best"]["model.activation"], out["best"]["seed"]) == ("tanh", "0")
    assert "best run: job 0, val/acc 0.9000: `python train.py model.activation=tanh`" in out["report_md"].read_text()


def test_an_optuna_search_gets_its_optimisation_history_and_its_search_space(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    task = ["hparams_search=optuna", "optimizer.lr=choice(0.5,100000.0)"]
    params = {"optimizer.lr": "tag(log, interval(1e-4, 1.0))", "model.activation": "choice(relu, tanh)"}
    sweeper = {"_target_": "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper", "n_trials": 3}
    sweeper |= {
        "direction": "maximize",
        "sampler": {"_target_": "optuna.samplers.TPESampler", "seed": 0},
        "params": params,
    }
    multirun = {"hydra": {"sweeper": sweeper, "overrides": {"task": task, "hydra": ["hydra.sweeper.n_trials=3"]}}}
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text(yaml.safe_dump(multirun))
    fake_run(sweep, 0, ["optimizer.lr=100000.0", "model.activation=relu"], {"status": "diverged", "history": {}})
    fake_run(sweep, 1, ["optimizer.lr=0.5", "model.activation=tanh"], ok(0.93, 0.92, 0.3))
    fake_run(sweep, 2, ["optimizer.lr=0.5", "model.activation=relu"], ok(0.95, 0.94, 0.2))
    out = write_report(sweep)
    assert out["history_png"].read_bytes()[:8] == PNG_MAGIC
    lines = out["report_md"].read_text().splitlines()
    command = "python train.py -m hparams_search=optuna 'optimizer.lr=choice(0.5,100000.0)' hydra.sweeper.n_trials=3"
    assert f"- command: `{command}`" in lines
    # the command line's lr range replaced the preset's: only the activation is left from the config
    assert "- swept by the config (`hydra.sweeper.params`): `model.activation=choice(relu, tanh)`" in lines
    assert (
        "- Optuna search: 3 trials, TPESampler (seed 0), maximize val/acc (a diverged or failed run: −inf); [optimization_history.png](optimization_history.png)"
        in lines
    )
    assert "- best run: job 2, val/acc 0.9500: `python train.py optimizer.lr=0.5 model.activation=relu`" in lines


def test_a_grid_sweep_has_no_optimisation_history(synthetic_sweep: Path) -> None:
    assert "history_png" not in write_report(synthetic_sweep)
    assert not (synthetic_sweep / "optimization_history.png").exists()


def run_sweep(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "train.py",
            "-m",
            *overrides,
            "progress_refresh_rate=0",
            "diagnostics=off",  # the report of diagnostics is tested above, on synthetic runs
            "test=false",
            f"hydra.sweep.dir={tmp_path}",
            CALLBACK,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_a_real_sweep_writes_its_report(tmp_path: Path) -> None:
    proc = run_sweep(tmp_path, "model.activation=sigmoid,relu", "trainer.max_epochs=1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = summary(tmp_path)
    assert [(r["model.activation"], r["seed"], r["status"]) for r in rows] == [
        ("sigmoid", "0", "ok"),
        ("relu", "0", "ok"),
    ]
    assert (tmp_path / "report.md").is_file()
    assert "sweep report:" in proc.stdout


@pytest.mark.slow
def test_a_sweep_with_a_divergent_learning_rate_records_it_and_completes(tmp_path: Path) -> None:
    proc = run_sweep(tmp_path, "optimizer=sgd", "optimizer.lr=0.1,1e3", "trainer.max_epochs=1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [(r["optimizer.lr"], r["status"]) for r in summary(tmp_path)] == [("0.1", "ok"), ("1000.0", "diverged")]
    table = [cells(line) for line in (tmp_path / "report.md").read_text().splitlines() if line.startswith("| `")]
    assert table[-1][0] == "`1000.0`" and table[-1][-2:] == ["1", "0"]  # the 1e3 row: 1 diverged, 0 failed


def compose_experiment(name: str, overrides: list[str], run_dir: Path, hydra: bool = False):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose(
            "train",
            overrides=[f"experiment={name}", *overrides, f"paths.output_dir={run_dir}"],
            return_hydra_config=hydra,
        )


def first_setting(params: dict[str, str]) -> list[str]:
    """The sweep's first point: ``key=first_value`` for every swept key."""
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    return [f"{o.key_or_group}={next(iter(o.sweep_string_iterator()))}" for o in parsed]


def test_there_is_a_preset_for_each_study() -> None:
    studies = {"activations", "init", "optimizers", "lr", "architecture", "data_quality", "gates"}
    assert studies <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_preset_composes_with_a_sweep_and_no_progress_bar(name: str, tmp_path: Path) -> None:
    cfg = compose_experiment(name, [], tmp_path, hydra=True)
    assert cfg.progress_refresh_rate == 0
    params = cfg.hydra.sweeper.params
    assert params, f"{name}: no hydra.sweeper.params"
    assert first_setting(dict(params))


@pytest.mark.filterwarnings("ignore:step units")  # activations' first setting is step, on purpose
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_preset_trains_its_first_setting_for_one_epoch(name: str, tmp_path: Path) -> None:
    params = dict(compose_experiment(name, [], tmp_path, hydra=True).hydra.sweeper.params)
    shrunk = [*first_setting(params), "trainer.max_epochs=1", "test=false", "diagnostics=off"]
    cfg = compose_experiment(name, shrunk, tmp_path)
    result = train(cfg)
    assert result["status"] == "ok"
    assert result["epochs"] == 1


def test_a_sweep_whose_runs_wrote_elsewhere_says_where_they_are(tmp_path: Path, capsys) -> None:
    from nnmodel.sweep import write_and_tell

    (tmp_path / "multirun.yaml").write_text("{}")  # its runs had paths.output_dir=runs/s${seed}: nothing here
    write_and_tell(tmp_path)
    assert capsys.readouterr().err == (
        "no run in the sweep directory to report (a run given paths.output_dir writes its result.json there)\n"
    )


def test_a_folder_that_is_not_a_sweep_gets_no_report(tmp_path: Path, capsys) -> None:
    from nnmodel.sweep import main

    assert main([str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"error: {tmp_path} is not a sweep directory (no multirun.yaml, no runs); give a sweep's\n"
    )
    assert not list(tmp_path.iterdir())


def test_a_runs_directory_or_a_folder_of_sweeps_gets_no_report(tmp_path: Path, capsys) -> None:
    from nnmodel.sweep import main

    for name in ("a", "b"):  # multirun/DATE: two sweeps of the same seeds, which one report would count twice
        (tmp_path / name).mkdir()
        (tmp_path / name / "multirun.yaml").write_text("{}")
        fake_run(tmp_path / name, 0, ["seed=0"], {"status": "ok", "val/acc": 0.9, "seed": 0})
    assert main([str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"error: {tmp_path} holds 2 sweeps ({tmp_path / 'a'}, {tmp_path / 'b'}), not one; give one sweep's directory\n"
    )
    assert main([str(tmp_path / "a" / "0")]) == 2
    assert capsys.readouterr().err == (
        f"error: {tmp_path / 'a' / '0'} is a run's directory (it holds result.json), not a sweep's; give the sweep "
        f"directory that holds it ({tmp_path / 'a'})\n"
    )
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["multirun.yaml"] * 2 + [
        "overrides.yaml",
        "overrides.yaml",
        "result.json",
        "result.json",
    ]
    assert main([str(tmp_path / "a")]) == 0  # one sweep's directory: its report
