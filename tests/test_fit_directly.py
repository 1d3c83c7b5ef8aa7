"""The plainest use: ``model.fit(callbacks=compile_policy(text))``, exactly as the README shows it."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from policy import Stop, compile_policy, why_stopped


def _model() -> keras.Model:
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    return model


def test_compiled_policy_goes_straight_into_fit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    x = np.zeros((8, 3), "float32")
    y = np.ones((8, 1), "float32")
    callbacks = compile_policy("stop after 2 epochs; save last to 'last.keras'; log to 'log.csv'")
    assert type(callbacks) is list  # Keras flattens callbacks; a list subclass would be one leaf
    history = _model().fit(x, y, validation_data=(x, y), epochs=5, callbacks=callbacks, verbose=0)
    assert len(history.epoch) == 2 == len(history.history["loss"])
    assert (tmp_path / "last.keras").is_file()
    assert len((tmp_path / "log.csv").read_text().splitlines()) == 3
    stop = why_stopped(callbacks)
    assert isinstance(stop, Stop)
    assert (stop.rule, stop.epoch) == ("stop after 2 epochs", 1)


def test_why_stopped_is_none_when_training_ran_to_the_end(tmp_path: Path) -> None:
    x = np.zeros((8, 3), "float32")
    callbacks = compile_policy("stop when val_loss not improving for 50")
    _model().fit(x, x[:, :1], validation_data=(x, x[:, :1]), epochs=2, callbacks=callbacks, verbose=0)
    assert why_stopped(callbacks) is None
