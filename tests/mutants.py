"""Deliberately wrong references: each one classic mistake, to prove the differential tests bite.

Every mutant subclasses :class:`policy.reference.semantics.Semantics` and overrides exactly ONE
decision primitive with a mistake someone writing a Keras-compatible simulator could plausibly
make (or that a later Keras release makes on purpose: ``ResetWaitOnAnyImprovement`` is keras PR
23559). ``tests/test_mutants_caught.py`` requires the differential search, at its default budget,
to find a case where each mutant's prediction differs from what real Keras does.

One classic mistake is deliberately absent because no :class:`~policy.outcome.Outcome` can
show it (an equivalent mutant, checked by hand): ``min_lr`` compared in float64 (``lr > min_lr``
instead of ``lr > float32(min_lr)``). The two differ only when ``lr == float32(min_lr)``, and
then the "reduction" computes ``max(lr * factor, min_lr)``, which rounds back to the same lr;
the wait and cooldown it resets can never matter again because the lr cannot go lower.

Top-k deletion mistakes (which file a tie drops, forgetting to delete, deleting a file another
kept epoch still uses) change only which files are left, so they are visible through
``Outcome.files``. "Top-k deletes a file it did not write" has no reference mutant: every epoch a
top-k rule drops entered by writing its file in this run. The callback side of it (a file that
was in the folder before ``fit``) is checked by ``test_top_k_leaves_files_it_did_not_write``.

A mutant is wrong relative to a backend. Most mistakes are mistakes everywhere; the backend
facts (:mod:`policy.reference.backends`) come as pairs of mutants, each wrong on some backends
and right on the others (its ``wrong_on``): keeping subnormals is the truth on torch and a
mistake on TensorFlow and JAX, flushing them the reverse; an over-range value raising is the
truth on TensorFlow only.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence

from policy import ast
from policy.reference.backends import BACKENDS, Backend
from policy.reference.semantics import FLT_MIN_NORMAL, KerasWouldRaise, Semantics, beyond_f32, round_f32


class Float64Comparisons(Semantics):
    """Monitors compared in float64: ``1.0`` then ``1.0 - 1e-9`` becomes an improvement."""

    name = "float64-comparisons"

    def to_f32(self, x: float) -> float:
        return x


class RoundThenSubtract(Semantics):
    """``value - min_delta`` computed on float32-rounded operands instead of in float64 first."""

    name = "round-then-subtract"

    def shifted(self, value: float, delta: float, direction: ast.Direction) -> float:
        return round_f32(round_f32(value) - round_f32(self.signed_delta(delta, direction)))


class NoSubnormalFlush(Semantics):
    """Float32 comparisons as NumPy does them, keeping subnormals (TensorFlow's and JAX's CPU
    kernels flush them; torch keeps them, so there this is no mistake)."""

    name = "no-subnormal-flush"
    wrong_on = ("tensorflow", "jax")

    def to_f32(self, x: float) -> float:
        return round_f32(x)


class FlushOnEveryBackend(Semantics):
    """Subnormals flushed to zero on every backend, as TensorFlow does (torch compares them)."""

    name = "flush-on-every-backend"
    wrong_on = ("torch",)

    def to_f32(self, x: float) -> float:
        y = round_f32(x)
        return math.copysign(0.0, y) if y != 0.0 and abs(y) < FLT_MIN_NORMAL else y


class OverflowNeverRaises(Semantics):
    """An over-range value rounds to inf in Keras's monitors on every backend (TensorFlow raises)."""

    name = "overflow-never-raises"
    wrong_on = ("tensorflow",)

    def converts(self, x: float) -> None:
        return None


class OverflowRaisesEverywhere(Semantics):
    """An over-range value makes Keras's monitors raise on every backend, as under TensorFlow
    (JAX and torch round it to inf)."""

    name = "overflow-raises-everywhere"
    wrong_on = ("jax", "torch")

    def converts(self, x: float) -> None:
        if beyond_f32(x):
            raise KerasWouldRaise.because(f"{x!r} does not fit in float32")


