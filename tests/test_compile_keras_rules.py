"""Every phrasebook rule compiles to Keras's own callback and behaves like the hand-written one.

Each case runs the compiled policy and the hand-written Keras callbacks through the same
real ``model.fit`` with scripted epoch metrics (plateaus, exact ties, steps below float32
resolution) and compares what happened: epochs run, learning rate in each epoch, files
written, and the final weights.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import pytest

from policy import compile_policy, format_policy, parse_policy, why_failed, why_stopped
from policy.callbacks import AtomicModelCheckpoint, FitStart, PolicyBackup, TerminateOnNaNRecorder
from policy.testing import run_callbacks, run_in_keras

NAN = float("nan")

# Histories chosen so the decisions hinge on the details: exact ties, steps smaller than
# float32 can see (1.0 then 1.0 - 1e-9), min_delta exactly reached, NaN.
LOSSY = {
    "loss": [1.0, 0.9, 0.9, 0.8, 0.8, 0.8, 0.8, 0.7],
    "val_loss": [1.0, 1.0 - 1e-9, 0.95, 0.95, 0.9, 0.9001, 0.899, 0.899],
    "val_accuracy": [0.5, 0.6, 0.6, 0.6 + 1e-9, 0.62, 0.61, 0.7, 0.7],
    "val_auc": [0.7, 0.71, 0.71, 0.709, 0.72, 0.72, 0.72, 0.73],
}
TIED = {
    "loss": [1.0, 1.0, 1.0, 1.0, 1.0, 0.5],
    "val_loss": [1.0, 1.0, 1.0, 1.0 - 1e-9, 1.0, 0.5],
    "val_accuracy": [0.5, 0.55, 0.6, 0.6, 0.6, 0.6],
    "val_auc": [0.5, 0.5, 0.5, 0.5, 0.5, 0.5],
}
DELTA = {
    # 1.0 -> 0.95 improves by exactly 0.05 in float64, which float32 does not count with
    # min_delta 0.05 (0.95 + 0.05 == 1.0); 0.94 does.
    "loss": [1.0, 0.95, 0.94, 0.94, 0.93, 0.93, 0.93],
    "val_loss": [1.0, 0.95, 0.94, 0.94, 0.93, 0.93, 0.93],
}
HISTORIES = {"lossy": LOSSY, "tied": TIED, "delta": DELTA}

Factory = Callable[[], list[Any]]

# (policy text, hand-written callbacks, the class and arguments the rule must compile to)
PHRASEBOOK: list[tuple[str, Factory, type, dict[str, Any]]] = [
    (
        "stop when val_loss not improving for 3",
        lambda: [keras.callbacks.EarlyStopping(monitor="val_loss", patience=3, mode="min")],
        keras.callbacks.EarlyStopping,
        {"monitor": "val_loss", "patience": 3, "min_delta": 0, "restore_best_weights": False, "start_from_epoch": 0},
    ),
    (
        "stop when val_loss not improving for 3 epochs",
        lambda: [keras.callbacks.EarlyStopping(monitor="val_loss", patience=3, mode="min")],
        keras.callbacks.EarlyStopping,
        {"monitor": "val_loss", "patience": 3},
    ),
    (
        "stop when val_loss not improving by 0.05 for 2",
        lambda: [keras.callbacks.EarlyStopping(monitor="val_loss", min_delta=0.05, patience=2, mode="min")],
        keras.callbacks.EarlyStopping,
        {"monitor": "val_loss", "patience": 2, "min_delta": 0.05},
    ),
    (
        "stop when val_accuracy not improving for 2",
        lambda: [keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=2, mode="max")],
        keras.callbacks.EarlyStopping,
        {"monitor": "val_accuracy", "patience": 2, "mode": "max"},
    ),
    (
        "stop when loss not decreasing for 4",
        lambda: [keras.callbacks.EarlyStopping(monitor="loss", patience=4, mode="min")],
        keras.callbacks.EarlyStopping,
        {"monitor": "loss", "patience": 4, "mode": "min"},
    ),
    (
        "stop when val_auc not increasing for 1",
        lambda: [keras.callbacks.EarlyStopping(monitor="val_auc", patience=1, mode="max")],
        keras.callbacks.EarlyStopping,
        {"monitor": "val_auc", "patience": 1, "mode": "max"},
    ),
    (
        "stop when val_loss not improving for 2, restore best",
        lambda: [keras.callbacks.EarlyStopping(monitor="val_loss", patience=2, mode="min", restore_best_weights=True)],
        keras.callbacks.EarlyStopping,
        {"restore_best_weights": True},
    ),
    (
        "stop when val_loss not improving for 2, ignore first 4 epochs",
        lambda: [keras.callbacks.EarlyStopping(monitor="val_loss", patience=2, mode="min", start_from_epoch=4)],
        keras.callbacks.EarlyStopping,
        {"start_from_epoch": 4},
    ),
    (
        "stop when val_accuracy not improving for 2, baseline 0.6",
        lambda: [keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=2, mode="max", baseline=0.6)],
        keras.callbacks.EarlyStopping,
        {"baseline": 0.6},
    ),
    (
        "stop when loss is not finite",
        lambda: [keras.callbacks.TerminateOnNaN()],
        keras.callbacks.TerminateOnNaN,
        {"raise_error": False},
    ),
    (
        "fail when loss is not finite",
        lambda: [keras.callbacks.TerminateOnNaN(raise_error=True)],
        keras.callbacks.TerminateOnNaN,
        {"raise_error": True},
    ),
    (
        "save best on val_loss min",
        lambda: [
            keras.callbacks.ModelCheckpoint(
                "checkpoints/best.keras", monitor="val_loss", mode="min", save_best_only=True
            )
        ],
        keras.callbacks.ModelCheckpoint,
        {
            "filepath": "checkpoints/best.keras",
            "monitor": "val_loss",
            "save_best_only": True,
            "save_weights_only": False,
        },
    ),
    (
        'save best on val_loss min to "ckpt/best-{epoch:03d}.keras"',
        lambda: [
            keras.callbacks.ModelCheckpoint(
                "ckpt/best-{epoch:03d}.keras", monitor="val_loss", mode="min", save_best_only=True
            )
        ],
        keras.callbacks.ModelCheckpoint,
        {"filepath": "ckpt/best-{epoch:03d}.keras", "save_best_only": True},
    ),
    (
        'save best weights on val_loss min to "w-{epoch:03d}.weights.h5"',
        lambda: [
            keras.callbacks.ModelCheckpoint(
                "w-{epoch:03d}.weights.h5", monitor="val_loss", mode="min", save_best_only=True, save_weights_only=True
            )
        ],
        keras.callbacks.ModelCheckpoint,
        {"filepath": "w-{epoch:03d}.weights.h5", "save_best_only": True, "save_weights_only": True},
    ),
    (
        "save best on val_loss below 0.1",
        lambda: [
            keras.callbacks.ModelCheckpoint(
                "checkpoints/best.keras", monitor="val_loss", mode="min", save_best_only=True,
                initial_value_threshold=0.1,
            )
        ],
        keras.callbacks.ModelCheckpoint,
        {"best": 0.1, "save_best_only": True},
    ),
    (
        'save best on val_accuracy above 0.5 to "b.keras"',
        lambda: [
            keras.callbacks.ModelCheckpoint(
                "b.keras", monitor="val_accuracy", mode="max", save_best_only=True, initial_value_threshold=0.5
            )
        ],
        keras.callbacks.ModelCheckpoint,
        {"best": 0.5, "mode": "max"},
    ),
    (
        'save every epoch to "ckpt/e{epoch:03d}.keras"',
        lambda: [keras.callbacks.ModelCheckpoint("ckpt/e{epoch:03d}.keras", save_freq="epoch")],
        keras.callbacks.ModelCheckpoint,
        {"filepath": "ckpt/e{epoch:03d}.keras", "save_freq": "epoch", "save_best_only": False},
    ),
    (
        'save every 2 steps to "ckpt/e{epoch}-b{batch}.keras"',
        lambda: [keras.callbacks.ModelCheckpoint("ckpt/e{epoch}-b{batch}.keras", save_freq=2)],
        keras.callbacks.ModelCheckpoint,
        {"save_freq": 2, "save_best_only": False},
    ),
    (
        'save last to "ckpt/last.keras"',
        lambda: [keras.callbacks.ModelCheckpoint("ckpt/last.keras", save_freq="epoch")],
        keras.callbacks.ModelCheckpoint,
        {"filepath": "ckpt/last.keras", "save_freq": "epoch", "save_best_only": False},
    ),
    (
        "multiply lr by 0.5 when val_loss not improving for 2",
        lambda: [
            keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, min_delta=0, mode="min")
        ],
        keras.callbacks.ReduceLROnPlateau,
        {"monitor": "val_loss", "factor": 0.5, "patience": 2, "min_delta": 0, "cooldown": 0, "min_lr": 0},
    ),
    (
        "multiply lr by 0.1 when val_loss not improving by 0.01 for 1, cooldown 2, min lr 0.001",
        lambda: [
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss", factor=0.1, patience=1, min_delta=0.01, cooldown=2, min_lr=0.001, mode="min"
            )
        ],
        keras.callbacks.ReduceLROnPlateau,
        {"factor": 0.1, "patience": 1, "min_delta": 0.01, "cooldown": 2, "min_lr": 0.001},
    ),
    (
        'log to "train.csv"',
        lambda: [keras.callbacks.CSVLogger("train.csv")],
        keras.callbacks.CSVLogger,
        {"filename": "train.csv", "append": False},
    ),
    (
        'log to "train.csv", append',
        lambda: [keras.callbacks.CSVLogger("train.csv", append=True)],
        keras.callbacks.CSVLogger,
        {"filename": "train.csv", "append": True},
    ),
    (
        'log to tensorboard "logs/"',
        lambda: [keras.callbacks.TensorBoard(log_dir="logs/")],
        keras.callbacks.TensorBoard,
        {"log_dir": "logs/"},
    ),
    (
        'backup to "backup/"',
        lambda: [keras.callbacks.BackupAndRestore(backup_dir="backup/")],
        keras.callbacks.BackupAndRestore,
        {"backup_dir": "backup/", "save_freq": "epoch"},
    ),
    (
        'backup to "backup/" every 2 steps',
        lambda: [keras.callbacks.BackupAndRestore(backup_dir="backup/", save_freq=2)],
        keras.callbacks.BackupAndRestore,
        {"backup_dir": "backup/", "save_freq": 2},
    ),
]

# The Keras classes a policy extends, and the only methods the extension defines.
DISK_ONLY: dict[type, tuple[type, set[str]]] = {
    keras.callbacks.ModelCheckpoint: (AtomicModelCheckpoint, {"on_train_begin", "_save_model"}),
    keras.callbacks.BackupAndRestore: (
        PolicyBackup,
        {
            "attach", "on_train_begin", "on_train_end", "on_epoch_begin", "on_train_batch_end", "on_epoch_end",
            "_save_model", "_install_sigterm", "_uninstall_sigterm", "_on_sigterm", "_agreed_preempted",
            "_remove_generation", "_generations", "_newest_complete", "_verify", "_check_policy", "_apply",
            "_write_generation", "_start_skip", "_begin_resumed_epoch", "_restore_metrics", "_finish_resume",
            "_end_skip", "_restore_members", "_appended_logs",
        },
    ),
}
BACKUP_WIRING = {
    "_members", "_rules", "_source", "_positions", "_next", "_preempted", "_previous_handler", "_processes",
    "_batches_ended", "_epoch_now", "_in_epoch", "_resume", "_skip", "_skip_until", "_muted", "_saved_at",
}

_MODE_OPS = {"min": np.less, "max": np.greater}


def _mode(cb: Any) -> str:
    """The direction a Keras monitor was given (Keras keeps the string as ``mode``)."""
    return str(cb.mode)


def _ids() -> list[str]:
    return [text for text, *_ in PHRASEBOOK]


@pytest.mark.parametrize(("text", "hand", "cls", "args"), PHRASEBOOK, ids=_ids())
def test_compiles_to_keras_class_with_exact_arguments(
    text: str, hand: Factory, cls: type, args: dict[str, Any]
) -> None:
    # FitStart (before a checkpoint, backup or ReduceLROnPlateau) only resets Keras's cross-fit
    # state at train begin; the rule itself is Keras's own callback.
    # TerminateOnNaN's recorder (before it under "fail when") only notes when it fired.
    helpers = FitStart | TerminateOnNaNRecorder
    compiled = [cb for cb in compile_policy(text, strict=False) if not isinstance(cb, helpers)]
    kind = type(compiled[0])
    if cls in DISK_ONLY:
        # Keras's class, extended only in how its files reach the disk: every method that
        # decides whether and when to save (cadence, best value, path) is inherited unchanged.
        subclass, overridden = DISK_ONLY[cls]
        assert kind is subclass and issubclass(kind, cls)
        assert {name for name, v in vars(kind).items() if callable(v) and not name.startswith("__")} == overridden
        assert not {"_should_save_on_batch", "_should_save_model", "_get_file_path"} & overridden
    else:
        assert kind is cls  # Keras's own class, not a subclass
    ours, theirs = compiled[0], hand()[0]
    for name, value in args.items():
        assert getattr(ours, name) == value, name
    # Every attribute Keras set in __init__ matches the hand-written callback's.
    # `policy_rule` is the one attribute we add: the rule's text, for why_stopped().
    assert ours.policy_rule == format_policy(parse_policy(text))
    skip = {"model", "_model", "params", "_log_write_dir", "_writers", "_chief_worker_only", "_train_dir", "_val_dir"}
    skip.add("policy_rule")
    skip.add("async_safe")  # set on per-epoch savers, whose batch hook is a no-op (see compiler)
    skip |= BACKUP_WIRING  # which callbacks and rules make up the policy, set by compile_policy
    mine = {k: v for k, v in vars(ours).items() if k not in skip}
    hers = {k: v for k, v in vars(theirs).items() if k not in skip}
    assert mine.keys() == hers.keys()
    for key in mine:
        assert mine[key] == hers[key] or repr(mine[key]) == repr(hers[key]), key


def _same_run(
    text: str, hand: Factory, history: dict[str, list[float]], tmp_path: pathlib.Path, **kw: Any
) -> tuple[Any, Any]:
    compiled = compile_policy(text, strict=False)
    ours = run_callbacks(compiled, history, workdir=tmp_path / "ours", **kw)
    theirs = run_callbacks(hand(), history, workdir=tmp_path / "theirs", **kw)
    return ours, theirs


@pytest.mark.parametrize("history", list(HISTORIES), ids=list(HISTORIES))
@pytest.mark.parametrize(("text", "hand", "cls", "args"), PHRASEBOOK, ids=_ids())
def test_behaves_like_hand_written(
    text: str, hand: Factory, cls: type, args: dict[str, Any], history: str, tmp_path: pathlib.Path
) -> None:
    if cls is keras.callbacks.TensorBoard:
        pytest.importorskip("tensorboard", reason="TensorBoard writes summaries only with tensorboard installed")
    kw: dict[str, Any] = {"steps_per_epoch": 3} if "steps" in text else {}
    ours, theirs = _same_run(text, hand, HISTORIES[history], tmp_path, **kw)
    a, b = ours.outcome, theirs.outcome
    assert (a.epochs_run, a.learning_rates, a.saves, a.restored_epoch) == (
        b.epochs_run,
        b.learning_rates,
        b.saves,
        b.restored_epoch,
    )
    for x, y in zip(ours.final_weights, theirs.final_weights, strict=True):
        np.testing.assert_array_equal(x, y)
    if cls is keras.callbacks.CSVLogger:
        assert (tmp_path / "ours" / "train.csv").read_text() == (tmp_path / "theirs" / "train.csv").read_text()


def test_terminate_on_nan_same_batch_as_hand_written(tmp_path: pathlib.Path) -> None:
    history = {"loss": [1.0, NAN, 1.0], "val_loss": [1.0, 1.0, 1.0]}
    batch_losses = [[1.0, 1.0, 1.0], [1.0, float("inf"), NAN], [1.0, 1.0, 1.0]]
    ours, theirs = _same_run(
        "stop when loss is not finite",
        lambda: [keras.callbacks.TerminateOnNaN()],
        history,
        tmp_path,
        steps_per_epoch=3,
        batch_losses=batch_losses,
    )
    assert ours.outcome.epochs_run == theirs.outcome.epochs_run == 2
    out = run_in_keras(
        "stop when loss is not finite", history, steps_per_epoch=3, batch_losses=batch_losses, workdir=tmp_path / "s"
    )
    assert out.stop is not None
    assert (out.stop.rule, out.stop.epoch) == ("stop when loss is not finite", 1)


def test_fail_on_nan_raises_at_the_batch_the_hand_written_one_does(tmp_path: pathlib.Path) -> None:
    history = {"loss": [1.0, NAN, 1.0], "val_loss": [1.0, 1.0, 1.0]}
    batch_losses = [[1.0, 1.0, 1.0], [1.0, float("inf"), NAN], [1.0, 1.0, 1.0]]
    hand = [keras.callbacks.TerminateOnNaN(raise_error=True)]
    with pytest.raises(RuntimeError, match="at batch 1"):
        run_callbacks(hand, history, steps_per_epoch=3, batch_losses=batch_losses, workdir=tmp_path / "theirs")
    compiled = compile_policy("fail when loss is not finite")
    with pytest.raises(RuntimeError, match="at batch 1"):
        keras_fit_raising(compiled, history, batch_losses, tmp_path / "ours")
    failed = why_failed(compiled)
    assert failed is not None and (failed.rule, failed.epoch) == ("fail when loss is not finite", 1)
    assert why_stopped(compiled) is None
    # The harness measures the run up to the raise instead of propagating it.
    out = run_in_keras(
        "fail when loss is not finite", history, steps_per_epoch=3, batch_losses=batch_losses, workdir=tmp_path / "s"
    )
    assert (out.epochs_run, out.stop, out.restored_epoch) == (2, None, None)
    assert out.failed is not None and out.failed.epoch == 1


def keras_fit_raising(callbacks: list[Any], history: dict[str, list[float]], batch_losses: Any,
                      workdir: pathlib.Path) -> None:
    """``fit`` with ``callbacks`` through the harness's model and scripted logs, letting an error out."""
    from policy.testing.harness import _fit_data, _harness_classes, epoch_logs, tiny_model, working_directory

    script = _harness_classes()["Script"](epoch_logs(history), batch_losses, _Clock0())
    workdir.mkdir(parents=True)
    with working_directory(workdir):
        tiny_model().fit(epochs=len(history["loss"]), callbacks=[script, *callbacks], verbose=0, shuffle=False,
                         **_fit_data(3))


