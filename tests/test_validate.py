"""The one validation path (nnmodel.validate, nnmodel.config): refusals in one line, checked in-process.

The command line says the same lines as ``error: ...`` (tests/test_robust.py runs some of them through
``python train.py``); these are the cases a tester found crashing or silently accepted.
"""

from __future__ import annotations

import os
import typing
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from nnmodel.config import compose, compose_checked
from nnmodel.errors import ConfigError, NNModelWarning
from nnmodel.validate import check_checkpoint, fits_annotation, validate_config


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["+sed=1"], "unknown key 'sed'; did you mean 'seed'? choose one of: ckpt_path, cuda_graphs, data, "),
        (["seed=99999999999"], "seed must be an integer < 2**32 (numpy's seeds are 32-bit), got 99999999999"),
        (["eval_only=maybe"], "eval_only must be true or false, got 'maybe'"),
        (["test=1"], "test must be true or false, got 1"),
        (
            ["model.epsilon=1e308"],
            "model.epsilon: epsilon must be at most 1.70141e+38 (weights are float32), got 1e+308",
        ),
        (
            ["model.activation=math:sqrt"],
            "model.activation: 'math:sqrt' is not an elementwise function of a tensor (given z of shape (3, 4) that "
            "requires grad, it raised ValueError: only one element tensors can be converted to Python scalars); it "
            "must return a float tensor of z's shape holding g(z) for each z, computed with torch operations",
        ),
        (  # it would pass on a tensor without grad, and crash at the first training step
            ["model.activation=numpy:tanh"],
            "model.activation: 'numpy:tanh' is not an elementwise function of a tensor (given z of shape (3, 4) that "
            "requires grad, it raised RuntimeError: Can't call numpy() on Tensor that requires grad. ",
        ),
        (
            ["optimizer=nag", "optimizer.momentum=0"],
            "optimizer=nag (Nesterov momentum) needs optimizer.momentum > 0 and optimizer.dampening=0, got "
            "momentum=0.0, dampening=0; for no momentum at all use optimizer=sgd",
        ),
        (
            ["optimizer=sgd", "optimizer.nesterov=true"],
            "optimizer.nesterov=true (Nesterov momentum) needs optimizer.momentum > 0 and optimizer.dampening=0, got "
            "momentum=0, dampening=0",
        ),
        (
            ["optimizer=nag", "optimizer.dampening=0.5"],
            "optimizer=nag (Nesterov momentum) needs optimizer.momentum > 0 and optimizer.dampening=0, got "
            "momentum=0.9, dampening=0.5; for no momentum at all use optimizer=sgd",
        ),
        (
            ["trainer.enable_checkpointing=false"],
            "trainer.enable_checkpointing=false: nnmodel's run is its checkpoints (the best by val/acc is tested, "
            "last.ckpt resumes it, nnmodel.load reads them); leave it at true",
        ),
        (
            ["trainer.precision=16-mixed", "model.backprop=manual"],
            "trainer.precision=16-mixed with model.backprop=manual: mixed precision runs autograd's backward in lower "
            "precision, which the hand-written backprop does not; use model.backprop=autograd, or "
            "trainer.precision=32 (or 64, bf16-true)",
        ),
        (["trainer.precision=bf16", "model.backprop=manual"], "trainer.precision=bf16 with model.backprop=manual: "),
        (["trainer.limit_val_batches=1.5"], "trainer.limit_val_batches must be a number in [0, 1], got 1.5"),
        (
            ["model.activation=torch:sum"],
            "model.activation: 'torch:sum' is not an elementwise function of a tensor (given z of shape (3, 4), it "
            "returned Tensor ()); it must return a float tensor of z's shape holding g(z) for each z",
        ),
        (
            ["model.activation=torch.nn.functional:softmax"],
            "model.activation: 'torch.nn.functional:softmax' is not an elementwise function of a tensor (a unit's a "
            "depends on other units' z, as a softmax's does); it must return a float tensor of z's shape holding g(z) "
            "for each z",
        ),
        (["trainer.deterministic=abc"], "trainer.deterministic must be one of true, false, 'warn', null, got 'abc'"),
        (["trainer.enable_checkpointing=3"], "trainer.enable_checkpointing must be one of true, false, null, got 3"),
        (["trainer.max_epochs=2.5"], "trainer.max_epochs must be an integer or null, got 2.5"),
        (["trainer.precision=abc"], "trainer.precision must be one of 64, 32, 16, 'transformer-engine', "),
        (["trainer.log_every_n_steps=0"], "trainer.log_every_n_steps must be an integer >= 1, got 0"),
        (["trainer.check_val_every_n_epoch=0"], "trainer.check_val_every_n_epoch must be an integer >= 1, got 0"),
        (
            ["trainer.accelerator=tpu"],
            "trainer.accelerator=tpu needs the torch_xla package, which is not installed here; use trainer.accelerator=cpu",
        ),
        (
            ["data.path=flowers.csv", "data.target=species"],
            "data.path is not read by data=digits, only by data=csv,npz: drop it, or choose one of those",
        ),
        (
            ["data=xor", "data.val_fraction=0.5"],
            "data.val_fraction is not read by data=xor, only by data=circles,csv,digits,fashion_mnist,kmnist,mnist,"
            "moons,npz: drop it, or choose one of those",
        ),
        (
            ["data=mnist", "data.test_fraction=0.2"],
            "data.test_fraction is not read by data=mnist, only by data=circles,csv,digits,moons,npz: drop it, or "
            "choose one of those",
        ),
        (
            ["data.val_fraction=0"],
            "data.val_fraction=0 leaves the val split empty; a run needs val examples (they pick the best checkpoint) "
            "and test examples (they measure it)",
        ),
        (
            ["data=npz", "data.path=points.npz", "data.features=[0,1]"],
            "data.features is not read by data=npz, only by data=csv: drop it, or choose one of those",
        ),
        (["data=moons", "data.test_fraction=0"], "data.test_fraction=0 leaves the test split empty; "),
        (["data=mnist", "data.val_fraction=0"], "data.val_fraction=0 leaves the val split empty; "),
        (
            ["optimizer.foreach=true", "optimizer.fused=true"],
            "optimizer.foreach=true and optimizer.fused=true: torch.optim takes one or the other; drop one",
        ),
    ],
)
def test_a_bad_value_is_refused_in_one_line(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate_config(compose(overrides))
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.logger=false", "trainer.logger is nnmodel's to set (TensorBoard, in the run directory's tb/; "
                                 "diagnostics=off writes only the curves); drop that override"),
        ("+trainer.callbacks=[]", "trainer.callbacks is nnmodel's to set (its checkpoints, diagnostics and progress "
                                  "bar; diagnostics=off and progress_refresh_rate=0 turn the optional ones off); drop "
                                  "that override"),
        ("trainer.default_root_dir=x", "trainer.default_root_dir is nnmodel's to set (the run directory: "
                                       "paths.output_dir=DIR); drop that override"),
    ],
)  # fmt: skip
def test_a_trainer_keyword_nnmodel_sets_is_not_called_unknown(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:  # it said: unknown key 'trainer.logger'; choose one of: ...
        validate_config(compose_checked([override]))
    assert str(err.value) == message


def test_a_minibatch_too_large_for_memory_is_blamed_on_the_batch_size() -> None:
    with pytest.raises(ConfigError) as err:
        validate_config(compose(["data.batch_size=100000000000"]))
    assert str(err.value).startswith("data.batch_size=100000000000: one minibatch's z, a and δ through 64-128-10 need")
    assert str(err.value).endswith("choose a smaller data.batch_size (a full batch is the number of training examples)")


def test_a_key_the_experiment_preset_set_is_said_to_come_from_it(tmp_path: Path) -> None:
    from nnmodel.training import prepare

    table = tmp_path / "t.csv"
    table.write_text("a,b,label\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(40)))
    given = ["experiment=gates", "data=csv", f"data.path={table}", "data.target=label"]
    with pytest.raises(ConfigError) as err:
        prepare(compose(given), given)
    assert str(err.value) == (
        "data.repeats is not read by data=csv, only by data=and,or,xor: drop it, or choose one of those "
        "(experiment=gates sets data.repeats=32; data.repeats=64 undoes it)"
    )
    typed = [*given, "data.repeats=32"]  # the user's own value: no word of the preset
    with pytest.raises(ConfigError, match=r"choose one of those$"):
        prepare(compose(typed), typed)
    undone = [*given, "data.repeats=64"]
    assert prepare(compose(undone), undone)[0].data.repeats == 64


def test_a_key_a_preset_adds_and_refers_to_is_known() -> None:
    validate_config(compose(["experiment=init", "init_variant=zero"]))  # init_variant: experiment=init's own key


def test_every_trainer_preset_passes_the_trainer_types() -> None:
    for preset in ("cpu", "debug"):  # gpu and ddp need the machine to have what they ask for
        validate_config(compose([f"trainer={preset}"]))


@pytest.mark.parametrize(
    ("value", "annotation", "verdict"),
    [
        (True, bool, True),
        (1, bool, False),
        (True, int, False),
        (3, float, True),
        (None, int | None, True),
        ("warn", bool | typing.Literal["warn"] | None, True),
        (64, typing.Literal[64, "64"], True),
        ("64", typing.Literal[64], False),
        ("anything", str | Path, True),
        ([1, 2], list[int] | str | int, None),  # a list: Lightning's to check
    ],
)
def test_values_against_lightnings_annotations(value, annotation, verdict) -> None:
    assert fits_annotation(value, annotation)[0] is verdict


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "model.hidden=64",
            "Error merging override model.hidden=64; Invalid value assigned: int is not a ListConfig, list or tuple; "
            "model.hidden takes a list, e.g. model.hidden=[64]",
        ),
        (
            "model.hidden=[8.0]",
            "Error merging override model.hidden=[8.0]; Value '8.0' of type 'float' could not be converted to Integer; "
            "model.hidden takes a list of whole numbers, e.g. model.hidden=[64]",
        ),
        (
            "optimizer.lr=abc",
            "Error merging override optimizer.lr=abc; Value 'abc' of type 'str' could not be converted to Float; "
            "optimizer.lr takes a number, e.g. optimizer.lr=0.1",
        ),
        (
            "data.batch_size=1.5",
            "Error merging override data.batch_size=1.5; Value '1.5' of type 'float' could not be converted to "
            "Integer; data.batch_size takes a whole number, e.g. data.batch_size=64",
        ),
        (
            "~data.batch_size",
            "Error merging override ~data.batch_size; DataConfig (DictConfig) does not support deletion; "
            "data.batch_size cannot be deleted, set it instead (data.batch_size=...)",
        ),
    ],
)
def test_a_value_of_the_wrong_type_says_what_to_write(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        compose_checked([override])
    assert str(err.value) == message


class _Payload:
    def __reduce__(self):
        return (os.getcwd, ())


def test_what_is_not_a_checkpoint_of_nnmodels_is_said_plainly(tmp_path: Path) -> None:
    files = {"notes.txt": b"# my notes\n", "empty.ckpt": b""}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    torch.save({"state_dict": {}, "x": _Payload()}, tmp_path / "evil.ckpt")
    whole = (tmp_path / "other.ckpt").read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(whole[: len(whole) // 2])
    said = {}
    for name in ("notes.txt", "empty.ckpt", "other.ckpt", "evil.ckpt", "cut.ckpt"):
        with pytest.raises(ConfigError) as err:
            check_checkpoint(str(tmp_path / name))
        said[name] = str(err.value).replace(str(tmp_path), "T")
    not_zip = "is not a checkpoint (torch.save writes a zip archive; this file is not one)"
    assert said == {
        "notes.txt": f"ckpt_path: 'T/notes.txt' {not_zip}",
        "empty.ckpt": f"ckpt_path: 'T/empty.ckpt' {not_zip}",
        "other.ckpt": "ckpt_path: 'T/other.ckpt' is not a checkpoint of nnmodel's (it has no pytorch-lightning_version, "
        "hyper_parameters.n_in, hyper_parameters.n_classes); give one that python train.py wrote "
        "(checkpoints/best-*.ckpt or last.ckpt)",
        "evil.ckpt": "ckpt_path: 'T/evil.ckpt' is not a safe nnmodel checkpoint: it holds a Python object "
        "(posix.getcwd) that loading would have to run, and nnmodel loads weights only",
        "cut.ckpt": "ckpt_path: 'T/cut.ckpt' is truncated or damaged (its zip archive has no end); save or copy it "
        "again",
    }


def test_a_damaged_checkpoint_a_zip_of_other_arrays_and_a_run_directory_are_said_plainly(tmp_path: Path) -> None:
    hp = {"n_in": 2, "hidden": [3], "n_classes": 2}
    state = {"net.layers.0.weight": torch.zeros(3, 2), "net.layers.0.bias": torch.zeros(3),
             "net.layers.1.weight": torch.zeros(2, 3), "net.layers.1.bias": torch.zeros(2)}  # fmt: skip
    ckpt = {"state_dict": state, "pytorch-lightning_version": "2.6.0", "hyper_parameters": hp}
    torch.save(ckpt, tmp_path / "good.ckpt")
    check_checkpoint(str(tmp_path / "good.ckpt"))
    logistic = {k: v[:1] if "layers.1" in k else v for k, v in state.items()}  # 2 classes, one logistic output unit
    torch.save({**ckpt, "state_dict": logistic, "hyper_parameters": {**hp, "output": "sigmoid"}}, tmp_path / "l.ckpt")
    check_checkpoint(str(tmp_path / "l.ckpt"))
    torch.save({**ckpt, "state_dict": {**state, "net.layers.0.weight": torch.zeros(1, 2)}}, tmp_path / "cut.ckpt")
    torch.save({**ckpt, "state_dict": {k: v for k, v in state.items() if "1." not in k}}, tmp_path / "short.ckpt")
    np.savez(tmp_path / "points.npz", X=np.zeros((2, 2)))
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    torch.save(ckpt, tmp_path / "run" / "checkpoints" / "last.ckpt")
    said = {}
    for name in ("cut.ckpt", "short.ckpt", "points.npz", "run"):
        with pytest.raises(ConfigError) as err:
            check_checkpoint(str(tmp_path / name))
        said[name] = str(err.value).replace(str(tmp_path), "T")
    assert said == {
        "cut.ckpt": "ckpt_path: 'T/cut.ckpt' is damaged: it has net.layers.0.weight of shape (1, 2), but the network "
        "it records (2-3-2) has (3, 2); use another checkpoint",
        "short.ckpt": "ckpt_path: 'T/short.ckpt' is damaged: it has no net.layers.1.bias, but the network it records "
        "(2-3-2) has (2,); use another checkpoint",
        "points.npz": "ckpt_path: 'T/points.npz' could not be read as a checkpoint (file in archive is not in a "
        "subdirectory: X.npy)",
        "run": "ckpt_path: 'T/run' is a directory, not a checkpoint (give a .ckpt file, or `last`); its run's last "
        "checkpoint is ckpt_path=T/run/checkpoints/last.ckpt",
    }


@pytest.mark.parametrize("key", ["seed", "model", "paths"])
def test_a_key_every_run_reads_cannot_be_deleted(key: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate_config(compose([f"~{key}"]))
    assert str(err.value) == f"{key} is missing (~{key} deletes it), and every run needs it; drop that override"


def test_a_trainer_lightning_refuses_to_build_is_one_line(tmp_path: Path) -> None:
    from nnmodel.training import build_trainer

    with pytest.raises(ConfigError) as err:
        build_trainer(compose(["trainer.devices=[0,1]"]), tmp_path)  # Lightning's TypeError, on a CPU accelerator
    assert str(err.value) == "trainer: `devices` selected with `CPUAccelerator` should be an int > 0."
    with pytest.raises(ConfigError) as err:
        build_trainer(compose(["trainer.strategy=fsdp"]), tmp_path)
    assert str(err.value).startswith("trainer: The strategy `fsdp` requires a GPU accelerator, but received")


def test_a_fast_dev_run_says_it_wrote_no_logs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from nnmodel.training import train

    cfg = compose(["trainer=debug", "data=xor", f"paths.output_dir={tmp_path / 'run'}", "progress_refresh_rate=0"])
    train(cfg)
    out = capsys.readouterr().out
    assert "  logs       none (trainer.fast_dev_run writes no TensorBoard logs)\n" in out
    assert not (tmp_path / "run" / "tb").exists()
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing for ckpt_path=last to find
    assert "  checkpoint none\n" in out


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["paths.output_dir=runs/s${sed}"], "paths.output_dir: Interpolation key 'sed' not found"),
        (["model.epsilon=${nope}"], "model.epsilon: Interpolation key 'nope' not found"),
        (
            ["experiment=init", "init_variant=bogus"],
            "model.init: Interpolation key 'init_variants.bogus.init' not found",
        ),
    ],
)
def test_an_interpolation_that_resolves_to_nothing_is_one_line(overrides: list[str], message: str) -> None:
    from nnmodel.validate import check_interpolations

    with pytest.raises(ConfigError) as err:
        check_interpolations(compose(overrides))
    assert str(err.value) == message
    check_interpolations(compose(["paths.output_dir=runs/s${seed}", "experiment=init", "init_variant=zero"]))


OPTIMIZERS = "adadelta, adagrad, adam, adamax, adamw, amsgrad, momentum, nadam, nag, rmsprop, sgd"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer=adamm", f"unknown optimizer 'adamm'; did you mean 'adam'? choose one of: {OPTIMIZERS}"),
        ("optimizer=sgd,adamm", f"unknown optimizer 'adamm'; did you mean 'adam'? choose one of: {OPTIMIZERS}"),
        ("optimizer=choice(sgd,adamm)", f"unknown optimizer 'adamm'; did you mean 'adam'? choose one of: {OPTIMIZERS}"),
        ("optimizer=glob(zz*)", f"optimizer=glob(zz*) matches no optimizer preset; choose from: {OPTIMIZERS}"),
    ],
)
def test_a_group_choice_is_checked_in_a_sweep_too_before_any_run(override: str, message: str) -> None:
    from nnmodel.config import check_group_choices

    with pytest.raises(ConfigError) as err:
        check_group_choices([override])
    assert str(err.value) == message


