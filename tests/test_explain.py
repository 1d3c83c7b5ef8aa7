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


def test_eject_runs_and_builds_the_same_callbacks() -> None:
    pytest.importorskip("policy.compiler")
    from policy import compile_policy

    text = ("stop when val_loss not improving for 3, restore best; save best on val_loss min\n"
            "multiply lr by 0.5 when val_loss not improving for 2; log to 'train.csv'")
    namespace: dict[str, object] = {}
    exec(eject(parse_policy(text)), namespace)
    ejected = namespace["callbacks"]
    assert isinstance(ejected, list)
    compiled = compile_policy(text)
    keras_compiled = [cb for cb in compiled if type(cb).__module__.startswith("keras")]
    assert [type(cb) for cb in ejected] == [type(cb) for cb in keras_compiled]
    for a, b in zip(ejected, keras_compiled, strict=True):
        public = {k: v for k, v in vars(a).items() if not k.startswith("_") and k != "model"}
        assert public == {k: v for k, v in vars(b).items() if k in public}
