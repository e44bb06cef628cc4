"""The optimizers of Ruder's overview, built on ``torch.optim``, and learning-rate schedules.

Ruder, "An overview of gradient descent optimization algorithms" (2016), writes every
method as an update of the parameters θ from the gradient g_t = ∇θ J(θ_t):

    sgd       θ = θ − η g_t
    momentum  v_t = γ v_{t−1} + η g_t;                      θ = θ − v_t
    nag       v_t = γ v_{t−1} + η ∇θ J(θ − γ v_{t−1});      θ = θ − v_t
    adagrad   G_t = G_{t−1} + g_t²;                         θ = θ − η g_t / √(G_t + ε)
    adadelta  E[g²]_t = ρ E[g²]_{t−1} + (1−ρ) g_t²;
              Δθ_t = −RMS[Δθ]_{t−1} / RMS[g]_t · g_t;       θ = θ + Δθ_t
    rmsprop   E[g²]_t = γ E[g²]_{t−1} + (1−γ) g_t²;         θ = θ − η g_t / √(E[g²]_t + ε)
    adam      m_t = β1 m_{t−1} + (1−β1) g_t;  v_t = β2 v_{t−1} + (1−β2) g_t²;
              m̂_t = m_t/(1−β1^t);  v̂_t = v_t/(1−β2^t);      θ = θ − η m̂_t / (√v̂_t + ε)
    adamax    u_t = max(β2 u_{t−1}, |g_t|);                 θ = θ − η/(1−β1^t) · m_t / u_t
    nadam     θ = θ − η/(√v̂_t + ε) · (β1 m̂_t + (1−β1) g_t/(1−β1^t))
    amsgrad   v̂_t = max(v̂_{t−1}, v_t);                     θ = θ − η m_t / (√v̂_t + ε)
    adamw     Adam with the weight decay taken out of g_t:  θ = θ − η (m̂_t/(√v̂_t+ε) + λ θ)

We never re-implement these updates: torch's are fast (fused / foreach kernels), tested
against reference implementations, and what students will use afterwards. The places where
torch's form differs from Ruder's are noted in each ``configs/optimizer/<name>.yaml``.

``OPTIMIZERS`` holds the paper's defaults (ours where it gives none: the learning rates of SGD,
Momentum and NAG), and each ``configs/optimizer/<name>.yaml`` preset uses the same values; with them
every preset trains 8×8 digits to at least 90 % test accuracy in 30 epochs (``tests/test_train.py``).

Public API: ``OPTIMIZERS``, ``register_optimizer``, ``build_optimizer``, ``state_tensors``,
``SCHEDULERS``, ``build_scheduler``, ``build_from_config``. The config's values are checked by
:mod:`nnmodel.validate` before anything is built.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.optim import lr_scheduler

from nnmodel.errors import unknown

# Constructor arguments that are not hyperparameters a user tunes.
_NOT_KNOBS = frozenset({"params", "capturable", "differentiable"})


@dataclass(frozen=True)
class OptimizerSpec:
    """One registered optimizer: a ``torch.optim`` class plus the kwargs that make it *this* method.

    ``defaults`` are overridable (Ruder's values where he states them, ours otherwise);
    ``fixed`` define the method (``nesterov=True`` makes SGD into NAG) and may only be
    "overridden" with the same value.
    """

    cls: type[torch.optim.Optimizer]
    defaults: dict[str, Any]
    fixed: dict[str, Any] = field(default_factory=dict)

    @property
    def knobs(self) -> frozenset[str]:
        """The keyword arguments of ``cls`` a config may set (lr, betas, ...)."""
        return frozenset(inspect.signature(self.cls).parameters) - _NOT_KNOBS


OPTIMIZERS: dict[str, OptimizerSpec] = {}


def spec(name: str) -> OptimizerSpec:
    if name not in OPTIMIZERS:
        raise unknown("optimizer", name, OPTIMIZERS, "or register your own with nnmodel.optim.register_optimizer")
    return OPTIMIZERS[name]


def optimizer_kwargs(name: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The registered defaults, then the overrides that are set (None: keep the default), then the fixed ones."""
    given = {k: v for k, v in overrides.items() if v is not None}
    kwargs = {**spec(name).defaults, **given, **spec(name).fixed}
    if "betas" in kwargs:
        kwargs["betas"] = tuple(float(b) for b in kwargs["betas"])  # OmegaConf gives a ListConfig
    return kwargs


# Fused kernels where torch has them for the device and dtype (SGD, Adagrad, Adam, AdamW): on CPU they
# step 1.7-2.6x faster than the for-loop form; foreach is no faster there (a model has only a handful of
# tensors), and elsewhere torch's default already picks it. Asked of torch, once per kind, not tabled.


@functools.cache
def _fused_works(name: str, device_type: str, dtype: torch.dtype) -> bool:
    """Whether ``fused=True`` builds and steps for this optimizer on this device and dtype."""
    if "fused" not in OPTIMIZERS[name].knobs:
        return False
    try:
        p = torch.zeros(2, device=device_type, dtype=dtype, requires_grad=True)
        p.grad = torch.ones_like(p)
        OPTIMIZERS[name].cls([p], **optimizer_kwargs(name, {}), fused=True).step()
    except (RuntimeError, ValueError, TypeError, AssertionError):
        return False
    return True


def _tensors(params: list[Any]) -> list[torch.Tensor]:
    """The tensors in ``params``, which may be tensors or param-group dicts."""
    out: list[torch.Tensor] = []
    for p in params:
        group = p["params"] if isinstance(p, Mapping) else p
        out.extend([group] if isinstance(group, torch.Tensor) else group)
    return out


def register_optimizer(
    name: str,
    cls: type[torch.optim.Optimizer],
    defaults: Mapping[str, Any] | None = None,
    fixed: Mapping[str, Any] | None = None,
    *,
    replace: bool = False,
) -> OptimizerSpec:
    """Add ``name`` to ``OPTIMIZERS`` so ``build_optimizer(name, ...)`` and ``optimizer=name`` work."""
    if name in OPTIMIZERS and not replace:
        raise ValueError(f"optimizer '{name}' is already registered; pass replace=True to redefine it")
    spec = OptimizerSpec(cls, dict(defaults or {}), dict(fixed or {}))
    extra = sorted((set(spec.defaults) | set(spec.fixed)) - spec.knobs)
    if extra:
        keys = ", ".join(sorted(spec.knobs))
        raise ValueError(f"{cls.__name__} has no argument(s) {', '.join(extra)}; its keys: {keys}")
    OPTIMIZERS[name] = spec
    _fused_works.cache_clear()  # the probe is keyed by name
    return spec


# Ruder's defaults; the lrs of sgd, momentum and nag are ours (he gives none; chosen for an MLP on 8×8 digits).
_ADAM = {"lr": 0.001, "betas": (0.9, 0.999), "eps": 1e-8}
register_optimizer("sgd", torch.optim.SGD, {"lr": 0.1})
register_optimizer("momentum", torch.optim.SGD, {"lr": 0.1, "momentum": 0.9}, {"nesterov": False})
register_optimizer("nag", torch.optim.SGD, {"lr": 0.1, "momentum": 0.9}, {"nesterov": True})
register_optimizer("adagrad", torch.optim.Adagrad, {"lr": 0.01, "eps": 1e-8})
register_optimizer("adadelta", torch.optim.Adadelta, {"lr": 1.0, "rho": 0.9, "eps": 1e-6})
register_optimizer("rmsprop", torch.optim.RMSprop, {"lr": 0.001, "alpha": 0.9, "eps": 1e-8})
register_optimizer("adam", torch.optim.Adam, _ADAM, {"amsgrad": False})
register_optimizer("adamax", torch.optim.Adamax, {**_ADAM, "lr": 0.002})
register_optimizer("nadam", torch.optim.NAdam, {**_ADAM, "lr": 0.002})  # Dozat's lr
register_optimizer("amsgrad", torch.optim.Adam, _ADAM, {"amsgrad": True})
register_optimizer("adamw", torch.optim.AdamW, {**_ADAM, "weight_decay": 0.01})  # Loshchilov & Hutter's λ


def build_optimizer(
    name: str, params: Iterable[torch.Tensor] | Iterable[dict[str, Any]], **overrides: Any
) -> torch.optim.Optimizer:
    """``OPTIMIZERS[name]`` over ``params`` with its defaults, then ``overrides`` (lr, betas, ...)."""
    kwargs = optimizer_kwargs(name, overrides)
    # Lists, not generators: we look at the tensors before torch does.
    params = [{**p, "params": _tensors([p])} if isinstance(p, Mapping) else p for p in params]
    kinds = {(t.device.type, t.dtype) for t in _tensors(params)}
    if "fused" not in kwargs and "foreach" not in kwargs and len(kinds) == 1 and _fused_works(name, *kinds.pop()):
        kwargs["fused"] = True
    return OPTIMIZERS[name].cls(params, **kwargs)


def state_tensors(name: str, **overrides: Any) -> int:
    """How many tensors the size of a parameter this optimizer keeps per parameter (Adam: 2, SGD: 0).

    Asked of torch, not kept in a table: one step on a small tensor, then the state is counted, so it
    holds for a user's registered optimizer too and follows ``amsgrad``, ``momentum`` or ``centered``.
    """
    p = torch.zeros(3, requires_grad=True)
    p.grad = torch.ones_like(p)
    optimizer = OPTIMIZERS[name].cls([p], **optimizer_kwargs(name, overrides))
    optimizer.step()
    return sum(1 for v in optimizer.state[p].values() if isinstance(v, torch.Tensor) and v.shape == p.shape)


# ---------------------------------------------------------------------------------------------
# Learning-rate schedules, stepped once per epoch.


@dataclass(frozen=True)
class SchedulerSpec:
    """A ``torch.optim.lr_scheduler`` class and its defaults; ``cls=None`` means a constant lr."""

    cls: type[lr_scheduler.LRScheduler] | None
    defaults: dict[str, Any]


SCHEDULERS: dict[str, SchedulerSpec] = {
    "none": SchedulerSpec(None, {}),  # η constant
    "step": SchedulerSpec(lr_scheduler.StepLR, {"step_size": 10, "gamma": 0.5}),  # η ×= γ every k epochs
    "exponential": SchedulerSpec(lr_scheduler.ExponentialLR, {"gamma": 0.9}),  # η ×= γ every epoch
    "cosine": SchedulerSpec(lr_scheduler.CosineAnnealingLR, {"T_max": 30, "eta_min": 0.0}),
    # cosine: η_t = η_min + (η − η_min)(1 + cos(π t/T_max))/2
}


def scheduler_kwargs(name: str | None, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Scheduler ``name``'s defaults, then the knobs of ``kwargs`` that belong to it and are set.

    Knobs of another schedule are ignored, so one YAML block holds the knobs of all of them and
    ``optimizer.scheduler.name=cosine`` alone switches; None means "this schedule's default" (``gamma``
    is 0.5 for step and 0.9 for exponential, and one shared number would suit only one of them).
    """
    own = SCHEDULERS["none" if name is None else name].defaults
    return {**own, **{k: v for k, v in kwargs.items() if k in own and v is not None}}


def build_scheduler(
    name: str | None, optimizer: torch.optim.Optimizer, **kwargs: Any
) -> lr_scheduler.LRScheduler | None:
    """The schedule ``name`` (none, step, exponential, cosine) on ``optimizer``; None for ``none``."""
    if (name or "none") not in SCHEDULERS:
        raise unknown("scheduler", name, SCHEDULERS)
    cls = SCHEDULERS[name or "none"].cls
    if cls is None:
        return None
    kwargs = scheduler_kwargs(name, kwargs)
    for key in ("step_size", "T_max"):
        if key in kwargs:
            kwargs[key] = int(kwargs[key])
    return cls(optimizer, **kwargs)


def build_from_config(
    cfg: Mapping[str, Any], params: Iterable[torch.Tensor] | Iterable[dict[str, Any]]
) -> tuple[torch.optim.Optimizer, lr_scheduler.LRScheduler | None]:
    """Optimizer and schedule from an ``optimizer`` config group (``name``, knobs, ``scheduler``)."""
    knobs = dict(cfg)
    name = knobs.pop("name")
    schedule = dict(knobs.pop("scheduler", None) or {})
    optimizer = build_optimizer(name, params, **knobs)
    return optimizer, build_scheduler(schedule.pop("name", None), optimizer, **schedule)
