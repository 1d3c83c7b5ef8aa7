"""Checks on a parsed policy: ranges, directions, file names, conflicts.

The parser already guarantees the shape of every rule and that counts are whole and
in range; this module checks what needs more than one token to judge. What a rule means
where its text is silent (directions, default paths, restore targets) is settled by
:mod:`policy.meaning`; this module reports where that cannot be settled. It collects every
problem and raises one :class:`PolicyError` carrying them all, so a user fixes a config
in one pass. It never touches the file system.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Callable, Iterator
from typing import Protocol, TypeVar

from policy import ast
from policy.errors import PolicyError, Problem, problem_at
from policy.meaning import (
    Undecided,
    best_path,
    checkpoint_direction,
    fail_form,
    metrics_read,
    plateau_direction,
    restore_target,
    stop_form,
)
from policy.metrics import name_direction
from policy.printer import number
from policy.printer import rule as rule_text
from policy.shape import check_depth


class _At(Protocol):
    """The local ``at`` helper: a problem located at a node of the policy being checked."""

    def __call__(self, node: ast.Node, message: str, suggestion: str | None = None) -> Problem: ...


def validate(policy: ast.Policy) -> ast.Policy:
    """Return ``policy`` unchanged if it is valid, else raise one PolicyError with every problem."""
    check_depth(policy)
    # dict.fromkeys: one undecided plateau is found by its rule and by its restore target alike.
    problems = list(dict.fromkeys(_problems(policy)))
    if problems:
        raise PolicyError(problems)
    return policy


def _problems(policy: ast.Policy) -> Iterator[Problem]:
    src = policy.source

    def at(node: ast.Node, message: str, suggestion: str | None = None) -> Problem:
        return problem_at(src, node.pos, message, suggestion)

    for rule in policy.rules:
        if isinstance(rule, ast.StopWhen):
            yield from _check_stop_when(rule, at)
        elif isinstance(rule, ast.FailWhen):
            yield from _decided(fail_form, rule, at)
        elif isinstance(rule, ast.ReduceLR):
            yield from _check_condition(rule.when, at)
            if rule.when.metric.window != 1:
                # Keras's ReduceLROnPlateau reads the logged value; an average would need our own.
                yield at(
                    rule.when.metric,
                    "a learning-rate rule watches a metric as logged, not averaged",
                    f"write: multiply lr ... when {rule.when.metric.name} not improving for N",
                )
            if not 0.0 < rule.factor < 1.0:
                yield at(
                    rule,
                    f"the learning-rate factor must be between 0 and 1 (exclusive), got {rule.factor:g}",
                    "a factor of 0.5 halves the learning rate",
                )
            if rule.min_lr < 0:
                yield at(rule, f"min lr cannot be negative, got {rule.min_lr:g}", "write min lr 0")
            if rule.when.relative:
                yield at(
                    rule.when,
                    "a relative (%) threshold is not supported for learning-rate rules",
                    "write an absolute threshold, e.g. by 0.01",
                )
        elif isinstance(rule, ast.SaveBest | ast.SaveTop):
            threshold = rule.threshold if isinstance(rule, ast.SaveBest) else None
            if threshold is not None:
                yield from _check_best_threshold(rule.metric, rule.direction, threshold, at)
            yield from _decided(checkpoint_direction, rule, at)
            path = best_path(rule) if isinstance(rule, ast.SaveBest) else rule.path.value
            yield from _check_model_path(rule.path or rule, path, rule.weights_only, at)
            if isinstance(rule, ast.SaveTop) and "{epoch" not in path:
                yield at(
                    rule,
                    "a top-k checkpoint path needs {epoch} in it, so the k files have different names",
                    f'e.g. "{_with_epoch(path)}"',
                )
        elif isinstance(rule, ast.SaveEvery | ast.SaveLast | ast.SaveTimed):
            yield from _check_model_path(rule.path, rule.path.value, rule.weights_only, at)
            if isinstance(rule, ast.SaveEvery) and rule.keep is not None and not _names_each_save(rule):
                yield at(
                    rule.path,
                    f"'keep last {rule.keep}' needs a path that names each save apart, but every save "
                    f"writes {rule.path.value!r}",
                    f'put {{epoch}}{" and {batch}" if rule.unit == "steps" else ""} in it, e.g. "{_with_epoch(rule.path.value)}"',
                )
        elif isinstance(rule, ast.Schedule):
            yield from _check_schedule(rule, at)
        elif isinstance(rule, ast.LogCSV | ast.LogTensorBoard | ast.Backup) and not rule.path.value.strip():
            yield at(rule, "the path is empty", "write a file or folder name")
    yield from _check_averaged_outside_conditions(policy, at)
    yield from _check_conflicts(policy, at)


def _check_averaged_outside_conditions(policy: ast.Policy, at: _At) -> Iterator[Problem]:
    """Only a ``stop when`` condition reads a metric averaged; the text cannot say it anywhere
    else, but a hand-built syntax tree can."""
    for rule in policy.rules:
        named: tuple[ast.Metric | None, ...] = ()
        if isinstance(rule, ast.StopWhen):
            named = (rule.restore_metric,)
        elif isinstance(rule, ast.SaveBest | ast.SaveTop):
            named = (rule.metric,)
        for metric in named:
            if metric is not None and metric.window != 1:
                yield at(metric, f"only a 'stop when' condition can read {metric.name} averaged", "use the metric itself")


def _check_best_threshold(
    metric: ast.Metric, direction: ast.Direction | None, threshold: ast.BestThreshold, at: _At
) -> Iterator[Problem]:
    """``below`` needs a metric minimised, ``above`` one maximised; the value must fit in float32
    (Keras compares it as a float32 tensor, and TensorFlow refuses a value beyond the range)."""
    wanted = ast.SIDE_DIRECTION[threshold.side]
    found = direction or name_direction(metric.name)
    if found is not None and found != wanted:
        other = "above" if threshold.side == "below" else "below"
        why = f"'{found}' is written" if direction is not None else f"{metric.name!r} is {found}imised by its name"
        yield at(
            threshold,
            f"'{threshold.side}' needs a metric that should go {'down' if wanted == 'min' else 'up'}, "
            f"but {why}",
            f"write {other} {number(threshold.value)}",
        )
    if math.isfinite(threshold.value) and abs(threshold.value) >= _FLT_MAX_ROUNDING:
        yield at(threshold, f"the threshold {number(threshold.value)} does not fit in float32", "write a smaller number")


# Python floats at or above this round to inf in float32 (FLT_MAX plus half an ulp).
_FLT_MAX_ROUNDING = 3.4028235677973366e38


def _check_condition(condition: ast.Condition, at: _At) -> Iterator[Problem]:
    for plateau in ast.plateaus_of(condition):
        yield from _decided(plateau_direction, plateau, at)


_N = TypeVar("_N", bound=ast.Node)


def _decided(settle: Callable[[_N], object], node: _N, at: _At) -> Iterator[Problem]:
    """The problem, if any, of a fact :mod:`policy.meaning` cannot settle from the text."""
    try:
        settle(node)
    except Undecided as undecided:
        yield at(undecided.node, undecided.message, undecided.suggestion)


def _check_stop_when(rule: ast.StopWhen, at: _At) -> Iterator[Problem]:
    yield from _check_condition(rule.condition, at)
    c = rule.condition
    yield from _decided(stop_form, rule, at)
    if rule.restore_best:
        yield from _decided(restore_target, rule, at)
        if isinstance(c, ast.Plateau) and rule.restore_metric is not None and rule.restore_metric.name != c.metric.name:
            yield at(
                rule.restore_metric,
                "restore best names a different metric from the one the rule watches",
                f"write restore best {c.metric.name}, or just restore best",
            )


def _check_model_path(rule: ast.Node, path: str, weights_only: bool, at: _At) -> Iterator[Problem]:
    if weights_only and not path.endswith(".weights.h5"):
        yield at(
            rule,
            f"a weights file must end in .weights.h5, got {path!r}",
            f'write "{_swap_suffix(path, ".weights.h5")}"',
        )
    elif not weights_only and not path.endswith(".keras"):
        hint = (
            f'write "{path}" with "save ... weights" to save weights only'
            if path.endswith(".weights.h5")
            else f'write "{_swap_suffix(path, ".keras")}"'
        )
        yield at(rule, f"a model file must end in .keras, got {path!r}", hint)
    yield from _check_template(rule, path, at)


# What Keras fills a checkpoint path's placeholders with: ``epoch`` and ``batch`` are ints, every
# other name is a logged metric, a float (ModelCheckpoint formats ``path.format(epoch=..., **logs)``).
_INT_PLACEHOLDERS = frozenset({"epoch", "batch"})
# The longest file name common file systems allow; a wider field or precision cannot be a path.
_MAX_NAME = 255


def _check_template(rule: ast.Node, path: str, at: _At) -> Iterator[Problem]:
    """A checkpoint path is a ``str.format`` template that Keras formats after an epoch or batch.

    Everything that would make that formatting raise for any value, or read more than the value
    itself, is refused now, before training: unbalanced braces, unnamed (positional)
    placeholders, attribute or index access (``{epoch.__class__}``, ``{val_loss[0]}``: a path may
    come from a config file, and format strings can reach into objects), unknown conversions,
    placeholders nested in a format spec, and format specs that do not apply to the value's type.
    Whether a named metric is logged at all is only known in ``fit`` (the strict check).
    """
    try:
        fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(path) if f is not None]
    except ValueError as exc:
        yield at(rule, f"the path {path!r} is not a valid template ({exc})", "write {{ and }} for literal braces")
        return
    for name, spec_or_none, conversion in fields:
        spec = spec_or_none or ""
        shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
        plain = re.split(r"[.\[]", name, maxsplit=1)[0]
        if name == "" or name.isdigit():
            yield at(
                rule, f"the path {path!r} has a placeholder with no name", "name it, e.g. {epoch:03d} or {val_loss:.3f}"
            )
        elif plain != name:
            how = "reads an attribute of" if name[len(plain)] == "." else "indexes"
            yield at(
                rule,
                f"the path {path!r} {how} a placeholder ({shown}); only plain names are filled in",
                f"write {{{plain}}}" if plain else "write {epoch} or a metric name such as {val_loss:.4f}",
            )
        elif conversion not in (None, "r", "s", "a"):
            yield at(rule, f"the path {path!r} uses the unknown conversion !{conversion} in {shown}", f"write {{{name}}}")
        elif "{" in spec or "}" in spec:
            yield at(
                rule,
                f"the path {path!r} has a placeholder inside a format spec ({shown})",
                "write the spec out, e.g. {epoch:03d}",
            )
        elif max((int(n) for n in re.findall(r"[0-9]+", spec)), default=0) > _MAX_NAME:
            # Also keeps the check itself cheap: format(1, "1000000000") builds a 1 GB string.
            yield at(
                rule,
                f"the format spec {spec!r} in {shown} asks for more than {_MAX_NAME} characters, "
                "longer than a file name can be",
                "e.g. {epoch:03d} or {val_loss:.4f}",
            )
        elif spec:
            sample: object = 1 if name in _INT_PLACEHOLDERS else 1.0
            if conversion is not None:
                sample = ascii(sample) if conversion == "a" else repr(sample) if conversion == "r" else str(sample)
            kind = "text" if conversion else ("a whole number" if name in _INT_PLACEHOLDERS else "a metric value (a float)")
            try:
                format(sample, spec)
            except ValueError as exc:
                yield at(
                    rule,
                    f"the format spec {spec!r} in {shown} does not apply to {kind}: {exc}",
                    "e.g. {epoch:03d} or {val_loss:.4f}",
                )


def _names_each_save(rule: ast.SaveEvery) -> bool:
    """Whether the path's placeholders can tell two saves of the rule apart (``{epoch}``, or for
    step saves ``{batch}``); a metric placeholder alone may repeat."""
    names = {field.split(".", 1)[0].split("[", 1)[0] for _, field, _, _ in _fields(rule.path.value)}
    return "epoch" in names or (rule.unit == "steps" and "batch" in names)


def _fields(path: str) -> list[tuple[str, str, str | None, str | None]]:
    try:
        return [(t, f, s, c) for t, f, s, c in string.Formatter().parse(path) if f is not None]
    except ValueError:  # reported by the template check
        return []


def _check_schedule(rule: ast.Schedule, at: _At) -> Iterator[Problem]:
    last = len(rule.segments) - 1
    for i, seg in enumerate(rule.segments):
        if isinstance(seg, ast.OPEN_ENDED) and i != last:
            word = {ast.Decay: "decay", ast.Milestones: "multiply lr ... at", ast.InverseSqrt: "inverse sqrt"}[type(seg)]
            yield at(seg, f"'{word}' never ends, so nothing can follow it with 'then'", "put it last")
        if isinstance(seg, ast.Decay):
            if not 0.0 < seg.factor < 1.0:
                yield at(seg, f"a decay factor must be between 0 and 1 (exclusive), got {seg.factor:g}")
        elif isinstance(seg, ast.Milestones):
            if seg.factor <= 0:
                yield at(seg, f"a milestone factor must be positive, got {seg.factor:g}")
            if any(b <= a for a, b in zip(seg.at, seg.at[1:], strict=False)):
                yield at(seg, "milestones must be in increasing order, each once", "e.g. at epochs 30, 60, 90")
        elif isinstance(seg, ast.InverseSqrt):
            if i == 0:
                yield at(
                    seg,
                    "'inverse sqrt' decays from where the segment before it ended, and there is none",
                    'put a warm-up before it: "warm up lr to 0.001 over 4000 steps, then inverse sqrt"',
                )
        elif isinstance(seg, ast.Hold):
            pass
        elif seg.target < 0 or (isinstance(seg, ast.Warmup) and seg.target == 0):
            yield at(seg, f"a learning-rate target must be positive, got {seg.target:g}")
        if isinstance(seg, ast.Cosine):
            if not seg.period_factor >= 1:
                yield at(
                    seg,
                    f"restart periods can only stay or grow: 'periods times' must be at least 1, got {seg.period_factor:g}",
                    "e.g. periods times 2 (each period twice as long as the last)",
                )
            if not seg.peak_factor > 0:
                yield at(
                    seg,
                    f"'peaks times' must be positive, got {seg.peak_factor:g}",
                    "e.g. peaks times 0.5 (each restart half as high above the target as the last)",
                )


def _check_minimum(policy: ast.Policy, at: _At) -> Iterator[Problem]:
    """One ``train at least`` at most, and no budget in its unit shorter than it: that budget would
    end every run before the minimum allows any stop. (A budget in another unit cannot be compared
    before training: it stays a hard limit, as Lightning's max_steps is over min_epochs.)"""
    minimums = [r for r in policy.rules if isinstance(r, ast.TrainAtLeast)]
    for extra in minimums[1:]:
        yield at(extra, f"two minimums (the other is on line {minimums[0].pos.line})", "keep one 'train at least'")
    if not minimums:
        return
    least = minimums[0]
    for rule in policy.rules:
        if isinstance(rule, ast.StopAfter) and rule.unit == least.unit and rule.amount < least.amount:
            yield at(
                rule,
                f"'{rule_text(rule)}' ends training before '{rule_text(least)}' (line {least.pos.line}) is met",
                f"make the budget at least {least.amount} {least.unit}, or lower the minimum",
            )


def _check_conflicts(policy: ast.Policy, at: _At) -> Iterator[Problem]:
    yield from _check_minimum(policy, at)
    written: dict[str, ast.Node] = {}
    for rule in policy.rules:
        path = _written_path(rule)
        if path is None:
            continue
        if path in written:
            first = written[path].pos.line
            yield at(
                rule,
                f"two rules write {path!r} (the other is on line {first})",
                "give each rule its own file or folder",
            )
        else:
            written[path] = rule
    yield from _check_learning_rate_reads(policy, at)
    for again in [r for r in policy.rules if isinstance(r, ast.LogLR)][1:]:
        yield at(again, "'log lr' is given twice", "keep one")
    schedules = [r for r in policy.rules if isinstance(r, ast.Schedule)]
    plateaus = [r for r in policy.rules if isinstance(r, ast.ReduceLR)]
    for extra in schedules[1:]:
        yield at(
            extra,
            "two learning-rate schedules would drive the learning rate in the same epochs",
            'chain them into one rule with ", then"',
        )
    # A finite schedule hands the learning rate over when it ends, so `multiply lr ... when` can
    # follow a warm-up (counted in epochs or in steps); a decay never ends, so the two would fight
    # over it every epoch.
    endless = [r for r in schedules if isinstance(r.segments[-1], ast.OPEN_ENDED)]
    if endless and plateaus:
        yield at(
            plateaus[0],
            f"'{_open_ended_name(endless[0])}' never ends, so it and 'multiply lr ... when' would both set the learning rate",
            "keep one of them, or end the schedule with a warm-up, cosine, linear or hold segment, "
            "which hands the learning rate over when it ends",
        )


def _open_ended_name(schedule: ast.Schedule) -> str:
    last = schedule.segments[-1]
    return {ast.Decay: "decay lr", ast.Milestones: "multiply lr ... at", ast.InverseSqrt: "inverse sqrt lr"}[type(last)]


def _check_learning_rate_reads(policy: ast.Policy, at: _At) -> Iterator[Problem]:
    # Keras's fit loop never logs `learning_rate`: only an lr rule writes it into the epoch-end
    # logs, and the callbacks before it in the list never see it (they share one dict, in order).
    # So a rule reading it must come after the rule that writes it, or it silently never fires.
    # `log lr` writes it before every other callback (it is compiled first), wherever it is written.
    writer_seen = any(isinstance(r, ast.LogLR) for r in policy.rules)
    for rule in policy.rules:
        for metric in metrics_read(rule):
            if metric.name == "learning_rate" and not writer_seen:
                has_writer = any(isinstance(r, ast.ReduceLR | ast.Schedule) for r in policy.rules)
                yield at(
                    metric,
                    "'learning_rate' is only in the logs after a learning-rate rule has written it",
                    "move this rule after the learning-rate rule"
                    if has_writer
                    else "add 'log lr' (Keras itself does not log the learning rate)",
                )
        writer_seen = writer_seen or isinstance(rule, ast.ReduceLR | ast.Schedule)


def _written_path(rule: ast.Rule) -> str | None:
    if isinstance(rule, ast.SaveBest):
        return best_path(rule)
    if isinstance(
        rule, ast.SaveTop | ast.SaveEvery | ast.SaveTimed | ast.SaveLast | ast.LogCSV | ast.LogTensorBoard | ast.Backup
    ):
        return rule.path.value.rstrip("/") or rule.path.value
    return None


def _swap_suffix(path: str, suffix: str) -> str:
    for old in (".weights.h5", ".keras", ".h5", ".hdf5", ".tf", ".pb", ".ckpt"):
        if path.endswith(old):
            return path[: -len(old)] + suffix
    return path + suffix


def _with_epoch(path: str) -> str:
    stem, dot, ext = path.partition(".")
    return f"{stem}-{{epoch:03d}}{dot}{ext}" if dot else f"{path}-{{epoch:03d}}"
