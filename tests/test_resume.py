"""Backups resume every rule exactly; files appear only when complete; bad backups are refused.

These run in-process: an interruption is an exception raised out of ``fit`` at an epoch
begin (what a crash does), and the resumed run is the same policy compiled again, as a
restarted script would. Real SIGKILLs at random moments are in ``test_kills.py``.
"""

from __future__ import annotations

import os
import pathlib
import signal
from typing import Any

import keras
import numpy as np
import pytest

from policy import PolicyError, compile_policy
from policy.callbacks import AtomicModelCheckpoint, PolicyBackup, Preempted
from policy.testing import run_callbacks
from policy.testing.harness import tiny_model, working_directory

EVERYTHING = (
    'backup to "bk/"; decay lr by 0.5 every 1 epochs; stop when val_loss not improving for 2, restore best; '
    'save top 2 on val_loss to "ck/{epoch}.keras"; log to "log.csv"; save best on val_loss to "best.keras"; '
    "stop when val_loss not improving by 1% for 3 or val_loss < 0.1, restore best val_loss; stop after 40 steps"
)
PLATEAU_LR = (
    "multiply lr by 0.5 when val_loss not improving for 1, cooldown 1; "
    "stop when val_loss not improving by 0.01 for 3; save every 2 epochs to 'e/{epoch}.keras'; backup to 'bk'"
)
# The minimum's step count must survive the restarts: counted afresh, the stop at epoch 6 would be held.
MINIMUM = "train at least 16 steps; stop when val_loss not improving for 1; backup to 'bk'"
# The weights the lr rule keeps must survive the restarts: without them a later cut restores nothing.
ROLLBACK = "multiply lr by 0.5 when val_loss not improving for 1, restore best; backup to 'bk'"
KEEP_LAST = (
    'save every epoch to "ck/e{epoch}.keras", keep last 2; save every 2 epochs to "p/{epoch}.keras", keep last 1; '
    'save weights every 4 steps to "s/{epoch}-{batch}.weights.h5", keep last 2; backup to "bk"'
)
# The averages' last values must survive the restarts: refilled from nothing, the stop moves.
AVERAGED = "stop when val_loss averaged over 3 epochs not improving for 2 or val_loss < 0.5; backup to 'bk'"
# The rate handed over by a step schedule (a cut at 15 steps; the one at 9 is dropped) and the
# schedule's starting rate must both survive the restarts.
HANDOVER = "linear lr to 0.02 over 10 steps; multiply lr by 0.5 when val_loss not improving for 1, cooldown 1; backup to 'bk'"
HISTORY = {
    "loss": [1.0, 0.9, 0.8, 0.85, 0.7, 0.75, 0.76, 0.77, 0.78],
    "val_loss": [1.0, 0.9, 0.95, 0.85, 0.86, 0.84, 0.9, 0.91, 0.92],
}


