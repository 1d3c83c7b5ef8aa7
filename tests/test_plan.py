"""policy.plan: the one rule-to-callback table that compile_policy, compile --python and explain read."""

from __future__ import annotations

import subprocess
import sys

import pytest

from policy import parse_policy
from policy.plan import OURS, Call, RulePlan, plan_rule


def plan(text: str) -> RulePlan:
    return plan_rule(parse_policy(text).rules[0])


def test_helpers_around_a_rule() -> None:
    csv = plan("log to 'runs/train.csv'")
    assert csv.before == (Call(OURS, "CreateFolder", ("runs",)),)
    assert csv.fit_start and csv.after == ()
    assert plan("log to 'train.csv'").before == ()  # no folder to make
    nan = plan("stop when loss is not finite")
    assert nan.callback.name == "TerminateOnNaN" and not nan.fit_start
    assert nan.after == (Call(OURS, "TerminateOnNaNRecorder", ("stop when loss is not finite",)),)
    assert nan.written() == (nan.callback,)  # hand-written code has no recorder


def test_keras_savers_are_built_as_our_subclasses_and_shown_as_keras() -> None:
    best = plan("save best on val_loss")
    assert (best.callback.name, best.callback.built_as) == ("ModelCheckpoint", (OURS, "AtomicModelCheckpoint"))
    backup = plan("backup to 'bk'")
    assert (backup.callback.name, backup.callback.built_as) == ("BackupAndRestore", (OURS, "PolicyBackup"))
    assert plan("stop when val_loss not improving for 3").callback.built_as is None


def test_the_rule_text_is_hidden_from_the_display_but_built_and_written() -> None:
    call = plan("stop when val_accuracy >= 0.9").callback
    assert call.hidden == (("rule", "stop when val_accuracy >= 0.9"),)
    assert "rule=" not in call.text()
    assert "rule='stop when val_accuracy >= 0.9'" in call.source()


def test_planning_imports_no_framework() -> None:
    code = (
        "import sys\n"
        "from policy import parse_policy\n"
        "from policy.plan import plan_policy\n"
        "plan_policy(parse_policy('save top 2 on val_loss to \"c{epoch}.keras\"; warm up lr to 0.1 over 2 epochs'))\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow', 'jax', 'torch')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("text", [
    "log to 'runs/train.csv'",
    "stop when loss is not finite",
    "save every 2 epochs to 'e{epoch}.keras'",
    "multiply lr by 0.5 when val_loss not improving for 2",
    "backup to 'bk' every 10 steps",
])
def test_compile_rule_builds_the_plan_in_its_order(text: str) -> None:
    pytest.importorskip("policy.compiler")
    from policy.compiler import compile_rule

    p = plan(text)
    names = [c.built_as[1] if c.built_as else c.name for c in p.before]
    names += ["FitStart"] if p.fit_start else []
    names += [p.callback.built_as[1] if p.callback.built_as else p.callback.name]
    names += [c.name for c in p.after]
    assert [type(cb).__name__ for cb in compile_rule(parse_policy(text).rules[0])] == names
