"""The ``fit``/``compile`` arguments people use: each rule stays exact under them.

For each argument (``validation_freq``, ``steps_per_execution``, ``initial_epoch``, a reused
list, an optimizer with a ``LearningRateSchedule``, a BackupAndRestore resume) a real ``fit``
runs the compiled policy, the hand-written Keras callbacks where Keras has the rule, and
:func:`policy.simulate` predicts the same outcome. Metrics are scripted by the harness
(tiny model, a few epochs), except where the point is what Keras itself logs.
"""

from __future__ import annotations

import pathlib
from typing import Any

import keras
import numpy as np
import pytest

from policy import PolicyError, compile_policy, simulate
from policy.reference import round_f32
from policy.testing import run_callbacks, run_in_keras

X = np.linspace(-1, 1, 8, dtype="float32").reshape(-1, 1)
Y = 2 * X


def _sim(text: str, history: Any, **kwargs: Any) -> Any:
    """The reference's prediction for a harness run (the harness model starts at lr 0.01)."""
    kwargs.setdefault("initial_lr", 0.01)
    return simulate(text, history, strict=True, **kwargs)


def _model(lr: Any = 0.01, steps_per_execution: int = 1) -> Any:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(shape=(1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), loss="mse", steps_per_execution=steps_per_execution)
    return model


class _Epochs(keras.callbacks.Callback):  # type: ignore[misc]
    """Notes each epoch end it sees and the learning rate at each epoch begin."""

    def __init__(self) -> None:
        super().__init__()
        self.ended: list[int] = []
        self.lrs: dict[int, float] = {}

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.lrs[epoch] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.ended.append(epoch)


# --------------------------------------------------------------------------- validation_freq

VALIDATE_EVERY_2 = [
    {"loss": 1.0},
    {"loss": 0.9, "val_loss": 1.0},
    {"loss": 0.8},
    {"loss": 0.7, "val_loss": 1.1},
    {"loss": 0.7},
    {"loss": 0.7, "val_loss": 1.2},
    {"loss": 0.7},
    {"loss": 0.7, "val_loss": 0.5},
]


def test_validation_freq_real_keras_logs_and_history(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reported bug: validation_freq=2 with a val_loss policy trains (no PolicyError), as
    Keras's own callbacks do, and ``simulate`` takes the ``History.history`` Keras recorded."""
    monkeypatch.chdir(tmp_path)
    text = 'stop when val_loss not improving for 2; save best on val_loss min to "b{epoch}.keras"'
    seen = _Epochs()
    model = _model()
    compiled = compile_policy(text)
    with pytest.warns(UserWarning, match="Can save best model only with val_loss available"):
        history = model.fit(
            X, Y, validation_data=(X, Y), validation_freq=2, epochs=8, verbose=0,
            callbacks=[*compiled, seen],
        )
    assert len(history.history["val_loss"]) == len(history.history["loss"]) // 2
    predicted = simulate(text, history.history, validation_freq=2, strict=True)
    assert predicted.epochs_run == len(history.epoch)


def test_validation_freq_compiled_equals_keras_equals_simulate(tmp_path: pathlib.Path) -> None:
    text = 'stop when val_loss not improving for 2; save best on val_loss min to "b{epoch}.keras"'
    hand = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=2, mode="min"),
        keras.callbacks.ModelCheckpoint("b{epoch}.keras", monitor="val_loss", mode="min", save_best_only=True),
    ]
    with pytest.warns(UserWarning):
        ours = run_in_keras(text, VALIDATE_EVERY_2, validation_freq=2, workdir=tmp_path / "ours")
        theirs = run_callbacks(hand, VALIDATE_EVERY_2, validation_freq=2, workdir=tmp_path / "keras").outcome
    predicted = _sim(text, VALIDATE_EVERY_2, validation_freq=2)
    assert ours == predicted
    assert (ours.epochs_run, ours.saves) == (theirs.epochs_run, theirs.saves)
    # Keras's ModelCheckpoint saves anyway on the epochs without val_loss (it warns): so do we.
    assert [e for e, _ in ours.saves] == [0, 1, 2, 4]
    assert ours.stop is not None and ours.stop.epoch == 5


