"""The report of a sweep: what ``python train.py -m ...`` found, in one table and a few pictures.

After the last run of a sweep (a grid, or an Optuna search with ``hparams_search=optuna``),
:class:`SweepReport` (a Hydra callback) reads every run's ``result.json`` under ``hydra.sweep.dir``
with pandas and writes there:

    summary.csv   one row per run: its overrides, seed, status, final metrics, the message of a run that
                  diverged or failed, diagnostics
    report.md     one row per setting (the overrides except ``seed``), mean ± std over the seeds,
                  best mean val/acc first; the best run as a ready command line; each run that did not
                  finish ``ok``, with its one-line message
    curves.png    val/acc, val/loss and train/loss_epoch per epoch, one line per setting
                  (mean over seeds, with a ±std band)
    optimization_history.png   Optuna searches only: val/acc by trial, and the best so far

The diagnostic columns (grad_ratio, distinct_units, dead_fraction, saturated_fraction) are each run's
result.json ``diagnostics`` (``DiagnosticsCallback.summary`` says what each means), left out when no
run has them.

Every launched job is a run of the report: train.py records a job whose config it refuses as ``failed``,
with its one-line error as the message, and a job that left no result.json (killed) counts as ``failed``
too. A key the sweep varies (on the command line, or in ``hydra.sweeper.params``) is a column of the table
even where the runs show one value of it. :meth:`SweepReport.on_multirun_start` refuses an Optuna search
of fewer than one trial.

On an existing sweep directory: ``python -m nnmodel.sweep multirun/2025-01-01/12-00-00-000000``.
"""

from __future__ import annotations

import json
import math
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ValueType
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from nnmodel.errors import ConfigError, exit_on_config_error, plural

RESULT_COLUMNS = ("status", "epochs", "val/acc", "val/loss", "test/acc", "seconds", "message")
DIAGNOSTIC_COLUMNS = ("grad_ratio", "distinct_units", "dead_fraction", "saturated_fraction")
METRICS = ("val/acc", "test/acc", "val/loss")  # mean ± std in report.md
CURVES = ("val/acc", "val/loss", "train/loss_epoch")  # the subplots of curves.png
STATUSES = ("ok", "diverged", "failed", "interrupted")
MAX_CURVES = 20  # settings drawn in curves.png, best first: tab20 has 20 colours
SEARCH_PRESET = "hparams_search"  # left out of a run's command line: it only configures the sweeper
MAX_LISTED = 20  # runs that did not finish ok, listed in report.md with their messages


# ----------------------------------------------------------------------------- one run


def read_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def read_overrides(run_dir: Path) -> list[str]:
    """The run's task overrides as Hydra saved them (``.hydra/overrides.yaml``), ``+`` and all."""
    return [str(line) for line in read_yaml(run_dir / ".hydra" / "overrides.yaml") or []]


def override_values(overrides: list[str]) -> dict[str, str]:
    """``key → value`` (``+``/``++``/``~`` dropped, ``hydra.*`` left out)."""
    pairs = ((key.lstrip("+~"), value) for key, _, value in (line.partition("=") for line in overrides))
    return {key: value for key, value in pairs if key.partition(".")[0] != "hydra"}


def read_seed(run_dir: Path) -> str:
    """The seed from the run's composed config, for sweeps that do not override it."""
    cfg = read_yaml(run_dir / ".hydra" / "config.yaml")
    seed = cfg.get("seed") if isinstance(cfg, dict) else None
    return "" if seed is None else str(seed)


def read_result(run_dir: Path) -> dict[str, Any]:
    """``result.json``; a run that left none (killed, or crashed before writing it) counts as failed."""
    path = run_dir / "result.json"
    if not path.is_file():
        return {"status": "failed", "message": "no result.json: the run was killed, or crashed before writing it"}
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        return {"status": "failed", "message": f"result.json could not be read: {err}"}
    if not isinstance(result, dict):
        return {"status": "failed", "message": f"result.json holds a {type(result).__name__}, not a run's record"}
    return result


def one_line(text: Any) -> str:
    """A message as one line (an exception's may have several)."""
    return " ".join(str(text).split()) if text is not None else ""


