"""Files that appear at their final name only when complete.

Every file a policy writes goes through :func:`atomic_path`: the writer writes a temporary
file in the same folder (so the final rename never crosses file systems), the data is
flushed to the disk (``fsync``), and ``os.replace`` moves it to its name in one step. A kill
at any moment leaves either the previous file or the new one, plus at worst a temporary file
named ``.partial-*`` that the next run sweeps away (:func:`sweep_partials`).

:class:`AtomicModelCheckpoint` is Keras's ModelCheckpoint with only that changed: during its
own save step the model it sees is a thin view whose ``save``/``save_weights`` write this
way. Deciding whether to save, formatting the path and counting batches stay Keras's code.

This is also the one place that decides *who* writes (:mod:`policy.callbacks.processes`):
under multi-process training only the writer (process 0) writes the real path; every other
process still runs the same save (on JAX, saving takes part in collectives), into a private
temporary folder that is deleted as soon as the save returns. Removing a file and sweeping
temporary files happen on the writer only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import keras

from policy.callbacks.processes import is_writer, process_count

PARTIAL_PREFIX = ".partial-"


def fsync_path(path: str) -> None:
    """Flush a written file (or a folder's entry list) to the disk."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if os.path.isdir(path) else os.O_RDONLY
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder; the rename is still atomic
        pass
    finally:
        os.close(fd)


def partial_name(path: str) -> str:
    """The temporary name beside ``path``; it keeps the ending, which Keras's savers check."""
    folder, name = os.path.split(path)
    return os.path.join(folder, f"{PARTIAL_PREFIX}{os.getpid()}-{name}")


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temporary path to write; on success the file becomes ``path`` in one step.

    If the block raises, the temporary file is removed and ``path`` is untouched. On a process
    that is not the writer the yielded path is in a private folder deleted afterwards, and
    ``path`` is never touched.
    """
    if not is_writer():
        with discarded(os.path.basename(path)) as tmp:
            yield tmp
        return
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    tmp = partial_name(path)
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    fsync_path(folder or ".")


@contextlib.contextmanager
def discarded(name: str) -> Iterator[str]:
    """Yield a path named ``name`` in a fresh private folder, removed with all it holds afterwards.

    Where the processes that do not write files put what they save: the name keeps its ending,
    which Keras's savers check.
    """
    folder = tempfile.mkdtemp(prefix="policy-discard-")
    try:
        yield os.path.join(folder, name)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_model(model: Any, path: str, weights_only: bool) -> None:
    """Save as ModelCheckpoint does (parent folder created, overwrite), but atomically."""
    with atomic_path(path) as tmp:
        if weights_only:
            model.save_weights(tmp, overwrite=True)
        else:
            model.save(tmp, overwrite=True)


def remove_file(path: str) -> None:
    """Remove ``path`` if it exists, and make the removal durable (on the writer only)."""
    if is_writer() and os.path.exists(path):
        os.remove(path)
        fsync_path(os.path.dirname(path) or ".")


def sweep_partials(template: str) -> None:
    """Remove temporary files a killed run left in the folder of ``template``.

    Only names starting with ``.partial-`` are touched; a folder whose name holds a
    placeholder (``{epoch}``) is unknown before formatting and is left alone.
    """
    folder = os.path.dirname(template) or "."
    if "{" in folder or not os.path.isdir(folder) or not is_writer():
        return
    for name in os.listdir(folder):
        if name.startswith(PARTIAL_PREFIX):
            path = os.path.join(folder, name)
            with contextlib.suppress(OSError):
                if os.path.isdir(path):  # a backup generation that was being written
                    shutil.rmtree(path)
                else:
                    os.remove(path)


class _AtomicSaves:
    """A view of a model whose ``save``/``save_weights`` write atomically; all else is the model's."""

    def __init__(self, model: Any) -> None:
        self._wrapped = model

    def save(self, filepath: str, overwrite: bool = True, **kwargs: Any) -> None:
        with atomic_path(os.fspath(filepath)) as tmp:
            self._wrapped.save(tmp, overwrite=overwrite, **kwargs)

    def save_weights(self, filepath: str, overwrite: bool = True, **kwargs: Any) -> None:
        with atomic_path(os.fspath(filepath)) as tmp:
            self._wrapped.save_weights(tmp, overwrite=overwrite, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):  # type: ignore[misc]
    """Keras's ModelCheckpoint, except that each file reaches the disk atomically.

    Only ``_save_model`` (the step that ends in ``model.save``/``save_weights``) is wrapped;
    it runs Keras's own code with the model swapped for :class:`_AtomicSaves` for its
    duration. The constructor, arguments and attributes are Keras's, so ``policy.describe``
    and the equality tests see a ModelCheckpoint with the same arguments. A partial file
    left by a killed run is swept away at train begin.

    Args:
        filepath: where to save, as for Keras's ModelCheckpoint (``{epoch}`` and log
            placeholders are filled in).
        **kwargs: ModelCheckpoint's other arguments (``monitor``, ``mode``,
            ``save_best_only``, ``save_weights_only``, ``save_freq``, ...), unchanged.
    """

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        super().on_train_begin(logs)
        sweep_partials(self.filepath)

    def _save_model(self, epoch: int, batch: int | None, logs: dict[str, Any] | None) -> None:
        # Keras checks that the folder exists, then creates it without exist_ok: two processes
        # saving at once can both see it missing, and one fails with FileExistsError (measured
        # with plain ModelCheckpoint in two JAX processes). With several processes, creating it
        # first, tolerantly, leaves Keras's check nothing to do. Formatting the path has no
        # effect; one process keeps Keras's behaviour exactly.
        if process_count() > 1:
            with contextlib.suppress(KeyError, ValueError, IndexError):
                folder = os.path.dirname(self._get_file_path(epoch, batch, logs))
                if folder:
                    os.makedirs(folder, exist_ok=True)
        model: Any = getattr(self, "_model")  # noqa: B009 - Keras's attribute, untyped
        setattr(self, "_model", _AtomicSaves(self.model))  # noqa: B010
        try:
            super()._save_model(epoch=epoch, batch=batch, logs=logs)
        finally:
            setattr(self, "_model", model)  # noqa: B010
