"""Strict mode: every metric the policy watches must be in the logs at the first epoch end.

Keras's monitors only warn about a missing metric (and ModelCheckpoint then saves anyway),
so a typo such as ``val_los`` silently disables a rule. This callback, placed first, turns
that into a :class:`PolicyError` pointing at the metric in the policy text.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import keras

from policy import ast
from policy.errors import PolicyError, Problem, closest, problem_at
from policy.validate import metrics_read


def watched_metrics(policy: ast.Policy) -> Iterator[ast.Metric]:
    """Every metric node a policy reads from the epoch logs, in source order.

    ``learning_rate`` is left out: no model logs it; the policy's own lr rule writes it into the
    logs later in the same epoch-end dispatch, after this check has run (and the validator has
    made sure every rule reading it comes after that lr rule).
    """
    for rule in policy.rules:
        yield from (m for m in metrics_read(rule) if m.name != "learning_rate")


class MetricCheck(keras.callbacks.Callback):  # type: ignore[misc]
    """Raise :class:`PolicyError` at the first epoch end if a watched metric is not logged."""

    def __init__(self, policy: ast.Policy) -> None:
        super().__init__()
        self.policy = policy
        self._first = True

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._first = True

    def get_state(self) -> dict[str, Any]:
        return {"first": self._first}

    def set_state(self, state: dict[str, Any]) -> None:
        self._first = state["first"]

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if not self._first:
            return
        self._first = False
        available = sorted(logs or {})
        problems: list[Problem] = []
        reported: set[str] = set()
        for metric in watched_metrics(self.policy):
            if metric.name in available or metric.name in reported:
                continue
            reported.add(metric.name)
            near = closest(metric.name, available)
            listing = ", ".join(available) if available else "none"
            problems.append(
                problem_at(
                    self.policy.source,
                    metric.pos,
                    f"metric {metric.name!r} is not in the training logs (they have: {listing})",
                    f"did you mean {near!r}?" if near else "compile the model with that metric, or fix the name",
                )
            )
        if problems:
            raise PolicyError(problems)
