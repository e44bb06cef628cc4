"""The network, the initialisations and their errors, as the lecture states them."""

from __future__ import annotations

import math

import pytest
import torch

from nnmodel import FeedForward, auto_epsilon, backprop, set_weights, write_grads
from nnmodel.core.activations import get_activation
from nnmodel.core.network import distinct_units

GATE_INPUTS = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])


@pytest.mark.parametrize(
    ("theta", "truth"),
    [([-30.0, 20.0, 20.0], [0, 0, 0, 1]), ([-10.0, 20.0, 20.0], [0, 1, 1, 1])],
    ids=["AND", "OR"],
)
def test_single_logistic_unit_computes_the_gate(theta: list[float], truth: list[int]) -> None:
    unit = set_weights(FeedForward(2, [], 1, output="sigmoid"), [theta])
    h = unit.h(GATE_INPUTS)[:, 0]
    for h_i, t in zip(h.tolist(), truth):
        assert (h_i > 0.99) if t else (h_i < 0.01)
    assert unit.predict(GATE_INPUTS).tolist() == truth


def train_steps(net: FeedForward, steps: int = 50) -> None:
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 4, generator=gen), torch.randint(0, 3, (32,), generator=gen)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    for _ in range(steps):
        opt.zero_grad()
        write_grads(net, backprop(net, x, y))
        opt.step()


def test_zero_init_keeps_hidden_units_identical() -> None:
    net = FeedForward(4, [6, 5], 3, activation="sigmoid", init="zero")
    train_steps(net)
    assert distinct_units(net.layers[0]) == 1  # all 6 units of layer 1 still the same
    assert distinct_units(net.layers[1]) == 1
    assert net.layers[2].weight.abs().sum() > 0  # the output layer did move: it is not a dead network


def test_epsilon_uniform_breaks_symmetry() -> None:
    net = FeedForward(4, [6, 5], 3, activation="sigmoid", init="epsilon_uniform", seed=0)
    train_steps(net)
    assert distinct_units(net.layers[0]) == 6
    assert distinct_units(net.layers[1]) == 5


@pytest.mark.parametrize("epsilon", [0.12, 0.01, 2.0])
def test_epsilon_uniform_bounds(epsilon: float) -> None:
    net = FeedForward(30, [40], 10, init="epsilon_uniform", epsilon=epsilon, seed=3)
    for p in net.parameters():
        assert p.abs().max() <= epsilon
        assert p.abs().max() > 0.9 * epsilon  # uses the whole interval
        assert p.min() < 0 < p.max()


def test_auto_epsilon_is_ngs_rule() -> None:
    assert auto_epsilon(400, 25) == pytest.approx(math.sqrt(6) / math.sqrt(425))
    net = FeedForward(400, [25], 10, init="epsilon_uniform", epsilon="auto", seed=0)
    for layer, bound in zip(net.layers, [math.sqrt(6 / 425), math.sqrt(6 / 35)]):
        assert layer.weight.abs().max() <= bound
        assert layer.weight.abs().max() > 0.95 * bound
        assert layer.bias.abs().max() <= bound


@pytest.mark.parametrize("init", ["epsilon_uniform", "xavier", "kaiming", "default", "zero"])
def test_init_is_reproducible_from_seed(init: str) -> None:
    a = FeedForward(8, [7], 3, init=init, seed=5)
    b = FeedForward(8, [7], 3, init=init, seed=5)
    c = FeedForward(8, [7], 3, init=init, seed=6)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    if init != "zero":
        assert not torch.equal(a.layers[0].weight, c.layers[0].weight)


def test_per_layer_activations_and_leaky_slope() -> None:
    net = FeedForward(3, [4, 4], 2, activation=["tanh", "leaky_relu"], leaky_slope=0.2)
    assert [a.name for a in net.activations] == ["tanh", "leaky_relu"]
    z = torch.tensor([-1.0, 2.0])
    assert net.activations[1](z).tolist() == pytest.approx([-0.2, 2.0])
    assert get_activation("leaky_relu")(z).tolist() == pytest.approx([-0.01, 2.0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"activation": "rellu"},
            "unknown activation 'rellu'; did you mean 'relu'? choose one of: leaky_relu, linear, relu, sigmoid, step, tanh",
        ),
        (
            {"init": "zeros"},
            "unknown init 'zeros'; did you mean 'zero'? choose one of: default, epsilon_uniform, kaiming, xavier, zero",
        ),
        ({"output": "softplus"}, "unknown output 'softplus'; choose one of: linear, sigmoid, softmax"),
        ({"hidden": [0]}, "hidden[0] must be a positive integer, got 0"),
        ({"hidden": [5, -2]}, "hidden[1] must be a positive integer, got -2"),
        ({"n_in": 0}, "n_in (input features) must be a positive integer, got 0"),
        ({"n_out": -1}, "n_out (output units) must be a positive integer, got -1"),
        ({"epsilon": 0}, "epsilon must be a number > 0 or 'auto', got 0"),
        ({"epsilon": -0.1}, "epsilon must be a number > 0 or 'auto', got -0.1"),
        ({"epsilon": "big"}, "epsilon must be a number > 0 or 'auto', got 'big'"),
        ({"activation": ["tanh", "relu"]}, "got 2 activations for 1 hidden layers; give one, or one per layer"),
    ],
)
def test_bad_construction_names_the_value(kwargs: dict, message: str) -> None:
    args = {"n_in": 4, "hidden": [5], "n_out": 3} | kwargs
    with pytest.raises(ValueError) as err:
        FeedForward(**args)
    assert str(err.value).startswith(message)


