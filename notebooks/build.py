"""Build notebooks/lecture.ipynb from the cells below, and optionally execute it in place.

    python notebooks/build.py            # write the notebook without outputs
    python notebooks/build.py --execute  # write it, run it top to bottom (nbclient) and save the outputs

The cells are plain strings, so a change to the lecture is a reviewable diff of this file; the committed
notebook is this file's output, executed (``tests/test_notebook.py`` checks that the two agree).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NOTEBOOK = HERE / "lecture.ipynb"

CELLS: list[tuple[str, str]] = []


def md(text: str) -> None:
    CELLS.append(("markdown", text.strip("\n")))


def code(text: str) -> None:
    CELLS.append(("code", text.strip("\n")))


# ----------------------------------------------------------------------------- title and set-up

md(r"""
# Feedforward neural networks: the lecture, with nnmodel

The slides in their order, each with a short explanation and the code that shows it, using
[nnmodel](../README.md)'s public API: `FeedForward` (the network h_Θ(x)), `set_weights` (slide-style Θ),
`FeedForward.trace` (every z^(l) and a^(l)), `nnmodel.backprop`, `nnmodel.cost`, `nnmodel.gradient_check`,
and `nnmodel.train(*overrides)`, which trains exactly as `python train.py OVERRIDES` does and returns a
`Run` (`.metrics`, `.history`, `.model`, `.plot()`, `.checkpoint`).

1. The logistic unit: AND, OR, and why XOR needs a hidden layer
2. Activation functions and their derivatives
3. Initialisation: zero weights and symmetry, ε-uniform
4. Forward propagation by hand
5. Backpropagation: the δ terms by hand, autograd, and the gradient check
6. Training on the digits
7. The optimizers compared
8. The five things training depends on

**Notation.** Layers are numbered l = 1 … L; s_l units in layer l; a^(1) = x; z^(l+1) = Θ^(l) a^(l) with
a bias unit a_0^(l) = 1 added to a^(l), so the bias is column 0 of Θ^(l); a^(l) = g(z^(l)); h_Θ(x) = a^(L).
nnmodel keeps torch's convention inside: each layer holds W^(l) (Θ^(l) without column 0) and b^(l)
(column 0) apart, and a batch has one example per row, so z^(l+1) = a^(l) W^(l)ᵀ + b^(l).

Everything runs on the CPU in about a minute, on scikit-learn's bundled 8×8 digits (no download);
every run writes its directory (TensorBoard logs, checkpoints, `result.json`) under a temporary directory.
""")

code(r"""
import contextlib
import io
import shutil
import tempfile

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

import nnmodel
from nnmodel import FeedForward, set_weights
from nnmodel.core.network import count_parameters, distinct_units
from nnmodel.diagnostics import boundary_figure

%matplotlib inline
plt.rcParams.update({"figure.dpi": 72, "figure.figsize": (9, 3.2), "axes.grid": True, "grid.alpha": 0.3})
pd.set_option("display.precision", 4)
torch.set_printoptions(precision=4, sci_mode=False)
torch.set_num_threads(1)  # these small networks train faster on one thread, most of all on a shared machine

OUT = tempfile.mkdtemp(prefix="nnmodel-lecture-")  # every run's directory goes here, not into the repository
QUIET = ("diagnostics=off", "progress_refresh_rate=0")  # no TensorBoard diagnostics, no progress bar


def train(name, *overrides, show=False):
    # nnmodel.train with this notebook's defaults; its summary is printed only when show=True
    args = (*QUIET, f"paths.output_dir={OUT}/{name}", *overrides)
    if show:
        return nnmodel.train(*args)
    with contextlib.redirect_stdout(io.StringIO()):
        return nnmodel.train(*args)


def table(runs, **extra):
    # one row per run: the final metrics (val: the last epoch; test: the best checkpoint by val/acc)
    keys = ["status", "epochs", "val/acc", "val/loss", "test/acc", "seconds"]
    rows = {label: {k: run.metrics.get(k) for k in keys} for label, run in runs.items()}
    frame = pd.DataFrame(rows).T
    for column, values in extra.items():
        frame.insert(0, column, values)
    return frame


