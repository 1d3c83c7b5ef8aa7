"""What a rule means beyond its words: directions, default paths, watched metrics, restore targets.

The text often leaves a fact implicit: ``save best on val_loss`` does not say "min", ``save best``
without ``to`` does not name a file, ``restore best`` does not say which metric. This module is
the one place those facts are settled; validation, the compiler (and ``compile --python`` and
``explain``), the strict metric check, the CLI and the reference all ask it, so they cannot
disagree. It is plain Python over the syntax tree: no checking of ranges, no framework.

Where the text cannot settle a fact (a metric whose name says neither "min" nor "max"), the
function raises :class:`Undecided`, a :class:`PolicyError` pointing at the node: validation turns
it into one of its problems, so a validated policy never raises here, and a hand-built policy
that skipped validation gets the same message instead of a wrong default.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal, TypeAlias

from policy import ast
from policy.errors import PolicyError, Problem, closest
from policy.metrics import COMMON_METRICS, name_direction, trend_direction

DEFAULT_BEST_PATH = "checkpoints/best.keras"
DEFAULT_BEST_WEIGHTS_PATH = "checkpoints/best.weights.h5"

LEARNING_RATE = "learning_rate"
"""The log key an lr rule writes at each epoch end. Keras's ``fit`` never logs it, so it is
never required of a model's logs (the validator puts every reader after the rule writing it)."""


class Undecided(PolicyError):
    """The text leaves a fact open (which way a metric should go, which metric ``restore best``
    means), or asks for one no form of the rule has (a baseline on a condition EarlyStopping lacks).

    ``node`` is where to point; validation reports it with the policy's source line and caret.
    """

    def __init__(self, node: ast.Node, message: str, suggestion: str) -> None:
        self.node = node
        super().__init__([Problem(message, node.pos.line, node.pos.column, "", suggestion)])


# --------------------------------------------------------------------------- rule forms


def is_loss_not_finite(condition: ast.Condition) -> bool:
    """``loss is not finite``: what Keras's TerminateOnNaN watches (the running training loss)."""
    return (
        isinstance(condition, ast.NotFinite)
        and condition.metric.name == "loss"
        and condition.metric.window == 1
        and not condition.nan_only
    )


def _is_terminate_on_nan(rule: ast.StopWhen) -> bool:
    """``stop when loss is not finite`` alone is Keras's TerminateOnNaN (checked every batch)."""
    return (
        is_loss_not_finite(rule.condition)
        and not rule.restore_best
        and rule.ignore_first == 0
        and rule.baseline is None
    )


def held_by_minimum(rule: ast.Rule) -> bool:
    """Whether ``train at least`` holds back this rule's stops: every ``stop when`` rule, except one
    whose condition is made only of ``is not finite`` / ``is nan`` atoms (a divergence guard, which
    Lightning's ``min_epochs`` does not hold back either). Budgets, failures and lr rules never are."""
    return isinstance(rule, ast.StopWhen) and not all(isinstance(a, ast.NotFinite) for a in ast.atoms(rule.condition))


def minimum_of(policy: ast.Policy) -> ast.TrainAtLeast | None:
    """The policy's ``train at least`` rule (validation allows one at most)."""
    return next((r for r in policy.rules if isinstance(r, ast.TrainAtLeast)), None)


def step_schedule_of(policy: ast.Policy) -> ast.Schedule | None:
    """The policy's schedule counted in optimizer steps, if any (validation allows one schedule).
    A finite one hands the rate to ``multiply lr ... when`` at its last step."""
    return next((r for r in policy.rules if isinstance(r, ast.Schedule) and ast.counts_steps(r)), None)


def _is_early_stopping(rule: ast.StopWhen) -> bool:
    """A single absolute plateau on a metric as logged is Keras's EarlyStopping, options and all."""
    c = rule.condition
    return isinstance(c, ast.Plateau) and not c.relative and c.metric.window == 1


StopForm: TypeAlias = Literal["TerminateOnNaN", "EarlyStopping", "ConditionStopping"]


