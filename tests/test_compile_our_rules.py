"""Our own rules, in real fits, against hand-computed expectations.

Conditions, budgets, every-N-epochs and top-k checkpoints, schedules, the strict metric
check, ``.stop``, and the promise that an epoch-level policy adds no batch hook.
"""

from __future__ import annotations

import math
import pathlib
import pickle

import keras
import numpy as np
import pytest
from keras.src.callbacks.callback_list import CallbackList

from policy import PolicyError, compile_policy
from policy.callbacks import ConditionStopping, LearningRateChain, ScheduledLearningRate, StopAfterTime
from policy.callbacks.numeric import f32
from policy.callbacks.schedules import CosineSegment, DecaySegment, WarmupSegment
from policy.outcome import Stop
from policy.testing import run_in_keras

NAN, INF = float("nan"), float("inf")


def f(x: float) -> float:
    return float(np.float32(x))


# ---------------------------------------------------------------- conditions


@pytest.mark.parametrize(
    ("text", "values", "stop_epoch"),
    [
        ("stop when val_accuracy >= 0.9", [0.5, 0.89999999, 0.9, 0.95], 1),  # 0.89999999 is 0.9 in float32
        ("stop when val_accuracy > 0.9", [0.5, 0.9, 0.91, 0.95], 2),
        ("stop when val_accuracy <= 0.1", [0.5, 0.2, 0.1, 0.0], 2),
        ("stop when val_accuracy < 0.1", [0.5, NAN, 0.1, 0.0], 3),  # NaN never holds
    ],
)
def test_threshold(text: str, values: list[float], stop_epoch: int, tmp_path: pathlib.Path) -> None:
    out = run_in_keras(text, {"val_accuracy": values}, workdir=tmp_path)
    assert out.epochs_run == stop_epoch + 1
    assert out.stop == Stop(text, stop_epoch)


@pytest.mark.parametrize(
    ("text", "values", "epochs_run"),
    [
        ("stop when val_loss is not finite", [1.0, INF, 1.0], 2),
        ("stop when val_loss is not finite", [1.0, -INF, 1.0], 2),
        ("stop when val_loss is nan", [1.0, INF, NAN, 1.0], 3),
        ("stop when loss is nan", [1.0, NAN, 1.0], 2),  # epoch level: not TerminateOnNaN
    ],
)
def test_not_finite_at_epoch_level(text: str, values: list[float], epochs_run: int, tmp_path: pathlib.Path) -> None:
    metric = text.split()[2]
    out = run_in_keras(text, {metric: values}, workdir=tmp_path)
    assert out.epochs_run == epochs_run
    assert out.stop is not None and out.stop.epoch == epochs_run - 1


def test_or_is_like_two_rules_and_keeps_every_plateau_updated(tmp_path: pathlib.Path) -> None:
    # val_loss plateaus from epoch 1 (wait 1, 2, 3 at epochs 2..4); loss improves every epoch
    # but the threshold never holds. Short-circuiting "or" would still stop at epoch 4, so
    # also check "and": loss's plateau must have been updated at every epoch to hold at 5.
    history = {
        "val_loss": [1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5],
        "loss": [1.0, 0.9, 0.8, 0.8, 0.8, 0.8, 0.8],
    }
    either = run_in_keras("stop when val_loss not improving for 3 or loss < 0", history, workdir=tmp_path / "a")
    two = run_in_keras("stop when val_loss not improving for 3; stop when loss < 0", history, workdir=tmp_path / "b")
    assert either.epochs_run == two.epochs_run == 5
    assert either.stop is not None and either.stop.epoch == 4
    both = run_in_keras(
        "stop when val_loss not improving for 3 and loss not improving for 3", history, workdir=tmp_path / "c"
    )
    assert both.epochs_run == 6  # loss: best at epoch 2, wait 3 at epoch 5


