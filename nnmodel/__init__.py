"""nnmodel: feedforward neural networks as the lecture teaches them, trained with PyTorch Lightning.

The math (``nnmodel.core``: activations, init, network, backprop) imports no Lightning;
``nnmodel.module`` is where Lightning meets it. ``nnmodel.train``, ``nnmodel.load`` and
``nnmodel.MLPClassifier`` load Lightning and Hydra when first used, so ``import nnmodel`` stays light.
"""

import importlib

from nnmodel.core.activations import ACTIVATIONS, Activation, get_activation, register_activation
from nnmodel.core.backprop import Gradients, backprop, backprop_loop, cost, gradient_check, write_grads
from nnmodel.core.init import INITS, auto_epsilon, register_init
from nnmodel.core.network import FeedForward, n_outputs, set_weights
from nnmodel.errors import ConfigError, DivergedError, Interrupted

__all__ = [
    "ACTIVATIONS",
    "INITS",
    "Activation",
    "ConfigError",
    "DivergedError",
    "FeedForward",
    "Gradients",
    "Interrupted",
    "MLPClassifier",
    "Model",
    "Run",
    "auto_epsilon",
    "backprop",
    "backprop_loop",
    "cost",
    "get_activation",
    "gradient_check",
    "load",
    "n_outputs",
    "register_activation",
    "register_init",
    "set_weights",
    "train",
    "write_grads",
]
_LAZY = {"train": "nnmodel.api", "load": "nnmodel.api", "Run": "nnmodel.api", "Model": "nnmodel.api",
         "MLPClassifier": "nnmodel.estimator"}  # fmt: skip


def __getattr__(name: str):  # PEP 562: the training side is imported on first use
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nnmodel' has no attribute '{name}'")


__version__ = "0.1.0"
