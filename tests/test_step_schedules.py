"""Schedules counted in optimizer steps: the rate of every step in real ``fit`` == ``simulate``.

The probe model makes each step's rate observable exactly: one-hot inputs (batch size 1, no
shuffle), a kernel without bias, the loss is the output, and plain SGD, so step j of an epoch
moves kernel row j by exactly ``-lr``. The kernel is zeroed at each epoch begin and read at each
epoch end (epoch hooks only, so async dispatch and ``steps_per_execution`` stay as they are).
"""

from __future__ import annotations

import pathlib
from typing import Any

import keras
import numpy as np
import pytest

import policy
from policy import compile_policy, simulate
from policy.errors import PolicyError

STEPS, EPOCHS = 5, 3
MULTI_STEP = keras.backend.backend() != "torch"  # torch: steps_per_execution must be 1

POLICIES = [
    "warm up lr to 0.4 over 4 steps, then cosine to 0.001 over 50% of training",
    "warm up lr to 1 over 3 steps, then inverse sqrt",
    "cosine lr to 0 over 12 steps, restart every 5 steps",
    "linear lr to 0.01 over 1 epoch, then multiply lr by 0.5 at steps 2, 4",
    "warm up lr to 0.3 over 10% of training, then hold for 1 epoch, then linear to 0 over 40% of training",
    "decay lr by 0.5 every 4 steps",
    "hold lr for 2 steps, then decay by 0.9 every step",
]


