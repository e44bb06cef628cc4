"""nnmodel.optim: Ruder's optimizers on torch.optim, their defaults, presets and errors."""

from pathlib import Path

import pytest
import torch

from nnmodel.config import compose
from nnmodel.errors import ConfigError
from nnmodel.optim import (
    OPTIMIZERS,
    SCHEDULERS,
    build_from_config,
    build_optimizer,
    build_scheduler,
    register_optimizer,
)
from nnmodel.validate import validate_config

PRESETS = sorted((Path(__file__).parents[1] / "configs" / "optimizer").glob("*.yaml"))


def params() -> list[torch.Tensor]:
    return [torch.zeros(3, requires_grad=True)]


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_registered_optimizer_builds_and_steps(name):
    p = torch.ones(3, requires_grad=True)
    opt = build_optimizer(name, [p])
    (p**2).sum().backward()
    opt.step()
    assert isinstance(opt, OPTIMIZERS[name].cls)
    assert (p < 1).all()  # every method moved downhill


RUDER_DEFAULTS = {
    "momentum": {"momentum": 0.9, "nesterov": False},
    "nag": {"momentum": 0.9, "nesterov": True},
    "adagrad": {"lr": 0.01},
    "adadelta": {"rho": 0.9, "lr": 1.0},
    "rmsprop": {"alpha": 0.9, "lr": 0.001},
    "adam": {"betas": (0.9, 0.999), "eps": 1e-8, "lr": 1e-3, "amsgrad": False},
    "adamax": {"lr": 2e-3, "betas": (0.9, 0.999)},
    "amsgrad": {"amsgrad": True, "betas": (0.9, 0.999), "lr": 1e-3},
    "adamw": {"weight_decay": 0.01, "lr": 1e-3},
}


@pytest.mark.parametrize("name", sorted(RUDER_DEFAULTS))
def test_defaults_are_ruders_values(name):
    defaults = build_optimizer(name, params()).defaults
    assert {k: defaults[k] for k in RUDER_DEFAULTS[name]} == RUDER_DEFAULTS[name]


def test_overrides_win_and_betas_list_becomes_tuple():
    d = build_optimizer("adam", params(), lr=0.02, betas=[0.8, 0.99], eps=1e-6).defaults
    assert (d["lr"], d["betas"], d["eps"]) == (0.02, (0.8, 0.99), 1e-6)


def test_param_groups_from_generators_survive_the_fused_check():
    layer = torch.nn.Linear(2, 2)
    opt = build_optimizer("adam", [{"params": layer.parameters(), "lr": 0.1}])
    assert len(opt.param_groups[0]["params"]) == 2 and opt.param_groups[0]["lr"] == 0.1


def test_fused_kernel_chosen_where_torch_has_it_on_cpu():
    assert build_optimizer("adam", params()).defaults["fused"] is True
    assert build_optimizer("adam", params(), foreach=True).defaults["fused"] is None  # explicit wins
    assert "fused" not in build_optimizer("adadelta", params()).defaults  # torch has none


def refusal(*overrides: str) -> str:
    """The one line nnmodel.validate refuses ``python train.py OVERRIDES`` with (messages: nnmodel.errors' form)."""
    with pytest.raises(ConfigError) as err:
        validate_config(compose(list(overrides)))
    return str(err.value)


