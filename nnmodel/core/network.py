"""The feedforward network h_Θ(x), as a plain ``nn.Module`` (no Lightning here).

Notation. The slides number layers 1..L with a^(1) = x, z^(l+1) = Θ^(l) a^(l) (bias in column 0 of
Θ^(l)), a^(l) = g(z^(l)) and h_Θ(x) = a^(L). We keep torch's convention instead: each
``nn.Linear`` holds W^(l) (s_(l+1) × s_l) and b^(l) apart, and a batch is a matrix with one example
per row, so one line computes z^(l+1) = a^(l) W^(l)ᵀ + b^(l) for all m examples at once.

Python lists are 0-based: ``trace.a[0]`` is the slide's a^(1) = x and ``trace.z[0]`` is z^(2).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from nnmodel.core.activations import Activation, get_activation, warn_if_untrainable
from nnmodel.core.init import check_epsilon, get_init, init_linear_layers
from nnmodel.errors import unknown

OUTPUTS = ("sigmoid", "softmax", "linear")


@dataclass
class Trace:
    """What the forward pass keeps for backprop: ``z[i]`` = z^(i+2), ``a[i]`` = a^(i+1)."""

    z: list[torch.Tensor]  # L−1 tensors, z[i] of shape (m, s_(i+2))
    a: list[torch.Tensor]  # L tensors, a[0] = x (m, s_1), a[-1] = h_Θ(x) (m, K)


def _check_size(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def output_activation(output: str) -> Activation:
    """The output unit's g: sigmoid (K logistic units), softmax, or linear."""
    if output == "softmax":
        return Activation("softmax", partial(torch.softmax, dim=-1))
    if output in ("sigmoid", "linear"):
        return get_activation(output)
    raise unknown("output", output, OUTPUTS)


