"""The TensorBoard diagnostics: exact tag names, and that each measure shows what the lecture says it shows."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from nnmodel.config import compose
from nnmodel.data import TensorDataModule
from nnmodel.diagnostics import (
    DiagnosticsCallback,
    add_histogram,
    dead_fraction,
    diagnostics_callbacks,
    mean_cosine,
    misclassified_figure,
    picture_epochs,
    saturated_fraction,
    weight_tiles,
)
from nnmodel.errors import ConfigError
from nnmodel.module import NNModule
from nnmodel.validate import validate_config

ROOT = Path(__file__).resolve().parents[1]
DIAGNOSTIC_PREFIXES = ("grad_norm/", "dead_fraction/", "saturated_fraction/", "distinct_units/", "mean_cosine/")


def config(name: str) -> dict:
    return OmegaConf.to_container(compose([f"diagnostics={name}"]).diagnostics)


def run(
    tmp_path: Path,
    data: str = "digits",
    epochs: int = 2,
    test: bool = True,
    limit_train_batches: int | None = None,
    diagnostics: dict | None = None,
    **model,
) -> EventAccumulator:
    """Fit (and test) a small network with the diagnostics on; return its event files, read back."""
    dm = TensorDataModule(name=data, batch_size=64)
    module = NNModule(dm.n_features, model.pop("hidden", [16]), dm.n_classes, **model)
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=epochs,
        limit_train_batches=limit_train_batches,
        logger=TensorBoardLogger(tmp_path, name="tb", version="", default_hp_metric=False),
        callbacks=diagnostics_callbacks({**config("default"), "every_n_steps": 5, **(diagnostics or {})}, dm),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    trainer.fit(module, datamodule=dm)
    if test:
        trainer.test(module, datamodule=dm, verbose=False)
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance=dict.fromkeys(["scalars", "histograms", "images"], 0))
    acc.Reload()
    return acc


def first(acc: EventAccumulator, tag: str) -> float:
    return acc.Scalars(tag)[0].value


def test_digits_run_writes_every_tag(tmp_path: Path) -> None:
    acc = run(tmp_path, hidden=[16, 8], activation=["relu", "sigmoid"])
    tags = acc.Tags()
    assert {
        "grad_norm/layer_1",
        "grad_norm/layer_2",
        "grad_norm/layer_3",
        "dead_fraction/layer_1",
        "saturated_fraction/layer_2",
        "distinct_units/layer_1",
        "distinct_units/layer_2",
        "mean_cosine/layer_1",
        "mean_cosine/layer_2",
    } <= set(tags["scalars"])
    assert "dead_fraction/layer_2" not in tags["scalars"]  # sigmoid units saturate, they do not die
    assert {f"{kind}/layer_{i}" for kind in ("weights", "biases") for i in (1, 2, 3)} | {
        "activations/layer_1",
        "activations/layer_2",
    } == set(tags["histograms"])
    assert set(tags["images"]) == {"first_layer_weights", "confusion_matrix", "misclassified"}
    assert len(acc.Images("first_layer_weights")) == 2  # once per epoch
    assert [e.step for e in acc.Scalars("grad_norm/layer_1")] == list(range(0, 40, 5))  # 20 steps per epoch
    assert first(acc, "distinct_units/layer_1") == 16  # epsilon_uniform breaks symmetry: all units differ


def test_zero_init_keeps_one_distinct_unit(tmp_path: Path) -> None:
    acc = run(tmp_path, epochs=1, test=False, activation="sigmoid", init="zero")
    assert {e.value for e in acc.Scalars("distinct_units/layer_1")} == {1}  # the lecture's symmetry problem
    assert acc.Scalars("mean_cosine/layer_1")[-1].value == pytest.approx(1.0, abs=1e-5)  # identical rows once moved


@pytest.mark.parametrize(("activation", "vanishes"), [("sigmoid", True), ("relu", False)])
def test_deep_sigmoid_gradients_vanish_and_relu_ones_do_not(activation: str, vanishes: bool, tmp_path: Path) -> None:
    # Same init (Ng's ε = √6/√(s_l + s_(l+1))) for both: at the first step the sigmoid net's
    # ‖∂J/∂W^(1)‖ is ~800× smaller than its last layer's, the relu net's about the same (~1.1×).
    acc = run(
        tmp_path, epochs=1, test=False, limit_train_batches=1, hidden=[32] * 5, activation=activation, epsilon="auto"
    )
    ratio = first(acc, "grad_norm/layer_6") / first(acc, "grad_norm/layer_1")
    assert ratio >= 100 if vanishes else ratio < 10


def test_manual_backprop_logs_the_autograd_gradient_norms(tmp_path: Path) -> None:
    norms = {}
    for mode in ("autograd", "manual"):
        acc = run(tmp_path / mode, epochs=1, test=False, limit_train_batches=6, backprop=mode, activation="tanh")
        norms[mode] = [e.value for e in acc.Scalars("grad_norm/layer_1") + acc.Scalars("grad_norm/layer_2")]
    assert len(norms["manual"]) == 4  # on_before_optimizer_step fires for manual opt.step() too: steps 0 and 5
    assert norms["manual"] == pytest.approx(norms["autograd"], rel=1e-4)


def test_two_feature_data_gets_a_decision_boundary(tmp_path: Path) -> None:
    acc = run(tmp_path, data="circles", epochs=3, hidden=[8], activation="tanh")
    # the last weights at the end of fit, the tested ones after the test: at the same step, so under two tags
    assert set(acc.Tags()["images"]) == {"decision_boundary/last", "decision_boundary/tested", "confusion_matrix"}
    assert len(acc.Images("decision_boundary/last")) == len(acc.Images("decision_boundary/tested")) == 1
    assert "saturated_fraction/layer_1" in acc.Tags()["scalars"]


def test_off_writes_no_diagnostics(tmp_path: Path) -> None:
    dm = TensorDataModule(name="digits")
    assert diagnostics_callbacks(config("off"), dm) == []
    acc = run(tmp_path, epochs=1, test=True, limit_train_batches=5, diagnostics={"enabled": False})
    assert not [t for t in acc.Tags()["scalars"] if t.startswith(DIAGNOSTIC_PREFIXES)]
    assert acc.Tags()["histograms"] == [] and acc.Tags()["images"] == []
    assert "val/acc" in acc.Tags()["scalars"]


def test_default_config_keys_are_the_callback_arguments() -> None:
    dm = TensorDataModule(name="digits")
    (callback,) = diagnostics_callbacks(config("default"), dm)
    assert isinstance(callback, DiagnosticsCallback)
    assert (
        callback.every_n_steps,
        callback.every_n_epochs,
        callback.probe_size,
        callback.max_tiles,
        callback.max_pictures,
    ) == (50, 1, 256, 100, 10)
    # their values are checked where every config value is (nnmodel.validate)
    with pytest.raises(ConfigError, match=r"^diagnostics\.every_n_steps must be an integer >= 1, got 0$"):
        validate_config(compose(["diagnostics.every_n_steps=0"]))
    with pytest.raises(ConfigError, match=r"^diagnostics\.max_pictures must be an integer >= 0, got -1$"):
        validate_config(compose(["diagnostics.max_pictures=-1"]))


@pytest.mark.parametrize(
    ("max_epochs", "every_n_epochs", "max_pictures", "epochs"),
    [
        (40, 1, 10, [4, 8, 12, 16, 20, 24, 28, 32, 36, 40]),  # the default run: 10 of its 40 epochs
        (20, 1, 10, [2, 4, 6, 8, 10, 12, 14, 16, 18, 20]),
        (3, 1, 10, [1, 2, 3]),  # fewer epochs than pictures: every epoch
        (41, 1, 10, [1, 6, 11, 16, 21, 26, 31, 36, 41]),  # counted back from the last epoch
        (40, 5, 10, [5, 10, 15, 20, 25, 30, 35, 40]),  # only epochs that get histograms
        (40, 3, 4, [3, 15, 27, 39]),
        (2, 5, 10, []),  # no epoch reaches every_n_epochs
    ],
)
def test_picture_epochs(max_epochs: int, every_n_epochs: int, max_pictures: int, epochs: list[int]) -> None:
    assert list(picture_epochs(max_epochs, every_n_epochs, max_pictures)) == epochs


def test_picture_epochs_without_a_limit() -> None:
    assert picture_epochs(40, 1, 0) is None  # max_pictures=0: every every_n_epochs
    assert picture_epochs(-1, 1, 10) is None  # trainer.max_steps only: max_epochs is -1


def test_max_pictures_spreads_the_pictures_over_the_run(tmp_path: Path) -> None:
    acc = run(tmp_path, epochs=3, test=False, diagnostics={"max_pictures": 2})
    assert [e.step for e in acc.Images("first_layer_weights")] == [20, 60]  # epochs 1 and 3, 20 steps each
    assert len(acc.Histograms("weights/layer_1")) == 3  # the histograms still every epoch


def test_the_measures_on_hand_made_activations() -> None:
    a = torch.tensor([[0.0, 1.0, 0.0], [0.0, 2.0, 3.0]])  # unit 1 never fires
    assert dead_fraction(a) == pytest.approx(1 / 3)
    assert saturated_fraction(torch.tensor([[0.01, 0.5], [0.99, 0.96]]), "sigmoid") == pytest.approx(3 / 4)
    assert saturated_fraction(torch.tensor([[-0.97, 0.9], [0.5, 0.96]]), "tanh") == pytest.approx(2 / 4)
    assert mean_cosine(torch.tensor([[1.0, 0.0], [2.0, 0.0]])) == pytest.approx(1.0)
    assert mean_cosine(torch.tensor([[1.0, 0.0], [0.0, 3.0], [-1.0, 0.0]])) == pytest.approx(-1 / 3)
    w = torch.randn(50, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    w[3] = 0  # a zero row has cosine 0 with every other row
    cos = torch.nn.functional.normalize(w, dim=1) @ torch.nn.functional.normalize(w, dim=1).t()  # all pairs
    assert mean_cosine(w).item() == pytest.approx(((cos.sum() - cos.diagonal().sum()) / (50 * 49)).item(), abs=1e-12)
    grid = weight_tiles(torch.randn(30, 64), (8, 8), max_tiles=25)  # 5×5 tiles of 24×24 pixels, 1-pixel gaps
    assert grid.shape == (5 * 25 + 1, 5 * 25 + 1) and grid.min() >= 0 and grid.max() <= 1


def test_device_histogram_matches_summary_writers_own(tmp_path: Path) -> None:
    writer = SummaryWriter(str(tmp_path))
    values = torch.randn(512, 128, generator=torch.Generator().manual_seed(0))
    add_histogram(writer, "ours", values, 0, bins=64)
    writer.add_histogram("numpy", values, 0, bins=64)
    add_histogram(writer, "constant", torch.zeros(10), 0)  # zero init: one value, no range to bin over
    writer.close()
    acc = EventAccumulator(str(tmp_path), size_guidance={"histograms": 0})
    acc.Reload()
    ours, numpy, constant = (acc.Histograms(t)[0].histogram_value for t in ("ours", "numpy", "constant"))
    assert ours.bucket == numpy.bucket and (ours.num, ours.min, ours.max) == (numpy.num, numpy.min, numpy.max)
    assert ours.bucket_limit == pytest.approx(numpy.bucket_limit, abs=1e-5)
    assert (ours.sum, ours.sum_squares) == pytest.approx((numpy.sum, numpy.sum_squares), rel=1e-5)
    assert sum(constant.bucket) == 10 and constant.bucket_limit[0] < 0 < constant.bucket_limit[-1]


def test_summary_for_result_json_agrees_with_the_event_files(tmp_path: Path) -> None:
    """result.json's diagnostics: mean first-layer ÷ mean last-layer gradient norm, and the last samples."""
    dm = TensorDataModule(name="digits", batch_size=64)
    module = NNModule(dm.n_features, [16, 8], dm.n_classes, activation=["relu", "sigmoid"])
    (callback,) = diagnostics_callbacks({**config("default"), "every_n_steps": 5}, dm)
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=TensorBoardLogger(tmp_path, name="tb", version="", default_hp_metric=False),
        callbacks=[callback],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=dm)
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    series = {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    first, last = series["grad_norm/layer_1"], series["grad_norm/layer_3"]
    assert len(first) == 4  # steps 0, 5, 10, 15 of 20
    summary = callback.summary()
    assert summary["grad_ratio"] == pytest.approx(sum(first) / sum(last), rel=1e-6)
    assert summary["distinct_units"] == min(series["distinct_units/layer_1"][-1], series["distinct_units/layer_2"][-1])
    assert summary["dead_fraction"] == pytest.approx(series["dead_fraction/layer_1"][-1])
    assert summary["saturated_fraction"] == pytest.approx(series["saturated_fraction/layer_2"][-1])
    assert DiagnosticsCallback(dm).summary() == {}  # no sample yet: nothing to report


def test_misclassified_is_one_image_of_the_wrong_tiles_each_under_its_label() -> None:
    x = torch.arange(5 * 6, dtype=torch.float32).reshape(5, 6) / 29  # five 2×3 "images"
    y, pred = torch.tensor([0, 1, 2, 0, 1]), torch.tensor([0, 2, 2, 1, 0])  # rows 1, 3, 4 are wrong
    fig = misclassified_figure(x, y, pred, (2, 3), ["a", "b", "c"])
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.texts] == ["b→c", "a→b", "b→a"]
    (image,) = ax.get_images()
    grid = image.get_array()
    band = 1  # ceil(0.35 · 2) rows above each 2×3 tile; make_grid pads every tile by 1
    assert grid.shape == (1 + 2 * (band + 2 + 1), 1 + 2 * (3 + 1))  # 2×2 cells for 3 tiles
    for k, row in enumerate([1, 3, 4]):
        top, left = 1 + (k // 2) * (band + 2 + 1) + band, 1 + (k % 2) * (3 + 1)
        assert torch.equal(torch.as_tensor(grid[top : top + 2, left : left + 3]), x[row].reshape(2, 3))
    assert (
        misclassified_figure(x, y, y, (2, 3), ["a", "b", "c"]).texts[0].get_text() == "no misclassified test examples"
    )


def test_a_confusion_matrix_of_many_classes_is_a_heat_map_of_fixed_size() -> None:
    from nnmodel.diagnostics import MAX_WRITTEN_CLASSES, confusion_figure

    few = confusion_figure(torch.tensor([[3, 1, 0], [0, 4, 0], [1, 0, 2]]), ["a", "b", "c"])
    assert sorted(t.get_text() for t in few.axes[0].texts) == sorted("310040102")
    many = confusion_figure(torch.eye(200, dtype=torch.int64), [str(c) for c in range(200)])
    assert len(many.axes[0].texts) == 0 and many.axes[0].get_xlabel() == "predicted (200 classes, in their order)"
    assert tuple(many.get_size_inches()) == (0.45 * MAX_WRITTEN_CLASSES + 1.5, 0.4 * MAX_WRITTEN_CLASSES + 1.5)
