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

# The largest whole-number argument a simulation takes (steps_per_epoch, initial_epoch,
# validation_freq, steps_per_execution), the policy language's own limit on counts: beyond it a
# typo is likelier than a real run, per-batch data would not fit in memory, and an epoch number
# would overflow the float arithmetic of schedules.
MAX_WHOLE = 10**9

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
    validation_freq: int = 1
    """``fit(validation_freq=k)``: validation after epochs k, 2k, ... (1-based)."""
    steps_per_execution: int = 1
    """``compile(steps_per_execution=k)``: batches trained per callback call."""
    initial_epoch: int = 0
    """``fit(initial_epoch=e0)``: the first entry of the history is epoch e0."""

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


def validates(epoch: int, validation_freq: int) -> bool:
    """Whether ``fit(validation_freq=k)`` validates after (absolute, 0-based) ``epoch``: when
    ``epoch + 1`` is a multiple of k (Keras counts epochs from 1 here)."""
    return (epoch + 1) % validation_freq == 0


def _is_validation(name: str) -> bool:
    return name.startswith("val_")


def epoch_logs(history: Any, validation_freq: int = 1, initial_epoch: int = 0) -> tuple[EpochLogs, ...]:
    """Per-epoch logs from a mapping ``metric -> values``, a list of per-epoch dicts, or a
    ``keras.callbacks.History`` (anything with a ``.history`` mapping).

    In a mapping, a ``val_*`` series may hold one value per validation epoch only, as
    ``History.history`` records a ``fit(validation_freq=k)`` run; its values then belong to
    the validation epochs in order. Either way no epoch that did not validate may hold a
    ``val_*`` value (Keras cannot have logged it).
    """
    inner = getattr(history, "history", None)
    if isinstance(inner, Mapping):
        history = inner
    if isinstance(history, Mapping):
        columns: dict[str, list[Any]] = {}
        for name, values in history.items():
            if not isinstance(name, str):
                raise PolicyError.plain(f"metric names must be text, got {shown(name)}")
            columns[name] = _series(values, f"the history of {name!r}")
        count = max((len(v) for v in columns.values()), default=0)
        if validation_freq > 1 and columns and all(_is_validation(n) for n in columns):
            count = max((len(v) for n, v in columns.items() if not _is_validation(n)), default=count)
        checked = [e for e in range(initial_epoch, initial_epoch + count) if validates(e, validation_freq)]
        for name, values in columns.items():
            if len(values) == count:
                continue
            if _is_validation(name) and len(values) == len(checked):
                spread: list[Any] = [None] * count
                for e, value in zip(checked, values, strict=True):
                    spread[e - initial_epoch] = value
                columns[name] = spread
                continue
            described = ", ".join(f"{n}: {len(v)}" for n, v in sorted(columns.items()))
            raise PolicyError.plain(
                f"the metric series have different lengths ({described})",
                "give every metric one value per epoch, None where it was not logged; a val_ series may "
                f"instead hold one value per validation epoch ({len(checked)} with validation_freq={validation_freq})",
            )
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
            value = raw if type(raw) is float else number(raw, f"{name} at epoch {epoch + initial_epoch}")
            if value is not None:
                logs[name] = value
        if not validates(epoch + initial_epoch, validation_freq):
            extra = sorted(n for n in logs if _is_validation(n))
            if extra:
                raise PolicyError.plain(
                    f"epoch {epoch + initial_epoch} holds {extra[0]}, but with validation_freq={validation_freq} "
                    "fit does not validate after that epoch",
                    "leave val_ metrics out of the epochs that did not validate, or fix validation_freq",
                )
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
    validation_freq: Any = 1,
    steps_per_execution: Any = 1,
    initial_epoch: Any = 0,
) -> RunInput:
    """Check and normalise every input of a simulation (the policy is checked elsewhere)."""
    freq = _whole(validation_freq, "validation_freq", 1)
    per_call = _whole(steps_per_execution, "steps_per_execution", 1)
    first = _whole(initial_epoch, "initial_epoch", 0)
    logs = epoch_logs(history, freq, first)
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
    return RunInput(
        logs=logs,
        steps=steps,
        batch_losses=losses,
        step_seconds=seconds,
        initial_lr=lr,
        validation_freq=freq,
        steps_per_execution=per_call,
        initial_epoch=first,
    )


def _whole(value: Any, name: str, least: int) -> int:
    """A whole-number ``fit``/``compile`` argument, at least ``least``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise PolicyError.plain(f"{name} must be a whole number, got {shown(value)}")
    if not least <= int(value) <= MAX_WHOLE:
        raise PolicyError.plain(f"{name} must be from {least} to {MAX_WHOLE}, got {shown(value)}")
    return int(value)


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
        if not 1 <= int(steps_per_epoch) <= MAX_WHOLE:
            raise PolicyError.plain(
                f"steps_per_epoch must be from 1 to {MAX_WHOLE}, got {shown(steps_per_epoch)}"
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