ALL = "adadelta, adagrad, adam, adamax, adamw, amsgrad, momentum, nadam, nag, rmsprop, sgd"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["optimizer.name=adamm"],
            f"unknown optimizer 'adamm'; did you mean 'adam'? choose one of: {ALL} "
            "(or register your own with nnmodel.optim.register_optimizer)",
        ),
        (["optimizer=sgd", "optimizer.lr=-0.1"], "optimizer.lr must be a number in (0, inf), got -0.1"),
        (["optimizer=sgd", "optimizer.lr=0"], "optimizer.lr must be a number in (0, inf), got 0.0"),
        (
            ["optimizer=sgd", "optimizer.betas=[0.9,0.999]"],
            "optimizer.betas is not a setting of optimizer 'sgd' (SGD); its settings: "
            "dampening, foreach, fused, lr, maximize, momentum, nesterov, weight_decay",
        ),
        (["optimizer=momentum", "optimizer.momentum=1.0"], "optimizer.momentum must be a number in [0, 1), got 1.0"),
        (["optimizer.betas=[0.9,1.2]"], "optimizer.betas must be two numbers in [0, 1), got [0.9, 1.2]"),
        (["optimizer.eps=0.0"], "optimizer.eps must be a number in (0, inf), got 0.0"),
        (
            ["optimizer=nag", "optimizer.nesterov=false"],
            "optimizer.nesterov is fixed to True for 'nag' (it is what makes it nag), got False; "
            "choose another optimizer instead",
        ),
        (
            ["optimizer.scheduler.name=cosin"],
            "unknown optimizer.scheduler.name 'cosin'; did you mean 'cosine'? "
            "choose one of: cosine, exponential, none, step",
        ),
        (
            ["optimizer.scheduler.name=step", "optimizer.scheduler.step_size=0"],
            "optimizer.scheduler.step_size must be an integer >= 1, got 0",
        ),
        (
            ["optimizer.scheduler.name=exponential", "optimizer.scheduler.gamma=1.5"],
            "optimizer.scheduler.gamma must be a number in (0, 1], got 1.5",
        ),
        (
            ["+optimizer.scheduler.warmup=3"],
            "unknown key 'optimizer.scheduler.warmup'; choose one of: optimizer.scheduler.T_max, "
            "optimizer.scheduler.eta_min, optimizer.scheduler.gamma, optimizer.scheduler.name, "
            "optimizer.scheduler.step_size",
        ),
    ],
)
def test_bad_config_raises_one_line_naming_value_and_choices(overrides, message):
    assert refusal(*overrides) == message


def test_lr_of_the_wrong_type_is_refused_by_the_schema():
    with pytest.raises(Exception) as err:
        compose(["optimizer.lr=fast"])
    assert "Value 'fast' of type 'str' could not be converted to Float" in str(err.value.__cause__)


def test_register_optimizer_plugs_a_users_own_in():
    register_optimizer("sgd_wd", torch.optim.SGD, {"lr": 0.2, "weight_decay": 1e-4})
    try:
        assert build_optimizer("sgd_wd", params()).defaults["weight_decay"] == 1e-4
        with pytest.raises(ValueError, match="already registered"):
            register_optimizer("sgd_wd", torch.optim.SGD)
    finally:
        del OPTIMIZERS["sgd_wd"]


def test_one_momentum_step_matches_ruders_update_by_hand():
    """J(θ) = θ1² + 3θ2², ∇J = (2θ1, 6θ2); v_t = γ v_{t−1} + η ∇J; θ = θ − v_t, γ = 0.9, η = 0.1."""
    theta = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    c = torch.tensor([1.0, 3.0], dtype=torch.float64)
    opt = build_optimizer("momentum", [theta], lr=0.1)
    expected = [[0.8, -0.8], [0.46, 0.76]]  # v1 = (0.2, −1.2); v2 = 0.9 v1 + 0.1 (1.6, −4.8) = (0.34, −1.56)
    for want in expected:
        opt.zero_grad()
        (c * theta**2).sum().backward()
        opt.step()
        torch.testing.assert_close(theta.detach(), torch.tensor(want, dtype=torch.float64), rtol=0, atol=1e-15)


def test_presets_cover_every_registered_optimizer():
    assert sorted(p.stem for p in PRESETS) == sorted(OPTIMIZERS)


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_preset_loads_and_builds_with_its_values(preset):
    cfg = compose([f"optimizer={preset.stem}"]).optimizer
    assert cfg.name == preset.stem
    opt, scheduler = build_from_config(cfg, params())
    for key, value in cfg.items():
        if key not in ("name", "scheduler") and value is not None:
            want = tuple(value) if key == "betas" else value
            assert opt.defaults[key] == want, key
    assert scheduler is None  # scheduler.name: none
    cfg.scheduler.name = "cosine"
    assert build_from_config(cfg, params())[1].T_max == 30


def test_schedulers_build_with_defaults_and_ignore_other_schedulers_keys():
    opt = build_optimizer("sgd", params())
    assert build_scheduler(None, opt) is None
    assert build_scheduler("none", opt, step_size=3) is None
    step = build_scheduler("step", opt, step_size=2, T_max=None)
    assert (step.step_size, step.gamma) == (2, 0.5)
    assert build_scheduler("exponential", opt, step_size=2).gamma == 0.9
    assert sorted(SCHEDULERS) == ["cosine", "exponential", "none", "step"]