class MinDeltaWrongSign(Semantics):
    """min_delta added the wrong way: a smaller improvement than asked for counts."""

    name = "min-delta-wrong-sign"

    def signed_delta(self, delta: float, direction: ast.Direction) -> float:
        return abs(delta) if direction == "min" else -abs(delta)


class NaNImproves(Semantics):
    """A NaN value counts as an improvement (and becomes the best)."""

    name = "nan-improves"

    def improves(self, value: float, best: float | None, delta: float, direction: ast.Direction) -> bool:
        return math.isnan(value) or super().improves(value, best, delta, direction)


class RelativeFromValue(Semantics):
    """``by P%`` measured from the new value instead of from the best so far."""

    name = "relative-from-value"

    def relative_improves(self, value: float, best: float | None, fraction: float, direction: ast.Direction) -> bool:
        if best is None:
            return True
        margin = abs(value) * fraction
        bound = best - margin if direction == "min" else best + margin
        return self.better(value, bound, direction)


class PatienceOffByOne(Semantics):
    """EarlyStopping fires at ``wait > patience``: one epoch late."""

    name = "patience-off-by-one"

    def early_stop_fires(self, wait: int, patience: int, epoch: int) -> bool:
        return wait > patience and epoch > 0


class ResetWaitOnAnyImprovement(Semantics):
    """Any improvement resets ``wait``, even below the baseline (Keras after PR 23559, not 3.15.1)."""

    name = "reset-wait-on-any-improvement"

    def reset_wait_on_improvement(
        self, value: float, baseline: float | None, delta: float, direction: ast.Direction
    ) -> bool:
        return True


class BaselineAsStartingBest(Semantics):
    """The baseline taken as the starting best (it is only a bar the best must clear)."""

    name = "baseline-as-starting-best"

    def initial_best(self, baseline: float | None) -> float | None:
        return baseline


class IgnoreFirstOffByOne(Semantics):
    """``ignore first K epochs`` / ``start_from_epoch`` skips K + 1 epochs."""

    name = "ignore-first-off-by-one"

    def ignores_epoch(self, epoch: int, start_from_epoch: int) -> bool:
        return epoch <= start_from_epoch


class PlateauOffByOne(Semantics):
    """Our plateau atom holds at ``wait > N``."""

    name = "plateau-off-by-one"

    def plateau_holds(self, wait: int, patience: int) -> bool:
        return wait > patience


class RestoreOnlyWhenStopped(Semantics):
    """Best weights restored only when the rule itself stopped training."""

    name = "restore-only-when-stopped"

    def restore_at_end(self, *, has_best: bool, stopped_by_rule: bool, training_stopped: bool) -> bool:
        return has_best and stopped_by_rule


class NaiveCooldown(Semantics):
    """Cooldown tested before it is decremented, so ``cooldown 1`` really waits an epoch."""

    name = "naive-cooldown"

    def counts_toward_patience(self, cooldown_before: int, cooldown_after: int) -> bool:
        return cooldown_before == 0


class LrReduceOffByOne(Semantics):
    """ReduceLROnPlateau reduces at ``wait > patience``."""

    name = "lr-reduce-off-by-one"

    def lr_reduce_due(self, wait: int, patience: int) -> bool:
        return wait > patience


class MinLrIgnored(Semantics):
    """The reduction forgets ``max(..., min_lr)``: the lr falls below min lr."""

    name = "min-lr-ignored"

    def reduced_lr(self, lr: float, factor: float, min_lr: float) -> float:
        return self.lr_round(lr * factor)


class LrNotRounded(Semantics):
    """The learning rate kept in float64 (the Keras variable is float32)."""

    name = "lr-not-rounded"

    def lr_round(self, x: float) -> float:
        return x


class ZeroBasedEpochInPath(Semantics):
    """``{epoch}`` and ``{batch}`` formatted 0-based (Keras writes them 1-based)."""

    name = "zero-based-epoch-in-path"

    def format_path(self, path: str, epoch: int, batch: int | None, logs: Mapping[str, float]) -> str:
        return super().format_path(path, epoch - 1, None if batch is None else batch - 1, logs)


