"""Hand-computed cases for the reference simulator: one test per Keras fact and per contract rule.

Each expected Outcome was worked out by hand from Keras 3.15.1's callback source / docs/semantics.md (the
comment says how), never by running the reference. No Keras is imported here.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytest

from policy import ast
from policy.errors import PolicyError
from policy.outcome import Outcome, Stop
from policy.reference import (
    KERAS_3_15,
    MODELLED_KERAS,
    KerasWouldRaise,
    Semantics,
    UnmodelledKerasError,
    check_keras_version,
    round_f32,
    simulate,
)

NAN = math.nan
INF = math.inf


@pytest.fixture(autouse=True)
def tensorflow_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hand-computed cases are TensorFlow's (where the backends differ, the backend tests at the
    end say so), whatever KERAS_BACKEND the suite runs under."""
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")


def f32(x: float) -> float:
    return round_f32(x)


def stop_of(out: Outcome) -> tuple[str, int] | None:
    return None if out.stop is None else (out.stop.rule, out.stop.epoch)


def early(patience: int, *, delta: float = 0.0, baseline: float | None = None, metric: str = "val_loss",
          restore: bool = False, ignore_first: int = 0) -> ast.Policy:
    """An EarlyStopping policy built directly (the parser refuses patience 0; Keras does not)."""
    plateau = ast.Plateau(metric=ast.Metric(name=metric), delta=delta, patience=patience)
    return ast.Policy(rules=(ast.StopWhen(condition=plateau, baseline=baseline, restore_best=restore,
                                          ignore_first=ignore_first),))


# --------------------------------------------------------------------------- EarlyStopping


def test_early_stopping_counts_non_improving_epochs() -> None:
    # best 0.9 at epoch 1; epochs 2 and 3 do not improve -> wait 2 >= 2 at epoch 3.
    out = simulate("stop when val_loss not improving for 2", {"val_loss": [1.0, 0.9, 0.95, 0.97, 0.5]})
    assert out == Outcome(epochs_run=4, stop=Stop("stop when val_loss not improving for 2", 3))


def test_runs_to_the_end_without_a_stop() -> None:
    out = simulate("stop when val_loss not improving for 2", {"val_loss": [1.0, 0.9, 0.95, 0.8]})
    assert out == Outcome(epochs_run=4)


def test_patience_zero_behaves_like_patience_one() -> None:
    history = {"val_loss": [1.0, 1.0, 1.0]}
    zero, one = simulate(early(0), history), simulate(early(1), history)
    assert zero.stop is not None and zero.stop.epoch == 1
    assert stop_of(zero) == ("stop when val_loss not improving for 0", 1)
    assert zero.epochs_run == one.epochs_run == 2


def test_no_early_stop_at_epoch_zero() -> None:
    assert not KERAS_3_15.early_stop_fires(1, 0, 0)
    assert KERAS_3_15.early_stop_fires(1, 0, 1)
    assert KERAS_3_15.early_stop_fires(2, 2, 5) and not KERAS_3_15.early_stop_fires(1, 2, 5)


def test_min_delta_is_compared_in_float32() -> None:
    # min: 0.95 - (-0.05) = 1.0 (float64), not < 1.0 -> no improvement -> stop at epoch 1.
    out = simulate("stop when val_loss not improving by 0.05 for 1", {"val_loss": [1.0, 0.95]})
    assert stop_of(out) == ("stop when val_loss not improving by 0.05 for 1", 1)


def test_improvement_below_float32_resolution_is_not_one() -> None:
    out = simulate("stop when val_loss not improving for 1", {"val_loss": [1.0, 1.0 - 1e-9]})
    assert out.stop is not None and out.stop.epoch == 1


def test_min_delta_subtraction_happens_in_float64_before_rounding() -> None:
    # Pairs found by experiment where rounding each side first and adding in float32 gives the
    # opposite answer; Keras agreed with float64-then-round on both.
    improves = {"val_loss": [1.3009021282196045, 1.2739233746429086]}
    assert simulate("stop when val_loss not improving by 0.026978671376387032 for 1", improves).stop is None
    worse = {"val_loss": [1.2862212657928467, 1.2132715515343597]}
    assert simulate("stop when val_loss not improving by 0.07294965609839985 for 1", worse).stop is not None


def test_subnormals_compare_as_zero() -> None:
    # TensorFlow's CPU comparison flushes float32 subnormals: 1e-40 < 2e-40 is False.
    out = simulate("stop when val_loss not improving for 1", {"val_loss": [2e-40, 1e-40]})
    assert out.stop is not None and out.stop.epoch == 1
    normal = simulate("stop when val_loss not improving for 1", {"val_loss": [2e-30, 1e-30]})
    assert normal.stop is None


def test_min_delta_sign_makes_improvement_harder_for_min_and_max() -> None:
    # min: 0.95 + 0.1 < 1.0 is false -> stop; max: 0.95 - 0.1 > 0.9 is false -> stop.
    assert simulate("stop when val_loss not improving by 0.1 for 1", {"val_loss": [1.0, 0.95]}).stop is not None
    acc = simulate("stop when val_accuracy not improving by 0.1 for 1", {"val_accuracy": [0.9, 0.95]})
    assert acc.stop is not None
    ok = simulate("stop when val_accuracy not improving by 0.1 for 1", {"val_accuracy": [0.8, 0.95]})
    assert ok.stop is None