def test_our_rules_skip_epochs_without_their_metric(tmp_path: pathlib.Path) -> None:
    """Our plateau, threshold and top-k rules treat a non-validation epoch as Keras's monitors do."""
    text = 'stop when val_loss not improving by 1% for 2 or val_loss < 0.6; save top 1 on val_loss to "t{epoch}.keras"'
    ours = run_in_keras(text, VALIDATE_EVERY_2, validation_freq=2, workdir=tmp_path)
    assert ours == _sim(text, VALIDATE_EVERY_2, validation_freq=2)
    assert ours.stop is not None and ours.stop.epoch == 5
    assert ours.files == ("t2.keras",)


def test_strict_judges_val_names_at_the_first_validation_epoch(tmp_path: pathlib.Path) -> None:
    seen = _Epochs()
    with pytest.raises(PolicyError, match="'val_los' is not in the validation logs") as info:
        _model().fit(
            X, Y, validation_data=(X, Y), validation_freq=3, epochs=6, verbose=0,
            callbacks=[*compile_policy("stop when val_los not decreasing for 2"), seen],
        )
    assert info.value.suggestion == "did you mean 'val_loss'?"
    assert seen.ended == [0, 1]  # raised at the end of epoch 2, the first that validated


@pytest.mark.parametrize(
    ("kwargs", "ended"),
    [
        ({}, [0, 1]),  # no validation data: known at the end of the last epoch
        ({"validation_data": (X, Y), "validation_freq": 5}, [0, 1]),  # validates only after epoch 5
    ],
)
def test_strict_says_fit_has_no_validation_data(kwargs: dict[str, Any], ended: list[int]) -> None:
    seen = _Epochs()
    with pytest.raises(PolicyError, match="fit has no validation data"):
        _model().fit(X, Y, epochs=3, verbose=0, callbacks=[*compile_policy("stop when val_loss not improving for 3"), seen], **kwargs)
    assert seen.ended == ended  # the check runs first in the list, before the last epoch's other hooks


def test_no_validation_data_found_at_train_end_when_stopped_early() -> None:
    with pytest.raises(PolicyError, match="fit has no validation data"):
        _model().fit(X, Y, epochs=5, verbose=0, callbacks=compile_policy("stop after 2 epochs; stop when val_loss > 9"))
    assert simulate_raises("stop after 2 epochs; stop when val_loss > 9", [{"loss": 1.0}] * 5)


def simulate_raises(text: str, history: Any, **kwargs: Any) -> bool:
    from policy.reference import KerasWouldRaise

    try:
        simulate(text, history, strict=True, **kwargs)
    except KerasWouldRaise:
        return True
    return False


def test_unknown_path_placeholder_is_caught_before_anything_is_written(tmp_path: pathlib.Path) -> None:
    text = 'save every epoch to "ck/{nonsense}.keras"; save best on loss to "ck/b{epoch}.keras"'
    with pytest.raises(PolicyError, match=r"uses \{nonsense\}, which is neither \{epoch\} nor a metric"):
        run_in_keras(text, [{"loss": 1.0}, {"loss": 0.5}], workdir=tmp_path)
    assert not (tmp_path / "ck").exists()
    assert simulate_raises(text, [{"loss": 1.0}, {"loss": 0.5}])


def test_val_placeholder_on_a_non_validation_epoch_is_a_policy_error(tmp_path: pathlib.Path) -> None:
    """Keras formats checkpoint paths at every epoch end: with validation_freq=2, {val_loss} in a
    path is a KeyError at epoch 0 in Keras itself. The strict check says why, first."""
    text = 'save best on val_loss to "b-{val_loss:.2f}.keras"'
    with pytest.raises(PolicyError, match="first epoch logged no validation metrics"):
        run_in_keras(text, VALIDATE_EVERY_2, validation_freq=2, workdir=tmp_path)
    assert simulate_raises(text, VALIDATE_EVERY_2, validation_freq=2)


