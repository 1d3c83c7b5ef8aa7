"""Record a handful of real training runs, then ask which early-stopping patience they argue for.

    python examples/replay_runs.py            # trains 8 small models (about a minute), then replays them
    python examples/replay_runs.py --replay   # only the replay, over the runs already in examples/runs/

Each run is a small network (dropout, small batches) fitted for 40 epochs to noisy generated data
(nothing is downloaded), so the validation loss falls, then wobbles on a plateau or drifts back up,
sometimes finding a new best late, as real runs do. They are
recorded the three ways Keras users keep runs: CSVLogger files, a ``History.history`` JSON file
and TensorBoard log folders. ``examples/runs/`` holds the result, which the README replays.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

OUT = Path(__file__).resolve().parent / "runs"
EPOCHS = 40
TEMPLATE = "stop when val_loss not improving for {2,3,5,8}"

# (seed, label noise, learning rate, hidden units, how the run is recorded)
RUNS = [
    (1, 0.8, 0.02, 32, "csv"),
    (2, 1.2, 0.03, 64, "csv"),
    (3, 0.5, 0.015, 32, "csv"),
    (4, 1.0, 0.04, 16, "csv"),
    (5, 1.0, 0.025, 64, "csv"),
    (6, 0.7, 0.02, 32, "json"),
    (7, 1.5, 0.05, 64, "tensorboard"),
    (8, 1.3, 0.03, 32, "tensorboard"),
]


def record(index: int, seed: int, noise: float, lr: float, units: int, form: str) -> None:
    """Fit one small model and record its epochs as ``form``."""
    import keras
    import numpy as np

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(300, 8)).astype("float32")
    signal = x[:, :2].sum(axis=1, keepdims=True) + noise * rng.normal(size=(300, 1))
    y = (signal > 0).astype("float32")
    model = keras.Sequential([
        keras.Input((8,)),
        keras.layers.Dense(units, activation="relu"),
        keras.layers.Dropout(0.4),
        keras.layers.Dense(units, activation="relu"),
        keras.layers.Dropout(0.4),
        keras.layers.Dense(1, activation="sigmoid"),
    ])
    model.compile(optimizer=keras.optimizers.SGD(lr, momentum=0.5), loss="binary_crossentropy", metrics=["accuracy"])
    name = f"run-{index}"
    callbacks: list[keras.callbacks.Callback] = []
    if form == "csv":
        callbacks.append(keras.callbacks.CSVLogger(str(OUT / f"{name}.csv")))
    elif form == "tensorboard":
        callbacks.append(keras.callbacks.TensorBoard(str(OUT / name), write_graph=False))
    history = model.fit(x, y, validation_split=0.25, epochs=EPOCHS, batch_size=8, verbose=0, callbacks=callbacks)
    if form == "json":
        (OUT / f"{name}.json").write_text(json.dumps(history.history, indent=1) + "\n")
    best = min(history.history["val_loss"])
    print(f"{name}: {form}, best val_loss {best:.4f} at epoch {history.history['val_loss'].index(best)}")


def main(argv: list[str]) -> int:
    if "--replay" not in argv:
        OUT.mkdir(exist_ok=True)
        for index, (seed, noise, lr, units, form) in enumerate(RUNS, start=1):
            record(index, seed, noise, lr, units, form)
    from policy import replay
    from policy.replay_text import variants_text

    print(variants_text(replay(TEMPLATE, [OUT]), TEMPLATE))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
