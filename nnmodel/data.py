"""Datasets as in-memory tensors, batched by one indexing op per batch.

Every dataset here is small enough to live in memory (MNIST's 60,000 x 784 floats
are 188 MB), so a batch is `x[perm[i:i + B]]` instead of B calls to `__getitem__`
and a collate: that is most of what makes small networks train fast.

    DATASETS          name -> DatasetSpec (a loader plus n_features, n_classes, ...)
    TensorDataModule  the LightningDataModule; its keyword arguments are `DataConfig`
    TensorBatches     the iterable of (x, y) batches its *_dataloader methods return
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

Split = tuple[torch.Tensor, torch.Tensor]  # x (n, n_features) float32, y (n,) int64
Splits = dict[str, Split]  # keys "train", "val", "test"

# circles/moons draw their points once, with this seed, whatever the run's seeds: every run sees the same sample.
SAMPLE_SEED = 0
GPU_RESIDENT_BYTES = 2 * 1024**3  # below this, a split moves to the GPU once, not batch by batch


@dataclass(frozen=True)
class DataConfig:
    """The keys of the `data` config group (Hydra `data.*`); see `configs/data/*.yaml`."""

    name: str = "digits"  # a key of DATASETS
    batch_size: int = 64  # examples per gradient step
    root: str = "data"  # torchvision sets live under <root>/<ClassName>/raw/
    download: bool = False  # let torchvision fetch missing MNIST-family files
    val_fraction: float = 0.15  # of all examples (MNIST family: of the official train set)
    test_fraction: float = 0.15  # of all examples (ignored by the MNIST family: official test set)
    split_seed: int = 0  # the val split
    test_seed: int = 0  # the fixed test split (digits, circles, moons): declared before any result, never tuned
    seed: int = 0  # run seed: shuffling, train_fraction subset, label and input noise
    steps_per_execution: int = 1  # minibatches one Lightning batch carries (the top-level config key)
    train_fraction: float = 1.0  # keep this stratified fraction of the training split
    label_noise: float = 0.0  # fraction of training labels replaced by another random class
    input_noise: float = 0.0  # std of Gaussian noise added once to training inputs
    repeats: int = 64  # logic gates: copies of the 4-row truth table in the training split
    n_samples: int = 1000  # circles/moons: points sampled in all
    noise: float = 0.1  # circles/moons: std of the Gaussian jitter of sklearn's generator


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: `load(cfg) -> {"train": (x, y), "val": ..., "test": ...}`.

    The metadata is known without loading, so a model can be built before `setup()`.
    """

    load: Callable[[DataConfig], Splits]
    n_features: int
    n_classes: int
    image_shape: tuple[int, int] | None = None
    class_names: tuple[str, ...] | None = None  # None: "0", "1", ...
    prepare: Callable[[DataConfig], None] | None = None  # download/check files, once per node

    def __call__(self, cfg: DataConfig) -> Splits:
        return self.load(cfg)


DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(
    name: str,
    *,
    n_features: int,
    n_classes: int,
    image_shape: tuple[int, int] | None = None,
    class_names: tuple[str, ...] | None = None,
    prepare: Callable[[DataConfig], None] | None = None,
) -> Callable[[Callable[[DataConfig], Splits]], Callable[[DataConfig], Splits]]:
    """Decorator: `@register_dataset("mine", n_features=3, n_classes=2)` over `load(cfg) -> Splits`."""

    def decorate(load: Callable[[DataConfig], Splits]) -> Callable[[DataConfig], Splits]:
        DATASETS[name] = DatasetSpec(load, n_features, n_classes, image_shape, class_names, prepare)
        return load

    return decorate


# ----------------------------------------------------------------------------- validation


def _choices_error(key: str, value: object, choices: list[str], what: str) -> ValueError:
    close = difflib.get_close_matches(str(value), choices, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ";"
    return ValueError(f"unknown {what} {value!r} for {key}{hint} choose one of: {', '.join(choices)}")


def _is_int(v: object) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def _is_real(v: object) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)


