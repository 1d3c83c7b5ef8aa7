"""``stop when CONDITION``: the conditions Keras has no callback for.

Thresholds (``val_accuracy >= 0.9``), epoch-level ``is not finite`` / ``is nan``, relative
plateaus (``by 1%``) and any ``and``/``or`` combination. A single absolute plateau and
``loss is not finite`` alone never get here: they compile to EarlyStopping and TerminateOnNaN.

Every atom is updated at every evaluated epoch (no short-circuit), so ``stop when A or B``
behaves exactly like ``stop when A; stop when B``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, Generic, TypeVar

import keras

from policy import ast
from policy.callbacks.base import StopRecord, record_state
from policy.callbacks.numeric import holds, improves, improves_relative
from policy.meaning import plateau_direction
from policy.outcome import Stop
from policy.printer import condition as condition_text
from policy.printer import rule as rule_text


class PlateauState:
    """One plateau's ``wait``/``best``, updated once per evaluated epoch (see docs/semantics.md)."""

    def __init__(
        self,
        metric: str,
        direction: ast.Direction,
        patience: int = 0,
        delta: float = 0.0,
        relative: bool = False,
    ) -> None:
        self.metric = metric
        self.direction: ast.Direction = direction
        self.patience = patience
        self.delta = delta
        self.relative = relative
        self.reset()

    def reset(self) -> None:
        self.wait = 0
        self.best: float | None = None
        self.improved = False  # did the last update change ``best``?

    def get_state(self) -> dict[str, Any]:
        return {"wait": self.wait, "best": self.best, "improved": self.improved}

    def set_state(self, state: dict[str, Any]) -> None:
        self.wait, self.best, self.improved = state["wait"], state["best"], state["improved"]

    def update(self, logs: Mapping[str, Any]) -> bool:
        """Feed one epoch's logs; return whether the plateau holds this epoch."""
        return self.update_value(logs.get(self.metric))

    def update_value(self, value: Any) -> bool:
        """Feed the value this epoch's logs give it (None: not logged); return whether it holds."""
        self.improved = False
        if value is None:
            return False
        value = float(value)
        self.wait += 1
        if self.relative:
            better = improves_relative(value, self.best, self.delta, self.direction)
        else:
            better = improves(value, self.best, self.delta, self.direction)
        if better:
            self.best = value
            self.wait = 0
            self.improved = True
            return False
        return self.wait >= self.patience


class MovingAverage:
    """``METRIC averaged over N epochs``: the mean of the metric's last N logged values.

    Fed once per evaluated epoch. An epoch whose logs lack the metric adds nothing and reads as
    missing; so does every epoch before N values exist. The mean is the values added oldest
    first in float64 (Python floats, as Keras logs them), divided by N, the same arithmetic on
    every backend; comparisons then round it to float32 as any value.

    Args:
        metric: the log key.
        window: N, how many logged values to average.
    """

    def __init__(self, metric: str, window: int) -> None:
        self.metric = metric
        self.window = window
        self.values: list[float] = []

    def reset(self) -> None:
        self.values = []

    def read(self, logs: Mapping[str, Any]) -> float | None:
        value = logs.get(self.metric)
        if value is None:
            return None
        self.values = [*self.values, float(value)][-self.window :]
        if len(self.values) < self.window:
            return None
        total = self.values[0]
        for v in self.values[1:]:
            total += v
        return total / self.window


class _Logged:
    """A metric as logged: the value itself."""

    def __init__(self, metric: str) -> None:
        self.metric = metric

    def read(self, logs: Mapping[str, Any]) -> float | None:
        value = logs.get(self.metric)
        return None if value is None else float(value)


def _source(metric: ast.Metric, windows: list[MovingAverage]) -> _Logged | MovingAverage:
    if metric.window == 1:
        return _Logged(metric.name)
    average = MovingAverage(metric.name, metric.window)
    windows.append(average)
    return average


_Leaf = TypeVar("_Leaf", ast.Threshold, ast.NotFinite)


