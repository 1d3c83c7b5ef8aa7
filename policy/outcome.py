"""What a policy did over one training run: the shape shared by the reference and Keras.

:func:`policy.simulate` predicts an :class:`Outcome`; the harness in :mod:`policy.testing`
measures one from a real ``model.fit``. The differential tests compare the two with ``==``.
Plain data only (no keras import), so the CLI can print and serialise it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class Stop:
    """Which rule stopped training, at which 0-based epoch, and why (one sentence)."""

    rule: str
    epoch: int
    reason: str = field(default="", compare=False)


@dataclass(frozen=True)
class Outcome:
    """The decisions a policy made over one ``fit``.

    - ``epochs_run``: how many epochs ran (``len(history.epoch)`` in Keras).
    - ``learning_rates``: the learning rate in effect during each epoch run (float32 values as floats).
    - ``step_learning_rates``: the learning rate each optimizer step ran with, in order (float32
      values as floats); empty when unknown (``simulate`` without ``steps_per_epoch``). Two
      outcomes that both know them compare them in ``==``; empty on either side is not compared.
    - ``saves``: every checkpoint write, in order, as ``(epoch, path)`` with a 0-based epoch and the
      path formatted as Keras formats it.
    - ``files``: the checkpoint files that exist at the end because of the policy's save rules,
      sorted: every path a save rule wrote (as in ``saves``, relative to the folder ``fit`` ran
      in) minus those a ``save top K`` rule deleted since. A path written twice is one file; a
      file written again after a deletion exists. Only model files of save rules count (not CSV
      logs, TensorBoard or backup folders), and never a file the run did not write.
    - ``restored_epoch``: the epoch whose weights the model holds at the end because a restore rule
      put them back; None if nothing was restored.
    - ``stop``: which rule stopped training; None if it ran to the end.
    - ``failed``: which rule made ``fit`` raise (``fail when ...``), at which epoch; None if ``fit``
      returned. ``epochs_run`` then counts the epoch that failed, ``saves`` and ``files`` hold what was
      written before the raise, and nothing is restored (``on_train_end`` never runs).
    - ``rollbacks``: every restore during training (``multiply lr ..., restore best``), in order, as
      ``(epoch, restored)``: at the end of ``epoch`` the model's weights were set back to those it
      had at the end of epoch ``restored``.
    """

    epochs_run: int
    learning_rates: tuple[float, ...] = ()
    step_learning_rates: tuple[float, ...] = field(default=(), compare=False)
    saves: tuple[tuple[int, str], ...] = ()
    files: tuple[str, ...] = ()
    restored_epoch: int | None = None
    stop: Stop | None = None
    failed: Stop | None = None
    rollbacks: tuple[tuple[int, int], ...] = ()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Outcome):
            return NotImplemented
        mine, theirs = self.step_learning_rates, other.step_learning_rates
        if mine and theirs and mine != theirs:
            return False
        return _compared(self) == _compared(other)

    def __hash__(self) -> int:
        return hash(_compared(self))

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["learning_rates"] = list(self.learning_rates)
        out["step_learning_rates"] = list(self.step_learning_rates)
        if not self.step_learning_rates:  # only runs with known steps per epoch have them
            del out["step_learning_rates"]
        out["saves"] = [list(s) for s in self.saves]
        out["files"] = list(self.files)
        out["rollbacks"] = [list(r) for r in self.rollbacks]
        return out


def _compared(outcome: Outcome) -> tuple[Any, ...]:
    """Every field ``==`` compares as such (all but ``step_learning_rates``)."""
    return tuple(getattr(outcome, f.name) for f in fields(outcome) if f.compare)
