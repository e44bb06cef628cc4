"""What nnmodel.load(...).predict / predict_proba and nnmodel.MLPClassifier.predict / predict_proba take, and
the probabilities they give: one check of the inputs for both (nnmodel.api.check_inputs), rows that sum to 1."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

import nnmodel
from nnmodel import ConfigError, FeedForward, MLPClassifier, set_weights
from nnmodel.api import Model, check_inputs

X_XOR = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]] * 5)
Y_XOR = np.array([0, 1, 1, 0] * 5)
WRONG_FEATURES = {"model": "the model", "estimator": "MLPClassifier"}


def table_model() -> Model:
    """A 2-feature, 2-class network that standardises its inputs, as nnmodel.load gives for data=csv."""
    net = FeedForward(2, [3], 2, activation="tanh", seed=0).eval()
    return Model(net, ["setosa", "virginica"], mean=torch.tensor([3.0, 1.0]), std=torch.tensor([2.0, 0.5]))


@pytest.fixture(scope="module")
def estimator() -> MLPClassifier:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MLPClassifier(hidden=(4,), max_epochs=1, batch_size=4).fit(X_XOR, Y_XOR)


@pytest.fixture(params=["model", "estimator"])
def predictor(request, estimator):
    """(who, the object with predict and predict_proba): a loaded model and a fitted MLPClassifier, 2 features."""
    return request.param, table_model() if request.param == "model" else estimator


REFUSED = [
    (
        [1.4, 0.2],
        "expected a 2-D array (examples × 2 features), got a 1-D array of shape (2,). "
        "Reshape your data: X.reshape(1, -1) if it is one example",
    ),
    (
        torch.zeros(2, 2, 2),
        "expected a 2-D array (examples × 2 features), got a 3-D array of shape (2, 2, 2). "
        "Reshape your data to (examples, 2)",
    ),
    (
        np.zeros((0, 2)),
        "X has no examples (shape (0, 2)); give a 2-D array (examples × 2 features) with at least one row",
    ),
    (
        [[math.nan, 0.2]],
        "X holds nan at row 0, column 0: NaN and inf cannot be predicted on (impute or drop such rows first)",
    ),
    (
        [[0.1, 0.2], [0.3, -math.inf]],
        "X holds -inf at row 1, column 1: NaN and inf cannot be predicted on (impute or drop such rows first)",
    ),
    (
        [[1e39, 0.2]],
        "X holds 1e+39 at row 0, column 0, beyond float32's range: NaN and inf cannot be predicted on "
        "(impute or drop such rows first)",
    ),
    # missing values: None was said as nan, pandas' NA as "float() argument must be ... not 'NAType'"
    (
        np.array([[0.1, None]], dtype=object),
        "X holds a missing value (None) at row 0, column 1: missing values cannot be predicted on (impute or drop "
        "such rows first)",
    ),
    (
        pd.DataFrame({"a": [0.1, 0.3], "b": [0.2, None]}).astype("Float64").to_numpy(dtype=object),
        "X holds a missing value (<NA>) at row 1, column 1: missing values cannot be predicted on (impute or drop "
        "such rows first)",
    ),
    ([["1.4", "0.2"]], "X must be a 2-D array (examples × 2 features) of numbers, but it holds text ('1.4')"),
    ([[1.0, 2.0], [3.0]], "X must be a 2-D array (examples × 2 features) of numbers: setting an array element"),
]


@pytest.mark.parametrize("method", ["predict", "predict_proba"])
@pytest.mark.parametrize(("x", "message"), REFUSED, ids=lambda v: None if isinstance(v, str) else repr(v)[:30])
def test_bad_inputs_are_refused_in_one_line_by_both(predictor, method, x, message) -> None:
    _, predicts = predictor
    with pytest.raises(ConfigError) as refused:
        getattr(predicts, method)(x)
    said = str(refused.value)
    if message.endswith("setting an array element"):  # numpy's own words follow
        assert said.startswith(message) and "\n" not in said
    else:
        assert said == message


@pytest.mark.parametrize("method", ["predict", "predict_proba"])
def test_a_wrong_number_of_features_is_refused_as_scikit_learn_words_it(predictor, method) -> None:
    who, predicts = predictor
    with pytest.raises(ConfigError) as refused:
        getattr(predicts, method)([[1.0, 2.0, 3.0]])
    assert str(refused.value) == f"X has 3 features, but {WRONG_FEATURES[who]} is expecting 2 features as input"


def test_one_row_as_a_1d_list_no_longer_broadcasts_against_the_standardisation() -> None:
    # before: (2,) became (2, 1), minus the (2,) mean broadcast to (2, 2), and two labels came back for one row
    model = table_model()
    with pytest.raises(ConfigError, match=r"^expected a 2-D array \(examples × 2 features\), got a 1-D array"):
        model.predict([1.4, 0.2])
    assert model.predict([[1.4, 0.2]]).shape == (1,)


def test_lists_arrays_tensors_and_data_frames_give_the_same_predictions() -> None:
    model = table_model()
    rows = [[1.4, 0.2], [5.9, 2.1], [3.0, 1.0]]
    expected = model.predict(np.array(rows, dtype=np.float32))
    for x in (rows, np.array(rows), torch.tensor(rows), torch.tensor(rows, dtype=torch.float64), pd.DataFrame(rows)):
        np.testing.assert_array_equal(model.predict(x), expected)
    # the standardisation is applied to the raw rows: the network sees (x - mean) / std
    z = model.net(torch.tensor([[(1.4 - 3.0) / 2.0, (0.2 - 1.0) / 0.5]]))
    assert model.predict([[1.4, 0.2]]).tolist() == [model.classes[int(z.argmax())]]


def test_check_inputs_returns_the_array_the_network_takes() -> None:
    out = check_inputs([[1, 2], [3, 4]], 2)
    assert out.dtype == np.float32 and out.flags["C_CONTIGUOUS"] and out.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert check_inputs(np.ones((1, 2)), 2, dtype=np.float64).dtype == np.float64


# ----------------------------------------------------------------------------- probabilities


def by_hand(thetas: list[list[float]], output: str) -> Model:
    """A network without hidden layer, Θ set by hand (bias in column 0)."""
    net = set_weights(FeedForward(2, [], len(thetas), output=output), [thetas])
    return Model(net.eval(), list(range(max(2, len(thetas)))))


def test_k_sigmoid_units_are_normalised_to_rows_that_sum_to_1() -> None:
    model = by_hand([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], "sigmoid")
    x = np.array([[0.0, 0.0], [2.0, -1.0]])
    z = np.array([[0.0, 0.0, 1.0], [2.0, -1.0, 1.0]])
    h = 1 / (1 + np.exp(-z))  # the K one-vs-rest probabilities, which do not sum to 1
    proba = model.predict_proba(x)
    np.testing.assert_allclose(proba, h / h.sum(axis=1, keepdims=True), rtol=1e-6)
    np.testing.assert_allclose(proba.sum(axis=1), [1.0, 1.0], rtol=1e-6)
    np.testing.assert_array_equal(model.predict(x), [2, 0])
    np.testing.assert_array_equal(proba.argmax(axis=1), [2, 0])


def test_k_sigmoid_units_that_all_underflow_still_give_probabilities() -> None:
    # σ(−200) is 0 in float32: h / Σh would be 0 / 0; the softmax of log σ(z) is exact
    model = by_hand([[-200.0, 0.0, 0.0], [-200.0, 0.0, 0.0], [-201.0, 0.0, 0.0]], "sigmoid")
    proba = model.predict_proba([[0.0, 0.0]])
    e = math.exp(-1.0)
    np.testing.assert_allclose(proba, [[1 / (2 + e), 1 / (2 + e), e / (2 + e)]], rtol=1e-5)


def test_one_logistic_unit_and_softmax_give_their_probabilities() -> None:
    unit = by_hand([[0.0, 1.0, 0.0]], "sigmoid")  # two classes: [1 − h, h]
    s = 1 / (1 + math.exp(-2.0))
    np.testing.assert_allclose(unit.predict_proba([[2.0, 5.0]]), [[1 - s, s]], rtol=1e-6)
    softmax = by_hand([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], "softmax")
    np.testing.assert_allclose(softmax.predict_proba([[1.0, 0.0]]), [[math.e / (math.e + 1), 1 / (math.e + 1)]])


LINEAR = (
    "predict_proba: this network's output is 'linear', whose units are scores fitted to the one-hot labels by "
    "squared error, not probabilities (they can be negative or above 1); use predict, or train with output "
    "softmax or sigmoid"
)


def test_a_linear_output_has_no_probabilities_but_predicts() -> None:
    model = by_hand([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], "linear")
    with pytest.raises(ConfigError) as refused:
        model.predict_proba([[1.0, 0.0]])
    assert str(refused.value) == LINEAR
    np.testing.assert_array_equal(model.predict([[1.0, 0.0], [0.0, 1.0]]), [0, 1])


@pytest.mark.slow
def test_nnmodel_load_checks_the_inputs_of_a_real_checkpoint(tmp_path) -> None:
    run = nnmodel.train(
        "data=xor", "diagnostics=off", "trainer.max_epochs=1", "progress_refresh_rate=0", "test=false",
        f"paths.output_dir={tmp_path / 'run'}",
    )  # fmt: skip
    model = nnmodel.load(run.checkpoint)
    with pytest.raises(ConfigError) as refused:
        model.predict_proba([[0.0, 1.0, 0.0]])
    assert str(refused.value) == "X has 3 features, but the model is expecting 2 features as input"
    proba = model.predict_proba([[0.0, 1.0], [1.0, 1.0]])
    np.testing.assert_allclose(proba.sum(axis=1), [1.0, 1.0], rtol=1e-6)
    np.testing.assert_array_equal(model.predict([[0.0, 1.0], [1.0, 1.0]]), proba.argmax(axis=1))
