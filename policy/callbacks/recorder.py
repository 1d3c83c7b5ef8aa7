"""Knowing afterwards that Keras's own TerminateOnNaN stopped training.

TerminateOnNaN keeps no record of its decision. It stops after any training batch whose
running loss is NaN or +-inf, so a recorder placed right after it, looking at the same logs,
knows exactly when it fired. TerminateOnNaN already overrides a batch hook, so the recorder
costs a policy nothing it had not already paid (async batch dispatch is off either way).
"""

from __future__ import annotations

import math
from typing import Any

import keras

from policy.callbacks.base import StopRecord, record_state
from policy.outcome import Stop


class TerminateOnNaNRecorder(keras.callbacks.Callback):  # type: ignore[misc]
    """Record the batch at which the TerminateOnNaN right before it stopped training.

    It watches the same running training loss TerminateOnNaN watches, after every training
    batch, and keeps the first non-finite one as its ``stop_record`` (what
    ``policy.why_stopped`` reports). It never stops training itself.

    Args:
        rule: the canonical text of the ``stop when loss is not finite`` rule.
    """

    def __init__(self, rule: str) -> None:
        super().__init__()
        self.rule = rule
        self.stop_record: StopRecord | None = None
        self._epoch = 0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.stop_record = None

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if self.stop_record is None and loss is not None and not math.isfinite(float(loss)):
            reason = f"the training loss was {float(loss)} after batch {batch}"
            self.stop_record = StopRecord(Stop(self.rule, self._epoch, reason), batch=batch)

    def get_state(self) -> dict[str, Any]:
        return {"stop": record_state(self.stop_record)}

    def set_state(self, state: dict[str, Any]) -> None:
        self.stop_record = StopRecord.from_state(state["stop"])