def test_nan_as_first_value_blocks_all_improvement() -> None:
    out = simulate("stop when val_loss not improving for 2", {"val_loss": [NAN, 0.5, 0.4, 0.3]})
    assert out.stop is not None and out.stop.epoch == 2


def test_nan_later_never_improves() -> None:
    out = simulate("stop when val_loss not improving for 2", {"val_loss": [1.0, NAN, NAN, 0.1]})
    assert out.stop is not None and out.stop.epoch == 2


def test_missing_metric_changes_nothing() -> None:
    # epochs 1 and 2 are missing: wait stays 0; epoch 3 makes it 1 < 2.
    assert simulate("stop when val_loss not improving for 2", {"val_loss": [1.0, None, None, 1.1]}).stop is None
    out = simulate("stop when val_loss not improving for 2", {"val_loss": [1.0, None, 1.1, 1.2]})
    assert out.stop is not None and out.stop.epoch == 3


def test_start_from_epoch_ignores_early_epochs_entirely() -> None:
    out = simulate("stop when val_loss not improving for 1, ignore first 2 epochs",
                   {"val_loss": [0.1, 0.1, 1.0, 1.1]})
    assert out.stop is not None and out.stop.epoch == 3


def test_baseline_is_not_the_starting_best_and_below_baseline_keeps_counting() -> None:
    # Every epoch improves, but none beats the baseline 0.5: wait 1, 2, then epoch 2 does not
    # improve with wait 3 >= 2 -> stop. Without a baseline wait would be 1 at epoch 2.
    rule = "stop when val_loss not improving for 2, baseline 0.5"
    assert simulate(rule, {"val_loss": [1.0, 0.9, 0.95]}).stop == Stop(rule, 2)
    assert simulate("stop when val_loss not improving for 2", {"val_loss": [1.0, 0.9, 0.95]}).stop is None
    # Improving epochs never stop, whatever the wait.
    assert simulate(rule, {"val_loss": [1.0, 0.9, 0.8, 0.7]}).stop is None


def test_baseline_beaten_resets_wait() -> None:
    # e0 wait 1 (no reset), e1 improves and beats 0.5 -> 0, e2 -> 1, e3 -> 2 -> stop.
    out = simulate("stop when val_loss not improving for 2, baseline 0.5", {"val_loss": [1.0, 0.4, 0.45, 0.46]})
    assert out.stop is not None and out.stop.epoch == 3


def test_restore_best_weights_without_stopping() -> None:
    out = simulate("stop when val_loss not improving for 5, restore best", {"val_loss": [1.0, 0.5, 0.7]})
    assert out == Outcome(epochs_run=3, restored_epoch=1)


def test_restore_best_weights_when_another_rule_stops() -> None:
    out = simulate("stop when val_loss not improving for 5, restore best; stop after 3 epochs",
                   {"val_loss": [1.0, 0.5, 0.7, 0.1]})
    assert out == Outcome(epochs_run=3, restored_epoch=1, stop=Stop("stop after 3 epochs", 2))


def test_restore_best_with_start_from_epoch() -> None:
    out = simulate("stop when val_loss not improving for 5, restore best, ignore first 2 epochs",
                   {"val_loss": [0.1, 0.2, 0.9, 0.8, 0.85]})
    assert out.restored_epoch == 3


def test_restore_best_never_evaluated_restores_nothing() -> None:
    out = simulate("stop when val_loss not improving for 5, restore best", {"val_loss": [None, None]})
    assert out.restored_epoch is None


def test_max_direction_from_name_and_from_trend() -> None:
    acc = simulate("stop when val_accuracy not improving for 1", {"val_accuracy": [0.5, 0.6, 0.55]})
    assert acc.stop is not None and acc.stop.epoch == 2
    score = simulate("stop when thing not increasing for 1", {"thing": [0.5, 0.6, 0.55]})
    assert score.stop is not None and score.stop.epoch == 2
    down = simulate("stop when thing not decreasing for 1", {"thing": [0.5, 0.6]})
    assert down.stop is not None and down.stop.epoch == 1


def test_value_beyond_float32_range_makes_keras_raise() -> None:
    with pytest.raises(KerasWouldRaise, match="float32"):
        simulate("stop when val_loss not improving for 1", {"val_loss": [1.0, 3.5e38]})
    # inf converts fine: it is simply not an improvement.
    assert simulate("stop when val_loss not improving for 1", {"val_loss": [1.0, INF]}).stop is not None


# --------------------------------------------------------------------------- our conditions


def test_threshold_holds_in_float32() -> None:
    # 0.8999999999 rounds to the same float32 as 0.9, so >= holds (float64 would say no).
    out = simulate("stop when val_accuracy >= 0.9", {"val_accuracy": [0.5, 0.8999999999]})
    assert out == Outcome(epochs_run=2, stop=Stop("stop when val_accuracy >= 0.9", 1))
    assert simulate("stop when val_accuracy > 0.9", {"val_accuracy": [0.5, 0.8999999999]}).stop is None
    assert simulate("stop when val_loss <= 0.1", {"val_loss": [0.5, 0.1]}).stop is not None
    assert simulate("stop when val_loss < 0.1", {"val_loss": [0.5, 0.1]}).stop is None


def test_threshold_missing_or_nan_does_not_hold() -> None:
    assert simulate("stop when val_loss < 0.5", {"val_loss": [None, NAN, 1.0]}).stop is None


