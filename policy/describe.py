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

Anything with no exact equivalent (a lambda schedule, a custom callback, TensorBoard with
profiling, ``mode="auto"`` on a name whose direction cannot be told) is named in one
:class:`PolicyError` listing every such callback. ``verbose`` is ignored: it changes what
Keras prints, not what it does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from policy import ast
from policy.errors import PolicyError, Problem
from policy.metrics import name_direction
from policy.printer import number, path, rule

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


class NoEquivalent(Exception):
    """Raised inside this module for one callback; collected into a PolicyError."""


def describe(callbacks: Iterable[Any]) -> str:
    """Policy text (one rule a line, with ``#`` comments where needed) for a list of callbacks.

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
            lines.extend(describe_one(cb))
        except NoEquivalent as exc:
            problems.append(Problem(f"callback {index} ({_name(cb)}): {exc}"))
    if problems:
        raise PolicyError(problems)
    if not lines:
        raise PolicyError.plain("there are no callbacks to describe")
    text = "\n".join(lines)
    # Each line is valid alone; together they may still conflict (two rules writing one file).
    from policy.parser import parse
    from policy.validate import validate

    try:
        validate(parse(text))
    except PolicyError as exc:
        raise exc.with_filename("<described callbacks>") from None
    return text


def describe_one(cb: Any) -> list[str]:
    """The policy lines for one callback (usually one; none for our strict-metrics check)."""
    import keras

    from policy import callbacks as ours

    if isinstance(cb, ours.MetricCheck | ours.TerminateOnNaNRecorder | ours.CreateFolder | ours.FitStart):
        # compile_policy's helpers: the strict-metrics check and TerminateOnNaN's stop record.
        return []
    if isinstance(cb, ours.ConditionStopping):
        return [_our_stop_when(cb)]
    if isinstance(cb, ours.StopAfterEpochs):
        return [f"stop after {number(cb.epochs)} epochs"]
    if isinstance(cb, ours.StopAfterSteps):
        return [f"stop after {number(cb.steps)} steps"]
    if isinstance(cb, ours.StopAfterTime):
        return [_our_stop_after_time(cb)]
    if isinstance(cb, ours.TopKCheckpoint):
        return [_our_save_top(cb)]
    if isinstance(cb, ours.PeriodicCheckpoint):
        weights = " weights" if cb.weights_only else ""
        return [f"save{weights} every {cb.every} epochs to {path(ast.Path(value=cb.path))}"]
    cbs = keras.callbacks
    # The Keras class it is or extends: the policy's own ModelCheckpoint and BackupAndRestore
    # are Keras's with only the way files reach the disk changed (policy.callbacks.atomic, .backup).
    kind = next((k for k in type(cb).__mro__ if k.__module__.startswith("keras.")), type(cb))
    if kind is cbs.EarlyStopping:
        return [_early_stopping(cb)]
    if kind is cbs.ReduceLROnPlateau:
        return [_reduce_lr(cb)]
    if kind is cbs.ModelCheckpoint:
        return [_checkpoint(cb)]
    if kind is cbs.TerminateOnNaN:
        if cb.raise_error:
            raise NoEquivalent("raise_error=True has no equivalent; stop when loss is not finite stops gracefully")
        return ["stop when loss is not finite"]
    if kind is cbs.CSVLogger:
        if cb.sep != ",":
            raise NoEquivalent(f"separator={cb.sep!r} has no equivalent; a policy's CSV log uses ','")
        return [f"log to {path(ast.Path(value=cb.filename))}" + (", append" if cb.append else "")]
    if kind is cbs.TensorBoard:
        _check_tensorboard(cb)
        return [f"log to tensorboard {path(ast.Path(value=cb.log_dir))}"]
    if kind is cbs.BackupAndRestore:
        return [_backup(cb)]
    if isinstance(cb, cbs.LearningRateScheduler):  # ours (ScheduledLearningRate) extends it
        return [_schedule(cb)]
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


def _delta(min_delta: Any) -> str:
    value = float(min_delta)
    if not math.isfinite(value):
        raise NoEquivalent(f"min_delta={min_delta!r} is not finite")
    return f" by {number(value)}" if value else ""


def _early_stopping(cb: Any) -> str:
    trend = _trend(cb.monitor, cb.mode)
    patience, note = _patience(cb.patience, "EarlyStopping")
    out = f"stop when {cb.monitor} not {trend}{_delta(cb.min_delta)} for {patience}"
    if cb.restore_best_weights:
        out += ", restore best"
    if cb.start_from_epoch:
        if cb.start_from_epoch < 0:
            raise NoEquivalent(f"start_from_epoch={cb.start_from_epoch} is negative")
        out += f", ignore first {cb.start_from_epoch} epochs"
    if cb.baseline is not None:
        out += f", baseline {number(float(cb.baseline))}"
    return out + note


def _reduce_lr(cb: Any) -> str:
    trend = _trend(cb.monitor, cb.mode)
    patience, note = _patience(cb.patience, "ReduceLROnPlateau")
    # Written even when it is Keras's default 1e-4: a policy's default delta is 0.
    factor = number(float(cb.factor))
    out = f"multiply lr by {factor} when {cb.monitor} not {trend}{_delta(cb.min_delta)} for {patience}"
    if cb.cooldown:
        out += f", cooldown {cb.cooldown}"
    if cb.min_lr:
        out += f", min lr {number(float(cb.min_lr))}"
    return out + note


def _checkpoint(cb: Any) -> str:
    weights = " weights" if cb.save_weights_only else ""
    if not cb.save_weights_only and not cb.filepath.endswith(".keras"):
        raise NoEquivalent(f"filepath={cb.filepath!r}: a policy saves models in the .keras format only")
    if cb.save_best_only:
        if cb.save_freq != "epoch":
            raise NoEquivalent(f"save_best_only=True with save_freq={cb.save_freq!r} has no equivalent "
                               "(and fails inside Keras 3.15.1)")
        named = name_direction(cb.monitor)
        if cb.mode == "auto":
            _trend(cb.monitor, "auto")  # raises when the name does not tell
            direction = "" if named is not None else " min"  # only "loss" gets here with named None
        else:
            direction = "" if cb.mode == named else f" {cb.mode}"
        threshold = ""
        if cb.best is not None:  # initial_value_threshold: the starting best
            value = float(cb.best)
            if not math.isfinite(value):
                raise NoEquivalent(f"initial_value_threshold={cb.best!r} has no equivalent (a threshold is a finite number)")
            mode = cb.mode if cb.mode != "auto" else (named or "min")
            threshold = f" {'below' if mode == 'min' else 'above'} {number(value)}"
        from policy.meaning import default_best_path

        to = "" if cb.filepath == default_best_path(cb.save_weights_only) else f" to {path(ast.Path(value=cb.filepath))}"
        return f"save best{weights} on {cb.monitor}{direction}{threshold}{to}"
    if cb.save_freq == "epoch":
        # Both forms compile to the same ModelCheckpoint; pick the one that reads true.
        if "{" in cb.filepath:
            return f"save{weights} every epoch to {path(ast.Path(value=cb.filepath))}"
        return f"save last{weights} to {path(ast.Path(value=cb.filepath))}"
    if isinstance(cb.save_freq, int) and not isinstance(cb.save_freq, bool) and cb.save_freq > 0:
        return f"save{weights} every {cb.save_freq} steps to {path(ast.Path(value=cb.filepath))}"
    raise NoEquivalent(f"save_freq={cb.save_freq!r} has no equivalent")


def _check_tensorboard(cb: Any) -> None:
    changed = [name.lstrip("_").replace("start_batch", "profile_batch")
               for name, default in _TENSORBOARD_DEFAULTS.items() if getattr(cb, name, default) != default]
    if changed:
        raise NoEquivalent(f"{', '.join(changed)} set; a policy's TensorBoard rule takes only the log folder")


def _backup(cb: Any) -> str:
    if cb.double_checkpoint or not cb.delete_checkpoint:
        raise NoEquivalent("double_checkpoint=True / delete_checkpoint=False have no equivalent")
    if cb.save_freq == "epoch":
        return f"backup to {path(ast.Path(value=str(cb.backup_dir)))}"
    if isinstance(cb.save_freq, int) and not isinstance(cb.save_freq, bool) and cb.save_freq > 0:
        return f"backup to {path(ast.Path(value=str(cb.backup_dir)))} every {cb.save_freq} steps"
    raise NoEquivalent(f"save_freq={cb.save_freq!r} has no equivalent")


def _schedule(cb: Any) -> str:
    from policy.callbacks import LearningRateChain

    if isinstance(cb.schedule, LearningRateChain):
        return rule(cb.schedule.node())
    what = getattr(cb.schedule, "__name__", type(cb.schedule).__name__)
    raise NoEquivalent(f"schedule {what} is a Python function; only schedules built by a policy "
                       "(warm up / cosine / decay) can be written as one")


# --------------------------------------------------------------------------- our own callbacks


def _our_stop_when(cb: Any) -> str:
    # The restore target lives in private state; the rule text the compiler stored says it
    # all, so it is used once it is checked against the public condition.
    from policy.parser import parse

    try:
        (parsed,) = parse(cb.rule).rules
    except (PolicyError, ValueError):
        parsed = None
    if not isinstance(parsed, ast.StopWhen) or (parsed.condition, parsed.ignore_first) != (cb.condition,
                                                                                           cb.ignore_first):
        raise NoEquivalent(f"its rule text {cb.rule!r} does not match its condition; build it with compile_policy")
    return rule(parsed)


def _our_stop_after_time(cb: Any) -> str:
    # The unit the rule was written in ("0.05 min") lives only in its text: use that text
    # when it says the same number of seconds, else pick the largest unit that is whole.
    from policy.parser import parse

    seconds = float(cb.seconds)
    try:
        (parsed,) = parse(cb.rule).rules
    except (PolicyError, ValueError):
        parsed = None
    if isinstance(parsed, ast.StopAfter) and parsed.unit in ast.SECONDS_PER_UNIT and (
            parsed.amount * ast.SECONDS_PER_UNIT[parsed.unit] == seconds):
            return rule(parsed)
    for unit in ("h", "min"):
        size = ast.SECONDS_PER_UNIT[unit]
        if seconds >= size and (seconds / size).is_integer():
            return f"stop after {number(seconds / size)}{' min' if unit == 'min' else unit}"
    return f"stop after {number(seconds)}s"


def _our_save_top(cb: Any) -> str:
    weights = " weights" if cb.weights_only else ""
    direction = "" if name_direction(cb.monitor) == cb.mode else f" {cb.mode}"
    return f"save top {cb.k}{weights} on {cb.monitor}{direction} to {path(ast.Path(value=cb.path))}"
