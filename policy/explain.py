"""What each rule of a policy does, in plain English, and which callback it becomes.

``explain(policy)`` is the text ``keras-policy explain`` prints: for every rule, its
canonical form, one sentence, and the callback call it compiles to, e.g.
``EarlyStopping(monitor='val_loss', patience=3, mode='min')``. The calls come from each
rule's plan (:mod:`policy.plan`, the same calls ``keras-policy compile --python`` prints and
``compile_policy`` builds), worked out without importing keras, so explaining is instant.
"""

from __future__ import annotations

from dataclasses import dataclass

from policy import ast
from policy.meaning import (
    best_path,
    checkpoint_direction,
    plateau_direction,
    restore_target,
    step_schedule_of,
    stop_form,
)
from policy.plan import Call, callback_call
from policy.printer import group, number
from policy.printer import rule as rule_text


@dataclass(frozen=True)
class RuleExplanation:
    rule: str
    sentence: str
    callback: Call


def explain_rules(policy: ast.Policy) -> list[RuleExplanation]:
    """One explanation per rule, in order."""
    stepped = step_schedule_of(policy) is not None
    return [
        RuleExplanation(rule_text(r), sentence(r, after_step_schedule=stepped),
                        callback_call(r, after_step_schedule=stepped))
        for r in policy.rules
    ]


def explain(policy: str | ast.Policy) -> str:
    """The plain-English explanation of a policy: per rule, its text, a sentence and its callback."""
    from policy.accept import policy_argument

    policy = policy_argument(policy, "explain")
    blocks = []
    for e in explain_rules(policy):
        blocks.append(f"{e.rule}\n    {e.sentence}\n    -> {e.callback.text()}")
    return "\n\n".join(blocks)


# --------------------------------------------------------------------------- sentences


def _moved(direction: ast.Direction) -> str:
    return "gone down" if direction == "min" else "gone up"


def _epochs(n: int) -> str:
    return "1 epoch" if n == 1 else f"{n} epochs"


def condition_phrase(c: ast.Condition) -> str:
    """A condition as a clause: ``val_loss has not gone down for 3 epochs in a row``."""
    # Nested groups keep their brackets so "A and (B or C)" cannot be misread.
    return ast.fold(c, _atom_phrase, group)


def _atom_phrase(c: ast.Atom) -> str:
    if isinstance(c, ast.Plateau):
        direction = plateau_direction(c)
        by = ""
        if c.relative:
            by = f" by more than {number(c.delta * 100)}% of its best"
        elif c.delta:
            by = f" by more than {number(c.delta)}"
        span = "1 epoch" if c.patience == 1 else f"{c.patience} epochs in a row"
        return f"{_read(c.metric)} has not {_moved(direction)}{by} for {span}"
    if isinstance(c, ast.Threshold):
        words = {">=": "is at least", ">": "is above", "<=": "is at most", "<": "is below"}[c.op]
        return f"{_read(c.metric)} {words} {number(c.value)}"
    return f"{_read(c.metric)} is NaN" if c.nan_only else f"{_read(c.metric)} is NaN or infinite"


def _read(m: ast.Metric) -> str:
    """A metric as a condition reads it, in words."""
    if m.window == 1:
        return m.name
    return f"the mean of the last {m.window} logged values of {m.name} (none until {m.window} are logged)"


def _what(weights_only: bool) -> str:
    return "the weights" if weights_only else "the whole model"