def test_a_glob_of_a_group_gives_its_presets_and_never_the_schema() -> None:
    from nnmodel.config import check_group_choices, chosen

    assert chosen("optimizer=glob(ada*)") == ("optimizer", ["adadelta", "adagrad", "adam", "adamax", "adamw"])
    assert "schema" not in chosen("data=glob(*)")[1]
    # Hydra's own list of a group's options (--help, glob(*)) holds the presets, not the schema stored beside them
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from nnmodel.config import CONFIG_DIR, GROUPS

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        options = {group: loader.get_group_options(group) for group in GROUPS}
    assert options["data"][:3] == ["and", "circles", "csv"] and not [
        g for g, names in options.items() if "schema" in names
    ]
    check_group_choices(["optimizer=glob(ada*)", "optimizer=sgd,adam", "seed=range(3)", "~data.batch_size"])


@pytest.mark.parametrize(
    ("overrides", "warned"),
    [
        (["model.init=xavier", "model.epsilon=5.0"],
         "model.epsilon=5.0 changes nothing: model.init=xavier takes no ε (epsilon_uniform does)"),
        (["model.leaky_slope=0.5"], "model.leaky_slope=0.5 changes nothing: no layer's activation is leaky_relu"),
        (["optimizer.scheduler.name=cosine", "optimizer.scheduler.gamma=0.5"],
         "optimizer.scheduler.gamma=0.5 changes nothing: scheduler 'cosine' does not read it (its settings: T_max, "
         "eta_min)"),
        (["optimizer.scheduler.step_size=3"],
         "optimizer.scheduler.step_size=3 changes nothing: scheduler 'none' does not read it (it has no settings)"),
    ],
)  # fmt: skip
def test_a_setting_that_changes_nothing_is_warned_not_refused(overrides: list[str], warned: str) -> None:
    from nnmodel.errors import NNModelWarning

    with pytest.warns(NNModelWarning) as record:
        validate_config(compose(overrides))
    assert [str(w.message) for w in record if issubclass(w.category, NNModelWarning)] == [warned]