def find_runs(sweep_dir: Path) -> list[Path]:
    """The run directories under ``sweep_dir`` (those holding ``.hydra/`` or ``result.json``), in job order."""
    runs = {p.parent.parent for p in sweep_dir.rglob(".hydra/overrides.yaml")}
    runs |= {p.parent for p in sweep_dir.rglob("result.json")}

    def order(p: Path) -> tuple:
        rel = p.relative_to(sweep_dir).parts
        return tuple((0, int(s), "") if s.isdigit() else (1, 0, s) for s in rel)

    return sorted(runs, key=order)


def run_command(overrides: list[str]) -> str:
    """``python train.py OVERRIDES``, quoted for the shell: the run again, on its own."""
    kept = [o for o in overrides if o.partition("=")[0].lstrip("+~") != SEARCH_PRESET]
    return shlex.join(["python", "train.py", *kept])


# ----------------------------------------------------------------------------- the sweep


def collect(sweep_dir: Path) -> tuple[pd.DataFrame, list[str]]:
    """One row per run, in job order, and the override columns (``seed`` included).

    Besides the CSV's columns a row keeps ``job`` (the trial number of an Optuna search), ``run_dir``,
    ``overrides`` (the list Hydra saved) and ``history`` (result.json's per-epoch lists).
    """
    records: list[dict[str, Any]] = []
    keys: dict[str, None] = {}  # ordered set: the override columns, in order of first appearance
    for position, run_dir in enumerate(find_runs(sweep_dir)):
        result = read_result(run_dir)
        # the run's own record first: a directory's .hydra/ is rewritten by any later command given that directory
        recorded = result.get("overrides")
        overrides = [str(o) for o in recorded] if isinstance(recorded, list) else read_overrides(run_dir)
        values = override_values(overrides)
        keys |= dict.fromkeys(values)
        record: dict[str, Any] = {**values, **{k: result.get(k) for k in RESULT_COLUMNS}}
        record["message"] = one_line(record["message"]) or None
        record.setdefault("seed", str(result["seed"]) if isinstance(result.get("seed"), int) else read_seed(run_dir))
        if record["status"] not in STATUSES:
            record["status"] = "failed"
        record |= {k: v for k, v in (result.get("diagnostics") or {}).items() if k in DIAGNOSTIC_COLUMNS}
        job = int(run_dir.name) if run_dir.name.isdigit() else position
        record |= {"job": job, "run_dir": str(run_dir), "overrides": overrides, "history": result.get("history") or {}}
        records.append(record)
    columns = [*keys, *([] if "seed" in keys else ["seed"])]
    extra = ["job", "run_dir", "overrides", "history"]
    runs = pd.DataFrame(records, columns=[*columns, *RESULT_COLUMNS, *DIAGNOSTIC_COLUMNS, *extra], dtype=object)
    return runs, columns


