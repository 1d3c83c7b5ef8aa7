"""Turn what a caller hands :func:`policy.reference.simulate` into one checked :class:`RunInput`.

Everything a user can get wrong about the *data* (as opposed to the policy) is caught here,
before any rule runs, with a :class:`~policy.errors.PolicyError` that says which epoch and which
metric: ragged series, non-numeric values, batch data that disagrees with ``steps_per_epoch``,
negative step durations. The forms accepted are described in :mod:`policy.reference`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from policy.errors import PolicyError, shown
from policy.logs import EpochLogs, FitArgs, epoch_logs, number, series

# The largest whole-number argument a simulation takes (steps_per_epoch, initial_epoch,
# validation_freq, steps_per_execution), the policy language's own limit on counts: beyond it a
# typo is likelier than a real run, per-batch data would not fit in memory, and an epoch number
# would overflow the float arithmetic of schedules.
MAX_WHOLE = 10**9

# The whole-number settings of a run checked alike, each with its least value.
_WHOLE_ARGS = (("validation_freq", 1), ("steps_per_execution", 1), ("initial_epoch", 0))

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
    steps_per_execution: int = 1
    initial_epoch: int = 0
    """These four are the :class:`~policy.logs.FitArgs` of the same names, checked."""

    @property
    def epochs(self) -> int:
        return len(self.logs)


def _batch_table(data: Any, what: str, epochs: int, *, optional_values: bool) -> tuple[Sequence[Any], ...]:
    table = series(data, what)
    if len(table) != epochs:
        raise PolicyError.plain(
            f"{what} covers {len(table)} epochs but the history has {epochs}",
            "give one list of per-batch values for every epoch of the history",
        )
    out: list[Sequence[Any]] = []
    for epoch, row in enumerate(table):
        values = series(row, f"{what} of epoch {epoch}")
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


def run_input(history: Any, fit: FitArgs) -> RunInput:
    """Check and normalise every input of a simulation (the policy is checked elsewhere)."""
    whole = {name: _whole(getattr(fit, name), name, least) for name, least in _WHOLE_ARGS}
    freq, first = whole["validation_freq"], whole["initial_epoch"]
    logs = epoch_logs(history, freq, first)
    epochs = len(logs)

    lr: float | None = None
    if fit.initial_lr is not None:
        lr = number(fit.initial_lr, "initial_lr")
        if lr is None or not math.isfinite(lr):
            raise PolicyError.plain(f"initial_lr must be a finite number, got {shown(fit.initial_lr)}")

    losses = None
    if fit.batch_losses is not None:
        losses = _batch_table(fit.batch_losses, "batch_losses", epochs, optional_values=True)

    seconds: tuple[Sequence[float], ...] | None = None
    constant_seconds: float | None = None
    if fit.step_seconds is not None:
        if isinstance(fit.step_seconds, numbers.Real) and not isinstance(fit.step_seconds, bool):
            constant_seconds = number(fit.step_seconds, "step_seconds")
            if constant_seconds is None or not (math.isfinite(constant_seconds) and constant_seconds >= 0):
                raise PolicyError.plain(f"step_seconds must be a finite number >= 0, got {shown(fit.step_seconds)}")
        else:
            seconds = _batch_table(fit.step_seconds, "step_seconds", epochs, optional_values=False)
            for epoch, row in enumerate(seconds):
                if not all(math.isfinite(s) and s >= 0 for s in row):
                    raise PolicyError.plain(f"step_seconds of epoch {epoch} holds a negative or non-finite duration")

    steps = _steps(epochs, fit.steps_per_epoch, losses, seconds)
    if constant_seconds is not None:
        if steps is None:
            raise PolicyError.plain(
                "a constant step_seconds needs the number of steps per epoch",
                "pass steps_per_epoch or batch_losses",
            )
        seconds = tuple([constant_seconds] * n for n in steps)
    return RunInput(logs=logs, steps=steps, batch_losses=losses, step_seconds=seconds, initial_lr=lr, **whole)


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