def test_simulate_takes_history_as_keras_records_it() -> None:
    recorded = {"loss": [1.0, 0.9, 0.8, 0.7], "val_loss": [1.0, 1.1]}  # validation_freq=2
    rows = [{"loss": 1.0}, {"loss": 0.9, "val_loss": 1.0}, {"loss": 0.8}, {"loss": 0.7, "val_loss": 1.1}]
    text = "stop when val_loss not improving for 1"
    assert simulate(text, recorded, validation_freq=2) == simulate(text, rows, validation_freq=2)
    assert simulate(text, recorded, validation_freq=2).stop.epoch == 3  # type: ignore[union-attr]
    with pytest.raises(PolicyError, match="different lengths"):
        simulate(text, recorded)  # validation_freq=1: a short val_loss is an error
    with pytest.raises(PolicyError, match="fit does not validate after that epoch"):
        simulate(text, [{"loss": 1.0, "val_loss": 1.0}, {"loss": 1.0}], validation_freq=2)
    # initial_epoch shifts which epochs validate: from epoch 3, epochs 3 and 5 validate.
    late = simulate(text, {"loss": [1, 1, 1, 1], "val_loss": [1.0, 1.0]}, validation_freq=2, initial_epoch=3)
    assert late.stop is not None and late.stop.epoch == 5


# --------------------------------------------------------------------------- steps_per_execution

multi_step = pytest.mark.skipif(
    keras.backend.backend() == "torch", reason="torch refuses steps_per_execution > 1 (ValueError in fit)"
)


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="torch only")
def test_torch_refuses_steps_per_execution_and_the_reference_says_so() -> None:
    with pytest.raises(ValueError, match="steps_per_execution"):
        _model(steps_per_execution=2).fit(X, Y, epochs=1, verbose=0)
    assert simulate_raises("stop after 2 steps", [{"loss": 1.0}], steps_per_epoch=2, steps_per_execution=2)



@multi_step
def test_step_budget_counts_batches_not_calls() -> None:
    """The reported bug: steps_per_execution=4 and `stop after 10 steps` ran 40 updates."""
    model = _model(steps_per_execution=4)
    model.fit(X, Y, batch_size=1, epochs=5, verbose=0, callbacks=compile_policy("stop after 10 steps"))
    # 8 batches an epoch, seen after batches 4 and 8: the first seen at or after 10 is batch 12.
    assert int(model.optimizer.iterations) == 12


@multi_step
@pytest.mark.parametrize(("steps", "per_call"), [(5, 2), (3, 2), (4, 4), (7, 3)])
def test_steps_per_execution_compiled_equals_keras_equals_simulate(tmp_path: pathlib.Path, steps: int, per_call: int) -> None:
    text = 'save every 3 steps to "s/e{epoch}-b{batch}.keras"; stop after 9 steps'
    history = [{"loss": 1.0}] * 4
    hand = [keras.callbacks.ModelCheckpoint("s/e{epoch}-b{batch}.keras", save_freq=3)]
    options: dict[str, Any] = {"steps_per_epoch": steps, "steps_per_execution": per_call}
    ours = run_in_keras(text, history, workdir=tmp_path / "ours", **options)
    assert ours == _sim(text, history, **options)
    theirs = run_callbacks(hand, history, workdir=tmp_path / "keras", **options).outcome
    stopped = [s for s in theirs.saves if s[0] < ours.epochs_run - 1 or s in ours.saves]
    assert ours.saves == tuple(stopped)


