"""data=csv and data=npz: the user's own tables, from the file to nnmodel.load(...).predict, and their refusals."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from cli import ROOT, TRAIN, error_lines, result, run_cli, run_dirs

import nnmodel
from nnmodel.config import compose
from nnmodel.data import DATASETS, TensorDataModule, read_table
from nnmodel.data import tables as tables_module
from nnmodel.errors import ConfigError
from nnmodel.training import check_fits, train
from nnmodel.validate import validate_config

SPECIES = ("setosa", "versicolor", "virginica")


def write_csv(path: Path, rows: list[list[object]], header: str = "size,weight,flat,species") -> Path:
    path.write_text("\n".join([header, *(",".join(map(str, row)) for row in rows)]) + "\n")
    return path


def flower_rows(n_per_class: int = 30, seed: int = 0) -> list[list[object]]:
    """Separable by `size`; `weight` is on another scale (1000 ± 50), `flat` is constant (std 0)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_per_class * len(SPECIES)):
        c = i % len(SPECIES)
        rows.append([round(3.0 * c + rng.normal(0, 0.3), 3), round(1000 + 50 * rng.normal(), 1), 5, SPECIES[c]])
    return rows


@pytest.fixture
def flowers(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "flowers.csv", flower_rows())


def write_npz(path: Path, seed: int = 0, **arrays: np.ndarray) -> Path:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(120, 3)) * [1, 10, 100] + [0, 50, -500]
    arrays = {"X": x, "y": np.where(x[:, 0] > 0, 7, 3), **arrays}  # labels 3 and 7, not 0 and 1
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


# ----------------------------------------------------------------------------- reading and standardising


def test_csv_metadata_is_read_from_the_file(flowers: Path) -> None:
    dm = TensorDataModule(name="csv", path=str(flowers), target="species")
    assert (dm.n_features, dm.n_classes, dm.image_shape) == (3, 3, None)
    assert dm.class_names == dm.classes == list(SPECIES)
    assert dm.describe() == "3 features, 3 classes" and dm.splits is None


def test_integer_labels_sort_as_numbers_and_features_pick_columns(tmp_path: Path) -> None:
    rows = [[i, i % 2, 10 if i % 2 else 2] for i in range(40)]
    path = write_csv(tmp_path / "t.csv", rows, header="a,b,label")
    table = read_table("csv", str(path), "label", ["b"])
    assert table.classes == (2, 10) and table.x.shape == (40, 1)
    assert table.y.tolist() == [i % 2 for i in range(40)]


def test_labels_written_differently_stay_different_classes(tmp_path: Path) -> None:
    rows = [[i, ("01", "1", "+1")[i % 3]] for i in range(30)]  # as integers all three would be 1
    table = read_table("csv", str(write_csv(tmp_path / "t.csv", rows, header="a,label")), "label", None)
    assert table.classes == ("+1", "01", "1") and table.y.tolist() == [(1, 2, 0)[i % 3] for i in range(30)]


def test_standardize_uses_the_training_split_only(flowers: Path) -> None:
    dm = TensorDataModule(name="csv", path=str(flowers), target="species")
    dm.setup()
    raw = TensorDataModule(name="csv", path=str(flowers), target="species", standardize=False)
    raw.setup()
    x, raw_x = dm.splits["train"][0], raw.splits["train"][0]
    assert torch.allclose(x[:, :2].mean(0), torch.zeros(2), atol=1e-5)
    assert torch.allclose(x[:, :2].std(0, correction=0), torch.ones(2), atol=1e-5)
    assert torch.allclose(dm.mean, raw_x.mean(0)) and dm.std[2] == 1.0  # the constant column: std 0 -> 1
    for split in ("val", "test"):  # the training split's statistics, not their own
        assert torch.allclose(dm.splits[split][0], (raw.splits[split][0] - dm.mean) / dm.std)
    assert raw.mean is None and raw.state_dict()["mean"] is None


def test_state_dict_is_plain_lists_and_loads_back(flowers: Path) -> None:
    dm = TensorDataModule(name="csv", path=str(flowers), target="species")
    state = dm.state_dict()  # sets up first: the statistics are the training split's
    assert state["classes"] == list(SPECIES)
    assert all(isinstance(state[k], list) and len(state[k]) == 3 for k in ("mean", "std"))
    other = TensorDataModule(name="csv", path=str(flowers), target="species")
    other.load_state_dict(state)
    other.setup()  # the same table: the same statistics, accepted
    assert other.state_dict() == state
    digits = TensorDataModule(name="digits").state_dict()
    assert digits == {"classes": list(range(10)), "mean": None, "std": None}


