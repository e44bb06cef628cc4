"""Activation functions g(z), each beside its derivative g'(z).

Every activation is an :class:`Activation`: the forward ``fn(z)`` and the ``derivative(z, a)``
that the hand-written backprop multiplies into δ (``a = g(z)`` is passed in because several
derivatives are cheapest written in terms of it, e.g. the sigmoid's g(z)(1 − g(z))).

A user's own activation plugs in exactly like ours, three ways::

    @register_activation("swish", derivative=lambda z, a: a + torch.sigmoid(z) * (1 - a))
    def swish(z): return z * torch.sigmoid(z)

    get_activation("mypkg.acts:swish")      # an import path: an Activation, or a plain function
    get_activation(Activation("cube", lambda z: z**3, lambda z, a: 3 * z**2))

An activation registered without a derivative still trains with ``backprop=manual``: g'(z) is then
obtained from torch.autograd, elementwise (see :meth:`Activation.grad`).
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F

from nnmodel.errors import ConfigError, NNModelWarning, unknown

Tensor = torch.Tensor


@dataclass(frozen=True)
class Activation:
    """An elementwise activation g and, optionally, its derivative g'.

    ``fn(z) -> a`` and ``derivative(z, a) -> g'(z)``, all tensors of the same shape.
    """

    name: str
    fn: Callable[[Tensor], Tensor]
    derivative: Callable[[Tensor, Tensor], Tensor] | None = None
    trainable: bool = True  # False for step: g' = 0 almost everywhere, gradient descent cannot move it

    def __call__(self, z: Tensor) -> Tensor:
        return self.fn(z)

    def grad(self, z: Tensor, a: Tensor) -> Tensor:
        """g'(z). Uses the written derivative when there is one, else autograd on ``fn``.

        The autograd fallback differentiates Σ g(z) with respect to z, which equals g'(z)
        elementwise because g acts on each entry alone.
        """
        if self.derivative is not None:
            return self.derivative(z, a)
        with torch.enable_grad():
            z_ = z.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.fn(z_).sum(), z_)
        return g


def _step(z: Tensor) -> Tensor:
    # (z >= 0) has no autograd graph; adding 0·z keeps one with the true gradient, 0, so that
    # autograd and the manual backprop agree that nothing flows through a step unit.
    return (z >= 0).to(z.dtype) + 0.0 * z


def _step_grad(z: Tensor, a: Tensor) -> Tensor:
    return torch.zeros_like(z)  # g'(z) = 0 wherever it exists


def _identity(z: Tensor) -> Tensor:
    return z


def _ones_grad(z: Tensor, a: Tensor) -> Tensor:
    return torch.ones_like(z)


def _sigmoid_grad(z: Tensor, a: Tensor) -> Tensor:
    return a * (1.0 - a)  # g'(z) = g(z)(1 − g(z))


def _tanh_grad(z: Tensor, a: Tensor) -> Tensor:
    return 1.0 - a * a  # g'(z) = 1 − tanh²(z)


def _relu_grad(z: Tensor, a: Tensor) -> Tensor:
    return (z > 0).to(z.dtype)  # 1 for z > 0, else 0 (torch's convention at z = 0)


def make_leaky_relu(negative_slope: float = 0.01) -> Activation:
    """Leaky ReLU: g(z) = z for z > 0, else slope·z; g'(z) = 1 or slope."""
    if not negative_slope >= 0:
        raise ValueError(f"leaky_relu slope must be >= 0, got {negative_slope}")

    slope = negative_slope
    return Activation("leaky_relu", partial(_leaky_relu, negative_slope=slope), partial(_leaky_relu_grad, slope=slope))


# Module-level functions (and partials of them), not lambdas or closures: a network that uses the built-in
# activations pickles (scikit-learn's clone/pickle of nnmodel.MLPClassifier, multiprocessing).
def _leaky_relu(z: Tensor, negative_slope: float) -> Tensor:
    return F.leaky_relu(z, negative_slope)


