"""Bad input, everywhere: every public entry point answers PolicyError (or TypeError for an argument
of the wrong kind, saying what is accepted), never another exception. Messages are pinned exactly.

The random side of the same promise is ``tests/test_fuzz.py``; figure 8 of BENCHMARKS.md counts
it over 100,000 inputs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from policy import (
    PolicyError,
    ast,
    compile_policy,
    describe,
    explain,
    format_policy,
    load,
    parse_policy,
    replay,
    simulate,
    why_stopped,
)
from policy.cli import main as cli_main
from policy.parser import MAX_CONDITION_DEPTH
from policy.reference import simulate as reference_simulate


def error(call: Any) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        call()
    return info.value


def nested(depth: int) -> str:
    """A condition whose and/or groups nest ``depth`` deep: (m0 > 1 and (m1 > 1 or (...)))."""
    text = "loss > 1"
    for i in reversed(range(depth)):
        text = f"(m{i} > 1 {'and' if i % 2 else 'or'} {text})"
    return text


# --------------------------------------------------------------------------- long and deep conditions


def test_a_chain_of_a_thousand_terms_parses_flat() -> None:
    # 500 terms were a RecursionError when the grammar was left-recursive.
    terms = [f"m{i} > {i}" for i in range(1000)]
    policy = parse_policy("stop when " + " or ".join(terms))
    condition = policy.rules[0]
    assert isinstance(condition, ast.StopWhen) and isinstance(condition.condition, ast.AnyOf)
    assert len(condition.condition.parts) == 1000
    # Every later stage walks it too: the printer, the reference, the compiler's callback.
    assert format_policy(policy).count(" or ") == 999
    assert simulate(policy, {"m999": [1000.0]}).stop is not None
    assert len(compile_policy(policy, strict=False)) == 1


def test_and_chains_and_redundant_parentheses_are_not_depth() -> None:
    parse_policy("stop when " + " and ".join(f"m{i} > 1" for i in range(2000)))
    parse_policy("stop when " + "(" * 5000 + "loss > 1" + ")" * 5000)


def test_nesting_up_to_the_limit_parses() -> None:
    policy = parse_policy("stop when " + nested(MAX_CONDITION_DEPTH))
    assert parse_policy(format_policy(policy)) == policy


def test_nesting_beyond_the_limit_is_a_policy_error_at_the_parenthesis() -> None:
    text = "stop when " + nested(MAX_CONDITION_DEPTH + 1)
    err = error(lambda: parse_policy(text))
    assert err.message == "this condition nests parentheses more than 32 levels deep"
    assert err.suggestion == "split it into several 'stop when' rules (they act as one 'or'), or flatten the groups"
    # The caret is under the innermost group's "(", the 33rd level.
    assert (err.line, err.column) == (1, text.index("(m32 ") + 1)


def test_thousands_of_levels_are_the_same_error_not_a_recursion_error() -> None:
    err = error(lambda: parse_policy("stop when " + nested(2000)))
    assert err.message == "this condition nests parentheses more than 32 levels deep"


def test_deep_condition_inside_multiply_lr_and_on_a_later_line() -> None:
    text = "stop after 3 epochs\nmultiply lr by 0.5 when " + nested(40)
    err = error(lambda: parse_policy(text))
    assert err.line == 2 and err.message == "this condition nests parentheses more than 32 levels deep"


def test_hand_built_deep_ast_is_refused_by_every_entry_point() -> None:
    condition: ast.Condition = ast.Threshold(metric=ast.Metric(name="loss"), op=">", value=1.0)
    for i in range(3000):
        other = ast.Threshold(metric=ast.Metric(name=f"m{i}"), op="<", value=0.0)
        condition = (ast.AnyOf if i % 2 else ast.AllOf)(parts=(other, condition))
    policy = ast.Policy(rules=(ast.StopWhen(condition=condition),))
    for call in (
        lambda: parse_policy(policy),
        lambda: compile_policy(policy),
        lambda: simulate(policy, {"loss": [1.0]}),
        lambda: explain(policy),
        lambda: format_policy(policy),
    ):
        assert error(call).message == "this condition nests and/or groups more than 32 levels deep"


# --------------------------------------------------------------------------- path templates


@pytest.mark.parametrize(
    ("path", "message", "hint"),
    [
        (
            "{epoch.__class__}.keras",
            "the path '{epoch.__class__}.keras' reads an attribute of a placeholder ({epoch.__class__}); "
            "only plain names are filled in",
            "write {epoch}",
        ),
        (
            "{val_loss[0]}.keras",
            "the path '{val_loss[0]}.keras' indexes a placeholder ({val_loss[0]}); only plain names are filled in",
            "write {val_loss}",
        ),
        (
            "ck/{epoch.x[0]}-{val_loss}.keras",
            "the path 'ck/{epoch.x[0]}-{val_loss}.keras' reads an attribute of a placeholder ({epoch.x[0]}); "
            "only plain names are filled in",
            "write {epoch}",
        ),
        (
            "{epoch:zz}.keras",
            "the format spec 'zz' in {epoch:zz} does not apply to a whole number: "
            "Unknown format code 'z' for object of type 'int'",
            "e.g. {epoch:03d} or {val_loss:.4f}",
        ),
        (
            "{val_loss:03d}.keras",
            "the format spec '03d' in {val_loss:03d} does not apply to a metric value (a float): "
            "Unknown format code 'd' for object of type 'float'",
            "e.g. {epoch:03d} or {val_loss:.4f}",
        ),
        (
            "{epoch:{width}}.keras",
            "the path '{epoch:{width}}.keras' has a placeholder inside a format spec ({epoch:{width}})",
            "write the spec out, e.g. {epoch:03d}",
        ),
        (
            "{epoch!x}.keras",
            "the path '{epoch!x}.keras' uses the unknown conversion !x in {epoch!x}",
            "write {epoch}",
        ),
        (
            "{epoch:0999999999}.keras",
            "the format spec '0999999999' in {epoch:0999999999} asks for more than 255 characters, "
            "longer than a file name can be",
            "e.g. {epoch:03d} or {val_loss:.4f}",
        ),
        ("{epoch.keras", "the path '{epoch.keras' is not a valid template (expected '}' before end of string)",
         "write {{ and }} for literal braces"),
        ("{}.keras", "the path '{}.keras' has a placeholder with no name", "name it, e.g. {epoch:03d} or {val_loss:.3f}"),
        ("{0}.keras", "the path '{0}.keras' has a placeholder with no name", "name it, e.g. {epoch:03d} or {val_loss:.3f}"),
    ],
)
def test_bad_path_templates_are_refused_before_training(path: str, message: str, hint: str) -> None:
    text = f'save best on val_loss to "{path}"'
    err = error(lambda: parse_policy(text))
    assert (err.message, err.suggestion) == (message, hint)
    assert (err.line, err.column) == (1, text.index('"') + 1)  # the caret is on the path


def test_every_checkpoint_rule_checks_its_template() -> None:
    for rule in (
        'save top 2 on val_loss to "{epoch}-{val_loss[0]}.keras"',
        'save every epoch to "{epoch.real}.keras"',
        'save every 5 steps to "{batch[0]}.keras"',
        'save last to "{loss.__class__}.keras"',
    ):
        assert "only plain names are filled in" in error(lambda rule=rule: parse_policy(rule)).message


def test_the_rendered_error_for_an_attribute_placeholder() -> None:
    err = error(lambda: parse_policy('save best on val_loss to "{epoch.__class__}.keras"'))
    assert str(err) == (
        "1:26: the path '{epoch.__class__}.keras' reads an attribute of a placeholder ({epoch.__class__}); "
        "only plain names are filled in\n"
        '    save best on val_loss to "{epoch.__class__}.keras"\n'
        "                             ^\n"
        "hint: write {epoch}"
    )


def test_good_templates_still_pass() -> None:
    parse_policy('save best on val_loss to "e{epoch:03d}-{val_loss:.4f}-{epoch!r:>5}.keras"')
    parse_policy('save every 10 steps to "s{epoch}-{batch:02d}-{loss:.2e}.keras"')


# --------------------------------------------------------------------------- arguments of the wrong kind


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: compile_policy(None), "compile_policy() takes policy text (a str) or a Policy from parse_policy(); "
         "got NoneType"),
        (lambda: compile_policy(b"stop after 1 epochs"), "compile_policy() takes policy text (a str) or a Policy "
         "from parse_policy(); got bytes (decode the bytes first)"),
        (lambda: compile_policy(["stop after 1 epochs"]), "compile_policy() takes policy text (a str) or a Policy "
         'from parse_policy(); got list (join a list of rules with "\\n" first)'),
        (lambda: compile_policy("stop after 1 epochs", strict="yes"),
         "compile_policy(strict=...) takes True or False; got str"),
        (lambda: parse_policy(3.5), "parse_policy() takes policy text (a str) or a Policy; got float"),
        (lambda: simulate(None, {}), "simulate() takes policy text (a str) or a Policy from parse_policy(); "
         "got NoneType"),
        (lambda: simulate("stop after 1 epochs", {}, strict=1), "simulate(strict=...) takes True or False; got int"),
        (lambda: reference_simulate("stop after 1 epochs", {}, semantics="keras"),
         "simulate(semantics=...) takes a Semantics object; got str"),
        (lambda: explain(7), "explain() takes policy text (a str) or a Policy from parse_policy(); got int"),
        (lambda: format_policy("stop after 1 epochs"), "format_policy() takes a Policy from parse_policy(); got str"),
        (lambda: load({"policy": "stop after 1 epochs"}, key=None),
         "load(key=...) takes a dotted key as text, such as 'policy' or 'training.policy'; got NoneType"),
        (lambda: load(42), "load() takes a path to a config or .policy file (a str or os.PathLike) or a mapping "
         "holding the policy; got int"),
        (lambda: describe(None), "describe() takes a list of Keras callbacks; got NoneType"),
        (lambda: describe("stop after 3 epochs"), "describe() takes a list of Keras callbacks; got str"),
    ],
)
def test_wrong_kinds_of_argument_are_type_errors_saying_what_is_accepted(call: Any, message: str) -> None:
    with pytest.raises(TypeError) as info:
        call()
    assert str(info.value) == message


def test_describe_a_single_callback_says_to_wrap_it() -> None:
    import keras

    with pytest.raises(TypeError) as info:
        describe(keras.callbacks.EarlyStopping())
    assert str(info.value) == (
        "describe() takes a list of Keras callbacks; got EarlyStopping (wrap a single callback in a list)"
    )


@pytest.mark.parametrize(
    ("policy", "kind", "message"),
    [
        (ast.Policy(rules=(None,)), TypeError,  # type: ignore[arg-type]
         "policy.rules[0] must be StopWhen or FailWhen or TrainAtLeast or StopAfter or SaveBest or SaveTop or SaveEvery or "
         "SaveTimed or SaveLast or "
         "ReduceLR or Schedule or LogCSV or LogTensorBoard or LogLR or Backup; got NoneType None"),
        (ast.Policy(rules=(ast.StopWhen(condition="loss > 1"),)), TypeError,  # type: ignore[arg-type]
         "policy.rules[0].condition must be Plateau or Threshold or NotFinite or AnyOf or AllOf; got str 'loss > 1'"),
        (ast.Policy(rules=(ast.StopWhen(condition=ast.Threshold(metric=ast.Metric(name="a"), op="==", value=1.0)),)),
         TypeError,
         "policy.rules[0].condition.op must be one of '>=', '>', '<=', '<'; got str '=='"),
        (ast.Policy(rules=(ast.SaveBest(metric=ast.Metric(name="val_loss", window=2)),)), PolicyError,
         "only a 'stop when' condition can read val_loss averaged"),
        (ast.Policy(rules=(ast.StopAfter(amount=10**400, unit="steps"),)), PolicyError,
         "policy.rules[0].amount must be a finite number, got an integer of 1329 bits"),
        (ast.Policy(rules=(ast.SaveTop(k=-2, metric=ast.Metric(name="loss"), path=ast.Path(value="{epoch}.keras")),)), PolicyError,
         "policy.rules[0].k must be a whole number from 0 to 1000000000, got -2"),
    ],
)
def test_malformed_hand_built_policies(policy: ast.Policy, kind: type[Exception], message: str) -> None:
    for call in (compile_policy, parse_policy, explain, lambda p: simulate(p, {"loss": [1.0]})):
        with pytest.raises(kind) as info:
            call(policy)
        text = info.value.message if isinstance(info.value, PolicyError) else str(info.value)
        assert text == message


# --------------------------------------------------------------------------- simulate's other arguments


@pytest.mark.parametrize(
    ("policy", "kwargs", "message"),
    [
        ("stop when val_loss > 1", {"history": {"val_loss": [10**400]}},
         "val_loss at epoch 0 is an integer of 1329 bits, too large for a float"),
        ("warm up lr to 0.1 over 2 epochs", {"history": {"loss": [1.0]}, "initial_lr": 10**400},
         "initial_lr is an integer of 1329 bits, too large for a float"),
        ("stop after 1 min", {"history": {"loss": [1.0]}, "step_seconds": 10**400, "steps_per_epoch": 2},
         "step_seconds is an integer of 1329 bits, too large for a float"),
        ("stop after 1 min", {"history": {"loss": [1.0]}, "step_seconds": [[1.0, 10**400]]},
         "step_seconds, epoch 0 batch 1 is an integer of 1329 bits, too large for a float"),
        ("stop after 3 steps", {"history": {"loss": [1.0]}, "steps_per_epoch": 10**400},
         "steps_per_epoch must be from 1 to 1000000000, got an integer of 1329 bits"),
        ("stop after 3 steps", {"history": {"loss": [1.0]}, "steps_per_epoch": -4},
         "steps_per_epoch must be from 1 to 1000000000, got -4"),
        ("stop after 3 steps", {"history": {"loss": [1.0]}, "steps_per_epoch": True},
         "steps_per_epoch must be a whole number, got True"),
        ("stop when loss > 1", {"history": {"loss": [[1.0]]}}, "loss at epoch 0 is [1.0], which is not a number"),
        ("stop when loss > 1", {"history": {"loss": [True]}}, "loss at epoch 0 is True, a boolean; expected a number"),
        ("stop when loss > 1", {"history": {10**5000: [1.0]}}, "metric names must be text, got an integer of 16610 bits"),
        ("stop when loss > 1", {"history": 5}, "the history must be a sequence (one entry per epoch), got int"),
    ],
)
def test_simulate_bad_arguments(policy: str, kwargs: dict[str, Any], message: str) -> None:
    assert error(lambda: simulate(policy, **kwargs)).message == message


# --------------------------------------------------------------------------- config files


def test_a_config_that_is_not_utf8_names_the_file_line_column_and_byte(tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    path.write_bytes(b"epochs: 3\npolicy: stop when val_loss > 1 # caf\xe9\n")
    err = error(lambda: load(path))
    assert str(err) == (
        f"{path}:2:37: the file is not UTF-8 text: byte 0xe9 at byte offset 46 cannot be decoded\n"
        "    policy: stop when val_loss > 1 # caf\ufffd\n"
        "                                        ^\n"
        "hint: save the file as UTF-8"
    )


def test_a_policy_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "p.policy"
    path.write_bytes(b"\xff\xfestop after 3 epochs")
    err = error(lambda: load(path))
    assert (err.filename, err.line, err.column) == (str(path), 1, 1)
    assert err.message == "the file is not UTF-8 text: byte 0xff at byte offset 0 cannot be decoded"


def test_a_byte_order_mark_is_read_past(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_bytes(b'\xef\xbb\xbf{"policy": "stop after 3 epochs"}')
    assert load(path) == parse_policy("stop after 3 epochs")


@pytest.mark.parametrize(
    ("name", "text", "kind"),
    [
        ("c.json", '{"policy": ' + "[" * 5000 + "]" * 5000 + "}", "JSON"),
        ("c.yaml", "policy: " + "[" * 1200 + "]" * 1200, "YAML"),
        ("b.yaml", "".join("  " * i + "a:\n" for i in range(3000)), "YAML"),
        ("c.toml", "policy = " + "[" * 5000 + "]" * 5000, "TOML"),
        ("t.toml", "policy = " + "{a = " * 3000 + "1" + "}" * 3000, "TOML"),
    ],
)
def test_configs_nested_thousands_deep(tmp_path: Path, name: str, text: str, kind: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    err = error(lambda: load(path))
    assert err.message == (
        f"not valid {kind}: it nests lists or tables deeper than the reader can follow "
        f"(Python's recursion limit, {sys.getrecursionlimit()})"
    )
    assert err.suggestion == "a policy config needs only a few levels of nesting"


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("n.json", '{"policy": ' + "1" * 5000 + "}", "not valid JSON: Exceeds the limit (4300 digits) for integer "
         "string conversion: value has 5000 digits; use sys.set_int_max_str_digits() to increase the limit"),
        ("n.toml", "policy = " + "1" * 5000, "not valid TOML: Exceeds the limit (4300 digits) for integer "
         "string conversion: value has 5000 digits; use sys.set_int_max_str_digits() to increase the limit"),
        ("d.yaml", "policy: !!timestamp 2001-13-45", "not valid YAML: month must be in 1..12"),
        ("i.yaml", "policy: !!int 0x", "not valid YAML: invalid literal for int() with base 16: ''"),
    ],
)
def test_values_the_readers_cannot_build(tmp_path: Path, name: str, text: str, message: str) -> None:
    pytest.importorskip("yaml")
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    assert error(lambda: load(path)).message == message


def test_unreadable_paths(tmp_path: Path) -> None:
    assert error(lambda: load(tmp_path)).message == f"cannot read {str(tmp_path)!r}: Is a directory"
    assert error(lambda: load("a\0b.yaml")).message == "cannot read 'a\\x00b.yaml': embedded null byte"


# --------------------------------------------------------------------------- the command line


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Exit code and everything printed (stdout then stderr); never a traceback."""
    code = cli_main(list(args))
    out = capsys.readouterr()
    assert "Traceback" not in out.err + out.out
    return code, out.out + out.err