class _Atom(ABC):
    """A node of the condition tree: ``evaluate`` updates state and says whether it holds."""

    def reset(self) -> None:  # noqa: B027 - stateless atoms (thresholds) have nothing to forget
        """Forget everything seen; called at train begin."""

    @abstractmethod
    def evaluate(self, logs: Mapping[str, Any]) -> bool:
        """Feed one evaluated epoch's logs; return whether this part of the condition holds."""


class _PlateauAtom(_Atom):
    def __init__(self, node: ast.Plateau, direction: ast.Direction, windows: list[MovingAverage]) -> None:
        self.state = PlateauState(node.metric.name, direction, node.patience, node.delta, node.relative)
        self.source = _source(node.metric, windows)

    def reset(self) -> None:
        self.state.reset()

    def evaluate(self, logs: Mapping[str, Any]) -> bool:
        return self.state.update_value(self.source.read(logs))


class _ValueAtom(_Atom, Generic[_Leaf]):
    """An atom that looks at its metric's value of the epoch (logged or averaged), no state of its own."""

    def __init__(self, node: _Leaf, windows: list[MovingAverage]) -> None:
        self.node: _Leaf = node
        self.source = _source(node.metric, windows)

    def evaluate(self, logs: Mapping[str, Any]) -> bool:
        value = self.source.read(logs)
        return value is not None and self.holds_for(value)

    @abstractmethod
    def holds_for(self, value: float) -> bool:
        """Whether the atom holds for this epoch's value (a missing value never does)."""


class _ThresholdAtom(_ValueAtom[ast.Threshold]):
    def holds_for(self, value: float) -> bool:
        return holds(value, self.node.op, self.node.value)


class _NotFiniteAtom(_ValueAtom[ast.NotFinite]):
    def holds_for(self, value: float) -> bool:
        return math.isnan(value) if self.node.nan_only else not math.isfinite(value)


class _GroupAtom(_Atom):
    def __init__(self, parts: list[_Atom], every: bool) -> None:
        self.parts = parts
        self.every = every

    def reset(self) -> None:
        for part in self.parts:
            part.reset()

    def evaluate(self, logs: Mapping[str, Any]) -> bool:
        # A list, not a generator: every part must update its state, whatever the others say.
        results = [part.evaluate(logs) for part in self.parts]
        return all(results) if self.every else any(results)


def _build(
    node: ast.Condition,
    directions: Sequence[ast.Direction],
    plateaus: list[PlateauState],
    windows: list[MovingAverage],
) -> _Atom:
    """The evaluator of a condition whose plateaus watch ``directions`` (in source order); their
    states are appended to ``plateaus`` in the same order."""
    ahead = iter(directions)

    def atom(leaf: ast.Atom) -> _Atom:
        if isinstance(leaf, ast.Plateau):
            built = _PlateauAtom(leaf, next(ahead), windows)
            plateaus.append(built.state)
            return built
        if isinstance(leaf, ast.Threshold):
            return _ThresholdAtom(leaf, windows)
        return _NotFiniteAtom(leaf, windows)

    return ast.fold(node, atom, lambda group, parts: _GroupAtom(parts, every=isinstance(group, ast.AllOf)))