def validate_data_config(**kwargs: Any) -> DataConfig:
    """Check the `data.*` keys and fill in defaults; raise a one-line ValueError otherwise.

    Nothing is loaded, so this is cheap to call before building anything.
    """
    fields = sorted(f.name for f in dataclasses.fields(DataConfig))
    for key in kwargs:
        if key not in fields:
            raise _choices_error("data", key, fields, "key")
    cfg = DataConfig(**kwargs)
    if cfg.name not in DATASETS:
        raise _choices_error("data.name", cfg.name, sorted(DATASETS), "dataset")

    def bad(key: str, allowed: str) -> ValueError:
        return ValueError(f"data.{key} must be {allowed}, got {getattr(cfg, key)!r}")

    for key, low in [
        ("batch_size", 1),
        ("repeats", 1),
        ("n_samples", 10),
        ("split_seed", 0),
        ("test_seed", 0),
        ("seed", 0),
    ]:
        if not _is_int(getattr(cfg, key)) or getattr(cfg, key) < low:
            raise bad(key, f"an integer >= {low}")
    if not isinstance(cfg.download, bool):
        raise bad("download", "true or false")
    if not isinstance(cfg.root, str | os.PathLike):
        raise bad("root", "a directory path")
    for key in ["val_fraction", "test_fraction", "label_noise"]:
        if not _is_real(getattr(cfg, key)) or not 0.0 <= getattr(cfg, key) <= 1.0:
            raise bad(key, "a number in [0, 1]")
    if not _is_real(cfg.train_fraction) or not 0.0 < cfg.train_fraction <= 1.0:
        raise bad("train_fraction", "a number in (0, 1]")
    for key in ["input_noise", "noise"]:
        if not _is_real(getattr(cfg, key)) or getattr(cfg, key) < 0.0:
            raise bad(key, "a number >= 0")
    if cfg.val_fraction + cfg.test_fraction >= 1.0:
        raise ValueError(
            f"data.val_fraction + data.test_fraction must be < 1 to leave a training split, "
            f"got {cfg.val_fraction} + {cfg.test_fraction}"
        )
    return cfg


# ----------------------------------------------------------------------------- splitting


def _round(x: float) -> int:
    """Round half up (Python's round() goes to even, which makes counts harder to predict)."""
    return int(np.floor(x + 0.5))


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
        picked.append(idx[: min(len(idx), max(min_per_class, _round(fraction * len(idx))))])
    mask = np.zeros(len(y), dtype=bool)
    mask[np.concatenate(picked) if picked else []] = True
    return np.flatnonzero(mask), np.flatnonzero(~mask)


def _three_way(x: np.ndarray, y: np.ndarray, cfg: DataConfig) -> Splits:
    """Stratified train/val/test: test with ``test_seed`` first (no run seed moves it), then val from the rest."""
    test, rest = stratified_split(y, cfg.test_fraction, cfg.test_seed)
    # val_fraction is of the whole set, so rescale it to the part left after the test split
    val, train = stratified_split(y[rest], cfg.val_fraction / (1.0 - cfg.test_fraction), cfg.split_seed)
    return {k: _tensors(x[i], y[i]) for k, i in [("train", rest[train]), ("val", rest[val]), ("test", test)]}


