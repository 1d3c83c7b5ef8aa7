"""Getting one of Keras's own callbacks ready for a ``fit``, right before it in the list.

Keras's ModelCheckpoint sets its ``best`` and its batch counters in ``__init__`` and never
resets them, so a compiled list reused for a second ``fit`` (a cross-validation loop) would
save nothing under ``save best`` until the old best is beaten and would save ``every N steps``
at shifted steps; BackupAndRestore's batch counter carries over the same way. At train begin
this callback puts those fields back to the values the callback was built with, which is
exactly the state of a fresh callback, so Keras's own code then decides as it would in a fresh
list. Before a ReduceLROnPlateau it also refuses an optimizer whose learning rate is a
``LearningRateSchedule`` (Keras would raise a bare TypeError at the first reduction, mid-run),
except our step schedule handing the rate over to a :class:`HandoverReduceLROnPlateau`.

Before a CSVLogger or TensorBoard it decides where the log goes: under multi-process training
only the writer process (:func:`policy.callbacks.processes.is_writer`) logs to the real path;
on every other process this callback points Keras's callback, for this ``fit``, at a private
temporary place, which it deletes at train end. So ``log to "f.csv"`` leaves one file.
It overrides ``on_train_begin``, ``on_train_end`` and ``set_model`` (where TensorBoard's place is
decided, since TensorBoard's own ``set_model`` writes into its folder) only.
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
from policy.callbacks.step_schedule import HandoverReduceLROnPlateau, hands_over

# The fields each Keras class keeps across fits, as set by its __init__ (Keras 3.15.1).
_CARRIED = ("best", "_batches_seen_since_last_saving", "_last_batch_seen", "_current_epoch")


class FitStart(keras.callbacks.Callback):  # type: ignore[misc]
    """Get one of Keras's own callbacks ready for each ``fit`` (placed right before it).

    At train begin it puts back the fields ``target`` keeps across fits (a checkpoint's best
    and batch counters, a backup's batch counter) to their values when it was built; before a
    ReduceLROnPlateau it refuses an optimizer whose learning rate is a ``LearningRateSchedule``;
    before a CSVLogger or TensorBoard it sends the log of every process but the writer to a
    private temporary place, removed at train end (see the module docstring).

    Args:
        target: the Keras callback this one serves (ModelCheckpoint, BackupAndRestore,
            ReduceLROnPlateau, CSVLogger or TensorBoard).
        rule: the canonical text of the rule ``target`` came from, for error messages.
    """

    def __init__(self, target: Any, rule: str = "") -> None:
        super().__init__()
        self.target = target
        self.rule = rule
        self.fresh = {name: getattr(target, name) for name in _CARRIED if hasattr(target, name)}
        # A log's real place (CSVLogger's filename, TensorBoard's log_dir).
        self.real_log: str | None = None
        if isinstance(target, keras.callbacks.CSVLogger):
            self.real_log = target.filename
        elif isinstance(target, keras.callbacks.TensorBoard):
            self.real_log = target.log_dir
        self._private: str | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        for name, value in self.fresh.items():
            setattr(self.target, name, value)
        if isinstance(self.target, keras.callbacks.ReduceLROnPlateau) and not (
            isinstance(self.target, HandoverReduceLROnPlateau) and hands_over(self.model.optimizer)
        ):
            refuse_schedule_object(self.model.optimizer, self.rule)
        if isinstance(self.target, keras.callbacks.CSVLogger):
            self._place_log()

    def set_model(self, model: Any) -> None:
        super().set_model(model)
        # TensorBoard fixes its folders, and writes the model's summary there, in its own
        # set_model, which Keras calls right after this one: decide its place now.
        if isinstance(self.target, keras.callbacks.TensorBoard):
            self._place_log()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._private is not None:
            # Runs before the logger's own train end, which only closes what is open: an
            # open file in a removed folder is still closed normally.
            shutil.rmtree(self._private, ignore_errors=True)
            self._private = None

    def _place_log(self) -> None:
        """Point the logger at its real path on the writer, at a private folder elsewhere."""
        real = str(self.real_log)
        if isinstance(self.target, keras.callbacks.CSVLogger):
            private = None if is_writer() else os.path.join(self._private_folder(), os.path.basename(real))
            self.target.filename = private or real
        else:
            self.target.log_dir = real if is_writer() else self._private_folder()

    def _private_folder(self) -> str:
        if self._private is not None:
            return self._private
        self._private = tempfile.mkdtemp(prefix="policy-discard-")
        # fit may end in an exception (a crash, Preempted) without reaching train end: the
        # folder then goes when this callback is collected, or at the latest at exit.
        weakref.finalize(self, shutil.rmtree, self._private, ignore_errors=True)
        return self._private

    def __repr__(self) -> str:
        return f"FitStart({type(self.target).__name__})"
