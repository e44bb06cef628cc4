"""nnmodel.MLPClassifier: scikit-learn's own estimator checks, and the habits of its users."""

from __future__ import annotations

import os
import pickle
import re
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from nnmodel import ConfigError, MLPClassifier
from nnmodel.errors import DivergedError

# The checks expected to fail, each with its reason (scikit-learn reports them as xfail).
EXPECTED_FAILURES: dict[str, str] = {}  # none today: every check of scikit-learn 1.9 passes


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, ...]:
    x, y = load_digits(return_X_y=True)
    return tuple(train_test_split(x / 16, y, test_size=0.25, random_state=0, stratify=y))


@pytest.mark.slow
@parametrize_with_checks([MLPClassifier(max_epochs=20)], expected_failed_checks=lambda est: EXPECTED_FAILURES)
def test_scikit_learn_estimator_checks(estimator, check) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check(estimator)


def test_fit_predict_score_on_digits(digits) -> None:
    x_train, x_test, y_train, y_test = digits
    clf = MLPClassifier(hidden=(64,), max_epochs=20).fit(x_train, y_train)
    assert clf.n_features_in_ == 64 and list(clf.classes_) == list(range(10))
    assert clf.score(x_test, y_test) > 0.93
    proba = clf.predict_proba(x_test)
    assert proba.shape == (len(x_test), 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(clf.predict(x_test), clf.classes_[proba.argmax(axis=1)])
    assert len(clf.loss_curve_) == clf.n_iter_ == 20 and clf.loss_curve_[-1] < clf.loss_curve_[0]


def test_same_seed_same_model_and_clone_is_unfitted(digits) -> None:
    x_train, x_test, y_train, _ = digits
    a = MLPClassifier(hidden=(16,), max_epochs=3, seed=3).fit(x_train, y_train)
    b = clone(a)
    assert not hasattr(b, "net_") and b.get_params() == a.get_params()
    b.fit(x_train, y_train)
    np.testing.assert_array_equal(a.predict_proba(x_test), b.predict_proba(x_test))
    c = MLPClassifier(hidden=(16,), max_epochs=3, seed=4).fit(x_train, y_train)
    assert not np.array_equal(a.predict_proba(x_test), c.predict_proba(x_test))


def test_string_labels_pickle_and_leaky_relu(digits) -> None:
    x_train, x_test, y_train, y_test = digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    clf = MLPClassifier(hidden=(32,), activation="leaky_relu", max_epochs=20).fit(x_train, names[y_train])
    assert list(clf.classes_) == sorted(names)
    predicted = clf.predict(x_test)
    assert predicted.dtype == clf.classes_.dtype and set(predicted) <= set(names)
    assert clf.score(x_test, names[y_test]) > 0.9
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict(x_test), predicted)


def test_partial_fit_equals_fit_epoch_by_epoch(digits) -> None:
    """Three partial_fit calls are three epochs of fit: the same orders, the same Adam state."""
    x_train, x_test, y_train, _ = digits
    whole = MLPClassifier(hidden=(16,), max_epochs=3).fit(x_train, y_train)
    parts = MLPClassifier(hidden=(16,), max_epochs=3)
    for _ in range(3):
        parts.partial_fit(x_train, y_train, classes=np.arange(10))
    assert parts.n_iter_ == 3
    np.testing.assert_array_equal(parts.predict_proba(x_test), whole.predict_proba(x_test))
    np.testing.assert_array_equal(parts.loss_curve_, whole.loss_curve_)