def test_input_of_wrong_width_is_refused() -> None:
    net = FeedForward(4, [5], 3)
    with pytest.raises(ValueError, match=r"input of shape \(2, 3\) does not fit the network: expected \(m, 4\)"):
        net(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="does not fit"):
        backprop(net, torch.zeros(2, 5), torch.tensor([0, 1]))


def test_set_weights_refuses_wrong_shape() -> None:
    with pytest.raises(ValueError, match=r"expected \(1, 3\) with the bias in column 0"):
        set_weights(FeedForward(2, [], 1, output="sigmoid"), [[1.0, 2.0]])


def _distinct_units_all_pairs(layer: torch.nn.Linear, rtol: float = 1e-5) -> int:
    """The definition, by brute force: connected components of 'L∞ distance ≤ rtol · max |weight|'."""
    rows = torch.cat([layer.weight, layer.bias[:, None]], dim=1).double()
    close = torch.cdist(rows, rows, p=float("inf")) <= rtol * max(rows.abs().max().item(), 1e-12)
    label = list(range(len(rows)))
    for i, j in close.nonzero().tolist():
        a, b = label[i], label[j]
        if a != b:
            label = [a if c == b else c for c in label]
    return len(set(label))


def _layer(rows: torch.Tensor) -> torch.nn.Linear:
    layer = torch.nn.Linear(rows.shape[1] - 1, rows.shape[0])
    with torch.no_grad():
        layer.weight.copy_(rows[:, :-1])
        layer.bias.copy_(rows[:, -1])
    return layer


def test_distinct_units_on_hand_made_rows() -> None:
    rows = torch.tensor([[1.0, 2.0, 0.5], [1.0, 2.0, 0.5], [1.0, 2.0 + 1e-7, 0.5], [-1.0, 2.0, 0.5], [0.0, 0.0, 0.0]])
    assert distinct_units(_layer(rows)) == 3  # rows 0-2 agree to 1e-5 of the largest weight (2.0)
    chain = torch.tensor([[0.0, 1.0], [1.5e-5, 1.0], [3e-5, 1.0]])  # tol = 1e-5 · 1.0: no two within it
    assert distinct_units(_layer(chain)) == 3
    chain = torch.tensor([[0.0, 1.0], [0.8e-5, 1.0], [1.6e-5, 1.0]])  # each within tol of the next: one chain
    assert distinct_units(_layer(chain)) == 1
    assert distinct_units(_layer(torch.zeros(7, 4))) == 1
    assert distinct_units(_layer(torch.ones(1, 4))) == 1


@pytest.mark.parametrize("seed", range(40))
def test_distinct_units_equals_the_all_pairs_definition(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    s, n = int(torch.randint(2, 120, (1,), generator=gen)), int(torch.randint(1, 30, (1,), generator=gen))
    k = int(torch.randint(1, s + 1, (1,), generator=gen))  # k prototype units, each copied with tiny noise
    protos = torch.randn(k, n + 1, generator=gen)
    noise = torch.randn(s, n + 1, generator=gen) * 10 ** float(torch.empty(()).uniform_(-9, -4, generator=gen))
    layer = _layer(protos[torch.randint(0, k, (s,), generator=gen)] + noise)
    assert distinct_units(layer) == _distinct_units_all_pairs(layer)


def test_distinct_units_on_a_wide_random_layer() -> None:
    layer = torch.nn.Linear(784, 800)
    assert distinct_units(layer) == 800
    with torch.no_grad():
        layer.weight[400:] = layer.weight[0]  # units 400-799 become copies of unit 0
        layer.bias[400:] = layer.bias[0]
    assert distinct_units(layer) == 400  # units 1-399, and unit 0 with its 400 copies


@pytest.mark.parametrize(
    ("name", "fn", "message"),
    [
        (
            "relu",
            lambda z: -z,
            "register_activation: 'relu' is one of nnmodel's own; give your activation another name (checkpoints and "
            "configs name it, and leaky_relu, linear, relu, sigmoid, step, tanh must mean the same in every process)",
        ),
        ("pkg:fn", torch.tanh, "register_activation: 'pkg:fn' is not a name (':' makes an import path); give your"),
        ("three", 3, "register_activation('three', ...): fn must be a function of tensors, got int 3"),
    ],
)
def test_register_activation_refuses_a_built_in_name_and_what_is_not_a_function(name, fn, message) -> None:
    from nnmodel import ConfigError, register_activation
    from nnmodel.core.activations import ACTIVATIONS

    before = dict(ACTIVATIONS)
    with pytest.raises(ConfigError) as refused:
        register_activation(name, fn)
    assert str(refused.value).startswith(message)
    assert before == ACTIVATIONS  # relu still means relu: a loaded relu checkpoint predicts as it was trained
