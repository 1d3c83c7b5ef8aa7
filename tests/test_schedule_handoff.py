"""A finite schedule hands the learning rate over to `multiply lr ... when` once it ends."""

from __future__ import annotations

import math
from pathlib import Path

from policy import parse_policy, simulate
from policy.reference import round_f32
from policy.testing import run_in_keras

POLICY = "warm up lr to 0.1 over 3 epochs; multiply lr by 0.5 when val_loss not improving for 1"
# Improves for 4 epochs, then stalls: the plateau rule halves the lr from epoch 5 on.
HISTORY = {"val_loss": [1.0, 0.9, 0.8, 0.7, 0.7, 0.7, 0.6, 0.6]}


def test_warm_up_then_plateau_is_a_valid_policy() -> None:
    assert len(parse_policy(POLICY).rules) == 2


def test_reference_hands_over_after_the_warm_up() -> None:
    out = simulate(POLICY, HISTORY, initial_lr=0.01)
    expected = [0.1 / 3, 0.2 / 3, 0.1, 0.1, 0.1, 0.05, 0.025, 0.025]
    assert out.learning_rates == tuple(round_f32(x) for x in expected)


def test_cosine_reaches_its_end_value_one_epoch_after_it_then_leaves_the_lr_alone() -> None:
    out = simulate("cosine lr to 0.01 over 2 epochs", {"loss": [1.0] * 5}, initial_lr=0.1)
    cosine = [0.01 + 0.09 * (1 + math.cos(math.pi * t / 2)) / 2 for t in range(2)]
    assert out.learning_rates == tuple(round_f32(x) for x in [*cosine, 0.01, 0.01, 0.01])


def test_keras_agrees_with_the_reference(tmp_path: Path) -> None:
    predicted = simulate(POLICY, HISTORY, initial_lr=0.01)
    measured = run_in_keras(POLICY, HISTORY, initial_lr=0.01, workdir=tmp_path)
    assert measured == predicted
    assert measured.learning_rates[-1] == round_f32(0.025)


def test_a_rule_reading_learning_rate_after_the_lr_rule_works_in_strict_keras(tmp_path: Path) -> None:
    # Keras never logs learning_rate itself; the lr rule writes it, and the strict metric check
    # (which runs first) must not call it missing.
    text = "multiply lr by 0.5 when val_loss not improving for 1; stop when learning_rate < 0.003"
    history = {"val_loss": [1.0] * 6}
    predicted = simulate(text, history, initial_lr=0.01)
    assert predicted.stop is not None and predicted.stop.epoch == 3
    assert run_in_keras(text, history, initial_lr=0.01, workdir=tmp_path, strict=True) == predicted