def test_not_finite_and_is_nan() -> None:
    assert stop_of(simulate("stop when val_loss is not finite", {"val_loss": [1.0, -INF]})) == (
        "stop when val_loss is not finite", 1)
    assert simulate("stop when val_loss is nan", {"val_loss": [1.0, INF]}).stop is None
    assert simulate("stop when val_loss is nan", {"val_loss": [1.0, NAN]}).stop is not None
    assert simulate("stop when val_loss is not finite", {"val_loss": [None, None]}).stop is None


def test_loss_not_finite_with_options_is_an_epoch_rule() -> None:
    # Not TerminateOnNaN: checked on the epoch's logs, epoch 0 ignored.
    out = simulate("stop when loss is not finite, ignore first 1 epochs", {"loss": [NAN, 1.0, INF]})
    assert out.stop is not None and out.stop.epoch == 2


def test_or_is_two_rules_and_every_plateau_keeps_state() -> None:
    history = {"val_loss": [1.0, 0.9, 0.95, 0.97], "val_accuracy": [0.1, 0.2, 0.3, 0.4]}
    both = simulate("stop when val_loss not improving for 2 or val_accuracy >= 0.99", history)
    assert both.stop is not None and both.stop.epoch == 3
    # "and": val_accuracy never stalls, so the conjunction never holds; but val_loss's plateau
    # still counts every epoch (no short-circuit) and holds alone once val_accuracy stalls too.
    history2 = {"val_loss": [1.0, 1.1, 1.2, 1.3], "val_accuracy": [0.5, 0.6, 0.6, 0.7]}
    out = simulate("stop when val_accuracy not improving for 1 and val_loss not improving for 2", history2)
    assert out.stop is not None and out.stop.epoch == 2


def test_our_plateau_uses_early_stoppings_delta_sign() -> None:
    # The "or" makes it our rule; min: 0.95 + 0.1 < 1.0 is false -> holds at epoch 1.
    out = simulate("stop when val_loss not improving by 0.1 for 1 or val_accuracy >= 1",
                   {"val_loss": [1.0, 0.95], "val_accuracy": [0.0, 0.0]})
    assert out.stop is not None and out.stop.epoch == 1


def test_relative_improvement() -> None:
    rule = "stop when val_loss not improving by 10% for 1"
    assert simulate(rule, {"val_loss": [1.0, 0.95]}).stop == Stop(rule, 1)  # needs < 0.9
    assert simulate(rule, {"val_loss": [1.0, 0.89]}).stop is None
    # 0.9 - 1e-9 equals 0.9 in float32: not strictly below the bound.
    assert simulate(rule, {"val_loss": [1.0, 0.9 - 1e-9]}).stop is not None
    # max: needs > 0.5 + 0.05.
    assert simulate("stop when val_accuracy not improving by 10% for 1", {"val_accuracy": [0.5, 0.56]}).stop is None
    assert simulate("stop when val_accuracy not improving by 10% for 1", {"val_accuracy": [0.5, 0.54]}).stop


def test_relative_bound_uses_absolute_value_of_best() -> None:
    # best -1.0, min: bound = -1.0 - 1.0 * 0.1 = -1.1.
    rule = "stop when val_loss not improving by 10% for 1"
    assert simulate(rule, {"val_loss": [-1.0, -1.05]}).stop is not None
    assert simulate(rule, {"val_loss": [-1.0, -1.2]}).stop is None


def test_our_rule_ignore_first_changes_no_state() -> None:
    out = simulate("stop when val_loss not improving for 1 or val_accuracy >= 1, ignore first 2 epochs",
                   {"val_loss": [0.1, 0.1, 1.0, 1.1], "val_accuracy": [1.0, 1.0, 0.0, 0.0]})
    assert out.stop is not None and out.stop.epoch == 3


def test_restore_best_own_tracker() -> None:
    out = simulate("stop when val_accuracy >= 0.99, restore best val_loss",
                   {"val_accuracy": [0.5, 0.6, 0.99], "val_loss": [1.0, 0.5, 0.7]})
    assert out == Outcome(epochs_run=3, restored_epoch=1, stop=Stop("stop when val_accuracy >= 0.99, restore best val_loss", 2))


def test_restore_best_follows_the_plateaus_best_with_its_delta() -> None:
    # best changes at 0 and at 2 (0.8 + 0.1 < 1.0); 0.75 + 0.1 < 0.8 is false.
    out = simulate("stop when val_loss not improving by 0.1 for 3 or val_accuracy >= 0.99, restore best",
                   {"val_loss": [1.0, 0.95, 0.8, 0.75], "val_accuracy": [0.0] * 4})
    assert out.restored_epoch == 2


# --------------------------------------------------------------------------- budgets and stop order


def test_epoch_budget() -> None:
    assert simulate("stop after 3 epochs", {"loss": [1.0] * 5}) == Outcome(
        epochs_run=3, stop=Stop("stop after 3 epochs", 2))
    assert simulate("stop after 3 epochs", {"loss": [1.0] * 3}).stop == Stop("stop after 3 epochs", 2)
    assert simulate("stop after 3 epochs", {"loss": [1.0] * 2}) == Outcome(epochs_run=2)