@multi_step
def test_time_budget_and_terminate_on_nan_act_at_the_first_seen_batch(tmp_path: pathlib.Path) -> None:
    text = "stop when loss is not finite; stop after 2s"
    history = [{"loss": 1.0}, {"loss": 1.0}]
    options: dict[str, Any] = {"steps_per_epoch": 5, "steps_per_execution": 2, "step_seconds": 0.25}
    ours = run_in_keras(text, history, workdir=tmp_path, batch_losses=((1.0,) * 5,) * 2, **options)
    assert ours == _sim(text, history, batch_losses=((1.0,) * 5,) * 2, **options)
    assert ours.stop is not None and ours.stop.epoch == 1  # 2 s after batch 7; seen after batch 8
    losses = ((1.0, float("nan"), float("nan"), float("nan"), float("nan")), (1.0,) * 5)
    nan = run_in_keras(text, history, workdir=tmp_path / "n", batch_losses=losses, **options)
    assert nan == _sim(text, history, batch_losses=losses, **options)
    assert nan.stop is not None and nan.stop.rule == "stop when loss is not finite" and nan.stop.epoch == 0


# --------------------------------------------------------------------------- initial_epoch


def test_initial_epoch_uses_absolute_epochs(tmp_path: pathlib.Path) -> None:
    text = (
        'stop after 6 epochs; decay lr by 0.5 every 2 epochs; save every 2 epochs to "e{epoch}.keras"; '
        "stop when val_loss not improving for 5, ignore first 4 epochs"
    )
    history = [{"val_loss": 1.0}] * 5
    ours = run_in_keras(text, history, initial_epoch=3, initial_lr=0.08, workdir=tmp_path)
    assert ours == _sim(text, history, initial_epoch=3, initial_lr=0.08)
    assert ours.epochs_run == 3 and ours.stop is not None and ours.stop.epoch == 5
    # 0.08 * 0.5 ** floor(e / 2) for e = 3, 4, 5, stored in float32
    assert ours.learning_rates == tuple(round_f32(v) for v in (0.04, 0.02, 0.02))
    assert [e for e, _ in ours.saves] == [3, 5]
    hand = [keras.callbacks.EarlyStopping(monitor="val_loss", patience=1, start_from_epoch=4)]
    keras_run = run_callbacks(hand, [{"val_loss": 1.0}] * 5, initial_epoch=3, workdir=tmp_path / "k").outcome
    assert keras_run.epochs_run == simulate(
        "stop when val_loss not improving for 1, ignore first 4 epochs", [{"val_loss": 1.0}] * 5, initial_epoch=3
    ).epochs_run == 3


# --------------------------------------------------------------------------- a reused list

REUSED = (
    'save best on val_loss min to "b{epoch}.keras"; save every 2 steps to "s{epoch}-{batch}.keras"; '
    'save top 1 on val_loss to "t{epoch}.keras"; stop when val_loss not improving for 2 or val_loss < 0.1; '
    "multiply lr by 0.5 when val_loss not improving for 1; stop after 7 steps"
)


def test_a_reused_list_behaves_as_a_fresh_one(tmp_path: pathlib.Path) -> None:
    first = [{"val_loss": v} for v in (0.2, 0.3, 0.4)]
    second = [{"val_loss": v} for v in (0.5, 0.6, 0.4, 0.7)]
    options: dict[str, Any] = {"steps_per_epoch": 3, "initial_lr": 0.01}
    reused = compile_policy(REUSED)
    run_callbacks(reused, first, workdir=tmp_path / "a", **options)
    again = run_callbacks(reused, second, workdir=tmp_path / "b", **options).outcome
    fresh = run_callbacks(compile_policy(REUSED), second, workdir=tmp_path / "c", **options).outcome
    assert again == fresh == _sim(REUSED, second, **options)
    assert (0, "b1.keras") in again.saves  # Keras's own best would still be 0.2 without the reset


# --------------------------------------------------------------------------- LearningRateSchedule optimizers


