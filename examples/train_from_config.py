"""Train a tiny model under the policy written in examples/config.yaml.

    python examples/train_from_config.py [path/to/config.yaml]

Everything is generated on the spot (no download) and it finishes in a few seconds on a
CPU. The checkpoint and the CSV log land in runs/ under the current directory.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # keep TensorFlow's start-up chatter out of the way

import keras
import numpy as np
import yaml

import policy
from policy import load


def make_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A noisy linear boundary in 20 dimensions: easy to learn, hard to learn perfectly."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 20)).astype("float32")
    w = np.linspace(-1.0, 1.0, 20).astype("float32")
    y = ((x @ w + rng.normal(scale=1.5, size=n)) > 0).astype("float32")
    return x, y


def main(config_path: Path) -> None:
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))["training"]
    # load() reports a bad policy as config.yaml:LINE:COL with the line and a caret.
    rules = load(config_path, key="training.policy")
    print("Policy:\n  " + policy.format_policy(rules).replace("\n", "\n  "))

    keras.utils.set_random_seed(0)
    x, y = make_data(2000, seed=1)
    x_val, y_val = make_data(500, seed=2)
    model = keras.Sequential([
        keras.Input((20,)),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(1, activation="sigmoid"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(config["learning_rate"]),
                  loss="binary_crossentropy", metrics=["accuracy"])

    # Keras's CSVLogger does not create folders (ModelCheckpoint does), so make runs/ first.
    Path("runs").mkdir(exist_ok=True)
    callbacks = policy.compile_policy(rules)
    history = model.fit(x, y, validation_data=(x_val, y_val), epochs=config["epochs"],
                        batch_size=config["batch_size"], callbacks=callbacks, verbose=0)

    ran = len(history.epoch)
    best = min(history.history["val_loss"])
    print(f"\nTrained {ran} of {config['epochs']} epochs; best val_loss {best:.4f}.")
    stop = policy.why_stopped(callbacks)
    print(f"Stopped by {stop.rule!r} at epoch {stop.epoch}: {stop.reason}" if stop else "Ran to the end.")
    print("Learning rate per epoch:", ", ".join(f"{lr:g}" for lr in history.history.get("learning_rate", [])))
    print("Wrote:", ", ".join(sorted(str(p) for p in Path("runs").iterdir())))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("config.yaml"))
