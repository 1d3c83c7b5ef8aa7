"""`, baseline B` means the same on every Keras: the one installed (3.15.1) and the next.

keras-team/keras PR 23559 (merged after 3.15.1) makes EarlyStopping reset ``wait`` on every
improvement, which leaves ``baseline`` with no effect. The package accepts only the tested
Keras (pyproject.toml), but the compiler is ready: on a Keras whose EarlyStopping no longer
honours the baseline it compiles the rule to :class:`BaselineEarlyStopping`. Here the next
Keras is simulated by giving Keras's EarlyStopping the merged ``on_epoch_end``, and the real
``fit`` is checked against ``simulate``, which keeps the one meaning.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import pytest

from policy import compile_policy, simulate
from policy.callbacks.baseline import BaselineEarlyStopping, keras_honours_baseline
from policy.reference import MODELLED_KERAS
from policy.testing.harness import run_callbacks

LR = 0.01

CASES = {
    # Below the bar the whole time: 3.15.1 keeps counting and stops at epoch 3; ignoring the
    # baseline, every improvement resets wait and the run goes on.
    "never-clears": (
        "stop when val_accuracy not improving for 2, baseline 0.6",
        {"val_accuracy": [0.3, 0.4, 0.5, 0.5, 0.7, 0.7]},
    ),
    # Clears the bar at epoch 2, then plateaus: both meanings stop, at the same epoch.
    "clears": (
        "stop when val_accuracy not improving for 2, baseline 0.6",
        {"val_accuracy": [0.3, 0.65, 0.7, 0.7, 0.7, 0.7]},
    ),
    # min mode, a min_delta, restore best, a warm-up.
    "min-restore": (
        "stop when val_loss not improving by 0.01 for 2, restore best, ignore first 1 epochs, baseline 0.5",
        {"val_loss": [2.0, 0.9, 0.8, 0.79, 0.7, 0.75, 0.69, 0.6]},
    ),
}


def _pr_23559_on_epoch_end(self: Any, epoch: int, logs: dict[str, Any] | None = None) -> None:
    """EarlyStopping.on_epoch_end as keras PR 23559 leaves it: any improvement resets wait."""
    if self.monitor_op is None:
        self._set_monitor_op()
    current = self.get_monitor_value(logs)
    if current is None or epoch < self.start_from_epoch:
        return
    if self.restore_best_weights and self.best_weights is None:
        self.best_weights = self.model.get_weights()
        self.best_epoch = epoch
    self.wait += 1
    if self._is_improvement(current, self.best):
        self.best = current
        self.best_epoch = epoch
        if self.restore_best_weights:
            self.best_weights = self.model.get_weights()
        self.wait = 0
        return
    if self.wait >= self.patience and epoch > 0:
        self.stopped_epoch = epoch
        self.model.stop_training = True


def test_the_probe_also_refuses_a_keras_that_starts_from_the_baseline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another way a release could move the meaning: the baseline as the starting best."""
    original = keras.callbacks.EarlyStopping.on_train_begin

    def start_from_baseline(self: Any, logs: dict[str, Any] | None = None) -> None:
        original(self, logs)
        self.best = self.baseline

    monkeypatch.setattr(keras.callbacks.EarlyStopping, "on_train_begin", start_from_baseline)
    keras_honours_baseline.cache_clear()
    try:
        assert not keras_honours_baseline()
        cb = _early_stopping(compile_policy(CASES["never-clears"][0]))
        assert type(cb) is BaselineEarlyStopping
        cb.on_train_begin()
        assert cb.best is None  # ours starts from no best, whatever Keras's class does
    finally:
        monkeypatch.undo()
        keras_honours_baseline.cache_clear()
    assert keras_honours_baseline()


@pytest.fixture
def next_keras(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(keras.callbacks.EarlyStopping, "on_epoch_end", _pr_23559_on_epoch_end)
    keras_honours_baseline.cache_clear()
    yield
    monkeypatch.undo()
    keras_honours_baseline.cache_clear()


def _early_stopping(callbacks: list[Any]) -> Any:
    (cb,) = [cb for cb in callbacks if isinstance(cb, keras.callbacks.EarlyStopping)]
    return cb


def test_the_installed_keras_honours_the_baseline_and_gets_its_own_class() -> None:
    assert keras.version() in MODELLED_KERAS
    assert keras_honours_baseline()
    cb = _early_stopping(compile_policy(CASES["never-clears"][0]))
    assert type(cb) is keras.callbacks.EarlyStopping and cb.baseline == 0.6


@pytest.mark.usefixtures("next_keras")
def test_the_probe_sees_the_next_keras_and_the_compiler_keeps_the_meaning() -> None:
    assert not keras_honours_baseline()
    cb = _early_stopping(compile_policy(CASES["never-clears"][0]))
    assert type(cb) is BaselineEarlyStopping
    assert (cb.monitor, cb.patience, cb.baseline, cb.mode) == ("val_accuracy", 2, 0.6, "max")
    # Without a baseline there is nothing to keep: Keras's own class, whatever its release.
    plain = _early_stopping(compile_policy("stop when val_accuracy not improving for 2"))
    assert type(plain) is keras.callbacks.EarlyStopping


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.usefixtures("next_keras")
def test_in_real_fit_on_the_next_keras_baseline_means_what_simulate_says(case: str, tmp_path: Path) -> None:
    text, history = CASES[case]
    ran = run_callbacks(compile_policy(text), history, initial_lr=LR, workdir=tmp_path / "ours").outcome
    assert ran == simulate(text, history, initial_lr=LR, strict=True)


@pytest.mark.usefixtures("next_keras")
def test_the_simulated_next_keras_really_differs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Teeth: Keras's own class on the simulated next release ignores the baseline."""
    import policy.compiler

    monkeypatch.setattr(policy.compiler, "keras_honours_baseline", lambda: True)  # compile to Keras's class
    text, history = CASES["never-clears"]
    callbacks = compile_policy(text)
    assert type(_early_stopping(callbacks)) is keras.callbacks.EarlyStopping
    ran = run_callbacks(callbacks, history, initial_lr=LR, workdir=tmp_path).outcome
    assert (ran.epochs_run, ran.stop) == (6, None)
    assert simulate(text, history).epochs_run == 4


@pytest.mark.parametrize("case", sorted(CASES))
def test_our_class_on_the_installed_keras_is_keras_own(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BaselineEarlyStopping and 3.15.1's EarlyStopping decide alike, both as simulate says."""
    import policy.compiler

    text, history = CASES[case]
    keras_run = run_callbacks(compile_policy(text), history, initial_lr=LR, workdir=tmp_path / "keras")
    monkeypatch.setattr(policy.compiler, "keras_honours_baseline", lambda: False)
    callbacks = compile_policy(text)
    assert type(_early_stopping(callbacks)) is BaselineEarlyStopping
    ours_run = run_callbacks(callbacks, history, initial_lr=LR, workdir=tmp_path / "ours")
    assert ours_run.outcome == keras_run.outcome == simulate(text, history, initial_lr=LR, strict=True)
    assert all((a == b).all() for a, b in zip(ours_run.final_weights, keras_run.final_weights, strict=True))


def test_pyproject_accepts_exactly_the_modelled_keras() -> None:
    pyproject = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text(encoding="utf-8")
    (spec,) = re.findall(r'^\s*"(keras[^-"][^"]*)"', pyproject, re.M)
    assert spec == "keras==" + MODELLED_KERAS[-1] and len(MODELLED_KERAS) == 1