def test_parentheses_group(tmp_path: pathlib.Path) -> None:
    history = {"a_loss": [1.0, 2.0, 3.0, 4.0], "b_loss": [1.0, 1.0, 0.5, 0.5], "val_accuracy": [0, 0, 0, 0.95]}
    text = "stop when (a_loss > 2.5 and b_loss > 0.8) or val_accuracy >= 0.9"
    out = run_in_keras(text, history, workdir=tmp_path)
    assert out.epochs_run == 4  # epoch 2: a holds, b does not; epoch 3: val_accuracy holds


def test_relative_plateau(tmp_path: pathlib.Path) -> None:
    # by 1%: 1.0 -> 0.995 is only 0.5% better (no), 0.98 is 2% better than 1.0 (yes, best
    # 0.98), then 0.975 < 0.98 - 0.0098 = 0.9702 is false twice: wait 2 at epoch 4.
    out = run_in_keras(
        "stop when val_loss not improving by 1% for 2",
        {"val_loss": [1.0, 0.995, 0.98, 0.975, 0.975, 0.5]},
        workdir=tmp_path,
    )
    assert out.epochs_run == 5
    assert out.stop == Stop("stop when val_loss not improving by 1% for 2", 4)


def test_plateau_missing_metric_does_not_count(tmp_path: pathlib.Path) -> None:
    out = run_in_keras(
        "stop when val_loss not improving by 1% for 1",
        {"val_loss": [1.0, None, None, 1.0, 0.0]},
        workdir=tmp_path,
        strict=False,
    )
    assert out.epochs_run == 4


def test_restore_best_named_metric_with_combined_condition(tmp_path: pathlib.Path) -> None:
    history = {"val_loss": [1.0, 0.4, 0.6, 0.5, 0.7], "val_accuracy": [0.1, 0.2, 0.3, 0.96, 0.5]}
    out = run_in_keras(
        "stop when val_accuracy >= 0.95 or val_loss not improving by 1% for 5, restore best val_loss",
        history,
        workdir=tmp_path,
    )
    assert (out.epochs_run, out.restored_epoch) == (4, 1)
    # Tracker of its own: val_accuracy is not watched by a plateau; best is epoch 3.
    own = run_in_keras(
        "stop when val_loss not improving by 1% for 9 or val_accuracy < 0, restore best val_accuracy",
        history,
        workdir=tmp_path / "own",
    )
    assert (own.epochs_run, own.restored_epoch) == (5, 3)


def test_restore_best_without_a_stop_still_restores(tmp_path: pathlib.Path) -> None:
    out = run_in_keras(
        "stop when val_loss not improving by 1% for 9 or val_loss < 0, restore best",
        {"val_loss": [1.0, 0.4, 0.6]},
        workdir=tmp_path,
    )
    assert (out.epochs_run, out.restored_epoch, out.stop) == (3, 1, None)


def test_ignore_first_epochs_changes_no_state(tmp_path: pathlib.Path) -> None:
    # Without "ignore first 3" best would be 0.1 from epoch 0 and the plateau would hold at 2.
    out = run_in_keras(
        "stop when val_loss not improving by 1% for 2 or val_loss > 10, ignore first 3 epochs",
        {"val_loss": [0.1, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]},
        workdir=tmp_path,
    )
    assert out.epochs_run == 6


def test_condition_callback_mirrors_keras_float32_rounding() -> None:
    assert f32(1.0 - 1e-9) == 1.0
    # Subnormals compare as zero where the backend's comparisons flush them (TensorFlow, JAX),
    # as themselves where they do not (torch): f32 follows ops.less.
    flushes = not bool(keras.ops.less(1e-45, 3e-45))
    assert f32(1e-45) == (0.0 if flushes else 1.401298464324817e-45)
    assert flushes == (keras.backend.backend() != "torch")
    assert math.isinf(f32(1e39))
    assert keras.ops.convert_to_numpy(keras.ops.less(0.95 + 0.05, 1.0)) == (f32(0.95 + 0.05) < f32(1.0))