def stop_form(rule: ast.StopWhen) -> StopForm:
    """The callback a ``stop when`` rule is: Keras's TerminateOnNaN or EarlyStopping where the rule
    says exactly what they do, else our ConditionStopping (which has no baseline)."""
    if _is_terminate_on_nan(rule):
        return "TerminateOnNaN"
    if _is_early_stopping(rule):
        return "EarlyStopping"
    if rule.baseline is not None:
        if isinstance(rule.condition, ast.Plateau) and rule.condition.relative:
            raise Undecided(rule, "baseline cannot be combined with a relative (%) threshold", "remove one of them")
        if isinstance(rule.condition, ast.Plateau):  # on an averaged metric
            raise Undecided(rule, "baseline needs a metric as logged, not averaged", "remove one of them")
        raise Undecided(
            rule,
            "baseline needs a single 'not improving' condition",
            "remove the baseline, or use a threshold such as val_accuracy >= 0.6",
        )
    return "ConditionStopping"


def fail_form(rule: ast.FailWhen) -> Literal["TerminateOnNaN"]:
    """The callback a ``fail when`` rule is: Keras's TerminateOnNaN with ``raise_error=True``, which
    watches the running training loss after every batch and nothing else, so ``loss is not finite``
    is the one condition a failure has (an epoch-level failure would be a callback of ours for no gain)."""
    if not is_loss_not_finite(rule.condition):
        raise Undecided(
            rule.condition,
            "a failure can only watch 'loss is not finite' (checked after every training batch)",
            "write: fail when loss is not finite; or stop gracefully with 'stop when ...'",
        )
    return "TerminateOnNaN"


# --------------------------------------------------------------------------- paths


def default_best_path(weights_only: bool) -> str:
    """Where ``save best`` writes when no path is given."""
    return DEFAULT_BEST_WEIGHTS_PATH if weights_only else DEFAULT_BEST_PATH


def best_path(rule: ast.SaveBest) -> str:
    """The file ``save best`` writes: its path, or the default for a model or weights."""
    return rule.path.value if rule.path is not None else default_best_path(rule.weights_only)


def epoch_end_paths(policy: ast.Policy) -> Iterator[tuple[ast.Rule, str]]:
    """The checkpoint path templates formatted at an epoch end, with their rules, in rule order."""
    for rule in policy.rules:
        if isinstance(rule, ast.SaveBest):
            yield rule, best_path(rule)
        elif isinstance(rule, ast.SaveTop | ast.SaveLast) or (isinstance(rule, ast.SaveEvery) and rule.unit == "epochs"):
            yield rule, rule.path.value


def step_paths(policy: ast.Policy) -> Iterator[tuple[ast.Rule, str]]:
    """The checkpoint path templates formatted after training batches (``save every N steps``,
    ``save every T min``)."""
    for rule in policy.rules:
        if (isinstance(rule, ast.SaveEvery) and rule.unit == "steps") or isinstance(rule, ast.SaveTimed):
            yield rule, rule.path.value


# --------------------------------------------------------------------------- directions


def plateau_direction(plateau: ast.Plateau) -> ast.Direction:
    """The direction a plateau watches: ``not decreasing`` / ``not increasing``, else the name's."""
    found = trend_direction(plateau.metric.name, plateau.trend)
    if found is None:
        name = plateau.metric.name
        raise Undecided(
            plateau.metric,
            _no_direction(name),
            _typo_hint(name, f'write "{name} not decreasing" or "{name} not increasing"'),
        )
    return found


def checkpoint_direction(rule: ast.SaveBest | ast.SaveTop) -> ast.Direction:
    """The direction a best/top-k checkpoint ranks by: ``min``/``max`` if written, else the name's,
    else the side of ``save best``'s threshold (``below`` is min, ``above`` max)."""
    found = rule.direction or name_direction(rule.metric.name)
    threshold = rule.threshold if isinstance(rule, ast.SaveBest) else None
    if found is None and threshold is not None:
        found = ast.SIDE_DIRECTION[threshold.side]
    if found is None:
        name = rule.metric.name
        raise Undecided(rule.metric, _no_direction(name), _typo_hint(name, f'add "min" or "max" after {name}'))
    return found