@pytest.mark.parametrize(
    "text", ["decay lr by 0.5 every 2 epochs", "stop after 3 epochs\nmultiply lr by 0.5 when loss not improving for 1"]
)
def test_lr_rule_with_a_schedule_object_fails_at_train_begin(text: str) -> None:
    model = _model(lr=keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.9))
    with pytest.raises(PolicyError, match="LearningRateSchedule") as info:
        model.fit(X, Y, epochs=2, verbose=0, callbacks=compile_policy(text))
    assert text.splitlines()[-1] in str(info.value)
    assert "build the optimizer with a number" in (info.value.suggestion or "")
    assert int(model.optimizer.iterations) == 0  # before the first batch


# --------------------------------------------------------------------------- BackupAndRestore resume


class _Interrupt(keras.callbacks.Callback):  # type: ignore[misc]
    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if epoch == 2:
            raise RuntimeError("interrupted after epoch 2")


@pytest.mark.parametrize("new_model", [False, True])
def test_resumed_schedule_continues_from_the_rate_as_built(tmp_path: pathlib.Path, new_model: bool) -> None:
    """Interrupted after epoch 2 (backed up), resumed with the same backup folder: the schedule
    starts from the optimizer's rate as built, not from the rate BackupAndRestore restores."""
    text = f'backup to "{(tmp_path / "bk").as_posix()}"; decay lr by 0.5 every 1 epochs'
    model = _model(lr=0.08)
    first = _Epochs()
    with pytest.raises(RuntimeError, match="interrupted"):
        model.fit(X, Y, epochs=6, verbose=0, callbacks=[*compile_policy(text), first, _Interrupt()])
    if new_model:  # a new process: the model and optimizer are built again, as configured
        model = _model(lr=0.08)
    second = _Epochs()
    model.fit(X, Y, epochs=6, verbose=0, callbacks=[*compile_policy(text), second])
    expected = simulate("decay lr by 0.5 every 1 epochs", [{}] * 6, initial_lr=0.08).learning_rates
    assert first.lrs == {e: expected[e] for e in range(3)}
    assert second.lrs == {e: expected[e] for e in range(3, 6)}


def test_step_path_placeholder_is_caught_at_the_first_batch(tmp_path: pathlib.Path) -> None:
    """A step checkpoint path is formatted from the batch logs, which never hold val_ metrics:
    the strict check says so at the first batch end, before any step checkpoint is written."""
    text = 'save every 1 steps to "s/{val_loss:.2f}-{batch}.keras"'
    seen = _Epochs()
    with pytest.raises(PolicyError, match=r"uses \{val_loss\}, which is neither") as info:
        model = _model()
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(tmp_path)
            model.fit(X, Y, validation_data=(X, Y), epochs=2, verbose=0, callbacks=[*compile_policy(text), seen])
    assert "batch logs" in str(info.value)
    assert not (tmp_path / "s").exists() and seen.ended == []
    assert type(compile_policy(text)[0]).__name__ == "MetricCheckWithBatches"
    assert type(compile_policy('save every 2 steps to "s/{batch}.keras"')[0]).__name__ == "MetricCheck"
    assert simulate_raises(text, [{"loss": 1.0, "val_loss": 1.0}], steps_per_epoch=2)
    ok = 'save every 1 steps to "s/{loss:.2f}-{batch}.keras"'
    assert not simulate_raises(ok, [{"loss": 1.0}], batch_losses=[[2.0, 1.0]])
    assert simulate_raises(ok, [{"loss": 1.0}], batch_losses=[[None, 1.0]])
    ran = run_in_keras(ok, [{"loss": 1.0}], batch_losses=((2.0, 1.0),), steps_per_epoch=2, workdir=tmp_path / "ok")
    assert ran == _sim(ok, [{"loss": 1.0}], batch_losses=((2.0, 1.0),), steps_per_epoch=2)
    assert [p for _, p in ran.saves] == ["s/2.00-1.keras", "s/1.00-2.keras"]