# ---------------------------------------------------------------- budgets


def test_stop_after_epochs(tmp_path: pathlib.Path) -> None:
    out = run_in_keras("stop after 3 epochs", {"loss": [1.0] * 6}, workdir=tmp_path)
    assert out.epochs_run == 3
    assert out.stop == Stop("stop after 3 epochs", 2)


def test_stop_after_steps_ends_the_epoch_early(tmp_path: pathlib.Path) -> None:
    out = run_in_keras("stop after 7 steps", {"loss": [1.0] * 6}, steps_per_epoch=3, workdir=tmp_path)
    assert out.epochs_run == 3
    assert out.stop == Stop("stop after 7 steps", 2)


@pytest.mark.parametrize(
    ("text", "step_seconds", "epochs_run"),
    [("stop after 90s", 10.0, 3), ("stop after 30 min", 600.0, 1), ("stop after 2h", 1000.0, 2)],
)
def test_stop_after_time_with_scripted_clock(
    text: str, step_seconds: float, epochs_run: int, tmp_path: pathlib.Path
) -> None:
    # 4 batches per epoch: 90s at 10 s/batch is reached after batch 9 (epoch 2); 30 min at
    # 600 s/batch after batch 3 (epoch 0); 2h at 1000 s/batch after batch 8 (epoch 1).
    out = run_in_keras(text, {"loss": [1.0] * 5}, steps_per_epoch=4, step_seconds=step_seconds, workdir=tmp_path)
    assert out.epochs_run == epochs_run
    assert out.stop is not None and out.stop.rule == text


def test_time_budget_reads_its_clock() -> None:
    (budget,) = compile_policy("stop after 90s", strict=False)
    assert isinstance(budget, StopAfterTime) and budget.seconds == 90.0
    budget.clock = lambda: 5.0
    budget.on_train_begin()
    assert budget._start == 5.0


def test_batch_stop_precedes_epoch_end_stop(tmp_path: pathlib.Path) -> None:
    out = run_in_keras(
        "stop when loss > 0; stop after 2 steps", {"loss": [1.0, 1.0]}, steps_per_epoch=2, workdir=tmp_path
    )
    assert out.stop == Stop("stop after 2 steps", 0)
    tie = run_in_keras("stop when loss > 0; stop after 1 epochs", {"loss": [1.0, 1.0]}, workdir=tmp_path / "t")
    assert tie.stop == Stop("stop when loss > 0", 0)  # same moment: the rule written first


# ---------------------------------------------------------------- checkpoints


def test_save_every_three_epochs(tmp_path: pathlib.Path) -> None:
    out = run_in_keras('save every 3 epochs to "ckpt/{epoch:03d}.keras"', {"loss": [1.0] * 7}, workdir=tmp_path)
    assert out.saves == ((2, "ckpt/003.keras"), (5, "ckpt/006.keras"))
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["003.keras", "006.keras"]


def test_save_top_k_keeps_exactly_the_best_and_never_deletes_foreign_files(tmp_path: pathlib.Path) -> None:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "999.keras").write_text("not ours")  # matches the pattern, but this run never wrote it
    (folder / "notes.txt").write_text("keep")
    values = [1.0, 0.5, 0.8, 0.5, 0.9, 0.4, NAN]
    out = run_in_keras('save top 2 on val_loss min to "ckpt/{epoch:03d}.keras"', {"val_loss": values}, workdir=tmp_path)
    # 0 in; 1 in; 2 (0.8) beats worst 1.0: in, drops 0; 3 (0.5) beats worst 0.8: in, drops 2;
    # 4 (0.9) does not; 5 (0.4) in, drops 3 (the later of the two 0.5s); 6 (NaN) never enters.
    assert [e for e, _ in out.saves] == [0, 1, 2, 3, 5]
    assert sorted(p.name for p in folder.iterdir()) == ["002.keras", "006.keras", "999.keras", "notes.txt"]
    assert (folder / "999.keras").read_text() == "not ours"


