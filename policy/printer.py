"""AST -> canonical policy text.

The canonical form is what ``keras-policy check`` prints and what ``format_policy``
returns: one rule per line, every option spelled the one way the README uses, numbers
written so they read back as the same float. ``parse(format(p)) == p`` for every valid
policy, which the property tests check.
"""

from __future__ import annotations

from policy import ast


def number(value: float) -> str:
    """The shortest text that reads back as the same float (ints without a dot)."""
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e16):
        return str(int(value))
    return repr(float(value))


def path(node: ast.Path) -> str:
    """The path quoted, backslashes and double quotes escaped (the parser reads it back)."""
    text = node.value
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def condition(c: ast.Condition) -> str:
    return ast.fold(c, _atom, group)


def watched(m: ast.Metric) -> str:
    """A metric as a condition reads it: its name, or ``NAME averaged over N epochs``."""
    return m.name if m.window == 1 else f"{m.name} averaged over {m.window} epochs"


def _atom(c: ast.Atom) -> str:
    if isinstance(c, ast.Plateau):
        out = f"{watched(c.metric)} not {c.trend}"
        if c.relative:
            out += f" by {number(c.delta * 100)}%"
        elif c.delta:
            out += f" by {number(c.delta)}"
        return out + f" for {c.patience}"
    if isinstance(c, ast.Threshold):
        return f"{watched(c.metric)} {c.op} {number(c.value)}"
    return f"{watched(c.metric)} is nan" if c.nan_only else f"{watched(c.metric)} is not finite"


def group(g: ast.Group, parts: list[str]) -> str:
    """An and/or group from its parts' texts (the printer's, or explain's plain-English clauses)."""
    joiner = " or " if isinstance(g, ast.AnyOf) else " and "
    # "and" binds tighter than "or", so only an "or" inside an "and" needs parentheses;
    # we bracket every nested group anyway, which reads better and parses the same.
    return joiner.join(f"({text})" if isinstance(part, ast.AnyOf | ast.AllOf) else text
                       for part, text in zip(g.parts, parts, strict=True))


def span(s: ast.Span) -> str:
    if s.unit == "percent":
        return f"{number(s.count)}% of training"
    return f"{int(s.count)} {s.unit[:-1] if s.count == 1 else s.unit}"


def segment(s: ast.Segment, first: bool) -> str:
    lr = " lr" if first else ""
    if isinstance(s, ast.Warmup):
        return f"warm up{lr} to {number(s.target)} over {span(s.over)}"
    if isinstance(s, ast.Cosine):
        out = f"cosine{lr} to {number(s.target)} over {span(s.over)}"
        if s.restart is None:
            return out
        out += f", restart every {span(s.restart)}"
        out += f", periods times {number(s.period_factor)}" if s.period_factor != 1 else ""
        return out + (f", peaks times {number(s.peak_factor)}" if s.peak_factor != 1 else "")
    if isinstance(s, ast.Linear):
        return f"linear{lr} to {number(s.target)} over {span(s.over)}"
    if isinstance(s, ast.Hold):
        return f"hold{lr} for {span(s.over)}"
    if isinstance(s, ast.Milestones):
        return f"multiply lr by {number(s.factor)} at {s.unit} " + ", ".join(str(m) for m in s.at)
    if isinstance(s, ast.InverseSqrt):
        return f"inverse sqrt{lr}"
    every = s.unit[:-1] if s.every == 1 else f"{s.every} {s.unit}"
    return f"decay{lr} by {number(s.factor)} every {every}" + (", smoothly" if s.smooth else "")


def _weights(flag: bool) -> str:
    return " weights" if flag else ""


def _options(*options: str | None) -> str:
    """The options written after a rule, each after a comma (", cooldown 2, restore best"), in
    the canonical order they are given in; None is an option the rule does not have."""
    return "".join(f", {o}" for o in options if o is not None)


def rule(r: ast.Rule) -> str:
    if isinstance(r, ast.StopWhen):
        restore = "restore best" + (f" {r.restore_metric.name}" if r.restore_metric else "")
        return f"stop when {condition(r.condition)}" + _options(
            restore if r.restore_best else None,
            f"ignore first {r.ignore_first} epochs" if r.ignore_first else None,
            f"baseline {number(r.baseline)}" if r.baseline is not None else None,
        )
    if isinstance(r, ast.FailWhen):
        return f"fail when {condition(r.condition)}"
    if isinstance(r, ast.TrainAtLeast):
        return f"train at least {r.amount} {r.unit}"
    if isinstance(r, ast.StopAfter):
        unit = {"epochs": " epochs", "steps": " steps", "s": "s", "min": " min", "h": "h"}[r.unit]
        return f"stop after {number(r.amount)}{unit}"
    if isinstance(r, ast.SaveBest):
        out = f"save best{_weights(r.weights_only)} on {r.metric.name}"
        out += f" {r.direction}" if r.direction else ""
        out += f" {r.threshold.side} {number(r.threshold.value)}" if r.threshold is not None else ""
        return out + (f" to {path(r.path)}" if r.path is not None else "")
    if isinstance(r, ast.SaveTop):
        out = f"save top {r.k}{_weights(r.weights_only)} on {r.metric.name}"
        out += f" {r.direction}" if r.direction else ""
        return out + f" to {path(r.path)}"
    if isinstance(r, ast.SaveEvery):
        every = ("epoch" if r.every == 1 else f"{r.every} epochs") if r.unit == "epochs" else f"{r.every} steps"
        keep = f", keep last {r.keep}" if r.keep is not None else ""
        return f"save{_weights(r.weights_only)} every {every} to {path(r.path)}{keep}"
    if isinstance(r, ast.SaveTimed):
        unit = {"s": "s", "min": " min", "h": "h"}[r.unit]
        return f"save{_weights(r.weights_only)} every {number(r.amount)}{unit} to {path(r.path)}"
    if isinstance(r, ast.SaveLast):
        return f"save last{_weights(r.weights_only)} to {path(r.path)}"
    if isinstance(r, ast.ReduceLR):
        return f"multiply lr by {number(r.factor)} when {condition(r.when)}" + _options(
            f"cooldown {r.cooldown}" if r.cooldown else None,
            f"min lr {number(r.min_lr)}" if r.min_lr else None,
            "restore best" if r.restore_best else None,
        )
    if isinstance(r, ast.Schedule):
        return ", then ".join(segment(s, i == 0) for i, s in enumerate(r.segments))
    if isinstance(r, ast.LogCSV):
        return f"log to {path(r.path)}" + _options("append" if r.append else None)
    if isinstance(r, ast.LogTensorBoard):
        return f"log to tensorboard {path(r.path)}"
    if isinstance(r, ast.LogLR):
        return "log lr"
    out = f"backup to {path(r.path)}"
    return out + (f" every {r.steps} steps" if r.steps is not None else "")


def format_policy(policy: ast.Policy) -> str:
    """The canonical text of a policy: one rule per line, no trailing newline."""
    from policy.shape import well_formed

    well_formed(policy, "format_policy")
    return canonical(policy)


def canonical(policy: ast.Policy) -> str:
    """:func:`format_policy` for a policy the parser made: its shape needs no check (~0.5 ms of
    ``keras-policy check``, which evaluates every node class's annotations the first time)."""
    return "\n".join(rule(r) for r in policy.rules)
