"""Learning-rate schedules as named, picklable objects for ``LearningRateScheduler``.

A lambda or closure would work inside one process but cannot be pickled (multiprocessing,
``copy.deepcopy`` of callbacks) and prints as ``<function <lambda>>``; a :class:`LearningRateChain`
prints as the policy text it came from and survives a pickle round trip.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Any, ClassVar, TypeAlias

import keras

from policy import ast
from policy.callbacks.base import POLICY_RULE
from policy.errors import PolicyError
from policy.printer import rule as rule_text


@dataclass(frozen=True)
class _Toward:
    """A segment heading for ``target`` over ``epochs`` epochs; whatever comes next starts from
    ``target``. Subclasses say the curve (``value``) and which policy phrase they are (``_NODE``)."""

    _NODE: ClassVar[type[ast.Warmup] | type[ast.Linear]]

    target: float
    epochs: int

    def end(self, start: float) -> float:
        return self.target

    def node(self) -> ast.Warmup | ast.Linear:
        """The segment as the policy says it."""
        return self._NODE(target=self.target, over=ast.Span(float(self.epochs)))


@dataclass(frozen=True)
class WarmupSegment(_Toward):
    """A linear warm-up: the rate is ``target * (t + 1) / epochs`` in the segment's epoch t.

    Args:
        target: the learning rate at the segment's last epoch.
        epochs: how many epochs the segment lasts.
    """

    _NODE = ast.Warmup

    def value(self, t: int, start: float, begin: int = 0) -> float:
        return self.target * (t + 1) / self.epochs


def restart_periods(length: int, restart: int | None, period_factor: float) -> list[tuple[float, float]]:
    """A cosine segment's half cosines as (first position, length), in its own unit (epochs or
    steps): one of ``length`` without restarts; with them the first lasts ``restart`` and each
    next one ``period_factor`` times the last (float64, in that order: SGDR's t_mul), until the
    segment's length cuts the last one. Shared by the epoch chain and the step schedule."""
    periods: list[tuple[float, float]] = []
    begins, span = 0.0, float(restart or length)
    while begins < length:
        periods.append((begins, span))
        begins, span = begins + span, span * (period_factor if restart else 1.0)
    return periods


def cosine_value(target: float, start: float, t: int, periods: list[tuple[float, float]], peak_factor: float) -> float:
    """The cosine segment's rate at position ``t`` (:func:`restart_periods`' unit): half a cosine
    from ``start`` down to ``target`` over the period ``t`` is in, the height above ``target``
    times ``peak_factor`` at each restart (SGDR's m_mul)."""
    index = bisect.bisect_right(periods, (t, math.inf)) - 1
    begins, span = periods[index]
    height = peak_factor**index * (start - target)
    return target + height * (1 + math.cos(math.pi * (t - begins) / span)) / 2


@dataclass(frozen=True)
class CosineSegment:
    """Half a cosine from the segment's start value down (or up) to ``target``.

    Args:
        target: the learning rate the curve heads for; its last epoch is still above (or
            below) it, and whatever comes next starts from it.
        epochs: how many epochs the segment lasts.
        restart: with a period, the half cosine starts again from the start value every
            ``restart`` epochs (cosine with warm restarts); None for one half cosine.
        period_factor: each restart period is this many times as long as the one before (SGDR's
            t_mul, at least 1); the periods run until the segment's end cuts the last one.
        peak_factor: each restart's height above ``target`` is this many times the one before
            (SGDR's m_mul).
    """

    target: float
    epochs: int
    restart: int | None = None
    period_factor: float = 1.0
    peak_factor: float = 1.0

    def value(self, t: int, start: float, begin: int = 0) -> float:
        periods = restart_periods(self.epochs, self.restart, self.period_factor)
        return cosine_value(self.target, start, t, periods, self.peak_factor)

    def end(self, start: float) -> float:
        return self.target

    def node(self) -> ast.Cosine:
        """The segment as the policy says it."""
        restart = ast.Span(float(self.restart)) if self.restart else None
        return ast.Cosine(target=self.target, over=ast.Span(float(self.epochs)), restart=restart,
                          period_factor=self.period_factor, peak_factor=self.peak_factor)


@dataclass(frozen=True)
class LinearSegment(_Toward):
    """A straight line: ``start + (target - start) * t / epochs`` in the segment's epoch t.

    Args:
        target: the learning rate the line heads for (reached the epoch after the segment).
        epochs: how many epochs the segment lasts.
    """

    _NODE = ast.Linear

    def value(self, t: int, start: float, begin: int = 0) -> float:
        return start + (self.target - start) * t / self.epochs


@dataclass(frozen=True)
class HoldSegment:
    """The segment's start value, unchanged.

    Args:
        epochs: how many epochs the segment lasts.
    """

    epochs: int

    def value(self, t: int, start: float, begin: int = 0) -> float:
        return start

    def end(self, start: float) -> float:
        return start

    def node(self) -> ast.Hold:
        """The segment as the policy says it."""
        return ast.Hold(over=ast.Span(float(self.epochs)))


@dataclass(frozen=True)
class DecaySegment:
    """Step decay: ``start * factor ** floor(t / every)`` in the segment's epoch t, or with
    ``smooth`` ``start * factor ** (t / every)`` (a little at every epoch).

    It never ends, so it is always the last segment.

    Args:
        factor: what the rate is multiplied by at each step (every ``every`` epochs when smooth).
        every: the number of epochs between steps.
        smooth: decay at every epoch by ``factor ** (1 / every)`` instead of by whole periods.
    """

    factor: float
    every: int
    smooth: bool = False

    def value(self, t: int, start: float, begin: int = 0) -> float:
        if self.smooth:
            return start * float(self.factor ** (t / self.every))
        return start * self.factor ** (t // self.every)

    def node(self) -> ast.Decay:
        """The segment as the policy says it."""
        return ast.Decay(factor=self.factor, every=self.every, smooth=self.smooth)


@dataclass(frozen=True)
class MilestoneSegment:
    """Milestones: ``start * factor ** (milestones m with m <= t)`` in the segment's epoch t.

    It never ends, so it is always the last segment.

    Args:
        factor: what the rate is multiplied by at each milestone.
        at: the milestones, increasing, in epochs from the segment's start.
    """

    factor: float
    at: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", tuple(self.at))  # written as a list in compile --python

    def value(self, t: int, start: float, begin: int = 0) -> float:
        return start * self.factor ** sum(1 for m in self.at if m <= t)

    def node(self) -> ast.Milestones:
        """The segment as the policy says it."""
        return ast.Milestones(factor=self.factor, at=self.at)


@dataclass(frozen=True)
class InverseSqrtSegment:
    """The transformer decay: ``start * sqrt(begin / (begin + t))`` after the segments before it,
    which ended at epoch ``begin`` (never first). It never ends, so it is always the last segment.
    """

    def value(self, t: int, start: float, begin: int = 0) -> float:
        return start * math.sqrt(begin / (begin + t))

    def node(self) -> ast.InverseSqrt:
        """The segment as the policy says it."""
        return ast.InverseSqrt()


FiniteSegment: TypeAlias = WarmupSegment | CosineSegment | LinearSegment | HoldSegment
Segment: TypeAlias = FiniteSegment | DecaySegment | MilestoneSegment | InverseSqrtSegment


class LearningRateChain:
    """Segments chained with ``then``: ``schedule(epoch, lr)`` gives the epoch's learning rate.

    Segment i starts at the sum of the lengths before it, from ``lr0`` (the first) or the
    previous segment's target. After the last finite segment the learning rate stays at that
    segment's end value (for a cosine that is its target, which its last epoch only approaches).
    ``lr0`` is set by :meth:`start` (the callback passes the optimizer's rate as built, when
    ``fit`` hands it the model); a schedule never started takes the learning rate of its first call.

    Args:
        segments: the segments in order, at least one. A :class:`DecaySegment`,
            :class:`MilestoneSegment` or :class:`InverseSqrtSegment` never ends, so nothing
            after one is ever reached.
    """

    def __init__(self, segments: tuple[Segment, ...] | list[Segment]) -> None:
        if not segments:
            raise ValueError("LearningRateChain needs at least one segment. Received: segments=()")
        self.segments: tuple[Segment, ...] = tuple(segments)
        self.lr0: float | None = None

    def start(self, lr0: float) -> None:
        """Remember the starting learning rate: the first segment starts from it."""
        self.lr0 = float(lr0)

    def __call__(self, epoch: int, lr: float) -> float:
        if self.lr0 is None:
            self.lr0 = float(lr)
        begin, start = 0, self.lr0
        for seg in self.segments:
            if isinstance(seg, DecaySegment | MilestoneSegment | InverseSqrtSegment):
                return float(seg.value(epoch - begin, start, begin))
            if epoch < begin + seg.epochs:
                return float(seg.value(epoch - begin, start, begin))
            begin, start = begin + seg.epochs, seg.end(start)
        # One epoch at the end value (a cosine's last epoch is still above it), then hand off:
        # returning the current lr leaves it to `multiply lr ... when`, if the policy has one.
        return float(start) if epoch == begin else float(lr)

    def node(self) -> ast.Schedule:
        """The schedule as the policy says it."""
        return ast.Schedule(segments=tuple(seg.node() for seg in self.segments))

    def text(self) -> str:
        """The schedule as policy text (written by the printer, as every policy text is)."""
        return rule_text(self.node())

    def __repr__(self) -> str:
        return f"LearningRateChain({self.text()!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LearningRateChain) and (self.segments, self.lr0) == (other.segments, other.lr0)

    def __hash__(self) -> int:
        return hash(self.segments)


# Kept on the optimizer object: the rate a schedule of ours first saw it with, and the last rate
# a schedule of ours set on it (as torch schedulers keep ``initial_lr`` in the param group).
_STARTING_LR = "_policy_starting_lr"


def starting_lr(optimizer: Any) -> float:
    """The learning rate a schedule starts from on ``optimizer``: its rate as built.

    The first time a schedule of ours sees an optimizer (when ``fit`` hands it the model, before
    any callback's ``on_train_begin``, so before BackupAndRestore restores a backed-up rate) that
    rate is kept on the optimizer. A later ``fit`` of the same optimizer (resumed after an
    interruption, continued with ``initial_epoch``) starts from the kept rate, so the schedule,
    a function of the absolute epoch, continues where it was. Only when someone has set a
    different rate since our schedule last set one is the current rate taken as the new start.
    """
    current = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    kept = getattr(optimizer, _STARTING_LR, None)
    if kept is None or current != kept[1]:
        kept = (current, current)
        setattr(optimizer, _STARTING_LR, kept)
    return float(kept[0])


def note_set_lr(optimizer: Any) -> None:
    """Remember the rate a schedule of ours just set (so the next ``fit`` knows nobody else did)."""
    kept = getattr(optimizer, _STARTING_LR, None)
    if kept is not None:
        setattr(optimizer, _STARTING_LR, (kept[0], float(keras.ops.convert_to_numpy(optimizer.learning_rate))))


def forget_starting_lr(optimizer: Any) -> None:
    """Forget the kept starting rate, as for a freshly built optimizer (the test harness reuses one)."""
    if hasattr(optimizer, _STARTING_LR):
        delattr(optimizer, _STARTING_LR)


def refuse_schedule_object(optimizer: Any, rule: str) -> None:
    """An lr rule cannot set the rate of an optimizer whose rate is a ``LearningRateSchedule``."""
    if _has_schedule_object(optimizer):
        raise PolicyError.plain(
            f"the rule {rule!r} sets the learning rate, but the optimizer's learning rate is a "
            f"{type(optimizer._learning_rate).__name__} (a keras.optimizers.schedules.LearningRateSchedule), "
            "which no callback can change",
            "build the optimizer with a number (e.g. learning_rate=0.001) and let the policy schedule it, "
            "or drop the lr rule and keep the optimizer's own schedule",
        )


class ScheduledLearningRate(keras.callbacks.LearningRateScheduler):  # type: ignore[misc]
    """Keras's LearningRateScheduler, plus telling the schedule ``lr0`` (the rate as built).

    Everything else (calling the schedule at each epoch begin with the absolute 0-based epoch
    and the current learning rate, writing ``logs["learning_rate"]``) is Keras's own code.
    An optimizer whose rate is a ``LearningRateSchedule`` is refused at train begin.

    Args:
        schedule: the learning rate of each epoch.
    """

    schedule: LearningRateChain

    def __init__(self, schedule: LearningRateChain) -> None:
        super().__init__(schedule)
        self.rule = schedule.text()

    def set_model(self, model: Any) -> None:
        super().set_model(model)
        # fit hands the model to every callback before any on_train_begin: the rate now is the
        # rate as built (or as the last fit of this optimizer left it), never a restored one.
        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None and not _has_schedule_object(optimizer):
            self.schedule.start(starting_lr(optimizer))

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        refuse_schedule_object(self.model.optimizer, getattr(self, POLICY_RULE, self.rule))
        if self.schedule.lr0 is None:
            self.schedule.start(starting_lr(self.model.optimizer))

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        super().on_epoch_begin(epoch, logs)
        note_set_lr(self.model.optimizer)

    def get_state(self) -> dict[str, Any]:
        # The learning rate the schedule started from; the current one is in the optimizer.
        return {"lr0": self.schedule.lr0}

    def set_state(self, state: dict[str, Any]) -> None:
        self.schedule.lr0 = state["lr0"]


def _has_schedule_object(optimizer: Any) -> bool:
    return isinstance(getattr(optimizer, "_learning_rate", None), keras.optimizers.schedules.LearningRateSchedule)
