"""Bad input, divergence, interruptions, reproducibility, unsafe checkpoints, DDP."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from cli import TRAIN, run_cli
from idx_fixtures import write_mnist_like
from omegaconf import OmegaConf

from nnmodel.console import format_warning
from nnmodel.errors import DivergedError, Interrupted, NNModelWarning
from nnmodel.training import train
from nnmodel.validate import ConfigError, available_memory, check_checkpoint

# (overrides, a fragment of the one-line error that names the key)
BAD_INPUTS = [
    (["data=mnsit"], "unknown data 'mnsit'; did you mean 'mnist'?"),
    (["model.activation=rellu"], "unknown activation 'rellu'; did you mean 'relu'?"),
    (["model.activation=[tanh,relu]"], "model.activation lists 2 activations for 1 hidden layers"),
    (["model.activation=nosuchpkg.mod:fn"], "cannot import activation 'nosuchpkg.mod:fn'"),
    (["model.init=zeros"], "unknown init 'zeros'; did you mean 'zero'?"),
    (["model.output=softmx"], "unknown model.output 'softmx'; did you mean 'softmax'?"),
    (["model.backprop=manuel"], "unknown model.backprop 'manuel'; did you mean 'manual'?"),
    (["optimizer=adamm"], "unknown optimizer 'adamm'; did you mean 'adam'?"),
    (["trainer=gpuu"], "unknown trainer 'gpuu'; did you mean 'gpu'?"),
    (["model.hidden=[0]"], "model.hidden[0] must be an integer >= 1, got 0"),
    (["model.hidden=[64,-3]"], "model.hidden[1] must be an integer >= 1, got -3"),
    (["model.hidden=12"], "model.hidden=12; Invalid value assigned: int is not a ListConfig, list or tuple"),
    (["data.batch_size=0"], "data.batch_size"),
    (["data.batch_size=-5"], "data.batch_size"),
    (["trainer.max_epochs=0"], "trainer.max_epochs must be -1 (no limit) or an integer >= 1, got 0"),
    (["hydra.run.dirr=x"], "unknown key 'hydra.run.dirr'; did you mean 'hydra.run.dir'? choose one of: hydra.run.dir"),
    (
        ["hydra.job.chdir=maybe"],
        "Error merging override hydra.job.chdir=maybe; Value 'maybe' is not a valid bool "
        "(type str); hydra.job.chdir takes true or false, e.g. hydra.job.chdir=true",
    ),
    (["trainer.max_steps=0"], "trainer.max_steps must be -1 (no limit) or an integer >= 1, got 0"),
    (
        ["trainer.limit_train_batches=0"],
        "trainer.limit_train_batches must be a fraction of the epoch in (0, 1] or a number >= 1, got 0",
    ),
    (["optimizer.lr=-0.1"], "optimizer.lr must be a number in (0, inf), got -0.1"),
    (["optimizer.lr=0"], "optimizer.lr must be a number in (0, inf), got 0.0"),
    (["optimizer=momentum", "optimizer.momentum=1.5"], "optimizer.momentum"),
    (["model.epsilon=0"], "epsilon must be a number > 0 or 'auto', got 0"),
    (["model.epsilon=-0.5"], "epsilon must be a number > 0 or 'auto', got -0.5"),
    (["model.l2=-1"], "model.l2 must be a number >= 0, got -1.0"),
    (["data.label_noise=1.5"], "data.label_noise"),
    (["data.train_fraction=0"], "data.train_fraction"),
    (["data.input_noise=-1"], "data.input_noise"),
    (["seed=-1"], "seed must be an integer >= 0, got -1"),
    (["ckpt_path=/no/such/file.ckpt"], "ckpt_path: no checkpoint at '/no/such/file.ckpt'"),
    (["eval_only=true"], "eval_only=true needs ckpt_path"),
    (["eval_only=1"], "eval_only must be true or false, got 1"),
    (["cuda_graphs=maybe"], "cuda_graphs must be true or false, got 'maybe'"),
    (["cuda_graphs=true"], "cuda_graphs=true records the training steps on one CUDA GPU in one process, but the"),
    (["+trainer.max_epoch=3"], "unknown key 'trainer.max_epoch'; did you mean 'trainer.max_epochs'?"),
    (["trainer.accelerator=gpux"], "unknown trainer.accelerator 'gpux'"),
    (["data=mnist"], "missing"),  # no IDX files in ./data
    # keys that are not in the config, values of the wrong type: Hydra's and the schemas' multi-line refusals,
    # said by train.py in one line, in nnmodel.errors' one form
    (["model.hiden=[32]"], "unknown key 'model.hiden'; did you mean 'model.hidden'? choose one of: model.activation"),
    (["mdel.hidden=[32]"], "unknown key 'mdel'; did you mean 'model'?"),
    (["trainer.max_epoch=3"], "unknown key 'trainer.max_epoch'; did you mean 'trainer.max_epochs'?"),
    (
        ["model.hidden=[3"],
        "Hydra cannot read the override 'model.hidden=[3' (no viable alternative at input '[3'); "
        "check its brackets and quotes",
    ),
    # Hydra said "LexerNoViableAltException: data.path=~/x.csv; ^; See https://...", naming no key
    (
        ["data=csv", "data.path=~/x.csv"],
        "Hydra cannot read the override 'data.path=~/x.csv' (at character 11, '~'); "
        "check its brackets and quotes: a value with characters Hydra reserves (~ , "
        "= [ ] ( ) spaces) goes in quotes, 'key=\"value\"' (~ is not your home "
        "directory here: give the whole path)",
    ),
    (["seed=0,1"], "Ambiguous value for argument 'seed=0,1'"),  # a sweep without -m
    # new keys added with + that nothing would read
    (["+model.foo=1"], "unknown key 'model.foo'; "),
    (
        ["+diagnostics.every_n_step=5"],
        "unknown key 'diagnostics.every_n_step'; did you mean 'diagnostics.every_n_steps'?",
    ),
    (["diagnostics.enabled=maybe"], "Value 'maybe' is not a valid bool"),
]


# the machine's limits, said before anything is written (where this machine has them)
MACHINE_LIMITS = [
    pytest.param(
        ["trainer=gpu"],
        "trainer.accelerator=gpu: no GPU is visible here",
        marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible"),
        id="trainer=gpu without a GPU",
    ),
    pytest.param(
        ["model.hidden=[100000000]"],
        "the network 64-100000000-10 has 7,500,000,010 parameters, and its weights, gradients and adam state "
        "need about 196.8 GB, but",
        marks=pytest.mark.skipif((available_memory(OmegaConf.create({})) or (0,))[0] > 2e11, reason="200 GB free"),
        id="model.hidden=[100000000]",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("overrides", "message"), [pytest.param(o, m, id=" ".join(o)) for o, m in BAD_INPUTS] + MACHINE_LIMITS
)
def test_bad_input_is_refused_in_one_line(overrides: list[str], message: str, tmp_path: Path) -> None:
    proc = run_cli(overrides, cwd=tmp_path)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1, proc.stderr[-1500:]
    assert message in error_lines[0]
    assert list(tmp_path.iterdir()) == []  # no run directory, event file or checkpoint left behind


def test_nnmodels_warning_is_one_line_on_the_command_line_and_pythons_elsewhere(tmp_path: Path) -> None:
    proc = run_cli(["model.activation=step", "trainer.max_epochs=1", "diagnostics=off", "test=false"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-1500:]
    said = [line for line in proc.stderr.splitlines() if "g'(z) = 0" in line]
    assert said == [
        "warning: step units have g'(z) = 0 almost everywhere, so backprop sends no gradient through them: gradient "
        "descent cannot train the layers below a step layer (use sigmoid/tanh/relu to learn)"
    ]
    # the same formatter leaves every other warning as Python writes it, with its file and line
    assert format_warning("w", NNModelWarning, "f.py", 3) == "warning: w\n"
    assert format_warning("w", UserWarning, "f.py", 3, "") == "f.py:3: UserWarning: w\n"


@pytest.mark.parametrize("download", ["false", "true"])  # true: torchvision fetches nothing when the 4 files are there
def test_corrupt_idx_file_is_refused(download: str, make_cfg, tmp_path: Path) -> None:
    write_mnist_like(tmp_path / "data")
    labels = tmp_path / "data" / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:50])  # truncated
    cfg = make_cfg(
        "data=mnist", f"data.root={tmp_path / 'data'}", f"data.download={download}", run_dir=tmp_path / "run"
    )
    with pytest.raises(ConfigError) as refused:
        train(cfg)
    raw = labels.parent
    fix = (  # download=true fetches nothing while the 4 files are there
        f"delete the 4 files of {raw}/ so that data.download=true fetches them again, or put good ones there"
        if download == "true"
        else f"put the raw (uncompressed) IDX files in {raw}/ or set data.download=true to fetch them"
    )
    assert str(refused.value) == f"data.root: corrupt {labels}: 50 bytes, header (100,) implies 108; {fix}"
    assert not (tmp_path / "run").exists()


def test_a_label_beyond_the_classes_is_refused_when_download_is_on_too(make_cfg, tmp_path: Path) -> None:
    write_mnist_like(tmp_path / "data")
    labels = tmp_path / "data" / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    raw = bytearray(labels.read_bytes())
    raw[8 + 7] = 12  # label 12 at row 7: an IndexError inside training, after the run's directory was written
    labels.write_bytes(bytes(raw))
    cfg = make_cfg("data=mnist", f"data.root={tmp_path / 'data'}", "data.download=true", run_dir=tmp_path / "run")
    with pytest.raises(ConfigError) as refused:
        train(cfg)
    assert str(refused.value).startswith(f"data.root: corrupt {labels}: label 12 at row 7, but the classes are 0-9; ")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_divergence_stops_with_message_and_keeps_a_good_checkpoint(tmp_path: Path) -> None:
    proc = run_cli(["optimizer=sgd", "optimizer.lr=1e6", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "error: training diverged: the loss became" in proc.stderr
    assert "lower the learning rate (optimizer.lr=1000000.0)" in proc.stderr
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert all(torch.isfinite(t).all() for t in ckpt["state_dict"].values())
    assert '"status": "diverged"' in (tmp_path / "run" / "result.json").read_text()


def test_divergence_in_process_raises(make_cfg) -> None:
    with pytest.raises(DivergedError, match=r"at step \d+"):
        train(make_cfg("optimizer=sgd", "optimizer.lr=1e6"))


def test_a_float16_run_that_overflows_blames_the_precision_not_the_learning_rate(make_cfg) -> None:
    with pytest.raises(DivergedError) as err:  # Adam's eps=1e-8 is 0 in float16: inf at its first updates
        train(make_cfg("trainer.precision=16-true", "trainer.max_epochs=1"))
    assert str(err.value).startswith("training diverged: the loss became inf at step ")
    assert (
        " in float16 (trainer.precision=16-true), which holds no number above 65504 nor below 6e-8 (an optimizer's "
        "eps=1e-8 is 0 there); use trainer.precision=32 or bf16-true, or 16-mixed on a GPU; the last good checkpoint "
        "is "
    ) in str(err.value)


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def val_acc_by_step(run_dir: Path) -> dict[int, float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    return {e.step: e.value for e in acc.Scalars("val/acc")}


def interrupted(args: list[str], run_dir: Path, sig: signal.Signals, after: float = 0.0) -> str:
    """Run ``python train.py ARGS`` into ``run_dir`` (its parent is the working directory), send ``sig`` ``after``
    seconds after its first epoch-end checkpoint (a best-*.ckpt) exists, and return what it printed."""
    proc = subprocess.Popen(
        [sys.executable, TRAIN, *args, f"hydra.run.dir={run_dir}", "progress_refresh_rate=0"],
        cwd=run_dir.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 240
    while not list((run_dir / "checkpoints").glob("best-*.ckpt")) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(after)
    proc.send_signal(sig)
    out = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode != 0, "the run finished before the signal: make it longer"
    # the shell's status for a process the signal stopped: 128 + signum (SIGKILL: killed, -9 to Popen)
    assert proc.returncode == (-sig if sig == signal.SIGKILL else 128 + sig), out[-2000:]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_interrupted_run_resumes_to_the_same_weights(sig: signal.Signals, tmp_path: Path) -> None:
    # Enough epochs that the signal lands mid-run; small batches so it lands mid-epoch.
    args = ["trainer.max_epochs=5", "data.batch_size=8"]
    whole = run_cli([*args, f"hydra.run.dir={tmp_path / 'whole'}"], cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr[-2000:]

    run_dir = tmp_path / "cut"
    out = interrupted(args, run_dir, sig, after=0.3)  # 0.3 s after the first epoch's end: in mid-epoch
    if sig == signal.SIGINT:
        # in mid-epoch (most often) or, when the signal lands in an epoch's last chunk or its validation, between epochs
        assert (
            "interrupted: saved a resumable checkpoint" in out or "interrupted between epochs: the run resumes" in out
        )
        assert "Traceback" not in out
        said = json.loads((run_dir / "result.json").read_text())
        last = run_dir / "checkpoints" / "last.ckpt"
        assert (said["status"], said["message"]) == (
            "interrupted",
            f"stopped by Ctrl-C or SIGTERM; resume with ckpt_path={last}",
        )
    torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)  # intact and loadable

    resumed = run_cli([*args, f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    ours, ref = final_weights(run_dir), final_weights(tmp_path / "whole")
    for key, value in ref.items():
        assert torch.equal(ours[key], value), key
    assert val_acc_by_step(run_dir) == val_acc_by_step(tmp_path / "whole")  # one continuous curve


@pytest.mark.slow
def test_ctrl_c_in_a_run_of_one_execution_per_epoch_stops_between_epochs(tmp_path: Path) -> None:
    # xor: 64 minibatches an epoch, one execution of steps_per_execution=64: every Lightning batch is an epoch's last
    args = ["data=xor", "steps_per_execution=64", "diagnostics=off", "trainer.max_epochs=400", "test=false"]
    whole = run_cli([*args, f"hydra.run.dir={tmp_path / 'whole'}"], cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr[-2000:]

    run_dir = tmp_path / "cut"
    out = interrupted(args, run_dir, signal.SIGINT)
    last = run_dir / "checkpoints" / "last.ckpt"
    assert f"interrupted between epochs: the run resumes from {last}" in out
    assert "Traceback" not in out
    assert json.loads((run_dir / "result.json").read_text())["status"] == "interrupted"

    resumed = run_cli([*args, f"ckpt_path={last}"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    ours, ref = final_weights(run_dir), final_weights(tmp_path / "whole")
    for key, value in ref.items():
        assert torch.equal(ours[key], value), key


def test_same_seed_gives_identical_metrics(make_cfg, tmp_path: Path) -> None:
    runs = [train(make_cfg("trainer.max_epochs=3", "test=false", run_dir=tmp_path / str(i))) for i in range(2)]
    assert runs[0]["history"]["val/loss"] == runs[1]["history"]["val/loss"]
    assert len(runs[0]["history"]["val/loss"]) == 3
    other = train(make_cfg("trainer.max_epochs=3", "test=false", "seed=1", run_dir=tmp_path / "other"))
    assert other["history"]["val/loss"] != runs[0]["history"]["val/loss"]


class _Exploit:
    """Unpickling this would run code: create a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_malicious_checkpoint_is_refused_and_never_runs(make_cfg, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": _Exploit(marker)}, evil)
    with pytest.raises(ConfigError, match="is not a safe nnmodel checkpoint"):
        check_checkpoint(str(evil))
    with pytest.raises(ConfigError, match="is not a safe nnmodel checkpoint"):
        train(make_cfg(f"ckpt_path={evil}", run_dir=tmp_path / "run"))
    assert not marker.exists()
    # nnmodel's own checkpoints load under the same rule
    result = train(make_cfg("trainer.max_epochs=1", "test=false", run_dir=tmp_path / "ok"))
    check_checkpoint(result["best_ckpt"])


@pytest.mark.slow
def test_ddp_metrics_equal_a_single_process_evaluation_of_the_same_weights(tmp_path: Path) -> None:
    """2 CPU processes, hand-written backprop (whose gradients nnmodel itself averages over the processes):
    val/loss and val/acc, reduced over both shards and weighted by examples, are those of one process
    evaluating the weights rank 0 saved. Unsynchronised ranks, or rank 0's shard alone, would differ."""
    import json

    run_dir = tmp_path / "ddp"
    ddp = ["trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu", "trainer.max_epochs=3"]
    proc = run_cli([*ddp, "model.backprop=manual", "test=false", f"hydra.run.dir={run_dir}"], cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trained = json.loads((run_dir / "result.json").read_text())
    assert trained["global_step"] == 30  # 1,259 examples, 630 a process: 10 steps of 64 an epoch
    last = run_dir / "checkpoints" / "last.ckpt"
    single = run_cli(
        ["eval_only=true", f"ckpt_path={last}", "test=false", f"hydra.run.dir={tmp_path / 'one'}"], cwd=tmp_path
    )
    assert single.returncode == 0, single.stderr[-3000:]
    evaluated = json.loads((tmp_path / "one" / "result.json").read_text())
    assert evaluated["val/acc"] == trained["val/acc"]  # 269 examples: the same count of correct ones
    assert evaluated["val/loss"] == pytest.approx(trained["val/loss"], rel=1e-6)


def test_sigterm_in_process_raises_interrupted_with_the_shells_status(make_cfg, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    ckpts = run_dir / "checkpoints"

    done = threading.Event()  # the run ended (however): no signal must reach pytest after it

    def send_once_the_first_epoch_is_saved() -> None:
        deadline = time.monotonic() + 120
        while not list(ckpts.glob("best-*.ckpt")) and time.monotonic() < deadline and not done.is_set():
            time.sleep(0.02)
        if not done.is_set():
            os.kill(os.getpid(), signal.SIGTERM)  # handled in the main thread, at its next bytecode

    before = signal.getsignal(signal.SIGTERM)
    sender = threading.Thread(target=send_once_the_first_epoch_is_saved, daemon=True)
    sender.start()
    try:
        with pytest.raises(Interrupted) as stopped:  # a KeyboardInterrupt, as Python and Jupyter expect
            train(make_cfg("trainer.max_epochs=100000", "data.batch_size=8", "test=false", run_dir=run_dir))
    finally:
        done.set()
        sender.join()
    assert isinstance(stopped.value, KeyboardInterrupt)
    assert (stopped.value.signum, stopped.value.exit_status, str(stopped.value)) == (15, 143, "stopped by SIGTERM")
    again = pickle.loads(pickle.dumps(stopped.value))  # from a worker process to its parent (joblib, fork)
    assert (type(again), again.signum, again.exit_status, str(again)) == (Interrupted, 15, 143, "stopped by SIGTERM")
    said = json.loads((run_dir / "result.json").read_text())
    assert (said["status"], said["message"]) == (
        "interrupted",
        f"stopped by Ctrl-C or SIGTERM; resume with ckpt_path={ckpts / 'last.ckpt'}",
    )
    assert signal.getsignal(signal.SIGTERM) == before  # nnmodel's and Lightning's handlers are given back


@pytest.mark.parametrize("validated", [True, False], ids=["best", "no_validation"])
def test_ctrl_c_in_the_test_records_the_finished_training_and_what_to_test(
    make_cfg, tmp_path: Path, monkeypatch, validated: bool
) -> None:
    # before: the training was done and saved, but the run left no result.json at all
    from nnmodel.module import NNModule

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(NNModule, "test_step", ctrl_c)
    run_dir = tmp_path / "run"
    limit = [] if validated else ["trainer.limit_val_batches=0"]
    warned = contextlib.nullcontext() if validated else pytest.warns(NNModelWarning)  # "no validation ran"
    with warned, pytest.raises(KeyboardInterrupt):
        train(make_cfg("data=xor", "trainer.max_epochs=2", *limit, run_dir=run_dir))
    said = json.loads((run_dir / "result.json").read_text())
    tested = said["best_ckpt"] if validated else str(run_dir / "checkpoints" / "last.ckpt")
    assert Path(tested).is_file() and said["epochs"] == 2 and "test/acc" not in said
    assert (said["status"], said["message"]) == (
        "interrupted",
        f"stopped by Ctrl-C or SIGTERM in the test, after training; test with eval_only=true ckpt_path={tested}",
    )
    assert (said["val/acc"] is not None) == validated
