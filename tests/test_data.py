"""The data layer: splits, batching, offline MNIST files, quality knobs and error messages."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
from hydra.errors import HydraException

from nnmodel.config import compose
from nnmodel.data import (
    DATASETS,
    Chunk,
    DataConfig,
    TensorBatches,
    TensorDataModule,
    check_idx_files,
    write_idx,
)
from nnmodel.errors import ConfigError
from nnmodel.validate import check_split_sizes, validate_config


def loaded(**kwargs) -> TensorDataModule:
    dm = TensorDataModule(**kwargs)
    dm.prepare_data()
    dm.setup()
    return dm


def write_fake_mnist(root: Path, n_train: int = 300, n_test: int = 100, folder: str = "MNIST") -> None:
    """Random 28x28 images with balanced labels in torchvision's raw layout."""
    rng = np.random.default_rng(0)
    raw = root / folder / "raw"
    for split, n in [("train", n_train), ("t10k", n_test)]:
        write_idx(raw / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(raw / f"{split}-labels-idx1-ubyte", rng.permutation(np.arange(n) % 10).astype(np.uint8))


def row_set(x: torch.Tensor) -> set[tuple[float, ...]]:
    return {tuple(r) for r in x.tolist()}


# ----------------------------------------------------------------------------- digits


def test_digits_metadata_is_known_before_setup():
    dm = TensorDataModule(name="digits")
    assert (dm.n_features, dm.n_classes, dm.image_shape) == (64, 10, (8, 8))
    assert dm.class_names == [str(c) for c in range(10)] and dm.splits is None


def test_digits_splits_partition_1797_images_stratified_in_unit_range():
    dm = loaded(name="digits")
    sizes = {k: len(y) for k, (x, y) in dm.splits.items()}
    assert sum(sizes.values()) == 1797
    assert sizes["val"] == pytest.approx(0.15 * 1797, abs=10) and sizes["test"] == pytest.approx(0.15 * 1797, abs=10)
    rows = [row_set(x) for x, _ in dm.splits.values()]
    # digits has a few duplicate images, so compare the union size with the number of distinct images
    from sklearn.datasets import load_digits

    assert len(rows[0] | rows[1] | rows[2]) == len(row_set(torch.tensor(load_digits().data / 16.0)))
    for x, y in dm.splits.values():
        assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape[1] == 64
        assert x.min() >= 0.0 and x.max() <= 1.0
        assert set(y.tolist()) == set(range(10))


def test_digits_splits_ignore_run_seed_and_test_split_ignores_split_seed():
    a, b = loaded(name="digits", seed=1), loaded(name="digits", seed=2)
    for k in ("train", "val", "test"):
        assert torch.equal(a.splits[k][0], b.splits[k][0])
    c = loaded(name="digits", split_seed=3)
    assert torch.equal(a.splits["test"][0], c.splits["test"][0])
    assert not torch.equal(a.splits["val"][0], c.splits["val"][0])


def test_digits_test_split_is_the_declared_test_seed_0():
    """The test split is the stratified 15 % drawn with data.test_seed, 0 unless the user says otherwise."""
    from sklearn.datasets import load_digits

    from nnmodel.data import stratified_split

    images = torch.tensor(load_digits().data / 16.0, dtype=torch.float32)
    default, seed0, seed1 = (
        loaded(name="digits"),
        loaded(name="digits", test_seed=0),
        loaded(name="digits", test_seed=1),
    )
    assert DataConfig().test_seed == 0
    expected, _ = stratified_split(load_digits().target, 0.15, seed=0)
    assert torch.equal(default.splits["test"][0], images[expected])
    assert torch.equal(seed0.splits["test"][0], default.splits["test"][0])
    assert not torch.equal(seed1.splits["test"][0], default.splits["test"][0])


# ----------------------------------------------------------------------------- TensorBatches


def minibatches(batches: TensorBatches) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch's minibatches, out of their chunks."""
    return [minibatch for chunk in batches for minibatch in chunk]


def epoch_indices(batches: TensorBatches) -> torch.Tensor:
    return torch.cat([x[:, 0] for x, _ in minibatches(batches)]).long()


@pytest.mark.parametrize("n, batch_size", [(100, 32), (96, 32), (5, 8)])
def test_tensor_batches_cover_each_index_once_in_ceil_n_over_b_batches(n, batch_size):
    x, y = torch.arange(n, dtype=torch.float32)[:, None], torch.arange(n)
    batches = TensorBatches(x, y, batch_size, shuffle=True, seed=0)
    assert len(batches) == math.ceil(n / batch_size) == len(list(batches))
    idx = epoch_indices(batches)
    assert sorted(idx.tolist()) == list(range(n))
    assert all(torch.equal(bx[:, 0].long(), by) for bx, by in minibatches(batches))  # x and y stay paired


@pytest.mark.parametrize("k", [1, 3, 4, 16])
def test_chunks_carry_the_same_minibatches_in_the_same_order_for_every_k(k):
    x, y = torch.arange(100, dtype=torch.float32)[:, None], torch.arange(100)
    one = [(bx.clone(), by.clone()) for bx, by in minibatches(TensorBatches(x, y, 8, shuffle=True, seed=5))]
    batches = TensorBatches(x, y, 8, steps_per_execution=k, shuffle=True, seed=5)
    chunks = list(batches)
    assert len(batches) == len(chunks) == math.ceil(13 / k)  # 13 minibatches of 8 (the last one of 4)
    assert [len(c) for c in chunks] == [k] * (13 // k) + ([13 % k] if 13 % k else [])
    flat = [minibatch for chunk in chunks for minibatch in chunk]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(one, flat, strict=True))


def test_lightning_moves_a_chunk_whole_with_its_to_method():
    # Lightning documents that transfer_batch_to_device moves any object with a .to method by calling it: a
    # chunk is one transfer of two tensors. This fails if that ever stops (the chunk would arrive unmoved).
    chunk = Chunk(torch.zeros(10, 3), torch.arange(10), batch_size=4)
    moved = L.LightningModule().transfer_batch_to_device(chunk, torch.device("meta"), 0)
    assert isinstance(moved, Chunk) and (moved.x.device.type, moved.y.device.type) == ("meta", "meta")
    assert [len(y) for _, y in moved] == [4, 4, 2] and len(moved) == 3 and moved.batch_size == 4
    assert repr(chunk) == "Chunk(3 minibatches of 4, x (10, 3))"


def test_state_dict_resumes_mid_epoch_with_the_same_minibatches():
    x, y = torch.arange(100, dtype=torch.float32)[:, None], torch.arange(100)
    whole = TensorBatches(x, y, 8, steps_per_execution=4, shuffle=True, seed=1)
    list(whole)  # epoch 0
    reference = [b[1].tolist() for b in minibatches(whole)]  # epoch 1
    cut = TensorBatches(x, y, 8, steps_per_execution=4, shuffle=True, seed=1)
    list(cut)
    chunks = iter(cut)
    next(chunks), next(chunks)  # two chunks of epoch 1 done, then the run stops
    state = cut.state_dict()
    assert state == {"epoch": 1, "minibatches": 8}
    resumed = TensorBatches(x, y, 8, steps_per_execution=3, shuffle=True, seed=1)  # K may change on resume
    resumed.load_state_dict(state)
    rest = [b[1].tolist() for b in minibatches(resumed)]
    assert rest == reference[8:]
    assert resumed.state_dict() == {"epoch": 1, "minibatches": 13}


def test_tensor_batches_drop_last_and_no_shuffle():
    x, y = torch.arange(100, dtype=torch.float32)[:, None], torch.arange(100)
    batches = TensorBatches(x, y, 32, drop_last=True)
    assert len(batches) == 3 == len(list(batches))
    assert epoch_indices(batches).tolist() == list(range(96))


def test_tensor_batches_reshuffle_each_epoch_deterministically():
    x, y = torch.arange(50, dtype=torch.float32)[:, None], torch.arange(50)
    batches = TensorBatches(x, y, 8, shuffle=True, seed=7)
    epoch0, epoch1 = epoch_indices(batches), epoch_indices(batches)
    assert not torch.equal(epoch0, epoch1)
    resumed = TensorBatches(x, y, 8, shuffle=True, seed=7, epoch_fn=lambda: 1)
    assert torch.equal(epoch_indices(resumed), epoch1)
    other_seed = TensorBatches(x, y, 8, shuffle=True, seed=8)
    assert not torch.equal(epoch_indices(other_seed), epoch0)


@pytest.mark.parametrize("n, overlap", [(100, 0), (101, 1)])
def test_tensor_batches_ddp_shards_are_disjoint_with_equal_batch_counts(n, overlap):
    x, y = torch.arange(n, dtype=torch.float32)[:, None], torch.arange(n)
    shards = [TensorBatches(x, y, 16, shuffle=True, seed=3, rank=r, world_size=2) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == math.ceil(math.ceil(n / 2) / 16)
    idx = [set(epoch_indices(s).tolist()) for s in shards]
    assert len(idx[0] & idx[1]) == overlap  # only the wrap-around padding repeats
    assert idx[0] | idx[1] == set(range(n))


def test_unpadded_evaluation_shards_see_every_example_exactly_once():
    x, y = torch.arange(101, dtype=torch.float32)[:, None], torch.arange(101)
    shards = [TensorBatches(x, y, 16, steps_per_execution=2, rank=r, world_size=2, pad=False) for r in range(2)]
    seen = [epoch_indices(s).tolist() for s in shards]
    assert (len(seen[0]), len(seen[1])) == (51, 50)
    assert sorted(seen[0] + seen[1]) == list(range(101))


def test_datamodule_takes_rank_world_size_and_epoch_from_trainer():
    dm = loaded(name="moons")
    dm.trainer = SimpleNamespace(
        global_rank=1, world_size=2, current_epoch=5, strategy=SimpleNamespace(root_device=torch.device("cpu"))
    )
    batches = dm.train_dataloader()
    assert isinstance(batches, TensorBatches) and (batches.rank, batches.world_size) == (1, 2)
    seen = torch.cat([y for _, y in minibatches(batches)])
    y_train = dm.splits["train"][1]
    assert torch.equal(seen, y_train[batches.indices(5)][: len(seen)])


def test_lightning_fit_runs_on_tensor_batches():
    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(2, 2)

        def training_step(self, chunk, batch_idx):
            ((x, y),) = chunk  # a chunk of one minibatch (steps_per_execution=1)
            return torch.nn.functional.cross_entropy(self.layer(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = TensorDataModule(name="xor", batch_size=4, repeats=8)
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Tiny(), datamodule=dm)
    assert trainer.global_step == 2 * 8


# ----------------------------------------------------------------------------- MNIST family offline


def test_write_idx_is_readable_by_torchvision(tmp_path):
    from torchvision.datasets.mnist import read_image_file, read_label_file

    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "i", images)
    write_idx(tmp_path / "l", np.array([1, 2, 3], dtype=np.uint8))
    assert np.array_equal(read_image_file(str(tmp_path / "i")).numpy(), images)
    assert read_label_file(str(tmp_path / "l")).tolist() == [1, 2, 3]


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST"), ("kmnist", "KMNIST")])
def test_mnist_family_loads_offline_files(tmp_path, name, folder):
    write_fake_mnist(tmp_path, folder=folder)
    dm = loaded(name=name, root=str(tmp_path), download=False, val_fraction=0.1, batch_size=32)
    assert (dm.n_features, dm.n_classes, dm.image_shape) == (784, 10, (28, 28))
    assert (len(dm.splits["train"][0]), len(dm.splits["val"][0]), len(dm.splits["test"][0])) == (270, 30, 100)
    ((x, y),) = next(iter(dm.train_dataloader()))  # a chunk of one minibatch
    assert x.shape == (32, 784) and y.shape == (32,) and x.dtype == torch.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    raw = np.frombuffer((tmp_path / folder / "raw" / "t10k-images-idx3-ubyte").read_bytes()[16:], np.uint8)
    assert torch.allclose(dm.splits["test"][0].flatten(), torch.from_numpy(raw / 255.0).float())


def corrupt_magic(path: Path) -> None:
    path.write_bytes(np.array([1234], ">i4").tobytes() + path.read_bytes()[4:])


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-5])


