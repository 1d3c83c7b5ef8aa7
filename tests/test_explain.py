"""policy.explain and policy.eject: sentences and callback calls computed from the AST."""

from __future__ import annotations

import pytest

from policy import parse_policy
from policy.eject import eject
from policy.explain import callback_call, explain, explain_rules


def call(text: str) -> str:
    return callback_call(parse_policy(text).rules[0]).text()


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("stop when val_loss not improving for 3", "EarlyStopping(monitor='val_loss', patience=3, mode='min')"),
        ("stop when val_accuracy not improving by 0.01 for 5, restore best, ignore first 2 epochs, baseline 0.6",
         "EarlyStopping(monitor='val_accuracy', min_delta=0.01, patience=5, mode='max', baseline=0.6, "
         "restore_best_weights=True, start_from_epoch=2)"),
        ("stop when val_loss not increasing for 2", "EarlyStopping(monitor='val_loss', patience=2, mode='max')"),
        ("stop when loss is not finite", "TerminateOnNaN()"),
        ("fail when loss is not finite", "TerminateOnNaN(raise_error=True)"),
        ("train at least 3 epochs", "policy.callbacks.MinimumEpochs(epochs=3)"),
        ("stop when val_loss averaged over 3 epochs not improving for 5",
         "policy.callbacks.ConditionStopping(condition='val_loss averaged over 3 epochs not improving for 5', "
         "directions=['min'])"),
        ("multiply lr by 0.5 when val_loss not improving for 2, restore best",
         "policy.callbacks.RestoringReduceLROnPlateau(monitor='val_loss', factor=0.5, patience=2, mode='min', "
         "min_delta=0.0)"),
        ("train at least 30 steps", "policy.callbacks.MinimumSteps(steps=30)"),
        ("stop after 3 epochs", "policy.callbacks.StopAfterEpochs(epochs=3)"),
        ("stop when val_accuracy >= 0.9, ignore first 2 epochs",
         "policy.callbacks.ConditionStopping(condition='val_accuracy >= 0.9', ignore_first=2)"),
        ("warm up lr to 0.1 over 2 epochs",
         "policy.callbacks.ScheduledLearningRate(LearningRateChain('warm up lr to 0.1 over 2 epochs'))"),
        ("save best on val_loss", "ModelCheckpoint('checkpoints/best.keras', monitor='val_loss', mode='min', "
         "save_best_only=True)"),
        ("save best weights on auc to 'b.weights.h5'", "ModelCheckpoint('b.weights.h5', monitor='auc', mode='max', "
         "save_best_only=True, save_weights_only=True)"),
        ("save every epoch to 'e{epoch}.keras'", "ModelCheckpoint('e{epoch}.keras')"),
        ("save last weights to 'l.weights.h5'", "ModelCheckpoint('l.weights.h5', save_weights_only=True)"),
        ("save every 50 steps to 's.keras'", "ModelCheckpoint('s.keras', save_freq=50)"),
        # Keras's default min_delta is 1e-4; ours is 0, so it is always written.
        ("multiply lr by 0.5 when val_loss not improving for 2, cooldown 3, min lr 1e-5",
         "ReduceLROnPlateau(monitor='val_loss', factor=0.5, patience=2, mode='min', min_delta=0.0, cooldown=3, "
         "min_lr=1e-05)"),
        ("log to 'train.csv', append", "CSVLogger('train.csv', append=True)"),
        ("log to tensorboard 'tb'", "TensorBoard(log_dir='tb')"),
        ("backup to 'bk'", "BackupAndRestore(backup_dir='bk')"),
        ("backup to 'bk' every 10 steps", "BackupAndRestore(backup_dir='bk', save_freq=10)"),
    ],
)
def test_keras_callback_calls(rule: str, expected: str) -> None:
    assert call(rule) == expected


def test_sentences() -> None:
    rules = [
        "stop when val_loss not improving by 0.01 for 3, restore best",
        "stop when val_accuracy >= 0.95 or loss is nan",
        "save every 2 epochs to 'e{epoch}.keras'",
        "multiply lr by 0.5 when val_loss not improving for 2, cooldown 1",
        "warm up lr to 0.01 over 3 epochs, then decay by 0.5 every 2 epochs",
        "decay lr by 0.96 every 1000 steps, smoothly",
        "cosine lr to 0 over 30 epochs, restart every 2 epochs, periods times 2, peaks times 0.5",
    ]
    sentences = [explain_rules(parse_policy(r))[0].sentence for r in rules]
    assert sentences == [
        "Stop training at the end of the first epoch where val_loss has not gone down by more than 0.01 for "
        "3 epochs in a row. When training ends, put back the weights from the epoch with the lowest val_loss.",
        "Stop training at the end of the first epoch where val_accuracy is at least 0.95 or loss is NaN.",
        "Save the whole model to 'e{epoch}.keras' at the end of every 2nd epoch.",
        "Multiply the learning rate by 0.5 whenever val_loss has not gone down for 2 epochs in a row "
        "(a cooldown of 1 epoch changes nothing in Keras).",
        "Set the learning rate at the start of every epoch: rise linearly to 0.01 over 3 epochs, "
        "then multiply it by 0.5 every 2 epochs.",
        "Set the learning rate of every optimizer step, inside the train step: multiply it by 0.96 every 1000 "
        "steps, smoothly: by 0.96 to the power of the periods gone by, fractions included.",
        "Set the learning rate at the start of every epoch: follow a half cosine to 0 over 30 epochs, starting "
        "the cosine again every 2 epochs, each period 2 times as long as the last, each restart 0.5 times as high "
        "above 0 as the last; the epoch after, set it to the end value, then leave it alone.",
    ]