class SaveBestSkipsMissing(Semantics):
    """``save best`` skips an epoch whose metric is missing (Keras warns and saves anyway)."""

    name = "save-best-skips-missing"

    def save_best_when_missing(self) -> bool:
        return False


class SaveBestIgnoresThreshold(Semantics):
    """``save best on M below X`` forgets X (ModelCheckpoint's ``initial_value_threshold``): the
    first value is saved whatever it is."""

    name = "save-best-ignores-threshold"

    def checkpoint_initial_best(self, threshold: float | None) -> float | None:
        return None


class LogLrWritesStartingRate(Semantics):
    """``log lr`` writes the rate the optimizer started with, not the one in effect now."""

    name = "log-lr-writes-starting-rate"

    def rate_in_effect(self, lr0: float, lr: float) -> float:
        return lr0


class LogLrWhereWritten(Semantics):
    """``log lr``'s callback left at its place in the text: rules before it never see the rate."""

    name = "log-lr-where-written"

    def lr_logger_first(self) -> bool:
        return False


class KeepLastKeepsOneMore(Semantics):
    """``keep last K`` deletes only beyond K + 1 files (``len > K + 1``): one file too many stays."""

    name = "keep-last-keeps-one-more"

    def retained_after_write(self, written: Sequence[str], path: str, keep: int) -> tuple[list[str], list[str]]:
        return super().retained_after_write(written, path, keep + 1)


class KeepLastRewriteKeepsItsPlace(Semantics):
    """``keep last K`` leaves a path written again at the place of its first write (so it is deleted
    as the oldest, though just written) instead of making it the newest."""

    name = "keep-last-rewrite-keeps-its-place"

    def retained_after_write(self, written: Sequence[str], path: str, keep: int) -> tuple[list[str], list[str]]:
        kept = list(written) if path in written else [*written, path]
        cut = max(len(kept) - keep, 0)
        return kept[cut:], kept[:cut]


class TimedSaveStrict(Semantics):
    """``save every T`` writes only once strictly more than T has passed (``>`` for ``>=``)."""

    name = "timed-save-strict"

    def timed_save_due(self, since: float, seconds: float) -> bool:
        return since > seconds


class StepSaveCounterPerEpoch(Semantics):
    """Integer ``save_freq`` counted from 0 again in every epoch (Keras counts across epochs)."""

    name = "step-save-counter-per-epoch"

    def step_save_batches(self, steps_before: int, steps: int, every: int) -> range:
        return range(every - 1, steps, every)


class CountsCallsNotBatches(Semantics):
    """Step rules count batch-hook calls, not the batch index Keras passes: with
    ``steps_per_execution`` k every call is k batches, so ``stop after N steps`` runs k times too long."""

    name = "counts-calls-not-batches"
    wrong_on = ("tensorflow", "jax")  # torch refuses steps_per_execution > 1

    def steps_counted(self, seen: Sequence[int], position: int, steps: int) -> int:
        return position + 1


class StepSaveCarriesExcess(Semantics):
    """Integer ``save_freq`` under ``steps_per_execution``: the sum since the last save keeps its
    excess over N (Keras's ModelCheckpoint restarts it from 0), so later saves come early."""

    name = "step-save-carries-excess"
    wrong_on = ("tensorflow", "jax")  # torch refuses steps_per_execution > 1

    def step_save_restart(self, since: int, every: int) -> int:
        return since - every


class StepBudgetOffByOne(Semantics):
    """``stop after N steps`` stops after step N + 1."""

    name = "step-budget-off-by-one"

    def step_budget_batch(self, steps_before: int, steps: int, budget: int) -> int | None:
        return super().step_budget_batch(steps_before, steps, budget + 1)


class EpochBudgetOffByOne(Semantics):
    """``stop after N epochs`` compares the 0-based epoch with N (runs one epoch too many)."""

    name = "epoch-budget-off-by-one"

    def epoch_budget_reached(self, epoch: int, epochs: int) -> bool:
        return epoch >= epochs


