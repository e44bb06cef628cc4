"""The typed schema of every config group (Hydra structured configs), stored in Hydra's ConfigStore.

Each YAML file of a group starts from its group's schema (``defaults: [/schema/<group>@_here_, _self_]``), so
Hydra and OmegaConf refuse a key that does not exist and a value of the wrong type before anything
runs; :mod:`nnmodel.validate` checks what a type cannot say (ranges, names, files, cross-key rules).

Importing this module stores the schemas; ``nnmodel.config`` and ``train.py`` do so before composing.
"""

import dataclasses
import inspect
from dataclasses import dataclass, field
from typing import Any

import lightning as L
from hydra.core.config_store import ConfigStore


@dataclass
class DataConfig:
    """``data.*``: which data set, how it is split and batched, and the training-set quality knobs."""

    name: str = "digits"  # a key of nnmodel.data.DATASETS
    batch_size: int = 64  # examples per gradient step
    root: str = "data"  # torchvision sets live under <root>/<ClassName>/raw/
    download: bool = False  # let torchvision fetch missing MNIST-family files
    val_fraction: float = 0.15  # of all examples (MNIST family: of the official train set)
    test_fraction: float = 0.15  # of all examples (ignored by the MNIST family: official test set)
    split_seed: int = 0  # the val split
    test_seed: int = 0  # the fixed test split (digits, circles, moons): declared before any result, never tuned
    train_fraction: float = 1.0  # keep this stratified fraction of the training split
    label_noise: float = 0.0  # fraction of training labels replaced by another random class
    input_noise: float = 0.0  # std of Gaussian noise added once to training inputs
    repeats: int = 64  # logic gates: copies of the 4-row truth table in the training split
    n_samples: int = 1000  # circles/moons: points sampled in all
    noise: float = 0.1  # circles/moons: std of the Gaussian jitter of sklearn's generator
    path: str | None = None  # csv/npz: the file to train on
    target: str | None = None  # csv: the name of the label column
    features: list[str] | None = None  # csv: the input columns; None: every column but the target
    standardize: bool = True  # csv/npz: x' = (x − mean) / std, the training split's mean and std (std 0 → 1)


@dataclass
class ModelConfig:
    """``model.*``: the network h_Θ(x); NNModule's arguments (less those from the data and the optimizer)."""

    hidden: list[int] = field(default_factory=lambda: [128])  # hidden layer sizes; [] = logistic units
    activation: Any = "relu"  # a name, an import path pkg.mod:fn, or a list (one per hidden layer)
    leaky_slope: float = 0.01  # negative slope of leaky_relu
    output: str = "softmax"  # softmax | sigmoid | linear
    init: str = "epsilon_uniform"  # a key of nnmodel.core.init.INITS
    epsilon: Any = 0.12  # ε of epsilon_uniform: a number > 0, or "auto"
    l2: float = 0.0  # λ of λ/(2m) Σ W²
    backprop: str = "autograd"  # autograd | manual


@dataclass
class SchedulerConfig:
    """``optimizer.scheduler.*``: a learning-rate schedule, stepped once per epoch (None: its default)."""

    name: str = "none"  # none | step | exponential | cosine
    step_size: int | None = None
    gamma: float | None = None
    T_max: int | None = None
    eta_min: float | None = None


@dataclass
class OptimizerConfig:
    """``optimizer.*``: a registered optimizer and the ``torch.optim`` knobs a preset or a user sets.

    A knob left None takes the registered optimizer's default; one that the optimizer does not have
    is refused by nnmodel.validate.
    """

    name: str = "adam"  # a key of nnmodel.optim.OPTIMIZERS
    lr: float | None = None
    momentum: float | None = None
    dampening: float | None = None
    nesterov: bool | None = None
    betas: list[float] | None = None
    eps: float | None = None
    weight_decay: float | None = None
    amsgrad: bool | None = None
    rho: float | None = None
    alpha: float | None = None
    centered: bool | None = None
    lr_decay: float | None = None
    initial_accumulator_value: float | None = None
    momentum_decay: float | None = None
    decoupled_weight_decay: bool | None = None
    maximize: bool | None = None
    foreach: bool | None = None
    fused: bool | None = None
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)


@dataclass
class DiagnosticsConfig:
    """``diagnostics.*``: the TensorBoard diagnostics (nnmodel.diagnostics)."""

    enabled: bool = True
    every_n_steps: int = 50
    every_n_epochs: int = 1
    probe_size: int = 256
    histograms: bool = True
    images: bool = True
    max_tiles: int = 100
    max_pictures: int = 10


# The keywords of lightning.Trainer that nnmodel sets itself, and what to use instead (config.own_trainer_key says it)
OWN_TRAINER_KEYS = {
    "trainer.logger": "TensorBoard, in the run directory's tb/; diagnostics=off writes only the curves",
    "trainer.callbacks": "its checkpoints, diagnostics and progress bar; diagnostics=off and progress_refresh_rate=0 "
    "turn the optional ones off",
    "trainer.default_root_dir": "the run directory: paths.output_dir=DIR",
}
NOT_TRAINER_KEYS = ("self", *(key.removeprefix("trainer.") for key in OWN_TRAINER_KEYS))
# ``trainer.*``: every keyword of the installed lightning.Trainer, with its own default, so that any of
# them can be set on the command line and a misspelt one is refused (the types are Lightning's to check).
TrainerConfig = dataclasses.make_dataclass(
    "TrainerConfig",
    [
        (name, Any, field(default=p.default))
        for name, p in inspect.signature(L.Trainer.__init__).parameters.items()
        if name not in NOT_TRAINER_KEYS
    ],
)
TrainerConfig.__module__ = __name__  # so that a composed config pickles (to a forked sweep's worker and back)

SCHEMAS = {
    "data": DataConfig,
    "model": ModelConfig,
    "optimizer": OptimizerConfig,
    "trainer": TrainerConfig,
    "diagnostics": DiagnosticsConfig,
}

# Stored as schema/<group> (each group's YAML files start from /schema/<group>@_here_), not as an option of the group
# itself: there it would be one of the group's choices, listed by --help and taken by a sweep's glob(*)
for _group, _node in SCHEMAS.items():
    ConfigStore.instance().store(group="schema", name=_group, node=_node)