class FeedForward(nn.Module):
    """A fully connected network s_1 → hidden... → K.

    Args:
        n_in: s_1, the number of input features.
        hidden: hidden layer sizes, any depth; ``[]`` gives a single layer of logistic units.
        n_out: K, the number of output units.
        activation: hidden activation g, one name for all hidden layers or one per layer; a name,
            an import path ``"pkg.mod:fn"``, a function or an :class:`Activation`.
        output: ``"sigmoid"`` (the lecture's K independent logistic units, cost J(Θ)),
            ``"softmax"`` (categorical cross-entropy) or ``"linear"`` (squared error).
        init: a scheme of :mod:`nnmodel.core.init`; ``epsilon`` is its ε (a number > 0, or "auto").
        leaky_slope: the negative slope of ``leaky_relu``.
        seed: seeds the initialisation (None: drawn from torch's global RNG).
    """

    def __init__(
        self,
        n_in: int,
        hidden: Sequence[int],
        n_out: int,
        activation: str | Activation | Sequence[str | Activation] = "sigmoid",
        output: str = "softmax",
        init: str = "epsilon_uniform",
        epsilon: float | str = 0.12,
        leaky_slope: float = 0.01,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        hidden = list(hidden)
        sizes = [_check_size("n_in (input features)", n_in)]
        sizes += [_check_size(f"hidden[{i}]", h) for i, h in enumerate(hidden)]
        sizes.append(_check_size("n_out (output units)", n_out))
        if isinstance(activation, str | Activation) or callable(activation):
            activation = [activation] * len(hidden)
        if len(activation) != len(hidden):
            raise ValueError(
                f"got {len(activation)} activations for {len(hidden)} hidden layers; give one, or one per layer"
            )
        self.activations = [get_activation(a, leaky_slope) for a in activation]
        warn_if_untrainable(self.activations)
        self.output = output
        self.out_activation = output_activation(output)
        get_init(init)
        check_epsilon(epsilon)
        self.sizes = sizes
        self.layers = nn.ModuleList(nn.Linear(s_in, s_out) for s_in, s_out in itertools.pairwise(sizes))
        self.init, self.epsilon = init, epsilon
        init_linear_layers(list(self.layers), init, epsilon, seed)

    @property
    def n_in(self) -> int:
        return self.sizes[0]

    @property
    def n_out(self) -> int:
        return self.sizes[-1]

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 2 or x.shape[1] != self.n_in:
            raise ValueError(f"input of shape {tuple(x.shape)} does not fit the network: expected (m, {self.n_in})")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The output layer's z^(L), shape (m, K): logits, which the losses take for stability."""
        self._check_input(x)
        a = x  # (m, s_1)
        *hidden, last = self.layers  # not self.layers[:-1]: slicing a ModuleList builds a new one, ~30 µs a call
        for layer, g in zip(hidden, self.activations):
            a = g(layer(a))  # a^(l+1) = g(a^(l) Wᵀ + b), (m, s_(l+1))
        return last(a)  # (m, K)

    def h(self, x: torch.Tensor) -> torch.Tensor:
        """h_Θ(x) = a^(L): probabilities for sigmoid/softmax outputs, shape (m, K)."""
        return self.out_activation(self(x))

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class indices (m,): argmax over K, or h > 0.5 for a single logistic unit."""
        return classes(self(x))

    def trace(self, x: torch.Tensor) -> Trace:
        """Forward propagation keeping every z^(l) and a^(l) for backprop."""
        self._check_input(x)
        zs, acts = [], [x]
        gs = [*self.activations, self.out_activation]
        for layer, g in zip(self.layers, gs):
            z = acts[-1] @ layer.weight.T + layer.bias  # z^(l+1) = a^(l) Wᵀ + b, (m, s_(l+1))
            zs.append(z)
            acts.append(g(z))
        return Trace(zs, acts)

    def extra_repr(self) -> str:
        acts = ",".join(a.name for a in self.activations) or "-"
        return f"sizes={self.sizes}, hidden_activation={acts}, output={self.output}, init={self.init}"


def classes(z: torch.Tensor) -> torch.Tensor:
    """Class indices (m,) from the output layer's z (m, K): argmax, or h = σ(z) > 0.5 ⇔ z > 0 for K = 1."""
    return (z[:, 0] > 0).long() if z.shape[1] == 1 else z.argmax(dim=1)


def set_weights(net: FeedForward, thetas: Sequence[torch.Tensor | Sequence[Sequence[float]]]) -> FeedForward:
    """Load slide-style Θ^(l) matrices (bias in column 0) into ``net``: handy for AND/OR by hand."""
    with torch.no_grad():
        for layer, theta in zip(net.layers, thetas, strict=True):
            theta = torch.as_tensor(theta, dtype=layer.weight.dtype)
            if theta.ndim == 1:
                theta = theta[None, :]
            if theta.shape != (layer.out_features, layer.in_features + 1):
                raise ValueError(
                    f"Θ of shape {tuple(theta.shape)} does not fit a layer {layer.in_features} → {layer.out_features}: "
                    f"expected ({layer.out_features}, {layer.in_features + 1}) with the bias in column 0"
                )
            layer.bias.copy_(theta[:, 0])
            layer.weight.copy_(theta[:, 1:])
    return net


def n_outputs(n_classes: int, output: str) -> int:
    """K: one logistic unit for a 2-class problem with a sigmoid output (the lecture's), else one per class."""
    return 1 if output == "sigmoid" and n_classes == 2 else n_classes


def count_parameters(net: nn.Module) -> int:
    return sum(math.prod(p.shape) for p in net.parameters())


@torch.no_grad()
def distinct_units(layer: nn.Linear, rtol: float = 1e-5) -> int:
    """How many of the layer's units differ: the lecture's symmetry measure.

    Two units are the same when their incoming weights and bias agree, coordinate by coordinate, to
    ``rtol`` of the layer's largest weight (exact equality is too strict: BLAS may round identical rows
    apart by an ulp), and "the same" is closed under chains: the count is the number of connected
    components of that relation, so it does not depend on the order of the units. Zero
    initialisation keeps it at 1 forever.

    Written by hand, without the all-pairs distance matrix (800 units × 785 weights took 150-300 ms
    that way, 1-2 ms here): units within ``tol`` in every coordinate are within ``tol`` in the coordinate
    where the units differ most, so after sorting the units by it, only neighbours closer than ``tol``
    there can be the same. After a random initialisation those candidate pairs are few, and all of
    them are checked at once; when they are many (units that really are alike), a breadth-first
    search groups them.
    """
    w, b = layer.weight.detach(), layer.bias.detach()  # (s, n), (s,)
    s = w.shape[0]
    if s < 2:
        return s
    rows = torch.cat([w, b[:, None]], dim=1)  # (s, n + 1): unit i's incoming weights and bias
    hi, lo = rows.amax(dim=0), rows.amin(dim=0)  # (n + 1,) each
    tol = rtol * torch.maximum(hi.abs(), lo.abs()).amax().clamp_min(1e-12).item()
    p, order = rows[:, int((hi - lo).argmax())].sort()  # (s,): the coordinate with the widest spread
    rows = rows[order]
    partners = torch.searchsorted(p, p + tol, right=True) - torch.arange(1, s + 1, device=p.device)  # (s,)
    n_pairs = int(partners.sum())
    if n_pairs == 0:
        return s
    if n_pairs <= 2 * s:  # check every candidate pair (i, j), i < j in p's order, at once
        i = torch.repeat_interleave(torch.arange(s, device=p.device), partners)  # (n_pairs,)
        first = torch.cumsum(partners, 0) - partners  # (s,) where unit i's pairs start
        j = i + 1 + torch.arange(n_pairs, device=p.device) - first[i]
        same = (rows[i] - rows[j]).abs().amax(dim=1) <= tol  # (n_pairs,)
        parent = list(range(s))  # union-find over the few pairs that are the same

        def root(k: int) -> int:
            while parent[k] != k:
                parent[k] = parent[parent[k]]
                k = parent[k]
            return k

        count = s
        for a, c in zip(i[same].tolist(), j[same].tolist()):
            ra, rc = root(a), root(c)
            if ra != rc:
                parent[ra] = rc
                count -= 1
        return count
    count, unvisited = 0, torch.ones(s, dtype=torch.bool, device=p.device)
    for start in range(s):  # many candidates: grow each group from its first unit
        if not unvisited[start]:
            continue
        count += 1
        unvisited[start] = False
        frontier = torch.tensor([start], device=p.device)
        while len(frontier):
            left = int(torch.searchsorted(p, p[frontier].min() - tol))
            right = int(torch.searchsorted(p, p[frontier].max() + tol, right=True))
            candidates = left + unvisited[left:right].nonzero().flatten()
            if not len(candidates):
                break
            gap = torch.cdist(rows[candidates], rows[frontier], p=float("inf"))  # (c, f) L∞ distances
            frontier = candidates[(gap <= tol).any(dim=1)]
            unvisited[frontier] = False
    return count
