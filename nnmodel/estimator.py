"""``nnmodel.MLPClassifier``: train.py's LightningModule as a scikit-learn estimator.

    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    clf = make_pipeline(StandardScaler(), nnmodel.MLPClassifier(hidden=(64,), activation="leaky_relu"))
    clf.fit(X_train, y_train).score(X_test, y_test)

The parameters are the config keys of ``python train.py`` (``model.*``, ``optimizer.name``/``lr``,
``data.batch_size``, ``trainer.max_epochs``/``accelerator``, ``seed``, ``steps_per_execution``), with
the same defaults, and are checked by the same code (:mod:`nnmodel.validate`), so a bad value is the
same one-line :class:`~nnmodel.errors.ConfigError` (a ``ValueError``, as scikit-learn expects).
``fit`` trains an :class:`~nnmodel.module.NNModule` with a Lightning ``Trainer`` on all of X (no
validation split, no checkpoints: model selection is scikit-learn's, e.g. ``GridSearchCV``); TensorBoard
logs go to ``log_dir`` when one is given. Labels may be of any type; ``classes_`` holds them sorted.
"""

from __future__ import annotations

import os
import re
import warnings
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from nnmodel.api import Model, check_inputs, no_probabilities, refuse_text
from nnmodel.callbacks import CallbackGroup, PlainCudaCheck
from nnmodel.console import StepProgressBar, quiet
from nnmodel.data import TensorBatches
from nnmodel.errors import ConfigError, NNModelWarning, ctrl_c_as_keyboard_interrupt, unknown
from nnmodel.module import NNModule
from nnmodel.schema import ModelConfig, OptimizerConfig
from nnmodel.training import process_state_restored, run_threads
from nnmodel.validate import at_least, check_machine, check_memory, check_model, check_optimizer, check_seed

ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "auto")


def _plain(value: Any) -> Any:
    """A numpy scalar (``np.int64(3)``, as a grid of ``np.arange`` gives) as the Python number it is."""
    return value.item() if isinstance(value, np.generic) else value


def _parameter(key: str, value: Any) -> str:
    """A config key as the estimator's parameter: ``optimizer.lr``, 0.5 -> ``lr=0.5``."""
    return f"{key.rpartition('.')[2]}={value!r}"


def _in_parameters(message: str) -> str:
    """A message of the config checks in the estimator's parameters: ``optimizer.lr must be ...`` -> ``lr must be ...``,
    ``data.batch_size=64`` -> ``batch_size=64``
    (and ``model.epsilon: epsilon must be ...`` -> ``epsilon must be ...``)."""
    message = re.sub(r"(?<![\w.])(?:model|optimizer|data)\.(?=\w)", "", message)  # not in mypkg.data.fn
    return re.sub(r"^(\w+): \1 ", r"\1 ", message)


def _sorted_labels(y: Any, **kwargs: Any) -> Any:
    """``np.unique(y, **kwargs)``: the classes, sorted; labels that cannot be sorted (``["a", 1]``, None among
    strings) are refused in one line instead of numpy's ``'<' not supported`` TypeError."""
    try:
        return np.unique(y, **kwargs)
    except TypeError:
        kinds = ", ".join(sorted({type(label).__name__ for label in np.asarray(y, dtype=object).ravel()}))
        raise ConfigError(
            f"y mixes labels of types {kinds}, which cannot be sorted into classes_; give them one type, e.g. "
            "y.astype(str)"
        ) from None


def _whole(n: Any) -> bool:
    return isinstance(n, int | np.integer) and not isinstance(n, bool)


def _refuse_text(X: Any) -> None:
    """Training inputs are numbers, as predict's are (:func:`nnmodel.api.refuse_text`): scikit-learn's float32
    conversion would read the text "5.1" as 5.1 in fit, and predict would then refuse the same X."""
    try:
        array = np.asarray(X)
    except (TypeError, ValueError):  # ragged rows: validate_data says so
        return
    refuse_text(array)


