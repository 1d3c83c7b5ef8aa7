"""Figures 3, 4 and 12 measured on another Keras backend; run by :mod:`benchmarks.backends`.

    KERAS_BACKEND=torch /path/to/python -m benchmarks.backend_worker '<json request>'

The request may hold ``"fig3": true`` (figure 3's paired fits, :func:`benchmarks.fig3_fit.measure`),
``"fig12": true`` (figure 12's, :func:`benchmarks.fig12_step_schedule.measure`; both take ``"pairs"``)
and ``"policies"``, ``"rounds"``, ``"epochs"`` (figure 4): for each policy whether Keras's
``CallbackList`` keeps async batch dispatch (``_async_train``, decided in
``CallbackList._configure_async_dispatch``; only thread-safe backends have it: JAX and torch,
not TensorFlow), and ``fit``
timed with no callback, with ``ModelCheckpoint(save_freq="epoch")``, and with the same checkpoint
marked ``async_safe = True`` (the exemption ``_configure_async_dispatch`` honours). The answer is
one JSON line.

This module needs only keras, the backend, numpy and the ``policy`` package in that interpreter.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any


def async_decisions(policies: list[str]) -> dict[str, bool]:
    """Whether a ``CallbackList`` over each compiled policy dispatches train-batch hooks asynchronously."""
    from keras.src.callbacks.callback_list import CallbackList

    from policy import compile_policy

    return {text: bool(CallbackList(compile_policy(text))._async_train) for text in policies}


def _model_and_data() -> tuple[Any, dict[str, Any]]:
    """A model with enough work per step (two 512-wide layers) that a host sync per step shows."""
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(4096 + 512, 32)).astype("float32")
    y = (x[:, :4].sum(axis=1) > 0).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((32,)),
            keras.layers.Dense(512, activation="relu"),
            keras.layers.Dense(512, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01), loss="binary_crossentropy")
    data = {
        "x": x[:4096],
        "y": y[:4096],
        "validation_data": (x[4096:], y[4096:]),
        "batch_size": 64,
        "shuffle": False,
        "verbose": 0,
    }
    return model, data


def checkpoint_timings(rounds: int, epochs: int) -> dict[str, list[float]]:
    """Wall seconds of ``fit`` per variant, the three variants rotated in every round."""
    import keras

    model, data = _model_and_data()
    initial = model.get_weights()

    def checkpoint(async_safe: bool) -> list[Any]:
        cb = keras.callbacks.ModelCheckpoint("last.keras", save_freq="epoch")
        if async_safe:
            # Honest here: with save_freq="epoch" its on_train_batch_end only returns early.
            cb.async_safe = True
        return [cb]

    variants: dict[str, Callable[[], list[Any]]] = {
        "none": lambda: [],
        "ModelCheckpoint": lambda: checkpoint(False),
        "ModelCheckpoint async_safe": lambda: checkpoint(True),
    }
    names = list(variants)
    times: dict[str, list[float]] = {name: [] for name in names}
    before = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="policy-bench-worker-") as tmp:
        os.chdir(tmp)  # the checkpoint file lands in tmp
        model.fit(epochs=1, callbacks=checkpoint(False), **data)  # compile the step, first save: untimed
        for r in range(rounds):
            for name in names[r % 3 :] + names[: r % 3]:  # rotate who goes first
                callbacks = variants[name]()
                model.set_weights(initial)
                start = time.perf_counter()
                model.fit(epochs=epochs, callbacks=callbacks, **data)
                times[name].append(time.perf_counter() - start)
        os.chdir(before)
    return times


def main(argv: list[str]) -> int:
    """Answer one JSON request (see the module docstring) with one JSON line."""
    import keras

    request = json.loads(argv[0])
    answer: dict[str, Any] = {
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "thread_safe": bool(keras.src.backend.IS_THREAD_SAFE),
    }
    if request.get("fig3"):
        from benchmarks.fig3_fit import measure

        answer["fig3"] = measure(bool(request.get("quick", False)), request.get("pairs"))
    if request.get("fig12"):
        from benchmarks.fig12_step_schedule import measure as measure12

        answer["fig12"] = measure12(bool(request.get("quick", False)), request.get("pairs"))
    if "policies" in request:
        answer["async"] = async_decisions(request["policies"])
        rounds = int(request.get("rounds", 0))
        answer["timings"] = checkpoint_timings(rounds, int(request["epochs"])) if rounds else {}
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