def test_pipeline_cross_val_score_and_grid_search_with_string_labels(digits) -> None:
    x_train, _, y_train, _ = digits
    labels = np.where(y_train % 2 == 0, "even", "odd")
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_epochs=4))
    scores = cross_val_score(pipe, x_train, labels, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.85
    search = GridSearchCV(pipe, {"mlpclassifier__hidden": [(4,), (32,)]}, cv=3).fit(x_train, labels)
    assert search.best_params_ == {"mlpclassifier__hidden": (32,)}
    assert set(search.predict(x_train[:20])) <= {"even", "odd"}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"hidden": (0,)}, "hidden[0] must be an integer >= 1, got 0"),
        ({"activation": "relux"}, "unknown activation 'relux'; did you mean 'relu'?"),
        ({"optimizer": "adamm"}, "unknown optimizer 'adamm'; did you mean 'adam'?"),
        ({"optimizer": "SGD"}, "unknown optimizer 'SGD'; did you mean 'sgd'?"),  # case: difflib alone gave no hint
        ({"accelerator": "CPU"}, "unknown accelerator 'CPU'; did you mean 'cpu'?"),
        ({"lr": -0.1}, "lr must be a number in (0, inf), got -0.1"),
        ({"epsilon": 0}, "epsilon must be a number > 0"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
        ({"accelerator": "tpux"}, "unknown accelerator 'tpux'"),
        # a str is not a tuple of sizes: "16" became layers of 1 and 6 units
        (
            {"hidden": "16"},
            "hidden='16': give the hidden layer sizes as whole numbers, e.g. hidden=(64,) or hidden=(32, ",
        ),
        ({"hidden": (8.0,)}, "hidden=(8.0,): give the hidden layer sizes as whole numbers"),
        ({"hidden": None}, "hidden=None: give the hidden layer sizes as whole numbers"),
        ({"activation": None}, "activation=None: give a name of nnmodel.ACTIVATIONS or an import path"),
        ({"activation": torch.tanh}, "for a function of your own, nnmodel.register_activation('name', fn), then "),
        ({"optimizer": None}, "optimizer=None: Incompatible value 'None' for field of type 'str'"),
        ({"lr": True}, "lr=True: Value 'True' of type 'bool' could not be converted to Float"),
        (
            {"log_dir": 3},
            "log_dir=3: give a directory for TensorBoard's logs (a str or pathlib.Path), or None for none",
        ),
    ],
)
def test_bad_parameters_are_refused_in_one_line(params, message) -> None:
    x = np.random.default_rng(0).normal(size=(20, 3))
    y = np.arange(20) % 2
    with pytest.raises(ConfigError) as err:
        MLPClassifier(max_epochs=1, **params).fit(x, y)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(("labels", "kinds"), [(["a", 1], "int, str"), (["a", None], "NoneType, str")])
def test_labels_that_cannot_be_sorted_are_refused_in_one_line(labels, kinds) -> None:
    x = np.random.default_rng(0).normal(size=(20, 3))
    y = np.array(labels * 10, dtype=object)
    for fit in (MLPClassifier(max_epochs=1).fit, MLPClassifier().partial_fit):
        with pytest.raises(ConfigError) as refused:  # numpy's own: TypeError: '<' not supported between ...
            fit(x, y)
        assert str(refused.value) == (
            f"y mixes labels of types {kinds}, which cannot be sorted into classes_; give them one type, e.g. "
            "y.astype(str)"
        )


def test_text_is_refused_by_fit_as_predict_refuses_it() -> None:
    # scikit-learn's float32 conversion read "0.5" as 0.5 in fit; predict refused the same X, so a model could not
    # score its own training data
    x, y = tiny()
    with pytest.raises(ConfigError) as refused:
        MLPClassifier(max_epochs=1).fit(x.astype(str), y)
    assert str(refused.value) == "X must be a 2-D array (examples × features) of numbers, but it holds text ('0.0')"


