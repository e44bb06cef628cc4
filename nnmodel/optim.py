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

Public API: ``OPTIMIZERS``, ``register_optimizer``, ``build_optimizer``,
``validate_optimizer_config``, ``SCHEDULERS``, ``build_scheduler``, ``build_from_config``.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.optim import lr_scheduler

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
    rule: str = ""  # the update rule in Ruder's notation, one line

    @property
    def knobs(self) -> frozenset[str]:
        """The keyword arguments of ``cls`` a config may set (lr, betas, ...)."""
        params = inspect.signature(self.cls).parameters
        return frozenset(params) - _NOT_KNOBS


OPTIMIZERS: dict[str, OptimizerSpec] = {}


# ---------------------------------------------------------------------------------------------
# Choosing the fastest implementation.
#
# Measured on this project's 2-core CPU (torch 2.14), one step over the parameters of a
# 784-800-10 MLP (636k weights), best of 5×20 steps, ms per step, for-loop / foreach / fused:
#   sgd 0.04/0.04/0.04   momentum 0.10/0.10/0.06   adagrad 0.25/0.29/0.10
#   adam 0.36/0.36/0.14  amsgrad 0.43/0.40/0.15   adamw 0.39/0.38/0.14
#   adadelta 0.57/0.57/–  rmsprop 0.28/0.28/–  adamax 0.23/0.23/–  nadam 0.43/0.42/–
# So fused wins by 1.7–2.6× wherever torch has it (SGD, Adagrad, Adam, AdamW; on CUDA too,
# where torch's docs call it the fastest); foreach is no faster than the for-loop on CPU (a
# model has only a handful of tensors to batch), so elsewhere we keep torch's default, which
# already picks foreach on CUDA.


@functools.cache
def _fused_works(name: str, device_type: str, dtype: torch.dtype) -> bool:
    """Whether ``fused=True`` builds and steps for this optimizer on this device and dtype.

    Tried once on a tiny tensor and cached: fused support varies by torch version, device
    and dtype, and asking torch is more reliable than a hand-kept table.
    """
    spec = OPTIMIZERS[name]
    if "fused" not in spec.knobs:
        return False
    try:
        p = torch.zeros(2, device=device_type, dtype=dtype, requires_grad=True)
        p.grad = torch.ones_like(p)
        spec.cls([p], **{**spec.defaults, **spec.fixed}, fused=True).step()
    except (RuntimeError, ValueError, TypeError, AssertionError):
        return False
    return True


def _tensors(params: list[Any]) -> list[torch.Tensor]:
    """The tensors in ``params``, which may be tensors or param-group dicts."""
    out: list[torch.Tensor] = []
    for p in params:
        if isinstance(p, Mapping):
            group = p["params"]
            out.extend([group] if isinstance(group, torch.Tensor) else group)
        else:
            out.append(p)
    return out


def _impl_kwargs(name: str, params: list[Any]) -> dict[str, Any]:
    tensors = _tensors(params)
    if not tensors:
        return {}
    kinds = {(t.device.type, t.dtype) for t in tensors}
    if len(kinds) == 1 and all(not t.is_sparse for t in tensors) and _fused_works(name, *kinds.pop()):
        return {"fused": True}
    return {}


def state_tensors(name: str, **overrides: Any) -> int:
    """How many tensors the size of a parameter this optimizer keeps per parameter (Adam: 2, SGD: 0).

    Asked of torch, not kept in a table: one step on a small tensor, then the state is counted, so it
    holds for a user's registered optimizer too and follows ``amsgrad``, ``momentum`` or ``centered``.
    """
    p = torch.zeros(3, requires_grad=True)
    p.grad = torch.ones_like(p)
    optimizer = OPTIMIZERS[name].cls([p], **_merged_kwargs(name, overrides))
    optimizer.step()
    return sum(1 for v in optimizer.state[p].values() if isinstance(v, torch.Tensor) and v.shape == p.shape)


