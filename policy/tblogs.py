"""Reading the per-epoch logs back out of a Keras ``TensorBoard`` log folder.

``keras.callbacks.TensorBoard(log_dir)`` writes, at every epoch end, each training log value as
the scalar ``epoch_<name>`` in ``log_dir/train/`` (plus ``epoch_learning_rate``) and each
``val_<name>`` as ``epoch_<name>`` in ``log_dir/validation/``, with the 0-based epoch as the step.
This module maps them back to the names ``History.history`` uses (``epoch_loss`` in
``validation/`` is ``val_loss``). Batch-level scalars (``batch_*``) and the
``evaluation_*_vs_iterations`` scalars are not epoch logs and are skipped; any other scalar tag
is reported, not guessed at.

The events are read with the ``tensorboard`` package's own reader (``pip install
'keras-policy[tensorboard]'``), imported only here. Its high-level ``EventFileLoader`` goes
through ``tensorboard.compat.tf``, which imports TensorFlow when it is installed (seconds, and a
framework the CLI promises not to load); the switch that would stop that
(``tensorboard.compat.notf``) holds for the whole process and breaks Keras's own TensorBoard
callback afterwards. So the records are read as that loader reads them without TensorFlow:
tensorboard's pure-Python record reader (``tensorflow_stub.pywrap_tensorflow``), its ``Event``
proto and ``data_compat.migrate_event``, stopping at a truncated last record as it does.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from policy.history import History, HistoryError

INSTALL_HINT = "pip install 'keras-policy[tensorboard]'"
EVENT_GLOB = "events.out.tfevents.*"
# Sub-folder -> prefix of the log name, as Keras's TensorBoard splits the logs.
FOLDERS = (("train", ""), ("validation", "val_"))


def is_log_folder(path: Path) -> bool:
    """Whether ``path`` looks like a Keras TensorBoard ``log_dir``: event files under train/ or validation/."""
    return any(path.joinpath(sub).is_dir() and any(path.joinpath(sub).glob(EVENT_GLOB)) for sub, _ in FOLDERS)


class _Reader:
    """tensorboard's own pieces for reading event files, imported without TensorFlow."""

    def __init__(self) -> None:
        try:
            self.records = importlib.import_module("tensorboard.compat.tensorflow_stub.pywrap_tensorflow")
            self.errors = importlib.import_module("tensorboard.compat.tensorflow_stub.errors")
            self.event_pb2 = importlib.import_module("tensorboard.compat.proto.event_pb2")
            self.data_compat = importlib.import_module("tensorboard.data_compat")
            self.tensor_util = importlib.import_module("tensorboard.util.tensor_util")
        except ImportError:
            raise HistoryError(f"reading TensorBoard logs needs the tensorboard package ({INSTALL_HINT})") from None

    def events(self, path: Path) -> Iterator[Any]:
        """Every event of one file, scalars in today's tensor form; a truncated last record ends it."""
        reader = self.records.PyRecordReader_New(str(path))
        while True:
            try:
                reader.GetNext()
            except self.errors.OutOfRangeError:
                return
            except self.errors.DataLossError:
                return  # a record still being written (or cut off): what came before stands
            yield self.data_compat.migrate_event(self.event_pb2.Event.FromString(reader.record()))

    def scalar(self, value: Any) -> float:
        return float(self.tensor_util.make_ndarray(value.tensor))


def read_log_folder(folder: str | Path) -> tuple[History, list[str]]:
    """The per-epoch logs a Keras TensorBoard folder holds, and notes on what was skipped.

    Raises :class:`HistoryError` (naming the folder or event file) for a folder with no
    epoch scalars, an unreadable event file, or an epoch written twice.
    """
    folder = Path(folder)
    reader = _Reader()
    values: dict[int, dict[str, float]] = {}
    unknown: set[str] = set()
    for sub, prefix in FOLDERS:
        seen: dict[tuple[str, int], str] = {}
        for path in sorted(folder.joinpath(sub).glob(EVENT_GLOB)):
            try:
                events = list(reader.events(path))
            except Exception as exc:  # the reader's own errors (corrupt record, I/O) name no file
                raise HistoryError(f"cannot read the event file ({type(exc).__name__}: {exc})", str(path)) from None
            for event in events:
                for value in event.summary.value:
                    if value.metadata.plugin_data.plugin_name != "scalars":
                        continue  # the model graph, histograms, images: not logs
                    tag = value.tag
                    if not tag.startswith("epoch_"):
                        if not (tag.startswith("batch_") or (tag.startswith("evaluation_") and tag.endswith("_vs_iterations"))):
                            unknown.add(f"{sub}/{tag}")
                        continue
                    key = prefix + tag[len("epoch_"):]
                    step = int(event.step)
                    if (key, step) in seen:
                        raise HistoryError(
                            f"epoch {step} of {tag!r} is written twice ({Path(seen[key, step]).name} and {path.name}): "
                            "two fits into one log folder? replay one of them",
                            str(folder),
                        )
                    seen[key, step] = str(path)
                    values.setdefault(step, {})[key] = reader.scalar(value)
    if not values:
        found = f" (scalar tags found: {', '.join(sorted(unknown))})" if unknown else ""
        raise HistoryError(
            "no epoch scalars in train/ or validation/: keras.callbacks.TensorBoard writes epoch_loss, "
            f"epoch_accuracy, ...{found}",
            str(folder),
        )
    history = [values[step] for step in sorted(values)]
    notes = [f"skipped scalar tags that are not Keras epoch logs: {', '.join(sorted(unknown))}"] if unknown else []
    return history, notes
