"""Recorded runs from real ``fit``: a TensorBoard folder and a CSVLogger file of the same run replay
exactly as ``simulate`` replays the in-memory ``History.history``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from policy import replay, simulate
from policy.tblogs import read_log_folder

pytest.importorskip("tensorboard")

ROOT = Path(__file__).resolve().parent.parent
EPOCHS = 8


def _fit(folder: Path, **fit_args: Any) -> tuple[dict[str, list[float]], list[dict[str, float]]]:
    """A tiny noisy classifier trained with TensorBoard and CSVLogger; History.history and every epoch's logs."""
    import keras
    import numpy as np

    keras.utils.set_random_seed(3)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(48, 6)).astype("float32")
    y = ((x[:, :1] + rng.normal(scale=1.5, size=(48, 1))) > 0).astype("float32")  # noisy: val_loss wanders
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.SGD(0.3), loss="binary_crossentropy", metrics=["accuracy"])
    seen: list[dict[str, float]] = []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(dict(logs)))
    history = model.fit(
        x, y, validation_split=0.25, epochs=EPOCHS, batch_size=8, verbose=0,
        callbacks=[keras.callbacks.TensorBoard(str(folder / "tb")), keras.callbacks.CSVLogger(str(folder / "log.csv")), record],
        **fit_args,
    )
    return history.history, seen


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[float]]]:
    folder = tmp_path_factory.mktemp("fit")
    history, _ = _fit(folder)
    return folder, history


def _policies(history: dict[str, list[float]]) -> list[str]:
    """Policies that stop at different epochs of this run (one threshold taken from the run itself)."""
    loss = history["loss"]
    middle = sorted(loss)[len(loss) // 2]
    return [
        "stop when val_loss not improving for {1..3}; save best on val_loss min",
        f"stop when loss <= {middle!r}",
        "stop when val_accuracy not improving for 2, restore best; save top 2 on val_loss to 'ck/{epoch}.keras'",
    ]


def test_tensorboard_logs_read_back_exactly_the_history(recorded: tuple[Path, dict[str, list[float]]]) -> None:
    folder, history = recorded
    logs, notes = read_log_folder(folder / "tb")
    assert notes == []
    assert len(logs) == EPOCHS
    for epoch, row in enumerate(logs):
        # TensorBoard adds the optimizer's learning rate; every other value is History's, to the bit.
        assert row.pop("learning_rate") == pytest.approx(0.3)
        assert row == {key: values[epoch] for key, values in history.items()}


def test_csv_and_tensorboard_runs_replay_as_simulate_on_the_history(recorded: tuple[Path, dict[str, list[float]]]) -> None:
    folder, history = recorded
    stops = set()
    for template in _policies(history):
        report = replay(template, [folder / "log.csv", folder / "tb"])
        for variant in report.variants:
            expected = simulate(variant.policy, history)
            csv_run, tb_run = variant.runs
            assert (csv_run.status, tb_run.status) == ("replayed", "replayed"), (csv_run.reason, tb_run.reason)
            assert csv_run.outcome == expected, variant.policy
            assert tb_run.outcome == expected, variant.policy
            assert (csv_run.best_run, csv_run.best_recorded) == (tb_run.best_run, tb_run.best_recorded)
            stops.add(expected.epochs_run)
    assert len(stops) > 1, f"the policies should stop at different epochs of this run, got {stops}"


def test_validation_every_other_epoch_is_replayed_strictly_and_leniently(tmp_path: Path) -> None:
    _, seen = _fit(tmp_path, validation_freq=2)
    policy = "stop when val_loss not improving for 1"
    strict = replay(policy, [tmp_path / "tb"]).runs[0]
    # The strict check judges val_loss at the first epoch that validated (as compile_policy does).
    assert strict.status == "replayed"
    assert strict.outcome == simulate(policy, seen, strict=True, validation_freq=2)
    assert f"val_loss logged in {EPOCHS // 2} of {EPOCHS} epochs" in strict.notes
    # TensorBoard and CSVLogger (NA where there was no validation) keep which epochs were
    # validated; History.history cannot (its val lists are shorter), so compare with the logs seen.
    expected = simulate(policy, seen)
    for run in replay(policy, [tmp_path / "tb", tmp_path / "log.csv"], strict=False).runs:
        assert (run.status, run.outcome) == ("replayed", expected), run.run


def test_the_cli_reads_a_tensorboard_folder_without_importing_tensorflow(recorded: tuple[Path, dict[str, list[float]]]) -> None:
    folder, _ = recorded
    code = (
        "import sys, time, policy.cli\n"
        "t = time.perf_counter()\n"
        f"rc = policy.cli.main(['replay', 'stop when val_loss not improving for 2', '--history', {str(folder / 'tb')!r}])\n"
        "frameworks = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'jax', 'torch'))\n"
        "assert 'tensorboard' in sys.modules, 'the event reader was not used'\n"
        "print('FRAMEWORKS', frameworks, file=sys.stderr)\n"
        "sys.exit(rc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"})
    assert done.returncode == 0, done.stderr
    assert "FRAMEWORKS []" in done.stderr
    assert "Replayed 1 of 1 runs." in done.stdout


def test_a_garbage_event_file_fails_the_run_with_its_name(tmp_path: Path) -> None:
    broken = tmp_path / "broken" / "train"
    broken.mkdir(parents=True)
    (broken / "events.out.tfevents.1.host.1.v2").write_bytes(b"\x00" * 64)
    (run,) = replay("stop when val_loss not improving for 2", [tmp_path / "broken"]).runs
    assert (run.status, run.run) == ("failed", str(tmp_path / "broken"))
    assert run.reason.startswith("no epoch scalars in train/ or validation/")


def test_reading_a_log_folder_leaves_kerass_tensorboard_callback_working(tmp_path: Path) -> None:
    """The event reader must not switch tensorboard to its TensorFlow stub for the whole process."""
    code = (
        "import sys, numpy as np\n"
        "from policy.tblogs import read_log_folder\n"
        f"logs, _ = read_log_folder({str(ROOT / 'examples' / 'runs' / 'run-7')!r})\n"
        "assert len(logs) == 40 and 'tensorflow' not in sys.modules\n"
        "import keras\n"
        "m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])\n"
        "m.compile('sgd', 'mse')\n"
        f"m.fit(np.zeros((4, 2)), np.zeros((4, 1)), epochs=1, verbose=0, callbacks=[keras.callbacks.TensorBoard({str(tmp_path / 'tb')!r})])\n"
        f"assert read_log_folder({str(tmp_path / 'tb')!r})[0] and True\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