@pytest.mark.parametrize(
    "overrides",
    [[], ["model.init=xavier"], ["model.init=epsilon_uniform", "model.epsilon=0.5"],
     ["model.activation=leaky_relu", "model.leaky_slope=0.2"],
     ["optimizer.scheduler.name=step", "optimizer.scheduler.gamma=0.2"], ["experiment=init"]],
)  # fmt: skip
def test_settings_that_are_read_are_not_warned(overrides: list[str]) -> None:
    import warnings

    from nnmodel.errors import NNModelWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error", NNModelWarning)
        validate_config(compose(overrides))


CLUSTER_VARIABLES = ("NODE_RANK", "MASTER_ADDR", "SLURM_NTASKS", "SLURM_JOB_NAME", "LSB_JOBID", "OMPI_COMM_WORLD_SIZE")


def test_more_nodes_than_one_need_a_cluster_to_start_them(monkeypatch: pytest.MonkeyPatch) -> None:
    # without one, Lightning waits for the other nodes for ever (a tester's run: no output until killed)
    for name in (*CLUSTER_VARIABLES, "TORCHELASTIC_RUN_ID", "GROUP_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError) as err:
        validate_config(compose(["trainer=ddp", "trainer.num_nodes=2"]))
    assert str(err.value).startswith(
        "trainer.num_nodes=2: this process was not started on a cluster (no SLURM, torchrun, LSF or MPI environment, "
        "no NODE_RANK and MASTER_ADDR), so it would wait for the other nodes for ever; "
    )
    monkeypatch.setenv("NODE_RANK", "1")  # started by hand on each node, as Lightning's docs show
    monkeypatch.setenv("MASTER_ADDR", "10.0.0.1")
    validate_config(compose(["trainer=ddp", "trainer.num_nodes=2"]))


def test_more_cpu_processes_than_cores_is_warned_of_not_refused(monkeypatch) -> None:
    from nnmodel import validate

    monkeypatch.setattr(validate, "usable_cores", lambda: 2)
    with pytest.warns(NNModelWarning) as warned:
        validate.check_machine(OmegaConf.create({"accelerator": "cpu", "devices": 3}))
    assert [str(w.message) for w in warned] == [
        "trainer.devices=3 starts 3 training processes (DDP) on 2 CPU cores, which then share them: each step waits "
        "for the slowest; trainer.devices=2 or fewer, or 1, is faster here"
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        validate.check_machine(OmegaConf.create({"accelerator": "cpu", "devices": 2}))  # one a core: no warning
