"""The one kind of error a user's mistake raises (and the one a diverging run raises), the one kind of warning, and
the one way nnmodel says that a name is unknown.

Every refusal is a :class:`ConfigError`: one line that names the key, the bad value and what is
allowed. ``train.py`` prints it as ``error: ...`` (exit status 2), ``nnmodel.train`` raises it.
Imports nothing, so the lecture's math can use it too.
"""

from __future__ import annotations

import contextlib
import difflib
import signal
import sys
import threading
from collections.abc import Iterable, Iterator


class ConfigError(ValueError):
    """A user mistake (a config value, an argument, a file): one line, never a traceback."""


class DivergedError(RuntimeError):
    """Training stopped because the loss became NaN, infinite, or larger than ``diverge_above``; the message names
    the step, and the run's result.json (status ``diverged``) and ``checkpoints/last.ckpt`` are kept."""


class Interrupted(KeyboardInterrupt):
    """Training stopped by Ctrl-C (SIGINT) or SIGTERM, after saving a resumable ``last.ckpt`` (result.json: status
    ``interrupted``). A KeyboardInterrupt, as Python and Jupyter expect of Ctrl-C; ``train.py`` exits with the shell's
    status for the signal, ``128 + signum`` (130, 143)."""

    def __init__(self, signum: int, name: str) -> None:
        super().__init__(f"stopped by {name}")
        self.signum, self.name = signum, name
        self.exit_status = 128 + signum

    def __reduce__(self) -> tuple[type, tuple[int, str]]:  # pickled by its arguments (a worker process's to its parent)
        return type(self), (self.signum, self.name)


@contextlib.contextmanager
def ctrl_c_as_keyboard_interrupt() -> Iterator[None]:
    """Around a Trainer's ``fit``/``validate``/``test``: Ctrl-C comes out as a KeyboardInterrupt, what Python and
    Jupyter expect, and Python's SIGINT handler is as it was.

    Lightning's Trainer answers a KeyboardInterrupt by ignoring SIGINT (``SIG_IGN``, so that its clean shutdown is not
    interrupted in turn), shutting down, then ``sys.exit(1)``, and never gives SIGINT back: in a Python session or a
    Jupyter kernel, every later Ctrl-C would do nothing, and Jupyter would show "SystemExit: 1". No public setting
    changes this (Lightning's ``trainer/call.py``); this is the one place nnmodel undoes it, and
    tests/test_estimator.py's Ctrl-C test fails if what it relies on changes.
    """
    main = threading.current_thread() is threading.main_thread()  # signal handlers live there only
    handler = signal.getsignal(signal.SIGINT) if main else None
    try:
        yield
    except SystemExit as stop:
        if isinstance(stop.__context__, KeyboardInterrupt):  # Lightning's exit, in the handling of the Ctrl-C
            raise KeyboardInterrupt from None
        raise
    finally:
        if handler is not None:
            signal.signal(signal.SIGINT, handler)


class NNModelWarning(UserWarning):
    """Something a user should know about a config that still runs (``step`` units, which backprop cannot train).
    ``train.py`` prints it as ``warning: ...`` (:func:`nnmodel.console.format_warning`); Python shows it as usual."""


def unknown(what: str, value: object, choices: Iterable[str], extra: str = "") -> ConfigError:
    """``unknown WHAT 'VALUE'; did you mean 'CLOSE'? choose one of: A, B, C (EXTRA)`` as a ConfigError.

    The suggestion is the closest choice by difflib's ratio, when one is close enough (of a dotted key such as
    ``model.hiden``, the last part).
    """
    choices = sorted(str(c) for c in choices)
    leaf = lambda name: name.rpartition(".")[2].lower()  # dotted keys: the last part; SGD is close to sgd
    close = difflib.get_close_matches(leaf(str(value)), [leaf(c) for c in choices], n=1)
    hint = next((f"did you mean '{c}'? " for c in choices if close and leaf(c) == close[0]), "")
    return ConfigError(
        f"unknown {what} '{value}'; {hint}choose one of: {', '.join(choices)}{f' ({extra})' if extra else ''}"
    )


@contextlib.contextmanager
def exit_on_config_error() -> Iterator[None]:
    """In a Hydra callback, a :class:`ConfigError` ends the command with its one line, exit 2: Hydra itself turns a
    callback's exception into a warning and goes on."""
    try:
        yield
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 epoch``, ``2 epochs`` (``many``: the plural where it is not word + s, ``classes``)."""
    return f"{n} {word if n == 1 else many or word + 's'}"
