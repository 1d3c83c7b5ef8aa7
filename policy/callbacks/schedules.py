"""Learning-rate schedules as named, picklable objects for ``LearningRateScheduler``.

A lambda or closure would work inside one process but cannot be pickled (multiprocessing,
``copy.deepcopy`` of callbacks) and prints as ``<function <lambda>>``; a :class:`Schedule`
prints as the policy text it came from and survives a pickle round trip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, TypeAlias

import keras

from policy import ast
from policy.printer import number


@dataclass(frozen=True)
class WarmUp:
    """Linear warm-up: ``target * (t + 1) / epochs`` in the segment's epoch t."""

    target: float
    epochs: int

    def value(self, t: int, start: float) -> float:
        return self.target * (t + 1) / self.epochs

    def text(self, first: bool = False) -> str:
        return f"warm up{' lr' if first else ''} to {number(self.target)} over {self.epochs} epochs"


@dataclass(frozen=True)
class CosineTo:
    """Half cosine from the segment's start value down (or up) to ``target``."""

    target: float
    epochs: int

    def value(self, t: int, start: float) -> float:
        return self.target + (start - self.target) * (1 + math.cos(math.pi * t / self.epochs)) / 2

    def text(self, first: bool = False) -> str:
        return f"cosine{' lr' if first else ''} to {number(self.target)} over {self.epochs} epochs"


@dataclass(frozen=True)
class StepDecay:
    """``start * factor ** floor(t / every)``; open-ended, so always the last segment."""

    factor: float
    every: int

    def value(self, t: int, start: float) -> float:
        return start * self.factor ** (t // self.every)

    def text(self, first: bool = False) -> str:
        every = "epoch" if self.every == 1 else f"{self.every} epochs"
        return f"decay{' lr' if first else ''} by {number(self.factor)} every {every}"


Segment: TypeAlias = WarmUp | CosineTo | StepDecay


def segment_of(node: ast.Segment) -> Segment:
    """The schedule segment for a parsed one."""
    if isinstance(node, ast.Warmup):
        return WarmUp(node.target, node.epochs)
    if isinstance(node, ast.Cosine):
        return CosineTo(node.target, node.epochs)
    return StepDecay(node.factor, node.every)


class Schedule:
    """Segments chained with ``then``: ``schedule(epoch, lr)`` gives the epoch's learning rate.

    Segment i starts at the sum of the lengths before it, from ``lr0`` (the first) or the
    previous segment's target. After the last finite segment the learning rate stays at that
    segment's end value (for a cosine that is its target, which its last epoch only approaches).
    ``lr0`` is set by :meth:`start` (the callback calls it at train begin); a schedule never
    started takes the learning rate of its first call.
    """

    def __init__(self, segments: tuple[Segment, ...] | list[Segment]) -> None:
        if not segments:
            raise ValueError("Schedule needs at least one segment. Received: segments=()")
        self.segments: tuple[Segment, ...] = tuple(segments)
        self.lr0: float | None = None

    def start(self, lr0: float) -> None:
        """Remember the learning rate at train begin: the first segment starts from it."""
        self.lr0 = float(lr0)

    def __call__(self, epoch: int, lr: float) -> float:
        if self.lr0 is None:
            self.lr0 = float(lr)
        begin, start = 0, self.lr0
        for seg in self.segments:
            if isinstance(seg, StepDecay):
                return float(seg.value(epoch - begin, start))
            if epoch < begin + seg.epochs:
                return float(seg.value(epoch - begin, start))
            begin, start = begin + seg.epochs, seg.target
        # One epoch at the end value (a cosine's last epoch is still above it), then hand off:
        # returning the current lr leaves it to `multiply lr ... when`, if the policy has one.
        return float(start) if epoch == begin else float(lr)

    def __repr__(self) -> str:
        text = ", then ".join(seg.text(i == 0) for i, seg in enumerate(self.segments))
        return f"Schedule({text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schedule) and (self.segments, self.lr0) == (other.segments, other.lr0)

    def __hash__(self) -> int:
        return hash(self.segments)


class ScheduledLearningRate(keras.callbacks.LearningRateScheduler):  # type: ignore[misc]
    """Keras's LearningRateScheduler, plus telling the schedule ``lr0`` at train begin.

    Everything else (calling the schedule at each epoch begin with the 0-based epoch and the
    current learning rate, writing ``logs["learning_rate"]``) is Keras's own code.
    """

    schedule: Schedule

    def __init__(self, schedule: Schedule) -> None:
        super().__init__(schedule)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        lr = keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
        self.schedule.start(float(lr))

    def get_state(self) -> dict[str, Any]:
        # The learning rate the schedule started from; the current one is in the optimizer.
        return {"lr0": self.schedule.lr0}

    def set_state(self, state: dict[str, Any]) -> None:
        self.schedule.lr0 = state["lr0"]
