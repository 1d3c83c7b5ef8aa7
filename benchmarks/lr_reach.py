"""Does a batch callback that assigns the learning rate reach the compiled train step mid-epoch?

The question behind issue 14's "free" requirement: a step-counted schedule could be a callback
that assigns ``optimizer.learning_rate`` in ``on_train_batch_begin``, or a Keras
``LearningRateSchedule`` evaluated inside the compiled step. This probe runs both on the
backend of this process and reports the learning rate each optimizer step really used.

The model makes that rate observable exactly: its output is its bias (the input is zero), the
loss is the mean output, so the gradient of the bias is 1 and plain SGD moves the bias by
exactly ``-lr`` per step. Rates are small integers, so every sum is exact in float32. Reading
the bias after every execution needs ``on_train_batch_end``; the probe reads it once at the end
of each epoch instead (as an epoch callback), and the callback under test overrides only
``on_train_batch_begin``, so async batch dispatch stays as it would be.

    KERAS_BACKEND=jax python benchmarks/lr_reach.py

Figure 12 (:mod:`benchmarks.fig12_step_schedule`) runs these probes on every backend.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

STEPS = 8  # optimizer steps per epoch
EPOCHS = 2


def _model(learning_rate: Any, spe: int) -> Any:
    import keras

    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, kernel_initializer="zeros")])
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate),
        loss=lambda y_true, y_pred: keras.ops.mean(y_pred),
        steps_per_execution=spe,
    )
    return model


def _bias(model: Any) -> float:
    import keras

    return float(keras.ops.convert_to_numpy(model.layers[0].bias)[0])


def _intended(step: int) -> float:
    """The rate meant for optimizer step ``step`` (0-based across epochs): 1, 2, 3, ..."""
    return float(step + 1)


def probe_callback(spe: int) -> dict[str, Any]:
    """A batch callback assigns the rate of the step about to run; what did each epoch use?"""
    import keras

    class AssignEachBatch(keras.callbacks.Callback):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.epoch = 0
            self.ends: list[float] = []

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.epoch = epoch

        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
            self.model.optimizer.learning_rate.assign(_intended(self.epoch * STEPS + batch))

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.ends.append(_bias(self.model))

    model = _model(0.0, spe)
    cb = AssignEachBatch()
    x = np.zeros((STEPS, 1), "float32")
    model.fit(x, x, batch_size=1, epochs=EPOCHS, shuffle=False, verbose=0, callbacks=[cb])
    used = [-(b - a) for a, b in zip([0.0, *cb.ends], cb.ends, strict=False)]
    calls = range(0, STEPS, spe)
    # If each assignment reaches the executions that follow it: every step of an execution uses
    # the rate assigned at the execution's first step.
    reach = [sum(min(spe, STEPS - c) * _intended(e * STEPS + c) for c in calls) for e in range(EPOCHS)]
    exact = [sum(_intended(e * STEPS + b) for b in range(STEPS)) for e in range(EPOCHS)]
    return {
        "steps_per_execution": spe,
        "epoch_rate_sums": used,
        "if_assignment_reaches_next_execution": reach,
        "if_exact_per_step": exact,
        "reaches": used == reach,
        "exact": used == exact,
    }


def probe_schedule(spe: int) -> dict[str, Any]:
    """The same rates as a ``LearningRateSchedule`` of ``optimizer.iterations``, inside the step."""
    import keras

    @keras.saving.register_keras_serializable(package="probe")
    class Ramp(keras.optimizers.schedules.LearningRateSchedule):  # type: ignore[misc]
        def __call__(self, step: Any) -> Any:
            return keras.ops.cast(step, "float32") + 1.0

        def get_config(self) -> dict[str, Any]:
            return {}

    model = _model(Ramp(), spe)
    ends: list[float] = []
    cb = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: ends.append(_bias(model)))
    x = np.zeros((STEPS, 1), "float32")
    model.fit(x, x, batch_size=1, epochs=EPOCHS, shuffle=False, verbose=0, callbacks=[cb])
    used = [-(b - a) for a, b in zip([0.0, *ends], ends, strict=False)]
    exact = [sum(_intended(e * STEPS + b) for b in range(STEPS)) for e in range(EPOCHS)]
    return {"steps_per_execution": spe, "epoch_rate_sums": used, "if_exact_per_step": exact, "exact": used == exact}


def async_dispatch(overrides_batch_end: bool) -> bool:
    """Whether Keras dispatches batch-end hooks asynchronously with one such callback."""
    import keras

    class Begin(keras.callbacks.Callback):  # type: ignore[misc]
        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
            pass

    class End(keras.callbacks.Callback):  # type: ignore[misc]
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            pass

    cb = End() if overrides_batch_end else Begin()
    cbs = keras.callbacks.CallbackList([cb], model=_model(0.0, 1))
    return bool(getattr(cbs, "_async_train", False))


def main() -> None:
    import keras

    def each(probe: Any, spe: int) -> dict[str, Any]:
        try:
            return probe(spe)  # type: ignore[no-any-return]
        except ValueError as e:  # torch: steps_per_execution must be 1
            return {"steps_per_execution": spe, "refused": str(e)}

    report = {
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "callback": [each(probe_callback, spe) for spe in (1, 4)],
        "schedule": [each(probe_schedule, spe) for spe in (1, 4)],
        "async_with_batch_begin_only": async_dispatch(False),
        "async_with_batch_end": async_dispatch(True),
    }
    json.dump(report, sys.stdout)
    print()


if __name__ == "__main__":
    main()
