"""Each callback's decision state as plain data, for backups (``get_state`` / ``set_state``).

A state is a dict of JSON values, except keys ending in ``_weights``, which hold None or a
list of numpy arrays (weights a rule keeps, such as ``restore best``'s); the backup stores
those in an array file beside the JSON. Nothing is pickled: a backup can be read without
the classes that wrote it, and a Keras upgrade cannot turn it into garbage silently.

Our callbacks implement ``get_state``/``set_state`` themselves. Keras's own classes are
read and written here, attribute by attribute, because their state lives in attributes
their code documents (EarlyStopping's ``wait``/``best``/``best_weights``...).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import keras
import numpy as np

from policy.callbacks.atomic import PARTIAL_PREFIX, write_bytes
from policy.callbacks.processes import is_writer

State = dict[str, Any]


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _weights(value: Any) -> list[np.ndarray] | None:
    return None if value is None else [np.array(w, copy=True) for w in value]


def get_state(cb: Any) -> State:
    """The state of ``cb`` that decides what it does next (empty for a stateless callback)."""
    cbs = keras.callbacks
    if hasattr(type(cb), "get_state"):
        state: State = cb.get_state()
        return state
    if isinstance(cb, cbs.EarlyStopping):
        return {
            "wait": int(cb.wait),
            "stopped_epoch": int(cb.stopped_epoch),
            "best": _float(cb.best),
            "best_epoch": int(getattr(cb, "best_epoch", 0)),
            "best_weights": _weights(cb.best_weights),
        }
    if isinstance(cb, cbs.ReduceLROnPlateau):
        return {"wait": int(cb.wait), "cooldown_counter": int(cb.cooldown_counter), "best": _float(cb.best)}
    if isinstance(cb, cbs.ModelCheckpoint):
        return {
            "best": _float(cb.best),
            "batches_since_save": int(cb._batches_seen_since_last_saving),
            "last_batch_seen": cb._last_batch_seen,
            "current_epoch": int(getattr(cb, "_current_epoch", 0)),
            # keep last K (KeepLastModelCheckpoint): the files it wrote, oldest first.
            "retained": list(getattr(cb, "retained", [])),
        }
    if isinstance(cb, cbs.CSVLogger):
        if cb.csv_file is not None and not cb.csv_file.closed:
            cb.csv_file.flush()
        content = ""
        if os.path.exists(cb.filename):
            with open(cb.filename, encoding="utf-8", newline="") as f:
                content = f.read()
        return {"content": content, "keys": cb.keys}
    return {}


def set_state(cb: Any, state: State) -> None:
    """Put back what :func:`get_state` returned; called after ``cb``'s own ``on_train_begin``."""
    cbs = keras.callbacks
    if hasattr(type(cb), "set_state"):
        cb.set_state(state)
        return
    if isinstance(cb, cbs.EarlyStopping):
        cb.wait = state["wait"]
        cb.stopped_epoch = state["stopped_epoch"]
        cb.best = state["best"]
        cb.best_epoch = state["best_epoch"]
        cb.best_weights = state["best_weights"]
    elif isinstance(cb, cbs.ReduceLROnPlateau):
        cb.wait = state["wait"]
        cb.cooldown_counter = state["cooldown_counter"]
        cb.best = state["best"]
    elif isinstance(cb, cbs.ModelCheckpoint):
        cb.best = state["best"]
        cb._batches_seen_since_last_saving = state["batches_since_save"]
        cb._last_batch_seen = state["last_batch_seen"]
        cb._current_epoch = state["current_epoch"]
        if hasattr(cb, "retained"):
            cb.retained = [str(p) for p in state.get("retained", [])]
    elif isinstance(cb, cbs.CSVLogger):
        _restore_csv(cb, state["content"], state["keys"])


def _restore_csv(cb: Any, content: str, keys: list[str] | None) -> None:
    """Rewind a CSVLogger's file to the rows of the backed-up epochs, then append after them.

    Keras's CSVLogger opened (and, without ``append``, emptied) the file in its own
    ``on_train_begin``; the rows written up to the backup come from the backup itself, so a
    row written after it (an epoch the resumed run repeats) is dropped, never doubled.
    """
    if cb.csv_file is not None and not cb.csv_file.closed:
        cb.csv_file.close()
    _sweep_own_partials(cb.filename)  # a run killed while rewinding this log left one
    write_bytes(cb.filename, content.encode("utf-8"))
    cb.csv_file = open(cb.filename, "a", encoding="utf-8", newline="")  # noqa: SIM115 - closed by CSVLogger
    cb.writer = None
    cb.keys = list(keys) if keys is not None else None
    cb.append_header = not content


def _sweep_own_partials(path: str) -> None:
    """Remove the temporary files of ``path`` a killed run left beside it (``.partial-PID-name``)."""
    folder, name = os.path.split(path)
    if not is_writer() or not os.path.isdir(folder or "."):
        return
    for entry in os.listdir(folder or "."):
        if entry.startswith(PARTIAL_PREFIX) and entry.endswith(f"-{name}"):
            with contextlib.suppress(OSError):
                os.remove(os.path.join(folder, entry))
