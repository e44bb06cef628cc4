"""Optimizer paths on 2-D test surfaces, as in Ruder's figures (after Alec Radford's animations).

Each optimizer of :mod:`nnmodel.optim` moves one 2-parameter tensor θ = (x, y) downhill on a
surface z = f(x, y); we record θ after every step and draw the paths over the contours:

    beale       (1.5 − x + xy)² + (2.25 − x + xy²)² + (2.625 − x + xy³)²   min 0 at (3, 0.5)
    saddle      x² − y²                                                     saddle at (0, 0)
    rosenbrock  (1 − x)² + 100 (y − x²)²                                    min 0 at (1, 1)

    python -m nnmodel.paths --surface all --steps 300 --out outputs/paths
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from nnmodel.errors import unknown
from nnmodel.optim import OPTIMIZERS, build_optimizer, spec

if TYPE_CHECKING:  # matplotlib is imported only when drawing
    from matplotlib.axes import Axes


def beale(p: torch.Tensor) -> torch.Tensor:
    """Beale's function; ``p`` is (2, ...) so one call evaluates a whole grid."""
    x, y = p[0], p[1]
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2


def saddle(p: torch.Tensor) -> torch.Tensor:
    """z = x² − y²: downhill in y everywhere, so only the gradient's y part can leave the ridge y = 0."""
    x, y = p[0], p[1]
    return x**2 - y**2


def rosenbrock(p: torch.Tensor) -> torch.Tensor:
    """Rosenbrock's banana valley (a = 1, b = 100)."""
    x, y = p[0], p[1]
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


@dataclass(frozen=True)
class Surface:
    """A test surface with the start point, plot window and learning rates that make a good picture."""

    f: Callable[[torch.Tensor], torch.Tensor]
    start: tuple[float, float]
    target: tuple[float, float]  # the minimum (or the saddle point), marked on the plot
    target_label: str
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    lrs: dict[str, float]  # per optimizer; one missing uses build_optimizer's default
    log_levels: bool = True  # contours log-spaced in f − min f (False for the saddle, which has no min)


def _adam_family(lr: float) -> dict[str, float]:
    """Adam's lr for its variants too (adamax twice it: Kingma & Ba's 0.002 against Adam's 0.001)."""
    return {"adam": lr, "nadam": lr, "amsgrad": lr, "adamw": lr, "adamax": 2 * lr}


# Learning rates are per surface and optimizer, picked for the picture. Adadelta's lr is a factor on
# its own step (1.0 is Ruder's); its steps start at about √ε ≈ 1e-3, so it gets 5-10 where the way is long.
SURFACES: dict[str, Surface] = {
    # Radford's start, in the window where the paths are; sgd diverges above lr 0.02 and momentum,
    # nag above 0.005 (Beale's gradient reaches the thousands), while adaptive methods step by ~lr.
    "beale": Surface(
        f=beale,
        start=(1.0, 1.5),
        target=(3.0, 0.5),
        target_label="minimum (3, 0.5)",
        xlim=(-1.0, 4.5),
        ylim=(-2.5, 2.5),
        lrs=dict(sgd=0.01, momentum=0.005, nag=0.005, adagrad=0.5, adadelta=5.0, rmsprop=0.01) | _adam_family(0.1),
    ),
    # On the ridge, a hair off the axis: ∂z/∂y = −2y is tiny there, so SGD's y grows only as
    # (1 + 2η)^t and it lingers at the saddle; methods that divide by √E[g²] take full-size steps in y.
    "saddle": Surface(
        f=saddle,
        start=(1.0, 1e-3),
        target=(0.0, 0.0),
        target_label="saddle point (0, 0)",
        xlim=(-1.5, 1.5),
        ylim=(-1.5, 1.5),
        lrs=dict(sgd=0.01, momentum=0.01, nag=0.01, adagrad=0.1, adadelta=1.0, rmsprop=0.01) | _adam_family(0.01),
        log_levels=False,
    ),
    # On the steep far wall of the banana valley; the long curved valley floor is where methods differ.
    "rosenbrock": Surface(
        f=rosenbrock,
        start=(-1.5, 2.0),
        target=(1.0, 1.0),
        target_label="minimum (1, 1)",
        xlim=(-2.0, 2.0),
        ylim=(-1.0, 3.0),
        lrs=dict(sgd=0.001, momentum=0.001, nag=0.001, adagrad=0.3, adadelta=10.0, rmsprop=0.02) | _adam_family(0.1),
    ),
}


