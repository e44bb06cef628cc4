"""Many steps per Lightning call (``steps_per_execution``): nothing about training changes with K."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nnmodel.errors import DivergedError
from nnmodel.training import train


def events(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the run's event files: tag → [(step, value)]."""
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


@pytest.mark.parametrize("backprop", ["autograd", "manual"])
def test_sixteen_steps_per_call_train_exactly_as_one(backprop: str, make_cfg, tmp_path: Path) -> None:
    common = [f"model.backprop={backprop}", "trainer.max_epochs=2", "trainer.log_every_n_steps=5"]
    common += ["diagnostics.every_n_steps=10", "diagnostics.histograms=false", "diagnostics.images=false"]
    runs = {}
    for k in (1, 16):
        out = train(make_cfg(f"steps_per_execution={k}", *common, run_dir=tmp_path / str(k)))
        runs[k] = (out, weights(tmp_path / str(k)), events(tmp_path / str(k)))
    (one, w1, e1), (sixteen, w16, e16) = runs[1], runs[16]
    assert all(torch.equal(w1[key], w16[key]) for key in w1)
    assert (one["global_step"], sixteen["global_step"]) == (40, 40)  # optimizer steps, not Lightning batches
    assert one["history"] == sixteen["history"] and one["test/acc"] == sixteen["test/acc"]
    assert e1 == e16  # every tag: the same steps and the same values
    # step-indexed scalars at optimizer steps: the loss of step i (0-based) every 5 steps, the diagnostics
    # every 10, the epoch metrics after 20 and 40 updates, the learning rate when each epoch starts
    assert [s for s, _ in e16["train/loss_step"]] == [4, 9, 14, 19, 24, 29, 34, 39]
    assert [s for s, _ in e16["grad_norm/layer_1"]] == [0, 10, 20, 30]
    assert [s for s, _ in e16["val/loss"]] == [s for s, _ in e16["train/loss_epoch"]] == [20, 40]
    assert [s for s, _ in e16["lr-Adam"]] == [0, 20]


def test_a_divergence_inside_a_chunk_stops_at_its_own_step(make_cfg, tmp_path: Path) -> None:
    messages = {}
    for k in (1, 16):
        cfg = make_cfg("optimizer=sgd", "optimizer.lr=1e6", f"steps_per_execution={k}", run_dir=tmp_path / str(k))
        with pytest.raises(DivergedError) as err:
            train(cfg)
        messages[k] = str(err.value).replace(str(tmp_path / str(k)), "RUN")
    assert messages[1] == messages[16]
    assert re.match(r"training diverged: the loss became \S+ at step 2 \(epoch 1\)", messages[16]), messages[16]
    result = (tmp_path / "16" / "result.json").read_text()
    assert '"status": "diverged"' in result and '"global_step": 2' in result  # stopped there, mid-chunk


def test_max_steps_counts_optimizer_steps_inside_a_chunk(make_cfg, tmp_path: Path) -> None:
    out = train(make_cfg("steps_per_execution=16", "trainer.max_steps=7", "test=false", run_dir=tmp_path))
    assert out["global_step"] == 7
    assert weights(tmp_path) is not None