def test_save_top_k_overwritten_foreign_file_is_ours_after_writing(tmp_path: pathlib.Path) -> None:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "001.keras").write_text("old run")
    out = run_in_keras(
        'save top 1 on val_loss min to "ckpt/{epoch:03d}.keras"', {"val_loss": [1.0, 0.5]}, workdir=tmp_path
    )
    assert out.saves == ((0, "ckpt/001.keras"), (1, "ckpt/002.keras"))
    assert sorted(p.name for p in folder.iterdir()) == ["002.keras"]


# ---------------------------------------------------------------- schedules


def test_schedule_values_and_pickle_round_trip() -> None:
    schedule = LearningRateChain([WarmupSegment(0.001, 5), CosineSegment(1e-5, 100), DecaySegment(0.5, 2)])
    schedule.start(0.1)
    assert schedule(0, 0.1) == pytest.approx(0.0002)
    assert schedule(4, 0.1) == pytest.approx(0.001)
    assert schedule(5, 0.1) == pytest.approx(0.001)  # cosine starts at the warm-up's end value
    assert schedule(55, 0.1) == pytest.approx(1e-5 + (0.001 - 1e-5) * (1 + math.cos(math.pi * 50 / 100)) / 2)
    assert schedule(105, 0.1) == pytest.approx(1e-5)
    assert schedule(109, 0.1) == pytest.approx(1e-5 * 0.25)
    copy = pickle.loads(pickle.dumps(schedule))
    assert copy == schedule and [copy(e, 0.1) for e in range(120)] == [schedule(e, 0.1) for e in range(120)]
    assert repr(copy) == (
        "LearningRateChain('warm up lr to 0.001 over 5 epochs, then cosine to 1e-05 over 100 epochs, then decay by 0.5 every 2 epochs')"
    )


def test_schedule_compiles_to_learning_rate_scheduler() -> None:
    (cb,) = compile_policy("decay lr by 0.5 every 2 epochs", strict=False)
    assert isinstance(cb, keras.callbacks.LearningRateScheduler) and isinstance(cb, ScheduledLearningRate)
    assert repr(cb.schedule) == "LearningRateChain('decay lr by 0.5 every 2 epochs')"


def test_schedules_in_fit(tmp_path: pathlib.Path) -> None:
    decay = run_in_keras("decay lr by 0.5 every 2 epochs", {"loss": [1.0] * 5}, initial_lr=0.1, workdir=tmp_path)
    assert decay.learning_rates == (f(0.1), f(0.1), f(f(0.1) * 0.5), f(f(0.1) * 0.5), f(f(0.1) * 0.25))
    warm = run_in_keras(
        "warm up lr to 0.001 over 4 epochs, then decay by 0.1 every epoch", {"loss": [1.0] * 6}, workdir=tmp_path / "w"
    )
    assert warm.learning_rates == (f(0.00025), f(0.0005), f(0.00075), f(0.001), f(0.001), f(0.0001))
    cosine = run_in_keras("cosine lr to 0 over 2 epochs", {"loss": [1.0] * 4}, initial_lr=0.1, workdir=tmp_path / "c")
    # lr0 is the float32 learning rate read at train begin; after the segment lr holds the target.
    assert cosine.learning_rates == (f(0.1), f(f(0.1) / 2), 0.0, 0.0)


# ---------------------------------------------------------------- strict metric check, stop, hooks