def _has_probabilities(estimator: MLPClassifier) -> bool:
    """scikit-learn's ``available_if`` check: ``predict_proba`` exists only where the outputs are probabilities.
    For ``output="linear"`` the AttributeError's cause says why (:func:`nnmodel.api.no_probabilities`:
    scikit-learn's ``available_if`` raises its own "has no attribute" from it, the traceback's first part), and
    ``hasattr(clf, "predict_proba")`` is False, so soft voting, calibration and the probability scorers do not take
    scores for probabilities."""
    output = estimator.net_.output if hasattr(estimator, "net_") else estimator.output  # fitted: the network's own
    problem = no_probabilities(output)
    if problem is not None:
        raise AttributeError(problem)
    return True


class RestoreOptimizerState(L.Callback):
    """partial_fit: carry the optimizer's state (Adam's moments, its step count) from one call to the next.
    Lightning builds a fresh optimizer in every ``fit``; its state is loaded once training starts."""

    def __init__(self, state: dict[str, Any] | None) -> None:
        self.state = state

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.state is not None:
            optimizer = trainer.optimizers[0]
            settings = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
            optimizer.load_state_dict(self.state)  # the moments and the step count ...
            for group, now in zip(optimizer.param_groups, settings):
                group.update(now)  # ... with today's settings: set_params(lr=...) between calls takes effect