def test_step_budget_counts_across_epochs() -> None:
    # 2 batches per epoch: the 5th batch is epoch 2's first.
    out = simulate("stop after 5 steps", {"loss": [1.0] * 6}, steps_per_epoch=2)
    assert out == Outcome(epochs_run=3, stop=Stop("stop after 5 steps", 2))
    assert simulate("stop after 4 steps", {"loss": [1.0] * 6}, steps_per_epoch=2).stop == Stop("stop after 4 steps", 1)


def test_step_budget_ends_the_epoch_early() -> None:
    out = simulate('stop after 5 steps; save every 1 steps to "s-{epoch}-{batch}.keras"',
                   {"loss": [1.0] * 6}, steps_per_epoch=3)
    assert out.saves == ((0, "s-1-1.keras"), (0, "s-1-2.keras"), (0, "s-1-3.keras"),
                         (1, "s-2-1.keras"), (1, "s-2-2.keras"))


def test_time_budget_uses_a_running_sum() -> None:
    # 0.1 summed 10 times is 0.9999999999999999 < 1: the 11th batch (epoch 2, batch 3) stops.
    out = simulate('stop after 1s; save every 1 steps to "s-{epoch}-{batch}.keras"',
                   {"loss": [1.0] * 5}, steps_per_epoch=4, step_seconds=0.1)
    assert stop_of(out) == ("stop after 1s", 2)
    assert out.saves[-1] == (2, "s-3-3.keras") and len(out.saves) == 11


def test_time_budget_units_and_per_batch_durations() -> None:
    out = simulate("stop after 0.5 min", {"loss": [1.0] * 4}, steps_per_epoch=2, step_seconds=10)
    assert stop_of(out) == ("stop after 0.5 min", 1)
    out = simulate("stop after 1h", {"loss": [1.0] * 3}, step_seconds=[[1000.0, 1000.0], [1000.0, 600.0], [1.0, 1.0]])
    assert stop_of(out) == ("stop after 1h", 1)


def test_terminate_on_nan_stops_after_the_bad_batch() -> None:
    out = simulate('stop when loss is not finite; save every 1 steps to "s-{epoch}-{batch}.keras"',
                   {"loss": [1.0, NAN, NAN]}, batch_losses=[[1.0, 1.0], [INF, INF], [NAN, NAN]])
    assert out == Outcome(epochs_run=2, saves=((0, "s-1-1.keras"), (0, "s-1-2.keras"), (1, "s-2-1.keras")),
                          files=("s-1-1.keras", "s-1-2.keras", "s-2-1.keras"),
                          stop=Stop("stop when loss is not finite", 1))


def test_terminate_on_nan_epoch_end_still_runs() -> None:
    out = simulate('stop when loss is not finite; save every epoch to "e{epoch}.keras"',
                   {"loss": [1.0, NAN, 1.0]}, batch_losses=[[1.0], [1.0, NAN], [1.0]])
    assert out.saves == ((0, "e1.keras"), (1, "e2.keras")) and out.epochs_run == 2


def test_terminate_on_nan_from_epoch_losses_alone() -> None:
    out = simulate("stop when loss is not finite", {"loss": [1.0, 2.0, INF, 1.0]})
    assert out == Outcome(epochs_run=3, stop=Stop("stop when loss is not finite", 2))


def test_terminate_on_nan_ignores_missing_batch_loss() -> None:
    out = simulate("stop when loss is not finite", {"loss": [1.0, 1.0]}, batch_losses=[[None, 1.0], [1.0, 2.0]])
    assert out.stop is None


def test_batch_stop_comes_before_epoch_end_stops() -> None:
    out = simulate("stop when val_loss not improving for 1; stop after 3 steps",
                   {"val_loss": [1.0, 1.1, 1.2]}, steps_per_epoch=2)
    assert stop_of(out) == ("stop after 3 steps", 1)


def test_same_epoch_end_first_rule_in_order_wins() -> None:
    out = simulate("stop after 2 epochs; stop when val_loss not improving for 1", {"val_loss": [1.0, 1.1, 1.2]})
    assert stop_of(out) == ("stop after 2 epochs", 1)
    out = simulate("stop when val_loss not improving for 1; stop after 2 epochs", {"val_loss": [1.0, 1.1, 1.2]})
    assert stop_of(out) == ("stop when val_loss not improving for 1", 1)


def test_same_batch_first_rule_in_order_wins() -> None:
    out = simulate("stop after 2 steps; stop when loss is not finite", {"loss": [1.0, NAN]},
                   batch_losses=[[1.0], [NAN]])
    assert stop_of(out) == ("stop after 2 steps", 1)


# --------------------------------------------------------------------------- checkpoints


def test_save_best_paths_and_only_improvements() -> None:
    out = simulate('save best on val_loss to "m-{epoch:03d}-{val_loss:.4f}.keras"',
                   {"val_loss": [1.0, 0.5, 0.7, 0.25]})
    assert out.saves == ((0, "m-001-1.0000.keras"), (1, "m-002-0.5000.keras"), (3, "m-004-0.2500.keras"))


def test_save_best_default_path_and_max() -> None:
    out = simulate("save best weights on val_accuracy", {"val_accuracy": [0.5, 0.4, 0.6]})
    assert out.saves == ((0, "checkpoints/best.weights.h5"), (2, "checkpoints/best.weights.h5"))
    out = simulate("save best on val_loss max", {"val_loss": [0.5, 0.4, 0.6]})
    assert [e for e, _ in out.saves] == [0, 2]


