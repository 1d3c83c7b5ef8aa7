"""Policy -> the Keras code a person would write by hand (``keras-policy compile --python``).

For users who want to leave the DSL behind, or just see what it does: the output is a
runnable module with the imports and a ``callbacks = [...]`` list. Rules Keras has become
``keras.callbacks.*`` calls with exactly the arguments :mod:`policy.compiler` passes; rules
it lacks construct our classes from :mod:`policy.callbacks` directly. The same calls, in a
shorter display form, are what ``keras-policy explain`` shows. No keras import here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from policy import ast
from policy.printer import condition as condition_text
from policy.printer import format_policy, rule
from policy.validate import (
    checkpoint_direction,
    default_best_path,
    is_early_stopping,
    is_terminate_on_nan,
    plateau_direction,
    restore_target,
)

KERAS = "keras.callbacks"
OURS = "policy.callbacks"
AST = "policy.ast"

ArgValue = str | int | float | bool | None | tuple[str, str]

@dataclass(frozen=True)
class Code:
    """A value that is not a literal: its Python source, a shorter display, and what it imports."""

    source: str
    display: str = ""
    imports: tuple[tuple[str, str], ...] = ()


Value = ArgValue | Code


@dataclass(frozen=True)
class CallbackCall:
    """One callback constructor call: the class, where it lives, and its arguments.

    Arguments equal to the class's defaults are left out, so the call reads like code a
    person would write. ``hidden`` arguments appear in the Python source but not in the
    display (the rule text our callbacks keep for their stop record).
    """

    module: str
    name: str
    args: tuple[tuple[str, Value], ...] = ()
    positional: tuple[Value, ...] = ()
    hidden: tuple[tuple[str, Value], ...] = field(default=())

    def text(self) -> str:
        """The display form: ``EarlyStopping(monitor='val_loss', patience=3, mode='min')`` for Keras's
        classes, ``policy.callbacks.ConditionStopping(...)`` for ours, so the two cannot be confused."""
        parts = [_show(v) for v in self.positional] + [f"{k}={_show(v)}" for k, v in self.args]
        prefix = "" if self.module == KERAS else f"{self.module}."
        return f"{prefix}{self.name}({', '.join(parts)})"

    def source(self) -> str:
        """Runnable Python: ``keras.callbacks.EarlyStopping(...)`` or ``ConditionStopping(...)`` (imported)."""
        parts = [_src(v) for v in self.positional] + [f"{k}={_src(v)}" for k, v in self.args + self.hidden]
        prefix = "keras.callbacks." if self.module == KERAS else ""
        return f"{prefix}{self.name}({', '.join(parts)})"

    def imports(self) -> set[tuple[str, str]]:
        """``(module, name)`` pairs the source needs besides ``import keras``."""
        out = set() if self.module == KERAS else {(self.module, self.name)}
        for v in (*self.positional, *(v for _, v in self.args + self.hidden)):
            if isinstance(v, Code):
                out.update(v.imports)
        return out


def _show(v: Value) -> str:
    return (v.display or v.source) if isinstance(v, Code) else repr(v)


def _src(v: Value) -> str:
    return v.source if isinstance(v, Code) else repr(v)


# --------------------------------------------------------------------------- rule -> call


def callback_call(r: ast.Rule) -> CallbackCall:
    """The callback a rule compiles to (``docs/semantics.md``, ``policy/compiler.py``), as a call."""
    if isinstance(r, ast.StopWhen):
        if is_terminate_on_nan(r):
            return _keras("TerminateOnNaN")
        if is_early_stopping(r):
            return _early_stopping(r)
        return _stop_when(r)
    if isinstance(r, ast.StopAfter):
        return _stop_after(r)
    if isinstance(r, ast.SaveBest):
        path = r.path if r.path is not None else default_best_path(r.weights_only)
        args: list[tuple[str, Value]] = [("monitor", r.metric.name),
                                         ("mode", checkpoint_direction(r.metric, r.direction)),
                                         ("save_best_only", True)]
        return _keras("ModelCheckpoint", *args, *_weights(r.weights_only), positional=[path])
    if isinstance(r, ast.SaveTop):
        return CallbackCall(OURS, "TopKCheckpoint", (("k", r.k), ("monitor", r.metric.name),
                                              ("mode", checkpoint_direction(r.metric, r.direction)),
                                              *_weights(r.weights_only, "weights_only")), (r.path,))
    if isinstance(r, ast.SaveEvery) and r.unit == "epochs" and r.every > 1:
        return CallbackCall(OURS, "PeriodicCheckpoint", (("every", r.every), *_weights(r.weights_only, "weights_only")),
                            (r.path,))
    if isinstance(r, ast.SaveEvery | ast.SaveLast):
        freq = [("save_freq", r.every)] if isinstance(r, ast.SaveEvery) and r.unit == "steps" else []
        return _keras("ModelCheckpoint", *freq, *_weights(r.weights_only), positional=[r.path])
    if isinstance(r, ast.ReduceLR):
        return _reduce_lr(r)
    if isinstance(r, ast.Schedule):
        return _schedule(r)
    if isinstance(r, ast.LogCSV):
        return _keras("CSVLogger", *([("append", True)] if r.append else []), positional=[r.path])
    if isinstance(r, ast.LogTensorBoard):
        return _keras("TensorBoard", ("log_dir", r.path))
    return _keras("BackupAndRestore", ("backup_dir", r.path), *([] if r.steps is None else [("save_freq", r.steps)]))


def _keras(name: str, *args: tuple[str, Value], positional: list[Value] | None = None) -> CallbackCall:
    return CallbackCall(KERAS, name, tuple(args), tuple(positional or ()))


def _weights(flag: bool, name: str = "save_weights_only") -> list[tuple[str, Value]]:
    return [(name, True)] if flag else []


def _early_stopping(r: ast.StopWhen) -> CallbackCall:
    c = r.condition
    assert isinstance(c, ast.Plateau)
    args: list[tuple[str, Value]] = [("monitor", c.metric.name)]
    if c.delta:
        args.append(("min_delta", c.delta))
    args += [("patience", c.patience), ("mode", plateau_direction(c))]
    if r.baseline is not None:
        args.append(("baseline", r.baseline))
    if r.restore_best:
        args.append(("restore_best_weights", True))
    if r.ignore_first:
        args.append(("start_from_epoch", r.ignore_first))
    return _keras("EarlyStopping", *args)


def _reduce_lr(r: ast.ReduceLR) -> CallbackCall:
    p = r.when
    # Keras's default min_delta is 1e-4 and a policy's is 0, so it is always written out.
    args: list[tuple[str, Value]] = [("monitor", p.metric.name), ("factor", r.factor), ("patience", p.patience),
                                     ("mode", plateau_direction(p)), ("min_delta", p.delta)]
    if r.cooldown:
        args.append(("cooldown", r.cooldown))
    if r.min_lr:
        args.append(("min_lr", r.min_lr))
    return _keras("ReduceLROnPlateau", *args)


def _stop_when(r: ast.StopWhen) -> CallbackCall:
    # Our ConditionStopping takes the condition's syntax tree; its repr is valid Python given the
    # node classes (positions are left out of repr), so the source builds the same tree.
    names = sorted({type(n).__name__ for n in _nodes(r.condition)})
    condition = Code(repr(r.condition), repr(condition_text(r.condition)), tuple((AST, n) for n in names))
    args: list[tuple[str, Value]] = [("condition", condition)]
    target = restore_target(r)
    if target is not None:
        args.append(("restore", target))
    if r.ignore_first:
        args.append(("ignore_first", r.ignore_first))
    return CallbackCall(OURS, "ConditionStopping", tuple(args), hidden=(("rule", rule(r)),))


def _nodes(c: ast.Condition) -> list[ast.Node]:
    if isinstance(c, ast.AnyOf | ast.AllOf):
        return [c, *(n for p in c.parts for n in _nodes(p))]
    return [c, c.metric]


def _stop_after(r: ast.StopAfter) -> CallbackCall:
    hidden = (("rule", rule(r)),)
    if r.unit == "epochs":
        return CallbackCall(OURS, "StopAfterEpochs", (("epochs", r.amount),), hidden=hidden)
    if r.unit == "steps":
        return CallbackCall(OURS, "StopAfterSteps", (("steps", r.amount),), hidden=hidden)
    return CallbackCall(OURS, "StopAfterTime", (("seconds", r.amount * ast.SECONDS_PER_UNIT[r.unit]),), hidden=hidden)


def _schedule(r: ast.Schedule) -> CallbackCall:
    parts, kinds = [], set()
    for s in r.segments:
        if isinstance(s, ast.Warmup):
            kind, text = "WarmupSegment", f"WarmupSegment(target={s.target!r}, epochs={s.epochs!r})"
        elif isinstance(s, ast.Cosine):
            kind, text = "CosineSegment", f"CosineSegment(target={s.target!r}, epochs={s.epochs!r})"
        else:
            kind, text = "DecaySegment", f"DecaySegment(factor={s.factor!r}, every={s.every!r})"
        kinds.add(kind)
        parts.append(text)
    imports = tuple((OURS, n) for n in sorted({"LearningRateChain", *kinds}))
    schedule = Code(f"LearningRateChain([{', '.join(parts)}])", f"LearningRateChain({rule(r)!r})", imports)
    return CallbackCall(OURS, "ScheduledLearningRate", positional=(schedule,))


# --------------------------------------------------------------------------- the module


def eject(policy: ast.Policy) -> str:
    """Python source building the policy's callbacks, ending with a newline."""
    calls = [callback_call(r) for r in policy.rules]
    imports: dict[str, set[str]] = {}
    for call in calls:
        for module, name in call.imports():
            imports.setdefault(module, set()).add(name)
    # compile_policy puts CreateFolder before a CSVLogger whose folder may be missing (Keras's
    # CSVLogger does not create it); the ejected code does the same, so it behaves the same.
    folders = {i: os.path.dirname(r.path) for i, r in enumerate(policy.rules) if isinstance(r, ast.LogCSV)}
    folders = {i: f for i, f in folders.items() if f}
    if folders:
        imports.setdefault(OURS, set()).add("CreateFolder")
    header = "\n".join(f"    {line}" for line in format_policy(policy).splitlines())
    out = [
        f'"""Keras callbacks for this policy, written out by keras-policy:\n\n{header}\n\n'
        "compile_policy() also puts a MetricCheck first, which fails the first epoch if a watched\n"
        'metric is missing from the logs; written by hand, Keras only warns."""',
        "",
        "import keras",
    ]
    if imports:
        out.append("")
        for module, names in sorted(imports.items()):
            line = f"from {module} import {', '.join(sorted(names))}"
            if len(line) > 100:  # one name a line, as a formatter would
                line = f"from {module} import (\n" + "".join(f"    {n},\n" for n in sorted(names)) + ")"
            out.append(line)
    out += ["", "callbacks = ["]
    for i, (r, call) in enumerate(zip(policy.rules, calls, strict=True)):
        out.append(f"    # {rule(r)}")
        if i in folders:
            out.append(f"    CreateFolder({folders[i]!r}),")
        out.append(f"    {call.source()},")
    out.append("]")
    return "\n".join(out) + "\n"
