"""Each rule -> the callbacks it becomes, as plain data (the one rule-to-callback table).

:func:`plan_rule` says, for one validated rule, which callback class it compiles to, with
which arguments, which helper callbacks go around it, and which subclass ``compile_policy``
builds in place of a Keras class. Three readers share it, so they cannot disagree:

- :mod:`policy.compiler` builds the objects (the only one of the three importing keras);
- :mod:`policy.eject` writes the same calls as Python source (``keras-policy compile --python``);
- :mod:`policy.explain` shows the rule's callback (``keras-policy explain``).

Everything validation decided (a metric's direction, the default path, the restore target)
is worked out here once and carried as argument values, so no reader decides it again.
Arguments equal to the class's default are left out, so the calls read like code a person
would write; building with or without them gives equal callbacks.

A new phrase is one branch in :func:`callback_call` (and, if it needs a helper callback, a line
in :func:`plan_rule`): the compiler builds any planned class by its module and name, eject
writes it and its imports, explain shows it, with no change to those modules. No keras import here.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import TypeAlias

from policy import ast
from policy.meaning import (
    best_path,
    checkpoint_direction,
    fail_form,
    held_by_minimum,
    minimum_of,
    plateau_direction,
    restore_target,
    step_schedule_of,
    stop_form,
)
from policy.printer import condition as condition_text
from policy.printer import rule as rule_text

KERAS = "keras.callbacks"
OURS = "policy.callbacks"
AST = "policy.ast"


@dataclass(frozen=True)
class Items:
    """A list argument (``LearningRateChain([WarmupSegment(...), ...])``)."""

    items: tuple[Value, ...]


@dataclass(frozen=True)
class Call:
    """One constructor call: the class (module and name), its arguments, how it is shown.

    ``hidden`` arguments are passed when building and written in the Python source, but left
    out of the display (the rule text our callbacks keep for their stop record). ``display``
    replaces the whole call in the display when it appears as an argument. ``built_as`` names
    the subclass ``compile_policy`` builds instead of a Keras class: same arguments, same
    decisions, only how files reach the disk differs (hand-written code uses Keras's class).
    """

    module: str
    name: str
    positional: tuple[Value, ...] = ()
    args: tuple[tuple[str, Value], ...] = ()
    hidden: tuple[tuple[str, Value], ...] = ()
    display: str | None = None
    built_as: tuple[str, str] | None = None

    def text(self) -> str:
        """The display form: ``EarlyStopping(monitor='val_loss', patience=3, mode='min')`` for Keras's
        classes, ``policy.callbacks.ConditionStopping(...)`` for ours, so the two cannot be confused."""
        parts = [_show(v) for v in self.positional] + [f"{k}={_show(v)}" for k, v in self.args]
        prefix = "" if self.module == KERAS else f"{self.module}."
        return f"{prefix}{self.name}({', '.join(parts)})"

    def source(self) -> str:
        """Runnable Python: ``keras.callbacks.EarlyStopping(...)``, or ``ConditionStopping(...)`` (imported)."""
        parts = [_src(v) for v in self.positional] + [f"{k}={_src(v)}" for k, v in self.args + self.hidden]
        prefix = "keras.callbacks." if self.module == KERAS else ""
        return f"{prefix}{self.name}({', '.join(parts)})"

    def imports(self) -> set[tuple[str, str]]:
        """``(module, name)`` pairs the source needs besides ``import keras``."""
        out: set[tuple[str, str]] = set() if self.module == KERAS else {(self.module, self.name)}
        for v in self.values():
            out |= _imports(v)
        return out

    def values(self) -> tuple[Value, ...]:
        """Every argument value, positional then keyword (hidden ones included)."""
        return (*self.positional, *(v for _, v in self.args + self.hidden))


# A condition is passed to ConditionStopping as its syntax tree; a restore target is a
# ``(metric, direction)`` pair.
Value: TypeAlias = str | int | float | bool | tuple[str, str] | ast.Condition | Call | Items | None


@dataclass(frozen=True)
class RulePlan:
    """What one rule compiles to, in list order: ``before``, then FitStart if ``fit_start``,
    then ``ahead``, then ``callback``, then ``after``.

    ``callback`` is the rule's own callback (what ``explain`` names). ``before`` holds helpers
    hand-written code needs too (the folder of a CSV log); ``ahead`` and ``after`` hold helpers
    only ``compile_policy`` adds (the recorder that knows when TerminateOnNaN fired: after it when
    it stops, ahead of it when it raises, since nothing after a raising callback sees the batch).
    ``fit_start``
    puts :class:`policy.callbacks.FitStart` right before a Keras callback that keeps state
    across fits or logs to a file (see its module).
    """

    text: str
    callback: Call
    before: tuple[Call, ...] = ()
    after: tuple[Call, ...] = ()
    fit_start: bool = False
    ahead: tuple[Call, ...] = ()
    held: bool = False
    """The policy's ``train at least`` holds back this rule's stops: its callback goes into the
    list as ``minimum.hold(callback)`` (:class:`policy.callbacks.MinimumEpochs`)."""

    def written(self) -> tuple[Call, ...]:
        """The calls hand-written code makes for this rule (``compile --python``), in order."""
        return (*self.before, self.callback)


# Keras's callbacks that keep state across fits (a checkpoint's best and batch counters, a
# backup's batch counter), must refuse a LearningRateSchedule optimizer before the first
# batch (ReduceLROnPlateau), or write one log under several processes (CSVLogger, TensorBoard).
_FIT_START = frozenset({"ModelCheckpoint", "BackupAndRestore", "ReduceLROnPlateau", "CSVLogger", "TensorBoard"})

# The subclasses compile_policy builds for Keras's savers (files appear only when complete;
# a backup holds every rule's state).
_BUILT_AS = {
    "ModelCheckpoint": (OURS, "AtomicModelCheckpoint"),
    "BackupAndRestore": (OURS, "PolicyBackup"),
}


def list_order(policy: ast.Policy) -> list[int]:
    """The indices of the rules in the order their callbacks go in the list: as written, except
    that ``log lr`` goes first, so every callback after it (a CSVLogger, TensorBoard, a rule
    reading ``learning_rate``) sees the key it writes, wherever the rule was written."""
    rules = policy.rules
    return sorted(range(len(rules)), key=lambda i: not isinstance(rules[i], ast.LogLR))


def plan_policy(policy: ast.Policy) -> list[RulePlan]:
    """One plan per rule, in list order (:func:`list_order`); with a ``train at least`` rule, the
    rules it holds back say so."""
    order = list_order(policy)
    handover = step_schedule_of(policy) is not None
    plans = [plan_rule(policy.rules[i], after_step_schedule=handover) for i in order]
    if minimum_of(policy) is None:
        return plans
    return [
        dataclasses.replace(p, held=True) if held_by_minimum(policy.rules[i]) else p
        for i, p in zip(order, plans, strict=True)
    ]


def plan_rule(r: ast.Rule, text: str | None = None, *, after_step_schedule: bool = False) -> RulePlan:
    """The plan of one validated rule (``text`` is its canonical text, printed if not given;
    ``after_step_schedule``: the policy has a schedule counted in steps)."""
    text = text if text is not None else rule_text(r)
    call = callback_call(r, text, after_step_schedule=after_step_schedule)
    before: tuple[Call, ...] = ()
    after: tuple[Call, ...] = ()
    if isinstance(r, ast.LogCSV) and os.path.dirname(r.path.value):
        # Keras's CSVLogger does not create its folder (policy/callbacks/folders.py).
        before = (Call(OURS, "CreateFolder", (os.path.dirname(r.path.value),)),)
    ahead: tuple[Call, ...] = ()
    if isinstance(r, ast.StopWhen) and stop_form(r) == "TerminateOnNaN":
        # TerminateOnNaN keeps no record of stopping; why_stopped reads the recorder's.
        after = (Call(OURS, "TerminateOnNaNRecorder", (text,)),)
    if isinstance(r, ast.FailWhen):
        # ...nor of raising; why_failed reads the recorder's, which must see the batch first.
        ahead = (Call(OURS, "TerminateOnNaNRecorder", (text,), (("fails", True),)),)
    # KeepLastModelCheckpoint is Keras's ModelCheckpoint underneath: the same counters carry over.
    fit_start = (call.module == KERAS and call.name in _FIT_START) or call.name in (
        "RestoringReduceLROnPlateau",
        "HandoverReduceLROnPlateau",
        "KeepLastModelCheckpoint",
    )
    return RulePlan(text, call, before, after, fit_start, ahead)


def callback_call(r: ast.Rule, text: str | None = None, *, after_step_schedule: bool = False) -> Call:
    """The call of the callback a rule compiles to (docs/semantics.md says what each one does)."""
    text = text if text is not None else rule_text(r)
    if isinstance(r, ast.StopWhen):
        form = stop_form(r)
        if form == "TerminateOnNaN":
            return _keras("TerminateOnNaN")
        if form == "EarlyStopping":
            return _early_stopping(r)
        return _condition_stopping(r, text)
    if isinstance(r, ast.FailWhen):
        return _keras(fail_form(r), ("raise_error", True))
    if isinstance(r, ast.TrainAtLeast):
        name, arg = ("MinimumEpochs", "epochs") if r.unit == "epochs" else ("MinimumSteps", "steps")
        return Call(OURS, name, args=((arg, r.amount),), hidden=(("rule", text),))
    if isinstance(r, ast.StopAfter):
        return _stop_after(r, text)
    if isinstance(r, ast.SaveBest):
        path = best_path(r)
        mode = checkpoint_direction(r)
        # `below X` / `above X` is Keras's initial_value_threshold (the checkpoint's starting best).
        threshold: tuple[tuple[str, Value], ...] = (
            () if r.threshold is None else (("initial_value_threshold", r.threshold.value),)
        )
        return _keras("ModelCheckpoint", ("monitor", r.metric.name), ("mode", mode), ("save_best_only", True),
                      *_flag("save_weights_only", r.weights_only), *threshold, positional=(path,))
    if isinstance(r, ast.SaveTop):
        mode = checkpoint_direction(r)
        return Call(OURS, "TopKCheckpoint", (r.path.value,), (("k", r.k), ("monitor", r.metric.name), ("mode", mode),
                                                        *_flag("weights_only", r.weights_only)))
    if isinstance(r, ast.SaveTimed):
        seconds = r.amount * ast.SECONDS_PER_UNIT[r.unit]
        return Call(OURS, "TimedCheckpoint", (r.path.value,), (("seconds", seconds), *_flag("weights_only", r.weights_only)))
    keep: tuple[tuple[str, Value], ...] = ()
    if isinstance(r, ast.SaveEvery) and r.keep is not None:
        keep = (("keep", r.keep),)
    if isinstance(r, ast.SaveEvery) and r.unit == "epochs" and r.every > 1:
        return Call(OURS, "PeriodicCheckpoint", (r.path.value,),
                    (("every", r.every), *_flag("weights_only", r.weights_only), *keep))
    if isinstance(r, ast.SaveEvery | ast.SaveLast):
        freq: tuple[tuple[str, Value], ...] = ()
        if isinstance(r, ast.SaveEvery) and r.unit == "steps":
            freq = (("save_freq", r.every),)
        if keep:
            # Keras's ModelCheckpoint deletes nothing: ours is it plus retention (policy/callbacks/retention.py).
            return Call(OURS, "KeepLastModelCheckpoint", (r.path.value,),
                        (*keep, *freq, *_flag("save_weights_only", r.weights_only)))
        return _keras("ModelCheckpoint", *freq, *_flag("save_weights_only", r.weights_only), positional=(r.path.value,))
    if isinstance(r, ast.ReduceLR):
        return _reduce_lr(r, after_step_schedule)
    if isinstance(r, ast.Schedule):
        return _schedule(r, text)
    if isinstance(r, ast.LogCSV):
        return _keras("CSVLogger", *_flag("append", r.append), positional=(r.path.value,))
    if isinstance(r, ast.LogTensorBoard):
        return _keras("TensorBoard", ("log_dir", r.path.value))
    if isinstance(r, ast.LogLR):
        return Call(OURS, "LearningRateLogger")
    steps: tuple[tuple[str, Value], ...] = () if r.steps is None else (("save_freq", r.steps),)
    return _keras("BackupAndRestore", ("backup_dir", r.path.value), *steps)


def _keras(name: str, *args: tuple[str, Value], positional: tuple[Value, ...] = ()) -> Call:
    return Call(KERAS, name, positional, args, built_as=_BUILT_AS.get(name))


def _flag(name: str, on: bool) -> tuple[tuple[str, Value], ...]:
    """A boolean argument whose default is False: written only when True."""
    return ((name, True),) if on else ()


def _early_stopping(r: ast.StopWhen) -> Call:
    c = r.condition
    assert isinstance(c, ast.Plateau), "stop_form() is EarlyStopping only for a single plateau"
    args: list[tuple[str, Value]] = [("monitor", c.metric.name)]
    if c.delta:
        args.append(("min_delta", c.delta))
    args += [("patience", c.patience), ("mode", plateau_direction(c))]
    if r.baseline is not None:
        args.append(("baseline", r.baseline))
    args += _flag("restore_best_weights", r.restore_best)
    if r.ignore_first:
        args.append(("start_from_epoch", r.ignore_first))
    return _keras("EarlyStopping", *args)


def _reduce_lr(r: ast.ReduceLR, after_step_schedule: bool) -> Call:
    p = r.when
    # Keras's default min_delta is 1e-4 and a policy's is 0, so it is always written out.
    args: list[tuple[str, Value]] = [("monitor", p.metric.name), ("factor", r.factor), ("patience", p.patience),
                                     ("mode", plateau_direction(p)), ("min_delta", p.delta)]
    if r.cooldown:
        args.append(("cooldown", r.cooldown))
    if r.min_lr:
        args.append(("min_lr", r.min_lr))
    if r.restore_best:
        # Keras's ReduceLROnPlateau has no such knob: our subclass keeps every decision of Keras's
        # and adds only the restore.
        return Call(OURS, "RestoringReduceLROnPlateau", args=tuple(args))
    if after_step_schedule:
        # Keras's cannot set a rate that is a LearningRateSchedule: the same decisions, with the
        # cut written into the rate the schedule hands over at its end.
        return Call(OURS, "HandoverReduceLROnPlateau", args=tuple(args))
    return _keras("ReduceLROnPlateau", *args)


def _condition_stopping(r: ast.StopWhen, text: str) -> Call:
    args: list[tuple[str, Value]] = [("condition", r.condition)]
    target = restore_target(r)
    if target is not None:
        args.append(("restore", target))
    if r.ignore_first:
        args.append(("ignore_first", r.ignore_first))
    directions = tuple(plateau_direction(p) for p in ast.plateaus_of(r.condition))
    if directions:
        # Settled here (validation asked the same function), so the callback decides none itself.
        args.append(("directions", Items(directions)))
    return Call(OURS, "ConditionStopping", args=tuple(args), hidden=(("rule", text),))


def _stop_after(r: ast.StopAfter, text: str) -> Call:
    hidden: tuple[tuple[str, Value], ...] = (("rule", text),)
    if r.unit == "epochs":
        return Call(OURS, "StopAfterEpochs", args=(("epochs", r.amount),), hidden=hidden)
    if r.unit == "steps":
        return Call(OURS, "StopAfterSteps", args=(("steps", r.amount),), hidden=hidden)
    return Call(OURS, "StopAfterTime", args=(("seconds", r.amount * ast.SECONDS_PER_UNIT[r.unit]),), hidden=hidden)


def _schedule(r: ast.Schedule, text: str) -> Call:
    if ast.counts_steps(r):
        # Counted in optimizer steps: a LearningRateSchedule installed at train begin, evaluated
        # inside the train step (no batch hook); it needs fit's steps per epoch, so it is built then.
        return Call(OURS, "StepLearningRate", (text,))
    segments = Items(tuple(_segment(s) for s in r.segments))
    chain = Call(OURS, "LearningRateChain", (segments,), display=f"LearningRateChain({text!r})")
    return Call(OURS, "ScheduledLearningRate", (chain,))


def _segment(s: ast.Segment) -> Call:
    """The epoch-counted segment (every length in epochs: ``counts_steps`` is false)."""
    if isinstance(s, ast.Warmup):
        return Call(OURS, "WarmupSegment", args=(("target", s.target), ("epochs", s.epochs)))
    if isinstance(s, ast.Cosine):
        restart: tuple[tuple[str, Value], ...] = (("restart", int(s.restart.count)),) if s.restart else ()
        restart += (("period_factor", s.period_factor),) if s.period_factor != 1 else ()
        restart += (("peak_factor", s.peak_factor),) if s.peak_factor != 1 else ()
        return Call(OURS, "CosineSegment", args=(("target", s.target), ("epochs", s.epochs), *restart))
    if isinstance(s, ast.Linear):
        return Call(OURS, "LinearSegment", args=(("target", s.target), ("epochs", int(s.over.count))))
    if isinstance(s, ast.Hold):
        return Call(OURS, "HoldSegment", args=(("epochs", int(s.over.count)),))
    if isinstance(s, ast.Milestones):
        return Call(OURS, "MilestoneSegment", args=(("factor", s.factor), ("at", Items(s.at))))
    if isinstance(s, ast.InverseSqrt):
        return Call(OURS, "InverseSqrtSegment")
    smooth: tuple[tuple[str, Value], ...] = (("smooth", True),) if s.smooth else ()
    return Call(OURS, "DecaySegment", args=(("factor", s.factor), ("every", s.every), *smooth))


# --------------------------------------------------------------------------- writing values


def _show(v: Value) -> str:
    if isinstance(v, Call):
        return v.display or v.text()
    if isinstance(v, Items):
        return f"[{', '.join(_show(i) for i in v.items)}]"
    if isinstance(v, ast.Plateau | ast.Threshold | ast.NotFinite | ast.AnyOf | ast.AllOf):
        return repr(condition_text(v))  # a condition shows as its policy text
    return repr(v)


def _src(v: Value) -> str:
    if isinstance(v, Call):
        return v.source()
    if isinstance(v, Items):
        return f"[{', '.join(_src(i) for i in v.items)}]"
    # A syntax tree's repr is valid Python given its node classes (positions are left out).
    return repr(v)


def _imports(v: object) -> set[tuple[str, str]]:
    if isinstance(v, Call):
        return v.imports()
    if isinstance(v, Items):
        return set().union(*(_imports(i) for i in v.items))
    if isinstance(v, ast.Node):
        found = {(AST, type(v).__name__)}
        for f in dataclasses.fields(v):
            found |= _imports(getattr(v, f.name))
        return found
    if isinstance(v, tuple):
        return set().union(*(_imports(i) for i in v))
    return set()