def get_surface(name: str) -> Surface:
    """``SURFACES[name]``, or a one-line ValueError naming the choices."""
    if name not in SURFACES:
        raise unknown("surface", name, SURFACES)
    return SURFACES[name]


def run_paths(
    surface: str,
    optimizers: list[str] | None = None,
    steps: int = 300,
    lrs: dict[str, float] | None = None,
) -> dict[str, torch.Tensor]:
    """Each optimizer's path θ_0, θ_1, ..., θ_steps on ``surface``, shape (steps + 1, 2), float64.

    ``lrs`` overrides the surface's learning rates. A path that reaches a non-finite θ (an
    optimizer diverging) stops at its last finite point, so it has fewer rows.
    """
    s = get_surface(surface)
    names = list(OPTIMIZERS) if optimizers is None else optimizers
    lrs = {**s.lrs, **(lrs or {})}
    paths = {}
    for name in names:
        theta = torch.tensor(s.start, dtype=torch.float64, requires_grad=True)  # (2,)
        opt = build_optimizer(name, [theta], **({"lr": lrs[name]} if name in lrs else {}))
        rows = [theta.detach().clone()]
        for _ in range(steps):
            opt.zero_grad()
            s.f(theta).backward()
            opt.step()
            if not torch.isfinite(theta).all():
                break
            rows.append(theta.detach().clone())
        paths[name] = torch.stack(rows)  # (≤ steps + 1, 2)
    return paths


_COLORS = [f"C{i}" for i in range(10)] + ["k"]  # tab10, then black: 11 distinct colours


def _colors(names: list[str]) -> dict[str, tuple[str, str]]:
    """(colour, linestyle) per optimizer; from the 9th on dashed, so that a path drawn over a
    near-identical earlier one (amsgrad over adam) lets it show through."""
    return {n: (_COLORS[i % len(_COLORS)], "-" if i < 8 else "--") for i, n in enumerate(names)}


_CONTOUR = {"cmap": "viridis", "alpha": 0.45, "linewidths": 0.7}  # faded, so the paths stand out


def _background(surface: str, ax: Axes, antialiased: bool = True) -> None:
    import matplotlib.colors as mcolors
    import numpy as np

    s = get_surface(surface)
    xs = torch.linspace(*s.xlim, 300, dtype=torch.float64)
    ys = torch.linspace(*s.ylim, 300, dtype=torch.float64)
    X, Y = torch.meshgrid(xs, ys, indexing="xy")  # (300, 300) each
    Z = s.f(torch.stack([X, Y])).numpy()  # (300, 300)
    if s.log_levels:
        Z = Z - Z.min() + 1e-3  # log levels need z > 0
        levels = np.logspace(math.log10(Z.min()) + 1, math.log10(Z.max()), 25)
        ax.contour(X, Y, Z, levels=levels, norm=mcolors.LogNorm(), antialiased=antialiased, **_CONTOUR)
    else:
        ax.contour(X, Y, Z, levels=25, antialiased=antialiased, **_CONTOUR)
    ax.plot(*s.target, "k*", markersize=14, label=s.target_label)
    ax.plot(*s.start, "ko", markersize=5, fillstyle="none", label="start")
    ax.set_xlim(*s.xlim)
    ax.set_ylim(*s.ylim)
    ax.set_xlabel("x")
    ax.set_ylabel("y")


def _label(name: str, path: torch.Tensor, steps: int) -> str:
    return name if len(path) == steps + 1 else f"{name} (diverged at step {len(path)})"