class ConditionStopping(keras.callbacks.Callback):  # type: ignore[misc]
    """Stop training at the end of the first epoch where a condition holds (``stop when ...``).

    The condition is any mix of thresholds (``val_accuracy >= 0.9``), plateaus (absolute or
    relative), ``is not finite`` / ``is nan`` checks and ``and``/``or`` groups, on metrics as
    logged or averaged over their last N logged values (:class:`MovingAverage`); every part is
    updated at every epoch looked at, so ``A or B`` decides as two separate rules would. A
    metric missing from an epoch's logs makes the parts that read it not hold.

    Args:
        condition: the parsed condition (a node of :mod:`policy.ast`).
        rule: the rule's canonical text, named in the stop record (see
            ``policy.why_stopped``); written from ``condition`` when empty.
        restore: ``(metric, direction)``: at train end, put back the weights of the epoch
            where ``metric`` was best in that direction. None (the default) keeps the last
            weights.
        ignore_first: the number of epochs at the start that are not looked at (no state
            changes at all), as EarlyStopping's ``start_from_epoch``. Defaults to 0.
        directions: one ``"min"`` or ``"max"`` per plateau of the condition, in source order:
            the way its metric should go (EarlyStopping's ``mode``). ``compile_policy`` passes
            what validation settled; None (the default) settles it the same way, from the
            plateau's ``not decreasing`` / ``not increasing`` or else the metric's name
            (:func:`policy.meaning.plateau_direction`).
    """

    def __init__(
        self,
        condition: ast.Condition,
        rule: str = "",
        restore: tuple[str, ast.Direction] | None = None,
        ignore_first: int = 0,
        directions: Sequence[ast.Direction] | None = None,
    ) -> None:
        super().__init__()
        self.condition = condition
        self.rule = rule or rule_text(ast.StopWhen(condition=condition))
        self.ignore_first = ignore_first
        watched = ast.plateaus_of(condition)
        if directions is None:
            directions = [plateau_direction(p) for p in watched]
        if len(directions) != len(watched) or not set(directions) <= {"min", "max"}:
            raise ValueError(f"directions: one 'min' or 'max' per plateau ({len(watched)}), got {directions!r}")
        self.directions: tuple[ast.Direction, ...] = tuple(directions)
        plateaus: list[PlateauState] = []
        self._windows: list[MovingAverage] = []
        self._root = _build(condition, self.directions, plateaus, self._windows)
        self._plateaus = plateaus
        self._restore_state: PlateauState | None = None
        self._own_tracker = False
        if restore is not None:
            name, direction = restore
            # "best" is the plateau's own best when the condition watches that metric (its
            # min_delta counts); otherwise a tracker of our own with delta 0.
            found = next((p for p in plateaus if p.metric == name), None)
            self._own_tracker = found is None
            self._restore_state = found or PlateauState(name, direction)
        self.stop_record: StopRecord | None = None
        self.best_weights: list[Any] | None = None
        self.best_epoch: int | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._root.reset()
        for window in self._windows:
            window.reset()
        if self._own_tracker and self._restore_state is not None:
            self._restore_state.reset()
        self.stop_record = None
        self.best_weights = None
        self.best_epoch = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if epoch < self.ignore_first:
            return
        logs = logs or {}
        held = self._root.evaluate(logs)
        if self._restore_state is not None:
            if self._own_tracker:
                self._restore_state.update(logs)
            if self._restore_state.improved:
                self.best_weights = self.model.get_weights()
                self.best_epoch = epoch
        if held:
            self.model.stop_training = True
            if self.stop_record is None:
                self.stop_record = StopRecord(Stop(self.rule, epoch, self._reason(logs)))

    def get_state(self) -> dict[str, Any]:
        own = self._restore_state if self._own_tracker and self._restore_state is not None else None
        return {
            "plateaus": [p.get_state() for p in self._plateaus],
            "windows": [list(w.values) for w in self._windows],
            "restore_tracker": None if own is None else own.get_state(),
            "best_weights": self.best_weights,
            "best_epoch": self.best_epoch,
            "stop": record_state(self.stop_record),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        for plateau, saved in zip(self._plateaus, state["plateaus"], strict=True):
            plateau.set_state(saved)
        for window, values in zip(self._windows, state["windows"], strict=True):
            window.values = list(values)
        if state["restore_tracker"] is not None and self._restore_state is not None:
            self._restore_state.set_state(state["restore_tracker"])
        self.best_weights = state["best_weights"]
        self.best_epoch = state["best_epoch"]
        self.stop_record = StopRecord.from_state(state["stop"])

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)

    def _reason(self, logs: Mapping[str, Any]) -> str:
        names = dict.fromkeys(m.name for m in ast.metrics_of(self.condition))
        values = ", ".join(f"{n} = {logs[n]:.6g}" for n in names if n in logs)
        return f"{condition_text(self.condition)} held" + (f" ({values})" if values else "")