def test_a_table_is_parsed_once_per_file_version(flowers: Path, make_cfg, monkeypatch) -> None:
    calls = []
    real = tables_module._read_csv
    monkeypatch.setattr(tables_module, "_read_csv", lambda *a: calls.append(a) or real(*a))
    tables_module._cached.cache_clear()
    cfg = make_cfg("data=csv", f"data.path={flowers}", "data.target=species")
    validate_config(cfg)
    TensorDataModule(name="csv", path=str(flowers), target="species").setup()
    assert len(calls) == 1
    write_csv(flowers, flower_rows(seed=1))
    os.utime(flowers, ns=(1, 1))  # another modification time: read again
    assert read_table("csv", str(flowers), "species").x.shape == (90, 3) and len(calls) == 2


def test_check_fits_reads_the_table(flowers: Path, make_cfg) -> None:
    cfg = make_cfg("data=csv", f"data.path={flowers}", "data.target=species")
    check_fits(cfg, {"hyper_parameters": {"n_in": 3, "n_classes": 3}})
    with pytest.raises(ConfigError, match="its examples have 3 features and 3 classes, but the checkpoint's network"):
        check_fits(cfg, {"hyper_parameters": {"n_in": 64, "n_classes": 10}})


def test_tables_are_registered_and_listed() -> None:
    assert {"csv", "npz"} <= set(DATASETS)
    with pytest.raises(ConfigError, match="choose one of: and, circles, csv, digits"):
        validate_config(compose(["data.name=cvs"]))


# ----------------------------------------------------------------------------- refusals

# (write the file(s) into a folder, the overrides with {d} for that folder, the exact one-line error)
Case = tuple[Callable[[Path], object], list[str], str]


def _npz_text(d: Path) -> None:
    (d / "t.npz").write_text("not a zip\n")


def _rows_with(d: Path, row: int, column: int, value: object) -> None:
    rows = flower_rows()
    rows[row][column] = value
    write_csv(d / "t.csv", rows)


