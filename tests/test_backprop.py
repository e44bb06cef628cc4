"""The hand-written backprop equals torch.autograd, in float64, on every combination the lecture uses."""

from __future__ import annotations

import pytest
import torch

from nnmodel import Activation, FeedForward, backprop, backprop_loop, gradient_check, register_activation, write_grads
from nnmodel.core.backprop import cost_from_logits, encode_targets, l2_penalty
from nnmodel.errors import NNModelWarning


@pytest.fixture(autouse=True)
def float64():
    """Exactness tests run in float64; restore the default afterwards for the other test files."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@register_activation("test_swish", derivative=lambda z, a: a + torch.sigmoid(z) * (1 - a))
def _swish(z: torch.Tensor) -> torch.Tensor:
    return z * torch.sigmoid(z)


# No derivative given: the manual backprop must get g' from autograd.
register_activation("test_softsign", lambda z: z / (1 + z.abs()))

ACTIVATIONS = ["sigmoid", "tanh", "relu", "leaky_relu", "linear", "test_swish", "test_softsign"]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


def autograd_reference(net: FeedForward, x: torch.Tensor, y: torch.Tensor, l2: float):
    """J, dJ/dW, dJ/db and m·dJ/dz^(l) (= δ^(l)) from torch.autograd."""
    net.zero_grad()
    t = net.trace(x)
    for z in t.z:
        z.retain_grad()
    j = cost_from_logits(t.z[-1], encode_targets(y, net.n_out, x.dtype), net.output) + l2_penalty(net, l2, len(x))
    j.backward()
    m = x.shape[0]
    return (
        j.detach(),
        [layer.weight.grad.clone() for layer in net.layers],
        [layer.bias.grad.clone() for layer in net.layers],
        [z.grad * m for z in t.z],
    )


def make_case(depth: int, activation: str, output: str, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    hidden = [6, 5, 4][:depth]
    net = FeedForward(
        4, hidden, 3, activation=activation, output=output, init="epsilon_uniform", epsilon=0.8, seed=seed
    )
    x = torch.randn(7, 4, generator=gen)  # (m, s_1)
    y = torch.randint(0, 3, (7,), generator=gen)
    return net, x, y


OUTPUTS = ["sigmoid", "softmax", "linear"]  # δ^(L) = a − y for each, with its own cost (see nnmodel.core.backprop)
# Every distinct case once: a network without hidden layers has no hidden activation to vary.
CASES = [
    (activation, output, l2, depth)
    for depth in (0, 1, 3)
    for activation in (ACTIVATIONS if depth else ["none"])
    for output in OUTPUTS
    for l2 in (0.0, 0.7)
]
assert len(CASES) == 90  # the README's count


@pytest.mark.parametrize(("activation", "output", "l2", "depth"), CASES)
def test_manual_backprop_matches_autograd(activation: str, output: str, l2: float, depth: int) -> None:
    net, x, y = make_case(depth, "sigmoid" if activation == "none" else activation, output)
    j_ref, gw_ref, gb_ref, deltas_ref = autograd_reference(net, x, y, l2)
    grads = backprop(net, x, y, l2)
    assert rel(grads.cost, j_ref) < 1e-10
    for ours, ref in zip(grads.weight_grads + grads.bias_grads, gw_ref + gb_ref, strict=True):
        assert rel(ours, ref) < 1e-10
    for ours, ref in zip(grads.deltas, deltas_ref, strict=True):
        assert rel(ours, ref) < 1e-10


@pytest.mark.parametrize("output", ["sigmoid", "softmax"])
@pytest.mark.parametrize("activation", ["sigmoid", "relu", "test_softsign"])
def test_per_example_loop_equals_vectorised(activation: str, output: str) -> None:
    net, x, y = make_case(2, activation, output)
    fast, slow = backprop(net, x, y, 0.3), backprop_loop(net, x, y, 0.3)
    assert rel(slow.cost, fast.cost) < 1e-12
    for a, b in zip(
        slow.weight_grads + slow.bias_grads + slow.deltas, fast.weight_grads + fast.bias_grads + fast.deltas
    ):
        assert rel(a, b) < 1e-12


def test_sigmoid_output_cost_is_the_slides_formula() -> None:
    net, x, y = make_case(1, "sigmoid", "sigmoid")
    h = net.h(x)
    Y = torch.nn.functional.one_hot(y, 3).double()
    slide = -(Y * torch.log(h) + (1 - Y) * torch.log(1 - h)).sum() / len(x)
    slide = slide + 0.5 / (2 * len(x)) * sum((layer.weight**2).sum() for layer in net.layers)
    assert rel(backprop(net, x, y, 0.5).cost, slide) < 1e-12


def test_step_units_pass_exactly_zero_gradient() -> None:
    with pytest.warns(NNModelWarning, match="gradient descent cannot train"):
        net, x, y = make_case(2, "step", "softmax")
    grads = backprop(net, x, y)
    # Layers 0 and 1 feed step units: nothing flows back through g'(z) = 0.
    for i in (0, 1):
        assert torch.count_nonzero(grads.weight_grads[i]) == 0
        assert torch.count_nonzero(grads.bias_grads[i]) == 0
    assert torch.count_nonzero(grads.weight_grads[2]) > 0  # the output layer still learns
    assert net(x).shape == (7, 3)  # the forward pass works


@pytest.mark.parametrize("l2", [0.0, 1.0])
@pytest.mark.parametrize("output", ["sigmoid", "softmax"])
def test_gradient_check_tiny_network(output: str, l2: float) -> None:
    torch.manual_seed(0)
    net = FeedForward(3, [5], 3, activation="sigmoid", output=output, seed=0)
    x = torch.randn(5, 3)
    y = torch.tensor([0, 1, 2, 1, 0])
    check = gradient_check(net, x, y, l2=l2, eps=1e-4)
    assert check.numerical.shape == (5 * 3 + 5 + 3 * 5 + 3,)
    assert check.relative_difference < 1e-9


def test_gradient_check_catches_a_wrong_gradient() -> None:
    net = FeedForward(3, [5], 3, activation="sigmoid", output="softmax", seed=0)
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 2, 1, 0])

    def off_by_factor(*args):
        g = backprop(*args)
        g.weight_grads[0] = g.weight_grads[0] * 1.01
        return g

    assert gradient_check(net, x, y, grad_fn=off_by_factor).relative_difference > 1e-4


def test_write_grads_lets_a_torch_optimizer_step() -> None:
    net, x, y = make_case(1, "tanh", "softmax")
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    before = backprop(net, x, y).cost.item()
    for _ in range(20):
        opt.zero_grad()
        write_grads(net, backprop(net, x, y))
        opt.step()
    assert backprop(net, x, y).cost.item() < 0.8 * before


def test_user_activation_object_and_import_path() -> None:
    cube = Activation("cube", lambda z: z**3, lambda z, a: 3 * z**2)
    net = FeedForward(2, [3], 2, activation=cube, output="softmax", seed=1)
    x, y = torch.randn(4, 2), torch.tensor([0, 1, 1, 0])
    _, gw_ref, _, _ = autograd_reference(net, x, y, 0.0)
    assert rel(backprop(net, x, y).weight_grads[0], gw_ref[0]) < 1e-10
    via_path = FeedForward(2, [3], 2, activation="torch.nn.functional:silu", output="softmax", seed=1)
    assert via_path.activations[0].derivative is None  # g' will come from autograd
    _, gw_ref, _, _ = autograd_reference(via_path, x, y, 0.0)
    assert rel(backprop(via_path, x, y).weight_grads[0], gw_ref[0]) < 1e-10
