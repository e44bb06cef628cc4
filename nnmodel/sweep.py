"""The report of a sweep: what ``python train.py -m ...`` found, in one table and one figure.

After the last run of a sweep, :class:`SweepReport` (a Hydra callback) reads every run directory
under ``hydra.sweep.dir`` and writes there:

    summary.csv   one row per run: its overrides, seed, status, final metrics, diagnostics
    report.md     one row per setting (the overrides except ``seed``), mean ± std over the seeds,
                  best mean val/acc first
    curves.png    val/acc, val/loss and train/loss_epoch per epoch, one line per setting
                  (mean over seeds, with a ±std band)

The diagnostic columns come from the run's ``tb/`` event files (``nnmodel.diagnostics``) and are
left out when no run has them:

    grad_ratio          mean ‖∂J/∂W^(1)‖ ÷ mean ‖∂J/∂W^(L)‖ over the samples: ≪ 1 = vanishing gradients
    distinct_units      the fewest distinct units in any hidden layer, at the last sample: 1 = symmetry
    dead_fraction       relu/step units never on, at the last sample, mean over the hidden layers
    saturated_fraction  sigmoid/tanh activations near an asymptote, at the last sample, mean over the hidden layers

On an existing sweep directory: ``python -m nnmodel.sweep multirun/2025-01-01/12-00-00-000000``.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

RESULT_COLUMNS = ("status", "epochs", "val/acc", "val/loss", "test/acc", "seconds")
DIAGNOSTIC_COLUMNS = ("grad_ratio", "distinct_units", "dead_fraction", "saturated_fraction")
METRICS = ("val/acc", "test/acc", "val/loss")  # mean ± std in report.md
CURVES = ("val/acc", "val/loss", "train/loss_epoch")  # the subplots of curves.png
STATUSES = ("ok", "diverged", "failed")


# ----------------------------------------------------------------------------- one run


def read_overrides(run_dir: Path) -> dict[str, str]:
    """The run's task overrides as ``key → value`` (``+``/``++``/``~`` dropped, ``hydra.*`` left out)."""
    path = run_dir / ".hydra" / "overrides.yaml"
    lines = yaml.safe_load(path.read_text()) if path.is_file() else None
    out: dict[str, str] = {}
    for line in lines or []:
        key, _, value = str(line).partition("=")
        key = key.lstrip("+~")
        if key != "hydra" and not key.startswith("hydra."):
            out[key] = value
    return out


def read_seed(run_dir: Path) -> str:
    """The seed from the run's composed config, for sweeps that do not override it."""
    path = run_dir / ".hydra" / "config.yaml"
    cfg = yaml.safe_load(path.read_text()) if path.is_file() else None
    seed = cfg.get("seed") if isinstance(cfg, dict) else None
    return "" if seed is None else str(seed)


def read_result(run_dir: Path) -> dict[str, Any]:
    """``result.json``; a run that left none (killed, or crashed before writing it) counts as failed."""
    path = run_dir / "result.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        return {"status": "failed", "message": f"no readable result.json: {err}"}


def read_scalars(tb_dir: Path, prefixes: Sequence[str]) -> dict[str, list[tuple[int, float]]]:
    """All scalars of ``tb_dir``'s event files whose tag starts with one of ``prefixes``: tag → [(step, value)]."""
    if not tb_dir.is_dir():
        return {}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    guidance = {"scalars": 0, "histograms": 1, "images": 1, "tensors": 1, "audio": 1, "compressedHistograms": 1}
    out: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(tb_dir.glob("events.out.tfevents.*")):  # one accumulator per file: no cross-file purging
        acc = EventAccumulator(str(path), size_guidance=guidance)
        try:
            acc.Reload()
        except Exception:  # a truncated file from a killed run: use what the others hold
            continue
        for tag in acc.Tags().get("scalars", []):
            if tag.startswith(tuple(prefixes)):
                out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    for events in out.values():
        events.sort()
    return out


def _layers(scalars: dict[str, list[tuple[int, float]]], name: str) -> dict[int, list[tuple[int, float]]]:
    """``name/layer_{i}`` series by i."""
    prefix = f"{name}/layer_"
    return {int(tag[len(prefix) :]): v for tag, v in scalars.items() if tag.startswith(prefix) and v}


def read_diagnostics(tb_dir: Path) -> dict[str, float]:
    """The :data:`DIAGNOSTIC_COLUMNS` this run's TensorBoard files allow; {} when it has none."""
    scalars = read_scalars(tb_dir, [f"{n}/" for n in ("grad_norm", *DIAGNOSTIC_COLUMNS[1:])])
    out: dict[str, float] = {}
    grads = _layers(scalars, "grad_norm")
    if grads:
        first = statistics.fmean(v for _, v in grads[min(grads)])
        last = statistics.fmean(v for _, v in grads[max(grads)])  # L: the output layer
        if last > 0 and math.isfinite(first) and math.isfinite(last):
            out["grad_ratio"] = first / last
    if units := _layers(scalars, "distinct_units"):
        out["distinct_units"] = min(series[-1][1] for series in units.values())
    for name in ("dead_fraction", "saturated_fraction"):
        if layers := _layers(scalars, name):
            out[name] = statistics.fmean(series[-1][1] for series in layers.values())
    return out