def curves(runs, title, logy=True):
    # val/loss and val/acc per epoch, one line per run
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2)
    for label, run in runs.items():
        history = run.history
        ax_loss.plot(history.index, history["val/loss"], marker=".", label=label)
        ax_acc.plot(history.index, history["val/acc"], marker=".", label=label)
    ax_loss.set(xlabel="epoch", ylabel="val J(Θ)", yscale="log" if logy else "linear")
    ax_acc.set(xlabel="epoch", ylabel="val accuracy")
    ax_acc.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    plt.show()
""")

# ----------------------------------------------------------------------------- 1. logistic unit

md(r"""
## 1. The logistic unit: AND, OR, XOR

One logistic unit computes h_Θ(x) = g(Θ_0 + Θ_1 x_1 + Θ_2 x_2) with the sigmoid g(z) = 1 / (1 + e^(−z)).
With Θ = [−30, 20, 20] it is AND: z = −30 for x = (0, 0), −10 when one input is 1, and +10 only when
both are; g(−30) ≈ 9·10⁻¹⁴, g(−10) ≈ 4.5·10⁻⁵, g(10) ≈ 0.99995. In nnmodel it is a `FeedForward`
with no hidden layer and a sigmoid output; `set_weights` takes the slide's Θ with the bias in column 0.
""")

code(r"""
X = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])  # the truth table's four inputs, one per row

and_unit = set_weights(FeedForward(2, [], 1, output="sigmoid"), [[[-30.0, 20.0, 20.0]]])
h = and_unit.h(X)[:, 0]
print(" x1  x2   h_Θ(x)")
for (x1, x2), hx in zip(X.tolist(), h.tolist()):
    print(f"  {x1:.0f}   {x2:.0f}   {hx:.2e}")
print("AND:", and_unit.predict(X).tolist())
""")

md(r"""
Θ = [−10, 20, 20] is OR: z = −10 only for x = (0, 0). Each unit draws one straight line, Θ_0 + Θ_1 x_1 +
Θ_2 x_2 = 0, and says 1 on one side of it (the decision boundary).
""")

code(r"""
or_unit = set_weights(FeedForward(2, [], 1, output="sigmoid"), [[[-10.0, 20.0, 20.0]]])
print("OR: ", or_unit.predict(X).tolist())

for net, labels, title in [
    (and_unit, [0, 0, 0, 1], "AND, Θ = [−30, 20, 20]"),
    (or_unit, [0, 1, 1, 1], "OR, Θ = [−10, 20, 20]"),
]:
    fig = boundary_figure(net, X, torch.tensor(labels), title, n=100)
    fig.set_size_inches(3.2, 2.9)
    fig.axes[0].collections[-1].set_sizes([60])  # the four points, larger
    display(fig)