def sentence(r: ast.Rule, *, after_step_schedule: bool = False) -> str:
    """One plain-English sentence (or two) saying what a rule does (``after_step_schedule``: the
    policy also has a schedule counted in steps, which hands the rate over at its end)."""
    if isinstance(r, ast.StopWhen):
        return _stop_sentence(r)
    if isinstance(r, ast.FailWhen):
        return ("Make fit raise a RuntimeError as soon as the running training loss becomes NaN or infinite "
                "(checked after every batch): no further batch, epoch end or train end runs, so backups and "
                "checkpoints stay as they were.")
    if isinstance(r, ast.TrainAtLeast):
        until = (f"the end of epoch {r.amount} (counting from 1)" if r.unit == "epochs"
                 else f"{r.amount} training batches have run since fit began")
        return (f"No 'stop when' rule may stop training before {until}: until then they still watch every "
                "epoch (patience keeps counting) but their stops are ignored. Stops on 'is not finite' / 'is nan' "
                "alone, budgets and failures are not held back.")
    if isinstance(r, ast.StopAfter):
        if r.unit == "epochs":
            n = number(r.amount)
            return f"Stop training at the end of epoch {n} (counting from 1), like fit(epochs={n})."
        if r.unit == "steps":
            return (f"Stop training once {number(r.amount)} training batches have run since fit began "
                    "(the epoch is cut short; validation still runs).")
        unit = {"s": "seconds", "min": "minutes", "h": "hours"}[r.unit]
        return (f"Stop training once {number(r.amount)} {unit} of wall-clock time have passed since fit began "
                "(checked after every batch).")
    if isinstance(r, ast.SaveBest):
        best = "lowest" if checkpoint_direction(r) == "min" else "highest"
        path = best_path(r)
        out = (f"Save {_what(r.weights_only)} to {path!r} at the end of every epoch where "
               f"{r.metric.name} reaches a new {best} value")
        if r.threshold is None:
            return out + "."
        return out + (f", counting only values strictly {r.threshold.side} {number(r.threshold.value)} "
                      "(compared in float32): nothing is saved before one is reached.")
    if isinstance(r, ast.SaveTop):
        best = "lowest" if checkpoint_direction(r) == "min" else "highest"
        return (f"Keep the {r.k} checkpoints ({_what(r.weights_only)}) with the {best} {r.metric.name} as files "
                f"named {r.path.value!r}, deleting the one that drops out of the top {r.k}.")
    if isinstance(r, ast.SaveEvery):
        if r.unit == "steps":
            when = f"every {r.every} training batches (counted across epochs)"
        else:
            when = "at the end of every epoch" if r.every == 1 else f"at the end of every {_ordinal(r.every)} epoch"
        out = f"Save {_what(r.weights_only)} to {r.path.value!r} {when}"
        if r.keep is None:
            return out + "."
        files = "file" if r.keep == 1 else f"{r.keep} files"
        return (out + f"; after each save, keep only the newest {files} this rule wrote in this run and delete "
                "its older ones (never a file it did not write).")
    if isinstance(r, ast.SaveTimed):
        unit = {"s": "seconds", "min": "minutes", "h": "hours"}[r.unit]
        return (f"Save {_what(r.weights_only)} to {r.path.value!r} after the first training batch that ends at least "
                f"{number(r.amount)} {unit} of training after the previous save (or after fit began); several "
                "processes agree on the time.")
    if isinstance(r, ast.SaveLast):
        return (f"Save {_what(r.weights_only)} to {r.path.value!r} at the end of every epoch, overwriting it, "
                "so it always holds the latest epoch.")
    if isinstance(r, ast.ReduceLR):
        out = f"Multiply the learning rate by {number(r.factor)} whenever {condition_phrase(r.when)}"
        if r.cooldown == 1:
            # Keras counts the last cooldown epoch toward patience, so a cooldown of 1 changes nothing.
            out += " (a cooldown of 1 epoch changes nothing in Keras)"
        elif r.cooldown:
            out += f", then leave the next {_epochs(r.cooldown - 1)} uncounted (cooldown {r.cooldown})"
        if r.min_lr:
            out += f"; never go below {number(r.min_lr)}"
        if r.restore_best:
            out += ("; each time it is cut, first put back the weights of the epoch with the best "
                    f"{r.when.metric.name} so far")
        if after_step_schedule:
            out += ("; the step schedule hands it the rate when it ends: cuts at epoch ends before "
                    "then are dropped, as the schedule sets every step's rate until its last")
        return out + "."
    if isinstance(r, ast.Schedule) and ast.counts_steps(r):
        text = "Set the learning rate of every optimizer step, inside the train step: " + ", then ".join(
            _segment_phrase(s) for s in r.segments)
        return text + ("." if isinstance(r.segments[-1], ast.OPEN_ENDED)
                       else "; after that, keep the end value (unless 'multiply lr ... when' changes it).")
    if isinstance(r, ast.Schedule):
        text = "Set the learning rate at the start of every epoch: " + ", then ".join(
            _segment_phrase(s) for s in r.segments)
        if isinstance(r.segments[-1], ast.OPEN_ENDED):
            return text + "."
        # A finite schedule sets its end value once, then hands over (docs/semantics.md).
        return text + "; the epoch after, set it to the end value, then leave it alone."
    if isinstance(r, ast.LogCSV):
        mode = "appending to the file if it exists" if r.append else "replacing any existing file"
        folder = " (creating its folder at train begin if missing)" if "/" in r.path.value.rstrip("/") else ""
        return f"Write one row of logs per epoch to the CSV file {r.path.value!r}{folder}, {mode}."
    if isinstance(r, ast.LogLR):
        return ("Write the learning rate each epoch trained with into the epoch logs as learning_rate, before "
                "any other callback sees them, so CSV logs, TensorBoard, the History and other rules have it.")
    if isinstance(r, ast.LogTensorBoard):
        return f"Write TensorBoard logs (losses and metrics per epoch) to {r.path.value!r}."
    every = "every epoch" if r.steps is None else f"every {r.steps} training batches"
    return (f"Back up the model and the epoch counter to {r.path.value!r} {every}, so a fit that was killed resumes "
            "where it stopped; the folder is deleted when training finishes.")


