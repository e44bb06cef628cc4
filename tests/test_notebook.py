"""The lecture notebook (notebooks/lecture.ipynb): built from notebooks/build.py, and it runs top to bottom.

The slow test executes a temporary copy with nbclient in a fresh python3 kernel that imports this
checkout's nnmodel, and checks the numbers the lecture shows; the committed notebook is never written.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "lecture.ipynb"
CELL_TIMEOUT_S = 300


def load_builder():
    spec = importlib.util.spec_from_file_location("lecture_build", ROOT / "notebooks" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def printed(nb) -> str:
    """Everything the code cells printed or returned as text, in order."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                parts.append(out.text)
            elif out.output_type in ("execute_result", "display_data"):
                parts.append(out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def errors(nb) -> list[str]:
    return [
        f"cell {i}: {out.get('ename')}: {out.get('evalue')}"
        for i, cell in enumerate(nb.cells)
        for out in cell.get("outputs", [])
        if out.output_type == "error"
    ]


def n_images(nb) -> int:
    return sum("image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", []))


def number(text: str, pattern: str) -> float:
    match = re.search(pattern + r"\s*([-+0-9.e]+)", text)
    assert match, f"no line matching {pattern!r} in the notebook's output"
    return float(match.group(1))


def test_committed_notebook_is_the_builders_output_and_executed():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    built = load_builder().build()
    assert [(c.cell_type, c.source) for c in nb.cells] == [(c.cell_type, c.source) for c in built.cells], (
        "notebooks/lecture.ipynb differs from notebooks/build.py: run `python notebooks/build.py --execute`"
    )
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code_cells), "the committed notebook is not executed"
    assert errors(nb) == []
    assert n_images(nb) >= 10
    assert NOTEBOOK.stat().st_size < 1_500_000


@pytest.mark.slow
def test_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    before = hashlib.sha256(NOTEBOOK.read_bytes()).hexdigest()
    copy = tmp_path / "lecture.ipynb"
    shutil.copy(NOTEBOOK, copy)
    nb = nbformat.read(copy, as_version=4)
    for cell in nb.cells:  # start from a clean copy: no stale outputs can pass the checks below
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    client = nbclient.NotebookClient(
        nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, with the traceback, if a cell fails
    nbformat.write(nb, copy)

    assert errors(nb) == []
    assert n_images(nb) >= 10, "the figures (decision boundaries, activations, curves) should be embedded"
    text = printed(nb)
    # 1. the logistic unit and the gates
    assert "AND: [0, 0, 0, 1]" in text
    assert "OR:  [0, 1, 1, 1]" in text
    assert "XOR (2-2-1 by hand): [0, 1, 1, 0]" in text
    assert re.search(r"2-4-1 \(4 tanh units\): val/acc 1\.00, .* predicts \[0, 1, 1, 0\]", text)
    no_hidden = re.search(r"2-1   \(no hidden layer\): val/acc ([0-9.]+),.* predicts (\[.*\])", text)
    assert no_hidden and float(no_hidden.group(1)) <= 0.75 and no_hidden.group(2) != "[0, 1, 1, 0]"
    # 2. activations: g' of the sigmoid is at most 1/4, the step's is 0
    assert number(text, r"sigmoid    max g'\(z\) on \[-4, 4\]:") == pytest.approx(0.25, abs=1e-3)
    assert number(text, r"step       max g'\(z\) on \[-4, 4\]:") == 0
    # 3. symmetry: zero init keeps one distinct hidden unit, ε-uniform all 16
    assert "zero: distinct hidden units: 1 of 16" in text
    assert "ε-uniform, ε = 0.12: distinct hidden units: 16 of 16" in text
    # 4.-5. forward propagation and the δ terms by hand, float64
    assert number(text, r"forward: max \|hand − trace\| =") < 1e-12
    assert number(text, r"D: max \|hand − autograd\| =") < 1e-12
    assert number(text, r"δ: max \|hand − nnmodel.backprop\| =") < 1e-12
    assert number(text, r"gradient check, backprop, λ = 0: relative difference") < 1e-9
    assert number(text, r"gradient check, backprop, λ = 1: relative difference") < 1e-9
    assert number(text, r"gradient check, backprop without g', λ = 0: relative difference") > 1e-3
    # 6. the digits run trained
    assert number(text, r"'test/acc':") > 0.8
    # 8. a learning rate of 10⁵ diverges: nnmodel.train raises, result.json says so
    assert "status in result.json: diverged" in text
    # the committed notebook is untouched
    assert hashlib.sha256(NOTEBOOK.read_bytes()).hexdigest() == before
