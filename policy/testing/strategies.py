"""Hypothesis strategies for policies, metric histories and whole training cases.

These are the generators behind keras-policy's own differential tests (the compiled
callbacks inside real ``model.fit`` against :func:`policy.reference.simulate`), and they are
public so that users can property-test their own policies::

    from hypothesis import given
    from policy import parse_policy
    from policy.reference import simulate
    from policy.testing.strategies import histories

    POLICY = parse_policy("stop when val_loss not improving for 3, ignore first 5 epochs")

    @given(histories(["val_loss"], epochs=(1, 12)))
    def test_never_stops_before_epoch_5(history):
        stop = simulate(POLICY, history).stop
        assert stop is None or stop.epoch >= 5

What they aim at is where implementations disagree, not typical training curves:

- ``policies()`` builds the AST directly (every rule kind, every option) so that every value
  is valid by construction; its ``source`` is the canonical text, so errors point at lines.
- ``histories()`` writes traces out of plateaus, exact ties with the best value, steps that
  float32 cannot see (``1.0`` then ``1.0 - 1e-9``), steps just big enough (the next float32),
  values at exactly ``best - min_delta`` and its float32 neighbours, NaN and +-inf, and
  metrics that only appear after a few epochs.
- ``cases()`` draws a policy, then a history aimed at it (every watched metric is logged;
  each trace lands on the min_deltas, relative thresholds, thresholds and baselines of the
  rules watching it, exactly and one float32 either side), plus the learning rate, batches
  per epoch, running batch losses and step times the budgets and ``TerminateOnNaN`` need.
  Half the cases put one kind of rule first, so every kind gets its share of the budget.

Examples stay small (at most 8 epochs, 4 rules, 3 batches an epoch) so that a real Keras run
of one case takes a fraction of a second. No keras import here.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
from hypothesis import strategies as st

from policy import ast
from policy.logs import EpochLogs, FitArgs, History
from policy.metrics import name_direction, trend_direction
from policy.printer import format_policy
from policy.reference.backends import FACTS, default_backend

__all__ = [
    "DELTAS",
    "LEARNING_RATES",
    "METRICS",
    "Case",
    "cases",
    "f32",
    "f32_neighbours",
    "histories",
    "policies",
    "policy_texts",
    "rules",
]

# The metric pool: a loss and a validation loss (min), two maximised validation metrics and
# one minimised validation metric whose direction comes from an "error" word (mae).
METRICS: tuple[str, ...] = ("val_loss", "loss", "val_accuracy", "val_auc", "val_mae")

# min_delta values: float32-exact ones (0.5, 0.25), ones that are not (0.1, 0.05, 0.01), and
# one below float32 resolution near 1.0 (1e-9) where float64 and float32 comparisons differ.
DELTAS: tuple[float, ...] = (0.0, 0.05, 0.1, 0.01, 0.25, 0.5, 1e-9, 0.001)

# Relative thresholds, as the parser produces them from "by P%": P / 100.
PERCENTS: tuple[float, ...] = (1.0, 5.0, 10.0, 50.0, 0.5)
FRACTIONS: tuple[float, ...] = tuple(p / 100.0 for p in PERCENTS)

# Initial learning rates; 0.001 is Adam's and SGD's default and not float32-exact.
LEARNING_RATES: tuple[float, ...] = (0.001, 0.01, 0.1, 0.002, 0.5)

# Starting values of metric traces: float32-exact and not, around typical loss/accuracy values.
_STARTS: tuple[float, ...] = (1.0, 0.5, 0.1, 0.3, 2.0, 0.7, 0.95, 0.25)

# Thresholds and baselines: typical values, float32-exact (0.5, 0.25) and not (0.1, 0.3, 0.9);
# drawn as is, rounded to float32, or one float32 either side, and traces land on them.
_THRESHOLDS: tuple[float, ...] = (0.5, 0.1, 0.9, 0.3, 1.0, 0.25, 0.95, 0.7)

# Sizes of ordinary improvements and regressions.
_STEPS: tuple[float, ...] = (0.1, 0.05, 0.01, 0.25, 0.5)

_TRENDS: tuple[ast.Trend, ...] = ("improving", "improving", "decreasing", "increasing")
_COMPARISONS: tuple[ast.Comparison, ...] = (">=", ">", "<=", "<")
_TIME_UNITS: tuple[ast.TimeUnit, ...] = ("epochs", "steps", "s", "epochs", "steps", "s", "min", "h")
_DIRECTIONS: tuple[ast.Direction | None, ...] = (None, None, "min", "max")

_TINY_STARTS: tuple[float, ...] = (2e-40, 1e-39, -3e-40)

# Float32 edge values: subnormal float32s, zero, and just past float32's largest finite value.
_EXTREMES: tuple[float, ...] = (1e-40, 2e-40, -1e-40, 0.0, 3.5e38)

MAX_EPOCHS = 8
MAX_RULES = 4
MAX_STEPS_PER_EPOCH = 3
FIT_VALIDATION_FREQS: tuple[int, ...] = (1, 1, 1, 2, 3)
FIT_STEPS_PER_EXECUTION: tuple[int, ...] = (1, 1, 1, 2, 3)
FIT_INITIAL_EPOCHS: tuple[int, ...] = (0, 0, 0, 1, 3)


# --------------------------------------------------------------------------- float32 helpers


def f32(value: float) -> float:
    """``value`` rounded to float32, as a Python float (what Keras's monitors compare)."""
    return float(np.float32(value))


def f32_neighbours(value: float) -> tuple[float, float]:
    """The float32 values just below and just above ``float32(value)``, as Python floats."""
    v = np.float32(value)
    return float(np.nextafter(v, np.float32(-np.inf))), float(np.nextafter(v, np.float32(np.inf)))


# --------------------------------------------------------------------------- histories


def _direction(metric: str) -> ast.Direction:
    return name_direction(metric) or "min"


@dataclass(frozen=True)
class Aims:
    """What one metric's trace should hit: the boundaries of the rules that watch it.

    Attributes:
        deltas: absolute min_deltas: values at exactly ``best -/+ delta`` (and the float32
            values either side) are drawn.
        fractions: relative thresholds r: values at exactly ``best -/+ |best| * r``.
        targets: thresholds and baselines: the value itself, its float32 rounding and the
            float32 values either side.
        direction: which way the rules watching the metric call better (default: the name's).
        nonfinite: whether NaN and +-inf should come up more often (a rule tests for them).
        plateau: whether a plateau watches the metric or a top-k rule ranks it (runs of
            non-improvement and ties matter).
        extremes: whether a rare value may be a float64 too large for float32 (Keras raises).
    """

    deltas: tuple[float, ...] = DELTAS
    fractions: tuple[float, ...] = ()
    targets: tuple[float, ...] = ()
    direction: ast.Direction | None = None
    nonfinite: bool = False
    plateau: bool = False
    extremes: bool = True


@st.composite
def _trace(draw: st.DrawFn, metric: str, epochs: int, aims: Aims, always: bool) -> list[float | None]:
    """One metric's values over ``epochs`` epochs; None where it is not logged yet."""
    direction = aims.direction or _direction(metric)
    # Improvement goes down for a minimised metric, up for a maximised one. A trace is
    # sometimes drawn the other way (a loss that rises), so that runs of non-improvement,
    # and improvement for a rule watching the other way, come up too.
    sign = -1.0 if direction == "min" else 1.0
    if draw(st.integers(0, 4)) == 4:
        sign = -sign
    first = 0 if always else draw(st.sampled_from((0, 0, 0, 0, 0, 0, 0, 1, 2, 3)))
    first = min(first, epochs - 1) if epochs else 0
    out: list[float | None] = [None] * first
    best: float | None = None
    # The best as a "by P%" plateau keeps it: moved only by an improvement of at least P% (the
    # smallest P watching the metric). Relative moves aim at P% past it, where taking P% of the
    # best and of the new value part ways; the plain best would put them between two of its moves.
    marked: float | None = None
    # Sometimes a subnormal float32 start, so that the ulp/tie/delta moves work among
    # subnormals (TensorFlow's CPU comparisons flush them to zero; NumPy's do not).
    value = draw(st.sampled_from(_TINY_STARTS if draw(st.integers(0, 9)) == 9 else _STARTS))
    # A third of the traces stall: mostly ties and near-misses, the long runs of
    # non-improvement that patience, cooldown and repeated lr reductions need.
    # (Half of them when a plateau watches the metric.)
    stalling = draw(st.integers(0, 2)) >= (1 if aims.plateau else 2)
    for _ in range(first, epochs):
        if out[first:]:
            value = draw(_move(value, best, sign, aims, stalling, marked))
        out.append(value)
        moved = marked is None or sign * (value - marked) > abs(marked) * min(aims.fractions, default=0.0)
        if aims.fractions and math.isfinite(value) and moved:
            marked = value
        # The best so far in the trace's own direction (the first value, even NaN, until a
        # finite one comes), which the next moves tie with, approach or step past.
        if best is None or (math.isfinite(value) and (not math.isfinite(best) or sign * (value - best) > 0)):
            best = value
    return out


# The moves of a trace, weighted by repetition. sampled_from shrinks towards the front, so the
# plainest move (a tie with the best) comes first.
_MOVES: tuple[str, ...] = (
    "tie",  # exactly the best so far: never an improvement (strict comparison)
    "same",  # a plateau on the previous value
    "invisible",  # better in float64, equal in float32
    "ulp",  # the next float32 in the improving direction: just visible
    "delta",  # exactly best -/+ min_delta, and its float32 neighbours
    "relative",  # exactly best -/+ |best| * r, and its float32 neighbours
    "target",  # a threshold or baseline, exactly or one float32 either side
    "better",
    "worse",
    "delta",
    "target",
    "better",
    "worse",
    "tie",
    "nan",
    "inf",
)


# Moves of a stalling trace: no plain improvements, only ties and boundary values.
_STALLING: tuple[str, ...] = ("tie", "same", "invisible", "delta", "target", "worse", "tie", "same", "relative")

# The smallest positive normal float32; below it (but not 0) a float32 is subnormal.
_FLT_MIN_NORMAL = 2.0**-126


def _around(value: float) -> st.SearchStrategy[float]:
    """``value`` itself (twice as likely), its float32 rounding, the float32 values either side."""
    below, above = f32_neighbours(value)
    return st.sampled_from((value, value, f32(value), below, above))


@st.composite
def _move(
    draw: st.DrawFn,
    value: float,
    best: float | None,
    sign: float,
    aims: Aims,
    stalling: bool = False,
    marked: float | None = None,
) -> float:
    """The next value of a trace, chosen among the moves where implementations part ways."""
    anchor = best if best is not None and math.isfinite(best) else (value if math.isfinite(value) else 1.0)
    # Rarely, a value at the edge of float32: subnormals (which TensorFlow's CPU comparisons
    # flush to zero) and a finite float64 too large for float32 (Keras's comparison raises).
    # Drawn as the *largest* integer so that shrinking moves away from them.
    if draw(st.integers(0, 99)) == 99:
        return draw(st.sampled_from(_EXTREMES if aims.extremes else _EXTREMES[:-1]))
    if 0 < abs(anchor) < _FLT_MIN_NORMAL:
        # Among subnormals only tiny steps stay subnormal: the next float32, or half the value.
        kind = draw(st.sampled_from(("ulp", "tie", "half", "same")))
        if kind == "half":
            return anchor / 2 if sign < 0 else anchor * 1.5
    else:
        kind = draw(st.sampled_from(_STALLING if stalling else _MOVES))
    # The boundaries of the rules watching this metric come up often: they are where a wrong
    # implementation parts ways with Keras.
    aimed = draw(st.integers(0, 7))
    if aimed >= 4 and aims.fractions:
        kind = "relative"
    elif aimed == 6 and aims.targets:
        kind = "target"
    elif aimed == 5 and aims.nonfinite:
        kind = "inf"
    deltas = tuple(d for d in aims.deltas if d > 0)
    if kind == "tie":
        return anchor
    if kind == "same":
        return value
    if kind == "invisible":
        return anchor + sign * 1e-9 * max(abs(anchor), 1.0)
    if kind == "ulp":
        below, above = f32_neighbours(anchor)
        return above if sign > 0 else below
    if kind == "delta" and deltas:
        return draw(_around(anchor + sign * draw(st.sampled_from(deltas))))
    if kind == "relative" and aims.fractions:
        base = marked if marked is not None else anchor
        return draw(_around(base + sign * abs(base) * draw(st.sampled_from(aims.fractions))))
    if kind == "target" and aims.targets:
        return draw(_around(draw(st.sampled_from(aims.targets))))
    if kind == "nan":
        return math.nan
    if kind == "inf":
        return draw(st.sampled_from((math.inf, -math.inf, math.nan)))
    step = draw(st.sampled_from(_STEPS))
    if kind == "worse":
        return (value if math.isfinite(value) else anchor) - sign * step
    return anchor + sign * step


@st.composite
def _history(draw: st.DrawFn, epochs: int, aims: dict[str, Aims], always: Sequence[str], late: bool) -> History:
    traces = {m: draw(_trace(m, epochs, a, always=(m in always) or not late)) for m, a in aims.items()}
    out: History = []
    for e in range(epochs):
        logs: EpochLogs = {}
        for m in sorted(traces):
            value = traces[m][e]
            if value is not None:
                logs[m] = value
        out.append(logs)
    return out


def histories(
    metrics: Sequence[str] = ("val_loss",),
    epochs: int | tuple[int, int] = (1, MAX_EPOCHS),
    *,
    deltas: Sequence[float] = DELTAS,
    fractions: Sequence[float] = (),
    targets: Sequence[float] = (),
    always: Sequence[str] = (),
    late: bool = True,
    overflow: bool = False,
) -> st.SearchStrategy[History]:
    """Per-epoch logs (``list[dict[str, float]]``) holding ``metrics``, as Keras passes them.

    Args:
        metrics: the log keys to generate; each gets its own trace.
        epochs: the exact number of epochs, or an inclusive ``(least, most)`` range.
        deltas: min_deltas whose boundaries the traces should hit (``best - delta`` exactly
            and the float32 values either side of it).
        fractions: relative thresholds (``r`` for ``by 100*r %``) whose boundaries to hit.
        targets: values to land on exactly and one float32 either side (thresholds, baselines).
        always: metrics that must be logged from the first epoch on (e.g. ones a checkpoint
            path formats, where a missing key is a KeyError in Keras).
        late: whether other metrics may appear only after a few epochs (absent keys before).
        overflow: whether a value may rarely be a finite float64 too large for float32
            (3.5e38), on which Keras's monitors raise; off by default, on in :func:`cases`.

    Values include exact ties, float32-invisible and just-visible steps, NaN and +-inf.
    """
    least, most = (epochs, epochs) if isinstance(epochs, int) else epochs
    if least < 1 or most < least:
        raise ValueError(f"epochs must be a positive count or range, got {epochs!r}")
    aims = Aims(deltas=tuple(deltas), fractions=tuple(fractions), targets=tuple(targets), extremes=overflow)
    return st.sampled_from(range(least, most + 1)).flatmap(
        lambda n: _history(n, dict.fromkeys(metrics, aims), tuple(always), late)
    )


# --------------------------------------------------------------------------- policies


@dataclass
class _Budget:
    """What the rules drawn so far for one policy have used up (paths, schedules)."""

    index: int = 0
    has_lr_rule: bool = False
    # A finite schedule was drawn: it hands the rate over when it ends, so a plateau rule may follow.
    hands_over: bool = False
    logs_lr: bool = False
    has_minimum: bool = False
    has_default_best: set[bool] = field(default_factory=set)
    placeholders: set[str] = field(default_factory=set)
    # Metrics to log from the first epoch on (not appearing late): a focus's rule needs every value.
    from_start: set[str] = field(default_factory=set)

    def name(self, stem: str) -> str:
        self.index += 1
        return f"{stem}{self.index}"


def _numbers(values: Sequence[float]) -> st.SearchStrategy[float]:
    """Threshold/baseline values: one of ``values`` as is, rounded to float32, or one float32 off."""
    # The parser reads numbers as Python floats and rejects infinities; keep them finite.
    base = tuple(v for v in values if math.isfinite(v)) or _THRESHOLDS
    return st.sampled_from(base).flatmap(_around)


@dataclass(frozen=True)
class _Palette:
    """The numbers one policy draws from, shared with its history so boundaries line up.

    ``deltas`` are absolute min_deltas, ``fractions`` relative ones (P / 100, as the parser
    reads "by P%"), ``values`` the history's finite values (thresholds and baselines).
    """

    deltas: tuple[float, ...] = DELTAS
    fractions: tuple[float, ...] = FRACTIONS
    values: tuple[float, ...] = ()


@st.composite
def _metric(draw: st.DrawFn, metrics: Sequence[str]) -> ast.Metric:
    return ast.Metric(name=draw(st.sampled_from(tuple(metrics))))


@st.composite
def _watched(draw: st.DrawFn, metrics: Sequence[str]) -> ast.Metric:
    """A metric as a ``stop when`` condition reads it: mostly as logged, sometimes averaged."""
    return ast.Metric(name=draw(st.sampled_from(tuple(metrics))), window=draw(st.sampled_from((1, 1, 1, 2, 3))))


@st.composite
def _plateau(
    draw: st.DrawFn,
    metrics: Sequence[str],
    palette: _Palette,
    relative: bool,
    windowed: bool = False,
    always_relative: bool = False,
) -> ast.Plateau:
    metric = draw(_watched(metrics) if windowed else _metric(metrics))
    # "improving" follows the name (every pool name has a direction); the explicit words are
    # drawn too, including against the name (a loss "not increasing").
    trend = draw(st.sampled_from(_TRENDS))
    if name_direction(metric.name) is None and trend == "improving":
        trend = "decreasing"
    is_relative = always_relative or (relative and draw(st.integers(0, 2)) == 2)
    delta = draw(st.sampled_from(palette.fractions if is_relative else (0.0, 0.0, *palette.deltas)))
    return ast.Plateau(
        metric=metric,
        trend=trend,
        delta=delta,
        relative=is_relative,
        patience=draw(st.integers(1, 4)),
    )


@st.composite
def _atom(draw: st.DrawFn, metrics: Sequence[str], palette: _Palette, lone: bool = False) -> ast.Condition:
    kind = draw(st.sampled_from(("plateau", "threshold", "plateau", "threshold", "not_finite")))
    if kind == "plateau":
        # A lone absolute plateau is Keras's EarlyStopping: as a condition of ours it is relative.
        plateau = draw(_plateau(metrics, palette, relative=True, windowed=True))
        if lone and not plateau.relative and plateau.metric.window == 1:
            plateau = replace(plateau, relative=True, delta=draw(st.sampled_from(palette.fractions)))
        return plateau
    if kind == "threshold":
        op = draw(st.sampled_from(_COMPARISONS))
        return ast.Threshold(metric=draw(_watched(metrics)), op=op, value=draw(_numbers(palette.values)))
    return ast.NotFinite(metric=draw(_watched(metrics)), nan_only=draw(st.booleans()))


@st.composite
def _condition(draw: st.DrawFn, metrics: Sequence[str], palette: _Palette, depth: int = 2) -> ast.Condition:
    """One atom (half the time at the top), or 2-3 parts joined by "or" (mostly) or "and".

    Parts are atoms, now and then a nested group. Small conditions on purpose: a long "and"
    almost never holds, which would hide every atom inside it.
    """
    top = depth == 2
    if depth == 0 or draw(st.integers(0, 3)) < (2 if top else 3):
        return draw(_atom(metrics, palette, lone=top))
    n = draw(st.integers(2, 3))
    parts: list[ast.Condition] = []
    any_of = draw(st.sampled_from((True, False, True)))
    for _ in range(n):
        part = draw(_condition(metrics, palette, depth - 1))
        # The parser flattens "a or (b or c)" into one group; a same-kind child is spliced in
        # so that generated trees are already in the parser's normal form.
        if (any_of and isinstance(part, ast.AnyOf)) or (not any_of and isinstance(part, ast.AllOf)):
            parts.extend(part.parts)
        else:
            parts.append(part)
    return ast.AnyOf(parts=tuple(parts)) if any_of else ast.AllOf(parts=tuple(parts))


@st.composite
def _stop_when(draw: st.DrawFn, metrics: Sequence[str], palette: _Palette, shape: str | None = None) -> ast.StopWhen:
    # Half Keras's own forms (EarlyStopping, TerminateOnNaN), half conditions of ours; a lone
    # absolute plateau drawn as a "condition" is EarlyStopping too, so conditions lean compound.
    if shape is None:
        shape = draw(
            st.sampled_from(("early_stopping", "condition", "early_stopping", "condition", "terminate_on_nan"))
        )
    if shape == "terminate_on_nan" and "loss" in metrics:
        return ast.StopWhen(condition=ast.NotFinite(metric=ast.Metric(name="loss")))
    if shape == "early_stopping":
        condition: ast.Condition = draw(_plateau(metrics, palette, relative=False))
    elif shape == "relative":
        # A lone "by P%" plateau: whether P% is taken of the best or of the new value decides
        # whether a value landing on the boundary improves.
        # Raw values (no window: an average rarely lands on the boundary), a short patience,
        # metrics logged every epoch (validation_freq thins out val_ ones) where there are some.
        every_epoch = [m for m in metrics if not m.startswith("val_")] or metrics
        plateau = draw(_plateau(every_epoch, palette, relative=True, always_relative=True))
        condition = replace(plateau, patience=min(plateau.patience, 2))
    else:
        condition = draw(_condition(metrics, palette))
    plateaus = ast.plateaus_of(condition)
    plateau_names = sorted({p.metric.name for p in plateaus})
    restore = draw(st.booleans())
    restore_metric: ast.Metric | None = None
    if restore:
        if isinstance(condition, ast.Plateau):
            if draw(st.booleans()):
                restore_metric = ast.Metric(name=condition.metric.name)
        elif len(plateau_names) == 1 and draw(st.booleans()):
            restore_metric = None
        else:
            # Several (or no) plateau metrics: "best" must be named; any pool metric has a
            # direction, and one the condition does not watch gets a tracker of its own.
            choices = tuple(plateau_names) + tuple(m for m in metrics if name_direction(m) is not None)
            restore_metric = ast.Metric(name=draw(st.sampled_from(choices)))
    # (Not in the "by P%" shape: its first values are where a boundary value shows.)
    ignore_first = 0 if shape == "relative" else draw(st.sampled_from((0, 0, 0, 1, 2, 3)))
    baseline: float | None = None
    if isinstance(condition, ast.Plateau) and not condition.relative and condition.metric.window == 1 and draw(
        st.booleans()
    ):
        baseline = draw(_numbers(palette.values))
    return ast.StopWhen(
        condition=condition,
        restore_best=restore,
        restore_metric=restore_metric,
        ignore_first=ignore_first,
        baseline=baseline,
    )


@st.composite
def _stop_after(draw: st.DrawFn, steps_per_epoch: int) -> ast.StopAfter:
    unit = draw(st.sampled_from(_TIME_UNITS))
    amount: float
    if unit == "epochs":
        amount = draw(st.sampled_from(range(1, MAX_EPOCHS + 1)))
    elif unit == "steps":
        # Uniform (st.integers favours the ends, and the top end is rarely reached).
        amount = draw(st.sampled_from(range(1, 4 * steps_per_epoch + 1)))
    elif unit == "s":
        # Whole and fractional seconds; step times are drawn from 0.1/0.25/0.5/1/1.5 s, so
        # budgets hit exactly at a step end (elapsed == budget) as well as between two, and
        # 0.8 / 1 against steps of 0.1 s is where a running sum (0.7999999999999999 after 8
        # steps) and k * 0.1 (0.8) part ways.
        amount = draw(st.sampled_from((1, 2, 0.8, 0.9, 2.5, 0.75)))
    elif unit == "min":
        amount = draw(st.sampled_from((0.05, 0.025)))  # 3 s, 1.5 s
    else:
        amount = draw(st.sampled_from((0.001, 0.0005)))  # 3.6 s, 1.8 s
    return ast.StopAfter(amount=amount, unit=unit)


@st.composite
def _train_at_least(draw: st.DrawFn, steps_per_epoch: int) -> ast.TrainAtLeast:
    """A minimum inside the histories' length (so stops are both held back and allowed)."""
    if draw(st.booleans()):
        return ast.TrainAtLeast(amount=draw(st.sampled_from(range(1, MAX_EPOCHS))), unit="epochs")
    return ast.TrainAtLeast(amount=draw(st.sampled_from(range(1, 3 * steps_per_epoch + 2))), unit="steps")


def _within_budgets(rules: tuple[ast.Rule, ...]) -> tuple[ast.Rule, ...]:
    """A minimum lowered to the shortest budget in its unit (a longer minimum is a validation error)."""
    budgets = [r for r in rules if isinstance(r, ast.StopAfter)]
    out = []
    for r in rules:
        if isinstance(r, ast.TrainAtLeast):
            shorter = [int(b.amount) for b in budgets if b.unit == r.unit and b.amount < r.amount]
            r = replace(r, amount=min(shorter)) if shorter else r
        out.append(r)
    return tuple(out)


def _suffix(weights_only: bool) -> str:
    return ".weights.h5" if weights_only else ".keras"


@st.composite
def _epoch_path(draw: st.DrawFn, budget: _Budget, stem: str, weights_only: bool, need_epoch: bool) -> ast.Path:
    """A checkpoint path in a subfolder, with {epoch} / metric placeholders as Keras formats them."""
    name = budget.name(stem)
    options = ["{epoch}", "{epoch:03d}", "e{epoch:02d}-{val_loss:.4f}"]
    if not need_epoch:
        options += ["", "", "{loss:.3f}"]
    template = draw(st.sampled_from(options))
    if "val_loss" in template:
        budget.placeholders.add("val_loss")
    if "{loss" in template:
        budget.placeholders.add("loss")
    sep = "-" if template else ""
    return ast.Path(value=f"ckpt/{name}{sep}{template}{_suffix(weights_only)}")


@st.composite
def _save_rule(
    draw: st.DrawFn,
    metrics: Sequence[str],
    palette: _Palette,
    budget: _Budget,
    steps_per_epoch: int,
    only: str | None = None,
) -> ast.Rule:
    kind = only or draw(st.sampled_from(("best", "top", "best", "top", "every", "every_n", "steps", "last")))
    weights_only = draw(st.booleans())
    direction = draw(st.sampled_from(_DIRECTIONS))
    if kind == "best":
        metric = draw(_metric(metrics))
        path: ast.Path | None
        if weights_only not in budget.has_default_best and draw(st.booleans()):
            budget.has_default_best.add(weights_only)
            path = None  # checkpoints/best.keras or checkpoints/best.weights.h5
        else:
            path = draw(_epoch_path(budget, "best", weights_only, need_epoch=False))
        threshold: ast.BestThreshold | None = None
        if draw(st.booleans()):
            # ModelCheckpoint's initial_value_threshold: the side the metric's direction allows.
            side: ast.Side = "below" if (direction or name_direction(metric.name) or "min") == "min" else "above"
            threshold = ast.BestThreshold(side=side, value=draw(_numbers(palette.values)))
        return ast.SaveBest(
            metric=metric, direction=direction, path=path, weights_only=weights_only, threshold=threshold
        )
    if kind == "top":
        # Under its own focus k >= 2: a ranking of two or three is where ties and age decide.
        return ast.SaveTop(
            k=draw(st.sampled_from((2, 3) if only == "top" else (2, 1, 3, 2))),
            metric=draw(_metric(metrics)),
            direction=direction,
            path=draw(_epoch_path(budget, "top", weights_only, need_epoch=True)),
            weights_only=weights_only,
        )
    if kind == "every":
        return draw(
            _keep_last(
                ast.SaveEvery(
                    path=draw(_epoch_path(budget, "every", weights_only, need_epoch=False)), weights_only=weights_only
                )
            )
        )
    if kind == "every_n":
        return draw(
            _keep_last(
                ast.SaveEvery(
                    every=draw(st.integers(2, 3)),
                    path=draw(_epoch_path(budget, "every", weights_only, need_epoch=False)),
                    weights_only=weights_only,
                )
            )
        )
    if kind == "time":
        # Time-based saves: intervals met exactly at a step end (1 s after two 0.5 s steps) and
        # between two, and 0.8 s against 0.1 s steps, where a running sum of readings lands just
        # short (0.7999999999999999); {epoch} and {batch} tell the writes apart.
        unit: ast.ClockUnit = draw(st.sampled_from(("s", "s", "s", "min")))
        amount = draw(st.sampled_from((1, 0.8, 2, 0.75, 1.5))) if unit == "s" else draw(st.sampled_from((0.025, 0.05)))
        template = draw(st.sampled_from(("-{epoch}-{batch}", "-{epoch}", "")))
        return ast.SaveTimed(
            amount=amount,
            unit=unit,
            path=ast.Path(value=f"ckpt/{budget.name('time')}{template}{_suffix(weights_only)}"),
            weights_only=weights_only,
        )
    if kind == "steps":
        # Batch-level saves format the batch logs, which hold no validation metrics: only
        # {epoch} and {batch} (both 1-based) are safe placeholders.
        name = budget.name("steps")
        template = draw(st.sampled_from(("", "-{epoch}-{batch}", "-{batch:02d}")))
        return draw(
            _keep_last(
                ast.SaveEvery(
                    every=draw(st.integers(1, 2 * steps_per_epoch + 1)),
                    unit="steps",
                    path=ast.Path(value=f"ckpt/{name}{template}{_suffix(weights_only)}"),
                    weights_only=weights_only,
                )
            )
        )
    return ast.SaveLast(path=ast.Path(value=f"ckpt/{budget.name('last')}{_suffix(weights_only)}"), weights_only=weights_only)


@st.composite
def _keep_last(draw: st.DrawFn, rule: ast.SaveEvery) -> ast.SaveEvery:
    """Three times in four ``keep last K`` (K 1-3), where the path tells the saves apart (``{epoch}``, or
    ``{batch}`` for step saves; ``{batch}`` alone repeats across epochs, which retention must handle)."""
    names = rule.path.value
    if "{epoch" not in names and not (rule.unit == "steps" and "{batch" in names):
        return rule
    keep = draw(st.sampled_from((None, 1, 2, 3)))
    return rule if keep is None else replace(rule, keep=keep)


@st.composite
def _reduce_lr(
    draw: st.DrawFn, metrics: Sequence[str], palette: _Palette, initial_lr: float, shape: str | None = None
) -> ast.ReduceLR:
    factor = draw(st.sampled_from((0.5, 0.1, 0.2, 0.3, 0.9, 0.25)))
    if shape == "repeated":
        # Cuts one after another: a short patience, a cooldown, a floor the first cut reaches or
        # passes (then a due cut cuts nothing), mostly restoring the best weights at each cut.
        plateau = draw(_plateau(metrics, palette, relative=False))
        return ast.ReduceLR(
            factor=factor,
            when=replace(plateau, patience=min(plateau.patience, 2)),
            cooldown=draw(st.integers(1, 2)),
            min_lr=draw(st.sampled_from((initial_lr * factor, initial_lr * factor * 1.5, 0.0))),
            restore_best=draw(st.sampled_from((True, True, False))),
        )
    # min lr: none; one the first reduction lands on exactly (float32(lr) == float32(min_lr)
    # then blocks the next); or ones a first or second reduction overshoots, so max(.., min_lr)
    # clamps.
    min_lr = draw(
        st.sampled_from((0.0, initial_lr * factor, initial_lr / 3, 0.0, initial_lr * factor * 1.5, initial_lr * 0.7))
    )
    return ast.ReduceLR(
        factor=factor,
        when=draw(_plateau(metrics, palette, relative=False)),
        cooldown=draw(st.integers(0, 3)),
        min_lr=min_lr,
        restore_best=draw(st.booleans()),
    )


@st.composite
def _lr_reader(draw: st.DrawFn, initial_lr: float) -> ast.StopWhen:
    """``stop when learning_rate < X``: X at the starting rate (exactly, or its float32 rounding,
    which equals the logged value), or at a rate a reduction or schedule reaches."""
    value = draw(st.sampled_from((initial_lr, f32(initial_lr), initial_lr * 0.5, initial_lr * 0.3, 0.005)))
    ops: tuple[ast.Comparison, ...] = ("<", "<=", "<", ">")
    op = draw(st.sampled_from(ops))
    return ast.StopWhen(condition=ast.Threshold(metric=ast.Metric(name="learning_rate"), op=op, value=value))


@st.composite
def _schedule(draw: st.DrawFn) -> ast.Schedule:
    targets = st.sampled_from((0.01, 0.001, 0.1, 0.005, 0.002))
    segments: list[ast.Segment] = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(("warmup", "cosine", "decay", "linear", "hold", "milestones")))
        over = ast.Span(float(draw(st.integers(1, 4))))
        if kind == "warmup":
            segments.append(ast.Warmup(target=draw(targets), over=over))
        elif kind == "cosine":
            restart = draw(st.none() | st.integers(1, 3).map(lambda n: ast.Span(float(n))))
            segments.append(ast.Cosine(target=draw(targets), over=over, restart=restart))
        elif kind == "linear":
            segments.append(ast.Linear(target=draw(targets), over=over))
        elif kind == "hold":
            segments.append(ast.Hold(over=over))
        elif kind == "milestones":
            at = sorted(draw(st.sets(st.integers(1, 5), min_size=1, max_size=3)))
            segments.append(ast.Milestones(factor=draw(st.sampled_from((0.5, 0.1))), at=tuple(at)))
            break
        else:
            # Decay never ends: it closes the chain.
            factor = draw(st.sampled_from((0.5, 0.1, 0.9, 0.3)))
            segments.append(ast.Decay(factor=factor, every=draw(st.integers(1, 3)), smooth=draw(st.booleans())))
            break
    return ast.Schedule(segments=tuple(segments))


