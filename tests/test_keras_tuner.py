"""A KerasTuner search with a compiled policy: every trial behaves as a fresh ``fit``.

KerasTuner deep-copies the ``callbacks`` passed to ``search`` once per trial (per execution)
and runs the copies; the list the user passed is never run. Each trial's decisions are
checked against ``simulate`` on that trial's own history.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt
import numpy as np
import pytest

from policy import compile_policy, simulate, why_stopped

POLICY = (
    "stop when val_loss not improving for 2\n"
    "multiply lr by 0.5 when val_loss not improving for 1\n"
    "save best on val_loss min to 'best.keras'\n"
    "save top 1 on val_loss min to 'top/{epoch}.keras'"
)


def _data(seed: int, noisy: bool) -> tuple[np.ndarray, np.ndarray]:
    """Training data with a clean boundary; validation data whose labels are noise, so its
    loss soon stops improving and the plateau rules act within a few epochs."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(48, 4)).astype("float32")
    y = (x @ np.array([1.0, -1.0, 0.5, 0.0], "float32") > 0).astype("float32")[:, None]
    return x, (rng.integers(0, 2, size=y.shape).astype("float32") if noisy else y)


def _build(hp: kt.HyperParameters) -> keras.Model:
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(hp.Choice("units", [2, 3, 5]), activation="tanh"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(optimizer=keras.optimizers.SGD(hp.Choice("lr", [0.3, 1.0, 3.0])), loss="binary_crossentropy")
    return model


class RecordingSearch(kt.RandomSearch):  # type: ignore[misc]
    """RandomSearch that keeps, per trial, the callback copies it ran and the History."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.runs: list[tuple[kt.HyperParameters, list[Any], keras.callbacks.History]] = []
        self._copies: list[Any] = []

    def _deepcopy_callbacks(self, callbacks: list[Any]) -> list[Any]:
        copies: list[Any] = super()._deepcopy_callbacks(callbacks)
        self._copies = copies
        return copies

    def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> Any:
        histories = super().run_trial(trial, *args, **kwargs)
        (history,) = histories  # one execution per trial
        self.runs.append((trial.hyperparameters, list(self._copies), history))
        return histories


@pytest.fixture(scope="module")
def search(tmp_path_factory: pytest.TempPathFactory) -> tuple[RecordingSearch, list[Any], Path]:
    workdir = tmp_path_factory.mktemp("tuner")
    here = Path.cwd()
    os.chdir(workdir)
    try:
        keras.utils.set_random_seed(0)
        x, y = _data(0, noisy=False)
        xv, yv = _data(1, noisy=True)
        callbacks = compile_policy(POLICY)
        tuner = RecordingSearch(
            _build, objective="val_loss", max_trials=3, seed=3, directory=str(workdir / "kt"), project_name="p"
        )
        tuner.search(x, y, validation_data=(xv, yv), epochs=8, callbacks=callbacks, verbose=0)
    finally:
        os.chdir(here)
    return tuner, callbacks, workdir


def test_each_trial_decides_as_simulate_predicts_on_its_own_history(
    search: tuple[RecordingSearch, list[Any], Path],
) -> None:
    tuner, _, _ = search
    assert len(tuner.runs) == 3
    stops, reduced = [], []
    for hp, copies, history in tuner.runs:
        predicted = simulate(POLICY, history.history, initial_lr=hp.get("lr"))
        assert len(history.epoch) == predicted.epochs_run
        assert why_stopped(copies) == predicted.stop
        lrs = history.history["learning_rate"]
        assert [np.float32(v) for v in lrs] == [np.float32(v) for v in predicted.learning_rates]
        stops.append(predicted.stop)
        reduced.append(np.float32(lrs[-1]) < np.float32(hp.get("lr")))
    # The search exercised what it is meant to: trials stopped by the plateau, lr reduced.
    assert any(stop is not None for stop in stops) and any(reduced)


def test_the_users_list_is_never_run(search: tuple[RecordingSearch, list[Any], Path]) -> None:
    tuner, callbacks, _ = search
    assert why_stopped(callbacks) is None
    early = next(cb for cb in callbacks if isinstance(cb, keras.callbacks.EarlyStopping))
    assert early.model is None  # never attached to a model: KerasTuner ran copies
    ran = {id(cb) for _, copies, _ in tuner.runs for cb in copies}
    assert not ran & {id(cb) for cb in callbacks}


def test_a_checkpoint_path_shared_by_trials_holds_the_last_trials_best(
    search: tuple[RecordingSearch, list[Any], Path],
) -> None:
    tuner, _, workdir = search
    # Every trial's copy starts with no best, so each trial writes best.keras at its first
    # epoch and overwrites the previous trial's file: the file left is the last trial's best
    # epoch, not the best of the search.
    for hp, _, history in tuner.runs:
        saves = simulate(POLICY, history.history, initial_lr=hp.get("lr")).saves
        assert saves and saves[0] == (0, "best.keras")
    last_hp, _, last_history = tuner.runs[-1]
    assert any(hp.get("units") != last_hp.get("units") for hp, _, _ in tuner.runs[:-1])
    saved = keras.saving.load_model(workdir / "best.keras")
    assert saved.layers[0].units == last_hp.get("units")
    xv, yv = _data(1, noisy=True)
    best_epoch = int(np.argmin(last_history.history["val_loss"]))
    assert np.isclose(
        saved.evaluate(xv, yv, verbose=0), last_history.history["val_loss"][best_epoch], rtol=1e-5, atol=1e-6
    )


def test_top_k_files_of_earlier_trials_stay(search: tuple[RecordingSearch, list[Any], Path]) -> None:
    tuner, _, workdir = search
    # Each trial's copy deletes only files it wrote itself; a previous trial's file with
    # another name existed before its fit, so it stays. Same-named files are overwritten.
    expected: set[str] = set()
    for hp, _, history in tuner.runs:
        predicted = simulate(POLICY, history.history, initial_lr=hp.get("lr"))
        written = {path for _, path in predicted.saves if path.startswith("top/")}
        expected = (expected | written) - (written - set(predicted.files))
    on_disk = {f"top/{p.name}" for p in (workdir / "top").iterdir()}
    assert on_disk == expected
    assert len(on_disk) > 1  # more than the one file "save top 1" promises within one fit


def test_every_rule_survives_the_deep_copy_kerastuner_makes() -> None:
    import copy

    every_rule = (
        "stop when val_loss not improving for 3, restore best, baseline 0.9\n"
        "stop when loss is not finite\n"
        "stop when val_accuracy >= 0.9 or val_loss not improving by 1% for 2, restore best val_loss\n"
        "stop after 5 epochs; stop after 100 steps; stop after 30 min\n"
        'save best on val_loss min to "a/best.keras"\n'
        'save top 2 on val_loss to "b/{epoch}.keras"\n'
        'save every 2 epochs to "c/{epoch}.keras"\n'
        'save every 10 steps to "d/{epoch}-{batch}.keras"\n'
        'save last weights to "e/last.weights.h5"\n'
        "warm up lr to 0.001 over 2 epochs, then cosine to 1e-5 over 5 epochs\n"
        'log to "logs/train.csv"; log to tensorboard "tb/"; backup to "bk/"\n'
    )
    callbacks = compile_policy(every_rule)
    copies = copy.deepcopy(callbacks)
    assert [type(cb) for cb in copies] == [type(cb) for cb in callbacks]
    assert not {id(cb) for cb in copies} & {id(cb) for cb in callbacks}
    assert [getattr(cb, "policy_rule", None) for cb in copies] == [getattr(cb, "policy_rule", None) for cb in callbacks]
