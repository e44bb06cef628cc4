"""nnmodel: feedforward neural networks as the lecture teaches them, trained with PyTorch Lightning.

The math (activations, init, network, backprop) imports no Lightning; ``nnmodel.module`` is where
Lightning meets it.
"""

from nnmodel.core.activations import ACTIVATIONS, Activation, get_activation, register_activation
from nnmodel.core.backprop import Gradients, backprop, backprop_loop, cost, gradient_check, write_grads
from nnmodel.core.init import INITS, auto_epsilon, register_init
from nnmodel.core.network import FeedForward, n_outputs, set_weights

__all__ = [
    "ACTIVATIONS",
    "INITS",
    "Activation",
    "FeedForward",
    "Gradients",
    "auto_epsilon",
    "backprop",
    "backprop_loop",
    "cost",
    "get_activation",
    "gradient_check",
    "n_outputs",
    "register_activation",
    "register_init",
    "set_weights",
    "write_grads",
]
__version__ = "0.1.0"