def find_runs(sweep_dir: Path) -> list[Path]:
    """The run directories under ``sweep_dir`` (those holding ``.hydra/``), in job order."""
    runs = {p.parent.parent for p in sweep_dir.rglob(".hydra/overrides.yaml")}
    runs |= {p.parent for p in sweep_dir.rglob("result.json")}

    def order(p: Path) -> tuple:
        rel = p.relative_to(sweep_dir).parts
        return tuple((0, int(s), "") if s.isdigit() else (1, 0, s) for s in rel)

    return sorted(runs, key=order)


# ----------------------------------------------------------------------------- the sweep


def collect(sweep_dir: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """One row per run: (override columns, rows). A row also keeps its ``history`` (not written to CSV)."""
    rows: list[dict[str, Any]] = []
    keys: dict[str, None] = {}  # ordered set: the override columns, in order of first appearance
    for run_dir in find_runs(sweep_dir):
        overrides = read_overrides(run_dir)
        keys |= dict.fromkeys(overrides)
        result = read_result(run_dir)
        status = result.get("status")
        row: dict[str, Any] = dict(overrides)
        row.setdefault("seed", read_seed(run_dir))
        row |= {k: result.get(k) for k in RESULT_COLUMNS}
        row["status"] = status if status in STATUSES else "failed"
        row |= read_diagnostics(run_dir / "tb")
        row["run_dir"] = str(run_dir)
        row["history"] = result.get("history") or {}
        rows.append(row)
    columns = list(keys)
    if "seed" not in keys:
        columns.append("seed")
    return columns, rows


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) else None


def _mean_std(values: list[float]) -> tuple[float, float] | None:
    if not values:
        return None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(rows: list[dict[str, Any]], keys: list[str]) -> list[dict[str, Any]]:
    """Group runs by the values of ``keys``: per setting ``n``, the status counts, mean ± std of
    :data:`METRICS` over its ``ok`` runs and the mean of each diagnostic. Best mean val/acc first."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(k, "") for k in keys), []).append(row)
    settings = []
    for values, runs in groups.items():
        ok = [r for r in runs if r["status"] == "ok"]
        s: dict[str, Any] = {"setting": dict(zip(keys, values)), "n": len(runs), "runs": runs}
        s |= {status: sum(r["status"] == status for r in runs) for status in STATUSES}
        for metric in METRICS:
            s[metric] = _mean_std([x for r in ok if (x := _number(r.get(metric))) is not None])
        for diag in DIAGNOSTIC_COLUMNS:
            found = [x for r in runs if (x := _number(r.get(diag))) is not None]
            s[diag] = statistics.fmean(found) if found else None
        settings.append(s)
    # stable: equal (or missing) means keep the sweep's order
    settings.sort(key=lambda s: -s["val/acc"][0] if s["val/acc"] else math.inf)
    return settings


def _csv_value(v: Any) -> str:
    return "" if v is None else str(v)


def write_summary_csv(path: Path, columns: list[str], rows: list[dict[str, Any]], diagnostics: list[str]) -> None:
    header = [*columns, *RESULT_COLUMNS, *diagnostics]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for row in rows:
            writer.writerow([_csv_value(row.get(c)) for c in header])


def sweep_command(sweep_dir: Path) -> tuple[list[str], dict[str, str]]:
    """The sweep's command-line overrides and its ``hydra.sweeper.params``, from ``multirun.yaml``."""
    path = sweep_dir / "multirun.yaml"
    cfg = yaml.safe_load(path.read_text()) if path.is_file() else None
    hydra_cfg = (cfg or {}).get("hydra") or {}
    task = list(((hydra_cfg.get("overrides") or {}).get("task")) or [])
    params = (hydra_cfg.get("sweeper") or {}).get("params") or {}
    return task, {str(k): str(v) for k, v in params.items()}


def _fmt_mean_std(ms: tuple[float, float] | None) -> str:
    return "—" if ms is None else f"{ms[0]:.4f} ± {ms[1]:.4f}"


def _fmt_diag(v: float | None) -> str:
    return "—" if v is None else f"{v:.3g}"


def setting_label(setting: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in setting.items()) or "(all runs)"


