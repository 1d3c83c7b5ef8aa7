"""Checkpoints Keras's ModelCheckpoint cannot write: every N > 1 epochs, and the top k.

Paths are formatted exactly as ModelCheckpoint formats them (``{epoch}`` is 1-based, other
placeholders come from the logs) and files are written the way it writes them (parent
folder created, ``overwrite=True``), except that each file appears at its name only when
complete (:mod:`policy.callbacks.atomic`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import keras

from policy import ast
from policy.callbacks.atomic import remove_file, sweep_partials, write_model
from policy.callbacks.numeric import is_worse
from policy.callbacks.retention import retain


def format_path(template: str, epoch: int, logs: dict[str, Any]) -> str:
    """ModelCheckpoint's path for an epoch-end save: ``template.format(epoch=epoch + 1, **logs)``."""
    try:
        return template.format(epoch=epoch + 1, **logs)
    except KeyError as e:
        raise KeyError(f'Failed to format this callback filepath: "{template}". Reason: {e}') from e


class PeriodicCheckpoint(keras.callbacks.Callback):  # type: ignore[misc]
    """Save the model every N epochs (``save [weights] every N epochs to P``, N > 1).

    After the 0-based epoch ``e`` for which ``(e + 1) % every == 0``, the model (or its
    weights) is saved to ``path`` formatted as Keras's ModelCheckpoint formats it (``{epoch}``
    counts from 1, other placeholders come from the epoch's logs). Every file appears at its
    name only once complete. Saving every epoch needs no callback of ours: it is Keras's
    ModelCheckpoint.

    Args:
        path: where to save; may hold ``{epoch}`` and log placeholders.
        every: the number of epochs between saves.
        weights_only: save only the weights (``model.save_weights``) instead of the whole
            model (``model.save``). Defaults to False.
        keep: keep only the files of the newest ``keep`` saves of this run, deleting older ones
            this callback wrote (``keep last K``); None (the default) keeps every file.
    """

    def __init__(self, path: str, every: int, weights_only: bool = False, keep: int | None = None) -> None:
        super().__init__()
        self.path = path
        self.every = every
        self.weights_only = weights_only
        self.keep = keep
        self.retained: list[str] = []

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.retained = []
        sweep_partials(self.path)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if (epoch + 1) % self.every == 0:
            path = format_path(self.path, epoch, logs or {})
            write_model(self.model, path, self.weights_only)
            if self.keep is not None:
                retain(self.retained, path, self.keep)

    def get_state(self) -> dict[str, Any]:
        return {"retained": list(self.retained)}

    def set_state(self, state: dict[str, Any]) -> None:
        self.retained = [str(p) for p in state["retained"]]


@dataclass(frozen=True)
class Kept:
    """One checkpoint the top-k rule keeps: its value, epoch and file."""

    value: float
    epoch: int
    path: str


class TopKCheckpoint(keras.callbacks.Callback):  # type: ignore[misc]
    """Keep the checkpoints of the K best epochs (``save top K [weights] on M to P``).

    At each epoch end where ``monitor`` is logged (and not NaN), the epoch enters when fewer
    than K are kept or its value is strictly better (compared in float32) than the worst
    kept; ties keep the earlier epoch. An epoch that enters is saved to ``path`` formatted as
    ModelCheckpoint formats it, and the file of the epoch it pushes out is deleted. Only files this callback wrote in this run are ever deleted, so a file from an
    earlier run or another tool is safe. ``path`` should name each epoch apart (``{epoch}``).

    Args:
        path: where to save; ``{epoch}`` (counting from 1) and log placeholders are filled in.
        k: how many checkpoints to keep.
        monitor: the metric that ranks epochs, as it appears in the logs (``"val_loss"``).
        mode: ``"min"`` if lower is better, ``"max"`` if higher is.
        weights_only: save only the weights instead of the whole model. Defaults to False.
    """

    def __init__(self, path: str, k: int, monitor: str, mode: ast.Direction, weights_only: bool = False) -> None:
        super().__init__()
        self.path = path
        self.k = k
        self.monitor = monitor
        self.mode: ast.Direction = mode
        self.weights_only = weights_only
        self.kept: list[Kept] = []
        self._written: set[str] = set()

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.kept = []
        self._written = set()
        sweep_partials(self.path)

    def get_state(self) -> dict[str, Any]:
        return {
            "kept": [[k.value, k.epoch, k.path] for k in self.kept],
            "written": sorted(self._written),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Take the table back (the kept epochs, and which files this rule wrote).

        A run killed between writing a new file and deleting the one that dropped out is
        resumed from the backup before that epoch, so the epoch is repeated with this table:
        the same file is written again and the same one deleted (a file already gone is
        skipped), which leaves exactly the top k.
        """
        self.kept = [Kept(float(v), int(e), str(p)) for v, e, p in state["kept"]]
        self._written = set(state["written"])

    def _worst(self) -> Kept:
        # The worst value; among equal values the latest epoch (so ties keep the earlier one).
        worst = self.kept[0]
        for entry in self.kept[1:]:
            if is_worse(entry.value, worst.value, self.mode) or (
                not is_worse(worst.value, entry.value, self.mode) and entry.epoch > worst.epoch
            ):
                worst = entry
        return worst

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        value = logs.get(self.monitor)
        if value is None or math.isnan(float(value)):
            return
        value = float(value)
        if len(self.kept) >= self.k and not is_worse(self._worst().value, value, self.mode):
            return
        path = format_path(self.path, epoch, logs)
        write_model(self.model, path, self.weights_only)
        self._written.add(path)
        self.kept.append(Kept(value, epoch, path))
        if len(self.kept) > self.k:
            dropped = self._worst()
            self.kept.remove(dropped)
            # Another kept epoch may share the path (a template without {epoch}); keep its file then.
            if dropped.path in self._written and all(k.path != dropped.path for k in self.kept):
                self._written.discard(dropped.path)
                remove_file(dropped.path)
