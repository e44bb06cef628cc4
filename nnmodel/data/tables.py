"""A user's own table as a data set: ``data=csv`` (a header row and a label column) and ``data=npz`` (arrays X, y).

Reading a CSV uses the standard library's ``csv`` module for the cells and numpy for the numbers, one column at
a time (a failed column is then searched cell by cell, so a refusal can name the line, the column and the value).
Not pandas: importing it costs about 0.3 s on every run and every refusal, and its type guessing turns a stray
word into a string column, an empty cell into NaN and a short row into NaNs, where we want to refuse and say
where. The price, measured on 100,000 rows × 20 columns (2 shared cores): about 1.5 s to read, pandas 0.16 s
(+0.3 s import); a table a feedforward network trains on in memory reads in seconds either way, once per run.

A table is read once per (path, modification time, size, target, features): :func:`read_table` is cached, so
validating a config and then training on it parse the file once. Problems are ``ValueError`` lines that start
with the key to change; :mod:`nnmodel.validate` turns them into refusals before anything is written.
"""

from __future__ import annotations

import csv
import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nnmodel.data.builtin import three_way
from nnmodel.data.registry import SPLIT_KEYS, DatasetInfo, Splits, register_dataset
from nnmodel.schema import DataConfig

TABLES = ("csv", "npz")
SAVEZ = "numpy.savez(path, X=inputs, y=labels)"


@dataclass(frozen=True)
class Table:
    """A parsed table: inputs, labels as class indices, and what the indices stand for."""

    x: np.ndarray  # (n, d) float32, read-only
    y: np.ndarray  # (n,) int64 in 0..K-1, read-only
    classes: tuple[Any, ...]  # the sorted unique label values (Python ints, floats or strings)
    label: str  # where the labels are: "column 'species'" or "y"
    columns: tuple[str, ...] | None = None  # a CSV's input columns, in the network's order; None: an npz's X

    @property
    def info(self) -> DatasetInfo:
        return DatasetInfo(
            self.x.shape[1], len(self.classes), class_names=tuple(map(str, self.classes)), classes=self.classes
        )


def read_table(kind: str, path: str, target: str | None = None, features: Sequence[str] | None = None) -> Table:
    """The table at ``path`` (``kind`` csv or npz), from the cache while the file is unchanged."""
    stat = Path(path).stat()
    if kind == "npz":
        target = features = None  # an npz says its own inputs and labels: X and y
    return _cached(
        kind,
        str(Path(path).resolve()),
        path,
        stat.st_mtime_ns,
        stat.st_size,
        target,
        None if features is None else tuple(features),
    )


@functools.lru_cache(maxsize=2)
def _cached(
    kind: str, resolved: str, path: str, mtime_ns: int, size: int, target: str | None, features: tuple[str, ...] | None
) -> Table:
    return _read_csv(path, target, features) if kind == "csv" else _read_npz(path)