def test_cli_bad_files_and_arguments_exit_1_or_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "latin.yaml").write_bytes(b"policy: stop when val_loss > 1 # \xe9\n")
    (tmp_path / "deep.json").write_text("[" * 5000 + "]" * 5000, encoding="utf-8")
    (tmp_path / "big.json").write_text('{"val_loss": [' + "1" * 5000 + "]}", encoding="utf-8")
    (tmp_path / "latin.csv").write_bytes(b"epoch,val_loss\n0,\xff\n")
    (tmp_path / "nul.csv").write_bytes(b"epoch,val_loss\n0,1\x00\n")
    long_name = "a" * 5000
    latin, deep, big = (str(tmp_path / n) for n in ("latin.yaml", "deep.json", "big.json"))
    cases: list[tuple[tuple[str, ...], int, str]] = [
        (("check", latin), 1, "the file is not UTF-8 text"),
        (("explain", deep), 1, "nests lists or tables deeper than the reader can follow"),
        (("compile", latin), 1, "the file is not UTF-8 text"),
        (("check", long_name + ".yaml"), 2, "no such file"),
        (("check", "stop when " + nested(40)), 1, "more than 32 levels deep"),
        (("check", 'save best on val_loss to "{epoch.__class__}.keras"'), 1, "only plain names are filled in"),
        (("simulate", "stop when val_loss > 1", "--history", long_name + ".csv"), 2, "no such history file"),
        (("simulate", "stop when val_loss > 1", "--history", deep), 1, "deeper than the reader can follow"),
        (("simulate", "stop when val_loss > 1", "--history", big), 1, "Exceeds the limit (4300 digits)"),
        (("simulate", "stop when val_loss > 1", "--history", str(tmp_path / "latin.csv")), 1,
         "latin.csv:2: the history is not UTF-8 text: byte 0xff at byte offset 17 cannot be decoded"),
        (("simulate", "stop when val_loss > 1", "--history", str(tmp_path / "nul.csv")), 1, "is not a number"),
        (("simulate", "stop after 3 steps", "--history", big, "--steps-per-epoch", "1" + "0" * 30), 1,
         "Exceeds the limit"),
        (("simulate", "stop after 3 steps", "--history", str(tmp_path / "nul.csv"), "--steps-per-epoch", "x"), 2,
         "expected a whole number"),
        (("simulate", "stop when loss > 1", "--history"), 2, "expected one argument"),
        (("nonsense",), 2, "invalid choice"),
        (("replay", "stop when val_loss > 1", "--history", long_name + ".csv"), 1, "cannot read it (File name too long)"),
        (("replay", "stop when val_loss > 1", "--history", long_name + "*.csv"), 1, "Replayed 0 of 1 runs (1 failed)"),
        (("replay", "stop when val_loss > 1", "--history", str(tmp_path / "latin.csv")), 1, "Replayed 0 of 1"),
        (("replay", latin, "--history", str(tmp_path / "nul.csv")), 1, "the file is not UTF-8 text"),
        (("tune", "stop when val_loss > {1,2", "--history", str(tmp_path / "nul.csv")), 1, "1 error"),
    ]
    for args, expected_code, fragment in cases:
        code, out = cli(capsys, *args)
        assert (code, fragment in out) == (expected_code, True), (args, out)