class _Clock0:
    step = 0.0
    now = 0.0


# ---------------------------------------------------------------- hand-computed expectations


def test_early_stopping_ignores_steps_below_float32_resolution(tmp_path: pathlib.Path) -> None:
    # 1.0 - 1e-9 rounds to 1.0 in float32: not an improvement, so patience 2 runs out at epoch 2.
    out = run_in_keras(
        "stop when val_loss not improving for 2", {"val_loss": [1.0, 1.0 - 1e-9, 1.0, 0.5]}, workdir=tmp_path
    )
    assert out.epochs_run == 3
    assert out.stop is not None and out.stop.epoch == 2
    assert out.stop.rule == "stop when val_loss not improving for 2"


def test_early_stopping_min_delta_exactly_reached_is_not_improvement(tmp_path: pathlib.Path) -> None:
    out = run_in_keras(
        "stop when val_loss not improving by 0.05 for 1", {"val_loss": [1.0, 0.95, 0.5, 0.5]}, workdir=tmp_path
    )
    assert out.epochs_run == 2


def test_restore_best_puts_back_the_best_epoch(tmp_path: pathlib.Path) -> None:
    out = run_in_keras(
        "stop when val_loss not improving for 2, restore best",
        {"val_loss": [1.0, 0.5, 0.7, 0.6, 0.4]},
        workdir=tmp_path,
    )
    assert (out.epochs_run, out.restored_epoch) == (4, 1)


