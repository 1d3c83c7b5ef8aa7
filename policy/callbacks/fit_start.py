"""Getting one of Keras's own callbacks ready for a ``fit``, right before it in the list.

Keras's ModelCheckpoint sets its ``best`` and its batch counters in ``__init__`` and never
resets them, so a compiled list reused for a second ``fit`` (a cross-validation loop) would
save nothing under ``save best`` until the old best is beaten and would save ``every N steps``
at shifted steps; BackupAndRestore's batch counter carries over the same way. At train begin
this callback puts those fields back to the values the callback was built with, which is
exactly the state of a fresh callback, so Keras's own code then decides as it would in a fresh
list. Before a ReduceLROnPlateau it also refuses an optimizer whose learning rate is a
``LearningRateSchedule`` (Keras would raise a bare TypeError at the first reduction, mid-run).

Before a CSVLogger or TensorBoard it decides where the log goes: under multi-process training
only the writer process (:func:`policy.callbacks.processes.is_writer`) logs to the real path;
on every other process this callback points Keras's callback, for this ``fit``, at a private
temporary place, which it deletes at train end. So ``log to "f.csv"`` leaves one file.
It overrides ``on_train_begin`` and ``on_train_end`` only.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from typing import Any

import keras

from policy.callbacks.processes import is_writer
from policy.callbacks.schedules import refuse_schedule_object

# The fields each Keras class keeps across fits, as set by its __init__ (Keras 3.15.1).
_CARRIED = ("best", "_batches_seen_since_last_saving", "_last_batch_seen", "_current_epoch")
# Keras's callbacks that write logs: on processes other than the writer they log elsewhere.
_LOGS = (keras.callbacks.CSVLogger, keras.callbacks.TensorBoard)


class FitStart(keras.callbacks.Callback):  # type: ignore[misc]
    """Resets ``target``'s cross-fit state at train begin; checks the optimizer for an lr rule."""

    def __init__(self, target: Any, rule: str = "") -> None:
        super().__init__()
        self.target = target
        self.rule = rule
        self.fresh = {name: getattr(target, name) for name in _CARRIED if hasattr(target, name)}
        # A log's real place, put back at every train begin before deciding where it goes.
        for name in ("filename", "log_dir"):
            if isinstance(target, _LOGS) and hasattr(target, name):
                self.fresh[name] = getattr(target, name)
        self._private: str | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        for name, value in self.fresh.items():
            setattr(self.target, name, value)
        if isinstance(self.target, keras.callbacks.ReduceLROnPlateau):
            refuse_schedule_object(self.model.optimizer, self.rule)
        if isinstance(self.target, _LOGS):
            self._place_log()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._private is not None:
            # Runs before the logger's own train end, which only closes what is open: an
            # open file in a removed folder is still closed normally.
            shutil.rmtree(self._private, ignore_errors=True)
            self._private = None

    def _place_log(self) -> None:
        """Point the logger at its real path on the writer, at a private folder elsewhere."""
        target = self.target
        if isinstance(target, keras.callbacks.CSVLogger):
            real = self.fresh["filename"]
            target.filename = real if is_writer() else os.path.join(self._private_folder(), os.path.basename(real))
            return
        # TensorBoard fixed its folders in set_model, before train begin; its writers are
        # created on first use, so changing the folders here is in time.
        real = self.fresh["log_dir"]
        folder = real if is_writer() else self._private_folder()
        target.log_dir = target._log_write_dir = folder
        target._train_dir = os.path.join(folder, "train")
        target._val_dir = os.path.join(folder, "validation")
        target._writers = {}

    def _private_folder(self) -> str:
        self._private = tempfile.mkdtemp(prefix="policy-discard-")
        # fit may end in an exception (a crash, Preempted) without reaching train end: the
        # folder then goes when this callback is collected, or at the latest at exit.
        weakref.finalize(self, shutil.rmtree, self._private, ignore_errors=True)
        return self._private

    def __repr__(self) -> str:
        return f"FitStart({type(self.target).__name__})"
