"""What a run prints: the progress bar and nnmodel's summary, not the libraries' chatter.

Lightning announces at INFO level what nnmodel's summary says better (devices found, checkpoints
restored, why fit stopped) and advertises its cloud logger; some of its warnings do not apply to how
nnmodel drives it, and one comes from torch's own deprecation of a type Lightning still uses. None
of that is something a user can act on, so :func:`quiet` silences exactly these, for the duration of
one run, and puts every filter and level back afterwards. Warnings that matter stay, or are said in
nnmodel's own words (``step`` units, divergence, a bad config).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

# Lightning's loggers: its INFO lines (rank_zero_info) go through these; WARNING and above still show.
LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric")

# (message regex, module regex) of warnings that do not apply to nnmodel's runs, and why:
IRRELEVANT_WARNINGS = (
    # torch deprecates LeafSpec; Lightning's own pytree helper still builds one for every batch it walks
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", r"lightning\.pytorch\.utilities\._pytree"),
    # train/loss_step is logged by global step across epochs, so short epochs still get their points
    (r"The number of training batches \(\d+\) is smaller than the logging interval", r"lightning\.pytorch"),
    # a resumed run writes into its own checkpoints/ directory on purpose
    (r"Checkpoint directory .* exists and is not empty", r"lightning\.pytorch"),
    # nnmodel's batches are resumable mid-epoch (InterruptCheckpoint counts them); Lightning cannot see that
    (r".*your dataloader is not resumable.*", r"lightning\.pytorch"),
    # NNModule's batch transfer only skips tensors already on the device, for every datamodule
    (r"You have overridden `transfer_batch_to_device` in `LightningModule`", r"lightning\.pytorch"),
)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence :data:`IRRELEVANT_WARNINGS` and Lightning's INFO lines inside the block, and only there."""
    loggers = [logging.getLogger(name) for name in LIGHTNING_LOGGERS]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        for message, module in IRRELEVANT_WARNINGS:
            warnings.filterwarnings("ignore", message=message, module=module)
        for logger in loggers:
            logger.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)
