"""``keep last K``: checkpoints that keep only the files of their newest K writes.

Keras's ModelCheckpoint never deletes a file. The HF Trainer's ``save_total_limit``, Orbax's
``max_to_keep`` and Ray's ``num_to_keep`` do: after each write, the oldest checkpoints beyond
the limit go. Here the list is the files *this rule wrote in this run*, in the order of their
latest write (a path written again moves to the end), so a file that was there before ``fit``,
or that another rule or another run wrote, is never deleted. The list is reset at train begin
and is part of a backup's state, so a resumed run goes on deleting the files of the run it
resumes. Deleting goes through :func:`policy.callbacks.atomic.remove_file` (the writer process
only, made durable), and the writes stay atomic.
"""

from __future__ import annotations

from typing import Any

from policy.callbacks.atomic import AtomicModelCheckpoint, remove_file


def retain(written: list[str], path: str, keep: int) -> None:
    """Record that ``path`` was just written, then delete the files beyond the newest ``keep``.

    ``written`` is the rule's list (oldest first), changed in place.
    """
    if path in written:
        written.remove(path)
    written.append(path)
    while len(written) > keep:
        remove_file(written.pop(0))


class KeepLastModelCheckpoint(AtomicModelCheckpoint):
    """Keras's ModelCheckpoint that keeps only the files of its newest ``keep`` writes.

    Which batches or epochs save, and where, is Keras's own code (``save_freq`` counted as
    ModelCheckpoint counts it, the path formatted by ``_get_file_path``); after each save the
    files this callback wrote in this run beyond the newest ``keep`` are deleted.

    Args:
        filepath: where to save, with ``{epoch}`` / ``{batch}`` / log placeholders.
        keep: how many of the newest files to keep (at least 1).
        **kwargs: ModelCheckpoint's other arguments (``save_freq``, ``save_weights_only``, ...).
    """

    def __init__(self, filepath: str, keep: int, **kwargs: Any) -> None:
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be a whole number of at least 1. Received: keep={keep!r}")
        super().__init__(filepath, **kwargs)
        self.keep = keep
        self.retained: list[str] = []

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        super().on_train_begin(logs)
        self.retained = []

    def _save_model(self, epoch: int, batch: int | None, logs: dict[str, Any] | None) -> None:
        super()._save_model(epoch=epoch, batch=batch, logs=logs)
        # Only reached when the save succeeded; formatting the path again has no effect.
        retain(self.retained, self._get_file_path(epoch, batch, logs or {}), self.keep)
