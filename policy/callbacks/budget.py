"""``stop after N epochs | N steps | T s/min/h``: budgets.

The epoch budget only looks at epoch ends; the step and time budgets must look after every
training batch (the epoch then ends early, as Keras does for any mid-epoch stop), so only
they override a batch hook.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras

from policy import ast
from policy.callbacks.base import StopRecord, record_state
from policy.callbacks.processes import BatchAgreement
from policy.outcome import Stop
from policy.printer import number
from policy.printer import rule as rule_text


class StopAfterEpochs(keras.callbacks.Callback):  # type: ignore[misc]
    """Stop training once a number of epochs has run (``stop after N epochs``).

    The count is absolute, as ``fit(epochs=N)``'s is: training stops at the end of the
    0-based epoch ``e`` for which ``e + 1 >= epochs``, so a ``fit(initial_epoch=...)`` that
    resumes a run does not get a fresh budget. Only epoch ends are looked at.

    Args:
        epochs: the last epoch to run, counting from 1.
        rule: the rule's canonical text, named in the stop record (see
            ``policy.why_stopped``); written from ``epochs`` when empty.
    """

    def __init__(self, epochs: float, rule: str = "") -> None:
        super().__init__()
        self.epochs = epochs
        self.rule = rule or rule_text(ast.StopAfter(amount=epochs, unit="epochs"))
        self.stop_record: StopRecord | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.stop_record = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if epoch + 1 >= self.epochs:
            self.model.stop_training = True
            if self.stop_record is None:
                reason = f"{epoch + 1} epochs ran, the budget was {number(self.epochs)}"
                self.stop_record = StopRecord(Stop(self.rule, epoch, reason))

    def get_state(self) -> dict[str, Any]:
        return {"stop": record_state(self.stop_record)}

    def set_state(self, state: dict[str, Any]) -> None:
        self.stop_record = StopRecord.from_state(state["stop"])


class _BatchBudget(keras.callbacks.Callback):  # type: ignore[misc]
    """Shared by the step and time budgets: knows the current epoch, records one stop."""

    rule: str

    def __init__(self) -> None:
        super().__init__()
        self.stop_record: StopRecord | None = None
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch

    def _stop(self, batch: int, reason: str) -> None:
        self.model.stop_training = True
        if self.stop_record is None:
            self.stop_record = StopRecord(Stop(self.rule, self._epoch, reason), batch=batch)

    def get_state(self) -> dict[str, Any]:
        return {"stop": record_state(self.stop_record), "epoch": self._epoch}

    def set_state(self, state: dict[str, Any]) -> None:
        self.stop_record = StopRecord.from_state(state["stop"])
        self._epoch = state["epoch"]


def steps_into_epoch(params: dict[str, Any] | None, batch: int) -> int:
    """Training batches run in the epoch once the batch hooks saw index ``batch``: ``batch + 1``,
    the index clamped to the epoch's batches (``params["steps"]``) when Keras knows them (a short
    last chunk under ``steps_per_execution`` reports an index past the epoch's end)."""
    per_epoch = (params or {}).get("steps")
    return (min(batch, per_epoch - 1) if isinstance(per_epoch, int) and per_epoch > 0 else batch) + 1


@dataclass
class StepCount:
    """The training batches run since train begin (``seen``), for the callbacks that count steps
    (``stop after N steps``, ``train at least N steps``): counted from the batch index Keras passes
    (:func:`steps_into_epoch`), never from the number of hook calls. ``seen`` is what a backup
    keeps; the count at the epoch's start is set again at every epoch begin."""

    seen: int = 0
    _before_epoch: int = 0

    def restart(self) -> None:
        """At train begin."""
        self.seen = self._before_epoch = 0

    def epoch_begins(self) -> None:
        self._before_epoch = self.seen

    def batch_ended(self, params: dict[str, Any] | None, batch: int) -> int:
        """After a training batch hook with index ``batch``: the count, updated."""
        self.seen = self._before_epoch + steps_into_epoch(params, batch)
        return self.seen

    def get_state(self) -> dict[str, Any]:
        # With the count at the epoch's start: a backup taken inside an epoch resumes there.
        return {"seen": self.seen, "before_epoch": self._before_epoch}

    def set_state(self, state: dict[str, Any]) -> None:
        self.seen = state["seen"]
        self._before_epoch = state.get("before_epoch", self.seen)


class StopAfterSteps(_BatchBudget):
    """Stop training after a number of training batches (``stop after N steps``).

    Training stops after the first training batch end at which the batches run since train
    begin reach ``steps``; the epoch is cut short there, as Keras does for any stop inside an
    epoch (its validation still runs). The count comes from the batch index Keras passes,
    never from the number of calls: with ``compile(steps_per_execution=k)`` Keras calls the
    batch hooks once per k batches, with the index of the chunk's last batch (``begin + k - 1``,
    even when the epoch's last chunk is shorter: that index is clamped to the epoch's batches,
    ``params["steps"]``, when known). A backup carries the count across a restart.

    Args:
        steps: how many training batches to run in all.
        rule: the rule's canonical text, named in the stop record; written from ``steps``
            when empty.
    """

    def __init__(self, steps: float, rule: str = "") -> None:
        super().__init__()
        self.steps = steps
        self.rule = rule or rule_text(ast.StopAfter(amount=steps, unit="steps"))
        self.count = StepCount()

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.count.restart()
        self.stop_record = None

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        super().on_epoch_begin(epoch, logs)
        self.count.epoch_begins()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        seen = self.count.batch_ended(self.params, batch)
        if seen >= self.steps:
            self._stop(batch, f"{seen} training steps ran, the budget was {number(self.steps)}")

    def get_state(self) -> dict[str, Any]:
        # Steps count across restarts: a resumed run goes on from the backed-up count.
        return {**super().get_state(), **self.count.get_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self.count.set_state(state)


class StopAfterTime(_BatchBudget):
    """Stop training after an amount of wall-clock time (``stop after T s|min|h``).

    Training stops after the first training batch that ends ``seconds`` or more after train
    begin. With several processes, the longest elapsed time of any process is agreed after
    every ``AGREE_EVERY``-th batch and the last batch of each epoch, and only there can it
    stop, so all processes stop at the same batch. A backup carries the elapsed training time
    across a restart (the time the run spent dead is not counted).

    Args:
        seconds: the budget, in seconds (``stop after 2h`` passes 7200).
        rule: the rule's canonical text, named in the stop record; written from ``seconds``
            when empty.
        clock: a function returning the current time in seconds; tests replace it to script
            time. Defaults to ``time.monotonic``.
    """

    def __init__(self, seconds: float, rule: str = "", clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.seconds = seconds
        self.rule = rule or rule_text(ast.StopAfter(amount=seconds, unit="s"))
        self.clock = clock
        self._start = 0.0
        self._agreement = BatchAgreement()

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._start = self.clock()
        self.stop_record = None
        self._agreement.begin()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        # Each process has its own clock: the processes agree, at the same batches on all of
        # them, on the longest elapsed time, and all stop or none does.
        elapsed = self._agreement.after_batch(self.clock() - self._start, batch, self.params)
        if elapsed is not None and elapsed >= self.seconds:
            self._stop(batch, f"{elapsed:g}s of training had elapsed, the budget was {self.seconds:g}s")

    def get_state(self) -> dict[str, Any]:
        # Training time counts across restarts; the time a run spent dead does not.
        return {**super().get_state(), "elapsed": self.clock() - self._start}

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self._start = self.clock() - state["elapsed"]