def test_reduce_lr_halves_after_patience_and_rounds_to_float32(tmp_path: pathlib.Path) -> None:
    out = run_in_keras(
        "multiply lr by 0.5 when val_loss not improving for 2",
        {"val_loss": [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]},
        initial_lr=0.1,
        workdir=tmp_path,
    )
    f = lambda x: float(np.float32(x))  # noqa: E731
    assert out.learning_rates == (f(0.1), f(0.1), f(0.1), f(f(0.1) * 0.5), f(f(0.1) * 0.5), f(f(f(0.1) * 0.5) * 0.5))


def test_save_best_writes_only_on_strict_improvement(tmp_path: pathlib.Path) -> None:
    out = run_in_keras(
        'save best on val_loss min to "b-{epoch}.keras"', {"val_loss": [1.0, 1.0, 0.9, 0.9 - 1e-9]}, workdir=tmp_path
    )
    assert out.saves == ((0, "b-1.keras"), (2, "b-3.keras"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b-1.keras", "b-3.keras"]


def test_save_every_steps_counts_across_epochs(tmp_path: pathlib.Path) -> None:
    out = run_in_keras(
        'save every 2 steps to "s/e{epoch}-b{batch}.keras"',
        {"loss": [1.0, 1.0, 1.0]},
        steps_per_epoch=3,
        workdir=tmp_path,
    )
    assert out.saves == ((0, "s/e1-b2.keras"), (1, "s/e2-b1.keras"), (1, "s/e2-b3.keras"), (2, "s/e3-b2.keras"))
