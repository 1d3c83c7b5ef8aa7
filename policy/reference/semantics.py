"""Every decision primitive of the reference, one small overridable method each.

The simulator (:mod:`policy.reference.simulate`) never compares, rounds or counts by itself: it
asks a :class:`Semantics` object, built for one backend. :data:`KERAS_3_15` is the real thing
(Keras 3.15.1 under TensorFlow 2.21, plus the rules of ``docs/semantics.md``);
``semantics_for("jax")`` and ``semantics_for("torch")`` the same under JAX and torch (the
differences are the facts of :mod:`policy.reference.backends`). A test that wants to prove the
differential suite would notice a wrong reference subclasses :class:`Semantics`, overrides ONE
method with a classic mistake, and passes it as ``simulate(..., semantics=Mutant("torch"))``.

Where each classic mistake lives (override this method to make it):

=============================================================  ==================================
mistake                                                        method
=============================================================  ==================================
compare in float64 (no float32 rounding of either side)        :meth:`Semantics.to_f32`
round each side first and subtract in float32                  :meth:`Semantics.shifted`
ignore TensorFlow's flush-to-zero of float32 subnormals        :meth:`Semantics.to_f32`
flush subnormals on every backend (torch keeps them)           :meth:`Semantics.to_f32`
no error for an over-range value under TensorFlow              :meth:`Semantics.converts`
an over-range value raises on every backend (JAX/torch: inf)   :meth:`Semantics.converts`
wrong min_delta sign (``value - D < best`` for min)            :meth:`Semantics.signed_delta`
NaN as first value does not become best                        :meth:`Semantics.improves`
relative threshold taken from the value, not from best         :meth:`Semantics.relative_improves`
patience off by one (``wait > patience``)                      :meth:`Semantics.early_stop_fires`
patience 0 stops at epoch 0 (no ``epoch > 0`` guard)           :meth:`Semantics.early_stop_fires`
reset wait on any improvement (keras PR 23559, Keras > 3.15)   :meth:`Semantics.reset_wait_on_improvement`
baseline used as the starting best                             :meth:`Semantics.initial_best`
start_from_epoch / ignore first off by one                     :meth:`Semantics.ignores_epoch`
our plateau holds at ``wait > N``                              :meth:`Semantics.plateau_holds`
restore best weights only when the rule itself stopped         :meth:`Semantics.restore_at_end`
naive cooldown (test cooldown before decrementing it)          :meth:`Semantics.counts_toward_patience`
ReduceLROnPlateau reduces at ``wait > patience``               :meth:`Semantics.lr_reduce_due`
min_lr compared in float64 against the float32 lr              :meth:`Semantics.lr_can_reduce`
min_lr applied after rounding / no max with min_lr             :meth:`Semantics.reduced_lr`
learning rate kept in float64                                  :meth:`Semantics.lr_round`
logs["learning_rate"] written after the reduction              :meth:`Semantics.logged_lr`
0-based ``{epoch}`` / ``{batch}`` in checkpoint paths          :meth:`Semantics.format_path`
``save every N epochs`` at ``e % N == 0``                      :meth:`Semantics.every_epochs_due`
save-best skips an epoch whose metric is missing               :meth:`Semantics.save_best_when_missing`
save best's ``below X`` ignored (the first value saves)        :meth:`Semantics.checkpoint_initial_best`
integer save_freq counter reset at every epoch                 :meth:`Semantics.step_save_batches`
step budget off by one                                         :meth:`Semantics.step_budget_batch`
steps counted as callback calls (steps_per_execution)          :meth:`Semantics.steps_counted`
step-save sum keeps its excess past N (steps_per_execution)    :meth:`Semantics.step_save_seen`
epoch budget off by one (``e >= N``)                           :meth:`Semantics.epoch_budget_reached`
time budget compared with ``>`` instead of ``>=``              :meth:`Semantics.time_budget_batch`
clock as ``k * step`` instead of a running sum                 :meth:`Semantics.clock_readings`
TerminateOnNaN ignores infinities                              :meth:`Semantics.invalid_loss_batch`
``fail when`` stops gracefully instead of raising               :meth:`Semantics.fail_raises`
``restore best`` of an lr rule whenever the cut is due (min lr)  :meth:`Semantics.rolls_back`
averaged metric defined before N values exist                  :meth:`Semantics.window_mean`
``train at least N epochs`` counted 0-based (``e >= N``)         :meth:`Semantics.minimum_reached`
``train at least`` as ``start_from_epoch`` (no state before it)  :meth:`Semantics.evaluates_before_minimum`
threshold compared in float64 / with the wrong operator        :meth:`Semantics.threshold_holds`
``is not finite`` misses -inf, ``is nan`` catches inf          :meth:`Semantics.not_finite`
top-k admits ties                                              :meth:`Semantics.top_k_admits`
top-k drops the earlier of two equal epochs / the oldest       :meth:`Semantics.top_k_worst`
top-k never deletes / deletes a file a kept epoch still uses   :meth:`Semantics.top_k_deletes`
``log lr`` writes the rate at train begin                      :meth:`Semantics.rate_in_effect`
``log lr`` compiled where written (not first)                  :meth:`Semantics.lr_logger_first`
``save every T`` compared with ``>`` instead of ``>=``         :meth:`Semantics.timed_save_due`
``keep last K`` keeps K + 1 files                              :meth:`Semantics.retained_after_write`
schedule off by one epoch / wrong cosine phase                 :meth:`Semantics.schedule_lr`
a cut during a step schedule survives into its hand-over        :meth:`Semantics.cut_reaches_handover`
=============================================================  ==================================

Float32 facts (Keras 3.15.1, TensorFlow 2.21 CPU), established by experiment with the installed
Keras (see ``tests/test_reference_vs_keras_facts.py``, which re-checks each one; where JAX and
torch differ, :mod:`policy.reference.backends` says so and a :class:`Semantics` built for that
backend follows it):

* Keras's monitors compute ``monitor_value - self.min_delta`` on two Python floats, i.e. in
  float64, and only then hand the result and ``best`` to ``ops.less``/``ops.greater``, which
  convert each Python float to a float32 tensor. Evidence: with value 1.2739233746429086,
  min_delta 0.026978671376387032 (min mode) and best 1.3009021282196045, rounding the float64
  sum gives ``True`` while rounding both operands and adding in float32 gives ``False``;
  ``ops.less`` answered ``True``. Two more such pairs agreed the same way.
* The TensorFlow CPU comparison kernels flush float32 subnormals to zero:
  ``ops.less(1e-40, 2e-40)`` is ``False`` (NumPy float32 says ``True``), ``ops.less(0.0, 1e-40)``
  is ``False``. The tensors themselves keep the subnormal value; only the comparison flushes.
  JAX's CPU comparisons flush too; torch's do not.
* A finite Python float whose float32 rounding overflows (>= FLT_MAX + half an ulp, about
  3.4028235678e38) makes ``ops.less`` raise ``ValueError`` ("out of range") under TensorFlow;
  ``inf`` is fine. JAX and torch round it to inf. Only Keras's monitors (EarlyStopping,
  ModelCheckpoint, ReduceLROnPlateau) convert values that way; our own callbacks round an
  over-range value to inf on every backend (docs/semantics.md).
* The learning-rate variable is float32 and is assigned with round-to-nearest; assigning a
  finite value too large for float32 stores ``inf`` (no error) and subnormals are kept.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import string
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from fractions import Fraction
from itertools import accumulate
from typing import Final

from policy import ast
from policy.errors import PolicyError, Problem
from policy.reference.backends import FACTS, Backend, backend_name

FLT_MAX: Final = 3.4028234663852886e38
"""The largest finite float32."""
FLT_MIN_NORMAL: Final = 2.0**-126
"""The smallest positive normal float32; anything smaller (but not 0) is subnormal."""

_F32: Final = struct.Struct("<f")
# Bound once: replaying thousands of runs calls these a million times.
_PACK_F32: Final = _F32.pack
_UNPACK_F32: Final = _F32.unpack


class KerasWouldRaise(PolicyError):
    """Real Keras would raise during ``fit`` here (a path placeholder missing from the logs, a
    metric too large for float32 in a monitor comparison, ...). The reference says so instead of
    predicting an outcome; a differential test expects ``fit`` to raise too."""

    @classmethod
    def because(cls, message: str, suggestion: str | None = None) -> KerasWouldRaise:
        return cls([Problem(message, suggestion=suggestion)])


def round_f32(x: float) -> float:
    """``x`` rounded to the nearest float32 (ties to even), as a Python float; overflow gives +-inf.

    ``struct`` packs with a C ``(float)`` cast, which is exactly what TensorFlow and NumPy do
    when they turn a Python float into float32, and is far cheaper than ``numpy.float32`` per
    scalar. ``struct`` refuses values that overflow, which we map to the signed infinity.
    """
    try:
        rounded: float = _UNPACK_F32(_PACK_F32(x))[0]
    except OverflowError:
        return math.copysign(math.inf, x)
    return rounded


def beyond_f32(x: float) -> bool:
    """A finite float that float32 cannot hold: its rounding overflows to +-inf (from FLT_MAX plus
    half an ulp). TensorFlow refuses to convert such a value to a float32 tensor."""
    return math.isfinite(x) and math.isinf(round_f32(x))


def _better_f32(a: float, b: float, direction: ast.Direction) -> bool:
    return a < b if direction == "min" else a > b


class Semantics:
    """The decision primitives, as Keras 3.15.1 and ``docs/semantics.md`` define them.

    Subclass and override one method to build a deliberately wrong reference (a mutant); the
    table in this module's docstring says which method holds which classic mistake. Methods
    take and return plain Python values; none keeps state (the simulator owns all state).
    """

    name: str = "keras-3.15.1"

    def __init__(self, backend: str = "tensorflow") -> None:
        self.backend: Backend = backend_name(backend)
        self.facts = FACTS[self.backend]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(backend={self.backend!r})"

    # ------------------------------------------------------------------ float32 comparisons
    def to_f32(self, x: float) -> float:
        """One operand of a float32 comparison, as this backend's CPU comparison kernel sees it.

        Rounded to float32 (overflow gives +-inf); subnormals flushed to (signed) zero where the
        backend flushes them (TensorFlow, JAX; not torch).
        """
        y = round_f32(x)
        if FLT_MIN_NORMAL <= abs(y) <= FLT_MAX:
            return y  # the common case, a normal float32: nothing to flush (NaN and inf fail the test)
        if self.facts.flushes_subnormals and y != 0.0 and abs(y) < FLT_MIN_NORMAL:
            return math.copysign(0.0, y)
        return y

    def converts(self, x: float) -> None:
        """Keras's monitors hand Python floats to ``ops.less``/``ops.greater``: under TensorFlow a
        finite value too large for float32 cannot be converted and Keras raises ValueError, so we
        raise :class:`KerasWouldRaise`; JAX and torch round it to inf and go on."""
        if self.facts.overflow_raises and beyond_f32(x):
            raise KerasWouldRaise.because(
                f"the value {x!r} does not fit in float32; under TensorFlow Keras's comparison raises "
                "ValueError (\"out of range\") when it converts it to a tensor"
            )

    def summary_converts(self, logs: Mapping[str, float]) -> None:
        """Keras's TensorBoard writes each epoch log it sees as a scalar summary through TensorFlow's
        summary ops, on every backend (the callback needs TensorFlow): a finite value too large
        for float32 cannot be converted and ``fit`` raises ValueError, even under JAX and torch.
        inf and NaN are written as they are."""
        for name, x in logs.items():
            if beyond_f32(x):
                raise KerasWouldRaise.because(
                    f"{name} = {x!r} does not fit in float32; Keras's TensorBoard raises ValueError "
                    "when it writes it as a summary (on every backend)"
                )

    def monitor_improves(self, value: float, best: float | None, delta: float, direction: ast.Direction) -> bool:
        """``MonitorCallback._is_improvement`` (EarlyStopping, ModelCheckpoint, ReduceLROnPlateau):
        :meth:`improves`, once both operands of the backend comparison have been converted."""
        if best is not None:
            self.converts(self.shifted(value, delta, direction))
            self.converts(best)
        return self.improves(value, best, delta, direction)

    def better(self, a: float, b: float, direction: ast.Direction) -> bool:
        """``a`` is strictly better than ``b`` (``<`` for min, ``>`` for max), compared in float32."""
        return _better_f32(self.to_f32(a), self.to_f32(b), direction)

    def signed_delta(self, delta: float, direction: ast.Direction) -> float:
        """Keras's stored ``min_delta``: ``abs(min_delta)``, negated in min mode."""
        return -abs(delta) if direction == "min" else abs(delta)

    def shifted(self, value: float, delta: float, direction: ast.Direction) -> float:
        """``monitor_value - self.min_delta``: plain Python, so float64, before any rounding."""
        return value - self.signed_delta(delta, direction)

    def improves(self, value: float, best: float | None, delta: float, direction: ast.Direction) -> bool:
        """MonitorCallback._is_improvement: anything improves on no best (NaN included, which then
        blocks every later improvement since NaN compares false); else ``value - d`` vs ``best``."""
        if best is None:
            return True
        return self.better(self.shifted(value, delta, direction), best, direction)

    def relative_improves(self, value: float, best: float | None, fraction: float, direction: ast.Direction) -> bool:
        """Our ``by P%``: min ``value < best - |best| * r``, max ``value > best + |best| * r``; the
        right side in float64, then both sides compared in float32."""
        if best is None:
            return True
        margin = abs(best) * fraction
        bound = best - margin if direction == "min" else best + margin
        return self.better(value, bound, direction)

    def threshold_holds(self, value: float, op: ast.Comparison, x: float) -> bool:
        """``M op X`` compared in float32 (NaN never holds)."""
        a, b = self.to_f32(value), self.to_f32(x)
        if op == ">=":
            return a >= b
        if op == ">":
            return a > b
        if op == "<=":
            return a <= b
        return a < b

    def not_finite(self, value: float, nan_only: bool) -> bool:
        """``M is nan`` (NaN only) or ``M is not finite`` (NaN or +-inf), on the logged Python float."""
        return math.isnan(value) if nan_only else not math.isfinite(value)

    # ------------------------------------------------------------------ EarlyStopping & plateaus
    def initial_best(self, baseline: float | None) -> float | None:
        """EarlyStopping's best at train begin: None. The baseline is NOT the starting best."""
        return None

    def ignores_epoch(self, epoch: int, start_from_epoch: int) -> bool:
        """``start_from_epoch`` / ``ignore first K epochs``: epochs before K change nothing."""
        return epoch < start_from_epoch

    def reset_wait_on_improvement(
        self, value: float, baseline: float | None, delta: float, direction: ast.Direction
    ) -> bool:
        """After an improvement, EarlyStopping 3.15.1 resets ``wait`` only without a baseline or
        when the value also improves on the baseline (keras PR 23559 later dropped the condition)."""
        return baseline is None or self.improves(value, baseline, delta, direction)

    def early_stop_fires(self, wait: int, patience: int, epoch: int) -> bool:
        """EarlyStopping after a non-improving epoch (``wait`` already incremented): ``wait >=
        patience and epoch > 0``; so patience 0 behaves like patience 1."""
        return wait >= patience and epoch > 0

    def plateau_holds(self, wait: int, patience: int) -> bool:
        """Our plateau atom after a non-improving epoch: holds when ``wait >= N``."""
        return wait >= patience

    def restore_at_end(self, *, has_best: bool, stopped_by_rule: bool, training_stopped: bool) -> bool:
        """restore_best_weights / ``restore best``: at train end whenever best weights exist,
        whoever stopped training, stopped or not."""
        return has_best

    # ------------------------------------------------------------------ ReduceLROnPlateau
    def lr_round(self, x: float) -> float:
        """A value written to the float32 learning-rate variable (overflow stores inf)."""
        return round_f32(x)

    def counts_toward_patience(self, cooldown_before: int, cooldown_after: int) -> bool:
        """A non-improving epoch counts (``wait += 1``) when not in cooldown *after* this epoch's
        decrement; so cooldown 1 behaves like cooldown 0."""
        return cooldown_after == 0

    def lr_reduce_due(self, wait: int, patience: int) -> bool:
        return wait >= patience

    def lr_can_reduce(self, lr: float, min_lr: float) -> bool:
        """``old_lr > np.float32(min_lr)``: the lr is already float32; min_lr is rounded (NumPy, so no
        flush-to-zero) and the two compared exactly."""
        return lr > round_f32(min_lr)

    def reduced_lr(self, lr: float, factor: float, min_lr: float) -> float:
        """``max(old_lr * factor, min_lr)`` in float64, then stored in the float32 variable."""
        return self.lr_round(max(lr * factor, min_lr))

    def rolls_back(self, cut: bool, due: bool) -> bool:
        """``multiply lr ..., restore best`` puts the best weights back when ReduceLROnPlateau cuts the
        rate (its ``_reduce_optimizer_lr`` reduced it), not merely when a cut was due: at ``min lr``
        the wait keeps growing and nothing is cut, so nothing is restored."""
        return cut

    def logged_lr(self, before: float, after: float) -> float:
        """What ReduceLROnPlateau leaves in ``logs["learning_rate"]``: the lr before the reduction
        (it writes it first thing in ``on_epoch_end``)."""
        return before

    def rate_in_effect(self, lr0: float, lr: float) -> float:
        """What ``log lr`` writes at an epoch end: the optimizer's current (float32) rate, which is the
        rate the epoch trained with (schedules set it at epoch begin, and ``log lr`` runs before any
        rule that changes it at epoch end). ``lr0`` is the rate at train begin."""
        return lr

    def lr_logger_first(self) -> bool:
        """``log lr``'s callback goes first in the compiled list, whatever the rule's place in the
        text, so every rule (and CSVLogger, TensorBoard) sees ``learning_rate``."""
        return True

    # ------------------------------------------------------------------ schedules
    def schedule_lr(self, schedule: ast.Schedule, epoch: int, lr0: float, current: float) -> float:
        """The value our schedule object returns for ``epoch`` (before float32 storage), for a
        schedule counted in epochs.

        ``lr0`` is the optimizer's lr at train begin (float32 value); ``current`` the lr now. At the
        first epoch after the last finite segment the schedule sets that segment's end value, then
        returns ``current`` (leaves the lr alone). Arithmetic follows docs/semantics.md literally,
        left to right, in float64.
        """
        spans = [(seg, None if isinstance(seg, ast.OPEN_ENDED) else int(_over(seg).count)) for seg in schedule.segments]
        value, ended_at = _chain_value(self, spans, epoch, lr0, lambda seg: _restart_epochs(seg))
        # The first epoch after the last segment gets its end value once; after that the schedule
        # leaves the lr alone (so it stays there unless ``multiply lr ... when`` changes it).
        if ended_at is None or epoch == ended_at:
            return value
        return current

    def step_schedule_lr(self, schedule: ast.Schedule, step: int, lr0: float, steps_per_epoch: int, total: int) -> float:
        """The rate (before float32 storage) of optimizer step ``step`` (``optimizer.iterations``)
        for a schedule counted in steps: every length converted to steps (N epochs is N x
        ``steps_per_epoch``; P% of training is ceil(P x ``total`` / 100)). After the last finite
        segment the rate stays at that segment's end value (until a hand-over cut changes it:
        :meth:`cut_reaches_handover`)."""
        spans, restart = _step_spans(schedule, steps_per_epoch, total)
        return _chain_value(self, spans, step, lr0, restart)[0]

    def decay_periods(self, t: int, every: int, smooth: bool) -> float:
        """How many times ``decay lr by F every N`` has multiplied by F at position ``t`` of its
        segment (epochs or steps): whole periods, floor(t / N); ``smoothly``, t / N (Keras's
        ExponentialDecay with staircase=False)."""
        return t / every if smooth else math.floor(t / every)

    def restart_cycle(self, t: int, period: int, period_factor: float) -> tuple[int, float, float]:
        """Where position ``t`` of a cosine with restarts is: the restart period's index i, the
        position in it and its length. Period 0 begins at 0 and lasts ``period``; period i + 1
        begins where period i ends and lasts ``period_factor`` times as long (float64, in that
        order: Keras's CosineDecayRestarts with t_mul), so equal periods when it is 1."""
        index, begins, length = 0, 0.0, float(period)
        if period_factor == 1:  # the same periods, without walking through them one by one
            index = t // period
            return index, t - index * period, length
        while begins + length <= t:
            index, begins, length = index + 1, begins + length, length * period_factor
        return index, t - begins, length

    def step_schedule_end(self, schedule: ast.Schedule, steps_per_epoch: int, total: int) -> int | None:
        """The optimizer step a finite step-counted schedule ends at (the sum of its lengths in
        steps): from that step on, the rate is the one it hands over. None: it never ends."""
        spans, _ = _step_spans(schedule, steps_per_epoch, total)
        lengths = [n for _, n in spans]
        return None if None in lengths else sum(n for n in lengths if n is not None)

    def cut_reaches_handover(self, step: int, end: int) -> bool:
        """``multiply lr ... when`` after a finite step schedule: a cut at an epoch end reached
        after ``step`` optimizer steps becomes the rate of every later step only when the schedule
        has ended (``step >= end``); an earlier one is dropped, as the schedule sets every step's
        rate until its end (an epoch-counted schedule likewise overrides a cut at its next epoch)."""
        return step >= end

    def step_rates_f32(self, value: float) -> float:
        """The rate an optimizer step uses: the schedule's value held in float32."""
        return round_f32(value)

    # ------------------------------------------------------------------ checkpoints
    def format_path(self, path: str, epoch: int, batch: int | None, logs: Mapping[str, float]) -> str:
        """ModelCheckpoint._get_file_path: ``{epoch}`` is 1-based; for step saves ``{batch}`` is the
        1-based batch within the epoch, unless the logs themselves hold a "batch" key; every other
        placeholder comes from the logs. Formatting errors are Keras errors."""
        try:
            if batch is None or "batch" in logs:
                return path.format(epoch=epoch + 1, **logs)
            return path.format(epoch=epoch + 1, batch=batch + 1, **logs)
        except KeyError as exc:
            available = ", ".join(sorted(logs)) or "none"
            raise KerasWouldRaise.because(
                f"the checkpoint path {path!r} uses {{{exc.args[0]}}}, which is not in the logs at "
                f"epoch {epoch} (available: {available}); ModelCheckpoint raises KeyError",
                "use a metric the model logs, or remove the placeholder",
            ) from None
        except (ValueError, IndexError, AttributeError, TypeError) as exc:
            raise KerasWouldRaise.because(
                f"the checkpoint path {path!r} cannot be formatted at epoch {epoch}: {exc}"
            ) from None

    def every_epochs_due(self, epoch: int, every: int) -> bool:
        """Our ``save every N epochs``: after 0-based epoch e when ``(e + 1) % N == 0``."""
        return (epoch + 1) % every == 0

    def checkpoint_initial_best(self, threshold: float | None) -> float | None:
        """ModelCheckpoint's ``best`` at train begin: ``initial_value_threshold`` itself (None without
        ``below``/``above``), so the first save needs a value strictly beyond it, compared like any
        other best (float32, :meth:`monitor_improves`)."""
        return threshold

    def save_best_when_missing(self) -> bool:
        """ModelCheckpoint(save_best_only=True) warns and saves anyway when its metric is missing."""
        return True

    def step_save_batches(self, steps_before: int, steps: int, every: int) -> range:
        """Batches (0-based, within this epoch) after which ``save_freq=every`` writes: the counter
        runs across epochs, so the global 1-based batch counts divisible by ``every``."""
        first_count = (steps_before // every + 1) * every
        return range(first_count - steps_before - 1, steps, every)

    def retained_after_write(self, written: Sequence[str], path: str, keep: int) -> tuple[list[str], list[str]]:
        """``keep last K`` after a write of ``path``: the rule's files, oldest first (a path written
        again becomes the newest), and the files it deletes: those beyond the newest K. Only paths
        the rule wrote in this run are ever in the list."""
        kept = [p for p in written if p != path] + [path]
        cut = max(len(kept) - keep, 0)
        return kept[cut:], kept[:cut]

    def top_k_admits(self, value: float, worst: float | None, kept: int, k: int, direction: ast.Direction) -> bool:
        """An epoch enters the top-k set if fewer than k are kept or it is strictly better (float32)
        than the worst kept (ties keep the earlier epoch)."""
        return kept < k or (worst is not None and self.better(value, worst, direction))

    def top_k_worst(self, kept: Sequence[tuple[int, float]], direction: ast.Direction) -> int:
        """Index in ``kept`` (``(epoch, value)`` pairs) of the entry to drop: the worst value, the
        latest epoch among equal (float32) values."""
        worst = 0
        for i in range(1, len(kept)):
            w_epoch, w_value = kept[worst]
            epoch, value = kept[i]
            if self.better(w_value, value, direction) or (
                not self.better(value, w_value, direction) and epoch > w_epoch
            ):
                worst = i
        return worst

    def top_k_deletes(self, path: str, kept_paths: Sequence[str]) -> bool:
        """Whether dropping an epoch deletes its file: yes, unless an epoch still kept has the same
        path (a template that formats two epochs alike). The file is always one this rule wrote in
        this run (entering the kept set writes it), so nothing else is ever deleted."""
        return path not in kept_paths

    # ------------------------------------------------------------------ budgets & batch checks
    def epoch_budget_reached(self, epoch: int, epochs: int) -> bool:
        """``stop after N epochs`` at the end of 0-based epoch e: ``e + 1 >= N``."""
        return epoch + 1 >= epochs

    def step_budget_batch(self, steps_before: int, steps: int, budget: int) -> int | None:
        """The batch (within this epoch) after which the training-step count reaches ``budget``."""
        batch = max(budget - steps_before - 1, 0)
        return batch if batch < steps else None

    def seen_batches(self, steps: int, steps_per_execution: int) -> range:
        """The batch indices Keras passes to ``on_train_batch_end`` in an epoch of ``steps`` batches:
        one call per ``steps_per_execution`` batches, with the index of the chunk's last batch as if
        the chunk were full (``begin + k - 1``), so the last index may lie past the epoch's end."""
        k = steps_per_execution
        return range(k - 1, steps + k - 1, k)

    def first_seen(self, seen: Sequence[int], batch: int | None) -> int | None:
        """The first batch index a callback sees at or after ``batch`` (None: none this epoch)."""
        if batch is None:
            return None
        i = bisect.bisect_left(seen, batch)
        return seen[i] if i < len(seen) else None

    def steps_counted(self, seen: Sequence[int], position: int, steps: int) -> int:
        """Training batches run in this epoch once the batch hooks' call number ``position``
        (0-based) has ended: from the batch index Keras passed, ``min(index, steps - 1) + 1``
        (a short last chunk's index lies past the epoch's end), never the number of calls."""
        return min(seen[position], steps - 1) + 1

    def step_save_seen(self, since: int, seen: Sequence[int], last: int, every: int) -> tuple[list[int], int]:
        """ModelCheckpoint(save_freq=N)._should_save_on_batch under ``steps_per_execution``: each
        seen index adds the batches since the previous one (``index + 1`` at an epoch's first), and
        once the sum since the last save reaches N it saves and restarts the sum
        (:meth:`step_save_restart`). Returns the indices saved after (up to ``last``) and the new sum."""
        saves: list[int] = []
        previous: int | None = None
        for batch in seen:
            if batch > last:
                break
            since += batch + 1 if previous is None else batch - previous
            previous = batch
            if since >= every:
                since = self.step_save_restart(since, every)
                saves.append(batch)
        return saves, since

    def step_save_restart(self, since: int, every: int) -> int:
        """The batch sum ModelCheckpoint(save_freq=N) restarts from after a save: 0, whatever the
        sum was (the excess over N is not carried, which matters when one hook call covers
        several batches)."""
        return 0

    def budget_seconds(self, amount: float, unit: ast.TimeUnit) -> float:
        return amount * ast.SECONDS_PER_UNIT[unit]

    def clock_readings(self, start: float, durations: Iterable[float]) -> list[float]:
        """Elapsed seconds after each batch: a running float64 sum, as a scripted clock advanced by
        each batch's duration reads (``t += d``, not ``k * d``)."""
        readings = list(accumulate(durations, initial=start))
        del readings[0]
        return readings

    def time_budget_batch(self, readings: Sequence[float], seconds: float) -> int | None:
        """First batch whose elapsed time is ``>= seconds`` (``readings`` never decrease)."""
        i = bisect.bisect_left(readings, seconds)
        return i if i < len(readings) else None

    def window_mean(self, values: Sequence[float], window: int) -> float | None:
        """``M averaged over N epochs``: undefined (None) until N values have been logged; then the
        last N added oldest first in float64 and divided by N (plain IEEE arithmetic, so the same
        on every backend; not ``sum()``, which compensates since Python 3.12, nor ``fsum``)."""
        if len(values) < window:
            return None
        total = values[0]
        for v in values[1:]:
            total = total + v
        return total / window

    def minimum_reached(self, epoch: int, steps_run: int, amount: int, unit: ast.SaveUnit) -> bool:
        """``train at least N epochs|steps``: at the end of absolute epoch e, stops are allowed when
        ``e + 1 >= N`` (like ``stop after N epochs``), or once the training steps run since train
        begin (counted from Keras's batch index, as ``stop after N steps`` counts) reach N."""
        return epoch + 1 >= amount if unit == "epochs" else steps_run >= amount

    def evaluates_before_minimum(self) -> bool:
        """Before the minimum a held rule still evaluates every epoch (Lightning's min_epochs: the
        condition is checked, the stop ignored); Keras's start_from_epoch would skip the epoch."""
        return True

    def fail_raises(self) -> bool:
        """``fail when loss is not finite`` (TerminateOnNaN(raise_error=True)) raises inside the batch
        hook: no epoch end, no train end, no stop. (False would be TerminateOnNaN's graceful stop.)"""
        return True

    def timed_save_due(self, since: float, seconds: float) -> bool:
        """``save every T``: after a training batch call, write when the clock reading minus the one
        at the previous write (or at train begin) is ``>= seconds``; the timer then restarts from
        this reading (not from the due time), as Lightning's ``train_time_interval`` does."""
        return since >= seconds

    def invalid_loss_batch(self, losses: Sequence[float | None]) -> int | None:
        """TerminateOnNaN: the first batch whose running loss is NaN or +-inf (None = not logged)."""
        for i, loss in enumerate(losses):
            if loss is not None and not math.isfinite(loss):
                return i
        return None


KERAS_3_15: Final = Semantics()
"""The semantics of Keras 3.15.1 (TensorFlow backend) and of ``docs/semantics.md``."""

_BY_BACKEND: Final[dict[str, Semantics]] = {"tensorflow": KERAS_3_15}


def semantics_for(backend: str) -> Semantics:
    """The true semantics of Keras 3.15.1 on ``backend`` (one shared instance per backend)."""
    found = _BY_BACKEND.get(backend)
    if found is None:
        found = _BY_BACKEND[backend] = Semantics(backend)  # backend_name refuses unknown names
    return found


def placeholder_names(path: str) -> list[str]:
    """The field names of a ``str.format`` template (``{epoch:03d}`` -> ``epoch``)."""
    names = []
    for _, field, _, _ in string.Formatter().parse(path):
        if field is not None:
            names.append(field.split(".", 1)[0].split("[", 1)[0])
    return names


def _step_spans(
    schedule: ast.Schedule, steps_per_epoch: int, total: int
) -> tuple[list[tuple[ast.Segment, int | None]], Callable[[ast.Segment], int | None]]:
    """The segments with every length in steps (None: open-ended), and the restart period in steps."""

    def steps(span: ast.Span) -> int:
        if span.unit == "percent":
            return math.ceil(Fraction(repr(span.count)) * total / 100)
        return int(span.count) * (steps_per_epoch if span.unit == "epochs" else 1)

    spans: list[tuple[ast.Segment, int | None]] = []
    for seg in schedule.segments:
        if isinstance(seg, ast.Decay):
            seg = dataclasses.replace(seg, every=seg.every * (steps_per_epoch if seg.unit == "epochs" else 1))
        elif isinstance(seg, ast.Milestones):
            k = steps_per_epoch if seg.unit == "epochs" else 1
            seg = dataclasses.replace(seg, at=tuple(m * k for m in seg.at))
        spans.append((seg, None if isinstance(seg, ast.OPEN_ENDED) else steps(_over(seg))))

    def restart(seg: ast.Segment) -> int | None:
        return steps(seg.restart) if isinstance(seg, ast.Cosine) and seg.restart is not None else None

    return spans, restart


def _over(seg: ast.Segment) -> ast.Span:
    span = getattr(seg, "over", None)
    assert isinstance(span, ast.Span), seg
    return span


def _restart_epochs(seg: ast.Segment) -> int | None:
    return int(seg.restart.count) if isinstance(seg, ast.Cosine) and seg.restart is not None else None


def _chain_value(
    sem: Semantics,
    spans: Sequence[tuple[ast.Segment, int | None]],
    t_abs: int,
    lr0: float,
    restart: Callable[[ast.Segment], int | None],
) -> tuple[float, int | None]:
    """The chain's value at ``t_abs`` (epochs or steps, whichever the lengths count), and the
    position where the last finite segment ended if ``t_abs`` is past it (else None).

    Segment i starts at the sum of the lengths before it (``begin``) from the previous segment's
    end value (``lr0`` for the first); ``t = t_abs - begin``; formulas from docs/semantics.md.
    """
    begin, start = 0, lr0
    for seg, n in spans:
        t = t_abs - begin
        if isinstance(seg, ast.Decay):
            return start * seg.factor ** sem.decay_periods(t, seg.every, seg.smooth), None
        if isinstance(seg, ast.Milestones):
            return start * seg.factor ** sum(1 for m in seg.at if m <= t), None
        if isinstance(seg, ast.InverseSqrt):
            return start * math.sqrt(begin / (begin + t)), None
        assert n is not None
        if t < n:
            if isinstance(seg, ast.Warmup):
                return seg.target * (t + 1) / n, None
            if isinstance(seg, ast.Cosine):
                period = restart(seg)
                i, into, length = sem.restart_cycle(t, period, seg.period_factor) if period else (0, t, n)
                height = seg.peak_factor**i * (start - seg.target)
                return seg.target + height * (1 + math.cos(math.pi * into / length)) / 2, None
            if isinstance(seg, ast.Linear):
                return start + (seg.target - start) * t / n, None
            return start, None  # hold
        begin += n
        if not isinstance(seg, ast.Hold):
            start = seg.target
    return start, begin