CSV = ["data=csv", "data.path={d}/t.csv", "data.target=species"]
BAD_TABLES: dict[str, Case] = {
    "no data.path": (lambda d: None, ["data=csv"], "data=csv needs data.path=FILE, a CSV file with a header row"),
    "no file": (lambda d: None, ["data=npz", "data.path={d}/nope.npz"], "data.path: no file at '{d}/nope.npz'"),
    "a directory": (
        lambda d: None,
        ["data=csv", "data.path={d}", "data.target=y"],
        "data.path: '{d}' is a directory; give a CSV file with a header row",
    ),
    "no data.target": (
        lambda d: write_csv(d / "t.csv", flower_rows()),
        CSV[:2],
        "data=csv needs data.target=COLUMN, the column of labels; the columns of '{d}/t.csv': size, weight, flat, species",
    ),
    "missing target": (
        lambda d: write_csv(d / "t.csv", flower_rows()),
        [*CSV[:2], "data.target=kind"],
        "data.target: no column 'kind' in '{d}/t.csv'; its columns: size, weight, flat, species",
    ),
    "no header": (
        lambda d: write_csv(d / "t.csv", flower_rows(), header="1.0,2.0,3,a"),
        CSV,
        "data.target: no column 'species' in '{d}/t.csv'; its columns: 1.0, 2.0, 3, a "
        "(the first row looks like data: a CSV needs a header row of column names)",
    ),
    "an unnamed column (pandas' index)": (
        lambda d: write_csv(
            d / "t.csv", [[i, *row] for i, row in enumerate(flower_rows())], header=",size,weight,flat,species"
        ),
        CSV,
        "data.path: '{d}/t.csv': its column 1 has no name (pandas writes its index so: save with index=False); name it, "
        "or choose the inputs with data.features=[...]",
    ),
    "a comma at each line's end": (
        lambda d: write_csv(d / "t.csv", [[*row, ""] for row in flower_rows()], header="size,weight,flat,species,"),
        CSV,
        "data.path: '{d}/t.csv': its column 5 has no name (a comma at the end of each line makes one: remove it); "
        "name it, or choose the inputs with data.features=[...]",
    ),
    "a feature named twice": (
        lambda d: write_csv(d / "t.csv", flower_rows()),
        [*CSV, "data.features=[size,size]"],
        "data.features names the column 'size' twice; name each input once",
    ),
    "missing feature": (
        lambda d: write_csv(d / "t.csv", flower_rows()),
        [*CSV, "data.features=[size,height]"],
        "data.features: no column 'height' in '{d}/t.csv'; its columns: size, weight, flat, species",
    ),
    "not a number": (
        lambda d: _rows_with(d, 6, 1, "heavy"),
        CSV,
        "data.path: '{d}/t.csv' line 8 (data row 7), column 'weight': 'heavy' is not a number",
    ),
    "empty cell": (
        lambda d: _rows_with(d, 0, 0, ""),
        CSV,
        "data.path: '{d}/t.csv' line 2 (data row 1), column 'size': '' is not a number",
    ),
    "NaN": (
        lambda d: _rows_with(d, 3, 0, "nan"),
        CSV,
        "data.path: '{d}/t.csv' line 5 (data row 4), column 'size': 'nan' is not a finite number",
    ),
    "inf": (
        lambda d: _rows_with(d, 9, 2, "-inf"),
        CSV,
        "data.path: '{d}/t.csv' line 11 (data row 10), column 'flat': '-inf' is not a finite number",
    ),
    "too large for float32": (
        lambda d: _rows_with(d, 2, 1, "1e39"),
        CSV,
        "data.path: '{d}/t.csv' line 4 (data row 3), column 'weight': '1e39' is not a finite number in float32 (|x| ≤ 3.4e38)",
    ),
    "ragged row": (
        lambda d: _rows_with(d, 4, 3, "setosa,extra"),
        CSV,
        "data.path: '{d}/t.csv' line 6 (data row 5) has 5 cells, the header has 4 columns",
    ),
    "single class": (
        lambda d: write_csv(d / "t.csv", [[i, 1, 2, "setosa"] for i in range(30)]),
        CSV,
        "data.path: '{d}/t.csv' has a single class in column 'species' ('setosa'); a classifier needs 2",
    ),
    "too few of a class": (
        lambda d: write_csv(
            d / "t.csv", [r for r in flower_rows() if r[3] != "virginica"] + [[6, 990, 5, "virginica"]]
        ),
        CSV,
        "data.path: '{d}/t.csv' has 1 example of class 'virginica' (column 'species'), too few for stratified "
        "splits: data.val_fraction=0.15 and data.test_fraction=0.15 give it 1 train, 0 val, 0 test; "
        "each class needs at least 4",
    ),
    "empty split": (
        lambda d: write_csv(d / "t.csv", flower_rows()),
        [*CSV, "data.test_fraction=0"],
        "data.test_fraction=0 leaves the test split empty; a run needs val examples (they pick the best "
        "checkpoint) and test examples (they measure it)",
    ),
    "header only": (
        lambda d: write_csv(d / "t.csv", []),
        CSV,
        "data.path: '{d}/t.csv' has a header but no data rows",
    ),
    "npz without y": (
        lambda d: write_npz(d / "t.npz", y=None),
        ["data=npz", "data.path={d}/t.npz"],
        "data.path: '{d}/t.npz' has no array 'y' (its arrays: X); save both with numpy.savez(path, X=inputs, y=labels)",
    ),
    "npz shapes disagree": (
        lambda d: write_npz(d / "t.npz", y=np.arange(119) % 2),
        ["data=npz", "data.path={d}/t.npz"],
        "data.path: '{d}/t.npz': X has 120 rows but y has 119 labels",
    ),
    "npz X not 2-D": (
        lambda d: write_npz(d / "t.npz", X=np.zeros(120)),
        ["data=npz", "data.path={d}/t.npz"],
        "data.path: '{d}/t.npz': X must be 2-D (examples × features), got shape (120,)",
    ),
    "npz labels of bytes not UTF-8": (
        lambda d: write_npz(d / "t.npz", y=np.where(np.arange(120) % 2 == 1, b"\xff\xfe", b"ok")),
        ["data=npz", "data.path={d}/t.npz"],
        "data.path: '{d}/t.npz': y[1] is b'\\xff\\xfe', bytes that are not UTF-8 text (invalid start byte); save "
        "the labels as numbers or str",
    ),
    "unclosed quote": (
        lambda d: (d / "t.csv").write_text(
            "a,b,y\n" + "".join(('"' if i == 4 else "") + f"{i},{2 * i},{i % 2}\n" for i in range(120))
        ),
        ["data=csv", "data.path={d}/t.csv", "data.target=y"],
        "data.path: '{d}/t.csv' line 6 (data row 5): a quoted cell opens there and runs on to line 121, taking the "
        'lines between as its text; close its quote (") on line 6',
    ),
    "excel's separator line": (
        lambda d: (d / "t.csv").write_text("sep=,\na,b,y\n" + "1,2,0\n3,4,1\n" * 60),
        ["data=csv", "data.path={d}/t.csv", "data.target=y"],
        "data.target: no column 'y' in '{d}/t.csv'; its columns: none: its first line is Excel's separator line "
        "(sep=...); delete it, the header comes first",
    ),
    "space-separated": (
        lambda d: (d / "t.csv").write_text("a b y\n" + "1 2 0\n3 4 1\n" * 60),
        ["data=csv", "data.path={d}/t.csv", "data.target=y"],
        "data.target: no column 'y' in '{d}/t.csv'; its columns: a b y (a single column: nnmodel reads "
        "comma-separated files)",
    ),
    "npz given as a csv": (
        lambda d: (write_npz(d / "t.npz"), (d / "t.npz").rename(d / "t.csv")),
        ["data=csv", "data.path={d}/t.csv", "data.target=y"],
        "data.path: '{d}/t.csv' is not UTF-8 text (invalid start byte at byte 18); it is a zip archive: for "
        "NumPy's .npz, give data=npz",
    ),
    "latin-1 csv": (
        lambda d: (d / "t.csv").write_bytes("caf\xe9,y\n1,0\n".encode("latin-1")),
        ["data=csv", "data.path={d}/t.csv", "data.target=y"],
        "data.path: '{d}/t.csv' is not UTF-8 text (invalid continuation byte at byte 3); save it as UTF-8 CSV",
    ),
    "npz not a zip": (
        _npz_text,
        ["data=npz", "data.path={d}/t.npz"],
        "data.path: '{d}/t.npz' is not a .npz file (a zip archive of arrays); write one with "
        "numpy.savez(path, X=inputs, y=labels)",
    ),
}


