"""`python train.py` end to end: digits, every optimizer preset, manual backprop, MNIST files, TensorBoard."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from idx_fixtures import write_mnist_like
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from nnmodel.training import train

ROOT = Path(__file__).resolve().parents[1]

OPTIMIZERS = sorted(p.stem for p in (ROOT / "configs" / "optimizer").glob("*.yaml"))


def scalars(run_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def series(run_dir: Path, tag: str) -> list[float]:
    return [e.value for e in scalars(run_dir).Scalars(tag)]


@pytest.mark.slow
def test_default_run_reaches_94_percent_on_the_declared_digits_test_split(make_cfg, tmp_path: Path, capsys) -> None:
    # data.test_seed=0's 269 test images are the hardest of seeds 0-4: 0.9517 there, 0.9695 ± 0.0154 over the
    # five (README); this floor only catches a regression, it was set after seeing that number.
    result = train(make_cfg(run_dir=tmp_path))
    assert result["test/acc"] >= 0.94
    out = capsys.readouterr().out
    assert "nnmodel summary" in out
    assert f"test {result['test/acc']:.4f}" in out
    assert f"tensorboard --logdir {tmp_path}" in out
    assert series(tmp_path, "test/acc") == pytest.approx([result["test/acc"]])
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert Path(result["best_ckpt"]).name.startswith("best-epoch")


def test_the_best_checkpoint_is_named_by_its_epoch_counted_from_one_as_the_history_counts(make_cfg, tmp_path) -> None:
    # sgd with a small rate climbs slowly: the best val/acc is not the first epoch's
    result = train(make_cfg("trainer.max_epochs=4", "optimizer=sgd", "optimizer.lr=0.05", run_dir=tmp_path))
    val = result["history"]["val/acc"]
    best = val.index(max(val)) + 1  # the first of equal bests: ModelCheckpoint saves only on improvement
    assert Path(result["best_ckpt"]).name == f"best-epoch{best:03d}-val_acc{max(val):.4f}.ckpt"
    assert result["epochs"] == len(val) == 4


@pytest.mark.parametrize(
    ("override", "why"),
    [("trainer.check_val_every_n_epoch=5", "trainer.check_val_every_n_epoch=5 in 2 epochs"),
     ("trainer.limit_val_batches=0", "trainer.limit_val_batches=0")],
)  # fmt: skip
def test_a_run_without_validation_says_it_tests_the_last_weights(override, why, make_cfg, tmp_path, capsys) -> None:
    import torch

    from nnmodel.errors import NNModelWarning

    last = tmp_path / "checkpoints" / "last.ckpt"
    with pytest.warns(NNModelWarning) as said:
        result = train(make_cfg("trainer.max_epochs=2", override, run_dir=tmp_path))
    assert [str(w.message) for w in said if w.category is NNModelWarning] == [
        f"no validation ran ({why}), so no checkpoint is the best by val/acc: the last weights, saved as {last}, are "
        "tested"
    ]
    assert (result["status"], result["best_ckpt"], result["val/acc"]) == ("ok", None, None)
    assert f"  checkpoint none by val/acc (no validation ran); the last weights: {last}\n" in capsys.readouterr().out
    saved = torch.load(last, weights_only=True)  # the end of training, not the initial checkpoint
    assert (saved["global_step"], saved["epoch"]) == (40, 2)  # (Lightning's epoch after the fit: the next one)
    resumed = train(make_cfg("trainer.max_epochs=3", override, f"ckpt_path={last}", "test=false"))
    assert (resumed["global_step"], resumed["epochs"]) == (60, 3)


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_preset_trains_digits(optimizer: str, make_cfg) -> None:
    result = train(make_cfg(f"optimizer={optimizer}", "trainer.max_epochs=30"))
    assert result["test/acc"] >= 0.90, f"{optimizer}: test/acc {result['test/acc']:.4f}"


def test_optimizer_presets_cover_ruders_overview() -> None:
    ruder = {"sgd", "momentum", "nag", "adagrad", "adadelta", "rmsprop", "adam", "adamax", "nadam", "amsgrad", "adamw"}
    assert ruder <= set(OPTIMIZERS)


@pytest.mark.parametrize("output", ["softmax", "sigmoid"])
def test_manual_backprop_gives_the_autograd_curve(output: str, make_cfg, tmp_path: Path) -> None:
    curves = {}
    for mode in ("autograd", "manual"):
        run_dir = tmp_path / mode
        cfg = make_cfg(
            f"model.backprop={mode}", f"model.output={output}", "trainer.max_epochs=3", "test=false", run_dir=run_dir
        )
        train(cfg)
        curves[mode] = series(run_dir, "val/loss")
    assert len(curves["manual"]) == 3
    assert np.max(np.abs(np.subtract(curves["manual"], curves["autograd"]))) < 1e-4


def test_mnist_from_idx_files_offline(make_cfg, tmp_path: Path) -> None:
    write_mnist_like(tmp_path / "data")
    cfg = make_cfg("data=mnist", f"data.root={tmp_path / 'data'}", "trainer.max_epochs=3", run_dir=tmp_path / "run")
    result = train(cfg)
    assert result["test/acc"] >= 0.9
    assert series(tmp_path / "run", "test/acc") == pytest.approx([result["test/acc"]])


def test_event_files_hold_the_scalars_and_hparams(make_cfg, tmp_path: Path) -> None:
    # 40 steps: log_every_n_steps (50 by default) set to 10, so that step values are written too
    overrides = ("trainer.max_epochs=2", "trainer.log_every_n_steps=10", "optimizer.scheduler.name=step")
    train(make_cfg(*overrides, run_dir=tmp_path))
    acc = scalars(tmp_path)
    tags = set(acc.Tags()["scalars"])
    expected = {"train/loss_step", "train/loss_epoch", "train/acc", "val/loss", "val/acc", "test/loss", "test/acc"}
    assert expected <= tags
    assert any(t.startswith("lr-") for t in tags)
    assert len(acc.Scalars("val/acc")) == 2  # one per epoch
    # The HParams tab: our hyperparameters, with val/acc, val/loss and test/acc as its metrics.
    content = acc.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert {m.name.tag for m in experiment.metric_infos} == {"val/acc", "val/loss", "test/acc"}
    session = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert session.hparams["optimizer.name"].string_value == "adam"
    assert session.hparams["seed"].number_value == 0
    assert session.hparams["model.hidden"].string_value == "[128]"
    assert "data.noise" not in session.hparams and "data.split_seed" in session.hparams  # only what digits reads


def test_a_run_without_a_test_declares_no_test_metric_in_hparams(make_cfg, tmp_path: Path) -> None:
    train(make_cfg("data=xor", "trainer.max_epochs=1", "test=false", run_dir=tmp_path))
    content = scalars(tmp_path).PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert {m.name.tag for m in experiment.metric_infos} == {"val/acc", "val/loss"}  # an empty test/acc column before


def test_eval_only_evaluates_a_saved_checkpoint(make_cfg, tmp_path: Path) -> None:
    first = train(make_cfg("trainer.max_epochs=2", run_dir=tmp_path / "a"))
    again = train(make_cfg("eval_only=true", f"ckpt_path={first['best_ckpt']}", run_dir=tmp_path / "b"))
    assert again["test/acc"] == pytest.approx(first["test/acc"])
    assert again["val/acc"] is not None
    # its TensorBoard at the step the checkpoint was saved at (20 steps an epoch), as its summary says, not at 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert again["global_step"] == 40
    events = EventAccumulator(str(tmp_path / "b" / "tb"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("val/acc")] == [e.step for e in events.Scalars("test/acc")] == [40]
    assert [e.step for e in events.Images("confusion_matrix")] == [40]


@pytest.mark.slow
def test_train_py_command_line(tmp_path: Path) -> None:
    """The README's command itself, with Hydra overrides, in a subprocess."""
    run_dir = tmp_path / "cli"
    proc = subprocess.run(
        [
            sys.executable,
            "train.py",
            "model.activation=tanh",
            "optimizer=sgd",
            "trainer.max_epochs=2",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "nnmodel summary" in proc.stdout
    assert "optimizer  sgd (lr" in proc.stdout
    assert (run_dir / "tb").is_dir()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()


def test_a_cpu_fit_asks_for_cuda_without_nvml_and_puts_the_variable_back() -> None:
    """PlainCudaCheck (nnmodel.callbacks): during a single-process CPU fit, PYTORCH_NVML_BASED_CUDA_CHECK is 0;
    before and after, it is what `import lightning` set (if Lightning stops setting it, the callback can go)."""
    import os

    import lightning as L
    import torch

    from nnmodel.callbacks import NVML_CHECK, PlainCudaCheck
    from nnmodel.data import TensorBatches
    from nnmodel.module import NNModule

    assert os.environ.get(NVML_CHECK) == "1"
    seen = []

    class Probe(L.Callback):
        def on_train_batch_start(self, *args) -> None:
            seen.append(os.environ.get(NVML_CHECK))

    x, y = torch.randn(64, 3), torch.arange(64) % 2
    trainer = L.Trainer(
        max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[PlainCudaCheck(), Probe()],
    )  # fmt: skip
    trainer.fit(NNModule(3, [4], 2), train_dataloaders=TensorBatches(x, y, 16, steps_per_execution=2, shuffle=True))
    assert seen == ["0"] * 4  # 2 epochs × 2 chunks of 2 minibatches
    assert os.environ.get(NVML_CHECK) == "1"


def test_overlapping_cpu_fits_put_the_variable_back_once_the_last_one_ends() -> None:
    """Two fits in threads of one process (A starts, B starts, A ends, B ends): the variable stays 0 until
    B ends, then is what it was before A, not the 0 that B found."""
    import os

    import lightning as L

    from nnmodel.callbacks import NVML_CHECK, PlainCudaCheck

    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    a, b = PlainCudaCheck(), PlainCudaCheck()
    before = os.environ.get(NVML_CHECK)
    a.on_fit_start(trainer, None)
    b.on_fit_start(trainer, None)
    a.on_fit_end(trainer, None)
    assert os.environ.get(NVML_CHECK) == "0"  # B is still fitting
    b.on_exception(trainer, None, RuntimeError())  # B fails: the same as its end
    assert os.environ.get(NVML_CHECK) == before
    b.on_fit_end(trainer, None)  # Lightning calls both on a failure: the second is a no-op
    assert os.environ.get(NVML_CHECK) == before and PlainCudaCheck._fits == 0


@pytest.mark.parametrize("enabled", [True, False])
def test_train_py_imports_with_the_collector_off_and_freezes_what_it_imported(enabled):
    # train.py's imports run with Python's cyclic GC off, then freeze the imported objects (gc.freeze) and
    # leave the collector as it found it: on for `python train.py`, still off for a caller who had turned it off.
    code = (
        "import gc, importlib.util, sys\n"
        f"{'' if enabled else 'gc.disable()'}\n"
        f"spec = importlib.util.spec_from_file_location('train_script', {str(ROOT / 'train.py')!r})\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "print(gc.isenabled(), gc.get_freeze_count() > 100_000, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.split() == [str(enabled), "True", "True"]


def test_the_trainer_runs_no_sanity_validation_before_training(tmp_path):
    from nnmodel.config import compose
    from nnmodel.training import build_trainer

    trainer = build_trainer(compose([]), tmp_path)
    assert trainer.num_sanity_val_steps == 0  # Lightning's default 2 would validate 2 chunks before every fit


def test_a_run_from_python_leaves_torchs_determinism_settings_as_it_found_them(tmp_path: Path, monkeypatch) -> None:
    import torch

    import nnmodel
    from nnmodel.config import compose

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    torch.use_deterministic_algorithms(False)  # as a fresh process has it (a Trainer built by another test sets it)
    run = nnmodel.train(
        "trainer.max_epochs=1", "diagnostics=off", "progress_refresh_rate=0", f"paths.output_dir={tmp_path}"
    )
    assert run.metrics["status"] == "ok" and compose([]).trainer.deterministic is True  # the run turned it on
    assert not torch.are_deterministic_algorithms_enabled() and "CUBLAS_WORKSPACE_CONFIG" not in os.environ


def test_a_run_from_python_leaves_the_global_random_generators_as_it_found_them(tmp_path: Path, monkeypatch) -> None:
    import random

    import numpy as np
    import torch

    import nnmodel

    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)

    def draws() -> tuple[float, float, float]:
        return random.random(), float(np.random.rand()), float(torch.rand(()))

    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    expected = draws()
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    # a random search's loop: seed_everything(seed) inside each run would make every later draw the same
    nnmodel.train("data=xor", "trainer.max_epochs=1", "progress_refresh_rate=0", f"paths.output_dir={tmp_path}")
    assert draws() == expected
    assert "PL_GLOBAL_SEED" not in os.environ


def test_the_history_puts_each_validation_at_its_epoch(tmp_path: Path) -> None:
    import math

    import nnmodel

    run = nnmodel.train(
        "data=xor", "trainer.max_epochs=4", "trainer.check_val_every_n_epoch=2", "test=false", "diagnostics=off",
        "progress_refresh_rate=0", f"paths.output_dir={tmp_path}",
    )  # fmt: skip
    val = run.result["history"]["val/acc"]
    assert val[0] is None and val[2] is None and val[1] is not None and val[3] is not None  # validated after 2 and 4
    assert len(run.result["history"]["train/loss_epoch"]) == 4
    frame = run.history
    assert list(frame["val/acc"].dropna().index) == [2, 4] and math.isnan(frame.loc[1, "val/loss"])
    fig = run.plot()
    (val_line,) = [line for line in fig.axes[1].get_lines() if line.get_label() == "val/acc"]
    assert list(val_line.get_xdata()) == [2, 4]
    assert fig.axes[1].get_title() == "accuracy"  # not tested: no "test 0.0000"


def test_threads_auto_gives_a_small_network_one_thread_and_puts_torchs_count_back(tmp_path: Path) -> None:
    import torch

    import nnmodel
    from nnmodel.core.network import FeedForward
    from nnmodel.training import SMALL_NETWORK_MACS, run_threads

    digits, mnist = FeedForward(64, [128], 10), FeedForward(784, [100], 10)
    assert 64 * (64 * 128 + 128 * 10) < SMALL_NETWORK_MACS < 128 * (784 * 100 + 100 * 10)
    assert run_threads("auto", digits, 64) == 1
    assert run_threads("auto", mnist, 128) == torch.get_num_threads()  # torch's own (or a parallel sweep's share)
    assert run_threads(3, digits, 64) == 3
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        run = nnmodel.train("trainer.max_epochs=1", "progress_refresh_rate=0", f"paths.output_dir={tmp_path}")
        assert run.metrics["threads"] == 1 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_only_another_runs_own_folder_is_refused_as_a_run_directory(tmp_path: Path) -> None:
    from nnmodel.errors import ConfigError
    from nnmodel.training import check_not_in_run

    mine = tmp_path / "project" / "tb"
    mine.mkdir(parents=True)  # a folder of the user's named tb: its parent holds no run besides it
    check_not_in_run("paths.output_dir", str(mine), mine)
    check_not_in_run("paths.output_dir", str(mine / "run1"), mine / "run1")
    (tmp_path / "project" / "result.json").write_text("{}")  # now project/ is a run, and tb/ its own
    with pytest.raises(ConfigError) as refused:
        check_not_in_run("paths.output_dir", "project/tb", mine)
    assert str(refused.value) == (
        f"paths.output_dir: 'project/tb' is the tb/ of another run ('{tmp_path / 'project'}'); give a directory "
        "outside it"
    )
