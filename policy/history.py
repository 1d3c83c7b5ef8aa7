"""Reading a recorded training history from disk, for ``keras-policy simulate``.

Three shapes are accepted, all of which Keras users already have lying around:

- a CSVLogger file: an ``epoch`` column (0-based), one column per log key, ``NA`` for a
  value that was missing that epoch;
- the JSON of ``History.history``: ``{"loss": [...], "val_loss": [...]}``, ``null`` for missing;
- a JSON list of per-epoch log dicts: ``[{"loss": 0.9, "val_loss": 1.0}, ...]``.

Whatever the shape, the result is a list with one ``dict[str, float]`` per epoch, the
logs Keras would have passed to ``on_epoch_end``; a missing value is an absent key, as
in real logs. No keras import here.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# HistoryError lives with PolicyError so that the CLI can catch it without importing this module.
from policy.errors import HistoryError as HistoryError
from policy.errors import PolicyError
from policy.logs import EpochLogs, epoch_logs
from policy.logs import History as History  # the one history type, read here from files

# What CSVLogger writes for a key that was absent in an epoch's logs.
_MISSING = {"NA", ""}


def read_history(path: str | Path) -> History:
    """Read a CSVLogger CSV or a History JSON file into per-epoch logs."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise HistoryError(f"cannot read the history ({reason})", str(path)) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise HistoryError(
            f"the history is not UTF-8 text: byte 0x{data[exc.start]:02x} at byte offset {exc.start} "
            "cannot be decoded; save it as UTF-8",
            str(path),
            line,
        ) from None
    if path.suffix.lower() == ".json" or text.lstrip().startswith(("{", "[")):
        return history_from_json(text, str(path))
    return history_from_csv(text, str(path))


def history_from_csv(text: str, filename: str | None = None) -> History:
    """Parse CSVLogger output. Rows are ordered by their ``epoch`` column, which must not repeat."""
    try:
        rows = list(csv.reader(text.splitlines()))
    except csv.Error as exc:  # a NUL byte, a field over the csv module's size limit
        raise HistoryError(f"not a valid CSV file ({exc})", filename) from None
    if not rows or not any(rows[0]):
        raise HistoryError("the history is empty", filename)
    header = [h.strip() for h in rows[0]]
    numbered: list[tuple[int, int, EpochLogs]] = []
    for index, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise HistoryError(f"expected {len(header)} values as in the header, got {len(row)}", filename, index)
        logs: EpochLogs = {}
        epoch = index - 2
        for key, raw in zip(header, row, strict=True):
            raw = raw.strip()
            if key == "epoch":
                epoch = _epoch_number(raw, filename, index)
            elif raw not in _MISSING:
                logs[key] = _number(raw, key, filename, index)
        numbered.append((epoch, index, logs))
    if not numbered:
        raise HistoryError("the history has a header but no epochs", filename)
    numbered.sort(key=lambda item: item[0])
    for (a, _, _), (b, line, _) in itertools.pairwise(numbered):
        if a == b:
            raise HistoryError(
                f"epoch {b} appears twice (a CSVLogger with append=True over two runs?); keep one run", filename, line
            )
    return [logs for _, _, logs in numbered]


def history_from_json(text: str, filename: str | None = None) -> History:
    """Parse ``History.history`` JSON (a dict of lists) or a list of per-epoch dicts."""
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HistoryError(f"not valid JSON ({exc.msg})", filename, exc.lineno) from None
    except RecursionError:
        raise HistoryError("not valid JSON (it nests lists or objects deeper than the reader can follow)",
                           filename) from None
    except ValueError as exc:  # an integer longer than Python's int-from-text limit
        raise HistoryError(f"not valid JSON ({exc})", filename) from None
    return history_from_data(data, filename)


def history_from_data(data: Any, filename: str | None = None) -> History:
    """Per-epoch logs from already-loaded data: a dict of per-key lists or a list of dicts."""
    if isinstance(data, Mapping):
        data = _front_padded(data, filename)
    elif not isinstance(data, Sequence) or isinstance(data, str | bytes):
        raise HistoryError(
            f"expected a dict of lists (History.history) or a list of dicts, got {type(data).__name__}", filename
        )
    try:
        out = list(epoch_logs(data))
    except PolicyError as exc:
        raise HistoryError(exc.message, filename) from None
    if not out:
        raise HistoryError("the history has no epochs", filename)
    return out


def _front_padded(data: Mapping[Any, Any], filename: str | None) -> dict[str, list[Any]]:
    """``History.history`` columns, each as long as the longest: a shorter one is padded with None
    at the front (a key that appeared only in later epochs)."""
    columns = {str(k): v for k, v in data.items() if k != "epoch"}
    lengths = set()
    for key, values in columns.items():
        if not isinstance(values, Sequence) or isinstance(values, str | bytes):
            raise HistoryError(f"{key!r}: expected a list of per-epoch values, got {type(values).__name__}", filename)
        lengths.add(len(values))
    if not lengths or max(lengths) == 0:
        raise HistoryError("the history has no epochs", filename)
    # History.history lists can differ in length when a key only appears in later epochs
    # (ReduceLROnPlateau writes learning_rate from its first epoch end); pad at the front.
    epochs = max(lengths)
    # But shorter val_ lists beside full training ones are fit(validation_freq=k): History
    # appends only the epochs that validated and keeps no record of which, so any placement
    # would be a guess (the front-padding above would put them in the wrong epochs).
    full = [k for k, v in columns.items() if not k.startswith("val_") and len(v) == epochs]
    short = sorted(k for k, v in columns.items() if k.startswith("val_") and 0 < len(v) < epochs)
    if full and short:
        raise HistoryError(
            f"{short[0]!r} has {len(columns[short[0]])} values but {full[0]!r} has {epochs}: validation ran "
            "every few epochs (validation_freq), and History.history does not record which; use the run's "
            "CSVLogger file or TensorBoard folder, or pass validation_freq to policy.simulate",
            filename,
        )
    return {key: [None] * (epochs - len(values)) + list(values) for key, values in columns.items()}


def _number(raw: str, key: str, filename: str | None, line: int) -> float:
    try:
        return float(raw)
    except ValueError:
        raise HistoryError(f"{key!r}: {raw!r} is not a number", filename, line) from None


def _epoch_number(raw: str, filename: str | None, line: int) -> int:
    value = _number(raw, "epoch", filename, line)
    if not math.isfinite(value) or not value.is_integer() or value < 0:
        raise HistoryError(f"the epoch must be a whole number, got {raw!r}", filename, line)
    return int(value)
