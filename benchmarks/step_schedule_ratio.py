"""Issue 14's benchmark: fit with a compiled step schedule / fit with Keras's own CosineDecay.

Both sides run the same model and data: a warm-up to 1e-3 over 100 steps, then a cosine to 1e-5
over the remaining steps, written once as policy text (``StepLearningRate`` installs a
``PolicyLearningRateSchedule`` at train begin) and once by hand as
``SGD(CosineDecay(0.0, decay_steps, alpha, warmup_target=1e-3, warmup_steps=100))``. Fits
alternate, the median of the per-pair ratios is printed (goal 1.00), with whether Keras kept
async batch dispatch for the compiled callbacks.

    KERAS_BACKEND=jax python benchmarks/step_schedule_ratio.py [rounds]
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np

STEPS, EPOCHS, WARMUP = 64, 3, 100
TOTAL = STEPS * EPOCHS
POLICY = f"warm up lr to 0.001 over {WARMUP} steps, then cosine to 1e-05 over {TOTAL - WARMUP} steps"


def _model(lr: Any) -> Any:
    import keras

    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((32,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(lr), loss="mse")
    return model


def _fit(side: str, x: Any, y: Any) -> float:
    import keras

    from policy import compile_policy

    if side == "policy":
        model, callbacks = _model(0.0), compile_policy(POLICY)
    else:
        schedule = keras.optimizers.schedules.CosineDecay(
            0.0, TOTAL - WARMUP, alpha=1e-5 / 1e-3, warmup_target=1e-3, warmup_steps=WARMUP
        )
        model, callbacks = _model(schedule), []
    start = time.perf_counter()
    model.fit(x, y, batch_size=16, epochs=EPOCHS, verbose=0, callbacks=callbacks)
    return time.perf_counter() - start


def main() -> None:
    import keras

    from policy import compile_policy

    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    rng = np.random.default_rng(0)
    x = rng.normal(size=(STEPS * 16, 32)).astype("float32")
    y = rng.normal(size=(STEPS * 16, 1)).astype("float32")
    _fit("policy", x, y), _fit("keras", x, y)  # warm both up
    ratios = []
    for r in range(rounds):
        order = ("policy", "keras") if r % 2 == 0 else ("keras", "policy")
        times = {side: _fit(side, x, y) for side in order}
        ratios.append(times["policy"] / times["keras"])
    cbs = keras.callbacks.CallbackList(compile_policy(POLICY), model=_model(0.0))
    print(
        f"{keras.backend.backend()}: fit with the compiled step schedule / with Keras CosineDecay: "
        f"median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f}, {rounds} pairs); "
        f"async batch dispatch kept: {bool(getattr(cbs, '_async_train', False))}"
    )


if __name__ == "__main__":
    main()