def restore_target(rule: ast.StopWhen) -> tuple[str, ast.Direction] | None:
    """Which metric ``restore best`` tracks, and which way; None without ``restore best``.

    A named metric the condition watches takes that plateau's direction, any other its name's;
    unnamed, it is the one metric the condition's plateaus watch.
    """
    if not rule.restore_best:
        return None
    plateaus = ast.plateaus_of(rule.condition)
    if rule.restore_metric is not None:
        name = rule.restore_metric.name
        for p in plateaus:
            if p.metric.name == name:
                return name, plateau_direction(p)
        found = name_direction(name)
        if found is None:
            raise Undecided(
                rule.restore_metric, _no_direction(name), f"watch it in the condition, e.g. {name} not decreasing for N"
            )
        return name, found
    names = {p.metric.name for p in plateaus}
    if len(names) != 1:
        what = "no metric" if not names else "more than one metric"
        raise Undecided(
            rule,
            f"restore best: the condition watches {what} for improvement, so 'best' is ambiguous",
            "name the metric: restore best val_loss",
        )
    return plateaus[0].metric.name, plateau_direction(plateaus[0])


def plateaus_read(rule: ast.Rule) -> tuple[ast.Plateau, ...]:
    """The plateaus of a stop or learning-rate rule's condition, in source order."""
    if isinstance(rule, ast.StopWhen):
        return ast.plateaus_of(rule.condition)
    return (rule.when,) if isinstance(rule, ast.ReduceLR) else ()


def direction_watched(policy: ast.Policy, name: str) -> ast.Direction | None:
    """The direction of the first plateau or best/top-k checkpoint on ``name`` in a (validated)
    policy; None if no rule ranks ``name``."""
    for rule in policy.rules:
        if isinstance(rule, ast.SaveBest | ast.SaveTop) and rule.metric.name == name:
            return checkpoint_direction(rule)
        for p in plateaus_read(rule):
            if p.metric.name == name:
                return plateau_direction(p)
    return None


def _no_direction(name: str) -> str:
    return f"cannot tell whether {name!r} should go up or down"


def _typo_hint(name: str, otherwise: str) -> str:
    """A name with no direction is often a misspelled common one (``val_los``): say so first."""
    guess = closest(name, COMMON_METRICS, cutoff=0.75)
    return f"did you mean {guess!r}? If not, {otherwise}" if guess else otherwise


# --------------------------------------------------------------------------- metrics read


def metrics_read(rule: ast.Rule) -> tuple[ast.Metric, ...]:
    """The metrics a rule reads from the epoch logs, in source order (repeats kept)."""
    if isinstance(rule, ast.StopWhen):
        restore = (rule.restore_metric,) if rule.restore_metric is not None else ()
        return ast.metrics_of(rule.condition) + restore
    if isinstance(rule, ast.FailWhen):
        return ast.metrics_of(rule.condition)
    if isinstance(rule, ast.ReduceLR):
        return (rule.when.metric,)
    if isinstance(rule, ast.SaveBest | ast.SaveTop):
        return (rule.metric,)
    return ()


def watched_metrics(policy: ast.Policy, *, learning_rate: bool = False) -> tuple[ast.Metric, ...]:
    """Every metric node a policy reads from the epoch logs, in source order (repeats kept).

    ``learning_rate`` is left out unless asked for: the logs of a model never hold it (see
    :data:`LEARNING_RATE`), so the strict check and a replay's needs do not include it.
    """
    return tuple(
        m for rule in policy.rules for m in metrics_read(rule) if learning_rate or m.name != LEARNING_RATE
    )


def watched_names(policy: ast.Policy, *, learning_rate: bool = False) -> list[str]:
    """The log keys a policy reads, each once, in the order its rules first mention them."""
    return list(dict.fromkeys(m.name for m in watched_metrics(policy, learning_rate=learning_rate)))