@st.composite
def _step_span(draw: st.DrawFn, steps_per_epoch: int) -> ast.Span:
    """A segment length for a schedule counted in steps: mostly steps (a segment may end inside
    an epoch), sometimes a share of training (rounded up to whole steps) or whole epochs."""
    unit = draw(st.sampled_from(("steps", "steps", "percent", "epochs")))
    if unit == "steps":
        return ast.Span(float(draw(st.integers(1, 3 * steps_per_epoch + 1))), "steps")
    if unit == "percent":
        return ast.Span(draw(st.sampled_from((25.0, 10.0, 50.0, 12.5, 33.0))), "percent")
    return ast.Span(float(draw(st.integers(1, 3))))


@st.composite
def _step_schedule(draw: st.DrawFn, steps_per_epoch: int, finite: bool = False) -> ast.Schedule:
    """A schedule counted in optimizer steps (its first segment always is, so the whole chain is):
    every segment kind, lengths in steps, percentages or epochs, restarts and decays every N steps,
    milestones at steps, inverse sqrt after a warm-up. ``finite``: one or two segments that end
    (a warm-up, cosine, linear or hold), so the rate is handed over inside the run."""
    targets = st.sampled_from((0.01, 0.001, 0.1, 0.005, 0.002))
    segments: list[ast.Segment] = []
    ending = ("warmup", "cosine", "linear", "hold")
    every_kind = (*ending, "decay", "milestones", "inverse_sqrt")
    for i in range(draw(st.integers(1, 2 if finite else 3))):
        kind = draw(st.sampled_from(ending if finite else every_kind))
        if kind == "warmup":
            segments.append(ast.Warmup(target=draw(targets), over=draw(_step_span(steps_per_epoch))))
        elif kind == "cosine":
            restart = draw(st.none() | st.integers(1, 2 * steps_per_epoch + 1).map(lambda n: ast.Span(float(n), "steps")))
            segments.append(ast.Cosine(target=draw(targets), over=draw(_step_span(steps_per_epoch)), restart=restart))
        elif kind == "linear":
            segments.append(ast.Linear(target=draw(targets), over=draw(_step_span(steps_per_epoch))))
        elif kind == "hold":
            segments.append(ast.Hold(over=draw(_step_span(steps_per_epoch))))
        elif kind == "milestones":
            at = sorted(draw(st.sets(st.integers(1, 4 * steps_per_epoch), min_size=1, max_size=3)))
            segments.append(ast.Milestones(factor=draw(st.sampled_from((0.5, 0.1))), at=tuple(at), unit="steps"))
            break
        elif kind == "inverse_sqrt" and i > 0:
            # Decays from where the segment before ended: never first.
            segments.append(ast.InverseSqrt())
            break
        else:
            # Decay never ends: it closes the chain.
            factor = draw(st.sampled_from((0.5, 0.1, 0.9, 0.3)))
            every = draw(st.integers(1, 2 * steps_per_epoch + 1))
            segments.append(ast.Decay(factor=factor, every=every, unit="steps", smooth=draw(st.booleans())))
            break
    schedule = ast.Schedule(segments=tuple(segments))
    if not ast.counts_steps(schedule):
        # Every length came out in epochs: count the first segment's length in steps instead.
        first = segments[0]
        assert isinstance(first, ast.Warmup | ast.Cosine | ast.Linear | ast.Hold)
        steps = ast.Span(first.over.count * steps_per_epoch, "steps")
        schedule = ast.Schedule(segments=(replace(first, over=steps), *segments[1:]))
    return schedule


