"""policy.load.load: policies inside YAML/TOML/JSON configs, errors that point into the file."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from policy.errors import PolicyError
from policy.load import load, policy_text
from policy.parser import parse

POLICY = "stop when val_loss not improving for 3\nsave best on val_loss min"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_yaml_block_scalar_under_a_dotted_key(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", "training:\n  epochs: 5\n  policy: |\n"
                 "    stop when val_loss not improving for 3\n    save best on val_loss min\n")
    assert load(path, key="training.policy") == parse(POLICY)


def test_yaml_list_of_rules(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yml",
                 "policy:\n  - stop when val_loss not improving for 3\n  - save best on val_loss min\n")
    assert load(path) == parse(POLICY)


def test_toml_and_json(tmp_path: Path) -> None:
    toml = write(tmp_path, "c.toml", '[training]\npolicy = """\nstop when val_loss not improving for 3\n'
                 'save best on val_loss min"""\n')
    assert load(toml, key="training.policy") == parse(POLICY)
    js = write(tmp_path, "c.json",
               '{"policy": ["stop when val_loss not improving for 3", "save best on val_loss min"]}')
    assert load(str(js)) == parse(POLICY)


def test_plain_policy_file(tmp_path: Path) -> None:
    assert load(write(tmp_path, "p.policy", POLICY + "\n")) == parse(POLICY)


def test_mapping_source() -> None:
    assert load({"a": {"b": POLICY}}, key="a.b") == parse(POLICY)


def test_yaml_error_points_at_the_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", "# config\ntraining:\n  policy: |\n    stop when val_loss not improving for 3\n"
                 "    save best on val_los to 'best.keras'\n")
    with pytest.raises(PolicyError) as info:
        load(path, key="training.policy")
    assert info.value.render() == (
        f"{path}:5:18: cannot tell whether 'val_los' should go up or down\n"
        "        save best on val_los to 'best.keras'\n"
        "                     ^\n"
        "hint: did you mean 'val_loss'? If not, add \"min\" or \"max\" after val_los"
    )


def test_json_error_points_inside_the_escaped_string(tmp_path: Path) -> None:
    path = write(tmp_path, "c.json", '{\n  "policy": "stop when val_loss not improving for 3\\nstop whn x"\n}\n')
    with pytest.raises(PolicyError) as info:
        load(path)
    err = info.value
    assert (err.filename, err.line) == (str(path), 2)
    # The caret sits under "whn" in the file's own line.
    line = err.problems[0].source_line
    assert line[err.column - 1:].startswith("whn")


def test_syntax_error_in_the_config_itself(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", "policy: [unclosed\n")
    with pytest.raises(PolicyError, match="not valid YAML") as info:
        load(path)
    assert info.value.filename == str(path)
    bad_json = write(tmp_path, "c.json", '{"policy": }')
    with pytest.raises(PolicyError, match=r"c\.json:1:12: not valid JSON"):
        load(bad_json)


def test_missing_key_names_the_keys_that_exist(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", "training:\n  epochs: 5\n  policy: stop after 3 epochs\n")
    with pytest.raises(PolicyError) as info:
        load(path, key="training.polcy")
    assert info.value.message == "no key 'polcy' under 'training'; the keys there are 'epochs', 'policy'"
    assert info.value.suggestion == "did you mean 'training.policy'?"
    with pytest.raises(PolicyError) as info:
        load(path)  # default key "policy" is one level down
    assert info.value.suggestion == "did you mean 'training.policy'?"


def test_wrong_value_type() -> None:
    with pytest.raises(PolicyError, match=r"text or a list of rules.*got int"):
        policy_text({"policy": 3})
    with pytest.raises(PolicyError, match="'a' is a str, not a table"):
        policy_text({"a": "x"}, "a.b")


def test_missing_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        load(tmp_path / "nope.yaml")


def test_missing_pyyaml_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "c.yaml", "policy: stop after 3 epochs\n")
    monkeypatch.setitem(sys.modules, "yaml", None)  # makes `import yaml` raise ImportError
    with pytest.raises(PolicyError) as info:
        load(path)
    assert info.value.message == "reading YAML needs pyyaml"
    assert info.value.suggestion == "pip install 'keras-policy[yaml]'"


def _instantiate(config: Mapping[str, Any]) -> Any:
    """A hand-rolled Hydra ``instantiate``: import ``_target_`` and call it with the other keys."""
    module, _, name = config["_target_"].rpartition(".")
    target = getattr(importlib.import_module(module), name)
    return target(**{k: v for k, v in config.items() if k != "_target_"})


def test_hydra_style_target_calls_compile_policy() -> None:
    """``_target_: policy.compile_policy`` + ``policy: ...`` works: the first parameter is ``policy``."""
    pytest.importorskip("policy.compiler")
    import yaml

    from policy import compile_policy

    config = Path(__file__).parent.parent / "examples" / "config.yaml"
    data = yaml.safe_load(config.read_text())
    callbacks = _instantiate(data["callbacks"])
    expected = compile_policy(data["training"]["policy"])
    assert [type(cb) for cb in callbacks] == [type(cb) for cb in expected]
    # Both sections of the example config hold the same policy.
    assert load(config, key="callbacks.policy") == load(config, key="training.policy")


# --------------------------------------------------------------------------- history files (simulate's input)


def test_csvlogger_file_with_missing_values(tmp_path: Path) -> None:
    from policy.history import read_history

    path = write(tmp_path, "train.csv", "epoch,loss,val_loss\n1,0.8,NA\n0,1.0,nan\n")
    history = read_history(path)
    assert history[1] == {"loss": 0.8}  # NA: absent, as in Keras's logs; rows sorted by epoch
    assert history[0]["loss"] == 1.0 and history[0]["val_loss"] != history[0]["val_loss"]  # NaN kept


def test_history_json_shapes(tmp_path: Path) -> None:
    from policy.history import read_history

    columns = write(tmp_path, "h.json", '{"loss": [1.0, 0.9, 0.8], "learning_rate": [0.1, 0.1], "val_loss": [1, null, 0.7]}')
    assert read_history(columns) == [
        {"loss": 1.0, "val_loss": 1.0},
        {"loss": 0.9, "learning_rate": 0.1},
        {"loss": 0.8, "learning_rate": 0.1, "val_loss": 0.7},
    ]
    rows = write(tmp_path, "r.json", '[{"epoch": 0, "loss": 1.0}, {"loss": 0.5, "val_loss": null}]')
    assert read_history(rows) == [{"loss": 1.0}, {"loss": 0.5}]


def test_history_errors_name_file_and_line(tmp_path: Path) -> None:
    from policy.history import HistoryError, read_history

    with pytest.raises(HistoryError, match=r"t\.csv:3: epoch 0 appears twice"):
        read_history(write(tmp_path, "t.csv", "epoch,loss\n0,1.0\n0,0.9\n"))
    with pytest.raises(HistoryError, match=r"b\.json:1: not valid JSON"):
        read_history(write(tmp_path, "b.json", "{oops"))
