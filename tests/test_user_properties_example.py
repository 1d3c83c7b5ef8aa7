"""How a user property-tests their own policy with ``policy.testing.strategies``.

This file is the worked example the README points to: it imports only the public API, runs in
pure Python (``simulate`` never imports keras), and states properties of *one* policy over every
metric history Hypothesis can think of, including plateaus, exact ties, float32-invisible steps,
NaN and infinities.
"""

from __future__ import annotations

import itertools
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from policy import parse_policy, simulate
from policy.history import History
from policy.testing.strategies import histories

MY_POLICY = parse_policy(
    """
    stop when val_loss not improving for 3, restore best, ignore first 5 epochs
    multiply lr by 0.5 when val_loss not improving for 2, min lr 0.0001
    save best on val_loss to "ckpt/best.keras"
    stop after 20 epochs
    """
)

EXAMPLES = settings(max_examples=200, deadline=None, derandomize=True)


@EXAMPLES
@given(histories(["val_loss", "loss"], epochs=(1, 25), always=["val_loss", "loss"]))
def test_never_stops_before_epoch_5(history: History) -> None:
    outcome = simulate(MY_POLICY, history, initial_lr=0.001)
    if outcome.stop is not None:
        assert outcome.stop.epoch >= 5, outcome.stop
    # ...and never runs past the 20-epoch budget.
    assert outcome.epochs_run <= 20


@EXAMPLES
@given(histories(["val_loss", "loss"], epochs=(1, 25), always=["val_loss", "loss"]))
def test_learning_rate_never_below_min_lr_and_never_rises(history: History) -> None:
    lrs = simulate(MY_POLICY, history, initial_lr=0.001).learning_rates
    assert all(lr >= 0.0001 * (1 - 1e-6) for lr in lrs)  # float32 storage of 1e-4 is within an ulp
    assert all(later <= earlier for earlier, later in itertools.pairwise(lrs))


@EXAMPLES
@given(histories(["val_loss", "loss"], epochs=(1, 25), always=["val_loss", "loss"]))
def test_best_checkpoint_only_written_on_a_new_best(history: History) -> None:
    outcome = simulate(MY_POLICY, history, initial_lr=0.001)
    best = math.inf
    for epoch, path in outcome.saves:
        assert path == "ckpt/best.keras"
        value = history[epoch]["val_loss"]
        # A save means a strict improvement (compared in float32, so never a worse value).
        assert not value > best
        best = min(best, value) if not math.isnan(value) else best


@EXAMPLES
@given(st.integers(1, 4), histories(["val_accuracy"], epochs=(1, 12)))
def test_target_policy_stops_exactly_when_the_target_is_met(patience: int, history: History) -> None:
    """A property of a policy built on the fly: a target stops at the first epoch that meets it."""
    policy = parse_policy(f"stop when val_accuracy >= 0.9 or val_accuracy not improving for {patience}")
    outcome = simulate(policy, history)
    met = [e for e, logs in enumerate(history) if logs.get("val_accuracy", -math.inf) >= 0.9]
    if met and (outcome.stop is None or outcome.stop.epoch >= met[0]):
        # float32 rounding can make a value just below 0.9 meet the target, never the reverse.
        assert outcome.stop is not None and outcome.stop.epoch <= met[0]