@st.composite
def _rule(
    draw: st.DrawFn,
    metrics: Sequence[str],
    palette: _Palette,
    budget: _Budget,
    initial_lr: float,
    steps_per_epoch: int,
    kinds: Sequence[str],
) -> ast.Rule:
    # One learning-rate rule per policy (two would fight over the lr, a validation error), but a
    # finite schedule may be followed by `multiply lr ... when`, which takes the rate over at its end.
    def allowed(k: str) -> bool:
        lr_kind = k.partition(":")[0]
        if lr_kind == "schedule":
            return not budget.has_lr_rule
        if lr_kind == "reduce_lr":
            return not budget.has_lr_rule or budget.hands_over
        return not (k == "log_lr" and budget.logs_lr)

    choices = [k for k in kinds if allowed(k)] or ["stop_after"]
    kind = draw(st.sampled_from(choices))
    if kind == "stop_when":
        return draw(_stop_when(metrics, palette))
    if kind.startswith("stop_when:"):
        stop = draw(_stop_when(metrics, palette, kind.partition(":")[2]))
        if isinstance(stop.condition, ast.Plateau) and stop.condition.relative:
            budget.from_start.add(stop.condition.metric.name)
        return stop
    if kind == "fail_when" and "loss" in metrics:
        return ast.FailWhen(condition=ast.NotFinite(metric=ast.Metric(name="loss")))
    if kind == "train_at_least" and not budget.has_minimum:
        budget.has_minimum = True
        return draw(_train_at_least(steps_per_epoch))
    if kind in ("stop_after", "fail_when", "train_at_least"):
        return draw(_stop_after(steps_per_epoch))
    if kind == "save":
        return draw(_save_rule(metrics, palette, budget, steps_per_epoch))
    if kind.startswith("save:"):
        save = draw(_save_rule(metrics, palette, budget, steps_per_epoch, kind.partition(":")[2]))
        if isinstance(save, ast.SaveTop):
            budget.from_start.add(save.metric.name)
        return save
    if kind == "reduce_lr" or kind.startswith("reduce_lr:"):
        budget.has_lr_rule, budget.hands_over = True, False
        return draw(_reduce_lr(metrics, palette, initial_lr, kind.partition(":")[2] or None))
    if kind.startswith("schedule"):
        # "schedule:steps": counted in optimizer steps; "schedule:handover": that, and finite.
        shape = kind.partition(":")[2]
        schedule = draw(_step_schedule(steps_per_epoch, shape == "handover") if shape else _schedule())
        budget.has_lr_rule = True
        budget.hands_over = not isinstance(schedule.segments[-1], ast.OPEN_ENDED)
        return schedule
    if kind == "log_csv":
        # Sometimes in a folder that does not exist yet: the compiled rule must create it
        # (Keras's CSVLogger alone would raise FileNotFoundError at train begin).
        folder = draw(st.sampled_from(("", "", "logs/", "runs/csv/")))
        return ast.LogCSV(path=ast.Path(value=f"{folder}{budget.name('train')}.csv"), append=draw(st.booleans()))
    if kind == "log_lr":
        budget.logs_lr = True
        return ast.LogLR()
    if kind == "tensorboard":
        return ast.LogTensorBoard(path=ast.Path(value=f"logs/{budget.name('tb')}"))
    steps = draw(st.sampled_from((None, None, 1, 2, 5)))
    return ast.Backup(path=ast.Path(value=f"backup/{budget.name('b')}"), steps=steps)