def register_optimizer(
    name: str,
    cls: type[torch.optim.Optimizer],
    defaults: Mapping[str, Any] | None = None,
    fixed: Mapping[str, Any] | None = None,
    rule: str = "",
    *,
    replace: bool = False,
) -> OptimizerSpec:
    """Add ``name`` to ``OPTIMIZERS`` so ``build_optimizer(name, ...)`` and ``optimizer=name`` work."""
    if name in OPTIMIZERS and not replace:
        raise ValueError(f"optimizer '{name}' is already registered; pass replace=True to redefine it")
    spec = OptimizerSpec(cls, dict(defaults or {}), dict(fixed or {}), rule)
    unknown = sorted((set(spec.defaults) | set(spec.fixed)) - spec.knobs)
    if unknown:
        raise ValueError(
            f"{cls.__name__} has no argument(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(spec.knobs))}"
        )
    OPTIMIZERS[name] = spec
    _fused_works.cache_clear()  # the probe is keyed by name
    return spec


# Ruder's defaults; lrs marked "ours" are where he gives none (chosen for an MLP on 8×8 digits).
register_optimizer("sgd", torch.optim.SGD, {"lr": 0.1}, rule="θ = θ − η g")  # lr ours, as configs/optimizer/sgd.yaml
register_optimizer(
    "momentum",
    torch.optim.SGD,
    {"lr": 0.1, "momentum": 0.9},
    {"nesterov": False},
    rule="v = γ v + η g;  θ = θ − v",
)  # lr ours
register_optimizer(
    "nag",
    torch.optim.SGD,
    {"lr": 0.1, "momentum": 0.9},
    {"nesterov": True},
    rule="v = γ v + η ∇J(θ − γ v);  θ = θ − v",
)  # lr ours
register_optimizer("adagrad", torch.optim.Adagrad, {"lr": 0.01, "eps": 1e-8}, rule="G += g²;  θ = θ − η g/√(G + ε)")
register_optimizer(
    "adadelta",
    torch.optim.Adadelta,
    {"lr": 1.0, "rho": 0.9, "eps": 1e-6},
    rule="θ = θ − RMS[Δθ]/RMS[g] · g",
)
register_optimizer(
    "rmsprop",
    torch.optim.RMSprop,
    {"lr": 0.001, "alpha": 0.9, "eps": 1e-8},
    rule="E[g²] = γ E[g²] + (1−γ) g²;  θ = θ − η g/√(E[g²] + ε)",
)
_ADAM = {"lr": 0.001, "betas": (0.9, 0.999), "eps": 1e-8}
register_optimizer("adam", torch.optim.Adam, _ADAM, {"amsgrad": False}, rule="θ = θ − η m̂/(√v̂ + ε)")
register_optimizer("adamax", torch.optim.Adamax, {**_ADAM, "lr": 0.002}, rule="u = max(β2 u, |g|);  θ = θ − η m̂/u")
register_optimizer(
    "nadam",
    torch.optim.NAdam,
    {**_ADAM, "lr": 0.002},
    rule="θ = θ − η/(√v̂ + ε) · (β1 m̂ + (1−β1) g/(1−β1^t))",
)  # lr: Dozat's 0.002
register_optimizer("amsgrad", torch.optim.Adam, _ADAM, {"amsgrad": True}, rule="v̂ = max(v̂, v);  θ = θ − η m/(√v̂ + ε)")
register_optimizer(
    "adamw",
    torch.optim.AdamW,
    {**_ADAM, "weight_decay": 0.01},
    rule="θ = θ − η (m̂/(√v̂ + ε) + λ θ)",
)  # weight_decay: torch's (and Loshchilov & Hutter's) 0.01


# ---------------------------------------------------------------------------------------------
# Validation: one checker per key, each returning what the value must be, or None if it is fine.


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _check(pred: Callable[[float], bool], must: str) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        if not _is_number(v):
            return f"must be a number {must}"
        return None if pred(v) else f"must be {must}"

    return check