def test_save_best_saves_anyway_when_metric_missing() -> None:
    out = simulate("save best on val_loss", {"val_loss": [1.0, None, 1.5], "loss": [1.0, 1.0, 1.0]})
    assert [e for e, _ in out.saves] == [0, 1]


def test_save_best_nan_first_saves_then_blocks() -> None:
    out = simulate("save best on val_loss", {"val_loss": [NAN, 0.5, 0.1]})
    assert [e for e, _ in out.saves] == [0]


def test_save_best_is_strict_in_float32() -> None:
    out = simulate("save best on val_loss", {"val_loss": [1.0, 1.0, 1.0 - 1e-9, 0.99]})
    assert [e for e, _ in out.saves] == [0, 3]


def test_missing_placeholder_raises_even_when_not_saving() -> None:
    # ModelCheckpoint formats the path before deciding; epoch 1 would not save but still fails.
    with pytest.raises(KerasWouldRaise, match="val_acc"):
        simulate('save best on val_loss to "m-{val_acc}.keras"', {"val_loss": [1.0, 2.0]})


def test_bad_format_spec_is_refused_before_the_run() -> None:
    # Keras would raise ValueError at the first save; the validator refuses the path up front.
    with pytest.raises(PolicyError) as info:
        simulate('save every epoch to "m-{val_loss:03d}.keras"', {"val_loss": [1.0]})
    assert not isinstance(info.value, KerasWouldRaise)
    assert info.value.message == (
        "the format spec '03d' in {val_loss:03d} does not apply to a metric value (a float): "
        "Unknown format code 'd' for object of type 'float'"
    )


def test_save_every_epoch_and_save_last() -> None:
    history = {"loss": [1.0, 0.5]}
    assert simulate('save every epoch to "e{epoch}.keras"', history).saves == ((0, "e1.keras"), (1, "e2.keras"))
    assert simulate('save last to "last.keras"', history).saves == ((0, "last.keras"), (1, "last.keras"))


def test_save_every_n_epochs() -> None:
    out = simulate('save every 3 epochs to "e{epoch}.keras"', {"loss": [1.0] * 7})
    assert out.saves == ((2, "e3.keras"), (5, "e6.keras"))


def test_step_saves_count_across_epochs() -> None:
    # 3 batches per epoch, every 2: global batches 2, 4, 6 -> (e0,b1), (e1,b0), (e1,b2).
    out = simulate('save every 2 steps to "s-{epoch}-{batch:02d}.keras"', {"loss": [1.0, 1.0]}, steps_per_epoch=3)
    assert out.saves == ((0, "s-1-02.keras"), (1, "s-2-01.keras"), (1, "s-2-03.keras"))


def test_step_saves_with_loss_placeholder() -> None:
    out = simulate('save every 1 steps to "s{batch}-{loss:.1f}.keras"', {"loss": [0.5]}, batch_losses=[[0.75, 0.5]])
    assert out.saves == ((0, "s1-0.8.keras"), (0, "s2-0.5.keras"))


def test_step_save_val_placeholder_is_a_keras_error() -> None:
    with pytest.raises(KerasWouldRaise):
        simulate('save every 1 steps to "s{val_loss}.keras"', {"loss": [0.5]}, steps_per_epoch=1)
    with pytest.raises(PolicyError, match="only knows the loss"):
        simulate('save every 1 steps to "s{accuracy}.keras"', {"loss": [0.5]}, steps_per_epoch=1)


def test_save_order_batch_saves_then_epoch_saves_in_rule_order() -> None:
    out = simulate('save every epoch to "e{epoch}.keras"; save every 1 steps to "s{batch}.keras"; '
                   'save every 2 steps to "t{batch}.keras"', {"loss": [1.0]}, steps_per_epoch=2)
    assert out.saves == ((0, "s1.keras"), (0, "s2.keras"), (0, "t2.keras"), (0, "e1.keras"))


def test_top_k() -> None:
    # k=2: e0, e1 enter; 0.6 is worse than the worst kept (0.5); 0.3 enters (drops e0);
    # 0.4 ties the worst kept (e1's 0.4): not strictly better.
    out = simulate('save top 2 on val_loss to "t{epoch}.keras"', {"val_loss": [0.5, 0.4, 0.6, 0.3, 0.4]})
    assert out.saves == ((0, "t1.keras"), (1, "t2.keras"), (3, "t4.keras"))
    assert out.files == ("t2.keras", "t4.keras")  # t1 was deleted when e3 entered


def test_top_k_skips_missing_and_nan_and_compares_in_float32() -> None:
    out = simulate('save top 1 on val_accuracy to "t{epoch}.keras"',
                   {"val_accuracy": [None, NAN, 0.5, 0.5 + 1e-12, 0.6]})
    assert [e for e, _ in out.saves] == [2, 4]


def test_top_k_drops_the_latest_of_equal_worst() -> None:
    kept = [(0, 0.5), (1, 0.5), (2, 0.1)]
    assert KERAS_3_15.top_k_worst(kept, "min") == 1
    assert KERAS_3_15.top_k_worst([(0, 0.1), (1, 0.9)], "max") == 0
    # So of two equal epochs the later one's file goes: t2, not t1.
    out = simulate('save top 2 on val_loss to "t{epoch}.keras"', {"val_loss": [0.5, 0.5, 0.1]})
    assert out.files == ("t1.keras", "t3.keras")


