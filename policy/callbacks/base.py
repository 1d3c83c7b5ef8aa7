"""What every callback of ours that can stop training shares: a record of the stop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from policy.outcome import Stop

# The attribute naming the rule a compiled callback came from: compile_policy sets it (on
# Keras's own classes too), why_stopped and the backup read it. It lives here, below both
# the compiler and the callbacks, so neither has to import the other to know it.
POLICY_RULE = "policy_rule"


@dataclass(frozen=True)
class StopRecord:
    """A decision to stop training, and when it was taken.

    ``batch`` is the 0-based batch index for a decision taken after a training batch
    (the epoch then ends early), None for one taken at the end of an epoch. A batch-level
    stop precedes any epoch-end stop of the same epoch.
    """

    stop: Stop
    batch: int | None = None

    def order(self, position: int) -> tuple[int, int, int, int]:
        """Sort key: earlier epoch, then batch before epoch end, then earlier batch, then list position."""
        phase = 0 if self.batch is not None else 1
        return (self.stop.epoch, phase, self.batch or 0, position)

    def to_state(self) -> dict[str, Any]:
        """As plain data, for a backup."""
        return {"rule": self.stop.rule, "epoch": self.stop.epoch, "reason": self.stop.reason, "batch": self.batch}

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> StopRecord | None:
        """The record :meth:`to_state` described (None stays None)."""
        if state is None:
            return None
        return cls(Stop(state["rule"], state["epoch"], state["reason"]), state["batch"])


def record_state(record: StopRecord | None) -> dict[str, Any] | None:
    """A stop record (or None) as plain data."""
    return None if record is None else record.to_state()
