"""Weight initialisation schemes, each a named function ``(weight, bias, epsilon, generator)``.

* ``zero``: every weight and bias 0. The lecture's failure case: all hidden units of a layer
  compute the same function, receive the same δ and the same update, and stay identical forever.
* ``epsilon_uniform``: every weight *and* bias uniform in [−ε, ε], as on the slides (symmetry
  breaking). ``epsilon="auto"`` takes Ng's rule ε = √6 / √(s_l + s_(l+1)) for each layer.
* ``xavier`` (Glorot uniform) and ``kaiming`` (He uniform, for ReLU) with zero biases.
* ``default``: torch's own ``nn.Linear.reset_parameters``.

All are reproducible from a seed: they draw from a ``torch.Generator`` seeded by the caller.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from nnmodel.errors import unknown

InitFn = Callable[[torch.Tensor, torch.Tensor, float, torch.Generator], None]


def auto_epsilon(fan_in: int, fan_out: int) -> float:
    """Ng's rule ε = √6 / √(s_l + s_(l+1)), with s_l units feeding s_(l+1) units."""
    return math.sqrt(6.0) / math.sqrt(fan_in + fan_out)


def _zero(weight: torch.Tensor, bias: torch.Tensor, epsilon: float, gen: torch.Generator) -> None:
    nn.init.zeros_(weight)
    nn.init.zeros_(bias)


def _epsilon_uniform(weight: torch.Tensor, bias: torch.Tensor, epsilon: float, gen: torch.Generator) -> None:
    nn.init.uniform_(weight, -epsilon, epsilon, generator=gen)
    nn.init.uniform_(bias, -epsilon, epsilon, generator=gen)


def _xavier(weight: torch.Tensor, bias: torch.Tensor, epsilon: float, gen: torch.Generator) -> None:
    nn.init.xavier_uniform_(weight, generator=gen)
    nn.init.zeros_(bias)


def _kaiming(weight: torch.Tensor, bias: torch.Tensor, epsilon: float, gen: torch.Generator) -> None:
    nn.init.kaiming_uniform_(weight, nonlinearity="relu", generator=gen)
    nn.init.zeros_(bias)


def _default(weight: torch.Tensor, bias: torch.Tensor, epsilon: float, gen: torch.Generator) -> None:
    # torch's nn.Linear scheme: U(−1/√fan_in, 1/√fan_in) for weight and bias (kaiming_uniform, a=√5).
    bound = 1.0 / math.sqrt(weight.shape[1])
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=gen)
    nn.init.uniform_(bias, -bound, bound, generator=gen)


INITS: dict[str, InitFn] = {
    "zero": _zero,
    "epsilon_uniform": _epsilon_uniform,
    "xavier": _xavier,
    "kaiming": _kaiming,
    "default": _default,
}


# The built-in schemes that do not read ε (a scheme of one's own may)
TAKE_NO_EPSILON = ("zero", "xavier", "kaiming", "default")


def register_init(name: str, fn: InitFn) -> InitFn:
    """Add a scheme ``fn(weight, bias, epsilon, generator)`` under ``name``."""
    INITS[name] = fn
    return fn


def get_init(name: str) -> InitFn:
    if name not in INITS:
        raise unknown("init", name, INITS)
    return INITS[name]


EPSILON_MAX = torch.finfo(torch.float32).max / 2  # U[-ε, ε] in float32: its width 2ε must be a float32 number


def check_epsilon(epsilon: float | str) -> float | str:
    """Return a valid ε (a number > 0, or "auto"); raise one clear line otherwise."""
    if isinstance(epsilon, str):
        if epsilon == "auto":
            return epsilon
        try:
            epsilon = float(epsilon)
        except ValueError:
            raise ValueError(f"epsilon must be a number > 0 or 'auto', got '{epsilon}'") from None
    valid = isinstance(epsilon, int | float) and not isinstance(epsilon, bool) and 0 < epsilon < math.inf
    if not valid:
        raise ValueError(f"epsilon must be a number > 0 or 'auto', got {epsilon!r}")
    if epsilon > EPSILON_MAX:
        raise ValueError(f"epsilon must be at most {EPSILON_MAX:g} (weights are float32), got {epsilon!r}")
    return float(epsilon)


@torch.no_grad()
def init_linear_layers(
    layers: list[nn.Linear], scheme: str, epsilon: float | str = 0.12, seed: int | None = None
) -> None:
    """Initialise each ``nn.Linear`` in place with ``scheme``; the same seed gives the same weights."""
    fn = get_init(scheme)
    epsilon = check_epsilon(epsilon)
    gen = torch.Generator()
    gen.manual_seed(torch.initial_seed() if seed is None else seed)
    for layer in layers:
        eps = auto_epsilon(layer.in_features, layer.out_features) if epsilon == "auto" else epsilon
        if layer.weight.device.type == "cpu":
            fn(layer.weight, layer.bias, eps, gen)
        else:  # draw on the CPU generator so a seed gives the same numbers on every device
            w, b = layer.weight.cpu(), layer.bias.cpu()
            fn(w, b, eps, gen)
            layer.weight.copy_(w)
            layer.bias.copy_(b)