def numbers(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``columns`` as floats; missing, non-numeric and non-finite values as NaN."""
    out = frame[columns].apply(pd.to_numeric, errors="coerce").astype(float)
    return out.replace([np.inf, -np.inf], np.nan)


def ok_val_acc(runs: pd.DataFrame) -> pd.Series:
    """val/acc of the ``ok`` runs; NaN for the others."""
    return numbers(runs, ["val/acc"])["val/acc"].where(runs["status"] == "ok")


def settings_of(runs: pd.DataFrame, keys: list[str]) -> pd.Series:
    """Each run's setting: the tuple of its values of ``keys`` ("" where a run lacks one)."""
    if not keys:
        return pd.Series([()] * len(runs), index=runs.index, dtype=object)
    return runs[keys].fillna("").astype(str).apply(tuple, axis=1)


def summarise(runs: pd.DataFrame, keys: list[str], diagnostics: list[str]) -> pd.DataFrame:
    """One row per setting (index: the tuple of its ``keys`` values): ``n``, the status counts, mean,
    std and count of :data:`METRICS` over its ``ok`` runs, the mean of each diagnostic.

    Best mean val/acc first; equal (or missing) means keep the sweep's order.
    """
    table = numbers(runs, [*METRICS, *diagnostics])
    table[list(METRICS)] = table[list(METRICS)].where(runs["status"] == "ok", axis=0)
    table = table.assign(**{status: runs["status"] == status for status in STATUSES})
    aggregations: dict[str, tuple[str, str]] = {"n": ("ok", "size"), **{s: (s, "sum") for s in STATUSES}}
    for metric in METRICS:
        aggregations |= {f"{metric} {stat}": (metric, stat) for stat in ("mean", "std", "count")}
    aggregations |= {d: (d, "mean") for d in diagnostics}
    settings = table.groupby(settings_of(runs, keys), sort=False).agg(**aggregations)
    for metric in METRICS:  # one ok run: std 0, as for a constant
        settings.loc[settings[f"{metric} count"] == 1, f"{metric} std"] = 0.0
    return settings.sort_values("val/acc mean", ascending=False, na_position="last", kind="stable")


def settings_markdown(settings: pd.DataFrame, keys: list[str], diagnostics: list[str]) -> str:
    """The table of report.md, with pandas' ``to_markdown`` (tabulate's pipe format)."""
    cells = pd.DataFrame({k: [f"`{values[i]}`" for values in settings.index] for i, k in enumerate(keys)})
    cells.index = settings.index
    cells["n"] = settings["n"].astype(str)
    for metric in METRICS:
        triples = zip(settings[f"{metric} mean"], settings[f"{metric} std"], settings[f"{metric} count"])
        cells[metric] = [spread(m, sd, n) for m, sd, n in triples]
    cells["diverged"], cells["failed"] = settings["diverged"].astype(str), settings["failed"].astype(str)
    if settings["interrupted"].any():  # a sweep stopped by Ctrl-C or SIGTERM
        cells["interrupted"] = settings["interrupted"].astype(str)
    for d in diagnostics:
        cells[d] = settings[d].map(lambda v: "—" if pd.isna(v) else f"{v:.3g}")
    align = ["left"] * len(keys) + ["right"] * (len(cells.columns) - len(keys))
    # no colalign for a table of no rows: tabulate 0.9.0 indexes a list of no columns with it (IndexError)
    return cells.to_markdown(index=False, colalign=align if len(cells) else None, disable_numparse=True)


def spread(mean: float, std: float, count: int) -> str:
    """A report.md cell: mean ± std over the ok runs; one run has no spread to show, none has no value."""
    if pd.isna(mean):
        return "—"
    return f"{mean:.4f} (1 run)" if count == 1 else f"{mean:.4f} ± {std:.4f}"


def sweep_command(hydra_cfg: dict[str, Any]) -> list[str]:
    """The sweep's command-line overrides: the task's, and the ``hydra`` ones that choose the sweeper
    and launcher (not ``hydra.sweep.dir`` or Hydra's own ``hydra.mode``)."""
    overrides = hydra_cfg.get("overrides") or {}
    launch = ("hydra/sweeper", "hydra/launcher", "hydra.sweeper.", "hydra.launcher.")
    return [*(overrides.get("task") or []), *(o for o in overrides.get("hydra") or [] if o.startswith(launch))]


def best_run(runs: pd.DataFrame) -> pd.Series | None:
    """The ``ok`` run with the highest val/acc (the first of equals), or None when no run is ok."""
    val = ok_val_acc(runs)
    return runs.loc[val.idxmax()] if val.notna().any() else None


def best_line(runs: pd.DataFrame) -> str:
    """One line: the best run as a command, or that no run succeeded."""
    best = best_run(runs)
    if runs.empty:
        return "no run in the sweep directory to report (a run given paths.output_dir writes its result.json there)"
    if best is None:
        counts = runs["status"].value_counts()
        stopped = counts.get("interrupted", 0)
        more = f", {stopped} interrupted" if stopped else ""
        if len(runs) == 1:
            every = f"its 1 run {'was interrupted' if stopped else runs['status'].iloc[0]}"
        else:
            every = f"all {len(runs)} runs diverged{', failed or were interrupted' if stopped else ' or failed'}"
        tally = f"{counts.get('diverged', 0)} diverged, {counts.get('failed', 0)} failed{more}"
        return f"no run succeeded: {every} ({tally})"
    return f"best run: job {best['job']}, val/acc {float(best['val/acc']):.4f}: `{run_command(best['overrides'])}`"


def unfinished_lines(runs: pd.DataFrame) -> list[str]:
    """report.md's list of the runs that did not finish ``ok``: each as a command line, with its message."""
    bad = runs[runs["status"] != "ok"]
    if bad.empty:
        return []
    lines = [f"- {plural(len(bad), 'run')} did not finish `ok`:"]
    for _, run in bad.head(MAX_LISTED).iterrows():
        message = run["message"] if isinstance(run["message"], str) and run["message"] else "(no message)"
        lines.append(f"  - job {run['job']}, {run['status']}: `{run_command(run['overrides'])}`: {message}")
    if len(bad) > MAX_LISTED:
        lines.append(f"  - and {len(bad) - MAX_LISTED} more: see summary.csv")
    return lines


def sweep_lines(hydra_cfg: dict[str, Any] | DictConfig) -> list[str]:
    """A sweep's overrides: ``hydra.sweeper.params`` (a search preset's), then the command line's (which replace
    them), each as Hydra's override syntax (``key=value``)."""
    task = (hydra_cfg.get("overrides") or {}).get("task") or []
    params = [f"{k}={v}" for k, v in ((hydra_cfg.get("sweeper") or {}).get("params") or {}).items()]
    return [*params, *(str(line) for line in task)]


def swept_keys(hydra_cfg: dict[str, Any]) -> set[str]:
    """The keys the sweep varies: a sweep on the command line (``a=1,2``, ``choice(...)``, ``range(...)``,
    ``interval(...)``) or in ``hydra.sweeper.params``, unless the command line fixes that key to one value."""
    parser, swept = OverridesParser.create(), {}
    for line in sweep_lines(hydra_cfg):  # the command line's come last: they replace the config's
        try:
            (override,) = parser.parse_overrides([str(line)])
        except Exception:  # not Hydra's syntax (a report rebuilt from an edited multirun.yaml): no sweep known
            continue
        swept[override.key_or_group] = override.is_sweep_override()
    return {key for key, sweeping in swept.items() if sweeping}


def write_report_md(path: Path, report: dict[str, Any]) -> None:
    runs, settings, hydra_cfg = report["frame"], report["settings"], report["hydra"]
    task, sweeper = sweep_command(hydra_cfg), hydra_cfg.get("sweeper") or {}
    command = f"`python train.py -m {shlex.join(task)}`" if task else "(no multirun.yaml found)"
    lines = [f"# Sweep report: `{report['dir']}`", "", f"- command: {command}"]
    task_keys = {o.partition("=")[0].lstrip("+~") for o in task}  # the command line replaces those params
    params = [f"`{k}={v}`" for k, v in (sweeper.get("params") or {}).items() if str(k) not in task_keys]
    if params:
        lines.append("- swept by the config (`hydra.sweeper.params`): " + ", ".join(params))
    if report["optuna"]:
        sampler = f"{str(sweeper['sampler']['_target_']).rpartition('.')[2]} (seed {sweeper['sampler'].get('seed')})"
        lines.append(
            f"- Optuna search: {sweeper.get('n_trials')} trials, {sampler}, {sweeper.get('direction')} val/acc "
            "(a diverged or failed run: −inf); [optimization_history.png](optimization_history.png)"
        )
    if report["constant"]:
        lines.append("- the same in every run: " + ", ".join(f"`{k}={v}`" for k, v in report["constant"].items()))
    capped = f" (the best {MAX_CURVES} settings)" if len(settings) > MAX_CURVES else ""
    lines += [
        f"- {plural(len(runs), 'run')} in {plural(len(settings), 'setting')}; mean ± std over each setting's `ok` "
        "runs (seeds; one run: its value), best mean val/acc first",
        f"- {best_line(runs)}",
        *unfinished_lines(runs),
        f"- full per-run table: [summary.csv](summary.csv); curves: [curves.png](curves.png){capped}",
        "",
        "![curves](curves.png)",
        "",
        settings_markdown(settings, report["keys"], report["diagnostics"]),
    ]
    path.write_text("\n".join(lines) + "\n")


def curve_stats(histories: list[dict[str, list]], key: str) -> pd.DataFrame:
    """Per epoch (index, 1-based): mean and std over the runs that reached it (non-finite values skipped)."""
    series = {i: pd.Series(h.get(key) or [], dtype=object) for i, h in enumerate(histories)}
    frame = pd.DataFrame(series, dtype=object)  # (epochs, runs), NaN past a run's end
    frame = numbers(frame, list(frame.columns))
    stats = pd.DataFrame({"mean": frame.mean(axis=1), "std": frame.std(axis=1).fillna(0.0)}).dropna(subset=["mean"])
    stats.index += 1
    return stats


def write_curves_png(path: Path, runs: pd.DataFrame, settings: pd.DataFrame, keys: list[str]) -> None:
    from matplotlib import colormaps
    from matplotlib.figure import Figure  # no pyplot: no global backend, no GUI

    fig = Figure(figsize=(15, 4.2), dpi=80)
    axes = fig.subplots(1, len(CURVES))
    setting = settings_of(runs, keys)
    for i, values in enumerate(settings.index[:MAX_CURVES]):
        color = f"C{i}" if len(settings) <= 10 else colormaps["tab20"](i)
        histories = list(runs.loc[setting == values, "history"])
        for ax, key in zip(axes, CURVES):
            stats = curve_stats(histories, key)
            if stats.empty:
                continue
            label = " ".join(f"{k}={v}" for k, v in zip(keys, values)) or "(all runs)"
            ax.plot(stats.index, stats["mean"], color=color, label=label, lw=1.4)
            lo, hi = stats["mean"] - stats["std"], stats["mean"] + stats["std"]
            ax.fill_between(stats.index, lo, hi, color=color, alpha=0.15, lw=0)
    for ax, key in zip(axes, CURVES):
        ax.set(title=key, xlabel="epoch")
        if "loss" in key and any(line.get_ydata().size for line in ax.get_lines()):
            ax.set_yscale("log")  # losses span orders of magnitude (and diverged runs more)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(0.78, 0.5), fontsize=7, frameon=False)
        fig.subplots_adjust(left=0.04, right=0.77, bottom=0.13, top=0.9, wspace=0.25)
    fig.savefig(path)


def write_history_png(path: Path, runs: pd.DataFrame) -> None:
    """val/acc by trial (``ok`` runs as dots, the others as crosses along the bottom) and the best so far."""
    from matplotlib.figure import Figure

    val, trial = ok_val_acc(runs), runs["job"].astype(int)
    fig = Figure(figsize=(7, 4), dpi=80)
    ax = fig.subplots()
    ax.plot(trial[val.notna()], val[val.notna()], "o", color="C0", label="val/acc of a trial")
    ax.step(trial, val.cummax(), where="post", color="C1", label="best so far")
    failed = trial[val.isna()]  # y in axes fractions: along the bottom edge whatever the scale
    ax.plot(failed, [0.03] * len(failed), "x", color="C3", transform=ax.get_xaxis_transform(), label="no val/acc")
    ax.margins(y=0.15)  # room below the lowest trial for the crosses
    ax.set(title="optimisation history", xlabel="trial", ylabel="val/acc")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.savefig(path)


def write_report(sweep_dir: str | Path) -> dict[str, Any]:
    """Read every run under ``sweep_dir``; write summary.csv, report.md, curves.png (and, for an
    Optuna search, optimization_history.png) there.

    Returns the paths written, the number of ``runs``, the runs (``frame``) and ``settings`` as
    DataFrames (best mean val/acc first), the varying ``keys`` and the ``best`` run (or None).
    """
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"no sweep directory {sweep_dir}")
    if not (sweep_dir / "multirun.yaml").is_file():
        if not find_runs(sweep_dir):
            raise FileNotFoundError(f"{sweep_dir} is not a sweep directory (no multirun.yaml, no runs); give a sweep's")
        # what is not a sweep's directory but holds runs: one run's, or a folder of sweeps (multirun/DATE), whose
        # runs would be merged into one report (job numbers and seeds counted twice)
        if (sweep_dir / "result.json").is_file():
            raise ValueError(
                f"{sweep_dir} is a run's directory (it holds result.json), not a sweep's; give the sweep directory "
                f"that holds it ({sweep_dir.parent})"
            )
        sweeps = sorted(p.parent for p in sweep_dir.rglob("multirun.yaml"))
        if sweeps:
            shown = ", ".join(map(str, sweeps[:3])) + (f" and {len(sweeps) - 3} more" if len(sweeps) > 3 else "")
            raise ValueError(
                f"{sweep_dir} holds {len(sweeps)} sweep{'s' if len(sweeps) > 1 else ''} ({shown}), not one; "
                "give one sweep's directory"
            )
    runs, columns = collect(sweep_dir)
    hydra_cfg = (read_yaml(sweep_dir / "multirun.yaml") or {}).get("hydra") or {}
    diagnostics = [d for d in DIAGNOSTIC_COLUMNS if runs[d].notna().any()]
    swept = swept_keys(hydra_cfg)  # a swept key is never "the same in every run", even if the runs show one value
    keys = [k for k in columns if k != "seed" and (k in swept or runs[k].fillna("").nunique() > 1)]
    constant = {k: runs[k].iloc[0] for k in columns if k != "seed" and k not in keys}
    report = {"dir": sweep_dir, "frame": runs, "keys": keys, "constant": constant, "diagnostics": diagnostics}
    optuna = "optuna" in str((hydra_cfg.get("sweeper") or {}).get("_target_"))
    report |= {"settings": summarise(runs, keys, diagnostics), "hydra": hydra_cfg, "optuna": optuna}
    out = {name: sweep_dir / name.replace("_", ".") for name in ("summary_csv", "report_md", "curves_png")}
    runs[[*columns, *RESULT_COLUMNS, *diagnostics]].to_csv(out["summary_csv"], index=False, na_rep="")
    write_report_md(out["report_md"], report)
    write_curves_png(out["curves_png"], runs, report["settings"], keys)
    if optuna:
        out["history_png"] = sweep_dir / "optimization_history.png"
        write_history_png(out["history_png"], runs)
    return {**out, **report, "runs": len(runs), "best": best_run(runs)}


