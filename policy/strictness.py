"""The strict check's judgement over a run's epoch logs, without any framework.

``compile_policy(strict=True)`` puts :class:`policy.callbacks.MetricCheck` first in the list,
which feeds epoch logs, in order, to one :class:`StrictCheck` and raises the problems it returns.
``keras-policy simulate`` judges a recorded history with the same primitives
(:func:`missing_metrics`, :func:`missing_problem`) in its own words. The reference models the
check independently in ``simulate(strict=True)``: it is the specification this is tested against.

When each name is judged:

- every placeholder of a step checkpoint path (``save every N steps``) other than ``{epoch}`` and
  ``{batch}``: at the first training batch end, against the batch logs (training metrics only),
  before any step checkpoint is written (Keras formats the path when it saves);
- a training metric (any name not starting with ``val_``) and every placeholder of an
  epoch-end checkpoint path: at the end of the first epoch (Keras formats those paths at every
  epoch end, so a placeholder missing then is a ``KeyError`` at the first write);
- a validation metric (``val_*``): at the end of the first epoch that has validation metrics
  in its logs. With ``fit(validation_freq=k)`` Keras validates only after epochs k, 2k, ...
  (1-based), and it does not tell callbacks whether or when it will validate;
- a policy watching ``val_*`` in a ``fit`` that never validates: at the end of the last
  epoch ``fit`` was asked to run (``params["epochs"]``) or at train end if training stopped
  earlier, whichever comes first; before that, a later epoch could still validate.

``learning_rate`` is never judged: no model logs it, the policy's own lr rule writes it into
the logs later in the same epoch-end dispatch (the validator makes every reader come after it).
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping
from typing import Any

from policy import ast
from policy.errors import Problem, closest, problem_at
from policy.meaning import epoch_end_paths, step_paths, watched_metrics


def is_validation(name: str) -> bool:
    """A metric Keras logs only after validating (``val_loss``, ``val_accuracy``, ...)."""
    return name.startswith("val_")


def missing_metrics(policy: ast.Policy, logs: Mapping[str, Any], wanted: Callable[[str], bool]) -> list[ast.Metric]:
    """The watched metrics ``wanted`` selects that ``logs`` lacks, each once, at its first mention."""
    first: dict[str, ast.Metric] = {}
    for metric in watched_metrics(policy):
        if wanted(metric.name):
            first.setdefault(metric.name, metric)
    return [m for m in first.values() if m.name not in logs]


def missing_problem(
    policy: ast.Policy, metric: ast.Metric, logs: Mapping[str, Any], where: str, has: str, otherwise: str, also: str = ""
) -> Problem:
    """The problem for a watched ``metric`` missing from ``logs``, which are ``where`` (what they
    hold is listed after ``has``); the hint names the closest key (then ``also``), else ``otherwise``.
    The wording differs between ``fit`` (MetricCheck) and a replayed history (the CLI)."""
    available = sorted(logs)
    near = closest(metric.name, available)
    return problem_at(
        policy.source,
        metric.pos,
        f"metric {metric.name!r} is not in {where} ({has}: {', '.join(available) or 'none'})",
        f"did you mean {near!r}?{also}" if near else otherwise,
    )


def has_step_placeholders(policy: ast.Policy) -> bool:
    """Whether a step checkpoint path uses a placeholder other than ``{epoch}`` and ``{batch}``."""
    return any(set(_fields(path)) - {"epoch", "batch"} for _, path in step_paths(policy))


def _fields(path: str) -> list[str]:
    """Placeholder names of a path template (the validator has refused malformed templates)."""
    try:
        parsed = list(string.Formatter().parse(path))
    except ValueError:
        return []
    return [f.split(".", 1)[0].split("[", 1)[0] for _, f, _, _ in parsed if f]


class StrictCheck:
    """Feed it each epoch's logs in order; it returns the problems the strict check raises."""

    def __init__(self, policy: ast.Policy) -> None:
        self.policy = policy
        self.reset()

    def reset(self) -> None:
        """A new ``fit`` begins."""
        self._first_batch = True
        self._first = True
        self._validation_pending = any(is_validation(m.name) for m in watched_metrics(self.policy))

    def get_state(self) -> dict[str, bool]:
        """What a backup keeps: which judgements are still to come."""
        return {"first": self._first, "validation_pending": self._validation_pending, "first_batch": self._first_batch}

    def set_state(self, state: dict[str, bool]) -> None:
        self._first = bool(state["first"])
        self._first_batch = bool(state.get("first_batch", self._first_batch))
        self._validation_pending = bool(state.get("validation_pending", self._validation_pending))

    @property
    def done(self) -> bool:
        """Nothing is left to judge in this run."""
        return not self._first and not self._validation_pending

    def batch_end(self, logs: Mapping[str, Any]) -> list[Problem]:
        """The problems found at a training batch end (only the first is judged)."""
        if not self._first_batch:
            return []
        self._first_batch = False
        available = sorted(logs)
        problems = []
        for rule, path in step_paths(self.policy):
            for name in dict.fromkeys(_fields(path)):
                if name in ("epoch", "batch") or name in logs:
                    continue
                near = closest(name, available)
                problems.append(
                    problem_at(
                        self.policy.source,
                        rule.pos,
                        f"the path {path!r} uses {{{name}}}, which is neither {{epoch}}, {{batch}} nor a metric in "
                        f"the batch logs (they have: {', '.join(available) or 'none'}; validation metrics never are)",
                        f"did you mean {{{near}}}?" if near else "use {epoch}, {batch} or a training metric",
                    )
                )
        return problems

    def epoch_end(self, logs: Mapping[str, Any], *, last: bool = False) -> list[Problem]:
        """The problems found at this epoch end; ``last``: ``fit`` runs no epoch after this one."""
        problems: list[Problem] = []
        validated = any(is_validation(k) for k in logs)
        if self._first:
            self._first = False
            problems += self._missing(logs, lambda n: not is_validation(n), "training logs")
            problems += self._placeholders(logs, validated)
        if self._validation_pending and validated:
            self._validation_pending = False
            problems += self._missing(logs, is_validation, "validation logs")
        elif self._validation_pending and last:
            problems += self.train_end()
        return problems

    def train_end(self) -> list[Problem]:
        """At train end: a watched ``val_*`` metric that never appeared means ``fit`` never validated."""
        if not self._validation_pending:
            return []
        self._validation_pending = False
        problems: list[Problem] = []
        for metric in missing_metrics(self.policy, {}, is_validation):
            problems.append(
                problem_at(
                    self.policy.source,
                    metric.pos,
                    f"the policy watches {metric.name!r}, but fit has no validation data: "
                    "no epoch of this fit logged a validation metric",
                    "pass validation_data (or validation_split) to fit, with a validation_freq that validates",
                )
            )
        return problems

    def _missing(self, logs: Mapping[str, Any], wanted: Callable[[str], bool], where: str) -> list[Problem]:
        return [
            missing_problem(
                self.policy, m, logs, f"the {where}", "they have", "compile the model with that metric, or fix the name"
            )
            for m in missing_metrics(self.policy, logs, wanted)
        ]

    def _placeholders(self, logs: Mapping[str, Any], validated: bool) -> list[Problem]:
        available = sorted(logs)
        problems = []
        for rule, path in epoch_end_paths(self.policy):
            for name in dict.fromkeys(_fields(path)):
                if name == "epoch" or name in logs:
                    continue
                if is_validation(name) and not validated:
                    message = (
                        f"the path {path!r} uses {{{name}}}, but the first epoch logged no validation metrics "
                        "(fit validates every validation_freq epochs); Keras formats the path at every epoch end"
                    )
                    hint = "use {epoch} or a training metric in the path, or validate every epoch"
                else:
                    near = closest(name, available)
                    message = (
                        f"the path {path!r} uses {{{name}}}, which is neither {{epoch}} nor a metric in the logs "
                        f"(they have: {', '.join(available) or 'none'})"
                    )
                    hint = f"did you mean {{{near}}}?" if near else "use {epoch} or a logged metric"
                problems.append(problem_at(self.policy.source, rule.pos, message, hint))
        return problems