def test_explain_text_has_rule_sentence_and_callback() -> None:
    assert explain("stop when val_loss not improving for 3") == (
        "stop when val_loss not improving for 3\n"
        "    Stop training at the end of the first epoch where val_loss has not gone down for 3 epochs in a row.\n"
        "    -> EarlyStopping(monitor='val_loss', patience=3, mode='min')"
    )


def test_eject_is_valid_python_with_a_callbacks_list() -> None:
    source = eject(parse_policy("stop when val_loss not improving for 3; save best on val_loss min"))
    compile(source, "<eject>", "exec")
    assert "import keras\n" in source
    assert "    keras.callbacks.EarlyStopping(monitor='val_loss', patience=3, mode='min'),\n" in source
    assert "from policy" not in source  # no rule of ours, nothing of ours imported


def _family(cb: object) -> type:
    """The Keras class a compiled callback extends when it only changes how files are written."""
    import keras

    for saver in (keras.callbacks.ModelCheckpoint, keras.callbacks.BackupAndRestore):
        if isinstance(cb, saver):
            return saver
    return type(cb)


def _state(cb: object) -> dict[str, object]:
    """A callback's public attributes: what it was built with (``best`` is None before fit).

    ``policy_rule`` is the label compile_policy adds for why_stopped(); it changes nothing in fit.
    ``async_safe`` is set by compile_policy on per-epoch savers, whose batch hook is a no-op; it
    only lets Keras dispatch that no-op asynchronously, so hand-written code may leave it out.
    """
    ignored = ("model", "policy_rule", "async_safe")
    return {k: v for k, v in vars(cb).items() if not k.startswith("_") and k not in ignored}


EJECT_CASES = [
    "log to 'logs/train.csv', append; stop after 3 epochs",
    "stop when val_loss not improving by 0.01 for 3, restore best, ignore first 2 epochs, baseline 0.9",
    "save best on val_loss min; save best weights on val_accuracy to 'b.weights.h5'",
    "multiply lr by 0.5 when val_loss not improving for 2, cooldown 2, min lr 1e-6; log to 'train.csv', append",
    "save every 100 steps to 's.keras'; save last to 'l.keras'; backup to 'bk' every 10 steps",
    "log to tensorboard 'tb'; stop when loss is not finite",
    "stop when val_accuracy >= 0.95 or val_loss not improving by 5% for 4, restore best val_loss, "
    "ignore first 1 epochs",
    "stop after 2h; stop after 30 epochs; stop after 500 steps",
    "save top 3 weights on val_accuracy to 'ck/{epoch:03d}.weights.h5'; save every 2 epochs to 'e{epoch}.keras'",
    "warm up lr to 0.01 over 3 epochs, then cosine to 0.0001 over 10 epochs, then decay by 0.5 every 2 epochs",
    "cosine lr to 0.001 over 7 epochs, restart every 1 epoch, periods times 2, peaks times 0.5, "
    "then decay by 0.5 every 3 epochs, smoothly",
]


@pytest.mark.parametrize("text", EJECT_CASES)
def test_ejected_code_builds_the_same_callbacks(text: str) -> None:
    pytest.importorskip("policy.compiler")
    import keras

    from policy import compile_policy
    from policy.callbacks import FitStart, MetricCheck, TerminateOnNaNRecorder

    namespace: dict[str, object] = {}
    exec(eject(parse_policy(text)), namespace)
    ejected = namespace["callbacks"]
    assert isinstance(ejected, list)
    # Hand-written code has no strict metric check, TerminateOnNaN stop recorder or FitStart.
    helpers = MetricCheck | TerminateOnNaNRecorder | FitStart
    compiled = [cb for cb in compile_policy(text) if not isinstance(cb, helpers)]
    # compile_policy puts the backup last, and writes checkpoints and backups through Keras's
    # classes extended only in how files reach the disk; the ejected code is plain Keras.
    backups = [cb for cb in ejected if isinstance(cb, keras.callbacks.BackupAndRestore)]
    ejected = [cb for cb in ejected if cb not in backups] + backups
    assert [type(cb) for cb in ejected] == [_family(cb) for cb in compiled]
    for a, b in zip(ejected, compiled, strict=True):
        assert _state(a).keys() == _state(b).keys()
        for key, value in _state(a).items():
            # LearningRateChain objects and conditions compare by value; callables (clock) by identity.
            assert value == _state(b)[key], (type(a).__name__, key)