# How often each kind of rule is drawn: the decision-making rules dominate; logging and
# backup rules are there to show they change nothing. TensorBoard is drawn only where the
# tensorboard package is installed: without it Keras's TensorBoard callback raises
# TBNotInstalledError at the first epoch end (tensorflow-cpu does not pull it in).
RULE_KINDS: tuple[str, ...] = (
    "stop_when",
    "stop_when",
    "stop_when",
    "stop_after",
    "stop_after",
    "fail_when",
    "train_at_least",
    "save",
    "save",
    "save",
    "reduce_lr",
    "reduce_lr",
    "schedule",
    "log_csv",
    "log_lr",
    "backup",
) + (("tensorboard",) if importlib.util.find_spec("tensorboard") is not None else ())


@dataclass(frozen=True)
class _Drawn:
    policy: ast.Policy
    placeholders: frozenset[str]
    from_start: frozenset[str] = frozenset()


@st.composite
def _policy_and_placeholders(
    draw: st.DrawFn,
    metrics: Sequence[str],
    max_rules: int,
    palette: _Palette,
    initial_lr: float,
    steps_per_epoch: int,
    kinds: Sequence[str],
    first_kind: str | None = None,
) -> _Drawn:
    budget = _Budget()
    # A focus names the kind of the first rule, or of the first few ("a+b": a rule of kind a,
    # then one of kind b, for a rule that shows only next to another).
    firsts = tuple(first_kind.split("+")) if first_kind else ()
    # Uniform over 1..max_rules (st.integers favours the ends); shrinks towards the fewest rules.
    n = draw(st.sampled_from(range(max(1, len(firsts)), max_rules + 1)))
    drawn = tuple(
        draw(_rule(metrics, palette, budget, initial_lr, steps_per_epoch, (firsts[i],) if i < len(firsts) else kinds))
        for i in range(n)
    )
    if budget.logs_lr:
        # What `log lr` writes is only visible to a rule reading it: a threshold on the rate, at any
        # place in the text (before `log lr`, before or after an lr rule that also writes it).
        # It takes the place of another rule when the policy is already at max_rules.
        # The focus's rules keep their place.
        full = len(drawn) >= max_rules
        others = [i for i, rule in enumerate(drawn) if not isinstance(rule, ast.LogLR) and i >= len(firsts)]
        if full and not others:
            pass  # a lone `log lr` under max_rules=1: nothing reads it
        else:
            # Mostly first: before the lr rule, which would otherwise write the key itself.
            anywhere = others if full else list(range(len(drawn) + 1))
            where = draw(st.sampled_from((anywhere[0], *anywhere)))
            drawn = (*drawn[:where], draw(_lr_reader(initial_lr)), *drawn[where + full :])
    # Construct, then set ``source`` to the canonical text so a later error can show the line.
    drawn = _within_budgets(drawn)
    bare = ast.Policy(rules=drawn)
    return _Drawn(
        ast.Policy(rules=drawn, source=format_policy(bare)), frozenset(budget.placeholders), frozenset(budget.from_start)
    )


