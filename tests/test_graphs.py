"""``cuda_graphs=true``: each step's gradients as a recorded CUDA graph (nnmodel.graphs).

The graph itself needs a GPU: its test is skipped on a CPU machine (CI), and ``python bench/gpu.py`` measures
it. What runs everywhere: the function the graph records equals ``manual_backward``'s gradients, the module
trains exactly as without it when the graph is replaced by a CPU stand-in with the same static-buffer
semantics, and a trainer the graph cannot run under is refused in one line.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

import lightning as L
import pytest
import torch

from nnmodel import module as module_mod
from nnmodel.config import compose
from nnmodel.core.backprop import Gradients
from nnmodel.data import TensorBatches
from nnmodel.errors import ConfigError
from nnmodel.graphs import CapturedGradients, GradientFn
from nnmodel.module import NNModule
from nnmodel.validate import check_cuda_graphs

N, BATCH, K = 200, 16, 4  # 13 minibatches an epoch, the last of 8 rows: it runs without the graph


class StandIn:
    """CapturedGradients' contract on a CPU: static outputs that every call overwrites in place, as a replay does
    (so that a caller keeping a reference to last step's values would see this step's)."""

    calls = 0
    recorded: ClassVar[list[int]] = []  # the minibatch size of each recording

    def __init__(self, fn: GradientFn, x: torch.Tensor, y: torch.Tensor) -> None:
        self.fn, self.shape, self.x = fn, x.shape, x
        type(self).recorded.append(len(x))
        self.out = fn(x.clone(), y.clone())

    def fits(self, x: torch.Tensor, y: torch.Tensor) -> bool:
        return x.shape == self.shape

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> Gradients:
        type(self).calls += 1
        new = self.fn(x, y)
        for static, value in zip(
            [self.out.cost, self.out.logits, *self.out.weight_grads, *self.out.bias_grads],
            [new.cost, new.logits, *new.weight_grads, *new.bias_grads],
        ):
            static.copy_(value)
        return dataclasses.replace(self.out, cost=self.out.cost.clone(), logits=self.out.logits.clone())


def fit(backprop: str, cuda_graphs: bool, epochs: int = 2) -> tuple[NNModule, L.Trainer]:
    torch.manual_seed(0)
    x, y = torch.randn(N, 6), torch.randint(0, 3, (N,))
    module = NNModule(6, [5], 3, backprop=backprop, l2=0.1, optimizer={"name": "adam"}, cuda_graphs=cuda_graphs)
    trainer = L.Trainer(
        max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(module, train_dataloaders=TensorBatches(x, y, BATCH, steps_per_execution=K, shuffle=True))
    return module, trainer


@pytest.mark.parametrize("backprop", ["autograd", "manual"])
def test_training_with_the_recorded_gradients_equals_training_without(
    backprop: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    eager, _ = fit(backprop, cuda_graphs=False)
    monkeypatch.setattr(module_mod, "CapturedGradients", StandIn)
    StandIn.calls = 0
    graphed, trainer = fit(backprop, cuda_graphs=True)
    assert trainer.global_step == 26  # every step through Lightning's optimizer
    assert StandIn.calls == 24  # 12 full minibatches an epoch replay; the short last one runs as without
    assert graphed.history == eager.history
    for key, value in eager.state_dict().items():
        assert torch.equal(graphed.state_dict()[key], value), key


def test_a_larger_minibatch_than_the_recorded_one_is_recorded_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(module_mod, "CapturedGradients", StandIn)
    StandIn.recorded = []
    module = NNModule(6, [5], 3, backprop="manual", cuda_graphs=True)
    for m in (8, 16, 16):  # a run resumed at an epoch's short last minibatch, then full ones
        module._gradients(None, torch.randn(m, 6), torch.randint(0, 3, (m,)))
    assert StandIn.recorded == [8, 16]


def test_each_fit_records_its_own_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(module_mod, "CapturedGradients", StandIn)
    StandIn.recorded = []
    x, y = torch.randn(N, 6), torch.randint(0, 3, (N,))
    module = NNModule(6, [5], 3, cuda_graphs=True)
    for epochs in (1, 2):  # the second fit goes on for one more epoch, with memory the first one's graph never saw
        trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
        trainer.fit(module, train_dataloaders=TensorBatches(x, y, BATCH, steps_per_execution=K))
    assert StandIn.recorded == [BATCH, BATCH]


def test_the_recorded_function_gives_manual_backwards_gradients() -> None:
    torch.manual_seed(1)
    module = NNModule(4, [7, 5], 3, activation="tanh", l2=0.3, seed=3).double()
    x, y = torch.randn(9, 4, dtype=torch.float64), torch.randint(0, 3, (9,))
    got = module._autograd_gradients(x, y)
    module.loss(module.net(x), y).backward()
    expected = [p.grad for layer in module.net.layers for p in (layer.weight, layer.bias)]
    assert all(torch.equal(g, e) for g, e in zip([*got.weight_grads, *got.bias_grads], expected[0::2] + expected[1::2]))
    assert torch.equal(got.cost, module.loss(module.net(x), y).detach())
    assert torch.equal(got.logits, module.net(x).detach())
    assert not got.cost.requires_grad and not got.logits.requires_grad


def test_a_cuda_graph_needs_cuda_tensors() -> None:
    with pytest.raises(ValueError, match="a CUDA graph captures CUDA work; the inputs are on cpu"):
        CapturedGradients(lambda x, y: None, torch.zeros(2, 3), torch.zeros(2))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["trainer=cpu"],
            "cuda_graphs=true records the training steps on one CUDA GPU in one process, but the trainer has "
            "accelerator=cpu, devices=1, num_nodes=1, strategy=auto; use trainer=gpu, or cuda_graphs=false",
        ),
        (
            ["trainer=gpu", "trainer.devices=2"],
            "cuda_graphs=true records the training steps on one CUDA GPU in one process, but the trainer has "
            "accelerator=gpu, devices=2, num_nodes=1, strategy=auto; use trainer=gpu, or cuda_graphs=false",
        ),
        (
            ["trainer=ddp"],
            "cuda_graphs=true records the training steps on one CUDA GPU in one process, but the trainer has "
            "accelerator=auto, devices=2, num_nodes=1, strategy=ddp; use trainer=gpu, or cuda_graphs=false",
        ),
        (
            ["trainer=gpu", "trainer.detect_anomaly=true"],
            "cuda_graphs=true: trainer.detect_anomaly=true checks every backward output on the host, which a CUDA "
            "graph cannot record; set one of them to false",
        ),
        (
            ["trainer=gpu", "trainer.precision=16-mixed"],
            "cuda_graphs=true: trainer.precision=16-mixed is not supported (a replay skips Lightning's "
            "mixed-precision backward); leave trainer.precision at its default, or set cuda_graphs=false",
        ),
    ],
)
def test_a_trainer_the_graph_cannot_run_under_is_refused(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_cuda_graphs(compose([*overrides, "cuda_graphs=true"]).trainer)
    assert str(err.value) == message


def test_one_gpu_at_full_precision_is_accepted() -> None:
    check_cuda_graphs(compose(["trainer=gpu", "cuda_graphs=true"]).trainer)  # raises nothing


@pytest.mark.skipif(not torch.cuda.is_available(), reason="a CUDA graph needs a GPU (python bench/gpu.py on one)")
@pytest.mark.parametrize("backprop", ["autograd", "manual"])
def test_on_a_gpu_the_replayed_steps_train_as_the_eager_ones(backprop: str, make_cfg, tmp_path: Path) -> None:
    from nnmodel.training import train

    common = ["trainer=gpu", "trainer.deterministic=true", "trainer.max_epochs=3", f"model.backprop={backprop}"]
    runs = {g: train(make_cfg(*common, f"cuda_graphs={g}", run_dir=tmp_path / str(g))) for g in ("false", "true")}
    weights = {g: torch.load(tmp_path / g / "checkpoints" / "last.ckpt")["state_dict"] for g in runs}
    assert runs["true"]["global_step"] == runs["false"]["global_step"]
    for key, value in weights["false"].items():
        torch.testing.assert_close(weights["true"][key], value, rtol=1e-5, atol=1e-6)


def test_a_checkpoint_trained_with_the_graph_evaluates_anywhere_but_resumes_only_on_a_gpu(make_cfg, tmp_path: Path):
    from nnmodel.training import prepare, train

    train(make_cfg("data=xor", "trainer.max_epochs=1", "test=false", "diagnostics=off", run_dir=tmp_path / "run"))
    ckpt_path = tmp_path / "run" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(ckpt_path, weights_only=True)
    ckpt["nnmodel"]["config"]["cuda_graphs"] = True  # as a trainer=gpu cuda_graphs=true run would have saved it
    torch.save(ckpt, ckpt_path)
    cfg, _, _ = prepare(make_cfg("eval_only=true", f"ckpt_path={ckpt_path}"), [])
    assert cfg.cuda_graphs is True  # kept from the checkpoint, and not in the way: evaluating trains nothing
    with pytest.raises(ConfigError, match=r"^cuda_graphs=true records the training steps on one CUDA GPU"):
        prepare(make_cfg(f"ckpt_path={ckpt_path}"), [])