def test_files_are_the_writes_minus_top_k_deletions() -> None:
    # Written twice is one file; save best and save every epoch never delete.
    out = simulate('save best on val_loss to "best.keras"; save every epoch to "e{epoch}.keras"',
                   {"val_loss": [1.0, 0.5, 0.7]})
    assert out.files == ("best.keras", "e1.keras", "e2.keras", "e3.keras")
    # Logs, TensorBoard and backups are not checkpoint files.
    out = simulate('log to "train.csv"; backup to "bk"; save last to "last.keras"', {"loss": [1.0, 0.5]})
    assert out.files == ("last.keras",)
    assert simulate("stop after 2 epochs", {"loss": [1.0]}).files == ()


def test_top_k_deletion_and_a_later_write_of_the_same_path_go_in_order() -> None:
    # Epoch 1: top-k drops e0 and deletes t1.keras; `save last` runs after it and writes it again.
    history = {"val_loss": [1.0, 0.5]}
    out = simulate('save top 1 on val_loss to "t{epoch}.keras"; save last to "t1.keras"', history)
    assert out.files == ("t1.keras", "t2.keras")
    # The other order: `save last` rewrites t1.keras, then top-k (which wrote it at e0) deletes it.
    out = simulate('save last to "t1.keras"; save top 1 on val_loss to "t{epoch}.keras"', history)
    assert out.files == ("t2.keras",)


def test_top_k_keeps_a_file_a_kept_epoch_shares() -> None:
    # {epoch!s:.0} formats every epoch as "": dropping e0 must not delete e1's (same) file.
    out = simulate('save top 1 on val_loss to "t{epoch!s:.0}.keras"', {"val_loss": [1.0, 0.5]})
    assert out.saves == ((0, "t.keras"), (1, "t.keras")) and out.files == ("t.keras",)
    assert not KERAS_3_15.top_k_deletes("t.keras", ["t.keras"]) and KERAS_3_15.top_k_deletes("a", ["b"])


def test_outcome_json_lists_files() -> None:
    data = simulate('save top 1 on val_loss to "t{epoch}.keras"', {"val_loss": [1.0, 0.5]}).to_json()
    assert data["files"] == ["t2.keras"] and list(data) == [
        "epochs_run", "learning_rates", "saves", "files", "restored_epoch", "stop", "failed", "rollbacks"]


# --------------------------------------------------------------------------- learning rate


def test_no_lr_rule_no_initial_lr_means_no_learning_rates() -> None:
    assert simulate("stop after 9 epochs", {"loss": [1.0, 1.0]}).learning_rates == ()


def test_initial_lr_without_lr_rule_is_constant_float32() -> None:
    assert simulate("stop after 9 epochs", {"loss": [1.0, 1.0]}, initial_lr=0.1).learning_rates == (f32(0.1),) * 2


def test_reduce_lr_on_plateau_float32_and_min_delta_zero() -> None:
    # min_delta 0 (not Keras's default 1e-4): 0.99995 improves on 1.0. Epoch 2 and 3 stall.
    out = simulate("multiply lr by 0.1 when val_loss not improving for 1",
                   {"val_loss": [1.0, 0.99995, 1.0, 1.0, 1.0]}, initial_lr=0.1)
    a = f32(0.1)
    b = f32(a * 0.1)
    c = f32(b * 0.1)
    assert out.learning_rates == (a, a, a, b, c)


def test_reduce_lr_min_lr_clamp_and_float32_comparison() -> None:
    # 0.1 -> 0.05 -> max(0.025, 0.03) = 0.03, then f32(0.03) > f32(0.03) is false: stays.
    out = simulate("multiply lr by 0.5 when val_loss not improving for 1, min lr 0.03",
                   {"val_loss": [1.0] * 6}, initial_lr=0.1)
    assert out.learning_rates == (f32(0.1), f32(0.1), f32(f32(0.1) * 0.5), f32(0.03), f32(0.03), f32(0.03))


def test_reduce_lr_cooldown_one_behaves_like_zero() -> None:
    history = {"val_loss": [1.0] * 6}
    zero = simulate("multiply lr by 0.5 when val_loss not improving for 1", history, initial_lr=1.0)
    one = simulate("multiply lr by 0.5 when val_loss not improving for 1, cooldown 1", history, initial_lr=1.0)
    assert zero.learning_rates == one.learning_rates == (1.0, 1.0, 0.5, 0.25, 0.125, 0.0625)


def test_reduce_lr_cooldown_two_skips_one_epoch() -> None:
    # e1 reduce (counter 2); e2 counter->1, wait 0, in cooldown: no count; e3 counter->0, counts:
    # wait 1 -> reduce (counter 2); e4 counter->1; e5 counter->0, reduce.
    out = simulate("multiply lr by 0.5 when val_loss not improving for 1, cooldown 2",
                   {"val_loss": [1.0] * 7}, initial_lr=1.0)
    assert out.learning_rates == (1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.125)


def test_reduce_lr_logs_the_lr_before_reduction() -> None:
    out = simulate('multiply lr by 0.5 when val_loss not improving for 1; save every epoch to "m-{learning_rate}.keras"',
                   {"val_loss": [1.0, 1.0, 1.0]}, initial_lr=1.0)
    assert out.saves == ((0, "m-1.0.keras"), (1, "m-1.0.keras"), (2, "m-0.5.keras"))
    assert out.learning_rates == (1.0, 1.0, 0.5)


