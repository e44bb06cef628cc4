"""nnmodel.MLPClassifier against scikit-learn's MLPClassifier, with the same settings, side by side in one run.

    python bench/estimator.py            # digits and breast_cancer, 3 seeds, 5 timed fits a side (~2 minutes)
    python bench/estimator.py --tiny     # seconds: what tests/test_bench.py runs

Declared before any result was seen (#13): the data are scikit-learn's bundled digits (pixels / 16) and
breast_cancer (standardised by a StandardScaler fitted on the training part), each split 75/25,
stratified, with random_state=0. Both estimators get one hidden layer of 100 ReLU units, Adam with
η = 0.001, batch 64, no L2 (scikit-learn's alpha=0) and exactly ``--epochs`` epochs (scikit-learn's
early stopping off: tol=0, n_iter_no_change=epochs); everything else is each one's default (their
initialisations differ: scikit-learn's Glorot-uniform, nnmodel's ε-uniform with ε = 0.12). Accuracy is
the mean test accuracy over seeds 0, 1, 2; the time is the median of interleaved fits (seed 0), at one
thread for both. Goals: accuracy ≥ scikit-learn's, fit time ≤ 1.5 × scikit-learn's (ratio ≥ 0.67).

A third side, timed with the other two, is the ceiling: a bare PyTorch loop of the same training (the same
layers, fused Adam as nnmodel builds it, a randperm each epoch, index_select minibatches), in the environment of
a script that never imported Lightning. scikit-learn's time ÷ its time is the best ratio any estimator on
PyTorch's per-minibatch steps could reach.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkMLP  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from bench.baselines import as_without_lightning, bare_epoch  # noqa: E402
from bench.harness import interleaved, ratio, threads, time_call  # noqa: E402
from nnmodel.estimator import MLPClassifier  # noqa: E402

SEEDS = (0, 1, 2)


def datasets() -> dict[str, tuple[np.ndarray, ...]]:
    out = {}
    for name, (x, y) in {
        "digits": load_digits(return_X_y=True),
        "breast_cancer": load_breast_cancer(return_X_y=True),
    }.items():
        x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
        if name == "digits":
            x_train, x_test = x_train / 16, x_test / 16
        else:
            scaler = StandardScaler().fit(x_train)
            x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
        out[name] = (x_train, x_test, y_train, y_test)
    return out


def estimators(epochs: int, seed: int) -> dict[str, Any]:
    return {
        "nnmodel": MLPClassifier(hidden=(100,), activation="relu", optimizer="adam", lr=0.001, batch_size=64,
                                 max_epochs=epochs, seed=seed),
        "sklearn": SkMLP((100,), activation="relu", solver="adam", learning_rate_init=0.001, batch_size=64,
                         alpha=0.0, max_iter=epochs, tol=0.0, n_iter_no_change=epochs, random_state=seed),
    }  # fmt: skip


def bare_torch_fit(x: np.ndarray, y: np.ndarray, epochs: int, seed: int = 0) -> None:
    """The estimators' training in plain PyTorch: 100 ReLU units, Adam η = 0.001 (fused), batch 64."""
    torch.manual_seed(seed)
    xs, ys = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64))
    classes = int(y.max()) + 1  # the labels are 0 .. K-1 in both tables
    model = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 100), torch.nn.ReLU(), torch.nn.Linear(100, classes))
    opt = torch.optim.Adam(model.parameters(), lr=0.001, fused=True)
    with as_without_lightning():
        for _ in range(epochs):
            bare_epoch(model, opt, xs, ys, 64)


def compare(data: tuple[np.ndarray, ...], epochs: int, repeats: int) -> dict[str, Any]:
    x_train, x_test, y_train, y_test = data
    accuracy = {"nnmodel": [], "sklearn": []}
    for seed in SEEDS:
        for name, est in estimators(epochs, seed).items():
            accuracy[name].append(float(est.fit(x_train, y_train).score(x_test, y_test)))

    def side(name: str):
        return lambda: time_call(lambda: estimators(epochs, 0)[name].fit(x_train, y_train))[0]

    def bare() -> Any:
        return time_call(lambda: bare_torch_fit(x_train, y_train, epochs))[0]

    times = interleaved({"nnmodel": side("nnmodel"), "sklearn": side("sklearn"), "torch": bare}, repeats)
    record = ratio(times["nnmodel"], times["sklearn"], work=epochs * len(x_train), names=("nnmodel", "sklearn"))
    ceiling = ratio(times["torch"], times["sklearn"], work=epochs * len(x_train), names=("torch", "sklearn"))
    return record | {
        "torch_s": ceiling["torch_s"],
        "ceiling": ceiling["ratio"],  # scikit-learn's time ÷ the bare PyTorch loop's
        "nnmodel_acc": float(np.mean(accuracy["nnmodel"])),
        "sklearn_acc": float(np.mean(accuracy["sklearn"])),
        "nnmodel_accs": accuracy["nnmodel"],
        "sklearn_accs": accuracy["sklearn"],
        "examples": [len(x_train), len(x_test)],
        "epochs": epochs,
    }


def table(results: dict[str, Any]) -> str:
    lines = [
        "| data (train/test) | nnmodel fit, test acc | sklearn fit, test acc | time ratio (≥ 0.67) | acc ≥ sklearn "
        "| bare PyTorch fit | its ratio (ceiling) |",
        "|---|---:|---:|---:|:---:|---:|---:|",
    ]
    for name, r in results["cases"].items():
        ours, theirs = r["nnmodel_s"], r["sklearn_s"]
        lines.append(
            f"| {name} ({r['examples'][0]}/{r['examples'][1]}), {r['epochs']} epochs "
            f"| {np.median(ours):.2f} s, {r['nnmodel_acc']:.4f} | {np.median(theirs):.2f} s, {r['sklearn_acc']:.4f} "
            f"| {r['ratio']:.2f} {'✓' if r['ratio'] >= 1 / 1.5 else '✗'} "
            f"| {'✓' if r['nnmodel_acc'] >= r['sklearn_acc'] else '✗'} "
            f"| {np.median(r['torch_s']):.2f} s | {r['ceiling']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="2 epochs, 2 timed fits a side: seconds")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5, help="timed fits a side (after one warm-up each)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "estimator_results.json")
    args = parser.parse_args(argv)
    epochs, repeats = (2, 2) if args.tiny else (args.epochs, args.repeats)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)  # max_iter is the epoch count on purpose
    with threads(1):
        all_data = datasets()
        for est in estimators(1, 0).values():  # warm-up: imports, first Trainer, BLAS
            est.fit(*all_data["digits"][::2])
        cases = {name: compare(data, epochs, repeats) for name, data in all_data.items()}
    results = {"threads": 1, "seeds": list(SEEDS), "cases": cases}
    args.out.write_text(json.dumps(results, indent=2))
    print(table(results))
    return results


if __name__ == "__main__":
    main()
