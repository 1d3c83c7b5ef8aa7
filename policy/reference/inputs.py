"""Turn what a caller hands :func:`policy.reference.simulate` into one checked :class:`RunInput`.

Everything a user can get wrong about the *data* (as opposed to the policy) is caught here,
before any rule runs, with a :class:`~policy.errors.PolicyError` that says which epoch and which
metric: ragged series, non-numeric values, batch data that disagrees with ``steps_per_epoch``,
negative step durations. The forms accepted are described in :mod:`policy.reference`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from policy.errors import PolicyError, shown

EpochLogs: TypeAlias = dict[str, float]
"""One epoch's logs as Keras hands them to ``on_epoch_end``: plain floats, missing keys absent."""

History: TypeAlias = Mapping[str, Iterable[Any]] | Iterable[Mapping[str, Any]]

# The most training batches per epoch a simulation takes (the policy language's own limit on
# counts); beyond it a typo is likelier than a real run, and per-batch data would not fit in memory.
MAX_STEPS_PER_EPOCH = 10**9

# Strings a CSVLogger file (or a hand-written table) uses for "not logged this epoch".
_MISSING_WORDS = frozenset({"", "na", "n/a", "none", "null"})
# CSVLogger's index column. Keras never puts "epoch" in the logs (ModelCheckpoint could not
# format its paths if it did), so it is dropped rather than treated as a metric.
_INDEX_COLUMN = "epoch"


@dataclass(frozen=True)
class RunInput:
    """A checked description of one training run, epoch by epoch."""

    logs: tuple[EpochLogs, ...]
    """Per epoch, the logs Keras hands to ``on_epoch_end`` (before any callback writes to them)."""
    steps: tuple[int, ...] | None
    """Training batches per epoch, if known."""
    batch_losses: tuple[Sequence[float | None], ...] | None
    """Per epoch, the running training loss after each batch (None: not logged at that batch)."""
    step_seconds: tuple[Sequence[float], ...] | None
    """Per epoch, how long each training batch takes."""
    initial_lr: float | None

    @property
    def epochs(self) -> int:
        return len(self.logs)


def number(value: Any, where: str) -> float | None:
    """A logged value as the plain float Keras's ``pythonify_logs`` makes of it; None if missing."""
    if value is None:
        return None
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        raise PolicyError.plain(f"{where} is {value!r}, a boolean; expected a number")
    if isinstance(value, numbers.Real):
        try:
            return float(value)
        except OverflowError:  # an int (or Fraction) beyond float range: Keras's float() raises too
            raise PolicyError.plain(
                f"{where} is {shown(value)}, too large for a float", "log values within float range"
            ) from None
    if isinstance(value, str):
        if value.strip().lower() in _MISSING_WORDS:
            return None
        try:
            return float(value)
        except ValueError:
            pass
    raise PolicyError.plain(f"{where} is {shown(value)}, which is not a number", "log numbers (None means missing)")


def _series(values: Any, what: str) -> list[Any]:
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Iterable):
        raise PolicyError.plain(f"{what} must be a sequence (one entry per epoch), got {type(values).__name__}")
    return list(values)


def epoch_logs(history: Any) -> tuple[EpochLogs, ...]:
    """Per-epoch logs from a mapping ``metric -> values``, a list of per-epoch dicts, or a
    ``keras.callbacks.History`` (anything with a ``.history`` mapping)."""
    inner = getattr(history, "history", None)
    if isinstance(inner, Mapping):
        history = inner
    if isinstance(history, Mapping):
        columns: dict[str, list[Any]] = {}
        for name, values in history.items():
            if not isinstance(name, str):
                raise PolicyError.plain(f"metric names must be text, got {shown(name)}")
            columns[name] = _series(values, f"the history of {name!r}")
        lengths = {name: len(v) for name, v in columns.items()}
        if len(set(lengths.values())) > 1:
            described = ", ".join(f"{n}: {k}" for n, k in sorted(lengths.items()))
            raise PolicyError.plain(
                f"the metric series have different lengths ({described})",
                "give every metric one value per epoch, None where it was not logged",
            )
        count = next(iter(lengths.values()), 0)
        rows: list[Mapping[str, Any]] = [{n: v[i] for n, v in columns.items()} for i in range(count)]
    else:
        rows = []
        for i, row in enumerate(_series(history, "the history")):
            if not isinstance(row, Mapping):
                raise PolicyError.plain(
                    f"epoch {i} of the history is a {type(row).__name__}, expected a dict of metric values"
                )
            rows.append(row)
    out = []
    for epoch, row in enumerate(rows):
        logs: EpochLogs = {}
        for name in row:  # checked before sorting: sorting text with None or 3 raises TypeError
            if not isinstance(name, str):
                raise PolicyError.plain(f"metric names must be text, got {shown(name)} at epoch {epoch}")
        for name in sorted(row):
            if name == _INDEX_COLUMN:
                continue
            raw = row[name]
            # A plain float is already what number() would return: skip the checks (replaying
            # thousands of recorded runs spends most of its time here otherwise).
            value = raw if type(raw) is float else number(raw, f"{name} at epoch {epoch}")
            if value is not None:
                logs[name] = value
        out.append(logs)
    return tuple(out)