def test_learning_rate_is_not_in_the_logs_before_the_lr_rule() -> None:
    with pytest.raises(KerasWouldRaise, match="learning_rate"):
        simulate('save every epoch to "m-{learning_rate}.keras"; multiply lr by 0.5 when val_loss not improving for 1',
                 {"val_loss": [1.0]}, initial_lr=1.0)


def test_warmup_then_cosine_schedule() -> None:
    out = simulate("warm up lr to 0.1 over 4 epochs, then cosine to 0.01 over 2 epochs",
                   {"loss": [1.0] * 8}, initial_lr=0.5)
    expected = [0.1 * (t + 1) / 4 for t in range(4)]
    expected += [0.01 + (0.1 - 0.01) * (1 + math.cos(math.pi * t / 2)) / 2 for t in range(2)]
    # After the last segment the schedule holds its end value: cosine's last epoch (t = N - 1)
    # is 0.055, and the epochs after it are at the end value 0.01.
    expected += [0.01, 0.01]
    assert out.learning_rates == tuple(f32(x) for x in expected)


def test_decay_schedule_starts_from_the_float32_initial_lr() -> None:
    out = simulate("decay lr by 0.5 every 2 epochs", {"loss": [1.0] * 5}, initial_lr=0.1)
    lr0 = f32(0.1)
    assert out.learning_rates == tuple(f32(lr0 * 0.5 ** k) for k in (0, 0, 1, 1, 2))


def test_schedule_writes_learning_rate_into_the_logs() -> None:
    out = simulate('warm up lr to 1 over 2 epochs; save every epoch to "m-{learning_rate}.keras"',
                   {"loss": [1.0, 1.0]}, initial_lr=0.5)
    assert out.saves == ((0, "m-0.5.keras"), (1, "m-1.0.keras"))


def test_inert_rules_decide_nothing() -> None:
    out = simulate('log to "t.csv"; log to tensorboard "tb"; backup to "bk" every 2 steps',
                   {"loss": [1.0, 2.0]}, steps_per_epoch=3)
    assert out == Outcome(epochs_run=2)


# --------------------------------------------------------------------------- inputs and errors


def test_history_forms_agree() -> None:
    text = "stop when val_loss not improving for 1"
    columns = simulate(text, {"val_loss": [1.0, 1.5]})
    rows = simulate(text, [{"epoch": "0", "val_loss": "1.0"}, {"epoch": "1", "val_loss": "1.5"}])

    class FakeHistory:
        history: dict[str, list[Any]] = {"val_loss": [1.0, 1.5]}  # noqa: RUF012

    assert columns == rows == simulate(text, FakeHistory()) == Outcome(epochs_run=2, stop=Stop(text, 1))


def test_na_in_rows_means_missing() -> None:
    out = simulate("stop when val_loss not improving for 1", [{"val_loss": 1.0}, {"val_loss": "NA"}, {}])
    assert out.stop is None


