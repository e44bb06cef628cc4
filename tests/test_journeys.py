"""A new user's journeys end to end: resume and evaluate from the checkpoint's own config, every preset,
the machine's limits, and a console that shows only what a user can act on."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from cli import error_lines, result, run_cli, run_dirs

from nnmodel.errors import DivergedError
from nnmodel.resume import RECORD_KEY
from nnmodel.training import train
from nnmodel.validate import ConfigError, check_memory

ROOT = Path(__file__).resolve().parents[1]


def presets(group: str, *skip: str) -> list[str]:
    return sorted(p.stem for p in (ROOT / "configs" / group).glob("*.yaml") if p.stem not in skip)


# ----------------------------------------------------------------------------- resume and evaluate


@pytest.mark.slow
def test_resume_and_evaluate_take_the_checkpoints_own_config(tmp_path: Path) -> None:
    first = run_cli(["model.hidden=[32,16]", "model.activation=tanh", "trainer.max_epochs=2"], cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    (run_dir,) = run_dirs(tmp_path)
    assert result(run_dir)["global_step"] == 40  # 20 batches of 64 an epoch

    resumed = run_cli(["ckpt_path=last", "trainer.max_epochs=4"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert run_dirs(tmp_path) == [run_dir]  # the same run goes on; Hydra's new directory is not left behind
    assert f"resuming {run_dir} from" in resumed.stdout
    assert "network    64-32-16-10 (tanh → softmax" in resumed.stdout
    after = result(run_dir)
    assert (after["epochs"], after["global_step"]) == (4, 80)
    assert len(after["history"]["val/acc"]) == 4  # one curve over both parts
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 80  # last.ckpt is the last epoch, not the best one

    evaluated = run_cli(["eval_only=true", f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}"], cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert "evaluated  the checkpoint at step 80" in evaluated.stdout
    eval_dir = run_dirs(tmp_path)[-1]
    assert eval_dir != run_dir and result(eval_dir)["test/acc"] is not None

    before = run_dirs(tmp_path)
    for args, message in [
        (
            ["eval_only=true", f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}", "data=xor"],
            "error: data=xor: its examples have 2 features and 2 classes, but the checkpoint's network takes "
            "64 features and predicts 10 classes",
        ),
        (
            ["ckpt_path=last", "model.hidden=[64]"],
            "error: ckpt_path: cannot resume with model.hidden=[64]: the checkpoint was trained with "
            "model.hidden=[32, 16]",
        ),
        (
            ["ckpt_path=last", "optimizer=sgd"],
            "error: ckpt_path: cannot resume with optimizer.name=sgd: the checkpoint was trained with "
            "optimizer.name=adam",
        ),
    ]:
        refused = run_cli(args, cwd=tmp_path)
        assert refused.returncode == 2
        assert "Traceback" not in refused.stderr
        (line,) = error_lines(refused)
        assert line.startswith(message), line
        assert run_dirs(tmp_path) == before  # nothing written


def test_a_checkpoint_without_its_config_resumes_from_its_hyperparameters(make_cfg, tmp_path: Path) -> None:
    first = train(make_cfg("model.hidden=[8]", "trainer.max_epochs=1", "test=false", run_dir=tmp_path / "a"))
    path = Path(first["run_dir"]) / "checkpoints" / "last.ckpt"
    ckpt = torch.load(path, weights_only=True)
    del ckpt[RECORD_KEY]  # as nnmodel's checkpoints were before they carried their config
    torch.save(ckpt, path)
    resumed = train(make_cfg(f"ckpt_path={path}", "trainer.max_epochs=2", "test=false", run_dir=tmp_path / "b"))
    assert resumed["global_step"] == 40
    assert torch.load(path, weights_only=True)["state_dict"]["net.layers.0.weight"].shape == (8, 64)


def test_a_resumed_run_that_diverges_names_its_own_checkpoint(make_cfg, tmp_path: Path) -> None:
    first = train(make_cfg("trainer.max_epochs=1", "test=false", run_dir=tmp_path / "first"))
    ckpt = Path(first["run_dir"]) / "checkpoints" / "last.ckpt"
    # diverge_above may change on resume; a loss above 1e-3 counts as diverged at once
    cfg = make_cfg(f"ckpt_path={ckpt}", "trainer.max_epochs=2", "diverge_above=1e-3", run_dir=tmp_path / "hydra")
    with pytest.raises(DivergedError, match=re.escape(f"the last good checkpoint is {ckpt}")):
        train(cfg)
    assert not (tmp_path / "hydra").exists()


# ----------------------------------------------------------------------------- every preset


@pytest.mark.parametrize(
    "override",
    [f"trainer={p}" for p in presets("trainer", "gpu", "ddp")]
    + [f"data={p}" for p in presets("data", "mnist", "fashion_mnist", "kmnist", "csv", "npz")]
    + [f"diagnostics={p}" for p in presets("diagnostics")]
    + [f"model={p}" for p in presets("model")],
)
def test_every_preset_runs_one_short_epoch(override: str, make_cfg, tmp_path: Path) -> None:
    """Each preset that needs no GPU, no download and no file of the user's (trainer=ddp: test_robust.py; the
    studies: test_sweep.py; data=csv and data=npz on tables the tests write: test_tables.py)."""
    out = train(make_cfg(override, "trainer.max_epochs=1", run_dir=tmp_path))
    assert out["status"] == "ok"
    assert out["test/acc"] is not None and 0.0 <= out["test/acc"] <= 1.0
    assert (tmp_path / "result.json").is_file()


# ----------------------------------------------------------------------------- the machine's limits


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible here")
def test_gpu_trainer_without_a_gpu_says_what_is_missing(make_cfg, tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"^trainer.accelerator=gpu: no GPU is visible here .*use trainer.accelerator=cpu"
    ):
        train(make_cfg("trainer=gpu", run_dir=tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_a_network_too_big_for_memory_is_refused_with_the_estimate(make_cfg, monkeypatch) -> None:
    monkeypatch.setattr("nnmodel.validate.available_memory", lambda t: (24 * 10**9, "available"))
    cfg = make_cfg("model.hidden=[60000,60000]")
    with pytest.raises(ConfigError) as err:
        check_memory(cfg, 64, 10)
    # (64·60000 + 60000·60000 + 60000·10 weights, 60000 + 60000 + 10 biases) × 4 bytes × (weights, grads, Adam's 2)
    assert str(err.value) == (
        "model.hidden=[60000, 60000]: the network 64-60000-60000-10 has 3,604,560,010 parameters, and its weights, "
        "gradients and adam state need about 57.8 GB, but 24.0 GB of available memory is left here; choose smaller "
        "hidden layers"
    )
    check_memory(make_cfg("model.hidden=[600,600]"), 64, 10)  # 2.8 MB: fits


# ----------------------------------------------------------------------------- the console


@pytest.mark.slow
def test_the_default_run_prints_only_the_bar_and_the_summary(tmp_path: Path) -> None:
    proc = run_cli(["trainer.max_epochs=2"], cwd=tmp_path, bar=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line.strip() for line in re.split(r"[\r\n]", proc.stdout + proc.stderr) if line.strip()]
    bar = re.compile(r"(Sanity Checking|Training|Validation|Testing|Epoch \d+)[^|]*(: )?(\||\d+%)|^\x1b\[A$")
    others = [line for line in lines if not bar.search(line)]
    summary_start = others.index("nnmodel summary")
    assert others[:summary_start] == [], others[:summary_start]  # nothing before the summary but the bar
    assert len(others) == summary_start + 8, others
    noise = re.compile(r"warn|deprecat|tip|💡|litlogger|available:", re.IGNORECASE)
    assert not [line for line in lines if noise.search(line)]


def test_a_run_resumed_between_validations_keeps_every_epoch_in_its_history(make_cfg, tmp_path: Path) -> None:
    # last.ckpt was written at the end of validation, before the epoch joined the history, and only every N epochs
    args = ("data=xor", "trainer.check_val_every_n_epoch=2", "test=false", "diagnostics=off")
    whole = train(make_cfg(*args, "trainer.max_epochs=4", run_dir=tmp_path / "whole"))
    train(make_cfg(*args, "trainer.max_epochs=3", run_dir=tmp_path / "cut"))
    last = tmp_path / "cut" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 2  # the third epoch's, not the last validated one's
    resumed = train(make_cfg(*args, "trainer.max_epochs=4", f"ckpt_path={last}", run_dir=tmp_path / "cut"))
    assert resumed["history"] == whole["history"]  # every epoch at its place, val/ at epochs 2 and 4
    assert [v is None for v in whole["history"]["val/acc"]] == [True, False, True, False]