def fingerprint(path: str) -> str:
    """The SHA-256 of the table's file: a checkpoint records it (TensorDataModule.state_dict), so that a run resumes
    only on the table it was trained on, wherever that file now lies (a relative data.path read from elsewhere)."""
    stat = Path(path).stat()
    return _fingerprint(str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _fingerprint(resolved: str, mtime_ns: int, size: int) -> str:
    with open(resolved, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _table(cfg: DataConfig) -> Table:
    return read_table(cfg.name, cfg.path, cfg.target, cfg.features)


def describe(cfg: DataConfig) -> DatasetInfo:
    return _table(cfg).info


def load(cfg: DataConfig) -> Splits:
    """Stratified train/val/test (as digits: ``test_fraction`` by ``test_seed``, then ``val_fraction``), unscaled."""
    table = _table(cfg)
    return three_way(table.x, table.y, cfg)


READS = {  # the data.* keys each kind of table reads (an npz holds X and y: no columns to name)
    "csv": (*SPLIT_KEYS, "path", "target", "features", "standardize"),
    "npz": (*SPLIT_KEYS, "path", "standardize"),
}
for _kind in TABLES:
    register_dataset(_kind, describe=describe, standardizes=True, reads=READS[_kind])(load)


def standardize(
    splits: Splits, mean: torch.Tensor | None = None, std: torch.Tensor | None = None
) -> tuple[Splits, torch.Tensor, torch.Tensor]:
    """x' = (x − mean) / std with the training split's mean and std (population std; 0 becomes 1), every split;
    with ``mean`` and ``std`` given (a checkpoint's), those."""
    if mean is None or std is None:
        x = splits["train"][0].double()
        mean, std = x.mean(0), x.std(0, correction=0)
        mean, std = mean.float(), torch.where(std > 0, std, torch.ones_like(std)).float()
    return {k: ((x - mean) / std, y) for k, (x, y) in splits.items()}, mean, std


def _classes(labels: np.ndarray) -> tuple[np.ndarray, tuple[Any, ...]]:
    """(indices into the sorted unique labels, those labels as Python values)."""
    values, y = np.unique(labels, return_inverse=True)
    return y.astype(np.int64), tuple(values.tolist())


def _frozen(
    x: np.ndarray, y: np.ndarray, classes: tuple[Any, ...], label: str, columns: Sequence[str] | None = None
) -> Table:
    x, y = np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(y, dtype=np.int64)
    x.flags.writeable = y.flags.writeable = False
    return Table(x, y, classes, label, None if columns is None else tuple(columns))


def _read_csv(path: str, target: str | None, features: tuple[str, ...] | None) -> Table:
    where = f"data.path: '{path}'"
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, skipinitialspace=True)
            header = next(reader, None)
            rows, lines, ends = [], [], []  # each row, and the file's lines where it starts and ends
            first = reader.line_num + 1
            for row in reader:
                if row and not (len(row) == 1 and not row[0].strip()):  # not a blank line
                    rows.append(row)
                    lines.append(first)
                    ends.append(reader.line_num)  # further down when a quoted cell holds line breaks
                first = reader.line_num + 1
    except UnicodeDecodeError as err:
        with open(path, "rb") as f:
            zipped = f.read(4) == b"PK\x03\x04"  # numpy's .npz (a zip archive of .npy arrays), or an Excel .xlsx
        what = "; it is a zip archive: for NumPy's .npz, give data=npz" if zipped else "; save it as UTF-8 CSV"
        raise ValueError(f"{where} is not UTF-8 text ({err.reason} at byte {err.start}){what}") from None
    except csv.Error as err:
        raise ValueError(f"{where} is not a readable CSV file ({err})") from None
    if not header:
        raise ValueError(f"{where} is empty; a CSV needs a header row of column names, then one row per example")
    header = [name.strip() for name in header]
    columns = ", ".join(header)
    if header[0].lower().startswith("sep="):  # Excel's line that names the separator
        columns = "none: its first line is Excel's separator line (sep=...); delete it, the header comes first"
    elif len(header) == 1 and any(sep in header[0] for sep in ";\t "):
        columns += " (a single column: nnmodel reads comma-separated files)"
    elif sum(map(_is_number, header)) >= max(1, len(header) - 1):  # all but the label, say
        columns += " (the first row looks like data: a CSV needs a header row of column names)"
    twice = next((name for i, name in enumerate(header) if name in header[:i]), None)
    if twice is not None:
        raise ValueError(f"{where}: its header names the column '{twice}' twice")
    if target is None:
        raise ValueError(f"data=csv needs data.target=COLUMN, the column of labels; the columns of '{path}': {columns}")
    if target not in header:
        raise ValueError(f"data.target: no column '{target}' in '{path}'; its columns: {columns}")
    if features is not None:
        if not features:
            raise ValueError("data.features is empty; name the input columns, or leave it null for all but the target")
        missing = next((name for name in features if name not in header), None)
        if missing is not None:
            raise ValueError(f"data.features: no column '{missing}' in '{path}'; its columns: {columns}")
        if target in features:
            raise ValueError(f"data.features: '{target}' is the label column (data.target), not an input")
        repeated = next((name for i, name in enumerate(features) if name in features[:i]), None)
        if repeated is not None:
            raise ValueError(f"data.features names the column '{repeated}' twice; name each input once")
    names = list(features) if features is not None else [name for name in header if name != target]
    if "" in names:  # what pandas' to_csv writes for its index: the row numbers would become an input
        column = header.index("")
        why = (
            " (pandas writes its index so: save with index=False)" if column == 0
            else " (a comma at the end of each line makes one: remove it)" if column == len(header) - 1
            else ""
        )  # fmt: skip
        raise ValueError(
            f"{where}: its column {column + 1} has no name{why}; name it, or choose the inputs with data.features=[...]"
        )
    if not names:
        raise ValueError(f"{where} has no input column: its only column is the target '{target}'")
    if not rows:
        raise ValueError(f"{where} has a header but no data rows")
    short = next((i for i, row in enumerate(rows) if len(row) != len(header)), None)
    if short is not None:
        if ends[short] > lines[short] and any("\n" in cell for cell in rows[short]):
            raise ValueError(
                f"{where} line {lines[short]} (data row {short + 1}): a quoted cell opens there and runs on to line "
                f'{ends[short]}, taking the lines between as its text; close its quote (") on line {lines[short]}'
            )
        raise ValueError(
            f"{where} line {lines[short]} (data row {short + 1}) has {len(rows[short])} cells, "
            f"the header has {len(header)} columns"
        )
    cells = list(zip(*rows))  # one tuple of strings per column
    x = np.empty((len(rows), len(names)), dtype=np.float32)
    for j, name in enumerate(names):
        column = cells[header.index(name)]
        try:
            values = np.array(column, dtype=np.float64)  # parses the strings as float() does
        except ValueError:
            values = None
        bad = _first_bad(column, values)
        if bad is not None:
            i, why = bad
            raise ValueError(f"{where} line {lines[i]} (data row {i + 1}), column '{name}': {column[i]!r} is not {why}")
        x[:, j] = values
    labels = [cell.strip() for cell in cells[header.index(target)]]
    empty = next((i for i, cell in enumerate(labels) if not cell), None)
    if empty is not None:
        raise ValueError(f"{where} line {lines[empty]} (data row {empty + 1}), column '{target}': no label")
    # Labels that are all integers, each written as Python writes it, sort as numbers (2 < 10); any others are
    # strings, so that "01" and "1" (or "+1" and "1") stay two classes instead of merging into one.
    try:
        numbers = np.array(labels).astype(np.int64)
    except (ValueError, OverflowError):
        numbers = None
    exact = numbers is not None and numbers.astype(str).tolist() == labels
    y, classes = _classes(numbers if exact else np.array(labels))
    return _frozen(x, y, classes, f"column '{target}'", names)


def csv_columns(path: str) -> list[str] | None:
    """The column names of a CSV file's header row, or None where it has none that can be read (the full read
    of :func:`read_table` then says why)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f, skipinitialspace=True), None)
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    return [name.strip() for name in header] if header else None


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _float32_finite(values: np.ndarray) -> np.ndarray:
    """Where a value stays finite as the float32 nnmodel trains in (1e39 is finite in float64, inf in float32)."""
    values = np.asarray(values, dtype=np.float64)
    return np.isfinite(values) & (np.abs(values) <= np.finfo(np.float32).max)


def _first_bad(column: Sequence[str], values: np.ndarray | None) -> tuple[int, str] | None:
    """(row index, what it is not) of the first cell that is not a finite number, or None."""
    if values is not None:
        bad = np.flatnonzero(~_float32_finite(values))
        if not len(bad):
            return None
        i = int(bad[0])
        return i, "a finite number" if not np.isfinite(values[i]) else "a finite number in float32 (|x| ≤ 3.4e38)"
    return next((i, "a number") for i, cell in enumerate(column) if not _is_number(cell))


def _utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _read_npz(path: str) -> Table:
    where = f"data.path: '{path}'"
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":  # a zip archive's signature; numpy's own refusal of other files speaks of pickles
        raise ValueError(f"{where} is not a .npz file (a zip archive of arrays); write one with {SAVEZ}")
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as err:  # not a zip, a pickle, a truncated file: numpy says it in many ways
        raise ValueError(f"{where} is not a readable .npz file ({type(err).__name__}: {err})") from None
    arrays: dict[str, np.ndarray] = {}
    with npz:
        for key in ("X", "y"):
            if key not in npz.files:
                raise ValueError(
                    f"{where} has no array '{key}' (its arrays: {', '.join(npz.files) or 'none'}); "
                    f"save both with {SAVEZ}"
                )
            try:
                arrays[key] = npz[key]
            except ValueError:  # an object array, refused by allow_pickle=False
                raise ValueError(f"{where}: array '{key}' holds Python objects; save numbers (y: or strings)") from None
            except Exception as err:
                raise ValueError(f"{where}: array '{key}' is unreadable ({type(err).__name__}: {err})") from None
    x, labels = arrays["X"], arrays["y"]
    if x.ndim != 2:
        raise ValueError(f"{where}: X must be 2-D (examples × features), got shape {x.shape}")
    if labels.ndim != 1:
        raise ValueError(f"{where}: y must be 1-D (one label per example), got shape {labels.shape}")
    if len(x) != len(labels):
        raise ValueError(f"{where}: X has {len(x)} rows but y has {len(labels)} labels")
    if x.dtype.kind not in "biuf":
        raise ValueError(f"{where}: X must be numeric, got dtype {x.dtype}")
    if labels.dtype.kind not in "biufUS":
        raise ValueError(f"{where}: y must be numbers or strings, got dtype {labels.dtype}")
    if len(x) == 0 or x.shape[1] == 0:
        raise ValueError(f"{where}: X has shape {x.shape}; it needs examples and features")
    bad = np.argwhere(~_float32_finite(x))
    if len(bad):
        i, j = bad[0]
        raise ValueError(
            f"{where}: X[{i}, {j}] is {x[i, j]}; X must hold finite float32 numbers, |x| < 3.4e38 ({len(bad)} do not)"
        )
    if labels.dtype.kind == "f":
        if not np.isfinite(labels).all():
            i = int(np.flatnonzero(~np.isfinite(labels))[0])
            raise ValueError(f"{where}: y[{i}] is {labels[i]}; a label must be a finite number or a string")
        if (labels == np.round(labels)).all() and (np.abs(labels) < 2**53).all():
            labels = labels.astype(np.int64)  # 0.0, 1.0, ... are the classes 0, 1, ... (whole and exact in int64)
    if labels.dtype.kind == "S":
        try:
            labels = np.char.decode(labels, "utf-8")
        except UnicodeDecodeError as err:
            i, bad = next((i, b) for i, b in enumerate(labels.tolist()) if not _utf8(b))
            raise ValueError(
                f"{where}: y[{i}] is {bad!r}, bytes that are not UTF-8 text ({err.reason}); save the labels as "
                "numbers or str"
            ) from None
    y, classes = _classes(labels)
    return _frozen(x, y, classes, "y")
