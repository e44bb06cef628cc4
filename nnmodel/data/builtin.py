"""Splitting, the training-set quality knobs, and the small built-in data sets (digits, gates, circles, moons)."""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from nnmodel.data.registry import SPLIT_KEYS, Split, Splits, register_dataset
from nnmodel.schema import DataConfig

# circles/moons draw their points once, with this seed, whatever the run's seeds: every run sees the same sample.
SAMPLE_SEED = 0


def _round(x: float) -> int:
    """Round half up (Python's round() goes to even, which makes counts harder to predict)."""
    return int(np.floor(x + 0.5))


def stratified_count(n: int, fraction: float, min_per_class: int = 0) -> int:
    """How many of a class's n examples :func:`stratified_split` picks."""
    return min(n, max(min_per_class, _round(fraction * n)))


def stratified_split(
    y: np.ndarray, fraction: float, seed: int, min_per_class: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices 0..n-1 into (picked, rest), class by class.

    Class c with n_c examples gives max(min_per_class, round(fraction * n_c)) of them
    (at most n_c) to `picked`, chosen by a permutation seeded with `seed`. Both
    index arrays come back sorted.
    """
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        picked.append(idx[: stratified_count(len(idx), fraction, min_per_class)])
    mask = np.zeros(len(y), dtype=bool)
    mask[np.concatenate(picked) if picked else []] = True
    return np.flatnonzero(mask), np.flatnonzero(~mask)


def three_way(x: np.ndarray, y: np.ndarray, cfg: DataConfig) -> Splits:
    """Stratified train/val/test: test with ``test_seed`` first (no run seed moves it), then val from the rest."""
    test, rest = stratified_split(y, cfg.test_fraction, cfg.test_seed)
    val, train = stratified_split(y[rest], _val_of_rest(cfg), cfg.split_seed)
    return {k: tensors(x[i], y[i]) for k, i in [("train", rest[train]), ("val", rest[val]), ("test", test)]}


def _val_of_rest(cfg: DataConfig) -> float:
    return cfg.val_fraction / (1.0 - cfg.test_fraction)  # val_fraction is of the whole set: rescaled to what is left


def three_way_counts(n: int, cfg: DataConfig) -> tuple[int, int, int]:
    """(train, val, test) examples that :func:`three_way` gives a class of n examples."""
    test = stratified_count(n, cfg.test_fraction)
    val = stratified_count(n - test, _val_of_rest(cfg))
    return n - test - val, val, test


def tensors(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> Split:
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    return x.reshape(len(x), math.prod(x.shape[1:])).to(torch.float32), y.to(torch.int64)  # (0, F) too


def degrade(x: torch.Tensor, y: torch.Tensor, cfg: DataConfig, n_classes: int, seed: int) -> Split:
    """Apply train_fraction, then label_noise, then input_noise to a training split.

    - train_fraction: stratified subset, round(f * n_c) per class (at least 1).
    - label_noise: exactly round(p * n) labels, drawn without replacement, become
      y' = (y + k) mod C with k uniform in 1..C-1, i.e. a uniformly random *other* class.
    - input_noise: x' = x + sigma * N(0, 1), drawn once (no clipping to [0, 1]).
    Each knob has its own generator seeded by (seed, knob), so turning one on does not
    change the draws of another.
    """
    if cfg.train_fraction < 1.0:
        keep, _ = stratified_split(y.numpy(), cfg.train_fraction, seed, min_per_class=1)
        x, y = x[keep], y[keep]
    if cfg.label_noise > 0.0 and n_classes > 1:
        rng = np.random.default_rng([seed, 1])
        flip = rng.choice(len(y), size=_round(cfg.label_noise * len(y)), replace=False)
        shift = rng.integers(1, n_classes, size=len(flip))
        y = y.clone()
        y[flip] = (y[flip] + torch.from_numpy(shift)) % n_classes
    if cfg.input_noise > 0.0:
        rng = np.random.default_rng([seed, 2])
        x = x + cfg.input_noise * torch.from_numpy(rng.standard_normal(tuple(x.shape), dtype=np.float32))
    return x, y


@register_dataset("digits", n_features=64, n_classes=10, image_shape=(8, 8), reads=SPLIT_KEYS)
def load_digits(cfg: DataConfig) -> Splits:
    """scikit-learn's bundled 8x8 digits (1,797 images, no download); pixels 0..16 -> [0, 1]."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    return three_way(bunch.data / 16.0, bunch.target, cfg)


_GATES = {"xor": [0, 1, 1, 0], "and": [0, 0, 0, 1], "or": [0, 1, 1, 1]}
_TRUTH_INPUTS = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]


def _load_gate(labels: list[int], cfg: DataConfig) -> Splits:
    """Train: the truth table repeated `repeats` times (4 * repeats rows); val = test = the 4 rows."""
    table = tensors(np.array(_TRUTH_INPUTS), np.array(labels))
    train = (table[0].repeat(cfg.repeats, 1), table[1].repeat(cfg.repeats))
    return {"train": train, "val": table, "test": table}


for _gate, _labels in _GATES.items():
    register_dataset(_gate, n_features=2, n_classes=2, reads=["repeats"])(functools.partial(_load_gate, _labels))


@register_dataset("circles", n_features=2, n_classes=2, reads=[*SPLIT_KEYS, "n_samples", "noise"])
def load_circles(cfg: DataConfig) -> Splits:
    """Two concentric circles (radii 1 and 0.5), always the same sample (SAMPLE_SEED)."""
    from sklearn.datasets import make_circles

    x, y = make_circles(cfg.n_samples, noise=cfg.noise, factor=0.5, random_state=SAMPLE_SEED)
    return three_way(x, y, cfg)


@register_dataset("moons", n_features=2, n_classes=2, reads=[*SPLIT_KEYS, "n_samples", "noise"])
def load_moons(cfg: DataConfig) -> Splits:
    """Two interleaving half circles, always the same sample (SAMPLE_SEED)."""
    from sklearn.datasets import make_moons

    x, y = make_moons(cfg.n_samples, noise=cfg.noise, random_state=SAMPLE_SEED)
    return three_way(x, y, cfg)