def check_storage(storage: Any) -> None:
    """``hydra.sweeper.storage``: a database keeps an Optuna study, but hydra-optuna-sweeper 1.3 holds optuna below 3,
    and optuna 2's database code fails with SQLAlchemy 2 (an AssertionError in its first query, after it has made the
    file). Refused there, so that no search starts only to fail; in memory (null) it works."""
    if storage is None:
        return
    from importlib.metadata import PackageNotFoundError, version

    try:
        optuna, sqlalchemy = version("optuna"), version("sqlalchemy")
    except PackageNotFoundError:
        return
    if int(optuna.split(".")[0]) < 3 and int(sqlalchemy.split(".")[0]) >= 2:
        raise ConfigError(
            f"hydra.sweeper.storage={storage}: optuna {optuna} (what hydra-optuna-sweeper allows) cannot use a "
            f"database with SQLAlchemy {sqlalchemy}; leave hydra.sweeper.storage=null (the study in memory)"
        )


def check_sweeper(hydra_cfg: DictConfig) -> None:
    """An Optuna search must run a trial or more, asked one or more at a time: with ``n_trials`` < 1
    hydra-optuna-sweeper ends in a traceback ("No trials are completed yet"), with ``n_jobs`` < 1 it divides
    by zero. joblib's and the fork launcher's ``n_jobs`` is a number of jobs at once, or −1 (one per core), −2 (one
    fewer), ...: 0 means nothing (joblib's traceback). Raises :class:`ConfigError`."""
    from nnmodel.validate import at_least, need

    optuna = "optuna" in str(hydra_cfg.sweeper.get("_target_", ""))
    if optuna:
        for key in ("n_trials", "n_jobs"):
            at_least(f"hydra.sweeper.{key}", hydra_cfg.sweeper.get(key), 1)
        check_storage(hydra_cfg.sweeper.get("storage"))
        direction = hydra_cfg.sweeper.get("direction")
        if str(direction).lower() != "maximize":
            raise ConfigError(
                f"hydra.sweeper.direction={direction}: a trial's value is its val/acc, and a failed trial's -inf "
                "(which a search that minimizes would take as its best); leave it maximize"
            )
    for line in sweep_lines(hydra_cfg):
        try:
            (override,) = OverridesParser.create().parse_overrides([line])
        except Exception:
            continue  # Hydra says what it cannot parse
        if override.value_type != ValueType.INTERVAL_SWEEP:
            continue
        key, interval = override.key_or_group, override.value()
        if not optuna:
            raise ConfigError(
                f"{line}: an interval is a range of numbers that only a search draws from; add hparams_search=optuna, "
                f"or give the values to run ({key}=0.1,0.5)"
            )
        low = 0 if "log" in interval.tags else -math.inf
        if not low < interval.start < interval.end:
            what = "0 < low < high (a log scale)" if "log" in interval.tags else "low < high"
            raise ConfigError(f"{line}: an interval(low, high) needs {what}")
    target = str(hydra_cfg.launcher.get("_target_", ""))
    if "joblib" in target or target.endswith(".ForkLauncher"):
        n_jobs = hydra_cfg.launcher.get("n_jobs")
        ok = n_jobs is None or (isinstance(n_jobs, int) and not isinstance(n_jobs, bool) and n_jobs != 0)
        need("hydra.launcher.n_jobs", n_jobs, ok, "a number of jobs at once (1, 2, ...) or -1 (one per core)")