def test_a_divergence_is_advised_in_the_estimators_parameters() -> None:
    x, y = tiny()
    with pytest.raises(DivergedError) as diverged:
        MLPClassifier(max_epochs=3, lr=1e12, optimizer="sgd", batch_size=4).fit(x * 1e3, y)
    assert re.match(r"training diverged: the loss became \S+ at step \d+ \(epoch 1\); lower the learning rate "
                    r"\(lr=1000000000000\.0\)$", str(diverged.value)), str(diverged.value)  # fmt: skip
    with pytest.raises(DivergedError) as at_start:  # J of the initial weights: no learning rate has acted
        MLPClassifier(max_epochs=1, epsilon=1e30).fit(x, y)
    assert str(at_start.value) == (
        "training diverged: the loss became nan at step 1 (epoch 1), at the initial weights, before any update: they "
        "or the inputs are too large; lower epsilon=1e+30 (init epsilon_uniform), or scale the inputs"
    )


def test_single_class_and_unseen_labels_are_refused() -> None:
    x = np.zeros((6, 2))
    with pytest.raises(ConfigError, match=r"^y holds one class \('a'\); a classifier needs at least 2$"):
        MLPClassifier().fit(x, ["a"] * 6)
    clf = MLPClassifier(max_epochs=1).partial_fit(x, [0, 1] * 3)
    with pytest.raises(ConfigError, match=r"y holds labels not in classes_: \[2\]"):
        clf.partial_fit(x, [2] * 6)


def test_partial_fit_takes_a_new_lr_and_refuses_a_new_network(digits) -> None:
    x_train, _, y_train, _ = digits
    clf = MLPClassifier(hidden=(8,), max_epochs=1).partial_fit(x_train, y_train, classes=np.arange(10))
    clf.set_params(lr=0.5).partial_fit(x_train, y_train)
    assert [g["lr"] for g in clf.optimizer_state_["param_groups"]] == [0.5]
    clf.set_params(hidden=[8]).partial_fit(x_train, y_train)  # (8,), [8] and 8 are one network
    clf.set_params(hidden=8).partial_fit(x_train, y_train)
    assert clf.n_iter_ == 4
    with pytest.raises(ConfigError, match=r"^partial_fit: hidden changed from \[8\] to \[9\] since the first call"):
        clf.set_params(hidden=(9,)).partial_fit(x_train, y_train)


def test_a_refused_refit_leaves_the_fitted_model_as_it_was(digits) -> None:
    x_train, x_test, y_train, _ = digits
    clf = MLPClassifier(hidden=(8,), max_epochs=1).fit(x_train, y_train)
    before = clf.predict(x_test)
    with pytest.raises(ConfigError, match="unknown activation 'nope'"):
        clf.set_params(activation="nope").fit(x_train, y_train)
    np.testing.assert_array_equal(clf.set_params(activation="relu").predict(x_test), before)


def test_a_refit_refused_for_its_data_leaves_the_estimator_unfitted(digits) -> None:
    from sklearn.exceptions import NotFittedError

    x_train, x_test, y_train, _ = digits
    clf = MLPClassifier(hidden=(8,), max_epochs=1).fit(x_train, y_train)
    with pytest.raises(ConfigError, match="one class"):
        clf.fit(x_train[:5, :3], ["a"] * 5)
    with pytest.raises(NotFittedError):
        clf.predict(x_test)


@pytest.mark.parametrize("before", [(False, False), (True, True)], ids=["off", "on-warn-only"])
def test_a_fit_leaves_torchs_determinism_settings_as_it_found_them(digits, before, monkeypatch) -> None:
    # Lightning's Trainer(deterministic=True) sets them process-wide; a notebook's own CUDA code would then
    # fail on ops without a deterministic kernel
    x_train, _, y_train, _ = digits
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    torch.use_deterministic_algorithms(before[0], warn_only=before[1])
    try:
        MLPClassifier(hidden=(8,), max_epochs=1).fit(x_train, y_train)
        after = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
        assert after == before
        assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    finally:
        torch.use_deterministic_algorithms(False)


# ----------------------------------------------------------------------------- parameters checked as train.py checks them


def tiny() -> tuple[np.ndarray, np.ndarray]:
    return np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]] * 3), np.array([0, 1, 1, 0] * 3)