class Crash(keras.callbacks.Callback):  # type: ignore[misc]
    """Raises at the begin of epoch ``at``: the run dies there, as a crash would."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if epoch == self.at:
            raise RuntimeError(f"crash at epoch {epoch}")


def _csv_rows(path: pathlib.Path) -> list[str]:
    return path.read_text().splitlines()


def _files(folder: pathlib.Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and "bk" not in p.parts)


@pytest.mark.parametrize(
    "text",
    [EVERYTHING, PLATEAU_LR, MINIMUM, ROLLBACK, KEEP_LAST, AVERAGED, HANDOVER],
    ids=["everything", "plateau-lr", "minimum", "rollback", "keep-last", "averaged", "handover"],
)
@pytest.mark.parametrize("crashes", [(2,), (1, 4), (3, 3, 6)], ids=str)
def test_crashed_runs_resume_with_the_uninterrupted_decisions(
    text: str, crashes: tuple[int, ...], tmp_path: pathlib.Path
) -> None:
    whole = run_callbacks(compile_policy(text), HISTORY, workdir=tmp_path / "whole", steps_per_epoch=3)
    for at in crashes:
        with pytest.raises(RuntimeError, match="crash"):
            run_callbacks([*compile_policy(text), Crash(at)], HISTORY, workdir=tmp_path / "cut", steps_per_epoch=3)
    last = run_callbacks(compile_policy(text), HISTORY, workdir=tmp_path / "cut", steps_per_epoch=3)
    learning_rates = list(last.outcome.learning_rates)
    saves = list(last.outcome.saves)
    resumed_from = whole.outcome.epochs_run - last.outcome.epochs_run
    # The resumed run makes exactly the uninterrupted run's decisions from where it resumed.
    assert tuple(learning_rates) == whole.outcome.learning_rates[resumed_from:]
    assert last.outcome.step_learning_rates == whole.outcome.step_learning_rates[resumed_from * 3 :]
    assert tuple(saves) == tuple(s for s in whole.outcome.saves if s[0] >= resumed_from)
    assert last.outcome.stop == whole.outcome.stop
    assert last.outcome.restored_epoch == whole.outcome.restored_epoch
    assert last.outcome.rollbacks == tuple(r for r in whole.outcome.rollbacks if r[0] >= resumed_from)
    for mine, theirs in zip(last.final_weights, whole.final_weights, strict=True):
        np.testing.assert_array_equal(mine, theirs)
    # The same files, and (for the log) one row per epoch, none lost, none doubled.
    assert _files(tmp_path / "cut") == _files(tmp_path / "whole")
    if (tmp_path / "whole" / "log.csv").exists():
        assert _csv_rows(tmp_path / "cut" / "log.csv") == _csv_rows(tmp_path / "whole" / "log.csv")
    assert not (tmp_path / "cut" / "bk").exists()  # deleted once fit finished, as Keras does


def test_rule_order_does_not_change_a_resume(tmp_path: pathlib.Path) -> None:
    first = 'backup to "bk"; decay lr by 0.5 every 1 epochs; stop when val_loss not improving for 2'
    last = 'decay lr by 0.5 every 1 epochs; stop when val_loss not improving for 2; backup to "bk"'
    outcomes = []
    for name, text in (("first", first), ("last", last)):
        assert isinstance(compile_policy(text)[-1], PolicyBackup)
        with pytest.raises(RuntimeError):
            run_callbacks([*compile_policy(text), Crash(2)], HISTORY, workdir=tmp_path / name)
        outcomes.append(run_callbacks(compile_policy(text), HISTORY, workdir=tmp_path / name).outcome)
    assert outcomes[0].learning_rates == outcomes[1].learning_rates
    # Resumed at epoch 2 with the schedule's starting lr, not the decayed one (0.01 * 0.5**2).
    assert outcomes[0].learning_rates[0] == pytest.approx(0.0025)


def _crash_then(text: str, tmp_path: pathlib.Path, at: int = 3) -> pathlib.Path:
    with pytest.raises(RuntimeError):
        run_callbacks([*compile_policy(text), Crash(at)], HISTORY, workdir=tmp_path)
    return tmp_path / "bk"


def test_a_backup_of_another_policy_is_refused_naming_the_rule(tmp_path: pathlib.Path) -> None:
    _crash_then("stop when val_loss not improving for 2; backup to 'bk'", tmp_path)
    with pytest.raises(PolicyError, match="without the rule 'stop when val_loss not improving for 3'") as err:
        run_callbacks(compile_policy("stop when val_loss not improving for 3; backup to 'bk'"), HISTORY, workdir=tmp_path)
    assert err.value.line == 1 and err.value.column == 1


def test_a_damaged_newest_backup_falls_back_to_the_one_before(tmp_path: pathlib.Path) -> None:
    text = "decay lr by 0.5 every 1 epochs; backup to 'bk'"
    backup = _crash_then(text, tmp_path)
    newest = sorted(backup.iterdir())[-1]
    state = newest / "state.json"
    state.write_bytes(state.read_bytes()[: len(state.read_bytes()) // 2])  # truncated
    with pytest.warns(UserWarning, match="resuming from the complete earlier generation"):
        out = run_callbacks(compile_policy(text), HISTORY, workdir=tmp_path).outcome
    assert out.learning_rates[0] == pytest.approx(0.01 * 0.5**2)  # epoch 2, one before the lost epoch 3


def test_a_backup_damaged_beyond_repair_is_an_error_and_applies_nothing(tmp_path: pathlib.Path) -> None:
    text = "decay lr by 0.5 every 1 epochs; backup to 'bk'"
    backup = _crash_then(text, tmp_path)
    for generation in backup.iterdir():
        weights = generation / "model.weights.h5"
        weights.write_bytes(weights.read_bytes()[:100])
    cbs = compile_policy(text)
    model = tiny_model()
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(PolicyError, match="is damaged and no complete earlier backup is left"):
        run_callbacks(cbs, HISTORY, workdir=tmp_path)
    for now, then in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(now, then)


def test_a_kill_during_a_checkpoint_write_leaves_the_previous_file(tmp_path: pathlib.Path) -> None:
    model = tiny_model()
    path = str(tmp_path / "best.keras")
    model.save(path)
    before = pathlib.Path(path).read_bytes()
    cb = AtomicModelCheckpoint(path)
    cb.set_model(model)

    class Dies:
        def __init__(self, model: Any) -> None:
            self.model = model

        def save(self, filepath: str, overwrite: bool = True) -> None:
            with open(filepath, "wb") as f:
                f.write(b"half a zip")
            raise KeyboardInterrupt  # killed in the middle of the write

    original = type(model).save
    try:
        type(model).save = lambda self, filepath, overwrite=True: Dies(self).save(filepath)
        with pytest.raises(KeyboardInterrupt):
            cb.on_epoch_end(0, {"val_loss": 1.0})
    finally:
        type(model).save = original
    assert pathlib.Path(path).read_bytes() == before
    assert os.listdir(tmp_path) == ["best.keras"]  # the temporary file went with the failure
    cb.on_epoch_end(1, {"val_loss": 1.0})
    keras.saving.load_model(path)  # a complete model file


@pytest.mark.parametrize("budget", ["stop after 10s", "stop after 10 steps"])
def test_budgets_count_training_across_restarts(budget: str, tmp_path: pathlib.Path) -> None:
    text = f"{budget}; backup to 'bk'"
    kw: dict[str, Any] = {"steps_per_epoch": 3, "step_seconds": 1.0}
    whole = run_callbacks(compile_policy(text), HISTORY, workdir=tmp_path / "whole", **kw).outcome
    with pytest.raises(RuntimeError):
        run_callbacks([*compile_policy(text), Crash(2)], HISTORY, workdir=tmp_path / "cut", **kw)
    resumed = run_callbacks(compile_policy(text), HISTORY, workdir=tmp_path / "cut", **kw).outcome
    # 10 batches of 1 s: the budget ends in the 4th epoch (epoch 3), batch 0, both times.
    assert whole.stop is not None and resumed.stop == whole.stop and whole.stop.epoch == 3
    assert resumed.epochs_run == 2  # epochs 2 and 3, after the backup of epoch 1


def test_a_backup_being_written_when_killed_is_swept_away(tmp_path: pathlib.Path) -> None:
    text = "decay lr by 0.5 every 1 epochs; backup to 'bk'"
    backup = _crash_then(text, tmp_path)
    half = backup / ".partial-99999-generation-00000009"
    half.mkdir()
    (half / "model.weights.h5").write_bytes(b"half")
    seen: list[bool] = []

    class Look(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            seen.append(half.exists())

    out = run_callbacks([*compile_policy(text), Look()], HISTORY, workdir=tmp_path).outcome
    assert out.learning_rates[0] == pytest.approx(0.01 * 0.5**3)  # resumed from the complete epoch 2 backup
    assert seen and not any(seen)  # gone at train begin


def test_time_based_saves_count_training_time_across_restarts(tmp_path: pathlib.Path) -> None:
    """The time since the last timed save is in the backup: the resumed run writes at the batches the
    uninterrupted run wrote at (counted afresh, every interval would restart at the resume)."""
    text = 'save every 1s to "t/{epoch}-{batch}.keras"; backup to "bk"'
    options: dict[str, Any] = {"steps_per_epoch": 3, "step_seconds": 0.5}
    whole = run_callbacks(compile_policy(text), HISTORY, workdir=tmp_path / "whole", **options)
    for at in (2, 5):
        with pytest.raises(RuntimeError, match="crash"):
            run_callbacks([*compile_policy(text), Crash(at)], HISTORY, workdir=tmp_path / "cut", **options)
    last = run_callbacks(compile_policy(text), HISTORY, workdir=tmp_path / "cut", **options)
    resumed_from = whole.outcome.epochs_run - last.outcome.epochs_run
    assert resumed_from > 0
    assert last.outcome.saves == tuple(s for s in whole.outcome.saves if s[0] >= resumed_from)
    assert _files(tmp_path / "cut") == _files(tmp_path / "whole")


# --------------------------------------------------------------------------- inside an epoch

MID_EPOCH = (
    "backup to 'bk' every 2 steps; decay lr by 0.5 every 1 epochs; "
    "save weights every 3 steps to 'st/{epoch}-{batch}.weights.h5'; log to 'log.csv'; stop after 17 steps"
)


class CrashAtBatch(keras.callbacks.Callback):  # type: ignore[misc]
    """Raises at the end of training batch ``at = (epoch, batch)``; with ``sigterm``, sends the
    process a SIGTERM there instead (the backup then writes itself and ends fit)."""

    def __init__(self, at: tuple[int, int], sigterm: bool = False) -> None:
        super().__init__()
        self.at = at
        self.sigterm = sigterm
        self.epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if (self.epoch, batch) == self.at:
            if self.sigterm:
                os.kill(os.getpid(), signal.SIGTERM)
            else:
                raise RuntimeError("crash")


def _learning(spe: int) -> Any:
    """A model that really learns (dropout included), the same from the same seed."""
    keras.utils.set_random_seed(7)
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dropout(0.3), keras.layers.Dense(1)]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", metrics=["mae"], steps_per_execution=spe)
    return model


def _fit_learning(workdir: pathlib.Path, spe: int, extra: list[Any], before: bool = False) -> tuple[Any, list[Any]]:
    x = np.random.RandomState(0).randn(20, 3).astype("float32")
    y = x @ np.array([[1.0], [2.0], [-1.0]], "float32") + 0.5
    workdir.mkdir(parents=True, exist_ok=True)
    model = _learning(spe)
    rows: list[Any] = []
    logger = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: rows.append((e, logs["loss"], logs["mae"])))
    callbacks = compile_policy(MID_EPOCH)
    callbacks = [*extra, *callbacks] if before else [*callbacks, *extra]
    with working_directory(workdir):
        model.fit(x, y, batch_size=4, epochs=4, shuffle=False, verbose=0, callbacks=[logger, *callbacks],
                  validation_data=(x[:4], y[:4]))
    return model, rows


def _spes() -> list[int]:
    return [1] if keras.backend.backend() == "torch" else [1, 2]  # torch runs one batch per execution


@pytest.mark.parametrize("spe", _spes())
@pytest.mark.parametrize(("at", "before", "sigterm"), [(0, True, False), (1, False, False), (2, False, True)], ids=str)
def test_a_backup_inside_an_epoch_resumes_exactly(
    spe: int, at: int, before: bool, sigterm: bool, tmp_path: pathlib.Path
) -> None:
    """Killed inside an epoch (after a step backup, or before it: the backup of two batches
    earlier; or by SIGTERM, which writes one), the resumed run trains every batch once: the
    weights, the epoch logs (running metrics included), the CSV rows and the step files are
    the uninterrupted run's, bit for bit, with steps_per_execution 1 and 2."""
    whole, whole_rows = _fit_learning(tmp_path / "whole", spe, [])
    ends = list(range(spe - 1, 5 + spe - 1, spe))  # the batch indices fit's hooks see
    point = [(0, ends[-1]), (1, ends[-1]), (2, ends[0])][at]  # crashed before the backup at (0, last): resumes from batch 3
    crash = CrashAtBatch(point, sigterm=sigterm)
    with pytest.raises(Preempted if sigterm else RuntimeError):
        _fit_learning(tmp_path / "cut", spe, [crash], before)
    resumed, rows = _fit_learning(tmp_path / "cut", spe, [])
    for mine, theirs in zip(resumed.get_weights(), whole.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    assert rows == [r for r in whole_rows if r[0] >= point[0]]
    assert _csv_rows(tmp_path / "cut" / "log.csv") == _csv_rows(tmp_path / "whole" / "log.csv")
    assert _files(tmp_path / "cut") == _files(tmp_path / "whole")


def test_a_backup_inside_an_epoch_needs_the_same_batches(tmp_path: pathlib.Path) -> None:
    if keras.backend.backend() == "torch":
        pytest.skip("torch runs one batch per execution")
    with pytest.raises(RuntimeError):
        _fit_learning(tmp_path, 1, [CrashAtBatch((1, 2))])
    with pytest.raises(PolicyError, match="taken inside an epoch of 5 batches run 1 per execution"):
        _fit_learning(tmp_path, 2, [])