def cut_header(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:6])


@pytest.mark.parametrize(
    "damage, error, words",
    [
        (Path.unlink, FileNotFoundError, "missing"),
        (corrupt_magic, ValueError, "magic number 1234, expected 2051"),
        (truncate, ValueError, "bytes, header (100, 28, 28) implies 78416"),
        (cut_header, ValueError, "6 bytes, shorter than its 16-byte header"),
    ],
)
def test_missing_or_corrupt_idx_file_names_the_file_in_one_line(tmp_path, damage, error, words):
    write_fake_mnist(tmp_path)
    bad = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    damage(bad)
    with pytest.raises(error) as info:
        TensorDataModule(name="mnist", root=str(tmp_path)).prepare_data()
    message = str(info.value)
    assert str(bad) in message and words in message and "data.download=true" in message and "\n" not in message


def test_image_and_label_counts_must_agree(tmp_path):
    write_fake_mnist(tmp_path)
    write_idx(tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte", np.zeros(299, np.uint8))
    with pytest.raises(ValueError, match="300 images but 299 labels"):
        check_idx_files(tmp_path, "mnist")


def test_an_idx_file_of_no_images_is_refused(tmp_path):
    write_fake_mnist(tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    write_idx(raw / "train-images-idx3-ubyte", np.zeros((0, 28, 28), np.uint8))
    write_idx(raw / "train-labels-idx1-ubyte", np.zeros(0, np.uint8))
    with pytest.raises(ValueError) as info:
        check_idx_files(tmp_path, "mnist")
    assert str(info.value).startswith(f"corrupt {raw / 'train-images-idx3-ubyte'}: it holds no images; put the raw")


@pytest.mark.parametrize(
    ("overrides", "sizes", "message"),
    [
        (
            ["data.val_fraction=0.0001"],
            {"train": 1528, "val": 0, "test": 269},
            "data=digits: the val split is empty (train 1528, val 0, test 269 examples; data.val_fraction=0.0001, "
            "data.test_fraction=0.15); raise data.val_fraction",
        ),
        (
            ["data=mnist"],
            {"train": 5, "val": 0, "test": 3},
            "data=mnist: the val split is empty (train 5, val 0, test 3 examples; data.val_fraction=0.1); raise "
            "data.val_fraction",
        ),
        (
            ["data=mnist"],
            {"train": 5, "val": 1, "test": 0},
            "data=mnist: the test split is empty (train 5, val 1, test 0 examples; data.val_fraction=0.1); give it "
            "more examples",
        ),
        (
            ["data=mnist"],
            {"train": 0, "val": 1, "test": 3},
            "data=mnist: the train split is empty (train 0, val 1, test 3 examples; data.val_fraction=0.1); lower "
            "data.val_fraction",
        ),
        (
            ["trainer.val_check_interval=32"],
            {"train": 1259, "val": 269, "test": 269},
            "trainer.val_check_interval=32 optimizer steps is more than an epoch's 20 (train 1259 examples, "
            "data.batch_size=64); give a multiple of 16 up to 20, a fraction of an epoch (0.5), or "
            "trainer.check_val_every_n_epoch=null to count steps across epochs",
        ),
        (
            ["steps_per_execution=32", "trainer.val_check_interval=32"],
            {"train": 1259, "val": 269, "test": 269},
            "trainer.val_check_interval=32 optimizer steps is more than an epoch's 20 (train 1259 examples, "
            "data.batch_size=64); give steps_per_execution=20 or less with an interval that is a multiple of it up "
            "to 20, a fraction of an epoch (0.5), or trainer.check_val_every_n_epoch=null to count steps across epochs",
        ),
        (  # Lightning would take int(0.1 × 2) = 0 batches, and refuse it in a traceback once the run has begun
            ["trainer.limit_train_batches=0.1"],
            {"train": 1259, "val": 269, "test": 269},
            "trainer.limit_train_batches=0.1 leaves no batch: the train split (1259 examples, data.batch_size=64) has "
            "2 of Lightning's batches (executions of steps_per_execution=16 minibatches each); give at least 0.5 or a "
            "whole number >= 1, or steps_per_execution=1 to count minibatches",
        ),
        (
            ["steps_per_execution=1", "trainer.limit_test_batches=0.1"],
            {"train": 1259, "val": 269, "test": 269},
            "trainer.limit_test_batches=0.1 leaves no batch: the test split (269 examples, data.batch_size=64) has 5 "
            "of Lightning's batches; give at least 0.2 or a whole number >= 1",
        ),
    ],
)
def test_splits_that_come_out_empty_are_refused_once_loaded(overrides, sizes, message):
    with pytest.raises(ConfigError) as info:
        check_split_sizes(compose(overrides), sizes)
    assert str(info.value) == message
    check_split_sizes(compose(["trainer.val_check_interval=16"]), {"train": 1259, "val": 269, "test": 269})
    for fraction in ("0.5", "0.0", "1.0"):  # one batch of two; validation off; all of it
        check_split_sizes(compose([f"trainer.limit_train_batches={fraction}"]), {"train": 1259, "val": 1, "test": 1})
    # an evaluation reads val and test only
    check_split_sizes(compose(["eval_only=true", "trainer.val_check_interval=32"]), {"train": 0, "val": 5, "test": 5})


def test_a_small_mnist_gives_an_empty_val_split_of_the_right_shape(tmp_path):
    # 8 training images: 10% of them is no image, which check_split_sizes then refuses in one line (the pixels'
    # reshape of an empty split used to fail first, in a traceback)
    write_fake_mnist(tmp_path, n_train=8, n_test=4)
    dm = loaded(name="mnist", root=str(tmp_path))
    x, y = dm.splits["val"]
    assert (tuple(x.shape), tuple(y.shape), tuple(dm.splits["train"][0].shape)) == ((0, 784), (0,), (8, 784))


def test_a_tiny_fraction_gives_an_empty_split_of_the_right_shape():
    dm = loaded(name="digits", val_fraction=0.0001)
    x, y = dm.splits["val"]
    assert (tuple(x.shape), tuple(y.shape), x.dtype) == ((0, 64), (0,), torch.float32)


def test_failed_download_raises_one_clear_line(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(self):  # torchvision's words, after trying each mirror
        raise RuntimeError(
            "Error downloading train-images-idx3-ubyte.gz:\nTried https://a/, got:\n<urlopen error [Errno -3] "
            "Temporary failure in name resolution>\nTried https://b/, got:\n<urlopen error [Errno -3] Temporary "
            "failure in name resolution>\n"
        )

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", offline)
    with pytest.raises(ConfigError) as refused:
        TensorDataModule(name="mnist", root=str(tmp_path), download=True).prepare_data()
    assert str(refused.value) == (  # the reason, not only "Error downloading F:"
        f"could not download mnist into {tmp_path / 'MNIST' / 'raw'} (Error downloading train-images-idx3-ubyte.gz: "
        "<urlopen error [Errno -3] Temporary failure in name resolution>); without network, copy the 4 raw IDX "
        "files there and set data.download=false"
    )


# ----------------------------------------------------------------------------- training-set quality


def test_train_fraction_keeps_half_of_each_class():
    full, half = loaded(name="digits"), loaded(name="digits", train_fraction=0.5)
    counts = torch.bincount(full.splits["train"][1])
    assert len(half.splits["train"][1]) == sum(math.floor(c / 2 + 0.5) for c in counts.tolist())
    assert torch.equal(half.splits["val"][0], full.splits["val"][0])


def test_label_noise_changes_exactly_round_p_n_labels_to_other_classes():
    clean, noisy = loaded(name="digits"), loaded(name="digits", label_noise=0.2)
    y, y_noisy = clean.splits["train"][1], noisy.splits["train"][1]
    assert int((y != y_noisy).sum()) == math.floor(0.2 * len(y) + 0.5) == 252
    assert torch.equal(clean.splits["train"][0], noisy.splits["train"][0])
    assert torch.equal(clean.splits["test"][1], noisy.splits["test"][1])


def test_input_noise_changes_training_inputs_only():
    clean, noisy = loaded(name="digits"), loaded(name="digits", input_noise=0.1)
    diff = noisy.splits["train"][0] - clean.splits["train"][0]
    assert diff.std().item() == pytest.approx(0.1, rel=0.05)
    assert torch.equal(noisy.splits["train"][1], clean.splits["train"][1])
    for k in ("val", "test"):
        assert torch.equal(noisy.splits[k][0], clean.splits[k][0])


# ----------------------------------------------------------------------------- small datasets


@pytest.mark.parametrize("gate, labels", [("xor", [0, 1, 1, 0]), ("and", [0, 0, 0, 1]), ("or", [0, 1, 1, 1])])
def test_logic_gates_are_their_truth_tables(gate, labels):
    dm = loaded(name=gate, repeats=5)
    table = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    for k in ("val", "test"):
        assert torch.equal(dm.splits[k][0], table) and dm.splits[k][1].tolist() == labels
    x, y = dm.splits["train"]
    assert torch.equal(x, table.repeat(5, 1)) and y.tolist() == labels * 5


@pytest.mark.parametrize("name", ["circles", "moons"])
def test_circles_and_moons_keep_a_fixed_sample_and_test_split(name):
    a, b = loaded(name=name, n_samples=200), loaded(name=name, n_samples=200, seed=9, split_seed=4)
    assert sum(len(y) for _, y in a.splits.values()) == 200
    for k in ("train", "val", "test"):
        assert a.splits[k][0].shape[1] == 2 and set(a.splits[k][1].tolist()) == {0, 1}
    assert torch.equal(a.splits["test"][0], b.splits["test"][0])  # the sample and its test split are fixed
    assert not torch.equal(a.splits["val"][0], b.splits["val"][0])


# ----------------------------------------------------------------------------- errors

VALID = "and, circles, csv, digits, fashion_mnist, kmnist, mnist, moons, npz, or, xor"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["data.name=mnsit"], f"unknown data 'mnsit'; did you mean 'mnist'? choose one of: {VALID}"),
        (["data.name=zzz"], f"unknown data 'zzz'; choose one of: {VALID}"),
        (["data.batch_size=0"], "data.batch_size must be an integer >= 1, got 0"),
        (["data.val_fraction=-0.1"], "data.val_fraction must be a number in [0, 1], got -0.1"),
        (["data.label_noise=1.5"], "data.label_noise must be a number in [0, 1], got 1.5"),
        (["data.train_fraction=0"], "data.train_fraction must be a number in (0, 1], got 0.0"),
        (["data.input_noise=-1.0"], "data.input_noise must be a number >= 0, got -1.0"),
        (
            ["data.val_fraction=0.5", "data.test_fraction=0.5"],
            "data.val_fraction + data.test_fraction must be < 1 to leave a training split, got 0.5 + 0.5",
        ),
        (
            ["+data.bathc_size=3"],
            "unknown key 'data.bathc_size'; did you mean 'data.batch_size'? choose one of: data.batch_size,",
        ),
    ],
)
def test_bad_config_values_give_one_line_errors(overrides, message):
    """Through the one validation path (nnmodel.validate), as ``python train.py`` checks them."""
    with pytest.raises(ConfigError) as info:
        validate_config(compose(overrides))
    assert str(info.value).startswith(message)