class MLPClassifier(ClassifierMixin, BaseEstimator):
    """A feedforward classifier h_Θ(x), trained by Lightning, with scikit-learn's interface.

    Args:
        hidden: hidden layer sizes (``model.hidden``); ``()`` is a logistic unit / softmax regression.
        activation: a name of ``nnmodel.ACTIVATIONS`` (step, sigmoid, tanh, relu, leaky_relu, ...), an
            import path ``pkg.mod:fn``, or one per hidden layer.
        output, init, epsilon, l2, backprop, leaky_slope: as ``model.*`` (see ``configs/model/mlp.yaml``).
        optimizer: a name of ``nnmodel.optim.OPTIMIZERS`` (sgd, momentum, nag, adagrad, adadelta, rmsprop,
            adam, adamax, nadam, amsgrad, adamw); lr: its learning rate (None: that optimizer's default).
        batch_size, max_epochs: minibatch size and passes over X per ``fit`` (one per ``partial_fit``).
        seed: seeds the initial weights and the shuffling; the same seed gives the same model.
        accelerator: ``"cpu"``, ``"gpu"`` or ``"auto"``, as ``trainer.accelerator``.
        steps_per_execution: minibatches per Lightning batch (see :mod:`nnmodel.module`); not the result.
        log_dir: write TensorBoard logs under this directory (None: no logs): each ``fit`` in a new
            ``version_N``, and the ``partial_fit`` calls after it in the same one, as one curve.
        verbose: show a progress bar.

    Attributes (after fit): ``classes_``, ``n_features_in_``, ``net_`` (the trained
    :class:`~nnmodel.core.network.FeedForward`), ``loss_curve_`` (the training loss per epoch), ``n_iter_``
    (epochs trained), ``n_steps_`` (optimizer steps taken), ``log_version_`` (with ``log_dir``: the TensorBoard
    version written).
    """

    def __init__(
        self,
        hidden: tuple[int, ...] = (128,),
        activation: str | tuple[str, ...] = "relu",
        output: str = "softmax",
        init: str = "epsilon_uniform",
        epsilon: float | str = 0.12,
        l2: float = 0.0,
        backprop: str = "autograd",
        leaky_slope: float = 0.01,
        optimizer: str = "adam",
        lr: float | None = None,
        batch_size: int = 64,
        max_epochs: int = 40,
        seed: int = 0,
        accelerator: str = "cpu",
        steps_per_execution: int = 16,
        log_dir: str | None = None,
        verbose: bool = False,
    ) -> None:
        self.hidden = hidden
        self.activation = activation
        self.output = output
        self.init = init
        self.epsilon = epsilon
        self.l2 = l2
        self.backprop = backprop
        self.leaky_slope = leaky_slope
        self.optimizer = optimizer
        self.lr = lr
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.seed = seed
        self.accelerator = accelerator
        self.steps_per_execution = steps_per_execution
        self.log_dir = log_dir
        self.verbose = verbose

    # ------------------------------------------------------------------------- scikit-learn's interface

    def fit(self, X: Any, y: Any) -> MLPClassifier:
        """Train a new network on (X, y) for ``max_epochs`` epochs."""
        config = self._config()  # a bad parameter is refused before any state changes
        fitted = ("net_", "optimizer_state_", "loss_curve_", "n_iter_", "n_steps_", "log_version_", "structure_")
        for attr in (*fitted, "classes_", "n_features_in_"):
            if hasattr(self, attr):  # from here on, a refused (X, y) leaves the estimator unfitted
                delattr(self, attr)
        _refuse_text(X)
        X, y = validate_data(self, X, y, dtype=np.float32, reset=True)
        classes, indices = _sorted_labels(y, return_inverse=True)  # before scikit-learn's check, which sorts them too
        check_classification_targets(y)
        if len(classes) < 2:
            raise ConfigError(f"y holds one class ({classes.tolist()[0]!r}); a classifier needs at least 2")
        self.classes_ = classes
        return self._train(X, indices, config["max_epochs"], config)

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> MLPClassifier:
        """One more epoch on (X, y), from where the last call left the weights and the optimizer.
        The first call needs ``classes`` (every label that will ever be seen), unless y holds them all."""
        first = not hasattr(self, "net_")
        config = self._config()
        now = self._structure()
        if not first and self.structure_ != now:
            changed = next(k for k, v in now.items() if self.structure_[k] != v)
            raise ConfigError(
                f"partial_fit: {changed} changed from {self.structure_[changed]!r} to {now[changed]!r} since "
                "the first call; the trained network cannot take it (call fit to start afresh)"
            )
        _refuse_text(X)
        X, y = validate_data(self, X, y, dtype=np.float32, reset=first)
        labels = _sorted_labels(y)  # labels that cannot be sorted, in one line, before scikit-learn's check sorts them
        check_classification_targets(y)
        if first:
            self.classes_ = labels if classes is None else _sorted_labels(classes)
            if len(self.classes_) < 2:
                raise ConfigError("partial_fit needs at least 2 classes: pass classes=[...] on the first call")
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            given, first_call = np.unique(classes).tolist(), self.classes_.tolist()
            raise ConfigError(f"classes={given} differ from those of the first call, {first_call}")
        unseen = np.setdiff1d(y, self.classes_)
        if len(unseen):
            raise ConfigError(f"y holds labels not in classes_: {unseen.tolist()[:5]}; pass them all as classes=")
        return self._train(X, np.searchsorted(self.classes_, y), 1, config)

    @available_if(_has_probabilities)
    def predict_proba(self, X: Any) -> np.ndarray:
        """(m, K) class probabilities, columns in the order of ``classes_``, each row summing to 1.

        ``output="softmax"``: the softmax; ``"sigmoid"``: the K logistic units divided by their sum (one unit for
        two classes: [1 − h, h]); ``"linear"``: no predict_proba (see :meth:`nnmodel.api.Model.predict_proba`).
        """
        model, X = self._predicting(X)
        return model.predict_proba(X)

    def predict(self, X: Any) -> np.ndarray:
        """(m,) predicted labels, values of ``classes_``."""
        model, X = self._predicting(X)
        return model.predict(X)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.accelerator != "cpu"  # GPU kernels may reorder sums
        return tags

    # ------------------------------------------------------------------------- the work

    def _config(self) -> dict[str, Any]:
        """The parameters, checked as train.py checks them, by the same functions of :mod:`nnmodel.validate`
        (one way to refuse a value): ``model`` and ``optimizer`` (their config groups as dicts), ``seed``,
        ``batch_size``, ``steps_per_execution``, ``accelerator`` (as Python values)."""
        hidden, activation = self._layers()
        try:  # the schemas' types (a number for epsilon, a string for output ...) as OmegaConf checks them
            model = OmegaConf.structured(
                ModelConfig(
                    hidden=hidden,
                    activation=activation,
                    output=self.output,
                    init=self.init,
                    epsilon=_plain(self.epsilon),
                    l2=_plain(self.l2),
                    backprop=self.backprop,
                    leaky_slope=_plain(self.leaky_slope),
                )
            )
            optimizer = OmegaConf.structured(OptimizerConfig(name=self.optimizer, lr=_plain(self.lr)))
        except ValidationError as err:
            param = {"name": "optimizer"}.get(str(err.full_key), str(err.full_key))
            raise ConfigError(f"{param}={getattr(self, param)!r}: {str(err).splitlines()[0]}") from None
        try:  # the same checks as train.py's (its warnings of a setting that changes nothing too)
            with warnings.catch_warnings(record=True) as warned:
                warnings.simplefilter("always", NNModelWarning)
                check_model(model)
                check_optimizer(optimizer)
        except ConfigError as err:
            raise ConfigError(_in_parameters(str(err))) from None
        for warning in warned:
            warnings.warn(_in_parameters(str(warning.message)), warning.category, stacklevel=3)
        plain = {key: _plain(getattr(self, key)) for key in ("batch_size", "max_epochs", "steps_per_execution", "seed")}
        for key in ("batch_size", "max_epochs", "steps_per_execution"):
            at_least(key, plain[key], 1)
        check_seed(plain["seed"])
        if self.log_dir is not None and not isinstance(self.log_dir, str | os.PathLike):
            raise ConfigError(
                f"log_dir={self.log_dir!r}: give a directory for TensorBoard's logs (a str or pathlib.Path), or None "
                "for none"
            )
        if self.accelerator not in ACCELERATORS:
            raise unknown("accelerator", self.accelerator, ACCELERATORS)
        check_machine(OmegaConf.create({"accelerator": self.accelerator, "devices": 1}), lambda k, v: f"{k}={v!r}")
        model, optimizer = OmegaConf.to_container(model), OmegaConf.to_container(optimizer)
        return {"model": model, "optimizer": optimizer, "accelerator": self.accelerator} | plain

    def _layers(self) -> tuple[list[int], str | list[str]]:
        """``hidden`` and ``activation`` as the config keys take them: 8, (8,) and [8] are the same network."""
        sizes = [self.hidden] if _whole(self.hidden) else self.hidden
        if not isinstance(sizes, list | tuple | np.ndarray) or not all(map(_whole, sizes)):
            raise ConfigError(
                f"hidden={self.hidden!r}: give the hidden layer sizes as whole numbers, e.g. hidden=(64,) or "
                "hidden=(32, 16), or () for none"
            )
        names = [self.activation] if isinstance(self.activation, str) else self.activation
        if not isinstance(names, list | tuple) or not all(isinstance(a, str) for a in names):
            raise ConfigError(
                f"activation={self.activation!r}: give a name of nnmodel.ACTIVATIONS or an import path "
                "'package.module:function' (or a list of them, one per hidden layer); for a function of your own, "
                "nnmodel.register_activation('name', fn), then activation='name'"
            )
        activation = self.activation if isinstance(self.activation, str) else list(self.activation)
        return list(map(_plain, sizes)), activation

    def _structure(self) -> dict[str, Any]:
        """The parameters that a trained network and its optimizer state are made of (partial_fit keeps them)."""
        hidden, activation = self._layers()
        return {"hidden": hidden, "activation": activation} | {
            k: getattr(self, k) for k in ("output", "backprop", "optimizer")
        }

    def _train(self, X: np.ndarray, y: np.ndarray, epochs: int, config: dict[str, Any]) -> MLPClassifier:
        model, optimizer, seed = config["model"], config["optimizer"], config["seed"]  # from _config(), checked
        batch = min(config["batch_size"], len(X))  # the minibatch the data make: no more rows than X has
        # the network must fit in memory, as train.py checks it (the same estimate, the same message in the
        # estimator's parameters)
        memory = {"model": model, "optimizer": optimizer, "data": {"batch_size": batch}}
        memory["trainer"] = {"accelerator": config["accelerator"], "devices": 1}
        try:
            check_memory(OmegaConf.create(memory), X.shape[1], len(self.classes_))
        except ConfigError as err:
            raise ConfigError(_in_parameters(str(err))) from None
        module = NNModule(n_in=X.shape[1], n_classes=len(self.classes_), **model, optimizer=optimizer, seed=seed)
        module.spell = _parameter  # its messages (a divergence's advice) in the estimator's parameters
        if hasattr(self, "net_"):  # partial_fit: go on from the trained weights
            module.net.load_state_dict(self.net_.state_dict())
        done = getattr(self, "n_iter_", 0)
        module.steps_before = getattr(self, "n_steps_", 0)
        # fit writes a new version_N; each partial_fit after it goes on in the same one, along the same step axis.
        # No placeholder hp_metric=-1 (train.py writes none either).
        logger = (
            TensorBoardLogger(self.log_dir, name="", version=self._version_to_continue(), default_hp_metric=False)
            if self.log_dir is not None
            else False
        )
        callbacks: list[L.Callback] = [
            CallbackGroup([RestoreOptimizerState(getattr(self, "optimizer_state_", None)), PlainCudaCheck()])
        ]
        if self.verbose:
            callbacks.append(StepProgressBar(refresh_rate=50))
        with quiet(), process_state_restored(), warnings.catch_warnings():
            torch.set_num_threads(run_threads("auto", module.net, batch))
            # fit has no validation split here (model selection is scikit-learn's), as Lightning notes
            warnings.filterwarnings("ignore", message=".*have no `val_dataloader`")
            trainer = L.Trainer(
                max_epochs=epochs,
                accelerator=self.accelerator,
                devices=1,
                logger=logger,
                callbacks=callbacks,
                enable_checkpointing=False,
                enable_model_summary=False,
                enable_progress_bar=self.verbose,
                deterministic=self.accelerator == "cpu",
                log_every_n_steps=50,
            )
            batches = TensorBatches(
                torch.from_numpy(X),
                torch.from_numpy(y.astype(np.int64)),
                config["batch_size"],
                steps_per_execution=config["steps_per_execution"],
                shuffle=True,
                seed=seed,
                # partial_fit: epoch `done` + 1 draws its own order, as the (done + 1)-th epoch of fit would
                epoch_fn=lambda: done + trainer.current_epoch,
            )
            with ctrl_c_as_keyboard_interrupt():
                trainer.fit(module, train_dataloaders=batches)
        self.net_ = module.net.cpu().eval()
        self.optimizer_state_ = trainer.optimizers[0].state_dict()
        self.loss_curve_ = [*getattr(self, "loss_curve_", []), *module.history["train/loss_epoch"]]
        self.n_iter_ = done + trainer.current_epoch
        self.n_steps_ = module.steps_before + trainer.global_step
        if logger:
            self.log_version_, self._logged_in = logger.version, self.log_dir
        self.structure_ = self._structure()
        return self

    def _version_to_continue(self) -> int | None:
        """The TensorBoard version a partial_fit goes on in: the last call's, in the same log_dir (None: a new one)."""
        same_dir = hasattr(self, "log_version_") and getattr(self, "_logged_in", None) == self.log_dir
        return self.log_version_ if same_dir else None

    def _predicting(self, X: Any) -> tuple[Model, np.ndarray]:
        """The trained model, and X checked as :class:`~nnmodel.api.Model` checks it (:func:`nnmodel.api.check_inputs`:
        2-D, ``n_features_in_`` columns, at least one row, finite numbers) as the float32 array it takes."""
        check_is_fitted(self, "net_")
        validate_data(self, X, reset=False, skip_check_array=True, ensure_2d=False)  # feature names only, if any
        return Model(self.net_, list(self.classes_)), check_inputs(X, self.n_features_in_, type(self).__name__)