def _tensors(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> Split:
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    return x.reshape(len(x), -1).to(torch.float32), y.to(torch.int64)


# ----------------------------------------------------------------------------- small datasets


@register_dataset("digits", n_features=64, n_classes=10, image_shape=(8, 8))
def load_digits(cfg: DataConfig) -> Splits:
    """scikit-learn's bundled 8x8 digits (1,797 images, no download); pixels 0..16 -> [0, 1]."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    return _three_way(bunch.data / 16.0, bunch.target, cfg)


_GATES = {"xor": [0, 1, 1, 0], "and": [0, 0, 0, 1], "or": [0, 1, 1, 1]}
_TRUTH_INPUTS = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]


def _load_gate(labels: list[int], cfg: DataConfig) -> Splits:
    """Train: the truth table repeated `repeats` times (4 * repeats rows); val = test = the 4 rows."""
    table = _tensors(np.array(_TRUTH_INPUTS), np.array(labels))
    train = (table[0].repeat(cfg.repeats, 1), table[1].repeat(cfg.repeats))
    return {"train": train, "val": table, "test": table}


for _gate, _labels in _GATES.items():
    register_dataset(_gate, n_features=2, n_classes=2)(functools.partial(_load_gate, _labels))


@register_dataset("circles", n_features=2, n_classes=2)
def load_circles(cfg: DataConfig) -> Splits:
    """Two concentric circles (radii 1 and 0.5), always the same sample (SAMPLE_SEED)."""
    from sklearn.datasets import make_circles

    x, y = make_circles(cfg.n_samples, noise=cfg.noise, factor=0.5, random_state=SAMPLE_SEED)
    return _three_way(x, y, cfg)


@register_dataset("moons", n_features=2, n_classes=2)
def load_moons(cfg: DataConfig) -> Splits:
    """Two interleaving half circles, always the same sample (SAMPLE_SEED)."""
    from sklearn.datasets import make_moons

    x, y = make_moons(cfg.n_samples, noise=cfg.noise, random_state=SAMPLE_SEED)
    return _three_way(x, y, cfg)


# ----------------------------------------------------------------------------- MNIST family

TORCHVISION = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "kmnist": "KMNIST"}  # name -> class
_FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_TORCHVISION_CLASSES: dict[str, tuple[str, ...] | None] = {
    "mnist": None,  # "0".."9"
    "fashion_mnist": _FASHION,
    "kmnist": ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),  # romanized hiragana
}
IDX_MAGIC = {3: 2051, 1: 2049}  # ndim -> magic: 0x08 (uint8) << 8 | ndim


def write_idx(path: str | os.PathLike, array: np.ndarray | torch.Tensor) -> None:
    """Write uint8 images (n, rows, cols) (magic 2051) or labels (n,) (magic 2049) as an IDX file.

    Layout: big-endian int32 magic, one big-endian int32 per dimension, then the raw bytes.
    """
    a = np.asarray(array)
    if a.dtype != np.uint8 or a.ndim not in IDX_MAGIC:
        raise ValueError(f"write_idx needs uint8 of shape (n, rows, cols) or (n,), got {a.dtype} {a.shape}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    header = np.array([IDX_MAGIC[a.ndim], *a.shape], dtype=">i4")
    Path(path).write_bytes(header.tobytes() + np.ascontiguousarray(a).tobytes())


def _read_idx_header(path: Path, ndim: int, fix: str) -> tuple[int, ...]:
    """The dims of a well-formed IDX file with `ndim` dims, else a one-line error."""
    if not path.is_file():
        raise FileNotFoundError(f"missing {path}; {fix}")
    size, n_header = path.stat().st_size, 4 * (1 + ndim)
    if size < n_header:
        raise ValueError(f"corrupt {path}: {size} bytes, shorter than its {n_header}-byte header; {fix}")
    with path.open("rb") as f:
        header = np.frombuffer(f.read(n_header), dtype=">i4")
    if header[0] != IDX_MAGIC[ndim]:
        raise ValueError(f"corrupt {path}: magic number {header[0]}, expected {IDX_MAGIC[ndim]}; {fix}")
    dims = tuple(int(d) for d in header[1:])
    expected = n_header + int(np.prod(dims))
    if size != expected:
        raise ValueError(f"corrupt {path}: {size} bytes, header {dims} implies {expected}; {fix}")
    return dims


def check_idx_files(root: str | os.PathLike, name: str) -> None:
    """Check `<root>/<ClassName>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte` for dataset `name`.

    Magic numbers, 28x28 images, file sizes matching the headers, and equal image and
    label counts; the first problem raises FileNotFoundError or ValueError in one line.
    """
    if name not in TORCHVISION:
        raise _choices_error("check_idx_files", name, sorted(TORCHVISION), "dataset")
    raw = Path(root) / TORCHVISION[name] / "raw"
    fix = f"put the raw (uncompressed) IDX files in {raw}/ or set data.download=true to fetch them"
    for split in ("train", "t10k"):
        images = _read_idx_header(raw / f"{split}-images-idx3-ubyte", 3, fix)
        labels = _read_idx_header(raw / f"{split}-labels-idx1-ubyte", 1, fix)
        if images[1:] != (28, 28):
            raise ValueError(f"corrupt {raw / f'{split}-images-idx3-ubyte'}: images are {images[1:]}, not 28x28; {fix}")
        if images[0] != labels[0]:
            raise ValueError(f"corrupt {raw}/{split}-*: {images[0]} images but {labels[0]} labels; {fix}")


def _torchvision_set(name: str, cfg: DataConfig, train: bool) -> Any:
    """torchvision's dataset object; files checked first so a bad file fails with our message."""
    import torchvision.datasets

    if not cfg.download:
        check_idx_files(cfg.root, name)
    cls = getattr(torchvision.datasets, TORCHVISION[name])
    try:
        return cls(cfg.root, train=train, download=cfg.download)
    except Exception as err:  # torchvision raises RuntimeError or URLError across several mirrors
        if not cfg.download:
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raw = Path(cfg.root) / TORCHVISION[name] / "raw"
        raise RuntimeError(
            f"could not download {name} into {raw} ({first}); without network, copy the 4 raw IDX files there "
            f"and set data.download=false"
        ) from err


def _prepare_torchvision(name: str, cfg: DataConfig) -> None:
    """Download the missing files, or (download=false) only check them: loading waits for setup()."""
    if not cfg.download:
        return check_idx_files(cfg.root, name)
    for train in (True, False):
        _torchvision_set(name, cfg, train)


def _load_torchvision(name: str, cfg: DataConfig) -> Splits:
    """Val: stratified `val_fraction` of the official train set; test: the official test set.

    Fast path: torchvision already holds all images as one uint8 tensor in `.data`, so we
    convert it in one op instead of going through PIL and ToTensor 70,000 times.
    """
    train_set, test_set = (_torchvision_set(name, cfg, train) for train in (True, False))
    x, y = train_set.data, train_set.targets  # (60000, 28, 28) uint8, (60000,)
    val, train = stratified_split(y.numpy(), cfg.val_fraction, cfg.split_seed)
    return {  # indexed as uint8, then converted: no float copy of the whole set before the split
        "train": _tensors(_pixels(x[train]), y[train]),
        "val": _tensors(_pixels(x[val]), y[val]),
        "test": _tensors(_pixels(test_set.data), test_set.targets),
    }


def _pixels(images: torch.Tensor) -> torch.Tensor:
    """(m, h, w) uint8 images as (m, h·w) float32 in [0, 1]."""
    return images.reshape(len(images), -1).float().div_(255.0)


for _name in TORCHVISION:
    register_dataset(
        _name,
        n_features=784,
        n_classes=10,
        image_shape=(28, 28),
        class_names=_TORCHVISION_CLASSES[_name],
        prepare=functools.partial(_prepare_torchvision, _name),
    )(functools.partial(_load_torchvision, _name))


# ----------------------------------------------------------------------------- training-set quality


def degrade(x: torch.Tensor, y: torch.Tensor, cfg: DataConfig, n_classes: int) -> Split:
    """Apply train_fraction, then label_noise, then input_noise to a training split.

    - train_fraction: stratified subset, round(f * n_c) per class (at least 1).
    - label_noise: exactly round(p * n) labels, drawn without replacement, become
      y' = (y + k) mod C with k uniform in 1..C-1, i.e. a uniformly random *other* class.
    - input_noise: x' = x + sigma * N(0, 1), drawn once (no clipping to [0, 1]).
    Each knob has its own generator seeded by (seed, knob), so turning one on does not
    change the draws of another.
    """
    if cfg.train_fraction < 1.0:
        keep, _ = stratified_split(y.numpy(), cfg.train_fraction, cfg.seed, min_per_class=1)
        x, y = x[keep], y[keep]
    if cfg.label_noise > 0.0 and n_classes > 1:
        rng = np.random.default_rng([cfg.seed, 1])
        flip = rng.choice(len(y), size=_round(cfg.label_noise * len(y)), replace=False)
        shift = rng.integers(1, n_classes, size=len(flip))
        y = y.clone()
        y[flip] = (y[flip] + torch.from_numpy(shift)) % n_classes
    if cfg.input_noise > 0.0:
        rng = np.random.default_rng([cfg.seed, 2])
        x = x + cfg.input_noise * torch.from_numpy(rng.standard_normal(tuple(x.shape), dtype=np.float32))
    return x, y


# ----------------------------------------------------------------------------- batching


class TensorBatches:
    """Chunks of minibatches (x[idx], y[idx]) of in-memory tensors, one index_select per minibatch.

    Epoch e uses the permutation seeded by (seed, e) (or the identity, without ``shuffle``), and
    minibatch i holds its positions i·B .. (i+1)·B. One iteration step yields a *chunk*: a tuple of
    ``steps_per_execution`` (K) consecutive minibatches, which one Lightning batch carries (see
    :mod:`nnmodel.module`); the last chunk of an epoch may be shorter. The minibatches and their order
    do not depend on K.

    With world_size W, rank r takes order[r::W]. With ``pad`` (training) the order is first padded by
    wrapping to a multiple of W, as DistributedSampler does, so that every rank has the same number of
    steps (only the padded indices appear twice); without it (evaluation) every example is seen once.

    Lightning's stateful-loader protocol: :meth:`state_dict` says how many minibatches of which epoch
    were handed out, and after :meth:`load_state_dict` the next iteration of that epoch goes on from
    there, so a run resumed mid-epoch sees the same minibatches in the same order as one that was not.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        steps_per_execution: int = 1,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        pad: bool = True,
        epoch_fn: Callable[[], int] | None = None,
    ) -> None:
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        self.x, self.y = x, y
        self.batch_size, self.steps_per_execution = batch_size, steps_per_execution
        self.shuffle, self.drop_last, self.pad = shuffle, drop_last, pad
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch_fn = epoch_fn  # the epoch to draw (the trainer's current_epoch); else a counter
        self.epoch = 0
        self.done = 0  # minibatches of `epoch` handed out so far
        self._resume: dict[str, int] | None = None

    @property
    def n_per_rank(self) -> int:
        n, w = len(self.x), self.world_size
        return -(-n // w) if self.pad else len(range(self.rank, n, w))

    @property
    def minibatches(self) -> int:
        """Minibatches (optimizer steps, in training) per epoch on this rank."""
        n, b = self.n_per_rank, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __len__(self) -> int:
        return -(-self.minibatches // self.steps_per_execution)

    def indices(self, epoch: int) -> torch.Tensor:
        """This rank's example indices for `epoch`, shape (n_per_rank,)."""
        n = len(self.x)
        order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
        if self.pad and n:
            order = np.resize(order, -(-n // self.world_size) * self.world_size)  # pads by wrapping around
        return torch.from_numpy(order[self.rank :: self.world_size].copy())

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "minibatches": self.done}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._resume = {"epoch": int(state_dict["epoch"]), "minibatches": int(state_dict["minibatches"])}

    def __iter__(self) -> Iterator[tuple[Split, ...]]:
        # A generator: nothing (not even the epoch) moves until the first chunk is asked for, so probing
        # iter() (Lightning does) costs nothing.
        resume, self._resume = self._resume, None
        if self.epoch_fn is not None:
            epoch = self.epoch_fn()
        else:  # on its own: the resumed epoch, or the next one once this one has begun
            epoch = resume["epoch"] if resume else self.epoch + (self.done > 0)
        start = resume["minibatches"] if resume and resume["epoch"] == epoch else 0
        self.epoch, self.done = epoch, start
        idx = self.indices(epoch).to(self.x.device)
        b, k = self.batch_size, self.steps_per_execution
        for first in range(start, self.minibatches, k):
            chunk = []
            for i in range(first, min(first + k, self.minibatches)):
                batch = idx[i * b : (i + 1) * b]
                chunk.append((self.x.index_select(0, batch), self.y.index_select(0, batch)))
            self.done = first + len(chunk)
            yield tuple(chunk)


# ----------------------------------------------------------------------------- datamodule


class TensorDataModule(L.LightningDataModule):
    """A dataset from DATASETS as train/val/test tensors; keyword arguments are DataConfig's keys.

    `n_features`, `n_classes`, `image_shape`, `class_names` and `name` are set at
    construction (no loading), so the model can be built first. `setup()` loads the
    splits and applies the training-set quality knobs to the training split only.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        self.cfg = validate_data_config(**kwargs)
        self.save_hyperparameters(dataclasses.asdict(self.cfg))
        spec = DATASETS[self.cfg.name]
        self.spec = spec
        self.name = self.cfg.name
        self.n_features, self.n_classes, self.image_shape = spec.n_features, spec.n_classes, spec.image_shape
        self.class_names = list(spec.class_names or [str(c) for c in range(spec.n_classes)])
        self.splits: Splits | None = None
        self._placed: dict[str, Split] = {}  # split -> tensors on the training device

    def prepare_data(self) -> None:
        """Download or check files (Lightning calls this on one process per node)."""
        if self.spec.prepare is not None:
            self.spec.prepare(self.cfg)

    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        splits = self.spec(self.cfg)
        for key, (x, y) in splits.items():
            if x.shape[1:] != (self.n_features,) or len(y) != len(x):
                raise ValueError(
                    f"dataset {self.name!r} loaded {key} x {tuple(x.shape)}, y {tuple(y.shape)}; "
                    f"registered n_features={self.n_features}"
                )
        splits["train"] = degrade(*splits["train"], self.cfg, self.n_classes)
        self.splits = splits

    def split(self, name: str) -> Split:
        """The split ``name`` (train, val or test) as (x, y) tensors, loading the data first if needed."""
        if self.splits is None:
            self.setup()
        return self.splits[name]

    def _split_on_device(self, split: str) -> Split:
        x, y = self.split(split)
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        if device.type != "cuda" or x.nbytes + y.nbytes >= GPU_RESIDENT_BYTES:
            return x, y  # on CPU, Lightning moves each batch to the device
        if split not in self._placed or self._placed[split][0].device != device:
            self._placed[split] = (x.to(device), y.to(device))
        return self._placed[split]

    def _batches(self, split: str, shuffle: bool) -> TensorBatches:
        x, y = self._split_on_device(split)
        trainer = self.trainer
        return TensorBatches(
            x,
            y,
            self.cfg.batch_size,
            steps_per_execution=self.cfg.steps_per_execution,
            shuffle=shuffle,
            pad=shuffle,  # training: equal step counts on every rank; evaluation: every example once
            seed=self.cfg.seed,
            rank=trainer.global_rank if trainer is not None else 0,
            world_size=trainer.world_size if trainer is not None else 1,
            # read when each epoch starts, so a resumed run continues the same sequence of orders
            epoch_fn=(lambda: trainer.current_epoch) if trainer is not None else None,
        )

    def train_dataloader(self) -> TensorBatches:
        return self._batches("train", shuffle=True)

    def val_dataloader(self) -> TensorBatches:
        return self._batches("val", shuffle=False)

    def test_dataloader(self) -> TensorBatches:
        return self._batches("test", shuffle=False)

    def predict_dataloader(self) -> TensorBatches:
        return self._batches("test", shuffle=False)

    def describe(self) -> str:
        """One line for the run summary: split sizes, features, classes."""
        if self.splits is None:
            return f"{self.n_features} features, {self.n_classes} classes"
        sizes = "/".join(str(len(self.splits[k][1])) for k in ("train", "val", "test"))
        return f"{sizes} train/val/test examples, {self.n_features} features, {self.n_classes} classes"