def policies(
    metrics: Sequence[str] = METRICS,
    *,
    max_rules: int = MAX_RULES,
    deltas: Sequence[float] = DELTAS,
    fractions: Sequence[float] = FRACTIONS,
    values: Sequence[float] = (),
    initial_lr: float = 0.001,
    steps_per_epoch: int = 1,
    kinds: Sequence[str] = RULE_KINDS,
) -> st.SearchStrategy[ast.Policy]:
    """Valid policies (they pass :func:`policy.validate.validate`) of 1 to ``max_rules`` rules.

    Args:
        metrics: the metric names rules may watch. Names should say their direction
            (``val_loss``, ``val_accuracy``): checkpoints and ``restore best`` need one.
        deltas: min_delta values plateaus draw from.
        fractions: relative thresholds (``by P%`` is ``P / 100``) plateaus draw from.
        values: numbers thresholds and baselines are drawn around (the history's values
            give exact ties; their float32 roundings and neighbours are added).
        initial_lr: the learning rate ``min lr`` values are chosen relative to.
        steps_per_epoch: batches per epoch, for step budgets and step checkpoints.
        kinds: which rule kinds to draw (a subset of ``RULE_KINDS``; repeats weight them), or
            ``"schedule:steps"``: a schedule counted in optimizer steps (lengths in steps or in %
            of training), which cases() draws under a focus of its own.

    Paths are distinct per rule and live in subfolders (``ckpt/``, ``logs/``, ``backup/``);
    checkpoint paths use ``{epoch}``, ``{batch}``, ``{val_loss:.4f}`` and ``{loss:.3f}``.
    """
    palette = _Palette(tuple(deltas), tuple(fractions), tuple(values))
    return _policy_and_placeholders(metrics, max_rules, palette, initial_lr, steps_per_epoch, kinds).map(
        lambda d: d.policy
    )


