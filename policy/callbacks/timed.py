"""``save every T min``: checkpoints by training time (Lightning's ``train_time_interval``).

Keras's ModelCheckpoint saves per epoch or per N batches, never by the clock. This callback
looks after every training batch: once at least ``seconds`` of training have passed since its
previous write (or train begin), it writes the model (atomically, on the writer process only;
:mod:`policy.callbacks.atomic`), its path formatted as ModelCheckpoint formats a step save
(``{epoch}`` and ``{batch}`` 1-based, other placeholders from the batch logs), and the timer
restarts from the reading that decided the write. Under several processes each one's clock is
its own, so, as ``stop after T min`` does, the processes agree on the longest time since the
previous write at the same batches (:func:`policy.callbacks.processes.agreement_due`) and only
there decide, so all write at the same batch or none does. The time since the previous write is
part of a backup's state: a resumed run counts on from it, without the time it spent dead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import keras

from policy.callbacks.atomic import sweep_partials, write_model
from policy.callbacks.processes import BatchAgreement


def format_step_path(template: str, epoch: int, batch: int, logs: dict[str, Any]) -> str:
    """ModelCheckpoint's path for a save after a batch: ``{epoch}`` and ``{batch}`` 1-based (a
    ``batch`` key in the logs wins, as in Keras), other placeholders from the batch logs."""
    try:
        if "batch" in logs:
            return template.format(epoch=epoch + 1, **logs)
        return template.format(epoch=epoch + 1, batch=batch + 1, **logs)
    except KeyError as e:
        raise KeyError(f'Failed to format this callback filepath: "{template}". Reason: {e}') from e


class TimedCheckpoint(keras.callbacks.Callback):  # type: ignore[misc]
    """Save the model after the first training batch ending ``seconds`` or more after the last save.

    Args:
        path: where to save; may hold ``{epoch}``, ``{batch}`` and batch-log placeholders.
        seconds: the training time between saves.
        weights_only: save only the weights instead of the whole model. Defaults to False.
        clock: where time comes from (seconds, never decreasing); tests replace it to script time.
    """

    def __init__(
        self,
        path: str,
        seconds: float,
        weights_only: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        if not seconds > 0:
            raise ValueError(f"seconds must be positive. Received: seconds={seconds!r}")
        self.path = path
        self.seconds = seconds
        self.weights_only = weights_only
        self.clock = clock
        self._last = 0.0
        self._epoch = 0
        self._agreement = BatchAgreement()

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._last = self.clock()
        self._agreement.begin()
        sweep_partials(self.path)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        now = self.clock()
        since = self._agreement.after_batch(now - self._last, batch, self.params)
        if since is not None and since >= self.seconds:
            self._last = now
            write_model(self.model, format_step_path(self.path, self._epoch, batch, dict(logs or {})), self.weights_only)

    def get_state(self) -> dict[str, Any]:
        # Training time counts across restarts; the time a run spent dead does not.
        return {"since_save": self.clock() - self._last, "epoch": self._epoch}

    def set_state(self, state: dict[str, Any]) -> None:
        self._last = self.clock() - float(state["since_save"])
        self._epoch = int(state["epoch"])
