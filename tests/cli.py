"""Running ``python train.py`` as a user does: a subprocess in a directory of the test's own."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TRAIN = str(ROOT / "train.py")


def run_cli(args: list[str], cwd: Path, timeout: int = 300, bar: bool = False) -> subprocess.CompletedProcess:
    """``python train.py ARGS`` in ``cwd``; without ``bar``, the progress bar is turned off."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, TRAIN, *args, *([] if bar else ["progress_refresh_rate=0"])],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("error: ")]


def run_dirs(cwd: Path) -> list[Path]:
    """The run directories under ``cwd/outputs`` (outputs/DATE/TIME), oldest first."""
    return sorted((cwd / "outputs").glob("*/*"))


def result(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "result.json").read_text())


def summary(sweep_dir: Path) -> list[dict[str, str]]:
    """A sweep's summary.csv, one dict per run."""
    with open(sweep_dir / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))
