"""One training step's gradients as a CUDA graph: ``cuda_graphs=true`` (off by default).

On a GPU, a step of the small networks nnmodel trains is a few dozen kernels of microseconds each, and
the host's work to launch them (Python, torch's dispatcher, the autograd engine) takes longer than the
GPU's to run them. A CUDA graph records the kernels of one minibatch's forward pass, cost and
gradients once and replays them with one launch (torch's public ``torch.cuda.CUDAGraph`` and
``torch.cuda.graph``, as in torch's "whole-network capture", less the optimizer step).

The optimizer step stays outside the graph, through Lightning's optimizer, so every step still advances
``trainer.global_step`` and runs the ``on_before_optimizer_step`` hooks; the updates are the same
arithmetic as without the graph. What the graph changes:

* the gradients come from the recorded kernels, written into each parameter's ``.grad``: Lightning's
  ``manual_backward`` (and with it the ``on_before_backward``/``on_after_backward`` hooks) is not called
  for a captured step;
* only a minibatch of the captured shape replays (every one but an epoch's short last one, which runs
  as without the graph);
* one process, one GPU (the DDP strategy averages gradients inside ``backward``, which a replay skips):
  ``nnmodel.validate`` refuses ``cuda_graphs=true`` on a CPU or with more than one device.

Both backprop modes can be captured: autograd (``torch.autograd.grad`` recorded in the graph) and the
hand-written backprop of :mod:`nnmodel.core.backprop`. Whether it pays is measured by ``python bench/gpu.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from nnmodel.core.backprop import Gradients

# x, y -> J, the output layer's z and ∂J/∂W, ∂J/∂b of every layer (nnmodel.core.backprop.Gradients)
GradientFn = Callable[[torch.Tensor, torch.Tensor], Gradients]

WARMUP_STEPS = 3  # torch's whole-network capture example warms up 3 iterations on a side stream


class CapturedGradients:
    """``fn`` recorded as a CUDA graph for inputs shaped like ``x`` and ``y``; calling it replays the graph.

    ``fn`` must be a pure function of its inputs and the parameters' current values (it may not step an
    optimizer or sync with the host). The warm-up runs it ``WARMUP_STEPS`` times on a side stream, as torch's
    CUDA-graph notes require before capturing autograd; it changes nothing, since ``fn`` only computes.
    """

    def __init__(self, fn: GradientFn, x: torch.Tensor, y: torch.Tensor) -> None:
        if not x.is_cuda:
            raise ValueError(f"a CUDA graph captures CUDA work; the inputs are on {x.device}")
        self.x, self.y = x.clone(), y.clone()  # the graph's static inputs: each step copies its minibatch here
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                fn(self.x, self.y)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = fn(self.x, self.y)  # static outputs, rewritten by each replay

    def fits(self, x: torch.Tensor, y: torch.Tensor) -> bool:
        """Whether this minibatch has the captured shapes and dtypes (an epoch's short last one does not)."""
        return x.shape == self.x.shape and y.shape == self.y.shape and x.dtype == self.x.dtype

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> Gradients:
        """This minibatch's J and z as copies, which the next replay leaves alone, and its gradients as the graph's
        own buffers: valid until the next replay, which comes after the optimizer has stepped with them."""
        self.x.copy_(x)
        self.y.copy_(y)
        self.graph.replay()
        return dataclasses.replace(self.out, cost=self.out.cost.clone(), logits=self.out.logits.clone())
