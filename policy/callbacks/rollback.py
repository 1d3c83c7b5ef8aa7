"""``multiply lr by F when M not improving for N, restore best``: roll back when the rate is cut.

Keras's ReduceLROnPlateau has no such knob (tensorflow PR 58730 asked for one). This subclass
keeps every decision of Keras's: its ``on_epoch_end`` runs unchanged and decides the improvement,
the wait, the cooldown and the cut. Around it we only watch two things Keras does: whether its
``best`` changed (then the weights of this epoch are the best so far, and are kept), and whether
its ``_reduce_optimizer_lr`` reported a cut (then the kept weights are put back, before any later
callback of the list sees the model).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from policy.callbacks.step_schedule import HandoverReduceLROnPlateau


class RestoringReduceLROnPlateau(HandoverReduceLROnPlateau):
    """Keras's ReduceLROnPlateau that, when it cuts the rate, puts back the best epoch's weights.

    (After a finite schedule counted in steps the cut goes where :class:`HandoverReduceLROnPlateau`
    puts it; otherwise this is Keras's ReduceLROnPlateau plus the restore.)

    "Best" is ReduceLROnPlateau's own ``best`` (its ``min_delta`` counts): the weights are kept at
    every epoch end where Keras takes a new best. A cut before any best exists restores nothing.

    Args:
        **kwargs: Keras's ReduceLROnPlateau arguments, unchanged.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.best_weights: list[Any] | None = None
        self.best_epoch: int | None = None
        self._cut = False

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        super().on_train_begin(logs)
        self.best_weights = None
        self.best_epoch = None

    def _reduce_optimizer_lr(self, optimizer: Any, epoch: int, name: str = "") -> bool:
        cut: bool = super()._reduce_optimizer_lr(optimizer, epoch, name)
        self._cut = self._cut or cut
        return cut

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        before = self.best
        self._cut = False
        super().on_epoch_end(epoch, logs)
        # Keras replaced `best` with this epoch's value (a NaN best stays the same object).
        if self.best is not before and self.best != before:
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        if self._cut and self.best_weights is not None:
            self.model.set_weights(self.best_weights)

    def get_state(self) -> dict[str, Any]:
        """Keras's decision state (as :mod:`policy.callbacks.state` reads it) and the kept weights."""
        return {
            "wait": int(self.wait),
            "cooldown_counter": int(self.cooldown_counter),
            "best": None if self.best is None else float(self.best),
            "best_epoch": self.best_epoch,
            "best_weights": None if self.best_weights is None else [np.array(w) for w in self.best_weights],
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self.wait = state["wait"]
        self.cooldown_counter = state["cooldown_counter"]
        self.best = state["best"]
        self.best_epoch = state["best_epoch"]
        self.best_weights = state["best_weights"]