def test_strict_check_names_the_closest_metric_and_points_at_the_rule(tmp_path: pathlib.Path) -> None:
    text = "save best on val_loss min\nstop when val_los not decreasing by 1% for 3"
    with pytest.raises(PolicyError) as info:
        run_in_keras(text, {"val_loss": [1.0, 1.0], "loss": [1.0, 1.0]}, workdir=tmp_path)
    err = info.value
    assert (err.line, err.column) == (2, 11)
    assert err.suggestion == "did you mean 'val_loss'?"
    assert str(err) == (
        "2:11: metric 'val_los' is not in the validation logs (they have: loss, val_loss)\n"
        "    stop when val_los not decreasing by 1% for 3\n"
        "              ^\n"
        "hint: did you mean 'val_loss'?"
    )
    relaxed = run_in_keras(text, {"val_loss": [1.0, 1.0], "loss": [1.0, 1.0]}, workdir=tmp_path / "r", strict=False)
    assert relaxed.epochs_run == 2


def test_strict_check_is_first_and_only_when_strict() -> None:
    strict = compile_policy("stop when val_loss not improving for 3")
    assert type(strict[0]).__name__ == "MetricCheck" and len(strict) == 2
    assert len(compile_policy("stop when val_loss not improving for 3", strict=False)) == 1


def test_stop_is_none_when_training_runs_to_the_end(tmp_path: pathlib.Path) -> None:
    out = run_in_keras("stop when val_loss not improving for 3", {"val_loss": [1.0, 0.9, 0.8]}, workdir=tmp_path)
    assert out.stop is None and out.epochs_run == 3


EPOCH_LEVEL = [
    "stop when val_loss not improving for 3, restore best",
    "stop when val_accuracy >= 0.9 or val_loss not improving by 1% for 2",
    "stop when loss is nan",
    "stop after 5 epochs",
    'save every 3 epochs to "c/{epoch}.keras"',
    'save top 2 on val_loss min to "t/{epoch}.keras"',
    "warm up lr to 0.001 over 5 epochs, then cosine to 1e-5 over 100 epochs",
    "multiply lr by 0.5 when val_loss not improving for 2",
    'log to "train.csv"',
    # Keras's own savers, marked async_safe by the compiler because their batch hook is a no-op
    "save best on val_loss min",
    'save every epoch to "e{epoch}.keras"',
    'save last to "last.keras"',
    'backup to "backup/"',
    # the minimum in epochs and the pair around a held rule only look at epoch ends
    "train at least 4 epochs; stop when val_loss not improving for 2",
]


