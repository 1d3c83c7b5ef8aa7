"""Finding and reading recorded training runs: files, folders and glob patterns.

A run is one CSVLogger file (``.csv``), one ``History.history`` JSON file (``.json``, either
shape :mod:`policy.history` reads) or one Keras TensorBoard log folder (event files under
``train/`` and ``validation/``, read by :mod:`policy.tblogs`). A folder that is not a log folder
is searched (recursively, sorted) for all three. A pattern with ``*``, ``?`` or ``[`` that names
no existing path is expanded as a glob (``**`` included).

Reading never raises for one bad run: a :class:`RecordedRun` carries either the per-epoch logs
or the error, with the file name, so a replay over a hundred runs reports the three broken ones
and goes on.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from policy.history import History, HistoryError, read_history
from policy.tblogs import is_log_folder

SUFFIXES = (".csv", ".json")


@dataclass(frozen=True)
class RecordedRun:
    """One recorded run: its name (the file or folder), its per-epoch logs or why there are none."""

    name: str
    history: History | None
    error: str | None = None
    notes: tuple[str, ...] = field(default=())


def find_runs(sources: Iterable[str | Path]) -> list[RecordedRun]:
    """Every run the sources name, in order (folders and globs sorted), each path once."""
    out: list[RecordedRun] = []
    seen: set[str] = set()
    for source in sources:
        text = str(source)
        if not _exists(text) and any(c in text for c in "*?["):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                out.append(RecordedRun(text, None, "no file or folder matches this pattern"))
            paths = [Path(m) for m in matches]
        else:
            paths = [Path(text)]
        for path in paths:
            try:
                found = [(str(Path(run.name).resolve()), run) for run in _runs_at(path)]
            except (OSError, ValueError) as exc:  # a name the OS refuses: too long, a NUL byte
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                found = [(text, RecordedRun(text, None, f"cannot read it ({reason})"))]
            for key, run in found:
                if key not in seen:
                    seen.add(key)
                    out.append(run)
    return out


def _exists(text: str) -> bool:
    try:
        return Path(text).exists()
    except (OSError, ValueError):
        return False


def read_run(path: str | Path) -> RecordedRun:
    """Read one run file or TensorBoard log folder; an error becomes the run's ``error``."""
    path = Path(path)
    try:
        if path.is_dir():
            from policy.tblogs import read_log_folder

            history, notes = read_log_folder(path)
            return RecordedRun(str(path), history, notes=tuple(notes))
        return RecordedRun(str(path), read_history(path))
    except HistoryError as exc:
        return RecordedRun(str(path), None, _where(exc, path))


def _where(exc: HistoryError, path: Path) -> str:
    """The error without repeating the run's own name (it heads the line already)."""
    if exc.filename == str(path) or exc.filename is None:
        return f"line {exc.line}: {exc.message}" if exc.line else exc.message
    return f"{exc.filename}{':' + str(exc.line) if exc.line else ''}: {exc.message}"


def _runs_at(path: Path) -> list[RecordedRun]:
    if not path.exists():
        return [RecordedRun(str(path), None, "no such file or folder")]
    if not path.is_dir():
        return [read_run(path)]
    if is_log_folder(path):
        return [read_run(path)]
    found = list(_search(path))
    if not found:
        return [RecordedRun(str(path), None,
                            "no runs in this folder (.csv or .json histories, or TensorBoard log folders)")]
    return [read_run(p) for p in found]


def _search(folder: Path) -> Iterable[Path]:
    for child in sorted(folder.iterdir()):
        if child.is_dir():
            if is_log_folder(child):
                yield child
            elif child.name not in ("train", "validation"):
                yield from _search(child)
        elif child.suffix.lower() in SUFFIXES:
            yield child