class TimeBudgetStrict(Semantics):
    """A time budget stops only once elapsed time *exceeds* it (``>`` instead of ``>=``)."""

    name = "time-budget-strict"

    def time_budget_batch(self, readings: Sequence[float], seconds: float) -> int | None:
        i = bisect.bisect_right(readings, seconds)
        return i if i < len(readings) else None


class ClockAsMultiplication(Semantics):
    """Elapsed time after k steps as ``start + k * d`` (the scripted clock sums ``t += d``)."""

    name = "clock-as-multiplication"

    def clock_readings(self, start: float, durations: Iterable[float]) -> list[float]:
        steps = list(durations)
        if steps and all(d == steps[0] for d in steps):
            return [start + (k + 1) * steps[0] for k in range(len(steps))]
        return super().clock_readings(start, steps)


class TerminateOnNaNIgnoresInf(Semantics):
    """TerminateOnNaN that only looks for NaN (Keras also stops on +-inf)."""

    name = "terminate-on-nan-ignores-inf"

    def invalid_loss_batch(self, losses: Sequence[float | None]) -> int | None:
        for i, loss in enumerate(losses):
            if loss is not None and math.isnan(loss):
                return i
        return None


class FailStopsGracefully(Semantics):
    """``fail when loss is not finite`` as TerminateOnNaN's default: a graceful stop (the epoch ends,
    epoch-end rules and train end run) instead of Keras's RuntimeError at once."""

    name = "fail-stops-gracefully"

    def fail_raises(self) -> bool:
        return False


class AverageBeforeFull(Semantics):
    """``M averaged over N epochs`` read as the mean of the values so far before N exist (it is
    undefined, and not evaluated, until N are logged)."""

    name = "average-before-full"

    def window_mean(self, values: Sequence[float], window: int) -> float | None:
        return super().window_mean(values, len(values))


class AverageInFloat32(Semantics):
    """``M averaged over N epochs`` summed and divided in float32 (the logged values are float64
    Python floats, and the mean is taken on them before any rounding)."""

    name = "average-in-float32"

    def window_mean(self, values: Sequence[float], window: int) -> float | None:
        if len(values) < window:
            return None
        total = round_f32(values[0])
        for v in values[1:]:
            total = round_f32(total + round_f32(v))
        return round_f32(total / window)


class RollbackWhenDue(Semantics):
    """``multiply lr ..., restore best`` restores whenever a cut is due, also at ``min lr`` where
    ReduceLROnPlateau cuts nothing."""

    name = "rollback-when-due"

    def rolls_back(self, cut: bool, due: bool) -> bool:
        return due


class MinimumOffByOne(Semantics):
    """``train at least N epochs`` compares the 0-based epoch with N (holds one epoch too long)."""

    name = "minimum-off-by-one"

    def minimum_reached(self, epoch: int, steps_run: int, amount: int, unit: ast.SaveUnit) -> bool:
        return epoch >= amount if unit == "epochs" else steps_run > amount


class MinimumAsStartFromEpoch(Semantics):
    """``train at least`` read as Keras's ``start_from_epoch``: held rules skip the epochs before the
    minimum entirely, so patience only starts counting there (Lightning's min_epochs keeps counting)."""

    name = "minimum-as-start-from-epoch"

    def evaluates_before_minimum(self) -> bool:
        return False


class ThresholdFloat64(Semantics):
    """Thresholds compared in float64 (``val_loss <= 0.1`` misses float32(0.1))."""

    name = "threshold-float64"

    def threshold_holds(self, value: float, op: ast.Comparison, x: float) -> bool:
        if op == ">=":
            return value >= x
        if op == ">":
            return value > x
        if op == "<=":
            return value <= x
        return value < x


class NotFiniteMissesNegInf(Semantics):
    """``is not finite`` checks ``value != value or value == inf``, missing -inf."""

    name = "not-finite-misses-neg-inf"

    def not_finite(self, value: float, nan_only: bool) -> bool:
        return math.isnan(value) if nan_only else (math.isnan(value) or value == math.inf)


class TopKAdmitsTies(Semantics):
    """Top-k admits an epoch that only ties the worst kept one (ties should keep the earlier)."""

    name = "top-k-admits-ties"

    def top_k_admits(self, value: float, worst: float | None, kept: int, k: int, direction: ast.Direction) -> bool:
        return kept < k or (worst is not None and not self.better(worst, value, direction))