""")

md(r"""
**XOR** (1 when exactly one input is 1) puts (0, 1) and (1, 0) on one side and (0, 0), (1, 1) on the
other: no straight line separates them, so no single logistic unit computes it, whatever Θ. A hidden
layer does: XNOR = (x_1 AND x_2) OR ((NOT x_1) AND (NOT x_2)), the slide's 2-2-1 network with
Θ^(1) = [[−30, 20, 20], [10, −20, −20]] and Θ^(2) = [−10, 20, 20]; XOR is its negation,
Θ^(2) = [10, −20, −20].
""")

code(r"""
theta1 = [[-30.0, 20.0, 20.0], [10.0, -20.0, -20.0]]  # a_1^(2) = x1 AND x2, a_2^(2) = (NOT x1) AND (NOT x2)
xnor = set_weights(FeedForward(2, [2], 1, activation="sigmoid", output="sigmoid"), [theta1, [[-10.0, 20.0, 20.0]]])
xor = set_weights(FeedForward(2, [2], 1, activation="sigmoid", output="sigmoid"), [theta1, [[10.0, -20.0, -20.0]]])
print("hidden a^(2):", xor.trace(X).a[1].round().int().tolist())
print("XNOR (2-2-1 by hand):", xnor.predict(X).tolist())
print("XOR (2-2-1 by hand):", xor.predict(X).tolist())
""")

md(r"""
Now let gradient descent find Θ: `nnmodel.train("data=xor", ...)` trains on the truth table (repeated
16 times per epoch, batches of 4; validation and test are the 4 rows). With no hidden layer
(`model.hidden=[]`) the unit never gets more than 3 of the 4 rows right, and its validation cost stays
near ln 2 ≈ 0.693, no better than a coin; with 4 tanh hidden units, 2-4-1, it learns XOR.
`run.model` is the trained network (the best checkpoint by val/acc).
""")

code(r"""
GATE = ("data=xor", "model.output=sigmoid", "model.epsilon=2.0", "optimizer.lr=0.05", "data.repeats=16")
xor_unit = train("xor_logistic", *GATE, "model.hidden=[]", "trainer.max_epochs=15")
xor_net = train("xor_hidden", *GATE, "model.hidden=[4]", "model.activation=tanh", "trainer.max_epochs=15")
for name, run in [("2-1   (no hidden layer)", xor_unit), ("2-4-1 (4 tanh units)", xor_net)]:
    print(
        f"{name}: val/acc {run.metrics['val/acc']:.2f}, val J(Θ) {run.metrics['val/loss']:.4f}, "
        f"predicts {run.model.predict(X).tolist()}"
    )

y_xor = torch.tensor([0, 1, 1, 0])
for run, title in [(xor_unit, "XOR: one logistic unit fails"), (xor_net, "XOR: a 2-4-1 network solves it")]:
    fig = boundary_figure(run.model, X, y_xor, title, n=100)
    fig.set_size_inches(3.2, 2.9)
    fig.axes[0].collections[-1].set_sizes([60])  # the four points, larger
    display(fig)
""")

# ----------------------------------------------------------------------------- 2. activations

md(r"""
## 2. Activation functions and their derivatives

Backpropagation multiplies by g′(z^(l)) at every hidden layer, so the derivative decides how much
gradient gets through:

| g | g(z) | g′(z) |
|---|---|---|
| step | 1 if z ≥ 0, else 0 | 0 (almost everywhere): nothing to learn from |
| sigmoid | 1 / (1 + e^(−z)) | g(z)(1 − g(z)) ≤ ¼ |
| tanh | (e^z − e^(−z)) / (e^z + e^(−z)) | 1 − g(z)² ≤ 1 |
| ReLU | max(0, z) | 1 for z > 0, else 0 |
| leaky ReLU | z for z > 0, else αz | 1 or α |

