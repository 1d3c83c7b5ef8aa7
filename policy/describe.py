"""Existing Keras callbacks -> policy text: the way into the DSL for code that already exists.

``describe([EarlyStopping(patience=3), ModelCheckpoint("best.keras", save_best_only=True)])``
reads each callback's public attributes (as Keras 3.15.1 stores them: ``min_delta`` as its
absolute value, ``mode`` as given) and writes the rule that compiles back to the same
callback with the same arguments. Where the DSL's default differs from Keras's
(ReduceLROnPlateau's ``min_delta=1e-4``) the value is written out; where Keras behaves
the same for two values (patience 0 and 1) the rule says so in a comment.

``mode="auto"`` is read from the metric's name, as a policy reads it; Keras decides "auto"
from the compiled metric instead, so for a name that says one thing while the metric does
another (a custom metric called ``val_score_loss`` that should go up) say ``mode`` explicitly.

A Keras learning-rate schedule object (``CosineDecay``, ``PiecewiseConstantDecay``,
``PolynomialDecay``, ``ExponentialDecay``, ``CosineDecayRestarts``), given in the list itself
or as an optimizer built with one, becomes a schedule rule counted in steps when its arguments
say exactly what a rule says; the rate it starts from is written in a comment (a policy's
schedule starts from the optimizer's rate). ``CosineDecayRestarts`` restarts forever while a
policy's cosine ends, so it needs ``total_steps`` (the steps the run trains).

Anything with no exact equivalent (a lambda schedule, a custom callback, TensorBoard with
profiling, ``mode="auto"`` on a name whose direction cannot be told) is named in one
:class:`PolicyError` listing every such callback. ``verbose`` is ignored: it changes what
Keras prints, not what it does.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any

from policy import ast
from policy.describe_schedules import NoEquivalent, is_schedule_holder, schedule_rule
from policy.errors import PolicyError, Problem
from policy.metrics import name_direction
from policy.printer import rule

# TensorBoard arguments a policy cannot set, with the Keras default each must have.
_TENSORBOARD_DEFAULTS: dict[str, Any] = {
    "histogram_freq": 0,
    "write_graph": True,
    "write_images": False,
    "write_steps_per_second": False,
    "update_freq": "epoch",
    "embeddings_freq": 0,
    "embeddings_metadata": None,
    "_start_batch": 0,  # profile_batch
}


def describe(callbacks: Iterable[Any], *, total_steps: int | None = None) -> str:
    """Policy text (one rule a line, with ``#`` comments where needed) for a list of callbacks.

    The list may also hold Keras learning-rate schedule objects, or optimizers built with one;
    ``total_steps`` (the optimizer steps the run trains) is needed only for ``CosineDecayRestarts``.

    Raises:
        PolicyError: one problem per callback that has no equivalent rule, each naming it.
    """
    if isinstance(callbacks, str | bytes | Mapping) or not isinstance(callbacks, Iterable):
        single = " (wrap a single callback in a list)" if hasattr(callbacks, "set_model") else ""
        raise TypeError(f"describe() takes a list of Keras callbacks; got {type(callbacks).__name__}{single}")
    lines: list[str] = []
    problems: list[Problem] = []
    for index, cb in enumerate(callbacks):
        try:
            lines.extend(describe_one(cb, total_steps=total_steps))
        except NoEquivalent as exc:
            problems.append(Problem(f"callback {index} ({_name(cb)}): {exc}"))
    if problems:
        raise PolicyError(problems)
    if not lines:
        raise PolicyError.plain("there are no callbacks to describe")
    text = "\n".join(lines)
    # Each line is valid alone; together they may still conflict (two rules writing one file).
    from policy import parse_policy

    try:
        parse_policy(text)
    except PolicyError as exc:
        raise exc.with_filename("<described callbacks>") from None
    return text


def describe_one(cb: Any, *, total_steps: int | None = None) -> list[str]:
    """The policy lines for one callback (usually one; none for our strict-metrics check).

    Each line is the rule's syntax tree written by the printer, plus a ``#`` comment where
    Keras treats the value given differently from how it reads.
    """
    if is_schedule_holder(cb):
        return schedule_rule(cb, total_steps)
    found = _rule_of(cb)
    if found is None:
        return []
    node, note = found if isinstance(found, tuple) else (found, "")
    return [rule(node) + note]


def _rule_of(cb: Any) -> ast.Rule | tuple[ast.Rule, str] | None:
    import keras

    from policy import callbacks as ours

    helpers = ours.MetricCheck | ours.TerminateOnNaNRecorder | ours.CreateFolder | ours.FitStart
    if isinstance(cb, helpers | ours.StopHold | ours.StopRelease):
        # compile_policy's helpers: the strict-metrics check, TerminateOnNaN's stop record, the
        # pair a minimum puts around a held rule (the minimum itself says it all).
        return None
    counted: tuple[tuple[type, type[ast.TrainAtLeast] | type[ast.StopAfter], ast.SaveUnit], ...] = (
        (ours.MinimumEpochs, ast.TrainAtLeast, "epochs"),
        (ours.MinimumSteps, ast.TrainAtLeast, "steps"),
        (ours.StopAfterEpochs, ast.StopAfter, "epochs"),
        (ours.StopAfterSteps, ast.StopAfter, "steps"),
    )
    for counter, phrase, unit in counted:
        if isinstance(cb, counter):
            # Each keeps its count in the attribute named after its unit (``epochs``, ``steps``).
            return phrase(amount=getattr(cb, unit), unit=unit)
    if isinstance(cb, ours.ConditionStopping):
        return _our_stop_when(cb)
    if isinstance(cb, ours.StopAfterTime):
        return _our_stop_after_time(cb)
    if isinstance(cb, ours.TopKCheckpoint):
        return _our_save_top(cb)
    if isinstance(cb, ours.TimedCheckpoint):
        return _our_timed(cb)
    if isinstance(cb, ours.LearningRateLogger):
        if cb.key != "learning_rate":
            raise NoEquivalent(f"key={cb.key!r} has no equivalent; log lr writes 'learning_rate'")
        return ast.LogLR()
    if isinstance(cb, ours.PeriodicCheckpoint):
        return ast.SaveEvery(every=cb.every, path=ast.Path(value=cb.path), weights_only=cb.weights_only, keep=cb.keep)
    cbs = keras.callbacks
    # The Keras class it is or extends: the policy's own ModelCheckpoint and BackupAndRestore
    # are Keras's with only the way files reach the disk changed (policy.callbacks.atomic, .backup).
    kind = next((k for k in type(cb).__mro__ if k.__module__.startswith("keras.")), type(cb))
    if kind is cbs.EarlyStopping:
        return _early_stopping(cb)
    if isinstance(cb, ours.RestoringReduceLROnPlateau):
        node, note = _reduce_lr(cb)
        return dataclasses.replace(node, restore_best=True), note
    if kind is cbs.ReduceLROnPlateau:
        return _reduce_lr(cb)
    if kind is cbs.ModelCheckpoint:
        return _checkpoint(cb)
    if kind is cbs.TerminateOnNaN:
        condition = ast.NotFinite(metric=ast.Metric(name="loss"))
        return ast.FailWhen(condition=condition) if cb.raise_error else ast.StopWhen(condition=condition)
    if kind is cbs.CSVLogger:
        if cb.sep != ",":
            raise NoEquivalent(f"separator={cb.sep!r} has no equivalent; a policy's CSV log uses ','")
        return ast.LogCSV(path=ast.Path(value=cb.filename), append=bool(cb.append))
    if kind is cbs.TensorBoard:
        _check_tensorboard(cb)
        return ast.LogTensorBoard(path=ast.Path(value=cb.log_dir))
    if kind is cbs.BackupAndRestore:
        return _backup(cb)
    if isinstance(cb, cbs.LearningRateScheduler):  # ours (ScheduledLearningRate) extends it
        return _schedule(cb)
    from policy.callbacks.step_schedule import StepLearningRate

    if isinstance(cb, StepLearningRate):  # a step-counted schedule: its rule, as parsed
        return cb.rule
    raise NoEquivalent("no policy rule does what this callback does")


def _name(cb: Any) -> str:
    return type(cb).__name__


def _trend(monitor: str, mode: str) -> ast.Trend:
    """How a plateau on ``monitor`` with Keras ``mode`` is written: 'improving' when the name agrees."""
    named = name_direction(monitor)
    if mode == "auto":
        # Keras decides "auto" from the compiled metric; we can only go by the name, as a policy does.
        if named is None and monitor.removeprefix("val_") != "loss":
            raise NoEquivalent(f"mode='auto' on {monitor!r}: cannot tell from the name whether it should go up "
                               "or down; pass mode='min' or mode='max'")
        return "improving"
    if mode == named:
        return "improving"
    return "decreasing" if mode == "min" else "increasing"


def _patience(value: Any, what: str) -> tuple[int, str]:
    """A DSL patience and an explanatory comment ('' if none)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise NoEquivalent(f"patience={value!r} is not a whole number")
    if value < 1:
        # Keras counts the epoch before testing (wait += 1, then wait >= patience), so any
        # patience below 1 acts exactly like 1.
        return 1, f"  # {what} patience={value} acts as 1 in Keras (wait is counted before the test)"
    return value, ""


def _plateau(cb: Any, what: str) -> tuple[ast.Plateau, str]:
    """The plateau a Keras plateau callback watches (``monitor``, ``mode``, ``min_delta``, ``patience``)."""
    trend = _trend(cb.monitor, cb.mode)
    patience, note = _patience(cb.patience, what)
    delta = float(cb.min_delta)
    if not math.isfinite(delta):
        raise NoEquivalent(f"min_delta={cb.min_delta!r} is not finite")
    return ast.Plateau(metric=ast.Metric(name=cb.monitor), trend=trend, delta=delta, patience=patience), note


def _early_stopping(cb: Any) -> tuple[ast.StopWhen, str]:
    plateau, note = _plateau(cb, "EarlyStopping")
    if cb.start_from_epoch < 0:
        raise NoEquivalent(f"start_from_epoch={cb.start_from_epoch} is negative")
    node = ast.StopWhen(
        condition=plateau,
        restore_best=bool(cb.restore_best_weights),
        ignore_first=cb.start_from_epoch,
        baseline=None if cb.baseline is None else float(cb.baseline),
    )
    return node, note


def _reduce_lr(cb: Any) -> tuple[ast.ReduceLR, str]:
    plateau, note = _plateau(cb, "ReduceLROnPlateau")
    # The delta is written even when it is Keras's default 1e-4: a policy's default delta is 0.
    node = ast.ReduceLR(factor=float(cb.factor), when=plateau, cooldown=cb.cooldown, min_lr=float(cb.min_lr))
    return node, note


def _checkpoint(cb: Any) -> ast.Rule:
    if not cb.save_weights_only and not cb.filepath.endswith(".keras"):
        raise NoEquivalent(f"filepath={cb.filepath!r}: a policy saves models in the .keras format only")
    to = ast.Path(value=cb.filepath)
    weights_only = bool(cb.save_weights_only)
    if cb.save_best_only:
        if cb.save_freq != "epoch":
            raise NoEquivalent(f"save_best_only=True with save_freq={cb.save_freq!r} has no equivalent "
                               "(and fails inside Keras 3.15.1)")
        named = name_direction(cb.monitor)
        direction: ast.Direction | None
        if cb.mode == "auto":
            _trend(cb.monitor, "auto")  # raises when the name does not tell
            direction = None if named is not None else "min"  # only "loss" gets here with named None
        else:
            direction = None if cb.mode == named else cb.mode
        threshold = None
        if cb.best is not None:  # initial_value_threshold: the starting best
            value = float(cb.best)
            if not math.isfinite(value):
                raise NoEquivalent(f"initial_value_threshold={cb.best!r} has no equivalent (a threshold is a finite number)")
            mode = cb.mode if cb.mode != "auto" else (named or "min")
            threshold = ast.BestThreshold(side="below" if mode == "min" else "above", value=value)
        from policy.meaning import default_best_path

        return ast.SaveBest(
            metric=ast.Metric(name=cb.monitor),
            direction=direction,
            threshold=threshold,
            path=None if cb.filepath == default_best_path(weights_only) else to,
            weights_only=weights_only,
        )
    keep = getattr(cb, "keep", None)  # our KeepLastModelCheckpoint (keep last K)
    if keep is not None:
        if cb.save_freq == "epoch":
            return ast.SaveEvery(path=to, weights_only=weights_only, keep=keep)
        if _positive_int(cb.save_freq):
            return ast.SaveEvery(every=cb.save_freq, unit="steps", path=to, weights_only=weights_only, keep=keep)
    if cb.save_freq == "epoch":
        # Both forms compile to the same ModelCheckpoint; pick the one that reads true.
        if "{" in cb.filepath:
            return ast.SaveEvery(path=to, weights_only=weights_only)
        return ast.SaveLast(path=to, weights_only=weights_only)
    if _positive_int(cb.save_freq):
        return ast.SaveEvery(every=cb.save_freq, unit="steps", path=to, weights_only=weights_only)
    raise NoEquivalent(f"save_freq={cb.save_freq!r} has no equivalent")


def _our_timed(cb: Any) -> ast.SaveTimed:
    """The largest unit that writes the interval exactly (as ``stop after`` is described)."""
    seconds = float(cb.seconds)
    for unit in ("h", "min"):
        amount = seconds / ast.SECONDS_PER_UNIT[unit]
        if amount.is_integer() and amount >= 1:
            return ast.SaveTimed(amount=int(amount), unit=unit, path=ast.Path(value=cb.path), weights_only=cb.weights_only)
    return ast.SaveTimed(
        amount=int(seconds) if seconds.is_integer() else seconds, unit="s", path=ast.Path(value=cb.path),
        weights_only=cb.weights_only,
    )


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _check_tensorboard(cb: Any) -> None:
    changed = [name.lstrip("_").replace("start_batch", "profile_batch")
               for name, default in _TENSORBOARD_DEFAULTS.items() if getattr(cb, name, default) != default]
    if changed:
        raise NoEquivalent(f"{', '.join(changed)} set; a policy's TensorBoard rule takes only the log folder")


def _backup(cb: Any) -> ast.Backup:
    if cb.double_checkpoint or not cb.delete_checkpoint:
        raise NoEquivalent("double_checkpoint=True / delete_checkpoint=False have no equivalent")
    to = ast.Path(value=str(cb.backup_dir))
    if cb.save_freq == "epoch":
        return ast.Backup(path=to)
    if _positive_int(cb.save_freq):
        return ast.Backup(path=to, steps=cb.save_freq)
    raise NoEquivalent(f"save_freq={cb.save_freq!r} has no equivalent")


def _schedule(cb: Any) -> ast.Schedule:
    from policy.callbacks import LearningRateChain

    if isinstance(cb.schedule, LearningRateChain):
        return cb.schedule.node()
    what = getattr(cb.schedule, "__name__", type(cb.schedule).__name__)
    raise NoEquivalent(f"schedule {what} is a Python function; only schedules built by a policy "
                       "(warm up / cosine / decay) can be written as one")


# --------------------------------------------------------------------------- our own callbacks


def _own_rule(text: str) -> ast.Rule | None:
    """The one rule in a callback's stored rule text, or None if it is not one valid rule."""
    from policy.parser import parse

    try:
        (parsed,) = parse(text).rules
    except (PolicyError, ValueError):
        return None
    return parsed


def _our_stop_when(cb: Any) -> ast.StopWhen:
    # The restore target lives in private state; the rule text the compiler stored says it
    # all, so it is used once it is checked against the public condition.
    parsed = _own_rule(cb.rule)
    if not isinstance(parsed, ast.StopWhen) or (parsed.condition, parsed.ignore_first) != (cb.condition,
                                                                                           cb.ignore_first):
        raise NoEquivalent(f"its rule text {cb.rule!r} does not match its condition; build it with compile_policy")
    from policy.meaning import plateau_direction

    if tuple(cb.directions) != tuple(plateau_direction(p) for p in ast.plateaus_of(parsed.condition)):
        # A plateau watched against the way its text reads: no policy text says that.
        raise NoEquivalent(f"directions={list(cb.directions)!r} is not what {cb.rule!r} reads as")
    return parsed


def _our_stop_after_time(cb: Any) -> ast.StopAfter:
    # The unit the rule was written in ("0.05 min") lives only in its text: use that text
    # when it says the same number of seconds, else pick the largest unit that is whole.
    seconds = float(cb.seconds)
    parsed = _own_rule(cb.rule)
    if isinstance(parsed, ast.StopAfter) and parsed.unit in ast.SECONDS_PER_UNIT and (
            parsed.amount * ast.SECONDS_PER_UNIT[parsed.unit] == seconds):
        return parsed
    for unit in ("h", "min"):
        size = ast.SECONDS_PER_UNIT[unit]
        if seconds >= size and (seconds / size).is_integer():
            return ast.StopAfter(amount=seconds / size, unit=unit)
    return ast.StopAfter(amount=seconds, unit="s")


def _our_save_top(cb: Any) -> ast.SaveTop:
    return ast.SaveTop(
        k=cb.k,
        metric=ast.Metric(name=cb.monitor),
        direction=None if name_direction(cb.monitor) == cb.mode else cb.mode,
        path=ast.Path(value=cb.path),
        weights_only=bool(cb.weights_only),
    )