class TopKDropsOldest(Semantics):
    """Top-k keeps the K most recent epochs instead of the K best (drops the oldest kept)."""

    name = "top-k-drops-oldest"

    def top_k_worst(self, kept: Sequence[tuple[int, float]], direction: ast.Direction) -> int:
        return min(range(len(kept)), key=lambda i: kept[i][0])


class TopKDropsEarlierOnTies(Semantics):
    """Among equally bad kept epochs top-k drops the earlier one (ties should keep the earlier)."""

    name = "top-k-drops-earlier-on-ties"

    def top_k_worst(self, kept: Sequence[tuple[int, float]], direction: ast.Direction) -> int:
        worst = 0
        for i in range(1, len(kept)):  # kept is in epoch order: only a strictly worse value moves on
            if self.better(kept[worst][1], kept[i][1], direction):
                worst = i
        return worst


class TopKNeverDeletes(Semantics):
    """Top-k forgets to delete the dropped epoch's file (the folder keeps every file it wrote)."""

    name = "top-k-never-deletes"

    def top_k_deletes(self, path: str, kept_paths: Sequence[str]) -> bool:
        return False


class TopKDeletesSharedPath(Semantics):
    """Top-k deletes the dropped epoch's file even when a kept epoch's path is the same file."""

    name = "top-k-deletes-shared-path"

    def top_k_deletes(self, path: str, kept_paths: Sequence[str]) -> bool:
        return True


class ScheduleOffByOne(Semantics):
    """Schedules evaluated at ``epoch + 1`` (the lr for the next epoch, one epoch early)."""

    name = "schedule-off-by-one"

    def schedule_lr(self, schedule: ast.Schedule, epoch: int, lr0: float, current: float) -> float:
        return super().schedule_lr(schedule, epoch + 1, lr0, current)


class StepScheduleOffByOne(Semantics):
    """Step schedules evaluated at ``optimizer.iterations + 1``: the count taken after the step's
    increment (the rate of the next step, one step early), as a hand-written schedule that reads
    the iteration counter after ``apply_gradients`` would."""

    name = "step-schedule-off-by-one"

    def step_schedule_lr(self, schedule: ast.Schedule, step: int, lr0: float, steps_per_epoch: int, total: int) -> float:
        return super().step_schedule_lr(schedule, step + 1, lr0, steps_per_epoch, total)


class SmoothDecayAsStaircase(Semantics):
    """``decay lr by F every N, smoothly`` decayed by whole periods (floor(t / N)), as if
    ``smoothly`` were not there (ExponentialDecay's ``staircase`` read the wrong way round)."""

    name = "smooth-decay-as-staircase"

    def decay_periods(self, t: int, every: int, smooth: bool) -> float:
        return math.floor(t / every)


class RestartGrowsOnePeriodLate(Semantics):
    """``restart every M, periods times T`` with the growth starting one period late: periods of
    M, M, M x T, M x T^2 ... (the multiplier applied after a restart instead of at it)."""

    name = "restart-grows-one-period-late"

    def restart_cycle(self, t: int, period: int, period_factor: float) -> tuple[int, float, float]:
        if t < period:
            return 0, t, float(period)
        index, into, length = super().restart_cycle(t - period, period, period_factor)
        return index + 1, into, length


class HandoverKeepsEarlyCut(Semantics):
    """``multiply lr ... when`` after a finite step schedule: a cut made while the schedule still
    drives the rate survives into its hand-over (the cut written into the hand-over rate and
    never put back to the schedule's end value)."""

    name = "handover-keeps-early-cut"

    def cut_reaches_handover(self, step: int, end: int) -> bool:
        return True


class HandoverOneEpochLate(Semantics):
    """The hand-over taken only after the schedule's last step has run (``step > end``): a cut at
    the epoch end that coincides with the schedule's end is dropped."""

    name = "handover-one-epoch-late"

    def cut_reaches_handover(self, step: int, end: int) -> bool:
        return step > end