@pytest.mark.parametrize("override", ["data.batch_size=2.5", "data.download=maybe"])
def test_values_of_the_wrong_type_are_refused_by_the_schema(override):
    with pytest.raises(HydraException):
        compose([override])


def test_every_registered_dataset_has_a_config_file():
    configs = Path(__file__).parents[1] / "configs" / "data"
    assert sorted(p.stem for p in configs.glob("*.yaml")) == sorted(DATASETS)


def test_trainer_predict_gives_one_class_per_example_in_order():
    from nnmodel.module import NNModule

    torch.manual_seed(0)
    x, y = torch.randn(50, 3), torch.randint(0, 2, (50,))
    module = NNModule(3, [4], 2)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    chunks = trainer.predict(module, TensorBatches(x, y, 8, steps_per_execution=3, shuffle=False))
    assert [len(c) for c in chunks] == [24, 24, 2]  # 7 minibatches of 8 (the last of 2) in chunks of 3
    assert torch.equal(torch.cat(chunks), module.net.predict(x))


@pytest.mark.parametrize(("precision", "dtype"), [("64", torch.float64), ("bf16-true", torch.bfloat16)])
def test_a_chunk_reaches_the_network_in_its_dtype(precision: str, dtype: torch.dtype, tmp_path: Path) -> None:
    """trainer.precision=64 makes the network float64 while the data stay float32: Lightning casts the tensors of
    the batch collections it knows, and NNModule casts a Chunk's (it used to fail with "mat1 and mat2 must have
    the same dtype")."""
    from nnmodel.training import train

    overrides = ["data=xor", "trainer.max_epochs=1", "diagnostics=off", f"trainer.precision={precision}"]
    out = train(compose([*overrides, f"paths.output_dir={tmp_path}", "progress_refresh_rate=0"]))
    assert out["status"] == "ok" and out["test/acc"] is not None
    weights = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert {w.dtype for w in weights.values()} == {dtype}