class SweepReport(Callback):
    """Hydra callback (``hydra.callbacks.sweep_report`` in configs/train.yaml): before a ``-m`` sweep, refuse an
    Optuna search of no trials or a launcher of no jobs (:func:`check_sweeper`); after it, write its report into
    ``hydra.sweep.dir``, and say which run was best (or that none succeeded)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global running_sweep
        with exit_on_config_error():
            check_sweeper(config.hydra)
        running_sweep = config

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not report_sweep(Path(str(config.hydra.sweep.dir)), config):
            # none of the runs finished ok (or the report could not be written): the sweep fails as a whole, so that
            # a script or a CI job running it sees so; the line above says why, report.md each run's message
            sys.exit(1)


# The config of the sweep this process runs (SweepReport.on_multirun_start's): what train.py saves as the sweep's
# multirun.yaml when Ctrl-C stops a job that Hydra's basic launcher runs in this process (Optuna's sweeper writes none)
running_sweep: DictConfig | None = None


def report_sweep(sweep_dir: Path, config: DictConfig | None = None) -> bool:
    """The report of the runs in ``sweep_dir``, at a sweep's end or when it stops early (Ctrl-C: the fork launcher,
    train.py for a sweep that runs its jobs in its own process). ``config``: the sweep's, saved as multirun.yaml
    where the sweeper has not (Hydra's basic sweeper writes it, Optuna's not). Whether some run finished ok
    (False too when the report could not be written)."""
    if config is not None and sweep_dir.is_dir() and not (sweep_dir / "multirun.yaml").exists():
        OmegaConf.save(config, sweep_dir / "multirun.yaml")
    try:
        return write_and_tell(sweep_dir)
    except Exception as err:  # the runs are done and saved; a broken report must not hide that
        print(
            f"error: sweep report failed: {type(err).__name__}: {err}; "
            f"retry with `python -m nnmodel.sweep {sweep_dir}`",
            file=sys.stderr,
        )
        return False


def write_and_tell(sweep_dir: str | Path) -> bool:
    """:func:`write_report`, then two lines: where the report is, and the best run (stderr: none). Whether some
    run finished ok."""
    out = write_report(sweep_dir)
    runs = plural(out["runs"], "run")
    print(f"sweep report: {out['report_md']} ({runs}), {out['summary_csv']}, {out['curves_png']}")
    print(best_line(out["frame"]).replace("`", ""), file=sys.stdout if out["best"] is not None else sys.stderr)
    return out["best"] is not None


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m nnmodel.sweep SWEEP_DIR [SWEEP_DIR ...]   (e.g. multirun/2025-01-01/12-00-00-000000)")
        return 0 if argv else 2
    for arg in argv:
        try:
            write_and_tell(arg)
        except (FileNotFoundError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