@pytest.mark.parametrize(
    ("history", "message"),
    [
        ({"val_loss": [1.0, 2.0], "loss": [1.0]}, "different lengths"),
        ({"val_loss": [1.0, "high"]}, "not a number"),
        ({"val_loss": [True]}, "boolean"),
        ({"val_loss": 1.0}, "sequence"),
        ([1.0, 2.0], "expected a dict"),
    ],
)
def test_bad_histories(history: Any, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        simulate("stop when val_loss not improving for 1", history)


def test_lr_rule_needs_initial_lr() -> None:
    with pytest.raises(PolicyError, match="initial_lr"):
        simulate("multiply lr by 0.5 when val_loss not improving for 1", {"val_loss": [1.0]})
    with pytest.raises(PolicyError, match="initial_lr"):
        simulate("warm up lr to 0.1 over 2 epochs", {"loss": [1.0]})


def test_step_rules_need_step_counts() -> None:
    with pytest.raises(PolicyError, match="steps_per_epoch"):
        simulate("stop after 10 steps", {"loss": [1.0]})
    with pytest.raises(PolicyError, match="steps_per_epoch"):
        simulate('save every 10 steps to "s.keras"', {"loss": [1.0]})
    with pytest.raises(PolicyError, match="step_seconds"):
        simulate("stop after 10s", {"loss": [1.0]}, steps_per_epoch=2)
    with pytest.raises(PolicyError, match="steps_per_epoch"):
        simulate("stop after 10s", {"loss": [1.0]}, step_seconds=1.0)
    with pytest.raises(PolicyError, match="batch_losses"):
        simulate("stop when loss is not finite; stop after 3 steps", {"loss": [1.0]}, steps_per_epoch=2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_losses": [[1.0]]}, "covers 1 epochs but the history has 2"),
        ({"batch_losses": [[1.0], [1.0, 2.0]], "steps_per_epoch": 1}, "epoch 1 has 1 batches"),
        ({"batch_losses": [[1.0], []]}, "no training batches"),
        ({"batch_losses": [[1.0], ["x"]]}, "not a number"),
        ({"steps_per_epoch": 0}, "from 1 to 1000000000, got 0"),
        ({"steps_per_epoch": 1.5}, "whole number"),
        ({"step_seconds": -1.0, "steps_per_epoch": 1}, ">= 0"),
        ({"step_seconds": [[1.0], [-1.0]]}, "negative"),
        ({"initial_lr": "fast"}, "not a number"),
        ({"initial_lr": math.inf}, "finite"),
    ],
)
def test_bad_batch_inputs(kwargs: Any, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        simulate("stop after 9 epochs", {"loss": [1.0, 1.0]}, **kwargs)


def test_invalid_policy_is_a_policy_error() -> None:
    with pytest.raises(PolicyError):
        simulate("stop when", {"loss": [1.0]})
    with pytest.raises(TypeError, match=r"^simulate\(\) takes policy text \(a str\) or a Policy from parse_policy\(\); got int$"):
        simulate(42, {"loss": [1.0]})  # type: ignore[arg-type]


def test_empty_history() -> None:
    assert simulate("stop when val_loss not improving for 1, restore best", {}) == Outcome(epochs_run=0)


# --------------------------------------------------------------------------- semantics, version, speed


def test_float32_primitives() -> None:
    sem = Semantics()
    assert sem.to_f32(1e-40) == 0.0 and sem.to_f32(2.0**-126) == 2.0**-126
    assert sem.lr_round(1e-40) != 0.0  # the lr variable keeps subnormals
    assert sem.lr_round(1e39) == INF  # and stores inf on overflow
    assert sem.shifted(0.95, 0.05, "min") == 0.95 + 0.05
    assert sem.signed_delta(0.1, "min") == -0.1 and sem.signed_delta(-0.1, "max") == 0.1


def test_a_mutant_overriding_one_method_changes_the_outcome() -> None:
    class WrongSign(Semantics):
        def signed_delta(self, delta: float, direction: ast.Direction) -> float:
            return abs(delta) if direction == "min" else -abs(delta)

    class NaiveCooldown(Semantics):
        def counts_toward_patience(self, cooldown_before: int, cooldown_after: int) -> bool:
            return cooldown_before == 0

    text = "stop when val_loss not improving by 0.1 for 1"
    assert simulate(text, {"val_loss": [1.0, 0.95]}).stop is not None
    assert simulate(text, {"val_loss": [1.0, 0.95]}, semantics=WrongSign()).stop is None
    lr_rule = "multiply lr by 0.5 when val_loss not improving for 1, cooldown 1"
    history = {"val_loss": [1.0] * 4}
    assert simulate(lr_rule, history, initial_lr=1.0) != simulate(lr_rule, history, initial_lr=1.0,
                                                                  semantics=NaiveCooldown())


def test_keras_version_guard() -> None:
    assert MODELLED_KERAS == ("3.15.1",)
    check_keras_version("3.15.1")
    check_keras_version("3.15.1+cpu")
    with pytest.raises(UnmodelledKerasError, match="23559"):
        check_keras_version("3.16.0")
    check_keras_version()  # the installed keras (read from metadata, not imported)


def test_a_million_steps_is_fast() -> None:
    epochs, steps = 1000, 1000
    losses = [[1.0] * steps for _ in range(epochs)]
    losses[-1][-1] = NAN
    text = 'stop when loss is not finite; save every 100000 steps to "s{epoch}-{batch}.keras"; stop after 2h'
    start = time.perf_counter()
    out = simulate(text, {"loss": [1.0] * epochs}, batch_losses=losses, step_seconds=0.001)
    elapsed = time.perf_counter() - start
    assert out.stop == Stop("stop when loss is not finite", epochs - 1)
    assert len(out.saves) == 10
    assert elapsed < 3.0, elapsed


# --------------------------------------------------------------------------- backends


def test_backend_changes_only_the_backend_facts(monkeypatch: pytest.MonkeyPatch) -> None:
    from policy.reference import FACTS, semantics_for

    text = "stop when val_loss not improving for 1"
    tiny = {"val_loss": [2e-40, 1e-40, 0.5]}
    over = {"val_loss": [1.0, 3.5e38, 0.5]}
    assert simulate(text, tiny, backend="tensorflow").stop.epoch == 1  # type: ignore[union-attr]
    assert simulate(text, tiny, backend="jax").stop.epoch == 1  # type: ignore[union-attr]
    assert simulate(text, tiny, backend="torch").stop.epoch == 2  # type: ignore[union-attr]
    with pytest.raises(KerasWouldRaise):
        simulate(text, over, backend="tensorflow")
    assert simulate(text, over, backend="jax").stop.epoch == 1  # type: ignore[union-attr]
    # Our threshold rounds an over-range value to inf everywhere, TensorFlow included.
    assert simulate("stop when val_loss > 1", over, backend="tensorflow").stop.epoch == 1  # type: ignore[union-attr]
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    assert simulate(text, tiny).stop.epoch == 2  # type: ignore[union-attr]
    assert semantics_for("torch").facts is FACTS["torch"]


def test_default_backend_reads_keras_json_without_keras(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from policy.reference import default_backend

    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert default_backend() == "tensorflow"
    (tmp_path / "keras.json").write_text('{"backend": "jax", "floatx": "float32"}')
    assert default_backend() == "jax"
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    assert default_backend() == "torch"


def test_unknown_backend_or_mismatched_semantics_is_a_policy_error() -> None:
    from policy.reference import Semantics

    with pytest.raises(PolicyError, match="numpy"):
        simulate("stop after 2 epochs", {"loss": [1.0]}, backend="numpy")
    with pytest.raises(PolicyError, match="torch"):
        simulate("stop after 2 epochs", {"loss": [1.0]}, backend="jax", semantics=Semantics("torch"))
