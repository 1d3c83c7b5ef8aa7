"""Per-epoch logs: the one history type, and the one builder that makes it from what people have.

A history is what Keras hands ``on_epoch_end``, epoch after epoch: :data:`History`, a list of
:data:`EpochLogs` (plain floats, a metric not logged in an epoch is an absent key). Histories
arrive as ``History.history`` mappings (``metric -> per-epoch values``), as lists of per-epoch
dicts (CSVLogger rows), or as a ``keras.callbacks.History``; :func:`epoch_logs` turns any of
them into per-epoch logs, checking every value. The reference's inputs
(:mod:`policy.reference.inputs`), recorded history files (:mod:`policy.history`) and the test
harness (:mod:`policy.testing.harness`) all build their logs with it. No framework import here.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from policy.errors import PolicyError, shown

EpochLogs: TypeAlias = dict[str, float]
"""One epoch's logs as Keras hands them to ``on_epoch_end``: plain floats, missing keys absent."""

History: TypeAlias = list[EpochLogs]
"""Per-epoch logs, one entry per epoch run."""

HistoryLike: TypeAlias = Mapping[str, Iterable[Any]] | Iterable[Mapping[str, Any]]
"""What :func:`epoch_logs` reads: ``metric -> per-epoch values``, or one mapping per epoch."""


@dataclass(frozen=True, kw_only=True)
class FitArgs:
    """The ``fit``/``compile`` settings of one run besides its history, as a caller gives them.

    :func:`policy.reference.simulate` takes them as keywords and the reference checks them
    (:mod:`policy.reference.inputs`); a differential test case carries them to both the
    reference and the real ``fit``. Unchecked here: this is only the one list of them.
    """

    initial_lr: float | None = None
    """The optimizer's learning rate when training starts (for rules that read or change it)."""
    steps_per_epoch: int | None = None
    """Training batches per epoch, if known."""
    batch_losses: Sequence[Sequence[float | None]] | None = None
    """Per epoch, the running training loss after each batch (None: not logged at that batch)."""
    step_seconds: float | Sequence[Sequence[float]] | None = None
    """How long each training batch takes: one duration for all, or one per batch of each epoch."""
    validation_freq: int = 1
    """``fit(validation_freq=k)``: validation after epochs k, 2k, ... (1-based)."""
    steps_per_execution: int = 1
    """``compile(steps_per_execution=k)``: batches trained per callback call."""
    initial_epoch: int = 0
    """``fit(initial_epoch=e0)``: the first entry of the history is epoch e0."""


# Strings a CSVLogger file (or a hand-written table) uses for "not logged this epoch".
_MISSING_WORDS = frozenset({"", "na", "n/a", "none", "null"})
# CSVLogger's index column. Keras never puts "epoch" in the logs (ModelCheckpoint could not
# format its paths if it did), so it is dropped rather than treated as a metric.
_INDEX_COLUMN = "epoch"


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


def series(values: Any, what: str) -> list[Any]:
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
            columns[name] = series(values, f"the history of {name!r}")
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
        for i, row in enumerate(series(history, "the history")):
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
