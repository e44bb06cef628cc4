"""Where nnmodel's Hydra configs live, and composing them from Python as ``python train.py`` does."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

import nnmodel.schema  # noqa: F401  (stores the config groups' schemas before Hydra composes)

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    """The config that ``python train.py OVERRIDES`` runs (Hydra's compose API, no ``hydra`` node).

    Inside a running Hydra app (``train.py``) it composes with that app's search path; elsewhere it
    opens Hydra on :data:`CONFIG_DIR` for the call and closes it again, so nothing lingers.
    """
    if GlobalHydra.instance().is_initialized():
        return hydra_compose("train", overrides=list(overrides))
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose("train", overrides=list(overrides))


def leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    """A config as flat ``dotted.key → value`` pairs; lists are values, not nodes."""
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=False)
    if not isinstance(node, dict):
        return {prefix: node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        out |= leaves(value, f"{prefix}{key}.") if isinstance(value, dict) and value else {f"{prefix}{key}": value}
    return out
