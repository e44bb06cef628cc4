"""The README's Python examples, run as written (each section's ```python blocks, in order, in one namespace)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(section: str) -> list[str]:
    """The ```python blocks of the README section titled ``section`` (up to the next heading of its level)."""
    text = README.read_text()
    level = section.split(" ")[0]
    start = text.index(f"\n{section}\n")
    end = text.find(f"\n{level} ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start : end if end > 0 else None], flags=re.S)


@pytest.mark.slow
def test_from_python_examples_run_and_say_what_they_claim(tmp_path: Path, capsys) -> None:
    blocks = python_blocks("## From Python")
    assert len(blocks) == 2
    namespace: dict = {}
    cwd = os.getcwd()
    os.chdir(tmp_path)  # the runs write outputs/ here
    try:
        for block in blocks:
            exec(compile(block, str(README), "exec"), namespace)
    finally:
        os.chdir(cwd)
    run, again = namespace["run"], namespace["again"]
    assert run.metrics["status"] == "ok" and run.metrics["test/acc"] > 0.9
    assert again.metrics == {
        **run.metrics,
        "run_dir": again.metrics["run_dir"],
        "best_ckpt": again.metrics["best_ckpt"],
        "seconds": again.metrics["seconds"],
    }
    assert namespace["accuracy"] == pytest.approx(run.metrics["test/acc"], abs=1e-6)  # test/acc is a float32
    assert list(run.history.columns) == ["train/loss_epoch", "train/acc", "val/loss", "val/acc"]
    assert len(run.history) == 10 and run.checkpoint.is_file() and run.checkpoint.parent.parent == run.run_dir
    assert capsys.readouterr().out.count("model.activation: unknown activation 'relux'; did you mean 'relu'?") == 1
    assert namespace["score"] > 0.95
    assert namespace["search"].best_params_ in ({"mlpclassifier__hidden": (16,)}, {"mlpclassifier__hidden": (64,)})
    np.testing.assert_allclose(namespace["model"].predict_proba(namespace["x_test"][:2]).sum(axis=1), 1, atol=1e-6)