def plot_paths(
    surface: str,
    paths: dict[str, torch.Tensor],
    out_dir: str | Path,
    gif: bool = True,
    logdir: str | Path | None = None,
    frames: int = 60,
) -> list[Path]:
    """Write ``<out_dir>/<surface>.png`` (and ``.gif``, ≤ ``frames`` frames); log the PNG to TensorBoard.

    The picture goes to TensorBoard under the tag ``paths/<surface>`` when ``logdir`` is given.
    Returns the files written.
    """
    from matplotlib.animation import PillowWriter
    from matplotlib.figure import Figure  # not pyplot: no global backend switch, nothing to close

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    steps = max(len(p) for p in paths.values()) - 1
    style = _colors(list(paths))
    written = []

    fig = Figure(figsize=(8.5, 6), layout="constrained")
    ax = fig.add_subplot()
    _background(surface, ax)
    for name, path in paths.items():
        color, ls = style[name]
        ax.plot(path[:, 0], path[:, 1], color=color, ls=ls, lw=1.8, label=_label(name, path, steps))
        ax.plot(*path[-1], "o", color=color, markersize=5)
    ax.set_title(f"{surface}: {steps} steps from {get_surface(surface).start}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9)
    png = out_dir / f"{surface}.png"
    fig.savefig(png, dpi=100)
    written.append(png)
    if logdir is not None:
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(str(logdir)) as writer:
            writer.add_figure(f"paths/{surface}", fig, close=False)

    if gif:
        fig = Figure(figsize=(6.4, 4.6), layout="constrained")
        ax = fig.add_subplot()
        _background(surface, ax, antialiased=False)  # fewer colours: the GIF shrinks from 1.8 MB to 0.4 MB
        lines, heads = {}, {}
        for name in paths:
            color, ls = style[name]
            (lines[name],) = ax.plot([], [], color=color, ls=ls, lw=1.5, label=name)
            (heads[name],) = ax.plot([], [], "o", color=color, markersize=5)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
        title = ax.set_title(f"{surface}: step {steps}")  # the longest text, before the layout
        ticks = sorted({round(i * steps / (frames - 1)) for i in range(frames)})  # ≤ frames steps to show

        def draw(t: int) -> None:
            for name, path in paths.items():
                shown = path[: t + 1]  # a diverged path stops growing
                lines[name].set_data(shown[:, 0], shown[:, 1])
                heads[name].set_data(shown[-1:, 0], shown[-1:, 1])
            title.set_text(f"{surface}: step {t}")

        gif_path = out_dir / f"{surface}.gif"
        fig.draw_without_rendering()
        fig.set_layout_engine("none")  # lay out once: re-solving it per frame doubled the time
        writer = PillowWriter(fps=12)
        with writer.saving(fig, str(gif_path), dpi=70):
            for t in ticks:
                draw(t)
                writer.grab_frame()  # one render per frame (FuncAnimation.save renders twice)
        written.append(gif_path)
    return written


def main(argv: list[str] | None = None) -> int:
    """The CLI; returns the exit status (2 for a bad surface or optimizer name)."""
    parser = argparse.ArgumentParser(
        prog="python -m nnmodel.paths", description="Draw optimizer paths on 2-D test surfaces."
    )
    parser.add_argument("--surface", default="all", help=f"{' | '.join(SURFACES)} | all (default: all)")
    parser.add_argument("--optimizers", default=None, help="comma list (default: all registered)")
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps per path (default: 300)")
    parser.add_argument("--out", default="outputs/paths", help="folder for the PNG and GIF files")
    parser.add_argument("--no-gif", action="store_true", help="write only the PNG files")
    parser.add_argument("--logdir", default=None, help="TensorBoard log folder (default: <out>/tb)")
    args = parser.parse_args(argv)

    try:
        surfaces = list(SURFACES) if args.surface == "all" else [args.surface]
        for surface in surfaces:
            get_surface(surface)
        optimizers = None
        if args.optimizers:
            optimizers = [o.strip() for o in args.optimizers.split(",") if o.strip()]
            for name in optimizers:
                spec(name)  # an unknown name: one line with the choices
        if args.steps < 1:
            raise ValueError(f"--steps must be >= 1, got {args.steps}")
        for flag, folder in (("--out", args.out), ("--logdir", args.logdir)):
            try:  # made now, so that a file in the way is one line before any path is drawn
                if folder is not None:
                    Path(folder).mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise ValueError(f"{flag}: cannot make the folder '{folder}' ({err.strerror}); give another") from None
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    logdir = Path(args.logdir) if args.logdir else Path(args.out) / "tb"
    for surface in surfaces:
        paths = run_paths(surface, optimizers, args.steps)
        for path in plot_paths(surface, paths, args.out, gif=not args.no_gif, logdir=logdir):
            print(f"wrote {path}")
    print(f"TensorBoard: tensorboard --logdir {logdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