def _batch_table(data: Any, what: str, epochs: int, *, optional_values: bool) -> tuple[Sequence[Any], ...]:
    table = _series(data, what)
    if len(table) != epochs:
        raise PolicyError.plain(
            f"{what} covers {len(table)} epochs but the history has {epochs}",
            "give one list of per-batch values for every epoch of the history",
        )
    out: list[Sequence[Any]] = []
    for epoch, row in enumerate(table):
        values = _series(row, f"{what} of epoch {epoch}")
        # Fast path: a list of plain floats (the common, and the million-step, case) is kept as is.
        if not all(type(v) is float for v in values):
            converted = []
            for b, v in enumerate(values):
                x = number(v, f"{what}, epoch {epoch} batch {b}")
                if x is None and not optional_values:
                    raise PolicyError.plain(f"{what}, epoch {epoch} batch {b} is missing")
                converted.append(x)
            values = converted
        out.append(values)
    return tuple(out)


def run_input(
    history: Any,
    *,
    initial_lr: Any,
    steps_per_epoch: Any,
    batch_losses: Any,
    step_seconds: Any,
) -> RunInput:
    """Check and normalise every input of a simulation (the policy is checked elsewhere)."""
    logs = epoch_logs(history)
    epochs = len(logs)

    lr: float | None = None
    if initial_lr is not None:
        lr = number(initial_lr, "initial_lr")
        if lr is None or not math.isfinite(lr):
            raise PolicyError.plain(f"initial_lr must be a finite number, got {shown(initial_lr)}")

    losses = None
    if batch_losses is not None:
        losses = _batch_table(batch_losses, "batch_losses", epochs, optional_values=True)

    seconds: tuple[Sequence[float], ...] | None = None
    constant_seconds: float | None = None
    if step_seconds is not None:
        if isinstance(step_seconds, numbers.Real) and not isinstance(step_seconds, bool):
            constant_seconds = number(step_seconds, "step_seconds")
            if constant_seconds is None or not (math.isfinite(constant_seconds) and constant_seconds >= 0):
                raise PolicyError.plain(f"step_seconds must be a finite number >= 0, got {shown(step_seconds)}")
        else:
            seconds = _batch_table(step_seconds, "step_seconds", epochs, optional_values=False)
            for epoch, row in enumerate(seconds):
                if not all(math.isfinite(s) and s >= 0 for s in row):
                    raise PolicyError.plain(f"step_seconds of epoch {epoch} holds a negative or non-finite duration")

    steps = _steps(epochs, steps_per_epoch, losses, seconds)
    if constant_seconds is not None:
        if steps is None:
            raise PolicyError.plain(
                "a constant step_seconds needs the number of steps per epoch",
                "pass steps_per_epoch or batch_losses",
            )
        seconds = tuple([constant_seconds] * n for n in steps)
    return RunInput(logs=logs, steps=steps, batch_losses=losses, step_seconds=seconds, initial_lr=lr)


def _steps(
    epochs: int,
    steps_per_epoch: Any,
    losses: tuple[Sequence[Any], ...] | None,
    seconds: tuple[Sequence[Any], ...] | None,
) -> tuple[int, ...] | None:
    """Training batches per epoch, from whichever inputs give it; they must agree."""
    sources: list[tuple[str, tuple[int, ...]]] = []
    if steps_per_epoch is not None:
        if isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, numbers.Integral):
            raise PolicyError.plain(f"steps_per_epoch must be a whole number, got {shown(steps_per_epoch)}")
        if not 1 <= int(steps_per_epoch) <= MAX_STEPS_PER_EPOCH:
            raise PolicyError.plain(
                f"steps_per_epoch must be from 1 to {MAX_STEPS_PER_EPOCH}, got {shown(steps_per_epoch)}"
            )
        sources.append(("steps_per_epoch", (int(steps_per_epoch),) * epochs))
    if losses is not None:
        sources.append(("batch_losses", tuple(len(row) for row in losses)))
    if seconds is not None:
        sources.append(("step_seconds", tuple(len(row) for row in seconds)))
    if not sources:
        return None
    name, steps = sources[0]
    for other, counts in sources[1:]:
        for epoch, (a, b) in enumerate(zip(steps, counts, strict=True)):
            if a != b:
                raise PolicyError.plain(f"epoch {epoch} has {a} batches by {name} but {b} by {other}")
    for epoch, n in enumerate(steps):
        if n < 1:
            raise PolicyError.plain(f"epoch {epoch} has no training batches ({name})")
    return steps