MUTANTS: tuple[type[Semantics], ...] = (
    CountsCallsNotBatches,
    StepSaveCarriesExcess,
    Float64Comparisons,
    NoSubnormalFlush,
    FlushOnEveryBackend,
    MinDeltaWrongSign,
    NaNImproves,
    RelativeFromValue,
    PatienceOffByOne,
    ResetWaitOnAnyImprovement,
    BaselineAsStartingBest,
    IgnoreFirstOffByOne,
    PlateauOffByOne,
    RestoreOnlyWhenStopped,
    NaiveCooldown,
    LrReduceOffByOne,
    MinLrIgnored,
    LrNotRounded,
    ZeroBasedEpochInPath,
    SaveBestSkipsMissing,
    SaveBestIgnoresThreshold,
    LogLrWhereWritten,
    KeepLastKeepsOneMore,
    TimedSaveStrict,
    StepSaveCounterPerEpoch,
    StepBudgetOffByOne,
    EpochBudgetOffByOne,
    TimeBudgetStrict,
    TerminateOnNaNIgnoresInf,
    FailStopsGracefully,
    MinimumOffByOne,
    MinimumAsStartFromEpoch,
    RollbackWhenDue,
    AverageBeforeFull,
    TopKAdmitsTies,
    TopKDropsOldest,
    TopKDropsEarlierOnTies,
    TopKNeverDeletes,
    ScheduleOffByOne,
    StepScheduleOffByOne,
)
"""Mutants the default search sample must catch."""

HARD_MUTANTS: tuple[type[Semantics], ...] = (
    SmoothDecayAsStaircase,
    RestartGrowsOnePeriodLate,
    HandoverKeepsEarlyCut,
    HandoverOneEpochLate,
    OverflowNeverRaises,
    OverflowRaisesEverywhere,
    RoundThenSubtract,
    ClockAsMultiplication,
    ThresholdFloat64,
    NotFiniteMissesNegInf,
    TopKDeletesSharedPath,
    KeepLastRewriteKeepsItsPlace,
    LogLrWritesStartingRate,
    AverageInFloat32,
)
"""Mutants observable only on rare combinations (a value beyond float32 reaching a Keras monitor
that already has a best, a specific best/min_delta pair, 0.1 s steps summed
across an epoch boundary, a float32-inexact threshold met exactly, -inf under ``is not finite``, a
top-k path template that formats two epochs alike, which the generator never draws, a name a
``keep last`` rule writes again while still keeping it, a ``learning_rate`` reader placed before an
lr rule that has already changed the rate, with a threshold between the two rates, an averaged
metric whose float64 and float32 means fall either side of a threshold):
the default sample does not reliably contain one, a deep run (POLICY_MUTANT_EXAMPLES in the tens
of thousands) does. Each is still pinned by an ``@example`` in ``tests/test_differential.py``.
The hand-over mutants need a cut due before, or exactly at, the end of a step schedule that
hands the rate over, and smooth decay (``smooth-decay-as-staircase``) a decay between two of its
steps; cases() draws both (its "schedule:handover+reduce_lr:repeated" and "schedule:steps" foci),
but in 0 to 26 of 2000 search cases depending on the sample: the pins ``step-handover``,
``step-handover-at-end``, ``step-schedule-smooth-decay`` and ``schedule-smooth-decay`` catch them;
``step-schedule-sgdr`` and ``schedule-sgdr`` catch ``restart-grows-one-period-late``.
"""


def wrong_on(mutant: type[Semantics]) -> tuple[Backend, ...]:
    """The backends on which ``mutant`` is a mistake (every backend unless it says otherwise): on
    the others it models what Keras really does there, and must agree with the reference."""
    found: tuple[Backend, ...] = getattr(mutant, "wrong_on", BACKENDS)
    return found


def overridden(mutant: type[Semantics]) -> list[str]:
    """The Semantics methods a mutant overrides (a well-formed mutant overrides exactly one)."""
    return [
        name
        for name, value in vars(mutant).items()
        if callable(value) and not name.startswith("__") and hasattr(Semantics, name)
    ]