def rules(metrics: Sequence[str] = METRICS, kinds: Sequence[str] = RULE_KINDS) -> st.SearchStrategy[ast.Rule]:
    """Single valid rules (the one rule of a one-rule policy)."""
    return policies(metrics, max_rules=1, kinds=kinds).map(lambda p: p.rules[0])


def policy_texts(metrics: Sequence[str] = METRICS, *, max_rules: int = MAX_RULES) -> st.SearchStrategy[str]:
    """The canonical text of generated policies (what ``format_policy`` prints)."""
    return policies(metrics, max_rules=max_rules).map(lambda p: p.source)


# --------------------------------------------------------------------------- whole cases


# What cases() puts first: "mix" (no focus) about half the time, else one rule kind or stop shape
# ("kind:shape"), or the first few rules ("a+b"). Repeats weight them.
_FOCI: tuple[str, ...] = (
    "mix",
    "stop_when:early_stopping",
    "mix",
    "stop_when:condition",
    "mix",
    "stop_when:terminate_on_nan",
    "mix",
    "stop_after",
    "mix",
    "fail_when",
    "mix",
    # A minimum shows only when it holds back a stop: one follows it.
    "train_at_least+stop_when:condition",
    "mix",
    "save",
    "mix",
    # Step saves count batches across epochs and hook calls (steps_per_execution): their own share.
    "save:steps",
    "mix",
    "save:time",
    "mix",
    # Cut after cut: cooldowns, a floor reached, best weights restored at each cut.
    "reduce_lr:repeated",
    "mix",
    "schedule",
    # Schedules counted in optimizer steps (lengths in steps or % of training).
    "schedule:steps",
    # Rarely met in a mix, so each has a share of its own: "by P%" plateaus, top-k rankings.
    "stop_when:relative",
    "save:top",
    # A finite step schedule handing the rate over to a plateau rule (cuts dropped before its end).
    "schedule:handover+reduce_lr:repeated",
    # Top-k mistakes (which of two ranked files goes) show in few of even these cases: a double share.
    "save:top",
)