def _leaky_relu_grad(z: Tensor, a: Tensor, slope: float) -> Tensor:
    return torch.where(z > 0, 1.0, slope).to(z.dtype)


ACTIVATIONS: dict[str, Activation] = {
    "step": Activation("step", _step, _step_grad, trainable=False),
    "sigmoid": Activation("sigmoid", torch.sigmoid, _sigmoid_grad),
    "tanh": Activation("tanh", torch.tanh, _tanh_grad),
    "relu": Activation("relu", torch.relu, _relu_grad),
    "leaky_relu": make_leaky_relu(0.01),
    "linear": Activation("linear", _identity, _ones_grad),
}
BUILT_IN = frozenset(ACTIVATIONS)  # register_activation does not replace these: checkpoints name them


def register_activation(
    name: str,
    fn: Callable[[Tensor], Tensor] | None = None,
    derivative: Callable[[Tensor, Tensor], Tensor] | None = None,
):
    """Register ``fn`` as activation ``name``; usable as a decorator or a plain call.

    ``derivative(z, a)`` is optional: without it, the manual backprop asks autograd for g'(z).
    """

    if not isinstance(name, str) or name in BUILT_IN or not name or ":" in name:
        why = "one of nnmodel's own" if name in BUILT_IN else "not a name (':' makes an import path)"
        raise ConfigError(
            f"register_activation: {name!r} is {why}; give your activation another name (checkpoints and configs "
            f"name it, and {', '.join(sorted(BUILT_IN))} must mean the same in every process)"
        )

    def add(f: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
        for what, given in (("fn", f), ("derivative", derivative)):
            if given is not None and not callable(given):
                raise ConfigError(
                    f"register_activation({name!r}, ...): {what} must be a function of tensors, got "
                    f"{type(given).__name__} {given!r}"
                )
        ACTIVATIONS[name] = Activation(name, f, derivative)
        return f

    return add if fn is None else add(fn)


def _from_import_path(spec: str) -> Activation:
    module_name, _, attr = spec.partition(":")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot import activation '{spec}' ({err}); give 'package.module:name'") from None
    if isinstance(obj, Activation):
        return obj
    if callable(obj):
        return Activation(attr, obj, getattr(obj, "derivative", None))
    raise ValueError(f"activation '{spec}' is a {type(obj).__name__}, not a function or Activation")


def get_activation(spec: str | Activation | Callable[[Tensor], Tensor], leaky_slope: float | None = None) -> Activation:
    """Resolve a name (``"tanh"``), an import path (``"pkg.mod:fn"``), a function or an Activation."""
    if isinstance(spec, Activation):
        return spec
    if callable(spec):
        return Activation(getattr(spec, "__name__", "custom"), spec, getattr(spec, "derivative", None))
    if not isinstance(spec, str):
        raise ValueError(f"activation must be a name, import path or function, got {spec!r}")
    if ":" in spec:
        return _from_import_path(spec)
    if spec == "leaky_relu" and leaky_slope is not None:
        return make_leaky_relu(leaky_slope)
    if spec not in ACTIVATIONS:
        extra = (
            "or register your own, in the process that trains, or give an import path 'package.module:function', "
            "which worker processes such as GridSearchCV(n_jobs=2)'s import too"
        )
        raise unknown("activation", spec, ACTIVATIONS, extra)
    return ACTIVATIONS[spec]


def warn_if_untrainable(activations: list[Activation]) -> None:
    """Warn once when a hidden layer uses step units (the lecture's point about the perceptron)."""
    if any(not act.trainable for act in activations):
        warnings.warn(
            "step units have g'(z) = 0 almost everywhere, so backprop sends no gradient through them: "
            "gradient descent cannot train the layers below a step layer (use sigmoid/tanh/relu to learn)",
            NNModelWarning,
            stacklevel=3,
        )