@pytest.mark.parametrize(
    ("seed", "message"),
    [
        (-1, "seed must be an integer >= 0, got -1"),
        (2**32, "seed must be an integer < 2**32 (numpy's seeds are 32-bit), got 4294967296"),
        (1.5, "seed must be an integer >= 0, got 1.5"),
    ],
)
def test_a_bad_seed_is_refused_as_the_command_line_refuses_it(seed, message) -> None:
    with pytest.raises(ConfigError) as refused:
        MLPClassifier(max_epochs=1, seed=seed).fit(*tiny())
    assert str(refused.value) == message


def test_numpy_integers_are_integers(digits) -> None:
    # a grid over np.arange gives np.int64: the same model as the Python int
    x_train, x_test, y_train, _ = digits
    a = MLPClassifier(hidden=(np.int64(8),), max_epochs=np.int64(1), batch_size=np.int64(32), seed=np.int64(3))
    b = MLPClassifier(hidden=(8,), max_epochs=1, batch_size=32, seed=3)
    np.testing.assert_array_equal(
        a.fit(x_train, y_train).predict_proba(x_test), b.fit(x_train, y_train).predict_proba(x_test)
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_that_is_not_there_is_refused_in_the_estimators_words() -> None:
    from omegaconf import OmegaConf

    from nnmodel.validate import check_machine

    with pytest.raises(ConfigError) as cli:
        check_machine(OmegaConf.create({"accelerator": "gpu", "devices": 1}))
    with pytest.raises(ConfigError) as refused:
        MLPClassifier(max_epochs=1, accelerator="gpu").fit(*tiny())
    # one check, each in its user's words: the command line's keys, the estimator's parameters
    assert str(cli.value).startswith("trainer.accelerator=gpu: no GPU is visible here (")
    assert str(cli.value).endswith(
        "use trainer.accelerator=cpu, or trainer.accelerator=auto to take a GPU only where there is one"
    )
    assert str(refused.value) == (
        str(cli.value)
        .replace("trainer.accelerator=gpu", "accelerator='gpu'")
        .replace("trainer.accelerator=cpu", "accelerator='cpu'")
        .replace("trainer.accelerator=auto", "accelerator='auto'")
    )


def test_a_network_too_big_for_memory_is_refused_before_it_is_built() -> None:
    with pytest.raises(ConfigError) as refused:
        MLPClassifier(hidden=(10**6, 10**6), max_epochs=1).fit(*tiny())
    assert str(refused.value).startswith(  # in the estimator's parameters, not train.py's model.hidden
        "hidden=[1000000, 1000000]: the network 2-1000000-1000000-2 has 1,000,006,000,002 parameters, and its "
        "weights, gradients and adam state need about 16000.4 GB, but "  # a minibatch of tiny()'s 12 rows
    )


def test_a_batch_size_beyond_the_data_is_a_full_batch_not_a_memory_refusal() -> None:
    X, y = tiny()
    clf = MLPClassifier(hidden=(8,), batch_size=10**8, max_epochs=2).fit(X, y)  # 10**8 rows would need 160 GB
    assert clf.n_steps_ == 2  # one full batch an epoch


# ----------------------------------------------------------------------------- probabilities


def test_k_sigmoid_units_give_rows_that_sum_to_1_and_agree_with_predict(digits) -> None:
    x_train, x_test, y_train, _ = digits
    clf = MLPClassifier(hidden=(16,), output="sigmoid", max_epochs=2).fit(x_train, y_train)
    proba = clf.predict_proba(x_test)
    assert proba.shape == (len(x_test), 10) and proba.min() >= 0
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(clf.predict(x_test), clf.classes_[proba.argmax(axis=1)])
    h = torch.sigmoid(clf.net_(torch.from_numpy(x_test.astype(np.float32)))).detach().numpy()
    np.testing.assert_allclose(proba, h / h.sum(axis=1, keepdims=True), rtol=1e-5)


def test_a_linear_output_has_no_predict_proba_so_scikit_learn_does_not_take_scores_for_probabilities() -> None:
    clf = MLPClassifier(hidden=(4,), output="linear", max_epochs=1)
    assert not hasattr(clf, "predict_proba")  # before fit too: meta-estimators ask the unfitted one
    clf.fit(*tiny())
    with pytest.raises(AttributeError) as missing:  # scikit-learn's available_if: its message, ours as the cause
        clf.predict_proba(tiny()[0])
    assert str(missing.value) == "This 'MLPClassifier' has no attribute 'predict_proba'"
    assert str(missing.value.__cause__) == (
        "predict_proba: this network's output is 'linear', whose units are scores fitted to the one-hot labels by "
        "squared error, not probabilities (they can be negative or above 1); use predict, or train with output "
        "softmax or sigmoid"
    )
    assert clf.predict(tiny()[0]).shape == (12,)
    assert hasattr(clf.set_params(output="softmax"), "predict_proba") is False  # the fitted network is still linear
    assert hasattr(MLPClassifier(), "predict_proba")


def test_log_dir_gets_tensorboard_curves_and_no_placeholder_metric(tmp_path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    X, y = load_digits(return_X_y=True)
    MLPClassifier(hidden=(16,), max_epochs=2, batch_size=64, log_dir=str(tmp_path)).fit(X[:640] / 16, y[:640])
    (version,) = tmp_path.iterdir()  # one run: version_0
    events = EventAccumulator(str(version))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert [e.step for e in events.Scalars("train/loss_epoch")] == [10, 20]  # 10 steps an epoch, after its last
    assert "hp_metric" not in tags  # Lightning's -1 placeholder, which train.py does not write either


def test_partial_fit_with_log_dir_continues_one_curve(tmp_path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    X, y = load_digits(return_X_y=True)
    clf = MLPClassifier(hidden=(16,), batch_size=64, log_dir=str(tmp_path))
    for _ in range(3):  # 640 examples: 10 steps an epoch
        clf.partial_fit(X[:640] / 16, y[:640], classes=np.arange(10))
    assert clf.n_steps_ == 30 and clf.log_version_ == 0
    (version,) = tmp_path.iterdir()  # the three calls in one version, not version_0, _1, _2
    events = EventAccumulator(str(version))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss_epoch")] == [10, 20, 30]  # one axis, not 10, 10, 10
    clf.fit(X[:640] / 16, y[:640])  # a new network: a new version, from step 0
    assert clf.log_version_ == 1 and clf.n_steps_ == 10 * clf.max_epochs


def test_ctrl_c_in_fit_is_a_keyboard_interrupt_not_lightnings_system_exit(tmp_path) -> None:
    import signal
    import threading
    import time

    X, y = load_digits(return_X_y=True)

    done = threading.Event()  # fit ended (however): no Ctrl-C must reach pytest after it

    def ctrl_c_once_fit_has_begun() -> None:  # the logger's event file is written as fit begins
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob("version_0/events.*")) and time.monotonic() < deadline and not done.is_set():
            time.sleep(0.02)
        time.sleep(0.3)
        if not done.is_set():
            os.kill(os.getpid(), signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)
    sender = threading.Thread(target=ctrl_c_once_fit_has_begun, daemon=True)
    sender.start()
    clf = MLPClassifier(hidden=(16,), max_epochs=100000, log_dir=str(tmp_path))
    try:
        with pytest.raises(KeyboardInterrupt):  # Lightning's own answer is SystemExit(1): Jupyter's "SystemExit: 1"
            clf.fit(X / 16, y)
    finally:
        done.set()
        sender.join()
    assert not hasattr(clf, "net_")  # an interrupted fit leaves the estimator unfitted
    # Lightning ignores SIGINT from the Ctrl-C on, and never gives it back: the next Ctrl-C would do nothing
    assert signal.getsignal(signal.SIGINT) is before
