"""The results as markdown tables, each figure next to its goal (✓/✗)."""

from __future__ import annotations

from typing import Any

# measure -> (at least, at most): R1 and R2 are ratios (> 1: nnmodel faster), overhead in µs per optimizer step
GOALS: dict[str, tuple[float | None, float | None]] = {
    "R1 784-800-10 b128": (0.95, None),
    "R1 784-100-10 b128": (0.9, None),
    "overhead 784-100-10 b128": (None, 50.0),
    "R2 mnist_like": (1.0, None),
    "R2 digits": (0.67, None),
}


def figure(results: dict[str, Any], goal: str) -> float | None:
    """The measured value a goal is about, or None where it was not measured."""
    part, _, sub = goal.partition(" ")
    if part == "overhead":
        entry = results.get("R1", {}).get(sub)
        return None if entry is None else entry["overhead_us"]
    entry = results.get(part, {}).get(sub)
    return None if entry is None else entry["ratio"]


def goals_met(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for goal, (low, high) in GOALS.items():
        value = figure(results, goal)
        if value is not None:
            met = (low is None or value >= low) and (high is None or value <= high)
            out[goal] = {"value": value, "at_least": low, "at_most": high, "met": met}
    return out


def mark(results: dict[str, Any], goal: str) -> str:
    met = results.get("goals", {}).get(goal)
    if met is None:
        return ""
    bound = f"≥ {met['at_least']:.2f}" if met["at_least"] is not None else f"≤ {met['at_most']:.0f} µs"
    return f"{bound} {'✓' if met['met'] else '✗'}"


def markdown(rows: list[tuple[str, ...]]) -> str:
    """Rows (the first one the header) as a markdown table: first column left-aligned, the rest right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for i, row in enumerate(rows):
        cells = [c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))]
        lines.append("| " + " | ".join(cells) + " |")
        if i == 0:
            lines.append("|" + "|".join("-" * (w + 2) if j == 0 else "-" * (w + 1) + ":" for j, w in enumerate(widths)))
            lines[-1] += "|"
    return "\n".join(lines)


def rates(r: dict[str, Any], ours: str, theirs: str, digits: int = 2) -> tuple[str, ...]:
    return (
        f"{r[f'{ours}_samples_per_s']:,.0f}/s",
        f"{r[f'{theirs}_samples_per_s']:,.0f}/s",
        f"{r['ratio']:.{digits}f}",
        f"{r['ratio_cpu']:.{digits}f}",
    )


def table(results: dict[str, Any]) -> str:
    """One row per measure at the run's thread count: nnmodel's figure, the other side's, the ratios, the goal."""
    rows = [("measure", "nnmodel", "other", "ratio", "ratio (CPU time)", "goal")]
    for net, r in results.get("R1", {}).items():
        label = f"R1 {net} K={r['K']} vs bare PyTorch, {results['threads']} thread(s)"
        rows.append((label, *rates(r, "nnmodel", "bare"), mark(results, f"R1 {net}")))
    for net, r in results.get("R1", {}).items():
        us, cpu = f"{r['overhead_us']:.1f} µs", f"{r['overhead_cpu_us']:.1f} µs"
        label = f"overhead per optimizer step, {net} K={r['K']}"
        rows.append((label, us, "", "", cpu, mark(results, f"overhead {net}")))
    for name, r in results.get("R2", {}).items():
        ours = f"{r['nnmodel_s']:.2f} s, acc {r['nnmodel_acc']:.3f}"
        theirs = f"{r['sklearn_s']:.2f} s, acc {r['sklearn_acc']:.3f}"
        label = f"R2 {name} {r['network']} b{r['batch']}, {r['epochs']} epochs, vs scikit-learn"
        rows.append((label, ours, theirs, f"{r['ratio']:.2f}", f"{r['ratio_cpu']:.2f}", mark(results, f"R2 {name}")))
        bare = f"{r['bare_s']:.2f} s, acc {r['bare_acc']:.3f}"
        label = f"R2 {name}: bare PyTorch loop vs scikit-learn (ceiling)"
        rows.append((label, bare, theirs, f"{r['bare_ratio']:.2f}", "", ""))
    if "R3" in results:
        rows.append(("R3 data path vs torchvision DataLoader", *rates(results["R3"], "nnmodel", "torchvision", 1), ""))
    for net, r in results.get("R4", {}).items():
        rows.append((f"R4 {net} manual vs autograd backprop", *rates(r, "manual", "autograd"), ""))
    return markdown(rows)


def k_sweep_table(results: dict[str, Any]) -> str:
    """The K sweep at 784-100-10 b128: R1 and the overhead per optimizer step, at each thread count."""
    head = ("K (steps_per_execution)", "threads", "train images", "nnmodel", "bare", "R1", "R1 (CPU time)")
    rows = [(*head, "µs/step", "CPU µs/step")]
    for threads, by_k in results.get("K_sweep", {}).items():
        for k, r in by_k.items():
            us = (f"{r['overhead_us']:.1f}", f"{r['overhead_cpu_us']:.1f}")
            rows.append((k, threads, f"{r['train_images']:,}", *rates(r, "nnmodel", "bare", 3), *us))
    return markdown(rows)


def best_k(results: dict[str, Any], default_k: int) -> dict[str, Any]:
    """Per thread count, the K with the highest R1 in the sweep, and how it compares with the default K."""
    out = {}
    for threads, by_k in results.get("K_sweep", {}).items():
        name, best = max(by_k.items(), key=lambda item: item[1]["ratio"])
        default = by_k[f"K={default_k}"]
        out[threads] = {
            "best": name,
            "best_ratio": best["ratio"],
            "default": f"K={default_k}",
            "default_ratio": default["ratio"],
            "best_saves_us_per_step": default["overhead_us"] - best["overhead_us"],
        }
    return out


def overhead_split(results: dict[str, Any], default_k: int) -> dict[str, float] | None:
    """The overhead of 784-100-10 b128 at the default K split into a cost per fit and one per optimizer step.

    R1 (the whole training split) and the K sweep at the run's thread count (a fraction of it) run the
    same epochs on the same validation split, so their overheads, t_nnmodel − t_bare in seconds, differ
    only by the steps: overhead = per_fit + per_step × steps, two equations in two unknowns.
    """
    sweep = results.get("K_sweep", {}).get(f"{results['threads']} thread(s)", {}).get(f"K={default_k}")
    whole = results.get("R1", {}).get("784-100-10 b128")
    if sweep is None or whole is None or sweep["steps"] == whole["steps"]:
        return None
    seconds = [r["overhead_us"] * r["steps"] / 1e6 for r in (whole, sweep)]
    per_step = (seconds[0] - seconds[1]) / (whole["steps"] - sweep["steps"])
    return {"per_fit_s": seconds[0] - per_step * whole["steps"], "per_step_us": per_step * 1e6}
