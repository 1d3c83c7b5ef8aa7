"""AST -> Keras callbacks.

Principle: a rule Keras already implements compiles to Keras's own callback class with
exactly the arguments in docs/semantics.md, so it behaves identically to the hand-written
callback. Only what Keras lacks gets a callback of ours (:mod:`policy.callbacks`).
Which class, with which arguments and helpers, is the rule's plan (:mod:`policy.plan`, shared
with ``compile --python`` and ``explain``); this module builds the objects and orders the list.

The result is the plain list to pass to ``model.fit(callbacks=...)``. After ``fit``,
:func:`why_stopped` says which rule stopped training.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

import keras

from policy import ast
from policy.callbacks import FitStart, PolicyBackup, StopRecord
from policy.callbacks.base import POLICY_RULE
from policy.callbacks.baseline import keras_honours_baseline
from policy.callbacks.metric_check import metric_check
from policy.callbacks.minimum import Minimum
from policy.outcome import Stop
from policy.plan import KERAS, Call, Items, RulePlan, Value, plan_policy, plan_rule
from policy.printer import rule as rule_text


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


def why_failed(callbacks: Iterable[Any]) -> Stop | None:
    """Which ``fail when`` rule made the last ``fit`` raise, at which epoch, and why; None if none did.

    ``fit`` raised Keras's RuntimeError ("NaN or Inf loss encountered ..."); this names the rule.
    """
    for cb in callbacks:
        record = getattr(cb, "failure_record", None)
        if isinstance(record, StopRecord):
            return record.stop
    return None


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
    plans = plan_policy(policy)
    groups = [_build_plan(plan) for plan in plans]
    # `train at least`: its callback holds back the stops of the rules the plan marks held.
    minimum = next((main for main, _ in groups if isinstance(main, Minimum)), None)
    for plan, (main, group) in zip(plans, groups, strict=True):
        if plan.held and minimum is not None:
            at = group.index(main)
            group = [*group[:at], *minimum.hold(main), *group[at + 1 :]]
        for cb in group:
            setattr(cb, POLICY_RULE, plan.text)
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
    """The callbacks for one rule, built from its plan (:mod:`policy.plan`): one, or two
    (TerminateOnNaN and its recorder; a CSV log's folder maker and Keras's CSVLogger;
    :class:`FitStart` and Keras's ModelCheckpoint, BackupAndRestore or ReduceLROnPlateau)."""
    return _build_plan(plan_rule(rule, text))[1]


def _build_plan(plan: RulePlan) -> tuple[Any, list[Any]]:
    """The rule's own callback, and the whole list for the rule (helpers around it)."""
    main = _async_safe_if_epoch_only(build(plan.callback))
    fit_start = [FitStart(main, plan.text)] if plan.fit_start else []
    ahead = [build(c) for c in plan.ahead]
    return main, [*(build(c) for c in plan.before), *fit_start, *ahead, main, *(build(c) for c in plan.after)]


def build(call: Call) -> Any:
    """The object a planned call makes (the subclass the plan names in ``built_as``, if any)."""
    module, name = call.built_as or (call.module, call.name)
    if (module, name) == (KERAS, "EarlyStopping") and _baseline_needs_our_class(call):
        module, name = "policy.callbacks.baseline", "BaselineEarlyStopping"
    cls = getattr(importlib.import_module(module), name)
    positional = [_value(v) for v in call.positional]
    return cls(*positional, **{k: _value(v) for k, v in call.args + call.hidden})


def _baseline_needs_our_class(call: Call) -> bool:
    # `baseline B` keeps Keras 3.15.1's meaning on a Keras whose EarlyStopping dropped it; which
    # class that takes is known only with keras imported, so it is decided here, not in the plan.
    return dict(call.args).get("baseline") is not None and not keras_honours_baseline()


def _value(v: Value) -> Any:
    if isinstance(v, Call):
        return build(v)
    if isinstance(v, Items):
        return [_value(i) for i in v.items]
    return v


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