def test_cli_steps_per_epoch_beyond_the_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    history = tmp_path / "h.json"
    history.write_text('{"loss": [1.0]}', encoding="utf-8")
    code, err = cli(capsys, "simulate", "stop after 3 steps", "--history", str(history),
                    "--steps-per-epoch", "1" + "0" * 30)
    assert code == 1
    assert "steps_per_epoch must be from 1 to 1000000000, got an integer of 100 bits" in err


def test_thousands_of_bad_rules_are_each_reported_at_their_line() -> None:
    # Each rule is re-parsed on its own lines only, so this stays linear in the text's length.
    text = "\n".join(["stop after 3 epochs", *["stop when"] * 3000, "save best on val_los"])
    err = error(lambda: parse_policy(text))
    assert len(err.problems) == 3000
    assert [p.line for p in err.problems[:2]] == [2, 3] and err.problems[-1].line == 3001
    last = err.problems[-1]
    assert (last.message, last.column, last.source_line) == ("the policy ends too early", 10, "stop when")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: replay(None, []), "replay() takes policy text (a str), a Policy, or a list of them; got NoneType"),
        (lambda: replay(["stop after 2 epochs", 3], [{"loss": [1.0]}]),
         "replay() takes policy text (a str) or a Policy from parse_policy(); got int"),
        (lambda: replay("stop when val_loss > 1", None), "replay() takes recorded runs: a path, a History.history "
         "dict or History, or a list or dict of them; got NoneType"),
        (lambda: why_stopped(None), "why_stopped() takes the list compile_policy() returned; got NoneType"),
    ],
)
def test_replay_and_why_stopped_arguments(call: Any, message: str) -> None:
    with pytest.raises(TypeError) as info:
        call()
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        # Found by figure 8: an initial epoch this large overflowed a schedule's float division.
        ({"initial_epoch": 10**400}, "initial_epoch must be from 0 to 1000000000, got an integer of 1329 bits"),
        ({"validation_freq": -(10**5000)}, "validation_freq must be from 1 to 1000000000, got an integer of 16610 bits"),
        ({"steps_per_execution": 0}, "steps_per_execution must be from 1 to 1000000000, got 0"),
    ],
)
def test_simulate_fit_arguments_are_bounded(kwargs: dict[str, Any], message: str) -> None:
    call = lambda: simulate("decay lr by 0.5 every 2 epochs", {"loss": [1.0]}, initial_lr=0.1, **kwargs)  # noqa: E731
    assert error(call).message == message
