"""Float32 comparisons exactly as Keras's monitors make them on the running backend.

Keras's ``MonitorCallback._is_improvement`` does the arithmetic on Python floats (float64)
and hands both sides to ``ops.less``/``ops.greater``, which turn them into float32 tensors.
Whether the comparison then flushes subnormal float32 values to zero depends on the backend
(the TensorFlow and JAX CPU kernels do, torch does not), so we ask the backend once, with the
same call a monitor makes, and mirror both steps with numpy: our callbacks decide exactly as
EarlyStopping would on that backend, without a backend call per epoch.

One deliberate difference: under TensorFlow, Keras raises ValueError for a Python float beyond
the float32 range (it refuses to convert it); we round it to +-inf on every backend, as JAX and
torch do and docs/semantics.md says.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from policy.ast import Comparison, Direction

_TINY = float(np.finfo(np.float32).tiny)  # the smallest normal float32


def f32(value: float) -> float:
    """``value`` rounded to float32, subnormals flushed to (signed) zero where the backend's
    comparisons flush them, as a Python float.

    A Python float holds every float32 exactly, so comparing the results in Python
    compares the float32 values.
    """
    with np.errstate(over="ignore"):
        rounded = float(np.float32(value))
    if rounded != 0.0 and abs(rounded) < _TINY and backend_flushes_subnormals():
        return math.copysign(0.0, rounded)
    return rounded


@functools.cache
def backend_flushes_subnormals() -> bool:
    """Does this process's Keras backend compare float32 subnormals as zero? Asked once, with
    two subnormals that a comparison keeping them would order (the backend never changes within
    a process: Keras picks it at import)."""
    import keras

    return not bool(keras.ops.less(1e-40, 2e-40))


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