def test_a_label_outside_the_ten_classes_is_refused_in_one_line(tmp_path):
    write_fake_mnist(tmp_path)
    labels = np.zeros(300, np.uint8)
    labels[7] = 200
    write_idx(tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte", labels)
    with pytest.raises(ValueError) as err:
        check_idx_files(tmp_path, "mnist")
    assert str(err.value).startswith(
        f"corrupt {tmp_path}/MNIST/raw/train-labels-idx1-ubyte: label 200 at row 7, but the classes are 0-9; put the raw"
    )


def test_compressed_idx_files_are_named_with_the_way_to_decompress_them(tmp_path):
    import gzip

    from idx_fixtures import write_mnist_like

    from nnmodel.data.mnist import check_idx_files

    write_mnist_like(tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    images = raw / "train-images-idx3-ubyte"
    gz = raw / "train-images-idx3-ubyte.gz"
    gz.write_bytes(gzip.compress(images.read_bytes()))  # as the files are downloaded
    images.write_bytes(gz.read_bytes())  # gzip data under the raw name
    with pytest.raises(ValueError) as refused:
        check_idx_files(tmp_path, "mnist")
    assert (
        str(refused.value) == f"corrupt {images}: it is gzip-compressed; decompress it (mv {images} {gz}; gunzip {gz})"
    )
    images.unlink()  # only the .gz
    with pytest.raises(FileNotFoundError) as refused:
        check_idx_files(tmp_path, "mnist")
    assert str(refused.value).startswith(
        f"missing {images} (train-images-idx3-ubyte.gz is there: decompress it, gunzip {gz}); "
    )


def test_a_train_split_without_some_classes_is_warned_of(make_cfg, tmp_path):
    import numpy as np

    from nnmodel.data import write_idx
    from nnmodel.errors import NNModelWarning
    from nnmodel.training import build_datamodule, load_splits

    raw = tmp_path / "MNIST" / "raw"
    for split, n, classes in (("train", 300, 3), ("t10k", 60, 10)):  # training labels of three digits only
        write_idx(raw / f"{split}-images-idx3-ubyte", np.zeros((n, 28, 28), dtype=np.uint8))
        write_idx(raw / f"{split}-labels-idx1-ubyte", (np.arange(n) % classes).astype(np.uint8))
    cfg = make_cfg("data=mnist", f"data.root={tmp_path}")
    with pytest.warns(NNModelWarning) as warned:
        load_splits(cfg, build_datamodule(cfg))
    assert [str(w.message) for w in warned] == [
        "data=mnist: the train split holds 3 of the 10 classes; the network cannot learn 7 classes it never sees "
        "(['3', '4', '5', '6', '7', '8', '9'])"
    ]
