"""AST -> Keras callbacks.

Principle: a rule Keras already implements compiles to Keras's own callback class with
exactly the arguments in docs/semantics.md, so it behaves identically to the hand-written
callback. Only what Keras lacks gets a callback of ours (:mod:`policy.callbacks`).

The result is the plain list to pass to ``model.fit(callbacks=...)``. After ``fit``,
:func:`why_stopped` says which rule stopped training.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import keras

from policy import ast
from policy.callbacks import (
    AtomicModelCheckpoint,
    ConditionStopping,
    CreateFolder,
    FitStart,
    LearningRateChain,
    PeriodicCheckpoint,
    PolicyBackup,
    ScheduledLearningRate,
    StopAfterEpochs,
    StopAfterSteps,
    StopAfterTime,
    StopRecord,
    TerminateOnNaNRecorder,
    TopKCheckpoint,
)
from policy.callbacks.baseline import BaselineEarlyStopping, keras_honours_baseline
from policy.callbacks.metric_check import metric_check
from policy.callbacks.schedules import segment_of
from policy.outcome import Stop
from policy.printer import condition as condition_text
from policy.printer import rule as rule_text
from policy.validate import (
    checkpoint_direction,
    default_best_path,
    is_early_stopping,
    is_terminate_on_nan,
    plateau_direction,
    restore_target,
)


def why_stopped(callbacks: Iterable[Any]) -> Stop | None:
    """Which rule stopped the last ``fit``, at which epoch, and why; None if none did.

    ``callbacks`` is what :func:`compile_rules` returned (other callbacks mixed in are
    ignored). When several rules decide to stop in the same epoch, the first decision wins:
    a decision after a training batch precedes those at the epoch end, and among equals the
    rule written first wins.
    """
    found: list[tuple[tuple[int, int, int, int], Stop]] = []
    for position, cb in enumerate(callbacks):
        record = _stop_record(cb, getattr(cb, POLICY_RULE, None))
        if record is not None:
            found.append((record.order(position), record.stop))
    return min(found, key=lambda pair: pair[0])[1] if found else None


# The attribute naming the rule a compiled callback came from (set on Keras's own classes too).
POLICY_RULE = "policy_rule"


def _stop_record(cb: Any, rule: str | None) -> StopRecord | None:
    if isinstance(cb, keras.callbacks.EarlyStopping):
        # EarlyStopping cannot stop at epoch 0 (it needs epoch > 0), so 0 means "did not stop".
        if cb.stopped_epoch <= 0 or rule is None:
            return None
        delta = f" by {abs(cb.min_delta):g}" if cb.min_delta else ""
        reason = f"{cb.monitor} did not improve{delta} for {cb.wait} epochs (patience {cb.patience})"
        return StopRecord(Stop(rule, cb.stopped_epoch, reason))
    record = getattr(cb, "stop_record", None)
    return record if isinstance(record, StopRecord) else None


def compile_rules(policy: ast.Policy, strict: bool = True) -> list[Any]:
    """Turn a validated policy into callbacks (see docs/semantics.md for each rule).

    The result is a plain ``list``: Keras flattens ``callbacks`` with its tree utilities,
    which treat a list *subclass* as a single leaf, so anything fancier breaks ``fit``.
    Each callback carries the canonical text of its rule in ``policy_rule``, which is how
    :func:`why_stopped` names the rule afterwards.
    """
    callbacks: list[Any] = [metric_check(policy)] if strict else []
    texts = [rule_text(rule) for rule in policy.rules]
    for rule, text in zip(policy.rules, texts, strict=True):
        for cb in compile_rule(rule, text):
            setattr(cb, POLICY_RULE, text)
            callbacks.append(cb)
    # The backup goes last whatever its place in the text: it restores after every other
    # callback has reset itself at train begin, and saves after every other one has decided
    # at an epoch end (docs/semantics.md, "Backups").
    backups = [cb for cb in callbacks if isinstance(cb, PolicyBackup)]
    callbacks = [cb for cb in callbacks if not isinstance(cb, PolicyBackup)] + backups
    for backup in backups:
        backup.attach(callbacks, policy, texts)
    return callbacks


def compile_rule(rule: ast.Rule, text: str | None = None) -> list[Any]:
    """The callbacks for one rule: one, or two (TerminateOnNaN and its recorder; a CSV log's
    folder maker and Keras's CSVLogger; :class:`FitStart` and Keras's ModelCheckpoint,
    BackupAndRestore or ReduceLROnPlateau)."""
    text = text if text is not None else rule_text(rule)
    out: list[Any] = []
    for cb in _compile_rule(rule, text):
        if isinstance(cb, _CARRY_STATE):
            out.append(FitStart(cb, text))
        out.append(_async_safe_if_epoch_only(cb))
    return out


# Keras's own callbacks that need :class:`FitStart` before them: they keep state across fits
# (a checkpoint's best and batch counters, a backup's batch counter), or, for ReduceLROnPlateau,
# must refuse an optimizer whose rate is a LearningRateSchedule before the first batch.
# Before Keras's CSVLogger and TensorBoard it puts the log of every process but the writer
# in a private place (multi-process training writes one log).
_CARRY_STATE = (
    keras.callbacks.ModelCheckpoint,
    keras.callbacks.BackupAndRestore,
    keras.callbacks.ReduceLROnPlateau,
    keras.callbacks.CSVLogger,
    keras.callbacks.TensorBoard,
)


def _async_safe_if_epoch_only(cb: Any) -> Any:
    """Mark Keras's ModelCheckpoint / BackupAndRestore ``async_safe`` when they save per epoch.

    Both override ``on_train_batch_end`` even with ``save_freq="epoch"``, where the hook only
    returns (``_should_save_on_batch`` is False), and any such override turns off Keras's
    async batch dispatch on thread-safe backends (JAX, torch): about 8% of a JAX fit here
    (BENCHMARKS.md, figure 4). ``async_safe = True`` is Keras's own switch for a callback
    whose batch hooks may run late, which a no-op hook can. The object is still Keras's own
    class with the same arguments, and what it saves and when is unchanged.
    """
    savers = (keras.callbacks.ModelCheckpoint, keras.callbacks.BackupAndRestore)
    if isinstance(cb, savers) and cb.save_freq == "epoch":
        cb.async_safe = True
    return cb


def _compile_rule(rule: ast.Rule, text: str) -> list[Any]:
    if isinstance(rule, ast.StopWhen):
        return _stop_when(rule, text)
    if isinstance(rule, ast.StopAfter):
        if rule.unit == "epochs":
            return [StopAfterEpochs(rule.amount, text)]
        if rule.unit == "steps":
            return [StopAfterSteps(rule.amount, text)]
        return [StopAfterTime.of(rule.amount, rule.unit, text)]
    if isinstance(rule, ast.SaveBest):
        return [
            AtomicModelCheckpoint(
                rule.path if rule.path is not None else default_best_path(rule.weights_only),
                monitor=rule.metric.name,
                mode=checkpoint_direction(rule.metric, rule.direction),
                save_best_only=True,
                save_weights_only=rule.weights_only,
            )
        ]
    if isinstance(rule, ast.SaveTop):
        mode = checkpoint_direction(rule.metric, rule.direction)
        return [TopKCheckpoint(rule.path, rule.k, rule.metric.name, mode, rule.weights_only)]
    if isinstance(rule, ast.SaveEvery):
        if rule.unit == "steps":
            return [
                AtomicModelCheckpoint(rule.path, save_weights_only=rule.weights_only, save_freq=rule.every)
            ]
        if rule.every == 1:
            return [AtomicModelCheckpoint(rule.path, save_weights_only=rule.weights_only, save_freq="epoch")]
        return [PeriodicCheckpoint(rule.path, rule.every, rule.weights_only)]
    if isinstance(rule, ast.SaveLast):
        return [AtomicModelCheckpoint(rule.path, save_weights_only=rule.weights_only, save_freq="epoch")]
    if isinstance(rule, ast.ReduceLR):
        p = rule.when
        return [
            keras.callbacks.ReduceLROnPlateau(
                monitor=p.metric.name,
                factor=rule.factor,
                patience=p.patience,
                min_delta=p.delta,
                cooldown=rule.cooldown,
                min_lr=rule.min_lr,
                mode=plateau_direction(p),
            )
        ]
    if isinstance(rule, ast.Schedule):
        return [ScheduledLearningRate(LearningRateChain([segment_of(s) for s in rule.segments]))]
    if isinstance(rule, ast.LogCSV):
        logger = keras.callbacks.CSVLogger(rule.path, append=rule.append)
        folder = os.path.dirname(rule.path)
        return [CreateFolder(folder), logger] if folder else [logger]
    if isinstance(rule, ast.LogTensorBoard):
        return [keras.callbacks.TensorBoard(log_dir=rule.path)]
    return [PolicyBackup(rule.path, save_freq="epoch" if rule.steps is None else rule.steps)]


def _stop_when(rule: ast.StopWhen, text: str) -> list[Any]:
    if is_terminate_on_nan(rule):
        return [keras.callbacks.TerminateOnNaN(), TerminateOnNaNRecorder(text)]
    c = rule.condition
    if is_early_stopping(rule):
        assert isinstance(c, ast.Plateau)
        # `baseline B` keeps Keras 3.15.1's meaning on a Keras whose EarlyStopping dropped it.
        keep_baseline = rule.baseline is not None and not keras_honours_baseline()
        early_stopping = BaselineEarlyStopping if keep_baseline else keras.callbacks.EarlyStopping
        return [
            early_stopping(
                monitor=c.metric.name,
                min_delta=c.delta,
                patience=c.patience,
                mode=plateau_direction(c),
                baseline=rule.baseline,
                restore_best_weights=rule.restore_best,
                start_from_epoch=rule.ignore_first,
            )
        ]
    if rule.baseline is not None:  # validate() only allows a baseline on EarlyStopping's form
        raise ValueError(f"baseline needs a single absolute plateau. Received: {condition_text(c)}")
    return [ConditionStopping(c, text, restore_target(rule), rule.ignore_first)]
