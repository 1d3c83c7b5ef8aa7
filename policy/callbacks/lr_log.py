"""``log lr``: the learning rate in effect, written into the epoch logs as ``learning_rate``.

Keras's fit loop logs no learning rate; only ReduceLROnPlateau and LearningRateScheduler write
``logs["learning_rate"]`` (TensorBoard shows it, but in a copy of the logs nobody else sees). So a
CSV log, the History, or a rule watching ``learning_rate`` have no rate unless an lr rule comes
first. This callback writes it the way those two do (``float`` of the optimizer's
``learning_rate`` converted to numpy), and the compiler puts it first in the list, so every
callback after it (CSVLogger and TensorBoard included) sees the key at every epoch end. At epoch
end nothing has changed the rate yet (schedules set it at epoch begin; ReduceLROnPlateau changes
it later in the same dispatch), so the value is the rate the epoch trained with.
"""

from __future__ import annotations

from typing import Any

import keras


class LearningRateLogger(keras.callbacks.Callback):  # type: ignore[misc]
    """Write the optimizer's learning rate into the epoch logs as ``learning_rate``.

    Overrides ``on_epoch_end`` only. An optimizer wrapped for loss scaling is read through to its
    inner optimizer, as Keras's TensorBoard does.

    Args:
        key: the log key to write (``"learning_rate"``, the key Keras's own lr callbacks use).
    """

    def __init__(self, key: str = "learning_rate") -> None:
        super().__init__()
        self.key = key

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is None:
            return
        optimizer = self.model.optimizer
        optimizer = getattr(optimizer, "inner_optimizer", optimizer)
        logs[self.key] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))

    def __repr__(self) -> str:
        return "LearningRateLogger()"