def write_report_md(
    path: Path,
    sweep_dir: Path,
    varying: list[str],
    constant: dict[str, str],
    settings: list[dict[str, Any]],
    diagnostics: list[str],
    n_runs: int,
) -> None:
    task, params = sweep_command(sweep_dir)
    lines = [
        f"# Sweep report: `{sweep_dir}`",
        "",
        f"- command: `python train.py -m {' '.join(task)}`" if task else "- command: (no multirun.yaml found)",
    ]
    if params:
        lines.append(
            "- swept by the config (`hydra.sweeper.params`): " + ", ".join(f"`{k}={v}`" for k, v in params.items())
        )
    if constant:
        lines.append("- the same in every run: " + ", ".join(f"`{k}={v}`" for k, v in constant.items()))
    lines += [
        f"- {n_runs} runs in {len(settings)} settings; mean ± std over each setting's `ok` runs (seeds), "
        "best mean val/acc first",
        "- full per-run table: [summary.csv](summary.csv); curves: [curves.png](curves.png)",
        "",
        "![curves](curves.png)",
        "",
    ]
    header = [*varying, "n", "val/acc", "test/acc", "val/loss", "diverged", "failed", *diagnostics]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---" if i < len(varying) else "---:" for i in range(len(header))) + "|")
    for s in settings:
        cells = [f"`{s['setting'][k]}`" for k in varying]
        cells += [str(s["n"]), *(_fmt_mean_std(s[m]) for m in METRICS), str(s["diverged"]), str(s["failed"])]
        cells += [_fmt_diag(s[d]) for d in diagnostics]
        lines.append("| " + " | ".join(cells) + " |")
    path.write_text("\n".join(lines) + "\n")


def _curve_stats(runs: list[dict[str, Any]], key: str) -> tuple[list[int], list[float], list[float]]:
    """Epoch numbers (1-based), mean and std over the runs that reached each epoch (non-finite values skipped)."""
    series = [[_number(v) for v in (r["history"].get(key) or [])] for r in runs]
    epochs, means, stds = [], [], []
    for e in range(max((len(s) for s in series), default=0)):
        values = [s[e] for s in series if e < len(s) and s[e] is not None]
        if values:
            m, sd = _mean_std(values)
            epochs.append(e + 1)
            means.append(m)
            stds.append(sd)
    return epochs, means, stds


def write_curves_png(path: Path, settings: list[dict[str, Any]], varying: list[str]) -> None:
    from matplotlib.figure import Figure  # no pyplot: no global backend, no GUI

    fig = Figure(figsize=(15, 4.2), dpi=80)
    axes = fig.subplots(1, len(CURVES))
    if len(settings) <= 10:
        colors = [f"C{i}" for i in range(10)]
    else:
        from matplotlib import colormaps

        colors = [colormaps["tab20"](i) for i in range(20)]
    for i, s in enumerate(settings):
        label = setting_label({k: s["setting"][k] for k in varying})
        style = "-" if i < len(colors) else "--"
        for ax, key in zip(axes, CURVES):
            epochs, means, stds = _curve_stats(s["runs"], key)
            if not epochs:
                continue
            color = colors[i % len(colors)]
            ax.plot(epochs, means, style, color=color, label=label, lw=1.4)
            lo = [m - sd for m, sd in zip(means, stds)]
            hi = [m + sd for m, sd in zip(means, stds)]
            ax.fill_between(epochs, lo, hi, color=color, alpha=0.15, lw=0)
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


def write_report(sweep_dir: str | Path) -> dict[str, Any]:
    """Read every run under ``sweep_dir``; write summary.csv, report.md and curves.png there.

    Returns the paths written, the number of runs and the settings (best mean val/acc first).
    """
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"no sweep directory {sweep_dir}")
    columns, rows = collect(sweep_dir)
    diagnostics = [d for d in DIAGNOSTIC_COLUMNS if any(d in r for r in rows)]
    keys = [k for k in columns if k != "seed"]
    varying = [k for k in keys if len({r.get(k, "") for r in rows}) > 1]
    constant = {k: rows[0].get(k, "") for k in keys if k not in varying}
    settings = summarise(rows, varying)
    out = {
        "summary_csv": sweep_dir / "summary.csv",
        "report_md": sweep_dir / "report.md",
        "curves_png": sweep_dir / "curves.png",
    }
    write_summary_csv(out["summary_csv"], columns, rows, diagnostics)
    write_report_md(out["report_md"], sweep_dir, varying, constant, settings, diagnostics, len(rows))
    write_curves_png(out["curves_png"], settings, varying)
    return {**out, "runs": len(rows), "settings": settings}


class SweepReport(Callback):
    """Hydra callback: after a ``-m`` sweep, write its report into ``hydra.sweep.dir``.

    Enable it in ``configs/train.yaml``::

        hydra:
          callbacks:
            sweep_report:
              _target_: nnmodel.sweep.SweepReport
    """

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:
            out = write_report(sweep_dir)
        except Exception as err:  # the runs are done and saved; a broken report must not hide that
            print(
                f"error: sweep report failed: {type(err).__name__}: {err}; "
                f"retry with `python -m nnmodel.sweep {sweep_dir}`",
                file=sys.stderr,
            )
            return
        print(f"sweep report: {out['report_md']} ({out['runs']} runs), {out['summary_csv']}, {out['curves_png']}")


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m nnmodel.sweep SWEEP_DIR [SWEEP_DIR ...]   (e.g. multirun/2025-01-01/12-00-00-000000)")
        return 0 if argv else 2
    for arg in argv:
        try:
            out = write_report(arg)
        except FileNotFoundError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        best = out["settings"][0] if out["settings"] else None
        print(f"{out['report_md']}: {out['runs']} runs", end="")
        if best and best["val/acc"]:
            print(f"; best: {setting_label(best['setting'])} (val/acc {_fmt_mean_std(best['val/acc'])})", end="")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
