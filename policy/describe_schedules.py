"""Keras learning-rate schedule objects -> a schedule rule counted in steps (part of ``describe``).

Each supported class is read from its public arguments (Keras 3.15.1 names) and turned into
segments whose per-step rates are Keras's: step t of the rule is ``optimizer.iterations``, as
Keras passes it to the schedule. A policy's schedule starts from the optimizer's rate, so the
rate a Keras schedule starts from is written in a ``#`` comment next to the rule.

Only the exact classes are read (a subclass may compute something else), and only arguments
whose meaning a rule says exactly; anything else raises :class:`NoEquivalent` with the reason.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from policy import ast
from policy.printer import number, rule


class NoEquivalent(Exception):
    """One callback or schedule that no rule says exactly, with the reason; :func:`policy.describe.describe`
    collects them into one PolicyError. Defined here, the lower of the two modules, so neither imports the other back."""


def is_schedule_holder(obj: Any) -> bool:
    """A Keras learning-rate schedule object, or an optimizer (whose rate may be one)."""
    import keras

    return isinstance(obj, keras.optimizers.schedules.LearningRateSchedule | keras.optimizers.Optimizer)


def schedule_rule(obj: Any, total_steps: int | None) -> list[str]:
    """The lines for a schedule object or an optimizer: none for an optimizer with a plain rate."""
    import keras

    schedule = obj
    if isinstance(obj, keras.optimizers.Optimizer):
        schedule = getattr(obj, "_learning_rate", None)
        if not isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            return []  # a fixed rate needs no rule
    node, start = schedule_node(schedule, total_steps)
    if start is None:  # a policy schedule starting with a warm-up: no start rate to say
        return [rule(node)]
    # The optimizer holds its rate in float32: the shortest decimal of that float32 says it.
    lr = number(_short(np.float32(start)))
    return [rule(node) + f"  # starts from lr {lr}: build the optimizer with learning_rate={lr}"]


def schedule_node(schedule: Any, total_steps: int | None = None) -> tuple[ast.Schedule, float | None]:
    """The schedule rule for a Keras schedule object and the rate it starts from (step 0's base;
    None for a schedule of ours built without one, which starts with a warm-up).

    Raises:
        NoEquivalent: the class or its arguments have no exact rule, with the reason.
    """
    from keras.optimizers import schedules as ks

    from policy.callbacks.step_schedule import PolicyLearningRateSchedule

    kind = type(schedule)
    if isinstance(schedule, PolicyLearningRateSchedule):
        from policy.parser import parse

        (node,) = parse(schedule.text).rules
        assert isinstance(node, ast.Schedule)
        return node, None if schedule.initial_lr is None else float(schedule.initial_lr)
    if kind is ks.CosineDecay:
        return _cosine(schedule)
    if kind is ks.PolynomialDecay:
        return _polynomial(schedule)
    if kind is ks.ExponentialDecay:
        return _exponential(schedule)
    if kind is ks.PiecewiseConstantDecay:
        return _piecewise(schedule)
    if kind is ks.CosineDecayRestarts:
        return _restarts(schedule, total_steps)
    raise NoEquivalent(f"{kind.__name__} has no policy rule (supported: CosineDecay, PiecewiseConstantDecay, "
                       "PolynomialDecay with power=1, ExponentialDecay, CosineDecayRestarts)")


def _rate(value: Any, what: str) -> float:
    out = float(value)
    if not math.isfinite(out) or out < 0:
        raise NoEquivalent(f"{what}={value!r} is not a finite rate >= 0")
    return out


def _steps(value: Any, what: str, least: int = 1) -> int:
    """A whole number of steps (Keras accepts 1000.0 as well as 1000)."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise NoEquivalent(f"{what}={value!r} is not a number of steps") from None
    if not out.is_integer() or out < least:
        raise NoEquivalent(f"{what}={value!r} is not a whole number of steps >= {least}")
    return int(out)


def _steps_span(count: int) -> ast.Span:
    return ast.Span(count, "steps")


def _final(start: float, alpha: Any) -> float:
    """A cosine's end ``start * alpha``, as Keras computes it (float32), so the end rates agree."""
    a = float(alpha)
    if not 0.0 <= a <= 1.0:
        raise NoEquivalent(f"alpha={alpha!r}: a policy's cosine ends between 0 and its start (alpha in [0, 1])")
    return _short(np.float32(start) * np.float32(a))