nnmodel keeps each g beside its g′ (`nnmodel.get_activation(name)`, `.grad(z, a)`); the plot uses
α = 0.1 to make the leaky slope visible (nnmodel's default is 0.01).
""")

code(r"""
z = torch.linspace(-4, 4, 401)
fig, (ax_g, ax_d) = plt.subplots(1, 2)
for name in ["step", "sigmoid", "tanh", "relu", "leaky_relu"]:
    g = nnmodel.get_activation(name, leaky_slope=0.1)
    a = g(z)
    ax_g.plot(z, a, label=name)
    ax_d.plot(z, g.grad(z, a), label=name)
    print(f"{name:10s} max g'(z) on [-4, 4]: {g.grad(z, a).max():.3f}")
ax_g.set(xlabel="z", ylabel="g(z)", ylim=(-1.5, 2.5), title="activation g(z)")
ax_d.set(xlabel="z", ylabel="g′(z)", ylim=(-0.1, 1.2), title="derivative g′(z)")
ax_g.legend(fontsize=8)
fig.tight_layout()
plt.show()
""")

# ----------------------------------------------------------------------------- 3. initialisation

md(r"""
## 3. Initialisation: symmetry

With every Θ = 0, all hidden units of a layer compute the same a^(2) (σ(0) = 0.5), receive the same
δ^(2) and the same update, and so stay identical forever: the layer behaves like a single unit.
Drawing each weight uniformly from [−ε, ε] (the slides' ε = 0.12) breaks the symmetry.

Two runs on the digits, a 64-16-10 sigmoid network and Adam (η = 0.01) for 3 epochs, differing only in
`model.init`. `distinct_units` counts the hidden units whose incoming weights differ.
""")

code(r"""
SYM = ("model.hidden=[16]", "model.activation=sigmoid", "optimizer=adam", "optimizer.lr=0.01", "trainer.max_epochs=3")
init_runs = {
    "zero": train("init_zero", *SYM, "model.init=zero"),
    "ε-uniform, ε = 0.12": train("init_eps", *SYM, "model.init=epsilon_uniform", "model.epsilon=0.12"),
}
fig, axes = plt.subplots(1, 2, figsize=(9, 2.6))
for ax, (name, run) in zip(axes, init_runs.items()):
    W1 = run.model.layers[0].weight.detach()  # W^(1): one row per hidden unit, one column per pixel
    spread = (W1 - W1[0]).abs().max().item()
    print(
        f"{name}: distinct hidden units: {distinct_units(run.model.layers[0])} of {len(W1)}, "
        f"max |W^(1) row i − row 1| = {spread:.1e}, |W^(1)| max {W1.abs().max():.3f}, "
        f"val/acc {run.metrics['val/acc']:.3f}"
    )
    ax.imshow(W1, aspect="auto", cmap="RdBu", vmin=-W1.abs().max(), vmax=W1.abs().max())
    ax.set(title=f"W^(1) after 3 epochs: {name}", xlabel="input pixel", ylabel="hidden unit")
    ax.grid(False)
fig.tight_layout()
plt.show()
""")

md(r"""
After training, the zero-initialised W^(1) has moved away from 0, but every row (hidden unit) is the
same: 16 units doing the work of one (at the first step δ^(2) is even 0, since Θ^(2) = 0). The
ε-uniform network has 16 different units and learns far more in the same 3 epochs.
""")

# ----------------------------------------------------------------------------- 4. forward propagation

md(r"""
## 4. Forward propagation, one example by hand

A 3-4-2 network, sigmoid hidden and output units, in float64. For one example x:

a^(1) = x, add a_0^(1) = 1;  z^(2) = Θ^(1) a^(1);  a^(2) = g(z^(2)), add a_0^(2) = 1;
z^(3) = Θ^(2) a^(2);  h_Θ(x) = a^(3) = g(z^(3)).

Θ^(l) is W^(l) with b^(l) as column 0. `FeedForward.trace(x)` returns every z^(l) and a^(l)
(`trace.a[0]` is a^(1), `trace.z[0]` is z^(2): Python counts from 0).
""")

code(r"""
net = FeedForward(3, [4], 2, activation="sigmoid", output="sigmoid", seed=0).double()
Theta1, Theta2 = (torch.cat([layer.bias[:, None], layer.weight], dim=1).detach() for layer in net.layers)
sigmoid = lambda z: 1 / (1 + torch.exp(-z))

x = torch.tensor([1.0, 0.5, -1.0], dtype=torch.float64)
a1 = torch.cat([torch.ones(1, dtype=torch.float64), x])  # [1, x1, x2, x3]
z2 = Theta1 @ a1  # (4,) = (4 × 4) @ (4,)
a2 = torch.cat([torch.ones(1, dtype=torch.float64), sigmoid(z2)])  # [1, a_1^(2), ..., a_4^(2)]
z3 = Theta2 @ a2  # (2,) = (2 × 5) @ (5,)
a3 = sigmoid(z3)  # h_Θ(x)
print("Θ^(1) =", Theta1, sep="\n")
print("a^(1) =", a1, "\nz^(2) =", z2, "\na^(2) =", a2, "\nz^(3) =", z3, "\nh_Θ(x) = a^(3) =", a3)

trace = net.trace(x[None, :])  # one example = a batch of one row
diff = max(
    (z2 - trace.z[0][0]).abs().max(),
    (a2[1:] - trace.a[1][0]).abs().max(),
    (z3 - trace.z[1][0]).abs().max(),
    (a3 - trace.a[2][0]).abs().max(),
).item()
print("trace:  z^(2) =", trace.z[0][0].detach(), "\n        h_Θ(x) =", trace.a[2][0].detach())
print(f"forward: max |hand − trace| = {diff:.1e}")
""")

# ----------------------------------------------------------------------------- 5. backprop

md(r"""
## 5. Backpropagation: the δ terms

For the cost of K logistic output units over m examples,

J(Θ) = −(1/m) Σ_i Σ_k [ y_k^(i) log h_Θ(x^(i))_k + (1 − y_k^(i)) log(1 − h_Θ(x^(i))_k) ]  (+ λ/(2m) Σ Θ², no bias)

the "error" of each unit is

- δ^(3) = a^(3) − y (output layer),
- δ^(2) = (Θ^(2))ᵀ δ^(3) .* g′(z^(2)), the bias row dropped, with g′(z^(2)) = a^(2) .* (1 − a^(2)),

and the gradient is D^(l) = (1/m) Σ_i δ^(l+1) (a^(l))ᵀ = ∂J/∂Θ^(l). Below, m = 5 examples (one per row),
by hand, beside torch.autograd's gradient of `nnmodel.cost` and nnmodel's own `nnmodel.backprop`.
""")

code(r"""
gen = torch.Generator().manual_seed(0)
m = 5
X5 = torch.rand(m, 3, generator=gen, dtype=torch.float64)
y5 = torch.tensor([0, 1, 1, 0, 1])
Y = torch.nn.functional.one_hot(y5, 2).double()  # (m, K): y^(i) as a 0/1 vector
ones = torch.ones(m, 1, dtype=torch.float64)

A1 = torch.cat([ones, X5], dim=1)  # (m, 4): a^(1) with the bias unit, one example per row
A2 = torch.cat([ones, sigmoid(A1 @ Theta1.T)], dim=1)  # (m, 5)
A3 = sigmoid(A2 @ Theta2.T)  # (m, 2) = h_Θ(x)
J = -(Y * torch.log(A3) + (1 - Y) * torch.log(1 - A3)).sum() / m

delta3 = A3 - Y  # δ^(3) = a^(3) − y
delta2 = (delta3 @ Theta2)[:, 1:] * A2[:, 1:] * (1 - A2[:, 1:])  # δ^(2) = (Θ^(2))ᵀ δ^(3) .* g'(z^(2))
D1, D2 = delta2.T @ A1 / m, delta3.T @ A2 / m  # D^(l) = (1/m) Σ_i δ^(l+1) (a^(l))ᵀ, bias in column 0
print("δ^(3) =", delta3, "δ^(2) =", delta2, "D^(1) = ∂J/∂Θ^(1) =", D1, sep="\n")

net.zero_grad()
J_torch = nnmodel.cost(net, X5, y5)
J_torch.backward()  # torch.autograd
auto = [torch.cat([layer.bias.grad[:, None], layer.weight.grad], dim=1) for layer in net.layers]
ours = nnmodel.backprop(net, X5, y5)  # nnmodel's hand-written δ rule (no autograd)
print(f"J(Θ): by hand {J:.12f}, nnmodel.cost {J_torch.item():.12f}")
print(f"D: max |hand − autograd| = {max((D1 - auto[0]).abs().max(), (D2 - auto[1]).abs().max()):.1e}")
print(
    f"δ: max |hand − nnmodel.backprop| = "
    f"{max((delta2 - ours.deltas[0]).abs().max(), (delta3 - ours.deltas[1]).abs().max()):.1e}"
)
""")

md(r"""
**Gradient checking.** Before trusting a backprop, compare it with the two-sided difference
(J(θ + ε) − J(θ − ε)) / 2ε, one parameter θ at a time (`nnmodel.gradient_check`, ε = 10⁻⁴).
In float64 a correct backprop agrees to a relative difference ‖num − D‖ / ‖num + D‖ below 10⁻⁹,
with or without the regularisation λ. A classic bug, forgetting the factor g′(z^(2)) in δ^(2),
shows at once.
""")

code(r"""
def forgot_g_prime(net, x, y, l2=0.0):
    # backprop with the classic bug: δ^(2) = (Θ^(2))ᵀ δ^(3), without .* g'(z^(2))
    grads = nnmodel.backprop(net, x, y, l2)
    wrong = grads.deltas[1] @ net.layers[1].weight
    grads.weight_grads[0] = wrong.T @ x / len(x) + l2 / len(x) * net.layers[0].weight
    grads.bias_grads[0] = wrong.mean(dim=0)
    return grads


for label, kwargs in [
    ("backprop, λ = 0", {}),
    ("backprop, λ = 1", {"l2": 1.0}),
    ("backprop without g', λ = 0", {"grad_fn": forgot_g_prime}),
]:
    check = nnmodel.gradient_check(net, X5, y5, **kwargs)
    print(f"gradient check, {label}: relative difference {check.relative_difference:.1e}")
""")

# ----------------------------------------------------------------------------- 6. digits

md(r"""
## 6. Training on the digits

scikit-learn's 1,797 8×8 digits (pixels scaled to [0, 1]), split 1259/269/269 into train, validation
and test. `nnmodel.train()` with its defaults trains a 64-128-10 ReLU network with a softmax output and
Adam; here for 12 epochs. The summary is the one `python train.py` prints.
""")

code(r"""
run = train("digits", "trainer.max_epochs=12", show=True)
run.plot()
""")

code(r"""
print({k: v for k, v in run.metrics.items() if k not in ("run_dir", "best_ckpt")})
run.history.tail(3)
""")

md(r"""
`run.checkpoint` is the best checkpoint by val/acc (the one tested); `nnmodel.load` turns it back into
a model with `predict` and `predict_proba`, here on the first test images.
""")

code(r"""
from nnmodel.data import DATASETS, DataConfig

digits = DATASETS["digits"](DataConfig(name="digits"))  # the same splits as the runs: train, val, test
x_test, y_test = digits["test"]
model = nnmodel.load(run.checkpoint)
pred = model.predict(x_test[:10])
fig, axes = plt.subplots(1, 10, figsize=(9, 1.3))
for ax, image, label, guess in zip(axes, x_test[:10], y_test[:10].tolist(), pred.tolist()):
    ax.imshow(image.reshape(8, 8), cmap="gray_r")
    ax.set_title(f"{guess}" + ("" if guess == label else f" (is {label})"), fontsize=9)
    ax.axis("off")
plt.show()
""")

# ----------------------------------------------------------------------------- 7. optimizers

md(r"""
## 7. The optimizers compared

The same network (64-128-10 ReLU), data and seed, five of Ruder's update rules, with g = ∇_θ J(θ) on
one minibatch and the presets' learning rates (`configs/optimizer/`, which also give torch's forms):

| optimizer | update | preset |
|---|---|---|
| SGD | θ ← θ − η g | η = 0.1 |
| momentum | v ← γ v + η g;  θ ← θ − v | η = 0.1, γ = 0.9 |
| NAG | v ← γ v + η ∇_θ J(θ − γ v);  θ ← θ − v (the gradient where momentum is taking θ) | η = 0.1, γ = 0.9 |
| Adagrad | G ← G + g²;  θ ← θ − η g / √(G + ε), per parameter | η = 0.01 |
| Adam | m ← β₁ m + (1 − β₁) g;  v ← β₂ v + (1 − β₂) g²;  θ ← θ − η m̂ / (√v̂ + ε), m̂, v̂ bias-corrected | η = 0.001 |

6 epochs (120 steps) each.
""")

code(r"""
EPOCHS = "trainer.max_epochs=6"  # every run from here on: 6 epochs of 20 minibatches
OPTIMIZERS = ["sgd", "momentum", "nag", "adagrad", "adam"]
opt_runs = {name: train(f"opt_{name}", f"optimizer={name}", EPOCHS) for name in OPTIMIZERS}
curves(opt_runs, "optimizers on the digits (64-128-10 ReLU, seed 0)")
table(opt_runs)
""")

# ----------------------------------------------------------------------------- 8. five things

md(r"""
## 8. The five things training depends on

The result of training depends on (1) the learning rate, (2) the optimizer, (3) the random
initialisation (the seed), (4) the architecture and (5) the quality of the training set. One short
experiment each, on the digits, 6 epochs per run; runs of section 7 are reused where they are the
same setting.

### 8.1 Learning rate

Plain SGD with η from 0.01 to 10 (η = 0.1 is section 7's SGD run). Too small learns slowly; too large
overshoots. At η = 10 the first steps throw the weights so far that almost every ReLU unit ends up
dead (z ≤ 0 for every input, so g′ = 0 and no gradient flows through it again), and the network is
stuck at chance, 10 %. `dead_hidden_units` is the fraction of hidden units that are 0 on every
validation example (`nnmodel.diagnostics.dead_fraction`).
""")

code(r"""
from nnmodel.diagnostics import dead_fraction

lr_runs = {f"η = {lr}": train(f"lr_{lr}", "optimizer=sgd", f"optimizer.lr={lr}", EPOCHS) for lr in [0.01, 1.0, 10.0]}
lr_runs = {"η = 0.01": lr_runs["η = 0.01"], "η = 0.1": opt_runs["sgd"], **lr_runs}
x_val, y_val = digits["val"]
with torch.no_grad():
    dead = [dead_fraction(run.model.trace(x_val).a[1]).item() for run in lr_runs.values()]
curves(lr_runs, "SGD, learning rate η")
table(lr_runs, dead_hidden_units=dead)
""")

md(r"""
Larger still, and the cost itself explodes: when the training loss becomes NaN, ∞ or larger than
`diverge_above` (10⁴), nnmodel stops the run, records it as `diverged` in its `result.json`, and
`nnmodel.train` raises `DivergedError`; `nnmodel.Run.from_dir` still reads what was recorded.
""")

code(r"""

try:
    train("lr_1e5", "optimizer=sgd", "optimizer.lr=100000.0", EPOCHS)
except nnmodel.DivergedError as err:
    print("DivergedError:", str(err).split(";")[0])
    print("status in result.json:", nnmodel.Run.from_dir(f"{OUT}/lr_1e5").metrics["status"])
""")

md(r"""
### 8.2 Optimizer

Section 7: the same network, data and seed, and after 6 epochs the five optimizers lie between about
90 % and 97 % validation accuracy, and their validation costs differ by a factor of 7. (Adam's steps
are about η per parameter, so at its default η = 0.001 it is among the slowest here.)

### 8.3 Random initialisation (the seed)

Same everything (SGD, η = 0.1), three seeds: the seed draws the initial Θ and the order of the
minibatches. The spread is the noise that any comparison of two settings has to beat.
""")

code(r"""
seed_runs = {"seed 0": opt_runs["sgd"]} | {
    f"seed {s}": train(f"seed_{s}", f"seed={s}", "optimizer=sgd", EPOCHS) for s in [1, 2]
}
curves(seed_runs, "SGD η = 0.1, 64-128-10, three seeds")
acc = np.array([r.metrics["val/acc"] for r in seed_runs.values()])
print(f"val/acc over the seeds: {acc.mean():.4f} ± {acc.std(ddof=1):.4f}")
""")

md(r"""
### 8.4 Architecture

No hidden layer (10 logistic units on the pixels: a linear classifier), one hidden layer of 16 or 128
ReLU units, two of 64, and five hidden layers of 32 sigmoid units; momentum (η = 0.1, γ = 0.9), 6 epochs.
""")

code(r"""
ARCHITECTURES = {
    "hidden=[]": ["model.hidden=[]"],
    "hidden=[16]": ["model.hidden=[16]"],
    "hidden=[128]": None,  # section 7's momentum run
    "hidden=[64,64]": ["model.hidden=[64,64]"],
    "5 × 32 sigmoid": ["model.hidden=[32,32,32,32,32]", "model.activation=sigmoid"],
}
arch_runs = {}
for i, (name, overrides) in enumerate(ARCHITECTURES.items()):
    if overrides is None:
        arch_runs[name] = opt_runs["momentum"]
    else:
        arch_runs[name] = train(f"arch_{i}", "optimizer=momentum", *overrides, EPOCHS)
curves(arch_runs, "architecture (momentum)")
table(arch_runs, parameters=[count_parameters(r.model) for r in arch_runs.values()])
""")

md(r"""
The 8×8 digits are almost linearly separable: without a hidden layer the network already gets most of
them right, and one hidden layer mostly lowers the validation cost. More layers are not better by
themselves: the deep sigmoid network learns nothing in 6 epochs (10 % is chance), since every sigmoid
layer multiplies the gradient by g′ ≤ ¼ on its way down (vanishing gradients; the study
`python train.py -m experiment=activations` shows it over 20 epochs).
""")

md(r"""
### 8.5 Quality of the training set

Only the training split is degraded; validation and test stay clean. `data.train_fraction=0.1` keeps
10 % of the training examples (so also 10 % of the steps per epoch), `data.label_noise=0.3` replaces
30 % of the training labels by another class, `data.input_noise=0.5` adds Gaussian noise of std 0.5 to
the training pixels (which lie in [0, 1]). Momentum, 64-128-10, 6 epochs.
""")

code(r"""
QUALITY = {
    "10 % of the data": "data.train_fraction=0.1",
    "30 % wrong labels": "data.label_noise=0.3",
    "noisy pixels (σ = 0.5)": "data.input_noise=0.5",
}
quality_runs = {"clean": opt_runs["momentum"]}
for i, (name, override) in enumerate(QUALITY.items()):
    quality_runs[name] = train(f"quality_{i}", "optimizer=momentum", override, EPOCHS)
curves(quality_runs, "quality of the training set (64-128-10, momentum)")
table(quality_runs)
""")

md(r"""
Less data costs the most here (and, in 6 epochs, also means 10 % of the steps). Wrong labels cost some
accuracy and much more validation cost: the network learns to be unsure. Noise on the pixels hardly
hurts at this level; here it even raised the validation accuracy a little, as noise on the inputs can
act like a regulariser (the study `python train.py -m experiment=data_quality` has three seeds each).
""")

md(r"""
## Summary

- One logistic unit draws one line: AND and OR, never XOR; a hidden layer composes lines.
- g′ decides what backprop passes on: the sigmoid's ≤ ¼ shrinks it, the step passes nothing.
- Zero initialisation leaves all hidden units identical; ε-uniform breaks the symmetry.
- Forward propagation is two matrix products per layer; backprop's δ terms equal torch.autograd, and
  the gradient check catches a wrong δ at once.
- What you get depends on the learning rate, the optimizer, the seed, the architecture and the data.

From the command line the same runs are `python train.py KEY=VALUE ...`, and the studies are sweeps:
`python train.py -m experiment=gates|activations|init|lr|optimizers|architecture|data_quality`
(see the [README](../README.md)).
""")

code(r"""
shutil.rmtree(OUT)  # the runs' directories (TensorBoard logs, checkpoints) are not needed any more
""")


# ----------------------------------------------------------------------------- building


def build() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    for i, (kind, source) in enumerate(CELLS):
        cell = nbformat.v4.new_markdown_cell(source) if kind == "markdown" else nbformat.v4.new_code_cell(source)
        cell.id = f"cell-{i:02d}"  # stable ids: rebuilding gives the same file
        nb.cells.append(cell)
    return nb


def execute(nb: nbformat.NotebookNode, cwd: Path, timeout: int = 600) -> nbformat.NotebookNode:
    """Run every cell in a fresh python3 kernel that imports this checkout's nnmodel."""
    from nbclient import NotebookClient

    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    os.environ["PYTHONPATH"] = pythonpath  # the kernel inherits this process's environment
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", record_timing=False, resources={"metadata": {"path": str(cwd)}}
    )
    client.execute()
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--execute", action="store_true", help="run the notebook and save its outputs")
    parser.add_argument("--output", type=Path, default=NOTEBOOK, help=f"where to write (default {NOTEBOOK})")
    args = parser.parse_args(argv)
    nb = build()
    if args.execute:
        start = time.perf_counter()
        execute(nb, HERE)
        print(f"executed in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    nbformat.validate(nb)
    nbformat.write(nb, args.output)
    print(f"wrote {args.output} ({args.output.stat().st_size / 1e3:.0f} kB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
