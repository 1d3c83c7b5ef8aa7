"""``stop when M not improving for N, baseline B`` on a Keras whose EarlyStopping ignores B.

In Keras 3.15.1 EarlyStopping's ``baseline`` is a bar: an improvement on the best so far
resets ``wait`` only when it also beats the baseline, so a run that never clears the bar
stops ``patience`` epochs after it began counting. keras-team/keras PR 23559 (merged after
3.15.1) resets ``wait`` on every improvement, which leaves ``baseline`` with no effect at all.
The language keeps the 3.15.1 meaning on every Keras: where Keras's own class still has it,
the rule compiles to Keras's class; where it does not (:func:`keras_honours_baseline` is
False), it compiles to :class:`BaselineEarlyStopping`, an EarlyStopping subclass that keeps
everything else Keras's (arguments, state, restore at train end, ``stopped_epoch``).
"""

from __future__ import annotations

import functools
from typing import Any

import keras


@functools.cache
def keras_honours_baseline() -> bool:
    """Whether the installed Keras's EarlyStopping still treats ``baseline`` as a bar for ``wait``.

    Asked of the class itself (two scripted epochs, no model, no training), not of its version
    number, so a back-port or a patched install is judged by what it does. With baseline 0.5
    (min mode), 1.0 then 0.9 both improve on the best and neither beats the baseline: 3.15.1
    keeps counting (wait 2) with 0.9 as the best; a Keras with PR 23559 resets (wait 0), and one
    that took the baseline for the starting best would keep 0.5 as the best.
    """
    probe = keras.callbacks.EarlyStopping(monitor="probe", mode="min", patience=100, baseline=0.5)
    probe.on_train_begin()
    probe.on_epoch_end(0, {"probe": 1.0})
    probe.on_epoch_end(1, {"probe": 0.9})
    return int(probe.wait) == 2 and probe.best == 0.9


class BaselineEarlyStopping(keras.callbacks.EarlyStopping):  # type: ignore[misc]
    """Keras's EarlyStopping with ``baseline`` as Keras 3.15.1 defines it (see module docstring).

    It owns the state reset at train begin and the decision at each epoch end; the monitor's
    direction and comparison, the warning for a missing metric and the restore at train end
    stay Keras's.

    Each counted epoch (the metric logged, ``epoch >= start_from_epoch``): ``wait`` grows by
    one; a value that improves on the best (``min_delta`` counted) becomes the best, and resets
    ``wait`` only if it also improves on the baseline; an improving epoch never stops training;
    otherwise training stops once ``wait >= patience`` (and ``epoch > 0``).

    Args:
        **kwargs: Keras's EarlyStopping arguments (``monitor``, ``min_delta``, ``patience``,
            ``mode``, ``baseline``, ``restore_best_weights``, ``start_from_epoch``), unchanged.
    """

    # EarlyStopping's state, declared for the type checker (keras ships no annotations).
    wait: int
    best: Any
    best_epoch: int
    best_weights: Any
    stopped_epoch: int

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        # Owned here too: the baseline is a bar, never the starting best.
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.monitor_op is None:
            self._set_monitor_op()
        current = self.get_monitor_value(logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            # The first counted epoch is the best until something beats it.
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True
