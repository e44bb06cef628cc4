"""Evaluating a checkpoint on other data, resuming the right run, and where a run may write.

Every refusal is one ConfigError line said before anything is written; every evaluation measures the network
the checkpoint holds, with the preprocessing it was trained with (nnmodel.load(ckpt).predict's).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli import error_lines, run_cli

import nnmodel
from nnmodel.data import TensorDataModule
from nnmodel.errors import ConfigError
from nnmodel.resume import RECORD_KEY, resolve_ckpt_path

QUIET = ("progress_refresh_rate=0", "diagnostics=off")
FLOWERS = {"setosa": (1.5, 0.25), "versicolor": (4.3, 1.3), "virginica": (5.6, 2.0)}


def write_flowers(path: Path, counts: dict[str, int], seed: int = 0, labels: dict[str, str] | None = None,
                  header: tuple[str, str, str] = ("length", "width", "species")) -> Path:  # fmt: skip
    """A small flowers table: ``counts[species]`` rows of each, two measurements (columns in ``header``'s
    order: the label column may come anywhere), a label (``labels`` renames them)."""
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(header)
        for species, n in counts.items():
            for _ in range(n):
                length, width = FLOWERS[species]
                row = {
                    "length": round(rng.normal(length, 0.3), 2),
                    "width": round(rng.normal(width, 0.15), 2),
                    "species": (labels or {}).get(species, species),
                }
                out.writerow([row[name] for name in header])
    return path


@pytest.fixture
def trained(tmp_path: Path, monkeypatch) -> Path:
    """A checkpoint trained on 20 flowers of each species (runs in tmp_path; its last.ckpt)."""
    monkeypatch.chdir(tmp_path)
    write_flowers(tmp_path / "flowers.csv", dict.fromkeys(FLOWERS, 20))
    nnmodel.train(
        "data=csv", "data.path=flowers.csv", "data.target=species", "optimizer.lr=0.05", "trainer.max_epochs=10",
        "test=false", "paths.output_dir=first", *QUIET,
    )  # fmt: skip
    return tmp_path / "first" / "checkpoints" / "last.ckpt"


def evaluate(ckpt: Path, *overrides: str, out: str = "eval") -> dict:
    return nnmodel.train(
        "eval_only=true", f"ckpt_path={ckpt}", "test=true", f"paths.output_dir={out}", *QUIET, *overrides
    ).result


def snapshot(folder: Path) -> dict[Path, bytes | None]:
    """Every file (with its bytes) and every directory under ``folder``."""
    return {p: p.read_bytes() if p.is_file() else None for p in folder.rglob("*")}


def refusal(*overrides: str) -> str:
    """The one line nnmodel.train refuses ``overrides`` with."""
    with pytest.raises(ConfigError) as err:
        nnmodel.train(*overrides, *QUIET)
    message = str(err.value)
    assert "\n" not in message
    return message


# ----------------------------------------------------------------------------- eval_only on another table


def test_eval_on_another_table_uses_the_checkpoints_standardisation(trained: Path, tmp_path: Path) -> None:
    # all the setosa, few of the others: this table's own mean and std are far from the training split's
    other = write_flowers(tmp_path / "other.csv", {"setosa": 40, "versicolor": 7, "virginica": 7}, seed=1)
    r = evaluate(trained, f"data.path={other.name}")
    saved = torch.load(trained, weights_only=True)["TensorDataModule"]
    assert saved["mean"] is not None and len(saved["mean"]) == 2
    # what nnmodel.load(ckpt).predict (the checkpoint's own mean and std) makes of the same raw val rows
    raw = TensorDataModule(name="csv", path=str(other), target="species", standardize=False)
    x, y = raw.split("val")
    model = nnmodel.load(trained)
    expected_acc = float(np.mean(model.predict(x.numpy()) == np.asarray(raw.classes, dtype=object)[y.numpy()]))
    expected_loss = float(-np.log(model.predict_proba(x.numpy())[np.arange(len(y)), y.numpy()]).mean())
    assert r["val/acc"] == expected_acc
    assert r["val/loss"] == pytest.approx(expected_loss, rel=1e-5)
    x, y = raw.split("test")
    assert r["test/acc"] == float(np.mean(model.predict(x.numpy()) == np.asarray(raw.classes, dtype=object)[y.numpy()]))


def test_eval_picks_a_tables_input_columns_by_the_names_the_checkpoint_recorded(trained: Path, tmp_path: Path) -> None:
    assert torch.load(trained, weights_only=True)[RECORD_KEY]["columns"] == ["length", "width"]
    # the same rows, written with the label first and the two inputs swapped: evaluated as the original table
    same = evaluate(trained, out="same")
    swapped = write_flowers(tmp_path / "swapped.csv", dict.fromkeys(FLOWERS, 20), header=("species", "width", "length"))
    moved = evaluate(trained, f"data.path={swapped.name}", out="moved")
    assert (moved["val/acc"], moved["val/loss"]) == (same["val/acc"], same["val/loss"])
    named = evaluate(trained, f"data.path={swapped.name}", "data.features=[length,width]", out="named")
    assert (named["val/acc"], named["val/loss"]) == (same["val/acc"], same["val/loss"])  # the same columns, named
    # a table without one of them is refused, naming it
    with open(tmp_path / "short.csv", "w") as f:
        f.write("length,kind,species\n" + "".join(f"{i},{i},{'ab'[i % 2]}\n" for i in range(40)))
    assert refusal("eval_only=true", f"ckpt_path={trained}", "data.path=short.csv", "paths.output_dir=x") == (
        "data.path: 'short.csv' has no column 'width', an input of the checkpoint's network (its inputs: length, "
        "width); evaluate it on a table with those columns"
    )
    # one of its inputs named as the label column: said in the checkpoint's terms, not data.features'
    assert refusal("eval_only=true", f"ckpt_path={trained}", "data.target=length", "paths.output_dir=x") == (
        "data.target: 'length' is an input of the checkpoint's network (its inputs: length, width), not a column of "
        "labels; evaluate with the label column it was trained on (data.target=species)"
    )
    assert not (tmp_path / "x").exists()


def test_a_csv_checkpoint_evaluates_on_an_npz_of_the_same_rows(trained: Path, tmp_path: Path) -> None:
    # an .npz has no column names: the CSV's recorded input columns (data.features) are not carried over to it
    rows = list(csv.DictReader((tmp_path / "flowers.csv").read_text().splitlines()))
    x = np.array([[float(r["length"]), float(r["width"])] for r in rows])
    np.savez(tmp_path / "flowers.npz", X=x, y=np.array([r["species"] for r in rows]))
    on_csv = evaluate(trained, out="on_csv")
    on_npz = evaluate(trained, "data=npz", "data.path=flowers.npz", out="on_npz")
    assert (on_npz["val/acc"], on_npz["test/acc"]) == (on_csv["val/acc"], on_csv["test/acc"])
    assert on_npz["val/loss"] == pytest.approx(on_csv["val/loss"], rel=1e-6)
    # a checkpoint trained with data.features named: the names stay with the CSV too
    nnmodel.train(
        "data=csv", "data.path=flowers.csv", "data.target=species", "data.features=[length,width]",
        "optimizer.lr=0.05", "trainer.max_epochs=10", "test=false", "paths.output_dir=named", *QUIET,
    )  # fmt: skip
    named = evaluate(tmp_path / "named" / "checkpoints" / "last.ckpt", "data=npz", "data.path=flowers.npz", out="n")
    assert named["val/acc"] == evaluate(tmp_path / "named" / "checkpoints" / "last.ckpt", out="n_csv")["val/acc"]


def test_load_picks_a_data_frames_columns_by_the_names_the_checkpoint_recorded(trained: Path, tmp_path: Path) -> None:
    import pandas as pd

    model = nnmodel.load(trained)
    table = pd.read_csv(tmp_path / "flowers.csv")
    expected = model.predict(table[["length", "width"]].to_numpy())  # an array: by position, the network's order
    np.testing.assert_array_equal(model.predict(table), expected)  # the label column is not an input: ignored
    np.testing.assert_array_equal(model.predict(table[["width", "length"]]), expected)  # by name, not position
    assert (expected == table["species"].to_numpy()).mean() > 0.9  # and they are right
    with pytest.raises(ConfigError) as refused:
        model.predict(table[["length", "species"]])
    assert str(refused.value) == (
        "X has no column 'width'; the network takes the columns ['length', 'width'] (a DataFrame's are picked by "
        "name, other columns ignored; an array's by position)"
    )


@pytest.mark.parametrize(
    ("labels", "shown"),
    [
        ({"setosa": "zsetosa"}, "['versicolor', 'virginica', 'zsetosa']"),  # one renamed: pairs would shift
        ({"setosa": "1", "versicolor": "2", "virginica": "10"}, "[1, 2, 10]"),  # numbers for the words
    ],
    ids=["renamed", "numbers"],
)
def test_eval_refuses_a_table_with_other_labels(labels: dict, shown: str, trained: Path, tmp_path: Path) -> None:
    write_flowers(tmp_path / "relabelled.csv", dict.fromkeys(FLOWERS, 20), labels=labels)
    message = refusal("eval_only=true", f"ckpt_path={trained}", "data.path=relabelled.csv", "paths.output_dir=x")
    assert message == (
        f"data.target: the labels of 'relabelled.csv' (column 'species') are {shown}, but the checkpoint was "
        "trained on ['setosa', 'versicolor', 'virginica']; evaluate it on data with the same labels"
    )
    assert not (tmp_path / "x").exists()


def test_eval_on_a_table_of_some_of_the_classes_names_them(trained: Path, tmp_path: Path) -> None:
    write_flowers(tmp_path / "two.csv", {"setosa": 20, "versicolor": 20})
    message = refusal("eval_only=true", f"ckpt_path={trained}", "data.path=two.csv", "paths.output_dir=x")
    assert message == (
        "data.target: the labels of 'two.csv' (column 'species') are ['setosa', 'versicolor'], but the checkpoint was "
        "trained on ['setosa', 'versicolor', 'virginica']; evaluate it on data with the same labels"
    )


@pytest.mark.parametrize(
    ("override", "trained_with"),
    [
        ("data.standardize=false", "data.standardize=True"),
        ("data.features=[width,length]", "data.features=['length', 'width']"),
    ],
)
def test_eval_refuses_another_meaning_of_the_inputs(override: str, trained_with: str, trained: Path) -> None:
    key, _, _ = override.partition("=")
    value = {"data.standardize": "False", "data.features": "['width', 'length']"}[key]
    assert refusal("eval_only=true", f"ckpt_path={trained}", override, "paths.output_dir=x") == (
        f"ckpt_path: cannot evaluate with {key}={value}: the checkpoint was trained with {trained_with}; drop that "
        "override (evaluating a checkpoint keeps what its inputs mean), or start a new run without ckpt_path"
    )


def test_eval_keeps_the_split_of_its_own_table_but_not_of_another(trained: Path, tmp_path: Path) -> None:
    assert refusal("eval_only=true", f"ckpt_path={trained}", "data.test_seed=3", "paths.output_dir=x") == (
        "ckpt_path: cannot evaluate with data.test_seed=3: the checkpoint was trained with data.test_seed=0; drop "
        "that override (on its own data a checkpoint is evaluated on its val and test splits, free of training "
        "examples), or start a new run without ckpt_path"
    )
    other = write_flowers(tmp_path / "other.csv", dict.fromkeys(FLOWERS, 20), seed=2)
    r = evaluate(trained, f"data.path={other.name}", "data.test_seed=3", "data.batch_size=7")
    assert r["status"] == "ok" and r["val/acc"] is not None


# ----------------------------------------------------------------------------- ckpt_path=last


def _fake_run(path: Path, mtime: int) -> Path:
    ckpt = path / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"")
    os.utime(ckpt, ns=(mtime, mtime))
    return ckpt


def test_last_is_the_newest_run_of_the_current_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        resolve_ckpt_path("last", tmp_path)
    assert str(err.value) == (
        "ckpt_path=last: no run here (no checkpoints/last.ckpt in a directory one to 4 levels under "
        f"{tmp_path}); give ckpt_path=PATH"
    )
    _fake_run(tmp_path / "outputs" / "2026-01-01" / "10-00-00-000000", 1_000)
    assert resolve_ckpt_path("last", tmp_path) == str(
        tmp_path / "outputs/2026-01-01/10-00-00-000000/checkpoints/last.ckpt"
    )
    mine = _fake_run(tmp_path / "myrun", 2_000)  # paths.output_dir=myrun
    assert resolve_ckpt_path("last", tmp_path) == str(mine)
    swept = _fake_run(tmp_path / "multirun" / "2026-01-01" / "11-00-00-000000" / "3", 3_000)
    assert resolve_ckpt_path("last", tmp_path) == str(swept)
    nested = _fake_run(tmp_path / "runs" / "study" / "s0", 4_000)  # paths.output_dir=runs/study/s${seed}
    assert resolve_ckpt_path("last", tmp_path) == str(nested)
    _fake_run(tmp_path / "a" / "b" / "c" / "d" / "e", 5_000)  # five levels down: not searched
    assert resolve_ckpt_path("last", tmp_path) == str(nested)
    assert resolve_ckpt_path("some/path.ckpt", tmp_path) == "some/path.ckpt"


def test_last_resumes_a_run_written_with_paths_output_dir(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    nnmodel.train("data=xor", "trainer.max_epochs=1", "test=false", *QUIET)  # an older run under outputs/
    (older,) = (tmp_path / "outputs").glob("*/*")
    nnmodel.train("data=xor", "trainer.max_epochs=1", "test=false", "paths.output_dir=myrun", *QUIET)
    run = nnmodel.train("ckpt_path=last", "trainer.max_epochs=2", *QUIET)
    assert run.run_dir == tmp_path / "myrun" and run.metrics["global_step"] == 128  # 64 steps an epoch
    assert json.loads((older / "result.json").read_text())["global_step"] == 64  # the older run is untouched


# ----------------------------------------------------------------------------- resuming a finished run


def test_resuming_a_finished_run_is_refused_and_changes_nothing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    nnmodel.train("data=xor", "trainer.max_epochs=2", "paths.output_dir=done", *QUIET)
    last = tmp_path / "done" / "checkpoints" / "last.ckpt"
    before = snapshot(tmp_path / "done")
    assert refusal(f"ckpt_path={last}") == (
        "ckpt_path: the checkpoint has finished 2 epochs (trainer.max_epochs=2); to train on, raise "
        "trainer.max_epochs above 2, or evaluate it with eval_only=true"
    )
    assert refusal("ckpt_path=last", "trainer.max_epochs=1") == (
        "ckpt_path: the checkpoint has finished 2 epochs (trainer.max_epochs=1); to train on, raise "
        "trainer.max_epochs above 2, or evaluate it with eval_only=true"
    )
    assert refusal("ckpt_path=last", "trainer.max_epochs=5", "trainer.max_steps=100") == (
        "ckpt_path: the checkpoint has made 128 steps (trainer.max_steps=100); to train on, raise "
        "trainer.max_steps above 128, or evaluate it with eval_only=true"
    )
    after = snapshot(tmp_path / "done")
    assert after == before  # result.json, checkpoints and TensorBoard events as they were
    assert sorted(p.name for p in tmp_path.iterdir()) == ["done"]  # and nothing new beside them
    # raising max_epochs trains on, in the same directory
    run = nnmodel.train("ckpt_path=last", "trainer.max_epochs=3", *QUIET)
    assert (run.run_dir, run.metrics["epochs"], run.metrics["val/acc"]) == (tmp_path / "done", 3, 1.0)
    # its record keeps what the run was asked for, with what the resume changed (a sweep's report reads it)
    assert run.metrics["overrides"] == ["data=xor", "trainer.max_epochs=3", "paths.output_dir=done", *QUIET]


def test_resuming_on_a_table_that_changed_is_refused_and_changes_nothing(trained: Path, tmp_path: Path) -> None:
    before = snapshot(tmp_path / "first")
    # another class since: the network has 3 outputs (this was load_state_dict's size-mismatch traceback)
    write_flowers(tmp_path / "flowers.csv", dict.fromkeys(FLOWERS, 20), labels={"virginica": "zinnia"})
    assert refusal(f"ckpt_path={trained}", "trainer.max_epochs=12") == (
        "data.target: the labels of 'flowers.csv' (column 'species') are ['setosa', 'versicolor', 'zinnia'], but the "
        "checkpoint was trained on ['setosa', 'versicolor', 'virginica']; resume it on data with the same labels"
    )
    # the same classes, other rows: other splits, another standardisation (this was a ValueError inside fit)
    write_flowers(tmp_path / "flowers.csv", dict.fromkeys(FLOWERS, 25), seed=3)
    assert refusal(f"ckpt_path={trained}", "trainer.max_epochs=12") == (
        "data.path: 'flowers.csv' is not the table the checkpoint was trained on (its bytes differ: the file has "
        "changed since); resume on that table, or start a new run without ckpt_path"
    )
    assert snapshot(tmp_path / "first") == before  # no event file, no checkpoint, no result.json touched
    # a checkpoint from before the table's SHA-256 was recorded: its mean and std say it, before anything is written
    ckpt = torch.load(trained, weights_only=True)
    del ckpt["TensorDataModule"]["fingerprint"]
    torch.save(ckpt, tmp_path / "older.ckpt")
    assert refusal(f"ckpt_path={tmp_path / 'older.ckpt'}", "trainer.max_epochs=12", "paths.output_dir=older") == (
        "data=csv: the checkpoint was trained on inputs with another mean and std (the table or its split keys have "
        "changed since); resume on the same table, with the same splits"
    )
    assert not (tmp_path / "older").exists()


def test_a_table_run_resumes_from_another_directory_on_the_same_file(trained: Path, tmp_path: Path,
                                                                      monkeypatch) -> None:  # fmt: skip
    import shutil

    shutil.copytree(tmp_path / "first", tmp_path / "moved")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    moved = tmp_path / "moved" / "checkpoints" / "last.ckpt"
    # the checkpoint's data.path is relative to where it was trained: said so, with the way out
    assert refusal(f"ckpt_path={moved}", "trainer.max_epochs=12") == (
        "data.path: no file at 'flowers.csv', the table the checkpoint was trained on (its data.path, relative to the "
        "directory that run was started in); give data.path=PATH of that table (the same file, anywhere)"
    )
    copy = shutil.copy(tmp_path / "flowers.csv", tmp_path / "elsewhere" / "copy.csv")
    run = nnmodel.train(f"ckpt_path={moved}", "trainer.max_epochs=12", f"data.path={copy}", *QUIET)
    assert (run.run_dir, run.metrics["epochs"]) == (tmp_path / "moved", 12)
    # another file is not the table: refused as a change of data
    other = write_flowers(tmp_path / "other.csv", dict.fromkeys(FLOWERS, 20), seed=5)
    assert refusal(f"ckpt_path={moved}", "trainer.max_epochs=14", f"data.path={other}").startswith(
        f"ckpt_path: cannot resume with data.path={other}: the checkpoint was trained with data.path={copy}; "
    )


def test_a_run_copied_elsewhere_resumes_there_with_its_best_checkpoint(tmp_path: Path, monkeypatch) -> None:
    import shutil

    monkeypatch.chdir(tmp_path)
    first = nnmodel.train("data=xor", "trainer.max_epochs=4", "paths.output_dir=cluster", *QUIET)
    best = Path(first.checkpoint).name  # xor reaches val/acc 1.0 early; a later epoch that ties is not better
    shutil.copytree(tmp_path / "cluster", tmp_path / "home")
    run = nnmodel.train("ckpt_path=home/checkpoints/last.ckpt", "trainer.max_epochs=6", *QUIET)
    assert (run.run_dir, Path(run.checkpoint)) == (tmp_path / "home", tmp_path / "home" / "checkpoints" / best)
    assert sorted(p.name for p in (tmp_path / "cluster" / "checkpoints").iterdir()) == [best, "last.ckpt"]  # as was


def test_a_run_killed_before_its_record_keeps_hydras_overrides_when_resumed(tmp_path: Path) -> None:
    from nnmodel.training import resumed_overrides

    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text("- optimizer.lr=0.1\n- seed=1\n")
    resumed = resumed_overrides(tmp_path, ["ckpt_path=x/checkpoints/last.ckpt", "seed=2", "+trainer.max_epochs=3"])
    assert resumed == ["optimizer.lr=0.1", "seed=2", "+trainer.max_epochs=3"]
    (tmp_path / "result.json").write_text('{"overrides": ["optimizer.lr=0.5"]}')  # the run's own record first
    assert resumed_overrides(tmp_path, ["ckpt_path=last"]) == ["optimizer.lr=0.5"]


# ----------------------------------------------------------------------------- paths.output_dir


def test_an_unusable_output_dir_is_refused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    for value, message in [
        ("''", "paths.output_dir='' is empty; name the run's directory (paths.output_dir=myrun), or leave it null "
               "for a new outputs/DATE/TIME"),
        ("notes.txt", "paths.output_dir: 'notes.txt' is a file, not a directory; give the name of a new directory"),
        ("notes.txt/run", f"paths.output_dir: 'notes.txt/run' cannot be a directory, '{tmp_path / 'notes.txt'}' "
                          "is a file; give another path"),
    ]:  # fmt: skip
        assert refusal("data=xor", f"paths.output_dir={value}") == message
    if Path("/proc/self").is_dir():  # Linux: /proc takes no new directory, even from root
        assert refusal("data=xor", "paths.output_dir=/proc/nope") == (
            "paths.output_dir: cannot create '/proc/nope': '/proc' takes no new directory (No such file or "
            "directory); give a directory you can write to"
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # nothing written, not even outputs/


def test_an_output_dir_that_holds_a_run_is_refused_unless_resumed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    nnmodel.train("data=xor", "trainer.max_epochs=1", "paths.output_dir=myrun", *QUIET)
    before = snapshot(tmp_path / "myrun")
    message = (
        "paths.output_dir: 'myrun' already holds a run (result.json, checkpoints, tb); give a new directory, or "
        "resume that run with ckpt_path=myrun/checkpoints/last.ckpt"
    )
    assert refusal("data=xor", "trainer.max_epochs=1", "paths.output_dir=myrun") == message
    # an evaluation would overwrite its result.json too
    ckpt = "myrun/checkpoints/last.ckpt"
    # (without the hint to resume: the user gave a ckpt_path, to evaluate)
    said = refusal("eval_only=true", f"ckpt_path={ckpt}", "paths.output_dir=myrun")
    assert said == message.removesuffix(", or resume that run with ckpt_path=myrun/checkpoints/last.ckpt")
    assert snapshot(tmp_path / "myrun") == before
    # resuming it goes on in it
    run = nnmodel.train(f"ckpt_path={ckpt}", "trainer.max_epochs=2", "paths.output_dir=myrun", *QUIET)
    assert (run.run_dir, run.metrics["global_step"]) == (tmp_path / "myrun", 128)


# ----------------------------------------------------------------------------- nnmodel.load


def test_load_refuses_what_is_not_an_nnmodel_checkpoint(trained: Path, tmp_path: Path) -> None:
    torch.save({"state_dict": {}}, tmp_path / "e.ckpt")
    with pytest.raises(ConfigError) as err:
        nnmodel.load(tmp_path / "e.ckpt")
    assert "e.ckpt" in str(err.value) and "\n" not in str(err.value)
    ckpt = torch.load(trained, weights_only=True)
    ckpt["TensorDataModule"]["classes"] = ["a", "b"]  # parts that disagree: 2 labels, 3 outputs
    torch.save(ckpt, tmp_path / "odd.ckpt")
    with pytest.raises(ConfigError) as err:
        nnmodel.load(tmp_path / "odd.ckpt")
    assert str(err.value) == (
        f"nnmodel.load: '{tmp_path / 'odd.ckpt'}' cannot be loaded as an nnmodel checkpoint (2 class labels for a "
        "network of 3 classes); give one that python train.py wrote (checkpoints/best-*.ckpt or last.ckpt)"
    )


def test_load_takes_a_run_for_its_best_checkpoint(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    run = nnmodel.train("data=xor", "trainer.max_epochs=2", *QUIET)
    x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], dtype=np.float32)
    assert np.array_equal(nnmodel.load(run).predict_proba(x), nnmodel.load(run.checkpoint).predict_proba(x))
    # "last", as ckpt_path=last names it: the newest run's last.ckpt
    last = nnmodel.load(run.run_dir / "checkpoints" / "last.ckpt").predict_proba(x)
    assert np.array_equal(nnmodel.load("last").predict_proba(x), last)
    refused = nnmodel.api.Run(tmp_path / "none", {"status": "failed"})
    with pytest.raises(ConfigError) as err:
        nnmodel.load(refused)
    assert str(err.value) == f"run {tmp_path / 'none'} saved no checkpoint (status failed)"
    # a run's directory is its Run: the tested (best) checkpoint, not last.ckpt
    assert np.array_equal(nnmodel.load(run.run_dir).predict_proba(x), nnmodel.load(run).predict_proba(x))
    # said as a Python user calls it, not in train.py's key ckpt_path
    killed = tmp_path / "a run" / "killed"  # a run with its last.ckpt but no result.json, under a path with a space
    (killed / "checkpoints").mkdir(parents=True)
    shutil.copy(run.run_dir / "checkpoints" / "last.ckpt", killed / "checkpoints" / "last.ckpt")
    (tmp_path / "empty").mkdir()
    for given, said in [
        (None, "nnmodel.load takes a checkpoint's path, a run's directory, a Run or 'last', not NoneType None"),
        ("nope.ckpt", "nnmodel.load: no checkpoint at 'nope.ckpt' (give a .ckpt file, or `last`)"),
        (tmp_path / "empty", f"nnmodel.load: '{tmp_path / 'empty'}' is a directory, not a checkpoint (give a .ckpt "
                             "file, or `last`)"),
        (killed, f"nnmodel.load: '{killed}' is a directory, not a checkpoint (give a .ckpt file, or `last`); its run's "
                 f"last checkpoint is nnmodel.load('{killed / 'checkpoints' / 'last.ckpt'}')"),
    ]:  # fmt: skip
        with pytest.raises(ConfigError) as err:
            nnmodel.load(given)
        assert str(err.value) == said
    monkeypatch.chdir(tmp_path / "empty")
    with pytest.raises(ConfigError) as err:
        nnmodel.load("last")
    assert str(err.value) == (
        "nnmodel.load('last'): no run here (no checkpoints/last.ckpt in a directory one to 4 levels under "
        f"{tmp_path / 'empty'}); give nnmodel.load('PATH')"
    )


def test_load_names_an_activation_that_is_not_importable_here(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "myacts.py").write_text("import torch\n\ndef swish(z):\n    return z * torch.sigmoid(z)\n")
    sys.path.insert(0, str(tmp_path))
    try:
        run = nnmodel.train("data=xor", "model.activation=myacts:swish", "trainer.max_epochs=1", "test=false", *QUIET)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("myacts", None)
    (tmp_path / "myacts.py").unlink()  # another machine, or a notebook started elsewhere
    with pytest.raises(ConfigError) as err:
        nnmodel.load(run.checkpoint)
    assert str(err.value) == (
        f"nnmodel.load: '{run.checkpoint}' was trained with the activation 'myacts:swish', which is not available "
        "here (cannot import activation 'myacts:swish' (No module named 'myacts')); import or register it "
        "(nnmodel.register_activation) first"
    )


def test_a_runs_directory_without_a_record_and_a_diverged_runs_model(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        nnmodel.Run.from_dir(tmp_path / "nothing")
    assert str(err.value) == f"Run.from_dir: no result.json in '{tmp_path / 'nothing'}' (give a run's directory)"
    with pytest.raises(nnmodel.DivergedError) as diverged:  # any loss above 1e-3 counts: at the first step
        nnmodel.train("data=xor", "diverge_above=1e-3", "paths.output_dir=div", *QUIET)
    assert str(diverged.value).endswith(
        "at the initial weights, before any update: they or the inputs are too large; lower model.epsilon=0.12 "
        f"(init epsilon_uniform), or scale the inputs, or raise diverge_above=0.001; the last good checkpoint is "
        f"{tmp_path / 'div' / 'checkpoints' / 'last.ckpt'}"
    )
    run = nnmodel.Run.from_dir("div")
    assert run.result["status"] == "diverged" and run.checkpoint is None
    last = Path("div") / "checkpoints" / "last.ckpt"
    with pytest.raises(ConfigError) as err:
        _ = run.model
    assert str(err.value) == (
        f"run div has no tested best checkpoint (status diverged); its last good weights are in {last}: "
        f"nnmodel.load('{last}')"
    )
    assert nnmodel.load(last).predict([[0.0, 1.0]]).shape == (1,)


def test_nnmodel_train_takes_strings() -> None:
    with pytest.raises(ConfigError) as err:
        nnmodel.train(["trainer.max_epochs=1"])
    assert str(err.value) == (
        "nnmodel.train takes each override as a string, e.g. nnmodel.train('model.activation=tanh', "
        "'trainer.max_epochs=5'), but got list ['trainer.max_epochs=1'] (unpack a list: nnmodel.train(*overrides))"
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["-m", "seed=0,1"], "nnmodel.train runs one run: '-m' is a flag of train.py's command line; for a sweep, "
                             "run python train.py -m ..., or call nnmodel.train once per setting"),
        (["hydra.run.dir=x"], "nnmodel.train: 'hydra.run.dir=x' is a setting of Hydra's command line (train.py), "
                              "which nnmodel.train does not use; give paths.output_dir=DIR for the run's directory"),
        (["hydra/launcher=fork"], "nnmodel.train: 'hydra/launcher=fork' is a setting of Hydra's command line "
                                  "(train.py), which nnmodel.train does not use"),
        (["hparams_search=optuna"], "nnmodel.train runs one run: 'hparams_search=optuna' configures a search of "
                                    "train.py -m; run python train.py -m hparams_search=optuna"),
        (["=3"], "nnmodel.train: '=3' names no key before '='; give key=value, e.g. 'optimizer.lr=0.1'"),
        # Lightning's DDP launcher would run the calling script again in each other process (a notebook: not at all)
        (["trainer=ddp"], "nnmodel.train runs in this process, but trainer.devices=2 with trainer.num_nodes=1 asks "
                          "for 2 processes, and Lightning's DDP launcher starts the others by running the calling "
                          "script again from its top; train on several devices from the command line: python "
                          "train.py trainer=ddp trainer.devices=2"),
        (["trainer.devices=[0,1]", "trainer.num_nodes=2"], "nnmodel.train runs in this process, but "
                          "trainer.devices=[0, 1] with trainer.num_nodes=2 asks for 4 processes, and Lightning's DDP "
                          "launcher starts the others by running the calling script again from its top; train on "
                          "several devices from the command line: python train.py trainer=ddp trainer.devices=2 "
                          "trainer.num_nodes=2"),
    ],
)  # fmt: skip
def test_nnmodel_train_refuses_what_only_the_command_line_reads(overrides: list[str], message: str, tmp_path: Path,
                                                                 monkeypatch) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        nnmodel.train(*overrides)
    assert str(err.value) == message
    assert list(tmp_path.iterdir()) == []


def test_a_resumed_run_refuses_another_output_dir(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    nnmodel.train("data=xor", "trainer.max_epochs=1", "paths.output_dir=first", *QUIET)
    assert refusal("ckpt_path=first/checkpoints/last.ckpt", "trainer.max_epochs=2", "paths.output_dir=elsewhere") == (
        f"paths.output_dir=elsewhere: a resumed run goes on in its own directory, '{tmp_path / 'first'}'; drop "
        "paths.output_dir (to go on elsewhere, copy the run's directory there and resume the copy)"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first"]


# ----------------------------------------------------------------------------- the command line


@pytest.mark.slow
def test_the_command_line_refuses_these_in_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    done = run_cli(["data=xor", "trainer.max_epochs=2", "paths.output_dir=done", "diagnostics=off"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "mine" / "p").mkdir(parents=True)  # folders of the user's
    (tmp_path / "mine" / "report.md").write_text("notes")  # anyone's file: not a sweep's report without the rest
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "multirun.yaml").write_text("{}\n")  # what a sweep leaves
    before = snapshot(tmp_path)
    for args, message in [
        (["ckpt_path=done/checkpoints/last.ckpt"], "error: ckpt_path: the checkpoint has finished 2 epochs"),
        (["ckpt_path=last", "trainer.max_epochs=1"], "error: ckpt_path: the checkpoint has finished 2 epochs"),
        (["paths.output_dir=done"], "error: paths.output_dir: 'done' already holds a run"),
        (["paths.output_dir=notes.txt"], "error: paths.output_dir: 'notes.txt' is a file"),
        (["paths.output_dir="], "error: paths.output_dir='' is empty"),
        *([(["paths.output_dir=/proc/nope"], "error: paths.output_dir: cannot create '/proc/nope'")]
          if Path("/proc/self").is_dir() else []),
        # Hydra's own files (.hydra/) would replace the run's record of its config: refused before Hydra writes
        (["hydra.run.dir=done"], "error: hydra.run.dir: 'done' already holds a run (result.json, checkpoints, tb)"),
        (["paths.output_dir=done/tb/more"], f"error: paths.output_dir: 'done/tb/more' is inside "
                                            f"'{tmp_path / 'done' / 'tb'}' of another run ('{tmp_path / 'done'}'); "
                                            "give a directory outside it"),
        # the folder itself too: TensorBoard showed the new run as a second run of 'done'
        (["paths.output_dir=done/tb"], f"error: paths.output_dir: 'done/tb' is the tb/ of another run "
                                       f"('{tmp_path / 'done'}'); give a directory outside it"),
        (["paths.output_dir=done/checkpoints"], "error: paths.output_dir: 'done/checkpoints' is the checkpoints/ of "
                                                f"another run ('{tmp_path / 'done'}'); give a directory outside it"),
        (["hydra.run.dir=done/.hydra"], "error: hydra.run.dir: 'done/.hydra' is the .hydra/ of another run "
                                        f"('{tmp_path / 'done'}'); give a directory outside it"),
        (["hydra.run.dir=done", "ckpt_path=done/checkpoints/last.ckpt", "trainer.max_epochs=3"],
         "error: hydra.run.dir: 'done' already holds a run; drop hydra.run.dir: a resumed run goes on in its own "
         "directory"),
        (["-m", "paths.output_dir=one", "seed=0,1"], "error: paths.output_dir=one names one run's directory, but this "
                                                     "sweep starts several runs"),
        (["~paths"], "error: paths is missing (~paths deletes it), and every run needs it; drop that override"),
        (["~data.batch_size"], "error: Error merging override ~data.batch_size"),
        (["-m", "~data.batch_size", "seed=0,1"], "error: Error merging override ~data.batch_size"),
        (["ckpt_path=123"], "error: ckpt_path must be the path of a checkpoint, or last, got 123"),
        (["paths.output_dir=runs/s${sed}"], "error: paths.output_dir: Interpolation key 'sed' not found"),
        (["eval_only=true", "ckpt_path=done/checkpoints/last.ckpt", "paths.output_dir=done"],
         "error: paths.output_dir: 'done' already holds a run (result.json, checkpoints, tb); give a new directory"),
        (["trainer.val_check_interval=0"], "error: trainer.val_check_interval must be an integer >= 1, got 0"),
        (["trainer.val_check_interval=24"], "error: trainer.val_check_interval=24 optimizer steps: validation runs "
                                            "between executions of steps_per_execution=16 steps, so give a multiple "
                                            "of 16 (16 or 32), a fraction of an epoch (0.5), or steps_per_execution=1"),
        (["trainer.val_check_interval=128"], "error: trainer.val_check_interval=128 optimizer steps is more than "
                                             "an epoch's 64 (train 256 examples, data.batch_size=4)"),
        (["-m", "hydra/launcher=forkk"], "error: unknown hydra/launcher 'forkk'; did you mean 'fork'? choose one of: "
                                         "basic, fork, joblib, slurm, submitit_local, submitit_slurm"),
        (["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=0"], "error: hydra.launcher.n_jobs must be a number"),
        (["-m", "seed=0,1", "hydra.sweep.dir=notes.txt"], "error: hydra.sweep.dir: 'notes.txt' is a file, not a "
                                                          "directory; give the name of a new directory"),
        (["-m", "optimizer=sgd,adamm"], "error: unknown optimizer 'adamm'; did you mean 'adam'?"),
        (["-m", "hparams_search=optuna", "hydra.sweeper.direction=minimize"], "error: hydra.sweeper.direction=minimize"),
        # a folder of the user's as hydra.run.dir: Hydra's .hydra/ and train.log are taken back, its files stay
        (["hydra.run.dir=.", "optimizer.lr=-1"], "error: optimizer.lr must be"),
        (["hydra.run.dir=done/../mine", "optimizer.lr=-1"], "error: optimizer.lr must be"),
        # what Hydra made for it goes (q/new), what was there stays (mine/p)
        (["hydra.run.dir=mine/p/q/new", "optimizer.lr=-1"], "error: optimizer.lr must be"),
        # a run and a sweep never write into each other's directory (the report would count the run)
        (["-m", "seed=0,1", "hydra.sweep.dir=done"], "error: hydra.sweep.dir: 'done' holds a run (result.json, "
                                                     "checkpoints, tb); give a new directory"),
        (["hydra.run.dir=sweep"], "error: hydra.run.dir: 'sweep' holds a sweep (multirun.yaml); give a new directory"),
        (["paths.output_dir=sweep"], "error: paths.output_dir: 'sweep' holds a sweep (multirun.yaml)"),
        (["hydra.run.dir=notes.txt"], "error: hydra.run.dir: 'notes.txt' is a file, not a directory"),
        (["hydra.run.dir="], "error: hydra.run.dir='' is empty; name a directory"),
        (["-m", "seed=0,1", "hydra.sweep.subdir=same"], "error: hydra.sweep.subdir=same is the same for every run of "
                                                         "this sweep"),
        (["-m", "seed=0,1", "hydra.sweep.dir=notes.txt/sub"], "error: hydra.sweep.dir: 'notes.txt/sub' cannot be a "
                                                              "directory"),
    ]:  # fmt: skip
        proc = run_cli(["-m", "data=xor", *args[1:]] if args[0] == "-m" else ["data=xor", *args], cwd=tmp_path)
        assert proc.returncode == 2, (args, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr + proc.stdout
        (line,) = error_lines(proc)
        assert line.startswith(message), line
        assert snapshot(tmp_path) == before, args  # no outputs/


# ----------------------------------------------------------------------------- where Hydra writes (RunDirGuard)


def test_one_output_dir_is_refused_for_a_sweep_of_several_runs_only() -> None:
    from omegaconf import OmegaConf

    from nnmodel.training import check_output_dir_in_sweep

    def config(output_dir: str | None, *task: str, sweeper: str = "hydra.BasicSweeper"):
        hydra = {"overrides": {"task": list(task)}, "sweeper": {"_target_": sweeper}}
        return OmegaConf.create({"seed": 0, "paths": {"output_dir": output_dir}, "hydra": hydra})

    with pytest.raises(ConfigError) as err:
        check_output_dir_in_sweep(config("one", "seed=0,1"))
    assert str(err.value) == (
        "paths.output_dir=one names one run's directory, but this sweep starts several runs, each of which would "
        "write there; give hydra.sweep.dir=one instead (a sub-directory per run), or an interpolation such as "
        "paths.output_dir=runs/s${seed}"
    )
    for refused in (config("one", "optimizer.lr=interval(0.1,1)"), config("one", sweeper="x.optuna.OptunaSweeper")):
        with pytest.raises(ConfigError):
            check_output_dir_in_sweep(refused)
    check_output_dir_in_sweep(config("one", "seed=3", "model.hidden=[64,32]"))  # -m of one run: one job to SLURM
    check_output_dir_in_sweep(config("runs/s${seed}", "seed=0,1"))  # an interpolation: a directory per run
    check_output_dir_in_sweep(config(None, "seed=0,1"))


def test_a_study_directory_takes_more_runs_under_subdirs_named_otherwise(tmp_path: Path) -> None:
    from nnmodel.training import check_sweep_dir

    (tmp_path / "multirun.yaml").write_text("{}")
    (tmp_path / "0").mkdir()
    (tmp_path / "0" / "result.json").write_text("{}")
    with pytest.raises(ConfigError) as err:
        check_sweep_dir(tmp_path)
    assert (
        str(err.value)
        == f"hydra.sweep.dir: '{tmp_path}' already holds a sweep (multirun.yaml, 0/); give a new directory"
    )
    check_sweep_dir(tmp_path, numbered=False)  # hydra.sweep.subdir=${hydra.job.override_dirname}: no clash by number
    check_sweep_dir(tmp_path / "new")


@pytest.mark.parametrize(
    ("env", "together"),
    [({}, False), ({"WORLD_SIZE": "1"}, False), ({"WORLD_SIZE": "4"}, True), ({"SLURM_NTASKS": "2"}, True),
     ({"SLURM_NTASKS": ""}, False)],
)  # fmt: skip
def test_the_data_are_loaded_early_only_in_a_process_started_alone(monkeypatch, env: dict, together: bool) -> None:
    from nnmodel.training import launched_together

    for key in ("WORLD_SIZE", "SLURM_NTASKS"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert launched_together() is together
