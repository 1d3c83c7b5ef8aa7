"""Getting one of Keras's own callbacks ready for a ``fit``, right before it in the list.

Keras's ModelCheckpoint sets its ``best`` and its batch counters in ``__init__`` and never
resets them, so a compiled list reused for a second ``fit`` (a cross-validation loop) would
save nothing under ``save best`` until the old best is beaten and would save ``every N steps``
at shifted steps; BackupAndRestore's batch counter carries over the same way. At train begin
this callback puts those fields back to the values the callback was built with, which is
exactly the state of a fresh callback, so Keras's own code then decides as it would in a fresh
list. Before a ReduceLROnPlateau it also refuses an optimizer whose learning rate is a
``LearningRateSchedule`` (Keras would raise a bare TypeError at the first reduction, mid-run).
It overrides ``on_train_begin`` only.
"""

from __future__ import annotations

from typing import Any

import keras

from policy.callbacks.schedules import refuse_schedule_object

# The fields each Keras class keeps across fits, as set by its __init__ (Keras 3.15.1).
_CARRIED = ("best", "_batches_seen_since_last_saving", "_last_batch_seen", "_current_epoch")


class FitStart(keras.callbacks.Callback):  # type: ignore[misc]
    """Resets ``target``'s cross-fit state at train begin; checks the optimizer for an lr rule."""

    def __init__(self, target: Any, rule: str = "") -> None:
        super().__init__()
        self.target = target
        self.rule = rule
        self.fresh = {name: getattr(target, name) for name in _CARRIED if hasattr(target, name)}

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        for name, value in self.fresh.items():
            setattr(self.target, name, value)
        if isinstance(self.target, keras.callbacks.ReduceLROnPlateau):
            refuse_schedule_object(self.model.optimizer, self.rule)

    def __repr__(self) -> str:
        return f"FitStart({type(self.target).__name__})"