def _check_bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else "must be true or false"


def _check_optional_bool(v: Any) -> str | None:
    return None if v is None or isinstance(v, bool) else "must be true, false or null"


def _check_betas(v: Any) -> str | None:
    ok = (
        not isinstance(v, (str, bytes))
        and isinstance(v, Iterable)
        and len(b := list(v)) == 2
        and all(_is_number(x) and 0 <= x < 1 for x in b)
    )
    return None if ok else "must be two numbers in [0, 1)"


_gt0 = _check(lambda v: v > 0, "> 0")
_ge0 = _check(lambda v: v >= 0, ">= 0")
_unit = _check(lambda v: 0 <= v < 1, "in [0, 1)")

_OPTIMIZER_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "lr": _gt0,
    "eps": _gt0,
    "momentum": _unit,
    "betas": _check_betas,
    "rho": _unit,
    "alpha": _unit,
    "dampening": _check(lambda v: 0 <= v <= 1, "in [0, 1]"),
    "weight_decay": _ge0,
    "lr_decay": _ge0,
    "momentum_decay": _ge0,
    "initial_accumulator_value": _ge0,
    "nesterov": _check_bool,
    "amsgrad": _check_bool,
    "centered": _check_bool,
    "maximize": _check_bool,
    "decoupled_weight_decay": _check_bool,
    "foreach": _check_optional_bool,
    "fused": _check_optional_bool,
}


def unknown_name(kind: str, key: str, name: Any, choices: Iterable[str]) -> ValueError:
    """``unknown KIND 'NAME' for KEY; did you mean '...'? choose one of: ...`` as a ValueError."""
    choices = sorted(choices)
    close = difflib.get_close_matches(str(name), choices, n=1)
    hint = f" did you mean '{close[0]}'?" if close else ""
    return ValueError(f"unknown {kind} '{name}' for {key};{hint} choose one of: {', '.join(choices)}")


def _spec(name: str) -> OptimizerSpec:
    if name not in OPTIMIZERS:
        raise unknown_name("optimizer", "optimizer.name", name, OPTIMIZERS)
    return OPTIMIZERS[name]


def _merged_kwargs(name: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Ruder's defaults ← overrides ← fixed kwargs, validated; ``betas`` from YAML becomes a tuple."""
    spec = _spec(name)
    knobs = spec.knobs
    for key, value in overrides.items():
        if key not in knobs:
            raise ValueError(
                f"unknown key '{key}' for optimizer '{name}' (optimizer.{key}); valid keys: {', '.join(sorted(knobs))}"
            )
        if key in spec.fixed and value != spec.fixed[key]:
            raise ValueError(
                f"optimizer.{key} is fixed to {spec.fixed[key]} for '{name}' (it is what makes it "
                f"{name}), got {value!r}; choose another optimizer instead"
            )
        check = _OPTIMIZER_CHECKS.get(key)
        problem = check(value) if check else None
        if problem:
            raise ValueError(f"optimizer.{key} {problem}, got {value!r}")
    kwargs = {**spec.defaults, **overrides, **spec.fixed}
    if "betas" in kwargs:
        kwargs["betas"] = tuple(float(b) for b in kwargs["betas"])  # OmegaConf gives a ListConfig
    return kwargs


def validate_optimizer_config(name: str, **kwargs: Any) -> None:
    """Raise a one-line ``ValueError`` if ``optimizer=name`` with these keys could not be built.

    Checks without parameters, so a run fails before data loading. A ``scheduler`` mapping
    (the ``optimizer.scheduler`` block of the YAML) is checked as well.
    """
    scheduler = kwargs.pop("scheduler", None)
    _merged_kwargs(name, kwargs)
    if scheduler is not None:
        scheduler = dict(scheduler)
        _scheduler_kwargs(scheduler.pop("name", None), scheduler)


def build_optimizer(
    name: str, params: Iterable[torch.Tensor] | Iterable[dict[str, Any]], **overrides: Any
) -> torch.optim.Optimizer:
    """``OPTIMIZERS[name]`` over ``params`` with Ruder's defaults, then ``overrides`` (lr, betas, ...).

    Uses torch's fused kernel where it exists for this device and dtype (see the measurements
    above), unless ``fused`` or ``foreach`` is given explicitly.
    """
    kwargs = _merged_kwargs(name, overrides)
    # Lists, not generators: we look at the tensors before torch does.
    params = [{**p, "params": _tensors([p])} if isinstance(p, Mapping) else p for p in params]
    if "fused" not in overrides and "foreach" not in overrides:
        kwargs.update(_impl_kwargs(name, params))
    return OPTIMIZERS[name].cls(params, **kwargs)


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

_positive_int = _check(lambda v: v >= 1 and float(v).is_integer(), "an integer >= 1")
_SCHEDULER_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "step_size": _positive_int,
    "T_max": _positive_int,
    "gamma": _check(lambda v: 0 < v <= 1, "in (0, 1]"),
    "eta_min": _ge0,
}