def _probe(lr0: float, spe: int) -> Any:
    model = keras.Sequential([keras.Input((STEPS,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")])
    model.compile(
        optimizer=keras.optimizers.SGD(lr0), loss=lambda yt, yp: keras.ops.mean(yp), steps_per_execution=spe
    )
    return model


def fit_rates(text: str, lr0: float = 0.1, spe: int = 1, epochs: int = EPOCHS) -> tuple[list[float], list[float], Any]:
    """Per-step rates and per-epoch logged ``learning_rate`` of a real fit."""
    model = _probe(lr0, spe)
    rates: list[float] = []
    logged: list[float] = []

    class Read(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.model.layers[0].kernel.assign(np.zeros((STEPS, 1), "float32"))

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            kernel = keras.ops.convert_to_numpy(self.model.layers[0].kernel)[:, 0]
            rates.extend(float(-v) for v in kernel)
            logged.append(logs["learning_rate"])

    x = np.eye(STEPS, dtype="float32")
    model.fit(x, x[:, :1], batch_size=1, epochs=epochs, shuffle=False, verbose=0, callbacks=[*compile_policy(text), Read()])
    return rates, logged, model


@pytest.mark.parametrize("text", POLICIES)
@pytest.mark.parametrize("spe", [1, 2] if MULTI_STEP else [1])
def test_every_step_rate_matches_the_reference(text: str, spe: int) -> None:
    got, logged, _ = fit_rates(text, spe=spe)
    want = simulate(text, {"loss": [1.0] * EPOCHS}, initial_lr=0.1, steps_per_epoch=STEPS)
    assert got == list(want.step_learning_rates)
    assert len(got) == STEPS * EPOCHS
    # logs["learning_rate"] at epoch end: the rate of the next step, as the reference logs it.
    ref = [want.step_learning_rates[(e + 1) * STEPS] if (e + 1) * STEPS < len(got) else None for e in range(EPOCHS)]
    assert logged[:-1] == ref[:-1]


def test_epoch_counted_chain_keeps_its_per_epoch_meaning() -> None:
    text = "warm up lr to 0.4 over 2 epochs, then linear to 0 over 1 epoch"
    got, _, _ = fit_rates(text)
    want = simulate(text, {"loss": [1.0] * EPOCHS}, initial_lr=0.1, steps_per_epoch=STEPS)
    assert got == list(want.step_learning_rates)
    assert got[:STEPS] == [float(np.float32(0.2))] * STEPS  # one rate per epoch


def test_no_batch_hook() -> None:
    from keras.src import utils

    callbacks = compile_policy("warm up lr to 1e-3 over 500 steps, then cosine to 1e-5 over 20000 steps")
    for cb in callbacks:
        for hook in ("on_batch_begin", "on_batch_end", "on_train_batch_begin", "on_train_batch_end"):
            assert utils.is_default(getattr(cb, hook)), (cb, hook)


def test_without_steps_per_epoch_is_a_policy_error() -> None:
    model = _probe(0.1, 1)

    def batches() -> Any:  # a generator without a length: fit does not know params["steps"]
        for _ in range(STEPS):
            yield np.eye(STEPS, dtype="float32")[:1], np.zeros((1, 1), "float32")

    with pytest.raises(PolicyError, match="steps per epoch"):
        model.fit(batches(), epochs=1, verbose=0, callbacks=compile_policy("warm up lr to 0.1 over 10 steps"))


def test_optimizer_with_its_own_schedule_is_refused() -> None:
    model = _probe(0.1, 1)
    model.optimizer = keras.optimizers.SGD(keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9))
    model.compile(optimizer=model.optimizer, loss=lambda yt, yp: keras.ops.mean(yp))
    x = np.eye(STEPS, dtype="float32")
    with pytest.raises(PolicyError, match="LearningRateSchedule"):
        model.fit(x, x[:, :1], batch_size=1, epochs=1, verbose=0, callbacks=compile_policy("warm up lr to 0.1 over 3 steps"))


def test_lr_schedule_on_its_own_saves_with_the_model(tmp_path: pathlib.Path) -> None:
    text = "warm up lr to 0.001 over 500 steps, then cosine to 1e-05 over 20000 steps"
    schedule = policy.lr_schedule(text)
    assert str(schedule) == text
    assert isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule)
    model = _probe(0.1, 1)
    model.compile(optimizer=keras.optimizers.SGD(schedule), loss="mse")
    x = np.eye(STEPS, dtype="float32")
    model.fit(x, x[:, :1], batch_size=1, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    again = loaded.optimizer._learning_rate
    assert str(again) == text
    steps = [0, 1, 499, 500, 10000, 20499, 20500, 30000]
    assert [float(again(t)) for t in steps] == [float(schedule(t)) for t in steps]
    assert float(schedule(0)) == float(np.float32(0.001 / 500))


def test_smooth_decay_past_the_table_is_computed_by_the_backend() -> None:
    # Without total_steps the table ends 65,536 steps after the finite part; the open-ended
    # smooth decay goes on in the backend's float32, F ** (t / N) without a floor.
    from policy.callbacks.step_schedule import TAIL_TABLE

    schedule = policy.lr_schedule("decay lr by 0.96 every 1000 steps, smoothly", initial_lr=0.1)
    for step in (TAIL_TABLE - 1, TAIL_TABLE, TAIL_TABLE + 1, TAIL_TABLE + 777):
        want = 0.1 * 0.96 ** (step / 1000)
        assert abs(float(keras.ops.convert_to_numpy(schedule(step))) - want) <= 2e-6 * want
    staircase = 0.1 * 0.96 ** ((TAIL_TABLE + 777) // 1000)
    assert abs(float(keras.ops.convert_to_numpy(schedule(TAIL_TABLE + 777))) - staircase) > 1e-3 * staircase


def test_lr_schedule_needs_what_it_counts() -> None:
    with pytest.raises(PolicyError, match="total_steps"):
        policy.lr_schedule("warm up lr to 0.1 over 10% of training")
    with pytest.raises(PolicyError, match="initial_lr"):
        policy.lr_schedule("cosine lr to 0 over 100 steps")
    assert float(policy.lr_schedule("cosine lr to 0 over 100 steps", initial_lr=0.5)(0)) == 0.5


def test_describe_gives_the_step_schedule_back() -> None:
    text = "warm up lr to 0.001 over 500 steps, then cosine to 1e-05 over 20000 steps"
    assert policy.describe(compile_policy(text)) == text


def test_simulate_plot_draws_the_rate_per_step(tmp_path: pathlib.Path) -> None:
    pytest.importorskip("matplotlib")
    from policy.parser import parse
    from policy.plot import plot_outcome

    text = "warm up lr to 0.01 over 5 steps, then cosine to 0.0001 over 80% of training"
    history = [{"val_loss": v} for v in (1.0, 0.9, 0.8)]
    outcome = simulate(text, history, initial_lr=0.01, steps_per_epoch=10)
    assert len(outcome.step_learning_rates) == 30
    plot_outcome(parse(text), history, outcome, tmp_path / "run.png")
    assert (tmp_path / "run.png").stat().st_size > 0


@pytest.mark.parametrize("spe", [1, 2] if MULTI_STEP else [1])
def test_a_finite_step_schedule_hands_the_rate_over(spe: int) -> None:
    # The probe's loss is 0 at every epoch, so from epoch 1 on a cut is due at every epoch end:
    # at 10 steps the schedule (12 steps) still drives the rate and the cut is dropped; the cuts
    # at 15 and 20 steps are the rates of the steps after them.
    # (With `restore best` the probe's weights are rolled back: the differential pin
    # step-handover-at-end covers it, reading the rates before the rollback.)
    text = "linear lr to 0.4 over 12 steps; multiply lr by 0.5 when loss not improving for 1"
    got, _, model = fit_rates(text, spe=spe, epochs=5)
    want = simulate(text, {"loss": [0.0] * 5}, initial_lr=0.1, steps_per_epoch=STEPS)
    assert got == list(want.step_learning_rates)
    assert got[12:15] == [float(np.float32(0.4))] * 3 and got[15:20] == [float(np.float32(0.2))] * 5
    assert got[20:] == [float(np.float32(0.1))] * 5
    assert type(compile_policy(text)[-1]).__name__ == "HandoverReduceLROnPlateau"
    assert type(compile_policy(f"{text}, restore best")[-1]).__name__ == "RestoringReduceLROnPlateau"
    # After fit the optimizer still reads the handed-over rate; a later fit of it continues from there.
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == float(np.float32(0.05))


def test_multiply_lr_when_stays_keras_own_without_a_step_schedule() -> None:
    [cb] = [c for c in compile_policy("multiply lr by 0.5 when loss not improving for 1") if "Plateau" in type(c).__name__]
    assert type(cb) is keras.callbacks.ReduceLROnPlateau


def test_an_endless_step_schedule_with_multiply_lr_when_is_refused() -> None:
    with pytest.raises(PolicyError, match="'decay lr' never ends") as err:
        compile_policy("decay lr by 0.5 every 4 steps; multiply lr by 0.5 when loss not improving for 1")
    assert err.value.column == 32