def _short(value: np.float32) -> float:
    """The shortest decimal that is ``value`` in float32 (0.0001, not 0.00010000000474974513)."""
    return float(np.format_float_scientific(value, unique=True))


def _cosine(s: Any) -> tuple[ast.Schedule, float]:
    # Keras: without a warm-up, start * ((1 - alpha) * c + alpha), c = (1 + cos(pi * t / D)) / 2
    # for t < D, then start * alpha; that is "cosine to start*alpha over D". With warmup_target
    # and W warm-up steps it first goes linearly from initial_learning_rate (t = 0) towards the
    # target (t / W of the way), which is "linear to target over W", then decays from the target.
    start = _rate(s.initial_learning_rate, "initial_learning_rate")
    decay = _steps(s.decay_steps, "decay_steps")
    if s.warmup_target is None:
        return ast.Schedule(segments=(ast.Cosine(target=_final(start, s.alpha), over=_steps_span(decay)),)), start
    peak = _rate(s.warmup_target, "warmup_target")
    warmup = _steps(s.warmup_steps, "warmup_steps", least=0)
    cosine = ast.Cosine(target=_final(peak, s.alpha), over=_steps_span(decay))
    if warmup == 0:  # Keras never takes the warm-up branch: the decay starts from the target
        return ast.Schedule(segments=(cosine,)), peak
    return ast.Schedule(segments=(ast.Linear(target=peak, over=_steps_span(warmup)), cosine)), start


def _polynomial(s: Any) -> tuple[ast.Schedule, float]:
    # Keras: (start - end) * (1 - t / D) ** power + end for t < D, then end (cycle=False).
    if s.cycle:
        raise NoEquivalent("cycle=True (the decay starts again with a longer period) has no policy rule")
    if float(s.power) != 1.0:
        raise NoEquivalent(f"power={s.power!r}: only power=1 (a straight line, 'linear lr to X over N steps') "
                           "has a policy rule")
    start = _rate(s.initial_learning_rate, "initial_learning_rate")
    end = _rate(s.end_learning_rate, "end_learning_rate")
    line = ast.Linear(target=end, over=_steps_span(_steps(s.decay_steps, "decay_steps")))
    return ast.Schedule(segments=(line,)), start


def _exponential(s: Any) -> tuple[ast.Schedule, float]:
    # Keras: start * rate ** (t / D) (staircase=False, its default: "smoothly"), floor(t / D)
    # with staircase; with D = 1 the two agree, and the rule is written without "smoothly".
    every = _steps(s.decay_steps, "decay_steps")
    rate = float(s.decay_rate)
    if not 0.0 < rate < 1.0:
        raise NoEquivalent(f"decay_rate={s.decay_rate!r}: a policy's decay factor is between 0 and 1 (exclusive)")
    start = _rate(s.initial_learning_rate, "initial_learning_rate")
    decay = ast.Decay(factor=rate, every=every, unit="steps", smooth=not s.staircase and every != 1)
    return ast.Schedule(segments=(decay,)), start


def _piecewise(s: Any) -> tuple[ast.Schedule, float]:
    # Keras: values[0] while t <= boundaries[0], values[i] while boundaries[i-1] < t <= boundaries[i],
    # values[-1] after the last: the rate changes at step b + 1. A policy multiplies by one factor
    # at each milestone, so the values must be a geometric sequence, exactly in float32.
    bounds = [_steps(b, "boundary", least=0) for b in s.boundaries]
    values = [_rate(v, "value") for v in s.values]
    if any(b <= a for a, b in itertools.pairwise(bounds)):
        raise NoEquivalent(f"boundaries={list(s.boundaries)!r} are not increasing")
    start = values[0]
    if start == 0 or len(values) != len(bounds) + 1:
        raise NoEquivalent(f"values={list(s.values)!r} cannot be reached by multiplying the first")
    first = float(np.float32(start))

    def exact(factor: float) -> bool:
        # What the rule gives at each piece (the reference's start * F ** k, held in float32)
        # against Keras's values held in float32.
        return factor > 0 and all(np.float32(first * factor**k) == np.float32(v) for k, v in enumerate(values))

    # The shortest decimal first (0.1 rather than 0.09999999999999999), if it is as exact.
    factor = next((f for f in (_short(np.float32(values[1] / start)), values[1] / start) if exact(f)), None)
    if factor is None:
        raise NoEquivalent(f"values={list(s.values)!r} are not the first times one factor at each boundary "
                           "(exactly, in float32); a policy multiplies by one factor at each milestone")
    milestones = ast.Milestones(factor=factor, at=tuple(b + 1 for b in bounds), unit="steps")
    return ast.Schedule(segments=(milestones,)), start


