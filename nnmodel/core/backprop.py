"""Backpropagation written out as the lecture teaches it, and the cost J(Θ).

This file is written by hand on purpose (it *is* the lesson); training can use it instead of
torch.autograd with ``model.backprop=manual``, and the tests prove the two agree to 1e-10.

For m examples (one per row), with K outputs and the network's trace (z^(l), a^(l)):

* δ^(L) = a^(L) − y                                        (output layer)
* δ^(l) = (Θ^(l))ᵀ δ^(l+1) .* g'(z^(l))                     (hidden layers, bias row dropped)
* Δ^(l) = Σ_i δ^(l+1) (a^(l))ᵀ                              (accumulated over the examples)
* D^(l) = Δ^(l) / m  (+ (λ/m) Θ^(l) on the weights, never the biases)

δ^(L) = a^(L) − y is exact for three pairs of output and cost: sigmoid with the slide's
cross-entropy J(Θ), softmax with categorical cross-entropy, linear with ½·squared error.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nnmodel.core.network import FeedForward


@dataclass
class Gradients:
    """What :func:`backprop` returns; lists run from the first layer to the output layer."""

    cost: torch.Tensor  # J(Θ), a scalar
    deltas: list[torch.Tensor]  # δ^(2..L), deltas[i] of shape (m, s_(i+2)), per example (not / m)
    weight_grads: list[torch.Tensor]  # D^(l) for W^(l), (s_(l+1), s_l)
    bias_grads: list[torch.Tensor]  # D^(l) for b^(l), (s_(l+1),)
    logits: torch.Tensor | None = None  # z^(L), (m, K): what accuracy is computed from


def encode_targets(y: torch.Tensor, n_out: int, dtype: torch.dtype) -> torch.Tensor:
    """y as the (m, K) matrix the formulas use: one-hot rows from class indices; a (m,) 0/1 column for K = 1."""
    if y.ndim == 2:
        if y.shape[1] != n_out:
            raise ValueError(f"targets of shape {tuple(y.shape)} do not fit {n_out} output units")
        return y.to(dtype)
    if n_out == 1:
        return y.to(dtype)[:, None]  # (m, 1)
    return F.one_hot(y.long(), n_out).to(dtype)  # (m, K)


def l2_penalty(net: FeedForward, l2: float, m: int) -> torch.Tensor:
    """λ/(2m) Σ_l Σ W², weights only (the slide's sum skips the bias column).

    ``m`` is the number of examples the cost is averaged over. In training that is the minibatch, as
    in scikit-learn's ``alpha``, so each step's penalty has the same weight against its data term;
    the slide's m is the whole training set, which a full batch (``data.batch_size`` ≥ the training
    examples) gives exactly: then J(Θ) is the slide's, term for term.
    """
    return (l2 / (2 * m)) * sum(layer.weight.pow(2).sum() for layer in net.layers)


def cost_from_logits(z_out: torch.Tensor, y: torch.Tensor, output: str) -> torch.Tensor:
    """The data term of J(Θ) from the output layer's z^(L), averaged over the m rows.

    * sigmoid: −(1/m) Σ_i Σ_k [y_k log h_k + (1 − y_k) log(1 − h_k)], the slide's J(Θ)
    * softmax: −(1/m) Σ_i Σ_k y_k log softmax(z)_k
    * linear:   (1/2m) Σ_i Σ_k (h_k − y_k)²

    ``y`` is the (m, K) matrix of :func:`encode_targets`. Computed from z (log-sum-exp forms) so
    that h = 0 or 1 in floating point never gives log 0.
    """
    m = z_out.shape[0]
    if output == "sigmoid":
        return F.binary_cross_entropy_with_logits(z_out, y, reduction="sum") / m
    if output == "softmax":
        return -(y * torch.log_softmax(z_out, dim=1)).sum() / m
    if output == "linear":
        return 0.5 * (z_out - y).pow(2).sum() / m
    raise ValueError(f"unknown output '{output}'")


def cost(net: FeedForward, x: torch.Tensor, y: torch.Tensor, l2: float = 0.0) -> torch.Tensor:
    """J(Θ) on the batch (x, y), including λ/(2m) Σ W² when ``l2`` > 0."""
    y = encode_targets(y, net.n_out, x.dtype)
    j = cost_from_logits(net(x), y, net.output)
    return j + l2_penalty(net, l2, x.shape[0]) if l2 else j


@torch.no_grad()
def backprop(net: FeedForward, x: torch.Tensor, y: torch.Tensor, l2: float = 0.0) -> Gradients:
    """The vectorised algorithm: every example of the batch at once, no autograd graph.

    x: (m, s_1); y: class indices (m,) or targets (m, K).
    """
    m = x.shape[0]
    t = net.trace(x)
    y = encode_targets(y, net.n_out, x.dtype)  # (m, K)
    j = cost_from_logits(t.z[-1], y, net.output)
    if l2:
        j = j + l2_penalty(net, l2, m)
    deltas, w_grads, b_grads = [], [], []  # from the output layer down; reversed at the end
    delta = t.a[-1] - y  # δ^(L) = a^(L) − y, (m, K)
    for i in reversed(range(len(net.layers))):  # layer i maps a[i] → z[i]: the slide's Θ^(i+1)
        W = net.layers[i].weight  # (s_(i+2), s_(i+1)), the slide's Θ^(i+1) without its bias column
        D = delta.T / m @ t.a[i]  # D = Δ/m, Δ = Σ_examples δ^(l+1) (a^(l))ᵀ: the sum over the m rows is the product
        if l2:
            D = D + l2 / m * W  # + (λ/m) Θ, on the weights only
        deltas.append(delta)
        w_grads.append(D)
        b_grads.append(delta.sum(dim=0) / m)  # the bias column (a_0 = 1): Σ δ / m, never regularised
        if i > 0:  # δ^(l) = (Θ^(l))ᵀ δ^(l+1) .* g'(z^(l)); the bias row never enters
            delta = (delta @ W) * net.activations[i - 1].grad(t.z[i - 1], t.a[i])  # (m, s_(i+1))
    return Gradients(j, deltas[::-1], w_grads[::-1], b_grads[::-1], t.z[-1])


@torch.no_grad()
def backprop_loop(net: FeedForward, x: torch.Tensor, y: torch.Tensor, l2: float = 0.0) -> Gradients:
    """The slide's per-example form: "for i = 1 to m", accumulating Δ. Slow; for teaching and tests.

    Returns the same as :func:`backprop` (the δ rows stacked back into (m, s) matrices).
    """
    m = x.shape[0]
    y = encode_targets(y, net.n_out, x.dtype)
    n_layers = len(net.layers)
    Delta_w = [torch.zeros_like(layer.weight) for layer in net.layers]  # Δ^(l) := 0
    Delta_b = [torch.zeros_like(layer.bias) for layer in net.layers]
    deltas: list[list[torch.Tensor]] = [[] for _ in range(n_layers)]
    for i in range(m):  # for i = 1 to m
        t = net.trace(x[i : i + 1])  # a^(1) = x^(i), forward propagation: a^(l) for l = 2..L
        delta = t.a[-1][0] - y[i]  # δ^(L) = a^(L) − y^(i), (K,)
        for layer_idx in reversed(range(n_layers)):
            layer = net.layers[layer_idx]
            deltas[layer_idx].append(delta)
            Delta_w[layer_idx] += torch.outer(delta, t.a[layer_idx][0])  # Δ += δ^(l+1) (a^(l))ᵀ
            Delta_b[layer_idx] += delta
            if layer_idx > 0:
                g_prime = net.activations[layer_idx - 1].grad(t.z[layer_idx - 1][0], t.a[layer_idx][0])
                delta = layer.weight.t().mv(delta) * g_prime  # δ^(l) = Θᵀ δ^(l+1) .* g'(z^(l))
    w_grads = [Dw / m + (l2 / m) * layer.weight for Dw, layer in zip(Delta_w, net.layers)]
    b_grads = [Db / m for Db in Delta_b]  # no regularisation on the bias
    j = cost_from_logits(net(x), y, net.output) + (l2_penalty(net, l2, m) if l2 else 0.0)
    return Gradients(j, [torch.stack(d) for d in deltas], w_grads, b_grads)


def write_grads(net: FeedForward, grads: Gradients) -> None:
    """Put D^(l) into each parameter's ``.grad``, so any torch optimizer can step with them."""
    for layer, gw, gb in zip(net.layers, grads.weight_grads, grads.bias_grads):
        layer.weight.grad = gw
        layer.bias.grad = gb