def _case(name: str, d: Path) -> tuple[list[str], str]:
    write, overrides, message = BAD_TABLES[name]
    d.mkdir(parents=True, exist_ok=True)
    write(d)
    return [o.format(d=d) for o in overrides], message.format(d=d)


@pytest.mark.parametrize("name", BAD_TABLES)
def test_bad_table_is_refused_before_anything_is_written(name: str, make_cfg, tmp_path: Path) -> None:
    overrides, message = _case(name, tmp_path / "data")
    with pytest.raises(ConfigError) as info:
        train(make_cfg(*overrides, run_dir=tmp_path / "run"))
    assert str(info.value) == message
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["missing target", "not a number", "too few of a class", "npz shapes disagree"])
def test_bad_table_is_one_line_from_train_py(name: str, tmp_path: Path) -> None:
    overrides, message = _case(name, tmp_path / "data")
    proc = run_cli(overrides, cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    assert error_lines(proc) == [f"error: {message}"], proc.stderr[-1500:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no outputs/, no run directory


# ----------------------------------------------------------------------------- training end to end


def _test_split_accuracy(ckpt: Path, name: str, path: Path, **data: object) -> tuple[np.ndarray, float]:
    """nnmodel.load(ckpt).predict on the raw (unstandardised) test rows: (its labels, its accuracy)."""
    raw = TensorDataModule(name=name, path=str(path), standardize=False, **data)
    x, y = raw.split("test")
    labels = nnmodel.load(ckpt).predict(x.numpy())
    return labels, float(np.mean(labels == np.asarray(raw.classes, dtype=object)[y.numpy()]))


@pytest.mark.slow
def test_csv_with_string_labels_trains_end_to_end(flowers: Path, tmp_path: Path) -> None:
    args = ["data=csv", f"data.path={flowers.name}", "data.target=species", "data.batch_size=16"]
    proc = run_cli([*args, "trainer.max_epochs=3", "optimizer.lr=0.02", "diagnostics=off"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_dir,) = run_dirs(tmp_path)
    r = result(run_dir)
    assert r["test/acc"] >= 0.9 and "63/12/15 train/val/test examples, 3 features, 3 classes" in proc.stdout
    best = Path(r["best_ckpt"])
    saved = torch.load(best, weights_only=True)["TensorDataModule"]
    assert saved["classes"] == list(SPECIES) and len(saved["mean"]) == len(saved["std"]) == 3
    labels, acc = _test_split_accuracy(best, "csv", flowers, target="species")
    assert set(labels) <= set(SPECIES) and acc == pytest.approx(r["test/acc"])
    # the checkpoint evaluated again on the table (check_fits reads it): the same test accuracy
    again = run_cli([*args, "eval_only=true", f"ckpt_path={best}", "diagnostics=off"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert result(run_dirs(tmp_path)[-1])["test/acc"] == pytest.approx(r["test/acc"])


@pytest.mark.slow
def test_npz_trains_end_to_end(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "points.npz")
    args = ["data=npz", f"data.path={path}", "trainer.max_epochs=3", "optimizer.lr=0.02", "diagnostics=off"]
    proc = run_cli([*args, "data.batch_size=16"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_dir,) = run_dirs(tmp_path)
    r = result(run_dir)
    assert r["test/acc"] >= 0.9
    labels, acc = _test_split_accuracy(Path(r["best_ckpt"]), "npz", path)
    assert set(labels) <= {3, 7} and acc == pytest.approx(r["test/acc"])


# ----------------------------------------------------------------------------- the README's examples


def readme_blocks() -> list[tuple[str, str]]:
    """(language, code) of every fenced block of README's "## Your own data"."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Your own data\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S)


def _command(line: str) -> list[str]:
    words = shlex.split(line.split("  #")[0])
    assert words[0] == "python", line
    return [sys.executable, TRAIN if words[1] == "train.py" else words[1], *words[2:]]


@pytest.mark.slow
def test_readme_examples_run_as_written(tmp_path: Path, monkeypatch, capsys) -> None:
    blocks = readme_blocks()
    assert [lang for lang, _ in blocks] == ["python", "bash", "python", "python", "bash", "text"]
    monkeypatch.chdir(tmp_path)
    for lang, code in blocks:
        first = code.splitlines()[0]
        if lang == "python" and re.match(r"# \w+\.py:", first):  # a script the next bash block runs
            (tmp_path / first[2:].split(":")[0]).write_text(code)
        elif lang == "bash":
            for line in code.strip().splitlines():
                cmd = _command(line)
                proc = subprocess.run(
                    [*cmd, *(["progress_refresh_rate=0"] if cmd[1] == TRAIN else [])], capture_output=True, text=True
                )
                assert proc.returncode == 0, (line, proc.stderr[-2000:])
        elif lang == "python":  # the Python API: what it prints is what the comment says
            exec(compile(code, "README.md", "exec"), {})
            printed = capsys.readouterr().out.strip().splitlines()[-1]
            assert printed == code.strip().splitlines()[-1].split("# ")[1]
        else:  # a refusal: the command, then its one line
            command, expected = code.strip().splitlines()
            proc = subprocess.run([*_command(command.removeprefix("$ ")), "progress_refresh_rate=0"],
                                  capture_output=True, text=True)  # fmt: skip
            assert proc.returncode == 2 and error_lines(proc) == [expected]
    assert len(run_dirs(tmp_path)) == 3  # flowers twice (train.py and nnmodel.train), points once


def test_npz_float_labels_too_large_for_int64_stay_the_numbers_they_are(tmp_path: Path) -> None:
    # 1e20 is whole, but no int64: the cast gave numpy's "invalid value" warning and a garbage class
    path = write_npz(tmp_path / "t.npz", y=np.where(np.arange(120) % 2 == 1, 1e20, 0.0))
    table = read_table("npz", str(path))
    assert table.classes == (0.0, 1e20)
    assert table.y.tolist() == [i % 2 for i in range(120)]