def _scheduler_kwargs(name: str | None, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Validated kwargs for scheduler ``name``.

    Keys that belong to another scheduler are ignored, so one YAML block can hold the knobs of
    all of them and ``optimizer.scheduler.name=cosine`` alone switches; keys of none are errors.
    A value of None means "this scheduler's default" (``gamma`` is 0.5 for step, 0.9 for
    exponential, and one shared number would suit only one of them).
    """
    name = "none" if name is None else name
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if name not in SCHEDULERS:
        raise unknown_name("scheduler", "optimizer.scheduler.name", name, SCHEDULERS)
    valid = {k for spec in SCHEDULERS.values() for k in spec.defaults}
    own = SCHEDULERS[name].defaults
    for key, value in kwargs.items():
        if key not in valid:
            raise ValueError(
                f"unknown key '{key}' for optimizer.scheduler; valid keys: name, {', '.join(sorted(valid))}"
            )
        check = _SCHEDULER_CHECKS.get(key)
        problem = check(value) if check else None
        if key in own and problem:
            raise ValueError(f"optimizer.scheduler.{key} {problem}, got {value!r}")
    return {**own, **{k: v for k, v in kwargs.items() if k in own}}


def build_scheduler(
    name: str | None, optimizer: torch.optim.Optimizer, **kwargs: Any
) -> lr_scheduler.LRScheduler | None:
    """The schedule ``name`` (none, step, exponential, cosine) on ``optimizer``; None for ``none``."""
    kwargs = _scheduler_kwargs(name, kwargs)
    cls = SCHEDULERS["none" if name is None else name].cls
    if cls is None:
        return None
    for key in ("step_size", "T_max"):
        if key in kwargs:
            kwargs[key] = int(kwargs[key])
    return cls(optimizer, **kwargs)


def build_from_config(
    cfg: Mapping[str, Any], params: Iterable[torch.Tensor] | Iterable[dict[str, Any]]
) -> tuple[torch.optim.Optimizer, lr_scheduler.LRScheduler | None]:
    """Optimizer and schedule from an ``optimizer`` config group (``name``, knobs, ``scheduler``).

    Works with a plain dict or an OmegaConf ``DictConfig`` (``cfg.optimizer``).
    """
    knobs = dict(cfg)
    name = knobs.pop("name")
    scheduler = dict(knobs.pop("scheduler", None) or {})
    _scheduler_kwargs(scheduler.get("name"), {k: v for k, v in scheduler.items() if k != "name"})
    optimizer = build_optimizer(name, params, **knobs)
    scheduler_name = scheduler.pop("name", None)
    return optimizer, build_scheduler(scheduler_name, optimizer, **scheduler)
