"""Shared fixtures: compose the real configs/ (as train.py does) with small, fast overrides."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig

from nnmodel.config import compose

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("MPLBACKEND", "Agg")


def compose_config(overrides: list[str], run_dir: Path) -> DictConfig:
    """The config `python train.py OVERRIDES` would run, writing into ``run_dir``."""
    return compose([*overrides, f"paths.output_dir={run_dir}", "progress_refresh_rate=0"])


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    def make(*overrides: str, run_dir: Path | None = None) -> DictConfig:
        return compose_config(list(overrides), run_dir or tmp_path / "run")

    return make