def _stop_sentence(r: ast.StopWhen) -> str:
    if stop_form(r) == "TerminateOnNaN":
        return "Stop training as soon as the running training loss becomes NaN or infinite (checked after every batch)."
    out = f"Stop training at the end of the first epoch where {condition_phrase(r.condition)}."
    if r.ignore_first:
        out += f" The first {_epochs(r.ignore_first)} are not watched."
    if r.baseline is not None and isinstance(r.condition, ast.Plateau):
        direction = plateau_direction(r.condition)
        beat = "below" if direction == "min" else "above"
        out += (f" An epoch only resets the count if {r.condition.metric.name} is also {beat} "
                f"the baseline {number(r.baseline)}.")
    target = restore_target(r)
    if target is not None:
        metric, direction = target
        best = "lowest" if direction == "min" else "highest"
        out += f" When training ends, put back the weights from the epoch with the {best} {metric}."
    return out


def _span(s: ast.Span) -> str:
    if s.unit == "percent":
        return f"{number(s.count)}% of the training steps (rounded up)"
    if s.unit == "epochs":
        return _epochs(int(s.count))
    return f"{int(s.count)} step{'s' if s.count != 1 else ''}"


def _segment_phrase(s: ast.Segment) -> str:
    if isinstance(s, ast.Warmup):
        return f"rise linearly to {number(s.target)} over {_span(s.over)}"
    if isinstance(s, ast.Cosine):
        out = f"follow a half cosine to {number(s.target)} over {_span(s.over)}"
        if s.restart is None:
            return out
        out += f", starting the cosine again every {_span(s.restart)}"
        out += f", each period {number(s.period_factor)} times as long as the last" if s.period_factor != 1 else ""
        if s.peak_factor != 1:
            out += f", each restart {number(s.peak_factor)} times as high above {number(s.target)} as the last"
        return out
    if isinstance(s, ast.Linear):
        return f"go in a straight line to {number(s.target)} over {_span(s.over)}"
    if isinstance(s, ast.Hold):
        return f"hold it for {_span(s.over)}"
    if isinstance(s, ast.Milestones):
        return f"multiply it by {number(s.factor)} at {s.unit} " + ", ".join(str(m) for m in s.at) + " (counted from here)"
    if isinstance(s, ast.InverseSqrt):
        return "decay it as 1/sqrt of the position, from where the warm-up ended"
    every = s.unit[:-1] if s.every == 1 else _span(ast.Span(float(s.every), s.unit))
    if s.smooth:
        return (f"multiply it by {number(s.factor)} every {every}, smoothly: by {number(s.factor)} to the power "
                "of the periods gone by, fractions included")
    return f"multiply it by {number(s.factor)} every {every}"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
