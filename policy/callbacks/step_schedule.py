"""Learning-rate schedules counted in optimizer steps, inside the compiled train step.

A schedule with any length in steps (or in % of training) becomes a
:class:`PolicyLearningRateSchedule`, a ``keras.optimizers.schedules.LearningRateSchedule`` of
``optimizer.iterations``, as Keras's own ``CosineDecay`` is: the optimizer evaluates it inside
the train step, so the rate is exact for every step whatever ``steps_per_execution`` is, and no
batch hook runs (Keras keeps async batch dispatch). A batch callback assigning the rate reaches
only the first step of each execution (``benchmarks/lr_reach.py``).

Exactness across backends: the rates of the steps a run can reach are computed once in Python
(float64, then rounded to float32, the formulas of docs/semantics.md) and looked up by step, so
TensorFlow, JAX and torch use the same float32 rate; the backends' own ``cos``/``pow`` never
enter. Only an open-ended tail (decay, milestones, inverse sqrt) beyond the table is computed by
the backend in float32.

:class:`StepLearningRate` installs the schedule on the model's optimizer at train begin, when
``fit`` knows its steps per epoch and epochs (the units of ``N epochs`` and ``P% of training``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import keras
import numpy as np

from policy import ast
from policy.callbacks.base import POLICY_RULE
from policy.callbacks.schedules import cosine_value, refuse_schedule_object, restart_periods
from policy.errors import PolicyError

# Steps an open-ended tail is tabled for beyond the last finite segment when the run's total is
# unknown (a schedule built by ``lr_schedule`` without ``total_steps``); further steps compute
# the tail with the backend's float32 ops.
TAIL_TABLE = 65536


def _schedule_rule(text: str) -> ast.Schedule:
    from policy import parse_policy

    policy = parse_policy(text)
    if len(policy.rules) != 1 or not isinstance(policy.rules[0], ast.Schedule):
        raise PolicyError.plain(
            f"a learning-rate schedule is one schedule rule; got {text!r}",
            'e.g. "warm up lr to 1e-3 over 500 steps, then cosine to 1e-5 over 20000 steps"',
        )
    return policy.rules[0]


class _Piece:
    """One segment with every length in steps: ``begin`` (first step), ``length`` (None: open-ended)."""

    def __init__(self, seg: ast.Segment, begin: int, length: int | None, period: int | None, start: float) -> None:
        self.seg, self.begin, self.length, self.period, self.start = seg, begin, length, period, start
        # A cosine's half cosines in steps, worked out once for the whole table.
        self.cycles: list[tuple[float, float]] = []
        if isinstance(seg, ast.Cosine) and length is not None:
            self.cycles = restart_periods(length, period, seg.period_factor)

    def value(self, step: int) -> float:
        seg, t, start = self.seg, step - self.begin, self.start
        if isinstance(seg, ast.Warmup):
            assert self.length is not None
            return seg.target * (t + 1) / self.length
        if isinstance(seg, ast.Cosine):
            return cosine_value(seg.target, start, t, self.cycles, seg.peak_factor)
        if isinstance(seg, ast.Linear):
            assert self.length is not None
            return start + (seg.target - start) * t / self.length
        if isinstance(seg, ast.Hold):
            return start
        if isinstance(seg, ast.Decay):
            return start * seg.factor ** (t / seg.every if seg.smooth else math.floor(t / seg.every))
        if isinstance(seg, ast.Milestones):
            return start * seg.factor ** sum(1 for m in seg.at if m <= t)
        return start * math.sqrt(self.begin / (self.begin + t))  # inverse sqrt

    def end_value(self) -> float:
        return self.start if isinstance(self.seg, ast.Hold) else float(getattr(self.seg, "target", self.start))


@keras.saving.register_keras_serializable(package="keras_policy")
class PolicyLearningRateSchedule(keras.optimizers.schedules.LearningRateSchedule):  # type: ignore[misc]
    """A learning-rate schedule written as policy text, evaluated per optimizer step.

    Args:
        text: one schedule rule, e.g. ``"warm up lr to 1e-3 over 500 steps, then cosine to 1e-5
            over 20000 steps"``.
        initial_lr: the rate the first segment starts from (needed unless it is a warm-up).
        steps_per_epoch: what one epoch is in steps (needed for lengths in epochs).
        total_steps: the length of training in steps (needed for ``P% of training``).
    """

    def __init__(
        self,
        text: str,
        initial_lr: float | None = None,
        steps_per_epoch: int | None = None,
        total_steps: int | None = None,
    ) -> None:
        super().__init__()
        rule = _schedule_rule(text)
        from policy.printer import rule as rule_text

        self.text = rule_text(rule)
        self.initial_lr = None if initial_lr is None else float(np.float32(initial_lr))
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = total_steps
        if self.initial_lr is None and not isinstance(rule.segments[0], ast.Warmup):
            raise PolicyError.plain(
                f"the schedule {self.text!r} starts from the optimizer's current rate",
                "pass initial_lr (the rate the first segment starts from), or start with a warm-up",
            )
        self._pieces = self._resolve(rule)
        last = self._pieces[-1]
        self._open = last.length is None
        finite_end = last.begin if self._open else last.begin + (last.length or 0)
        # A finite schedule hands the rate over at this step (see attach_handover).
        self.end_step: int | None = None if self._open else finite_end
        self.handover: Any = None
        horizon = finite_end + 1
        if self._open:
            horizon = max(horizon, total_steps or finite_end + TAIL_TABLE)
        self._rates = np.array([self.rate(t) for t in range(horizon)], dtype="float32")
        self._eager_table: Any = None  # the table as a torch tensor, made at the first step (see _table)

    def _steps(self, span: ast.Span) -> int:
        if span.unit == "steps":
            return int(span.count)
        if span.unit == "epochs":
            if self.steps_per_epoch is None:
                raise PolicyError.plain(
                    f"the schedule {self.text!r} counts epochs inside a step schedule, so it needs the steps per epoch",
                    "pass steps_per_epoch, or count every length in steps",
                )
            return int(span.count) * self.steps_per_epoch
        if self.total_steps is None:
            raise PolicyError.plain(
                f"the schedule {self.text!r} counts a share of training, so it needs the number of training steps",
                "pass total_steps, or count the length in steps",
            )
        return math.ceil(Fraction(repr(span.count)) * self.total_steps / 100)

    def _resolve(self, rule: ast.Schedule) -> list[_Piece]:
        pieces: list[_Piece] = []
        begin, start = 0, self.initial_lr if self.initial_lr is not None else 0.0
        for seg in rule.segments:
            length: int | None = None
            period: int | None = None
            if isinstance(seg, ast.Decay | ast.Milestones):
                scale = self._steps(ast.Span(1.0, seg.unit))
                if isinstance(seg, ast.Decay):
                    seg = ast.Decay(factor=seg.factor, every=seg.every * scale, unit="steps", smooth=seg.smooth, pos=seg.pos)
                else:
                    seg = ast.Milestones(factor=seg.factor, at=tuple(m * scale for m in seg.at), unit="steps", pos=seg.pos)
            elif not isinstance(seg, ast.InverseSqrt):
                length = self._steps(seg.over)
                if isinstance(seg, ast.Cosine) and seg.restart is not None:
                    period = self._steps(seg.restart)
            piece = _Piece(seg, begin, length, period, start)
            pieces.append(piece)
            if length is None:
                break
            begin, start = begin + length, piece.end_value()
        return pieces

    def rate(self, step: int) -> float:
        """The rate of optimizer step ``step`` in float64 (the optimizer holds it in float32)."""
        for piece in self._pieces:
            if piece.length is None or step < piece.begin + piece.length:
                return piece.value(step)
        return self._pieces[-1].end_value()

    def attach_handover(self, variable: Any) -> None:
        """From :attr:`end_step` on, the rate is ``variable``'s value instead of the end value.

        ``variable`` is the optimizer's own learning-rate variable (one of
        ``optimizer.variables``, so JAX's train step reads it from the optimizer state it is
        handed, and a backup holds it). Keras's ReduceLROnPlateau writes it through
        :func:`writable_rate`, which is how a finite schedule hands the rate to
        ``multiply lr ... when``. Not serialized: a loaded schedule keeps its end value.
        """
        if self.end_step is not None:
            self.handover = variable

    def end_rate(self) -> float:
        """The float32 end value of a finite schedule (the rate of step :attr:`end_step`)."""
        assert self.end_step is not None
        return float(self._rates[self.end_step])

    def tabled_rate(self, step: int) -> float:
        """The float32 rate of a tabled step, as the train step reads it (no hand-over)."""
        return float(self._rates[min(step, len(self._rates) - 1)])

    def __call__(self, step: Any) -> Any:
        ops = keras.ops
        step = ops.cast(step, "int32")
        horizon = len(self._rates)
        tabled = ops.take(self._table(), ops.minimum(step, horizon - 1))
        if not self._open:
            if self.handover is None:
                return tabled
            return ops.where(step < self.end_step, tabled, ops.cast(self.handover.value, "float32"))
        return ops.where(step < horizon, tabled, self._tail(ops.cast(step, "float32")))

    def _table(self) -> Any:
        """The rates as a backend tensor. TensorFlow and JAX call the schedule while tracing the
        train step, where the table becomes a constant of that trace (a tensor kept from one
        trace must not reach another). Torch calls it eagerly at every step: converting there
        would copy the whole table each step (4 MB for a million steps), so it is converted once."""
        if keras.backend.backend() != "torch":
            return keras.ops.convert_to_tensor(self._rates)
        if self._eager_table is None:
            self._eager_table = keras.ops.convert_to_tensor(self._rates)
        return self._eager_table

    def _tail(self, step: Any) -> Any:
        """An open-ended last segment, by the backend in float32 (steps past the table)."""
        ops = keras.ops
        piece = self._pieces[-1]
        seg, start, t = piece.seg, np.float32(piece.start), step - np.float32(piece.begin)
        if isinstance(seg, ast.Decay):
            periods = t / np.float32(seg.every)
            return start * ops.power(np.float32(seg.factor), periods if seg.smooth else ops.floor(periods))
        if isinstance(seg, ast.Milestones):
            passed = sum(ops.cast(t >= np.float32(m), "float32") for m in seg.at)
            return start * ops.power(np.float32(seg.factor), passed)
        return start * ops.sqrt(np.float32(piece.begin) / step)

    def get_config(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "initial_lr": self.initial_lr,
            "steps_per_epoch": self.steps_per_epoch,
            "total_steps": self.total_steps,
        }

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"PolicyLearningRateSchedule({self.text!r})"


def lr_schedule(
    text: str,
    *,
    initial_lr: float | None = None,
    steps_per_epoch: int | None = None,
    total_steps: int | None = None,
) -> PolicyLearningRateSchedule:
    """A ``keras.optimizers.schedules.LearningRateSchedule`` from one schedule rule, for an
    optimizer you build yourself: ``keras.optimizers.AdamW(learning_rate=lr_schedule(...))``.

    Args:
        text: e.g. ``"warm up lr to 1e-3 over 500 steps, then cosine to 1e-5 over 20000 steps"``.
        initial_lr: the rate the first segment starts from (not needed after a warm-up first).
        steps_per_epoch: needed when a length is in epochs.
        total_steps: needed for ``P% of training``.
    """
    return PolicyLearningRateSchedule(text, initial_lr, steps_per_epoch, total_steps)


_VARIABLE = "_policy_lr_variable"


class StepLearningRate(keras.callbacks.Callback):  # type: ignore[misc]
    """Installs a step-counted schedule on the optimizer at train begin.

    The schedule's ``initial_lr`` is the optimizer's rate as built (a later ``fit`` of the same
    optimizer keeps it); its steps per epoch and total come from ``fit``. Overrides no batch hook.

    Args:
        text: one schedule rule counted (at least partly) in steps or in % of training.
    """

    def __init__(self, text: str) -> None:
        super().__init__()
        self.rule = _schedule_rule(text)
        from policy.printer import rule as rule_text

        self.text = rule_text(self.rule)
        self.schedule: PolicyLearningRateSchedule | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        optimizer = self.model.optimizer
        current = getattr(optimizer, "_learning_rate", None)
        ours = isinstance(current, PolicyLearningRateSchedule)
        if not ours:
            refuse_schedule_object(optimizer, getattr(self, POLICY_RULE, self.text))
        steps = self.params.get("steps")
        if steps is None:
            raise PolicyError.plain(
                f"the rule {self.text!r} counts optimizer steps, but this fit does not know its steps per epoch "
                "(a generator or dataset without a length)",
                "pass steps_per_epoch to fit, or count the schedule in epochs",
            )
        # The rate as built: a backup (last in the list) puts back the rate variable, which by
        # then holds the hand-over rate, only after this.
        lr0 = current.initial_lr if isinstance(current, PolicyLearningRateSchedule) else float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        schedule = PolicyLearningRateSchedule(self.text, lr0, int(steps), int(self.params["epochs"]) * int(steps))
        if isinstance(current, PolicyLearningRateSchedule) and current.get_config() == schedule.get_config():
            self.schedule = current
            self._start_handover(current)
            return
        if not ours:
            setattr(optimizer, _VARIABLE, current)
        schedule.attach_handover(getattr(optimizer, _VARIABLE))
        optimizer._learning_rate = schedule
        self.schedule = schedule
        self._start_handover(schedule)
        # fit built (or kept) its train function before on_train_begin, and the optimizer's rate
        # is read when that function is traced: build it again so it reads the schedule.
        self.model.make_train_function(force=True)

    def _start_handover(self, schedule: PolicyLearningRateSchedule) -> None:
        # Before the schedule's end the hand-over rate is its end value. From the end on it is
        # whatever `multiply lr ... when` made it, which a resumed or continued fit keeps.
        if schedule.handover is None or schedule.end_step is None:
            return
        if int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)) < schedule.end_step:
            schedule.handover.assign(schedule.end_rate())

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is not None:
            # As LearningRateScheduler logs it: what optimizer.learning_rate reads now (the next step's).
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


def remove_step_schedule(optimizer: Any) -> bool:
    """Put back the rate variable a :class:`StepLearningRate` replaced (the test harness reuses
    one optimizer); True if there was one. The model's train function must be rebuilt after."""
    variable = getattr(optimizer, _VARIABLE, None)
    if variable is None or not isinstance(getattr(optimizer, "_learning_rate", None), PolicyLearningRateSchedule):
        return False
    optimizer._learning_rate = variable
    delattr(optimizer, _VARIABLE)
    return True


