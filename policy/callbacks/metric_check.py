"""Strict mode: the metrics and path placeholders a policy uses must be in the logs.

Keras's monitors only warn about a missing metric (and ModelCheckpoint then saves anyway),
so a typo such as ``val_los`` silently disables a rule. This callback, placed first, turns
that into a :class:`PolicyError` pointing at the metric in the policy text. When each name is
judged (training metrics and path placeholders at the first epoch end, ``val_*`` metrics at
the first epoch that validated) is :mod:`policy.strictness`.
"""

from __future__ import annotations

from typing import Any

import keras

from policy import ast
from policy.errors import PolicyError
from policy.strictness import StrictCheck, has_step_placeholders

__all__ = ["MetricCheck", "MetricCheckWithBatches", "metric_check"]


def metric_check(policy: ast.Policy) -> MetricCheck:
    """The strict check for ``policy``: with a batch hook only when a step checkpoint path has a
    metric placeholder to check (a batch hook turns off Keras's async batch dispatch)."""
    return MetricCheckWithBatches(policy) if has_step_placeholders(policy) else MetricCheck(policy)


class MetricCheck(keras.callbacks.Callback):  # type: ignore[misc]
    """Fail ``fit`` as soon as a metric or path placeholder the policy uses is known missing.

    Placed first in the list ``compile_policy`` returns (unless ``strict=False``). Training
    metrics and path placeholders are judged at the first epoch end, ``val_*`` metrics at the
    first epoch that validated (:mod:`policy.strictness`); a missing one raises
    :class:`PolicyError` pointing at it in the policy text, with a suggestion when a logged
    name is close.

    Args:
        policy: the validated policy whose watched metrics and paths are checked.
    """

    def __init__(self, policy: ast.Policy) -> None:
        super().__init__()
        self.policy = policy
        self._check = StrictCheck(policy)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._check.reset()

    def get_state(self) -> dict[str, Any]:
        return self._check.get_state()

    def set_state(self, state: dict[str, Any]) -> None:
        self._check.set_state(state)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self._check.done:
            return
        epochs = (self.params or {}).get("epochs")
        last = isinstance(epochs, int) and epoch + 1 >= epochs
        problems = self._check.epoch_end(logs or {}, last=last)
        if problems:
            raise PolicyError(problems)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        # Training stopped before its last epoch without ever validating.
        problems = self._check.train_end()
        if problems:
            raise PolicyError(problems)


class MetricCheckWithBatches(MetricCheck):
    """:class:`MetricCheck` that also judges step checkpoint paths at the first training batch end.

    Only a policy with a ``save every N steps`` path holding a metric placeholder gets this
    one (:func:`metric_check` chooses): a batch hook turns off Keras's async batch dispatch.

    Args:
        policy: the validated policy whose watched metrics and paths are checked.
    """

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        problems = self._check.batch_end(logs or {})
        if problems:
            raise PolicyError(problems)