def _foci_within(kinds: Sequence[str]) -> tuple[str, ...]:
    """The foci whose rules are all of ``kinds`` (a caller leaving a kind out gets none of it)."""
    return tuple(f for f in _FOCI if f == "mix" or all(part.split(":")[0] in kinds for part in f.split("+")))


@dataclass(frozen=True, kw_only=True)
class Case(FitArgs):
    """Everything one differential run needs: a policy and the training it watches.

    ``history`` holds one dict of logs per epoch the script can run (training may stop
    earlier); ``batch_losses[e][b]`` is the running training loss Keras reports after batch
    ``b`` of epoch ``e`` (its last entry equals the epoch's ``loss`` when that is logged);
    ``step_seconds`` is how long every training step takes on the scripted clock. With
    ``validation_freq``, ``val_*`` keys appear only on the epochs that validate; ``history[0]``
    is epoch ``initial_epoch``.
    """

    policy: ast.Policy
    history: History

    @property
    def text(self) -> str:
        """The policy's canonical text."""
        return format_policy(self.policy)

    @property
    def strict(self) -> bool:
        """Whether the case runs with the strict first-epoch metric check.

        Strict fails at epoch 0 when a watched metric is not logged yet (both the reference and
        the compiled policy model that check); with late-appearing metrics the case runs
        non-strict, so it still exercises what each rule does with a metric that turns up late.
        """
        first = {k for k in self.history[0] if not k.startswith("val_")}
        validated = next((set(logs) for logs in self.history if any(k.startswith("val_") for k in logs)), set())
        return all(
            {k for k in logs if not k.startswith("val_")} <= first
            and {k for k in logs if k.startswith("val_")} <= validated
            for logs in self.history
        )

    def run_options(self) -> dict[str, Any]:
        """The keyword arguments ``simulate`` and ``run_in_keras`` both take for this case: its
        :class:`~policy.logs.FitArgs`, and ``strict``."""
        fit = {f.name: getattr(self, f.name) for f in fields(FitArgs)}
        return {**fit, "strict": self.strict}

    def key(self) -> tuple[object, ...]:
        """A hashable identity of the case (for caching real-Keras outcomes)."""
        return (
            self.text,
            repr(self.history),
            self.initial_lr,
            self.steps_per_epoch,
            repr(self.batch_losses),
            self.step_seconds,
            self.validation_freq,
            self.steps_per_execution,
            self.initial_epoch,
        )