@dataclass
class GradientCheck:
    relative_difference: float  # ‖num − grad‖ / ‖num + grad‖ (Ng: < 1e-9 in float64 means correct)
    numerical: torch.Tensor  # all parameters' numerical gradients, flattened
    analytical: torch.Tensor  # the same from backprop


@torch.no_grad()
def gradient_check(
    net: FeedForward,
    x: torch.Tensor,
    y: torch.Tensor,
    l2: float = 0.0,
    eps: float = 1e-4,
    grad_fn: Callable[..., Gradients] = backprop,
) -> GradientCheck:
    """Compare backprop with central differences (J(θ + ε) − J(θ − ε)) / 2ε, one parameter at a time.

    Use float64 and a tiny network: it costs two forward passes per parameter.
    """
    grads = grad_fn(net, x, y, l2)
    analytical = torch.cat([g.reshape(-1) for pair in zip(grads.weight_grads, grads.bias_grads) for g in pair])
    numerical = []
    for layer in net.layers:
        for p in (layer.weight, layer.bias):
            flat = p.view(-1)
            for k in range(flat.numel()):
                old = flat[k].item()
                flat[k] = old + eps
                j_plus = cost(net, x, y, l2).item()
                flat[k] = old - eps
                j_minus = cost(net, x, y, l2).item()
                flat[k] = old
                numerical.append((j_plus - j_minus) / (2 * eps))
    num = torch.tensor(numerical, dtype=analytical.dtype)
    denom = torch.linalg.norm(num + analytical).item()
    rel = torch.linalg.norm(num - analytical).item() / denom if denom > 0 else 0.0
    return GradientCheck(rel if math.isfinite(rel) else float("inf"), num, analytical)
