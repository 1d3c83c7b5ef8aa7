"""The language: every phrase parses to the AST it means, prints back, and bad text fails well."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy import PolicyError, format_policy, parse_policy
from policy import ast as A
from policy.parser import keywords

M = lambda name: A.Metric(name=name)  # noqa: E731 - a terse constructor keeps the tables readable


PHRASES: list[tuple[str, A.Rule]] = [
    ("stop when val_loss not improving for 3", A.StopWhen(condition=A.Plateau(metric=M("val_loss"), patience=3))),
    (
        "stop when val_loss not improving for 3 epochs",
        A.StopWhen(condition=A.Plateau(metric=M("val_loss"), patience=3)),
    ),
    (
        "stop when val_loss not improving by 0.05 for 2",
        A.StopWhen(condition=A.Plateau(metric=M("val_loss"), delta=0.05, patience=2)),
    ),
    (
        "stop when loss not decreasing for 4",
        A.StopWhen(condition=A.Plateau(metric=M("loss"), trend="decreasing", patience=4)),
    ),
    (
        "stop when val_auc not increasing for 1",
        A.StopWhen(condition=A.Plateau(metric=M("val_auc"), trend="increasing", patience=1)),
    ),
    (
        "stop when val_loss not improving for 3, restore best",
        A.StopWhen(condition=A.Plateau(metric=M("val_loss"), patience=3), restore_best=True),
    ),
    (
        "stop when val_loss not improving for 2, ignore first 4 epochs",
        A.StopWhen(condition=A.Plateau(metric=M("val_loss"), patience=2), ignore_first=4),
    ),
    (
        "stop when val_accuracy not improving for 3, baseline 0.6",
        A.StopWhen(condition=A.Plateau(metric=M("val_accuracy"), patience=3), baseline=0.6),
    ),
    ("stop when loss is not finite", A.StopWhen(condition=A.NotFinite(metric=M("loss")))),
    ("stop when val_loss is nan", A.StopWhen(condition=A.NotFinite(metric=M("val_loss"), nan_only=True))),
    ("fail when loss is not finite", A.FailWhen(condition=A.NotFinite(metric=M("loss")))),
    ("train at least 10 epochs", A.TrainAtLeast(amount=10, unit="epochs")),
    (
        "stop when val_loss averaged over 3 epochs not improving for 5",
        A.StopWhen(condition=A.Plateau(metric=A.Metric(name="val_loss", window=3), patience=5)),
    ),
    (
        "stop when loss averaged over 2 epochs > 1.5 or val_loss averaged over 4 epochs is nan",
        A.StopWhen(condition=A.AnyOf(parts=(
            A.Threshold(metric=A.Metric(name="loss", window=2), op=">", value=1.5),
            A.NotFinite(metric=A.Metric(name="val_loss", window=4), nan_only=True),
        ))),
    ),
    (
        "multiply lr by 0.5 when val_loss not improving for 3, restore best",
        A.ReduceLR(factor=0.5, when=A.Plateau(metric=M("val_loss"), patience=3), restore_best=True),
    ),
    ("train at least 500 steps", A.TrainAtLeast(amount=500, unit="steps")),
    ("save best on val_loss min", A.SaveBest(metric=M("val_loss"), direction="min")),
    (
        'save best on val_loss min to "ckpt/best-{epoch:03d}.keras"',
        A.SaveBest(metric=M("val_loss"), direction="min", path=A.Path(value="ckpt/best-{epoch:03d}.keras")),
    ),
    ('save best on val_loss to "b.keras"', A.SaveBest(metric=M("val_loss"), path=A.Path(value="b.keras"))),
    (
        "save best on val_loss below 0.5",
        A.SaveBest(metric=M("val_loss"), threshold=A.BestThreshold(side="below", value=0.5)),
    ),
    (
        'save best weights on val_f1 max above 0.8 to "b.weights.h5"',
        A.SaveBest(
            metric=M("val_f1"),
            direction="max",
            path=A.Path(value="b.weights.h5"),
            weights_only=True,
            threshold=A.BestThreshold(side="above", value=0.8),
        ),
    ),
    (
        'save best weights on val_loss min to "w-{epoch:03d}.weights.h5"',
        A.SaveBest(metric=M("val_loss"), direction="min", path=A.Path(value="w-{epoch:03d}.weights.h5"), weights_only=True),
    ),
    ("log lr", A.LogLR()),
    (
        'save every 30 min to "ck/{epoch}-{batch}.keras"',
        A.SaveTimed(amount=30, unit="min", path=A.Path(value="ck/{epoch}-{batch}.keras")),
    ),
    (
        'save weights every 90s to "ck/{epoch}.weights.h5"',
        A.SaveTimed(amount=90, unit="s", path=A.Path(value="ck/{epoch}.weights.h5"), weights_only=True),
    ),
    (
        'save every epoch to "ck/{epoch:03d}.keras", keep last 3',
        A.SaveEvery(path=A.Path(value="ck/{epoch:03d}.keras"), keep=3),
    ),
    (
        'save weights every 100 steps to "ck/{epoch}-{batch}.weights.h5", keep last 1',
        A.SaveEvery(every=100, unit="steps", path=A.Path(value="ck/{epoch}-{batch}.weights.h5"), weights_only=True, keep=1),
    ),
    ('save every epoch to "ckpt/e{epoch:03d}.keras"', A.SaveEvery(path=A.Path(value="ckpt/e{epoch:03d}.keras"))),
    (
        'save every 500 steps to "ckpt/e{epoch}-b{batch}.keras"',
        A.SaveEvery(every=500, unit="steps", path=A.Path(value="ckpt/e{epoch}-b{batch}.keras")),
    ),
    ('save every 3 epochs to "ckpt/{epoch:03d}.keras"', A.SaveEvery(every=3, path=A.Path(value="ckpt/{epoch:03d}.keras"))),
    (
        'save top 2 on val_loss min to "ckpt/{epoch:03d}.keras"',
        A.SaveTop(k=2, metric=M("val_loss"), direction="min", path=A.Path(value="ckpt/{epoch:03d}.keras")),
    ),
    ('save last to "ckpt/last.keras"', A.SaveLast(path=A.Path(value="ckpt/last.keras"))),
    (
        "multiply lr by 0.5 when val_loss not improving for 2",
        A.ReduceLR(factor=0.5, when=A.Plateau(metric=M("val_loss"), patience=2)),
    ),
    (
        "multiply lr by 0.1 when val_loss not improving by 0.01 for 1, cooldown 2, min lr 0.001",
        A.ReduceLR(factor=0.1, when=A.Plateau(metric=M("val_loss"), delta=0.01, patience=1), cooldown=2, min_lr=0.001),
    ),
    ('log to "train.csv"', A.LogCSV(path=A.Path(value="train.csv"))),
    ('log to "train.csv", append', A.LogCSV(path=A.Path(value="train.csv"), append=True)),
    ('log to tensorboard "logs/"', A.LogTensorBoard(path=A.Path(value="logs/"))),
    ('backup to "backup/"', A.Backup(path=A.Path(value="backup/"))),
    ('backup to "backup/" every 100 steps', A.Backup(path=A.Path(value="backup/"), steps=100)),
    ("stop when val_accuracy >= 0.9", A.StopWhen(condition=A.Threshold(metric=M("val_accuracy"), op=">=", value=0.9))),
    ("stop when val_loss > 1.05", A.StopWhen(condition=A.Threshold(metric=M("val_loss"), op=">", value=1.05))),
    (
        "stop when val_loss not improving for 3 or val_accuracy >= 0.95",
        A.StopWhen(
            condition=A.AnyOf(
                parts=(
                    A.Plateau(metric=M("val_loss"), patience=3),
                    A.Threshold(metric=M("val_accuracy"), op=">=", value=0.95),
                )
            )
        ),
    ),
    (
        "stop when val_loss not improving by 1% for 3",
        A.StopWhen(condition=A.Plateau(metric=M("val_loss"), delta=0.01, relative=True, patience=3)),
    ),
    ("stop after 5 epochs", A.StopAfter(amount=5, unit="epochs")),
    ("stop after 2000 steps", A.StopAfter(amount=2000, unit="steps")),
    ("stop after 30 min", A.StopAfter(amount=30, unit="min")),
    ("stop after 90s", A.StopAfter(amount=90, unit="s")),
    ("stop after 2h", A.StopAfter(amount=2, unit="h")),
    ("decay lr by 0.5 every 2 epochs", A.Schedule(segments=(A.Decay(factor=0.5, every=2),))),
    (
        "cosine lr to 0 over 150 steps, restart every 10 steps, periods times 2, peaks times 0.5",
        A.Schedule(
            segments=(
                A.Cosine(
                    target=0.0,
                    over=A.Span(150.0, "steps"),
                    restart=A.Span(10.0, "steps"),
                    period_factor=2.0,
                    peak_factor=0.5,
                ),
            )
        ),
    ),
    (
        "decay lr by 0.96 every 1000 steps, smoothly",
        A.Schedule(segments=(A.Decay(factor=0.96, every=1000, unit="steps", smooth=True),)),
    ),
    ("warm up lr to 0.001 over 5 epochs", A.Schedule(segments=(A.Warmup(target=0.001, over=A.Span(5.0)),))),
    ("cosine lr to 1e-5 over 100 epochs", A.Schedule(segments=(A.Cosine(target=1e-5, over=A.Span(100.0)),))),
    (
        "warm up lr to 0.001 over 5 epochs, then cosine to 1e-5 over 95 epochs",
        A.Schedule(segments=(A.Warmup(target=0.001, over=A.Span(5.0)), A.Cosine(target=1e-5, over=A.Span(95.0)))),
    ),
]


@pytest.mark.parametrize(("text", "expected"), PHRASES, ids=[t for t, _ in PHRASES])
def test_every_phrase_parses_to_its_meaning_and_prints_back(text: str, expected: A.Rule) -> None:
    policy = parse_policy(text)
    assert policy.rules == (expected,)
    assert parse_policy(format_policy(policy)) == policy


def test_the_seed_policy() -> None:
    policy = parse_policy("stop when val_loss not improving for 3; save best on val_loss min")
    assert [type(r).__name__ for r in policy.rules] == ["StopWhen", "SaveBest"]
    assert format_policy(policy) == "stop when val_loss not improving for 3\nsave best on val_loss min"


def test_separators_comments_and_blank_lines() -> None:
    text = textwrap.dedent(
        """
        # early stopping
        stop when val_loss not improving for 3;   # a comment after a rule

        save best on val_loss min;
        """
    )
    assert len(parse_policy(text).rules) == 2


def test_nodes_carry_positions_that_do_not_affect_equality() -> None:
    policy = parse_policy("log to 'a.csv'\n  stop when   val_loss not improving for 3")
    stop = policy.rules[1]
    assert isinstance(stop, A.StopWhen) and isinstance(stop.condition, A.Plateau)
    assert (stop.pos.line, stop.pos.column) == (2, 3)
    assert (stop.condition.metric.pos.line, stop.condition.metric.pos.column) == (2, 15)
    assert stop == A.StopWhen(condition=A.Plateau(metric=M("val_loss"), patience=3))
    assert hash(stop) == hash(A.StopWhen(condition=A.Plateau(metric=M("val_loss"), patience=3)))


def test_a_path_is_a_node_spanning_its_quotes() -> None:
    log = parse_policy("stop when loss > 1\n  log to 'a \\'b.csv', append").rules[1]
    assert isinstance(log, A.LogCSV)
    assert log.path == A.Path(value="a 'b.csv")
    assert (log.path.pos.line, log.path.pos.column, log.path.pos.end_column) == (2, 10, 21)


def test_and_binds_tighter_than_or_and_groups_flatten() -> None:
    p = parse_policy("stop when loss is nan or val_loss > 2 and val_accuracy < 0.1 or (val_auc >= 0.9 or val_mae < 1)")
    cond = p.rules[0].condition  # type: ignore[union-attr]
    assert isinstance(cond, A.AnyOf)
    assert [type(c).__name__ for c in cond.parts] == ["NotFinite", "AllOf", "Threshold", "Threshold"]


# --------------------------------------------------------------------------- errors, exactly


def error_text(text: str) -> str:
    with pytest.raises(PolicyError) as info:
        parse_policy(text)
    return str(info.value)


def test_misspelled_keyword_error_is_exact() -> None:
    assert error_text("stopp when val_loss not improving for 3") == (
        "1:1: unexpected word 'stopp'\n"
        "    stopp when val_loss not improving for 3\n"
        "    ^\n"
        'hint: did you mean \'stop\'? (expected "backup", "cosine", "decay", "fail", "hold", "inverse", "linear", '
        '"log", "multiply", "save", "stop", "train", "warm", end of policy or end of rule)'
    )


def test_fractional_patience_error_is_exact() -> None:
    assert error_text("save best on val_loss min\nstop when val_loss not improving for 2.5") == (
        "2:38: patience must be a whole number, got 2.5\n"
        "    stop when val_loss not improving for 2.5\n"
        "                                         ^\n"
        "hint: write 3"
    )


def test_truncated_rule_error_is_exact() -> None:
    assert error_text("stop when val_loss") == (
        "1:19: the policy ends too early\n"
        "    stop when val_loss\n"
        "                      ^\n"
        'hint: expected "<", "<=", ">", ">=", "averaged", "is" or "not"'
    )


def test_wrong_extension_error_is_exact() -> None:
    assert error_text('save best weights on val_loss to "w.keras"') == (
        "1:34: a weights file must end in .weights.h5, got 'w.keras'\n"
        '    save best weights on val_loss to "w.keras"\n'
        "                                     ^\n"
        'hint: write "w.weights.h5"'
    )


def test_unknown_direction_error_is_exact() -> None:
    assert error_text("stop when val_f00 not improving for 3") == (
        "1:11: cannot tell whether 'val_f00' should go up or down\n"
        "    stop when val_f00 not improving for 3\n"
        "              ^\n"
        'hint: write "val_f00 not decreasing" or "val_f00 not increasing"'
    )


def test_validation_reports_every_problem_at_once() -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy('multiply lr by 1.5 when val_loss not improving for 2\nsave best on weird to "x.h5"')
    messages = [p.message for p in info.value.problems]
    assert len(messages) == 3
    assert [p.line for p in info.value.problems] == [1, 2, 2]
    assert info.value.line == 1 and info.value.column == 1


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "the policy is empty"),
        ("   # only a comment\n", "the policy is empty"),
        ("stop when val_loss not improving for -1", "patience must be at least 1"),
        ("stop when val_loss not improving for 0", "patience must be at least 1"),
        ("stop when val_loss not improving for 99999999999", "too large"),
        ("stop when val_loss > 1e999", "too large"),
        ("multiply lr by 0 when val_loss not improving for 2", "between 0 and 1"),
        ("multiply lr by 1 when val_loss not improving for 2", "between 0 and 1"),
        ('log to "abc', "never closed"),
        ("stop when val_loss not improving for 3,", "ends too early"),
        ("stop when val_loss not improving for 3,, restore best", "unexpected ','"),
        ('save best on val_loss to "model.h5"', "must end in .keras"),
        ('save top 0 on val_loss to "m{epoch}.keras"', "at least 1"),
        ("save best on val_accuracy below 0.5", "'below' needs a metric that should go down"),
        ("save best on val_loss max below 0.5", "'below' needs a metric that should go down, but 'max' is written"),
        ("save best on val_loss above 0.5", "'above' needs a metric that should go up"),
        ("save best on val_loss below 4e38", "does not fit in float32"),
        ("log lr; log lr", "'log lr' is given twice"),
        ('save every epoch to "ck/{epoch}.keras", keep last 0', "the number of files to keep must be at least 1"),
        ('save every 0 min to "ck/{epoch}.keras"', "a time between saves must be positive"),
        ('save every 30 min to "ck/{epoch}.h5"', "must end in .keras"),
        ('save every 2 epochs to "ck/last.keras", keep last 2', "needs a path that names each save apart"),
        ("stop when learning_rate < 0.1", "add 'log lr'"),
        ('save top 2 on val_loss to "m.keras"', "needs {epoch}"),
        ('save every epoch to "a.keras"; save last to "a.keras"', "two rules write"),
        ("decay lr by 0.5 every 2 epochs; cosine lr to 0 over 3 epochs", "two learning-rate schedules"),
        ("decay lr by 0.5 every 2 epochs; multiply lr by 0.5 when val_loss not improving for 2", "never ends"),
        ("cosine lr to 0 over 3 epochs, smoothly", "only a decay can be smooth"),
        ("cosine lr to 0 over 30 steps, periods times 2", "'periods times' follows a cosine's restart period"),
        ("cosine lr to 0 over 30 steps, restart every 5 steps, peaks times 0.5, peaks times 0.5", "once"),
        ("cosine lr to 0 over 30 steps, restart every 5 steps, periods times 0.5", "must be at least 1"),
        ("cosine lr to 0 over 30 steps, restart every 5 steps, peaks times 0", "'peaks times' must be positive"),
        ("decay lr by 0.5 every 2 steps, smoothly, smoothly", "only a decay can be smooth, once"),
        ("stop when val_loss > 1 or loss is nan, restore best", "ambiguous"),
        ("stop when val_loss > 1, baseline 3", "baseline needs"),
        ("stop after 3 fortnights", "unknown unit"),
        ("stop when val_loss not improving for 2 $", "unexpected character '$'"),
        ("stop when val_loss not improving for 3, restore best, restore best", "given twice"),
        ("multiply lr by 0.5 when val_loss > 2", "only be multiplied when one metric stops improving"),
        ('save every 2 epochs to "{}.keras"', "placeholder with no name"),
        ('save every 2 epochs to "{epoch.keras"', "not a valid template"),
        ("fail when val_loss is not finite", "a failure can only watch 'loss is not finite'"),
        ("fail when loss is nan", "a failure can only watch 'loss is not finite'"),
        ("train at least 10 epochs; stop after 5 epochs", "'stop after 5 epochs' ends training before"),
        ("train at least 10 steps; train at least 2 epochs", "two minimums"),
        ("multiply lr by 0.5 when val_loss averaged over 3 epochs not improving for 2", "as logged, not averaged"),
        ("fail when loss averaged over 2 epochs is not finite", "a failure can only watch"),
        ("stop when val_loss averaged over 3 epochs not improving for 2, baseline 1", "baseline needs a metric as logged"),
        ("stop when val_loss averaged over 0 epochs > 1", "at least 1"),
        ("multiply lr by 0.5 when val_loss not improving for 3, restore best val_loss", "takes no metric"),
        ("train at least 0 epochs", "at least 1"),
        ("train at least 2.5 steps", "whole number"),
    ],
)
def test_bad_policies_raise_policy_error(text: str, fragment: str) -> None:
    assert fragment in error_text(text)


def test_policy_error_is_a_value_error_with_position() -> None:
    with pytest.raises(ValueError) as info:
        parse_policy("log to 'a.csv'\n  stop when val_loss not improvin for 3")
    err = info.value
    assert isinstance(err, PolicyError)
    assert (err.line, err.column) == (2, 26)
    assert "improvin" in err.source_line


def test_non_text_is_a_type_error_saying_what_is_accepted() -> None:
    with pytest.raises(TypeError) as info:
        parse_policy(42)  # type: ignore[arg-type]
    assert str(info.value) == "parse_policy() takes policy text (a str) or a Policy; got int"


# --------------------------------------------------------------------------- properties

_WORDS = [
    *sorted(keywords()),
    "val_loss",
    "val_accuracy",
    "loss",
    "3",
    "0.5",
    "-1",
    "1e-5",
    "2.5",
    '"a.keras"',
    '"w.weights.h5"',
    "'x",
    ",",
    ";",
    "\n",
    "%",
    ">=",
    "<",
    "(",
    ")",
    "#c\n",
    "{",
    "1e400",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_WORDS), max_size=14).map(" ".join))
def test_token_soup_parses_or_raises_policy_error(text: str) -> None:
    try:
        policy = parse_policy(text)
    except PolicyError as err:
        assert err.line >= 0 and err.column >= 0 and str(err)
    else:
        assert parse_policy(format_policy(policy)) == policy


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_arbitrary_text_parses_or_raises_policy_error(text: str) -> None:
    with contextlib.suppress(PolicyError):
        parse_policy(text)


def test_parsing_never_imports_keras_or_tensorflow() -> None:
    code = (
        "import sys, policy\n"
        "p = policy.parse_policy('stop when val_loss not improving for 3; save best on val_loss min')\n"
        "policy.format_policy(p)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow', 'jax', 'torch')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_misspelled_metric_gets_a_did_you_mean() -> None:
    assert error_text("stop when val_los not improving for 3") == (
        "1:11: cannot tell whether 'val_los' should go up or down\n"
        "    stop when val_los not improving for 3\n"
        "              ^\n"
        "hint: did you mean 'val_loss'? If not, write \"val_los not decreasing\" or \"val_los not increasing\""
    )


def test_every_rule_with_a_syntax_error_is_reported_at_once() -> None:
    text = 'stopp when val_loss not improving for 3\nsave best on val_loss min\nlog to "a.csv"; stop after 3 fortnights'
    with pytest.raises(PolicyError) as info:
        parse_policy(text)
    where = [(p.line, p.column, p.message) for p in info.value.problems]
    assert where == [(1, 1, "unexpected word 'stopp'"), (3, 30, "unknown unit 'fortnights'")]
    # The source line shown is the whole original line, not the rule cut out of it.
    assert info.value.problems[1].source_line == 'log to "a.csv"; stop after 3 fortnights'


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(_WORDS), max_size=20).map(" ".join))
def test_per_rule_errors_are_found_for_any_text(text: str) -> None:
    # The recovery pass re-parses each rule alone: it must never raise anything but PolicyError,
    # and never leave the error without a problem to show.
    try:
        parse_policy(text)
    except PolicyError as err:
        assert err.problems


def test_reading_learning_rate_before_the_rule_that_writes_it_is_an_error() -> None:
    text = "stop when learning_rate < 0.003; multiply lr by 0.5 when val_loss not improving for 1"
    assert "move this rule after the learning-rate rule" in error_text(text)
    assert "Keras itself does not log the learning rate" in error_text("stop when learning_rate < 1")
