"""Where nnmodel's Hydra configs live, and composing them from Python as ``python train.py`` does."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ValueType
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf

from nnmodel.errors import ConfigError, unknown
from nnmodel.schema import OWN_TRAINER_KEYS  # (importing it stores the config groups' schemas before Hydra composes)

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
GROUPS = ("data", "model", "optimizer", "trainer", "experiment", "diagnostics", "hparams_search")


def compose(overrides: Sequence[str] = (), return_hydra_config: bool = False) -> DictConfig:
    """The config that ``python train.py OVERRIDES`` runs (Hydra's compose API, no ``hydra`` node).

    Inside a running Hydra app (``train.py``) it composes with that app's search path; elsewhere it
    opens Hydra on :data:`CONFIG_DIR` for the call and closes it again, so nothing lingers.
    """
    if GlobalHydra.instance().is_initialized():
        return hydra_compose("train", overrides=list(overrides), return_hydra_config=return_hydra_config)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose("train", overrides=list(overrides), return_hydra_config=return_hydra_config)


def override_key(override: str) -> str:
    """The key an override names: ``+a.b=1``, ``~a.b`` and ``a.b=1`` all name ``a.b`` (``data=xor`` the group)."""
    return override.lstrip("+~").partition("=")[0]


def group_choices(group: str) -> list[str]:
    """The presets of a config group: the YAML files of ``configs/<group>/``."""
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


CHOICES = (ValueType.SIMPLE_CHOICE_SWEEP, ValueType.CHOICE_SWEEP)


def chosen(override: str) -> tuple[str, list[str]]:
    """The key of an override and the values it gives, as Hydra's override parser reads them: ``optimizer=sgd`` one,
    a sweep's ``optimizer=sgd,adam`` or ``choice(sgd,adam)`` each, ``glob(ada*)`` the group's presets it matches; none
    for a deletion, ``null``, a range or an interval, or what Hydra cannot parse (it says so itself)."""
    try:
        (parsed,) = OverridesParser.create().parse_overrides([override])
    except Exception:
        return override_key(override), []
    key, value = parsed.key_or_group, parsed.value()
    if parsed.is_delete() or value is None:
        return key, []
    if parsed.value_type == ValueType.GLOB_CHOICE_SWEEP:
        return key, value.filter(group_choices(key)) if key in GROUPS else []
    if parsed.is_sweep_override():
        return key, list(parsed.sweep_string_iterator()) if parsed.value_type in CHOICES else []
    return key, [str(value)]


def check_group_choices(overrides: Sequence[str]) -> None:
    """``optimizer=adamm`` or ``hydra/launcher=forkk``, also in a sweep (``optimizer=sgd,adamm``): Hydra says it in
    many lines, or stops a sweep or a search at that run; say it in one, before any run, with the choices (of Hydra's
    own groups, those Hydra lists: its plugins' and ours). A ``glob(...)`` of a group must match one of them."""
    for override in overrides:
        key, values = chosen(override)
        if key in GROUPS and "glob(" in override and not values:
            raise ConfigError(f"{override} matches no {key} preset; choose from: {', '.join(group_choices(key))}")
        bad = next((v for v in values if key in GROUPS and v not in group_choices(key)), None)
        if bad is not None:
            raise unknown(key, bad, group_choices(key))
        if key.startswith("hydra/") and len(values) == 1:
            value = values[0]
            try:
                compose([override], return_hydra_config=True)
            except MissingConfigException as err:
                raise unknown(key, value, err.options or []) from None
            except HydraException:
                pass  # another refusal: composing the whole command line says it


def compose_checked(overrides: Sequence[str] = ()) -> DictConfig:
    """:func:`compose`, with every refusal of Hydra's (an unknown group choice or key, a value of the wrong
    type, an override it cannot parse) as one :class:`~nnmodel.errors.ConfigError` line."""
    check_group_choices(overrides)
    try:
        return compose(overrides)
    except HydraException as err:
        raise ConfigError(_one_line(err, list(overrides))) from None


def parse_overrides(overrides: Sequence[str]) -> list[Any]:
    """Hydra's parse of the overrides (its ``Override`` objects), or the one line :func:`compose_checked` gives for one
    it cannot read."""
    try:
        return OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as err:
        raise ConfigError(_one_line(err, list(overrides))) from None


def check_hydra_keys(overrides: Sequence[str]) -> None:
    """A run's ``hydra.*`` overrides (``hydra.run.dir=...``, ``hydra.job.chdir=true``): a key Hydra does not have or a
    value of the wrong type is one line, as for the run's own keys (Hydra says it in several)."""
    hydra = [o for o in overrides if o.lstrip("+~").startswith("hydra.")]
    if not hydra:
        return
    try:
        compose(hydra, return_hydra_config=True)
    except HydraException as err:
        raise ConfigError(_one_line(err, hydra, return_hydra_config=True)) from None


def own_trainer_key(key: str) -> str:
    """The line that refuses ``trainer.logger`` and the other keywords of lightning.Trainer that nnmodel gives."""
    return f"{key} is nnmodel's to set ({OWN_TRAINER_KEYS[key]}); drop that override"


def _one_line(err: Exception, overrides: list[str], return_hydra_config: bool = False) -> str:
    """Hydra's error in one line; for an unknown key, the key and the keys that are there."""
    if isinstance(err, OverrideParseException):  # Hydra's words name neither the override nor the way out
        lines = str(err).splitlines()
        reason = lines[0].strip()
        caret = next((line.index("^") for line in lines[1:2] if line.strip() == "^"), None)
        if caret is not None and err.override in lines[0]:  # Hydra's lexer: the override, and ^ under the character
            at = caret - lines[0].index(err.override)
            reason = f"at character {at + 1}, {err.override[at : at + 1]!r}" if 0 <= at < len(err.override) else ""
        reason = f" ({reason})" if reason else ""
        home = " (~ is not your home directory here: give the whole path)" if "~" in err.override else ""
        return (
            f"Hydra cannot read the override '{err.override}'{reason}; check its brackets and quotes: a value with "
            f"characters Hydra reserves (~ , = [ ] ( ) spaces) goes in quotes, 'key=\"value\"'{home}"
        )
    cause = err.__cause__
    key = getattr(cause, "full_key", None)
    if key and ("not in struct" in str(cause) or "not in '" in str(cause)):
        if key in OWN_TRAINER_KEYS:
            return own_trainer_key(key)
        owner = (o for o in overrides if f"{o.lstrip('+~').partition('=')[0]}.".startswith(f"{key}."))
        bad = next(owner, f"{key}=...")  # mdel.hidden=[3] is the override behind the missing key mdel
        parent = key.rpartition(".")[0]
        try:  # the keys that are there, for the choices
            node = compose([o for o in overrides if o != bad], return_hydra_config=return_hydra_config)
            node = OmegaConf.select(node, parent) if parent else node
            return str(unknown("key", key, [f"{parent}.{k}" if parent else str(k) for k in node]))
        except Exception:
            return f"unknown key '{key}'"
    lines = [line.strip() for part in (str(err), str(cause or "")) for line in part.splitlines() if line.strip()]
    noise = ("full_key:", "object_type=", "reference_type=")  # OmegaConf's details, after the message
    said = "; ".join(dict.fromkeys(line for line in lines if not line.startswith(noise)))
    deleted = re.search(r"Error merging override ~([\w.]+)", said)
    if deleted and "does not support deletion" in said:  # a typed group's key: every run reads it
        return f"{said}; {deleted[1]} cannot be deleted, set it instead ({deleted[1]}=...)"
    hint = _type_hint(said)
    return f"{said.rstrip('.')}{hint}" if hint else said


LIST = "is not a ListConfig, list or tuple"
TYPE_HINTS = {  # what OmegaConf says of a value of the wrong type -> what to write instead (one, many), an example
    LIST: ("a list", "lists", "[{value}]"),
    "could not be converted to Float": ("a number", "numbers", "0.1"),
    "could not be converted to Integer": ("a whole number", "whole numbers", "64"),
    "is not a valid bool": ("true or false", "true/false values", "true"),
}


def _type_hint(said: str) -> str:
    """``; model.hidden takes a list, e.g. model.hidden=[64]`` for a type refusal of Hydra's, else nothing. A list's
    element of the wrong type (``model.hidden=[8.0]``) gets a list of the right ones, ``e.g. model.hidden=[64]``."""
    override = re.search(r"Error merging override (\S+?)=(\S*)", said)
    hint = next((h for phrase, h in TYPE_HINTS.items() if phrase in said), None)
    if override is None or hint is None:
        return ""
    key, value = override.groups()
    value = value.rstrip(";")
    one, many, example = hint
    if value.startswith("[") and hint != TYPE_HINTS[LIST]:  # an element of a list
        return f"; {key} takes a list of {many}, e.g. {key}=[{example}]"
    return f"; {key} takes {one}, e.g. {key}={example.format(value=value)}"


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
