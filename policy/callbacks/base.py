"""What every callback of ours that can stop training shares: a record of the stop."""

from __future__ import annotations

from dataclasses import dataclass

from policy.outcome import Stop


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
