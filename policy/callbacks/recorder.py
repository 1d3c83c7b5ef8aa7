"""Knowing afterwards that Keras's own TerminateOnNaN stopped (or failed) training.

TerminateOnNaN keeps no record of its decision. It acts after any training batch whose
running loss is NaN or +-inf, so a recorder looking at the same logs knows exactly when it
fired: placed right after it for ``stop when loss is not finite``, right before it for ``fail
when loss is not finite`` (``raise_error=True`` raises inside the hook, so nothing after it
runs). TerminateOnNaN already overrides a batch hook, so the recorder costs a policy nothing it
had not already paid (async batch dispatch is off either way).
"""

from __future__ import annotations

import math
from typing import Any

import keras

from policy.callbacks.base import StopRecord, record_state
from policy.outcome import Stop


class TerminateOnNaNRecorder(keras.callbacks.Callback):  # type: ignore[misc]
    """Record the batch at which the TerminateOnNaN next to it stopped or failed training.

    It watches the same running training loss TerminateOnNaN watches, after every training
    batch, and keeps the first non-finite one as its record. It never stops training itself.

    Args:
        rule: the rule's canonical text, for the record.
        fails: the TerminateOnNaN raises (``raise_error=True``, placed right after this recorder):
            the record is ``failure_record``, read by :func:`policy.compiler.why_failed`;
            otherwise it stops (placed right before) and the record is ``stop_record``.
    """

    def __init__(self, rule: str, fails: bool = False) -> None:
        super().__init__()
        self.rule = rule
        self.fails = fails
        self.stop_record: StopRecord | None = None
        self.failure_record: StopRecord | None = None
        self._epoch = 0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.stop_record = None
        self.failure_record = None

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(float(loss)):
            return
        reason = f"the training loss was {float(loss)} after batch {batch}"
        if self.fails:
            if self.failure_record is None:
                self.failure_record = StopRecord(Stop(self.rule, self._epoch, reason), batch=batch)
        elif self.stop_record is None:
            self.stop_record = StopRecord(Stop(self.rule, self._epoch, reason), batch=batch)

    def get_state(self) -> dict[str, Any]:
        return {"stop": record_state(self.stop_record)}

    def set_state(self, state: dict[str, Any]) -> None:
        self.stop_record = StopRecord.from_state(state["stop"])
