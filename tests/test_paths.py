"""nnmodel.paths: optimizer paths on 2-D surfaces, their pictures and the CLI."""

import subprocess
import sys

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nnmodel.paths import SURFACES, main, plot_paths, run_paths

ADAPTIVE = ["adagrad", "adadelta", "rmsprop", "adam", "adamax", "nadam", "amsgrad", "adamw"]


def test_paths_start_at_the_surface_start_and_have_steps_plus_one_rows():
    paths = run_paths("beale", ["sgd", "adam"], steps=7)
    for path in paths.values():
        assert path.shape == (8, 2)
        assert path[0].tolist() == list(SURFACES["beale"].start)


def test_on_the_saddle_every_adaptive_method_escapes_while_sgd_lingers():
    """From (1, 1e-3) on z = x² − y², SGD's y grows only as (1 + 2η)^t; dividing by √E[g²] makes the
    adaptive methods' first steps in y about η, whatever the size of the gradient."""
    steps = 100
    paths = run_paths("saddle", ["sgd", *ADAPTIVE], steps=steps)
    start = paths["sgd"][0]
    sgd = paths.pop("sgd")[steps]
    assert abs(sgd[1]) < 0.01  # still on the ridge, next to the saddle point
    for name, path in paths.items():
        assert (path[steps] - start).norm() > (sgd - start).norm(), name
        assert abs(path[steps, 1]) > 0.5, name  # off the ridge, downhill in y


@pytest.mark.parametrize("surface", ["beale", "rosenbrock"])
def test_adam_path_is_finite_and_ends_closer_to_the_minimum(surface):
    s = SURFACES[surface]
    path = run_paths(surface, ["adam"], steps=300)["adam"]
    target = torch.tensor(s.target, dtype=torch.float64)
    assert path.shape == (301, 2) and torch.isfinite(path).all()
    assert (path[-1] - target).norm() < 0.5 * (path[0] - target).norm()


def test_a_diverging_path_stops_at_its_last_finite_point_and_still_plots(tmp_path):
    paths = run_paths("beale", ["sgd", "adam"], steps=50, lrs={"sgd": 0.5})
    assert len(paths["sgd"]) < 51 and torch.isfinite(paths["sgd"]).all()
    assert len(paths["adam"]) == 51
    written = plot_paths("beale", paths, tmp_path, gif=True, frames=5)
    assert [p.name for p in written] == ["beale.png", "beale.gif"]


def test_cli_writes_png_gif_and_tensorboard_event(tmp_path, capsys):
    out = tmp_path / "paths"
    assert main(["--surface", "saddle", "--steps", "10", "--optimizers", "sgd,adam", "--out", str(out)]) == 0
    png, gif = out / "saddle.png", out / "saddle.gif"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert gif.read_bytes()[:6] == b"GIF89a"
    events = EventAccumulator(str(out / "tb"))
    events.Reload()
    assert events.Tags()["images"] == ["paths/saddle"]
    printed = capsys.readouterr().out
    assert f"wrote {png}" in printed and f"tensorboard --logdir {out / 'tb'}" in printed


def test_cli_no_gif_and_own_logdir(tmp_path):
    assert (
        main(
            [
                "--surface",
                "beale",
                "--steps",
                "5",
                "--optimizers",
                "adam",
                "--out",
                str(tmp_path),
                "--no-gif",
                "--logdir",
                str(tmp_path / "logs"),
            ]
        )
        == 0
    )
    assert (tmp_path / "beale.png").exists() and not (tmp_path / "beale.gif").exists()
    assert list((tmp_path / "logs").glob("events.out.tfevents.*"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--surface", "beal"],
            "error: unknown surface 'beal'; did you mean 'beale'? choose one of: beale, rosenbrock, saddle",
        ),
        (["--optimizers", "sgd,adamm"], "error: unknown optimizer 'adamm'; did you mean 'adam'?"),
    ],
)
def test_cli_bad_name_is_one_line_and_exit_2(args, message, capsys, tmp_path):
    assert main([*args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1
    assert not list(tmp_path.iterdir())  # failed before writing anything


def test_cli_output_folder_that_cannot_be_made_is_one_line(capsys, tmp_path):
    (tmp_path / "afile").write_text("mine")
    for out, why in (("afile", "File exists"), ("afile/x", "Not a directory")):
        assert main(["--surface", "saddle", "--steps", "3", "--out", str(tmp_path / out)]) == 2
        assert (
            capsys.readouterr().err
            == f"error: --out: cannot make the folder '{tmp_path / out}' ({why}); give another\n"
        )
    assert [p.name for p in tmp_path.iterdir()] == ["afile"] and (tmp_path / "afile").read_text() == "mine"


def test_cli_module_entry_point_exits_2_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "nnmodel.paths", "--surface", "bowl", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: unknown surface 'bowl'") and "Traceback" not in result.stderr
