"""Real-Keras spot checks of the facts the reference relies on (scripted logs; one tiny ``fit``).

Each test drives genuine Keras 3.15.1 callbacks through Keras's own ``CallbackList`` (so logs are
pythonified and one dict is shared in callback order, as in ``fit``) with a loop shaped like the
trainers', and compares what they did with :func:`policy.reference.simulate` on the equivalent
policy, for the backend Keras runs on (``KERAS_BACKEND``): run it under each backend to check
that backend's row of :data:`policy.reference.FACTS` and the facts all backends share. The
differential property tests run real ``fit``; these pin single facts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

keras = pytest.importorskip("keras")
ops = keras.ops

from policy.reference import FACTS, KerasWouldRaise, round_f32, simulate  # noqa: E402
from policy.reference.backends import backend_name  # noqa: E402

BACKEND = backend_name(keras.backend.backend())
FACT = FACTS[BACKEND]

NAN = math.nan


@dataclass
class Trace:
    """What the Keras callbacks did over one scripted run."""

    epochs_run: int = 0
    stop_epoch: int | None = None
    learning_rates: list[float] = field(default_factory=list)
    saves: list[tuple[int, str]] = field(default_factory=list)
    restored_epoch: int | None = None


def drive(
    callbacks: list[Any],
    history: Mapping[str, Sequence[float | None]],
    *,
    lr: float = 0.1,
    batch_losses: Sequence[Sequence[float]] | None = None,
) -> Trace:
    """The TF trainer's callback sequence, with the model's save/get/set_weights recorded."""
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), loss="mse")
    trace = Trace()
    epoch_now = [0]
    model.save_weights = lambda path, overwrite=True: trace.saves.append((epoch_now[0], path))
    model.save = lambda path, overwrite=True: trace.saves.append((epoch_now[0], path))
    model.get_weights = lambda: epoch_now[0]
    model.set_weights = lambda w: setattr(trace, "restored_epoch", w)
    cbs = keras.callbacks.CallbackList(callbacks, model=model, add_history=False, add_progbar=False)
    model.stop_training = False
    cbs.on_train_begin()
    epochs = len(next(iter(history.values())))
    for epoch in range(epochs):
        epoch_now[0] = epoch
        cbs.on_epoch_begin(epoch)
        trace.learning_rates.append(float(ops.convert_to_numpy(model.optimizer.learning_rate)))
        for batch, loss in enumerate(batch_losses[epoch] if batch_losses else [1.0]):
            cbs.on_train_batch_end(batch, {"loss": loss})
            if model.stop_training:
                break
        logs = {k: v[epoch] for k, v in history.items() if v[epoch] is not None}
        cbs.on_epoch_end(epoch, logs)
        trace.epochs_run = epoch + 1
        if model.stop_training:
            trace.stop_epoch = epoch
            break
    cbs.on_train_end()
    return trace


def same(trace: Trace, policy: str, history: Mapping[str, Sequence[float | None]], **kwargs: Any) -> None:
    out = simulate(policy, history, **kwargs)
    assert out.epochs_run == trace.epochs_run
    assert (out.stop.epoch if out.stop else None) == trace.stop_epoch
    assert list(out.saves) == trace.saves
    assert out.restored_epoch == trace.restored_epoch
    if out.learning_rates:
        assert list(out.learning_rates) == trace.learning_rates


def es(**kwargs: Any) -> Any:
    return keras.callbacks.EarlyStopping(monitor="val_loss", mode="min", **kwargs)


# --------------------------------------------------------------------------- float32 comparisons


def test_ops_less_rounds_python_floats_after_float64_arithmetic() -> None:
    assert not bool(ops.less(1.0 - 1e-9, 1.0))
    # float64 sum then rounding says True; rounding first then float32 addition says False.
    x, d, b = 1.2739233746429086, 0.026978671376387032, 1.3009021282196045
    assert bool(ops.less(x + d, b))
    assert not (float(keras.ops.add(round_f32(x), round_f32(d))) < b)


def test_comparison_kernels_flush_subnormals_as_the_backend_row_says() -> None:
    kept = not FACT.flushes_subnormals
    assert bool(ops.less(1e-40, 2e-40)) == kept
    assert bool(ops.greater(2e-40, 1e-40)) == kept
    assert bool(ops.less(0.0, 1e-40)) == kept
    assert bool(ops.less(-1e-40, 0.0)) == kept
    # Normal float32 values are ordered on every backend.
    assert bool(ops.less(2.0**-126, 2.0**-125))


def test_over_range_value_raises_or_rounds_to_inf_as_the_backend_row_says() -> None:
    if FACT.overflow_raises:
        with pytest.raises(ValueError, match="out of range"):
            ops.less(3.5e38, 1.0)
    else:  # rounded to +inf: above every finite value, equal to inf
        assert not bool(ops.less(3.5e38, 1.0)) and bool(ops.greater(3.5e38, 1.0))
        assert not bool(ops.less(3.5e38, math.inf)) and not bool(ops.greater(math.inf, 3.5e38))
        assert bool(ops.less(-3.5e38, -1e38))


def test_nan_and_infinities_compare_alike_on_every_backend() -> None:
    assert not bool(ops.less(NAN, 1.0)) and not bool(ops.greater(NAN, 1.0)) and not bool(ops.less(1.0, NAN))
    assert bool(ops.less(-math.inf, 1.0)) and bool(ops.greater(math.inf, 1.0))
    assert not bool(ops.less(math.inf, math.inf))


def test_logs_reach_callbacks_as_python_floats_integers_included() -> None:
    seen: list[dict[str, Any]] = []

    class Spy(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            seen.append(dict(logs or {}))

    cbs = keras.callbacks.CallbackList([Spy()], add_history=False, add_progbar=False)
    big = 2**40  # beyond int32: a backend tensor of it would overflow, the Python float does not
    cbs.on_epoch_end(0, {"count": 3, "big": big, "tensor": ops.convert_to_tensor(7), "half": ops.convert_to_tensor(0.5)})
    assert seen == [{"count": 3.0, "big": float(big), "tensor": 7.0, "half": 0.5}]
    assert all(type(v) is float for v in seen[0].values())


def test_first_epoch_end_logs_of_a_real_fit() -> None:
    """The logs every callback sees at the end of the first epoch: the same keys and types on
    every backend (what the strict check and the reference read)."""
    import numpy as np

    first: list[dict[str, Any]] = []

    class First(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            if epoch == 0:
                first.append(dict(logs or {}))

    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse", metrics=["mae"])
    x = np.ones((4, 1), dtype="float32")
    model.fit(x, x, batch_size=2, epochs=1, validation_data=(x, x), verbose=0, callbacks=[First()])
    assert sorted(first[0]) == ["loss", "mae", "val_loss", "val_mae"]
    assert all(type(v) is float for v in first[0].values())


def test_learning_rate_is_a_float32_variable_on_every_backend() -> None:
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse")

    def stored(value: float) -> float:
        model.optimizer.learning_rate = value
        return float(ops.convert_to_numpy(model.optimizer.learning_rate))

    assert "float32" in str(model.optimizer.learning_rate.dtype)
    assert stored(0.1) == round_f32(0.1)
    assert stored(1e-40) == round_f32(1e-40) != 0.0  # a subnormal lr is kept (no flush on assignment)
    assert stored(3.5e38) == math.inf  # an over-range lr is stored as inf, no error


@pytest.mark.parametrize(
    ("values", "delta"),
    [
        ([1.3009021282196045, 1.2739233746429086], 0.026978671376387032),
        ([1.2862212657928467, 1.2132715515343597], 0.07294965609839985),
        ([1.0, 0.95, 0.9], 0.05),
        ([1.0, 1.0 - 1e-9, 1.0], 0.0),
        ([2e-40, 1e-40, 0.0], 0.0),
        ([NAN, 0.5, 0.4, 0.3], 0.0),
    ],
)
def test_early_stopping_improvement_test(values: list[float], delta: float) -> None:
    history = {"val_loss": values}
    trace = drive([es(min_delta=delta, patience=1)], history)
    by = f" by {delta!r}" if delta else ""
    same(trace, f"stop when val_loss not improving{by} for 1", history)


def test_early_stopping_overflow_and_the_reference_agree() -> None:
    history = {"val_loss": [1.0, 3.5e38, 0.5]}
    text = "stop when val_loss not improving for 1"
    if FACT.overflow_raises:
        with pytest.raises(ValueError):
            drive([es(patience=1)], history)
        with pytest.raises(KerasWouldRaise):
            simulate(text, history)
    else:
        trace = drive([es(patience=1)], history)
        assert trace.stop_epoch == 1  # inf is no improvement on 1.0
        same(trace, text, history)


@pytest.mark.parametrize("values", [[1e-38, 1e-40, 2e-40], [2e-40, 1e-40, 0.0, -1e-40], [0.0, 1e-40, 0.5]])
def test_subnormal_histories_in_early_stopping_and_checkpoints(values: list[float]) -> None:
    """Subnormal metric values through EarlyStopping and a save-best checkpoint together."""
    history = {"val_loss": values}
    ckpt = keras.callbacks.ModelCheckpoint("b{epoch}.keras", monitor="val_loss", mode="min", save_best_only=True)
    trace = drive([es(patience=2), ckpt], history)
    same(trace, 'stop when val_loss not improving for 2; save best on val_loss min to "b{epoch}.keras"', history)


# --------------------------------------------------------------------------- EarlyStopping


def test_patience_zero_behaves_like_one() -> None:
    history = {"val_loss": [1.0, 1.0, 1.0]}
    assert drive([es(patience=0)], history).stop_epoch == drive([es(patience=1)], history).stop_epoch == 1


@pytest.mark.parametrize("values", [[1.0, 0.9, 0.95], [1.0, 0.4, 0.45, 0.46], [1.0, 0.9, 0.8, 0.7]])
def test_baseline(values: list[float]) -> None:
    history = {"val_loss": values}
    same(drive([es(patience=2, baseline=0.5)], history), "stop when val_loss not improving for 2, baseline 0.5",
         history)


def test_restore_at_train_end_without_stop_and_start_from_epoch() -> None:
    history: dict[str, Sequence[float | None]] = {"val_loss": [0.1, 0.2, 0.9, 0.8, 0.85]}
    trace = drive([es(patience=9, restore_best_weights=True, start_from_epoch=2)], history)
    assert trace.restored_epoch == 3 and trace.stop_epoch is None
    same(trace, "stop when val_loss not improving for 9, restore best, ignore first 2 epochs", history)


def test_missing_metric_changes_nothing() -> None:
    history: dict[str, Sequence[float | None]] = {"val_loss": [1.0, None, 1.1, 1.2], "loss": [1.0] * 4}
    with pytest.warns(UserWarning):
        trace = drive([es(patience=2)], history)
    same(trace, "stop when val_loss not improving for 2", history)


# --------------------------------------------------------------------------- ModelCheckpoint


def test_checkpoint_paths_best_only_and_missing_metric() -> None:
    history: dict[str, Sequence[float | None]] = {"val_loss": [1.0, 0.5, None, 0.7, 0.25], "loss": [1.0] * 5}
    path = "m-{epoch:03d}-{loss:.2f}.weights.h5"
    cb = keras.callbacks.ModelCheckpoint(path, monitor="val_loss", mode="min", save_best_only=True,
                                         save_weights_only=True)
    with pytest.warns(UserWarning):
        trace = drive([cb], history)
    assert trace.saves[0] == (0, "m-001-1.00.weights.h5")
    same(trace, f'save best weights on val_loss min to "{path}"', history)


def test_checkpoint_missing_placeholder_raises_key_error() -> None:
    cb = keras.callbacks.ModelCheckpoint("m-{val_acc}.keras", monitor="val_loss", mode="min", save_best_only=True)
    with pytest.raises(KeyError):
        drive([cb], {"val_loss": [1.0, 2.0]})


def test_integer_save_freq_counts_across_epochs() -> None:
    history = {"loss": [1.0, 1.0, 1.0]}
    losses = [[1.0, 1.0, 1.0]] * 3
    cb = keras.callbacks.ModelCheckpoint("s-{epoch}-{batch:02d}.keras", save_freq=2)
    trace = drive([cb], history, batch_losses=losses)
    assert trace.saves == [(0, "s-1-02.keras"), (1, "s-2-01.keras"), (1, "s-2-03.keras"), (2, "s-3-02.keras")]
    same(trace, 'save every 2 steps to "s-{epoch}-{batch:02d}.keras"', history, batch_losses=losses)


# --------------------------------------------------------------------------- ReduceLROnPlateau


@pytest.mark.parametrize(
    ("cooldown", "min_lr", "initial"),
    [(0, 0.0, 0.1), (1, 0.0, 0.1), (2, 0.0, 1.0), (0, 0.03, 0.1), (0, 0.1, 0.1), (3, 1e-3, 0.3)],
)
def test_reduce_lr_on_plateau(cooldown: int, min_lr: float, initial: float) -> None:
    history = {"val_loss": [1.0, 1.0, 0.9, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 1.0]}
    cb = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", mode="min", factor=0.5, patience=1,
                                           min_delta=0, cooldown=cooldown, min_lr=min_lr)
    trace = drive([cb], history, lr=initial)
    text = "multiply lr by 0.5 when val_loss not improving for 1"
    text += f", cooldown {cooldown}" if cooldown else ""
    text += f", min lr {min_lr!r}" if min_lr else ""
    same(trace, text, history, initial_lr=initial)


def test_reduce_lr_writes_the_lr_before_reducing_and_later_callbacks_see_it() -> None:
    history = {"val_loss": [1.0, 1.0, 1.0]}
    plateau = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", mode="min", factor=0.5, patience=1, min_delta=0)
    ckpt = keras.callbacks.ModelCheckpoint("m-{learning_rate}.keras")
    trace = drive([plateau, ckpt], history, lr=1.0)
    assert trace.saves == [(0, "m-1.0.keras"), (1, "m-1.0.keras"), (2, "m-0.5.keras")]
    same(trace, 'multiply lr by 0.5 when val_loss not improving for 1; save every epoch to "m-{learning_rate}.keras"',
         history, initial_lr=1.0)


# --------------------------------------------------------------------------- TerminateOnNaN


def test_terminate_on_nan_checks_every_batch_and_epoch_end_still_runs() -> None:
    history = {"loss": [1.0, NAN, NAN]}
    losses = [[1.0, 1.0], [1.0, math.inf, math.inf], [NAN]]
    ckpt = keras.callbacks.ModelCheckpoint("e{epoch}.keras")
    trace = drive([keras.callbacks.TerminateOnNaN(), ckpt], history, batch_losses=losses)
    assert trace.stop_epoch == 1 and trace.saves == [(0, "e1.keras"), (1, "e2.keras")]
    same(trace, 'stop when loss is not finite; save every epoch to "e{epoch}.keras"', history, batch_losses=losses)