def _restarts(s: Any, total_steps: int | None) -> tuple[ast.Schedule, float]:
    # Keras: start * ((1 - alpha) * m_mul ** i * c + alpha), c the half cosine of the position in
    # period i, period i lasting P * t_mul ** i, forever. With X = start * alpha that is
    # X + m_mul ** i * (start - X) * c: "periods times t_mul, peaks times m_mul" (the peak factor
    # scales the height above X, not X). A policy's cosine ends, so it is written over the run.
    t_mul, m_mul = float(s._t_mul), float(s._m_mul)
    if not (math.isfinite(t_mul) and t_mul >= 1.0):
        raise NoEquivalent(f"t_mul={s._t_mul!r}: a policy's restart periods stay or grow (t_mul >= 1)")
    if float(np.float32(t_mul)) != t_mul:
        # Keras multiplies the periods in float32: an inexact t_mul moves its restarts away from
        # the policy's by whole steps after a few periods.
        raise NoEquivalent(f"t_mul={s._t_mul!r} is not exact in float32, so Keras's restarts drift from a "
                           "policy's (use a t_mul such as 1.5, 2 or 3)")
    if not (math.isfinite(m_mul) and m_mul > 0.0):
        raise NoEquivalent(f"m_mul={s._m_mul!r}: a policy's restart heights are multiplied by a positive factor")
    if total_steps is None:
        raise NoEquivalent("CosineDecayRestarts restarts forever while a policy's cosine ends: pass "
                           "total_steps (the steps the run trains) to describe")
    start = _rate(s.initial_learning_rate, "initial_learning_rate")
    period = _steps(s.first_decay_steps, "first_decay_steps")
    total = _steps(total_steps, "total_steps")
    target = _final(start, s.alpha)
    if t_mul != 1.0:
        _check_restarts(s, start, target, period, t_mul, m_mul, total)
    cosine = ast.Cosine(target=target, over=_steps_span(total), restart=_steps_span(period),
                        period_factor=t_mul, peak_factor=m_mul)
    return ast.Schedule(segments=(cosine,)), start


def _check_restarts(s: Any, start: float, target: float, period: int, t_mul: float, m_mul: float, total: int) -> None:
    """Keras finds the restart period with a float32 log (floor(log(1 + f (t_mul - 1)) / log(t_mul)),
    f = step / period), which at some restart steps comes out just below the whole number: there
    Keras gives the previous period's end (its floor) instead of the peak. That depends on the
    numbers and the backend (t_mul=2: steps period x 8191 and x 32767 everywhere; t_mul=1.5 on
    torch: step 2.5 x period). The policy restarts exactly, so each restart within the run that
    falls on a whole step is read from Keras's own object; one it misses has no equivalent."""
    import keras

    from policy.callbacks.schedules import restart_periods

    for index, (begins, _) in enumerate(restart_periods(total, period, t_mul)[1:], start=1):
        if not begins.is_integer():
            continue  # Keras's log is far from a whole number at the steps either side
        keras_rate = float(keras.ops.convert_to_numpy(s(np.int64(begins))))
        peak = target + m_mul**index * (start - target)
        if abs(keras_rate - peak) > 1e-6 * max(start, abs(peak)):
            raise NoEquivalent(
                f"Keras's CosineDecayRestarts misses its restart at step {int(begins)} on this backend (its float32 "
                f"log puts the step at the end of the period before: {keras_rate:.6g} instead of {peak:.6g}), where a "
                "policy restarts; describe it with a total_steps before that step, or build the policy's schedule")
