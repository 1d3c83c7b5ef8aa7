"""Float32 comparisons exactly as Keras's monitors make them.

Keras's ``MonitorCallback._is_improvement`` does the arithmetic on Python floats (float64)
and hands both sides to ``ops.less``/``ops.greater``, which turn them into float32 tensors.
On the TensorFlow CPU backend the comparison also flushes subnormal float32 values to zero
(checked on Keras 3.15.1: ``ops.less(1e-45, 3e-45)`` is False). We mirror both steps with
numpy so that our callbacks decide exactly as EarlyStopping would, without a backend call
per epoch.

One deliberate difference: Keras raises ValueError for a Python float beyond the float32
range (TensorFlow refuses to convert it); we round it to +-inf, as docs/semantics.md says.
"""

from __future__ import annotations

import math

import numpy as np

from policy.ast import Comparison, Direction

_TINY = float(np.finfo(np.float32).tiny)  # the smallest normal float32


def f32(value: float) -> float:
    """``value`` rounded to float32, subnormals flushed to (signed) zero, as a Python float.

    A Python float holds every float32 exactly, so comparing the results in Python
    compares the float32 values.
    """
    with np.errstate(over="ignore"):
        rounded = float(np.float32(value))
    if rounded != 0.0 and abs(rounded) < _TINY:
        return math.copysign(0.0, rounded)
    return rounded


def improves(value: float, best: float | None, delta: float, direction: Direction) -> bool:
    """EarlyStopping's test: is ``value`` better than ``best`` by more than ``|delta|``?

    min: ``value + |delta| < best``; max: ``value - |delta| > best`` (Keras stores
    ``min_delta`` negated for min mode and always subtracts it). ``best is None`` means
    anything improves, NaN included; NaN never improves on a number.
    """
    if best is None:
        return True
    d = abs(delta)
    if direction == "min":
        return f32(value + d) < f32(best)
    return f32(value - d) > f32(best)


def improves_relative(value: float, best: float | None, fraction: float, direction: Direction) -> bool:
    """Relative improvement: min ``value < best - |best|*r``, max ``value > best + |best|*r``.

    The right side is computed in float64, then both sides are compared in float32.
    """
    if best is None:
        return True
    if direction == "min":
        return f32(value) < f32(best - abs(best) * fraction)
    return f32(value) > f32(best + abs(best) * fraction)


def holds(value: float, op: Comparison, target: float) -> bool:
    """``value OP target`` compared in float32; NaN makes it false."""
    a, b = f32(value), f32(target)
    if op == ">=":
        return a >= b
    if op == ">":
        return a > b
    if op == "<=":
        return a <= b
    return a < b


def is_worse(a: float, b: float, direction: Direction) -> bool:
    """Is ``a`` strictly worse than ``b`` in float32 (NaN is never worse or better)?"""
    return f32(a) > f32(b) if direction == "min" else f32(a) < f32(b)
