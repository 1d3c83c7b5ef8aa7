"""``train at least N epochs|steps``: no ``stop when`` rule stops training before that.

Lightning's ``min_epochs`` / ``min_steps``, not Keras's ``start_from_epoch``: before the minimum,
every held rule still sees every epoch and keeps its state exactly as without the minimum (a
plateau's ``wait`` and ``best``, EarlyStopping's included); only its decision to stop is
undone. Keras's ``start_from_epoch`` instead leaves the epochs before it out altogether, so
patience only starts counting there: a different meaning, which is why this is not compiled to it.

Undoing a stop must not undo anyone else's: a budget earlier in the list may have stopped
training at the same epoch end. So each held callback gets a pair around it (:meth:`hold`):
:class:`StopHold` right before it notes ``model.stop_training`` and the callback's stop record,
:class:`StopRelease` right after it puts both back while the minimum is not met. The held
callback itself is untouched (Keras's own EarlyStopping stays Keras's class).
"""

from __future__ import annotations

from typing import Any

import keras

from policy import ast
from policy.callbacks.budget import StepCount
from policy.printer import rule as rule_text

# Where a held callback keeps the record of its stop: EarlyStopping its ``stopped_epoch`` (what
# why_stopped reads), our callbacks a ``stop_record``.
_RECORDS = ("stopped_epoch", "stop_record")


class Minimum(keras.callbacks.Callback):  # type: ignore[misc]
    """What both minimums share: :meth:`hold` wraps a callback whose stops they hold back."""

    def __init__(self, amount: int, unit: ast.SaveUnit, rule: str) -> None:
        super().__init__()
        self.rule = rule or rule_text(ast.TrainAtLeast(amount=amount, unit=unit))

    def reached(self, epoch: int) -> bool:
        """Whether a stop at the end of ``epoch`` is allowed."""
        raise NotImplementedError

    def hold(self, callback: Any) -> list[Any]:
        """``callback`` with the pair that holds back its stops around it, to put in the list."""
        before = StopHold(self, callback)
        return [before, callback, StopRelease(before)]


class MinimumEpochs(Minimum):
    """Hold back stops until ``epochs`` epochs have ended (``train at least N epochs``).

    Epochs are absolute, as Keras passes them (like ``stop after N epochs``): a stop is allowed
    at the end of epoch ``e`` when ``e + 1 >= epochs``. Overrides no hook: holding is done by
    the pairs :meth:`hold` puts around each held callback.

    Args:
        epochs: the minimum.
        rule: the rule's canonical text; written from ``epochs`` when empty.
    """

    def __init__(self, epochs: int, rule: str = "") -> None:
        super().__init__(epochs, "epochs", rule)
        self.epochs = epochs

    def reached(self, epoch: int) -> bool:
        return epoch + 1 >= self.epochs


class MinimumSteps(Minimum):
    """Hold back stops until ``steps`` training batches have run since train begin
    (``train at least N steps``), counted from the batch index Keras passes as
    ``stop after N steps`` counts them; a backup carries the count across a restart.

    Args:
        steps: the minimum.
        rule: the rule's canonical text; written from ``steps`` when empty.
    """

    def __init__(self, steps: int, rule: str = "") -> None:
        super().__init__(steps, "steps", rule)
        self.steps = steps
        self.count = StepCount()

    def reached(self, epoch: int) -> bool:
        return self.count.seen >= self.steps

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.count.restart()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.count.epoch_begins()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.count.batch_ended(self.params, batch)

    def get_state(self) -> dict[str, Any]:
        return self.count.get_state()

    def set_state(self, state: dict[str, Any]) -> None:
        self.count.set_state(state)


class StopHold(keras.callbacks.Callback):  # type: ignore[misc]
    """Right before a held callback: notes, at each epoch end, what its stop would overwrite.

    Args:
        minimum: the policy's :class:`MinimumEpochs` or :class:`MinimumSteps`.
        target: the held callback (right after this one in the list).
    """

    def __init__(self, minimum: Minimum, target: Any) -> None:
        super().__init__()
        self.minimum = minimum
        self.target = target
        self.noted: tuple[bool, dict[str, Any]] = (False, {})

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        records = {name: getattr(self.target, name) for name in _RECORDS if hasattr(self.target, name)}
        self.noted = (bool(self.model.stop_training), records)

    def __repr__(self) -> str:
        return f"StopHold({type(self.target).__name__})"


class StopRelease(keras.callbacks.Callback):  # type: ignore[misc]
    """Right after a held callback: while the minimum is not met, puts back ``stop_training`` and
    the callback's stop record as they were before it ran (its other state stays as it left it).

    Args:
        hold: the :class:`StopHold` right before the held callback.
    """

    def __init__(self, hold: StopHold) -> None:
        super().__init__()
        self.hold = hold

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.hold.minimum.reached(epoch):
            return
        stop_training, records = self.hold.noted
        self.model.stop_training = stop_training
        for name, value in records.items():
            setattr(self.hold.target, name, value)

    def __repr__(self) -> str:
        return f"StopRelease({type(self.hold.target).__name__})"