def _aims(policy: ast.Policy, metrics: Sequence[str], palette: _Palette) -> dict[str, Aims]:
    """For each metric, the boundaries of the rules that watch it (see :class:`Aims`)."""
    deltas: dict[str, set[float]] = {}
    fractions: dict[str, set[float]] = {}
    targets: dict[str, set[float]] = {m: set() for m in metrics}
    direction: dict[str, ast.Direction] = {}
    nonfinite: set[str] = set()
    # Metrics a top-k rule ranks: ties and values worse than the newest are what it sorts.
    ranked: set[str] = set()

    def plateau(p: ast.Plateau) -> None:
        name = p.metric.name
        (fractions if p.relative else deltas).setdefault(name, set()).add(p.delta)
        found = trend_direction(name, p.trend)
        if found is not None:
            direction.setdefault(name, found)

    for rule in policy.rules:
        if isinstance(rule, ast.StopWhen):
            for atom in ast.atoms(rule.condition):
                if isinstance(atom, ast.Plateau):
                    plateau(atom)
                    if rule.baseline is not None:
                        targets.setdefault(atom.metric.name, set()).add(rule.baseline)
                elif isinstance(atom, ast.Threshold):
                    targets.setdefault(atom.metric.name, set()).add(atom.value)
                else:
                    nonfinite.add(atom.metric.name)
        elif isinstance(rule, ast.ReduceLR):
            plateau(rule.when)
        elif isinstance(rule, ast.SaveBest | ast.SaveTop):
            if isinstance(rule, ast.SaveTop):
                ranked.add(rule.metric.name)
            if rule.direction is not None:
                direction.setdefault(rule.metric.name, rule.direction)
            if isinstance(rule, ast.SaveBest) and rule.threshold is not None:
                targets.setdefault(rule.metric.name, set()).add(rule.threshold.value)
    return {
        m: Aims(
            deltas=tuple(sorted(deltas.get(m, set()) | set(palette.deltas))),
            fractions=tuple(sorted(fractions.get(m, set()))),
            targets=tuple(sorted(targets.get(m, set()))),
            direction=direction.get(m),
            nonfinite=m in nonfinite,
            plateau=m in deltas or m in fractions or m in ranked,
        )
        for m in metrics
    }


@st.composite
def _batch_losses(draw: st.DrawFn, history: History, steps_per_epoch: int) -> tuple[tuple[float, ...], ...]:
    """Running training losses per batch, ending on each epoch's logged ``loss``."""
    out: list[tuple[float, ...]] = []
    for logs in history:
        final = logs.get("loss", 1.0)
        earlier = [
            draw(
                st.sampled_from(
                    (final, final + 0.1, final * 2 if math.isfinite(final) else 1.0, math.nan, math.inf, -math.inf)
                )
            )
            for _ in range(steps_per_epoch - 1)
        ]
        # A running average that went NaN stays NaN unless the epoch-end value says otherwise;
        # non-finite values in the middle model one bad batch that TerminateOnNaN must see.
        out.append((*earlier, final))
    return tuple(out)


@st.composite
def cases(
    draw: st.DrawFn,
    metrics: Sequence[str] = METRICS,
    *,
    max_rules: int = MAX_RULES,
    max_epochs: int = MAX_EPOCHS,
    kinds: Sequence[str] = RULE_KINDS,
) -> Case:
    """A policy plus a history, learning rate, batches, batch losses and step time that fit.

    The policy is drawn first; then each metric's trace aims at the rules watching it (their
    min_deltas, relative thresholds, thresholds and baselines, exactly and one float32 either
    side; more non-finite values under ``is not finite``). Every watched metric is logged,
    some only from a later epoch (what a missing-then-present metric looks like in Keras).
    """
    # Half the cases are a free mix of rules; the other half put one kind of rule first (the
    # rest mixed), so that every kind gets its share of a small budget however Hypothesis's
    # generator happens to wander. The mix comes first in the list: shrinking goes there.
    focus = draw(st.sampled_from(_foci_within(kinds)))
    first_kind = None if focus == "mix" else focus
    least_epochs = 1 if focus == "mix" else min(3, max_epochs)
    steps_per_epoch = draw(st.integers(1, MAX_STEPS_PER_EPOCH))
    initial_lr = draw(st.sampled_from(LEARNING_RATES))
    deltas = tuple(draw(st.lists(st.sampled_from(DELTAS), min_size=1, max_size=3, unique=True)))
    fractions = (draw(st.sampled_from(PERCENTS)) / 100.0,)
    n_epochs = draw(st.sampled_from(range(least_epochs, max_epochs + 1)))  # uniform; shrinks to the least
    pool = tuple(draw(st.lists(st.sampled_from(tuple(metrics)), min_size=1, max_size=3, unique=True)))
    if "loss" in metrics and "loss" not in pool and draw(st.booleans()):
        # Keras always logs "loss", and TerminateOnNaN watches only it: keep it common.
        pool = (*pool, "loss")
    palette = _Palette(deltas, fractions, _THRESHOLDS)
    drawn = draw(_policy_and_placeholders(pool, max_rules, palette, initial_lr, steps_per_epoch, kinds, first_kind))
    # "loss" and "val_loss" always exist in a real fit's epoch logs, and placeholders name
    # metrics that must be in every epoch's logs (else Keras raises KeyError).
    always = sorted({m for m in pool if m in ("loss", "val_loss")} | drawn.placeholders | drawn.from_start)
    names = tuple(pool) + tuple(sorted(drawn.placeholders - set(pool)))
    history = draw(_history(n_epochs, _aims(drawn.policy, names, palette), always, late=True))
    needs_batches = steps_per_epoch > 1 or any(
        isinstance(r, ast.StopWhen | ast.FailWhen) and r.condition == ast.NotFinite(metric=ast.Metric(name="loss"))
        for r in drawn.policy.rules
    )
    batch_losses = draw(_batch_losses(history, steps_per_epoch)) if needs_batches else None
    timed = any(
        (isinstance(r, ast.StopAfter) and r.unit in ("s", "min", "h")) or isinstance(r, ast.SaveTimed)
        for r in drawn.policy.rules
    )
    step_seconds = draw(st.sampled_from((0.5, 0.1, 1.0, 0.1, 1.5, 0.25))) if timed else None
    # torch's fit refuses steps_per_execution > 1 (the reference models that): not worth a draw there.
    multi_step = FACTS[default_backend()].multi_step_execution
    # The fit arguments people use, mostly at their defaults (the first value is what shrinking
    # goes to): validation every k epochs, k batches per hook call, a run starting at epoch e0.
    fit = FitArgs(
        initial_lr=initial_lr,
        steps_per_epoch=steps_per_epoch,
        batch_losses=batch_losses,
        step_seconds=step_seconds,
        validation_freq=draw(st.sampled_from(FIT_VALIDATION_FREQS)),
        # Step saves mostly with several batches per hook call under their own focus: what the
        # count of batches between saves must see through.
        steps_per_execution=(
            draw(st.sampled_from((2, 3, 1) if focus == "save:steps" else FIT_STEPS_PER_EXECUTION)) if multi_step else 1
        ),
        initial_epoch=draw(st.sampled_from(FIT_INITIAL_EPOCHS)),
    )
    if fit.validation_freq > 1:
        # Keras logs val_ metrics only after the epochs that validate: (epoch + 1) % k == 0.
        history = [
            {k: v for k, v in logs.items() if (fit.initial_epoch + i + 1) % fit.validation_freq == 0 or not k.startswith("val_")}
            for i, logs in enumerate(history)
        ]
    return Case(policy=drawn.policy, history=history, **vars(fit))