def hands_over(optimizer: Any) -> bool:
    """Whether the optimizer's rate is our finite step schedule with a hand-over attached."""
    schedule = getattr(optimizer, "_learning_rate", None)
    return isinstance(schedule, PolicyLearningRateSchedule) and schedule.handover is not None


@contextlib.contextmanager
def writable_rate(optimizer: Any) -> Iterator[None]:
    """Inside, ``optimizer.learning_rate`` reads and sets like a plain rate, under a finite step
    schedule with a hand-over (:meth:`PolicyLearningRateSchedule.attach_handover`).

    It reads what it reads under the schedule (the rate of the next step, ``optimizer.iterations``).
    A value set once the schedule has ended is the rate of every later step; one set while the
    schedule still drives the rate is dropped when the block ends (the schedule sets every step's
    rate until its end, as an epoch-counted schedule sets every epoch's). Anything else: no change.
    """
    schedule = getattr(optimizer, "_learning_rate", None)
    if not hands_over(optimizer):
        yield
        return
    assert isinstance(schedule, PolicyLearningRateSchedule) and schedule.end_step is not None
    variable = schedule.handover
    step = int(keras.ops.convert_to_numpy(optimizer.iterations))
    driving = step < schedule.end_step
    if driving:
        variable.assign(schedule.tabled_rate(step))
    optimizer._learning_rate = variable
    try:
        yield
    finally:
        optimizer._learning_rate = schedule
        if driving:
            variable.assign(schedule.end_rate())


class HandoverReduceLROnPlateau(keras.callbacks.ReduceLROnPlateau):  # type: ignore[misc]
    """Keras's ReduceLROnPlateau after a finite schedule counted in steps.

    Keras's own cannot set a rate that is a LearningRateSchedule (its setter raises TypeError).
    This subclass keeps every decision of Keras's (``on_epoch_end`` and ``_reduce_optimizer_lr``
    run unchanged) and changes only where the cut goes: through :func:`writable_rate`, into the
    rate the schedule hands over at its end. Without a step schedule it is Keras's, to the letter.

    Args:
        **kwargs: Keras's ReduceLROnPlateau arguments, unchanged.
    """

    def _reduce_optimizer_lr(self, optimizer: Any, epoch: int, name: str = "") -> bool:
        with writable_rate(optimizer):
            cut: bool = super()._reduce_optimizer_lr(optimizer, epoch, name)
        return cut