@pytest.mark.parametrize("text", EPOCH_LEVEL)
def test_epoch_level_policies_keep_async_batch_dispatch(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # TensorFlow is not a "thread-safe" backend for Keras, so pretend, as JAX would be.
    monkeypatch.setattr(keras.src.backend, "IS_THREAD_SAFE", True)
    compiled = compile_policy(text)
    assert CallbackList(list(compiled))._async_train is True


@pytest.mark.parametrize(
    "text",
    [
        "stop after 100 steps",
        "stop after 1h",
        "stop when loss is not finite",
        'save every 5 steps to "s{batch}.keras"',
        'backup to "b/" every 5 steps',
        "train at least 40 steps",
        "fail when loss is not finite",
    ],
)
def test_batch_level_policies_do_look_at_batches(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keras.src.backend, "IS_THREAD_SAFE", True)
    assert CallbackList(list(compile_policy(text)))._async_train is False


def test_stop_when_callback_is_ours_only_for_what_keras_lacks() -> None:
    assert isinstance(compile_policy("stop when val_loss not improving by 1% for 3", strict=False)[0], ConditionStopping)
    assert isinstance(
        compile_policy("stop when val_loss not improving for 3", strict=False)[0], keras.callbacks.EarlyStopping
    )


def test_condition_stopping_takes_the_directions_validation_settled() -> None:
    text = "stop when val_accuracy not improving by 1% for 3 or loss not decreasing by 2% for 2"
    (compiled,) = compile_policy(text, strict=False)
    assert compiled.directions == ("max", "min")
    # By hand, without directions: the same ones, from the same meaning function.
    by_hand = ConditionStopping(compiled.condition)
    assert by_hand.directions == ("max", "min")
    assert [p.direction for p in by_hand._plateaus] == ["max", "min"]
    # Given, they are used as written: the first plateau now watches accuracy fall.
    flipped = ConditionStopping(compiled.condition, directions=["min", "min"])
    assert [p.direction for p in flipped._plateaus] == ["min", "min"]
    with pytest.raises(ValueError, match="one 'min' or 'max' per plateau"):
        ConditionStopping(compiled.condition, directions=["min"])


# ---------------------------------------------------------------- log lr


@pytest.mark.parametrize(
    "text",
    [
        'log to "logs/t.csv"; log lr; multiply lr by 0.5 when val_loss not improving for 1',
        'multiply lr by 0.5 when val_loss not improving for 1; log to "logs/t.csv"; log lr',
        'log lr; log to "logs/t.csv"',
    ],
)
def test_log_lr_puts_the_rate_in_the_csv_whatever_the_order(text: str, tmp_path: pathlib.Path) -> None:
    """The CSV has a learning_rate column from the first row (CSVLogger fixes its columns at the
    first epoch), holding the rate each epoch trained with (before that epoch's reduction)."""
    import csv

    run_in_keras(text, {"val_loss": [1.0, 1.0, 1.0]}, initial_lr=0.01, workdir=tmp_path)
    with open(tmp_path / "logs" / "t.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    reduces = "multiply" in text
    expected = [f(0.01), f(0.01), f(0.005)] if reduces else [f(0.01)] * 3
    assert [float(row["learning_rate"]) for row in rows] == expected


def test_log_lr_is_first_after_the_metric_check() -> None:
    from policy.callbacks import LearningRateLogger, MetricCheck

    callbacks = compile_policy('log to "t.csv"; stop when learning_rate < 0.001; log lr')
    assert isinstance(callbacks[0], MetricCheck) and isinstance(callbacks[1], LearningRateLogger)


def test_train_at_least_holds_keras_early_stopping_and_counts_before_the_minimum(tmp_path: pathlib.Path) -> None:
    """Keras's own EarlyStopping stays the rule's callback, between the pair that holds its stops:
    its wait keeps counting before the minimum (Lightning's min_epochs), so it stops at the first
    epoch allowed, epoch 3, where start_from_epoch=3 would only begin to count."""
    from policy.callbacks import MinimumEpochs, StopHold, StopRelease

    text = "train at least 4 epochs; stop when val_loss not improving for 2"
    compiled = compile_policy(text, strict=False)
    assert [type(cb) for cb in compiled] == [MinimumEpochs, StopHold, keras.callbacks.EarlyStopping, StopRelease]
    from policy.testing import run_callbacks

    out = run_callbacks(compiled, {"val_loss": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]}, workdir=tmp_path).outcome
    assert out.stop is not None and (out.stop.rule, out.stop.epoch) == ("stop when val_loss not improving for 2", 3)
    assert compiled[2].wait == 3 and compiled[2].stopped_epoch == 3


def test_train_at_least_keeps_a_budget_that_stopped_the_same_epoch(tmp_path: pathlib.Path) -> None:
    """Undoing a held stop undoes only that rule's: a budget earlier in the list still stops."""
    text = "train at least 3 steps; stop when val_loss > 0.5; stop after 2 epochs"
    out = run_in_keras(text, {"val_loss": [1.0, 1.0, 1.0, 1.0]}, workdir=tmp_path)
    assert out.stop is not None and (out.stop.rule, out.stop.epoch) == ("stop after 2 epochs", 1)
    out = run_in_keras(
        "stop after 2 epochs; train at least 3 steps; stop when val_loss > 0.5",
        {"val_loss": [1.0, 1.0, 1.0, 1.0]},
        workdir=tmp_path / "b",
    )
    assert out.stop is not None and (out.stop.rule, out.stop.epoch) == ("stop after 2 epochs", 1)
