"""Making the folder a log file goes in, before Keras's CSVLogger opens it.

Keras's ModelCheckpoint creates the folder of its path, but CSVLogger does not: a hand-written
``CSVLogger("runs/train.csv")`` fails at train begin with FileNotFoundError when ``runs/`` is
missing (the differential suite found this). ``log to "runs/train.csv"`` should work as
``save best ... to "runs/best.keras"`` does, so the compiler puts this callback right before
Keras's own, unchanged CSVLogger. It only creates folders (never files), at train begin, and
adds no batch hooks.
"""

from __future__ import annotations

import os
from typing import Any

import keras


class CreateFolder(keras.callbacks.Callback):  # type: ignore[misc]
    """Create a folder (and its parents) at train begin if it does not exist.

    Args:
        folder: the folder to create; an existing one is left as it is.
    """

    def __init__(self, folder: str) -> None:
        super().__init__()
        self.folder = folder

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        os.makedirs(self.folder, exist_ok=True)

    def __repr__(self) -> str:
        return f"CreateFolder({self.folder!r})"
