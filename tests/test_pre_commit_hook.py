"""The repository's ``.pre-commit-hooks.yaml``: valid for pre-commit, and its hooks run
``keras-policy check`` the way pre-commit runs them (entry + args + the matching file names),
without network and without installing a hook environment."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from identify.identify import tags_from_filename
from pre_commit.clientlib import load_manifest

ROOT = Path(__file__).resolve().parent.parent
HOOKS = {hook["id"]: hook for hook in load_manifest(str(ROOT / ".pre-commit-hooks.yaml"))}

GOOD_POLICY = "stop when val_loss not improving for 3\nsave best on val_loss min\n"
BAD_POLICY = "stop when val_los not improving for 3\n"
GOOD_YAML = "training:\n  policy: |\n    stop when val_loss not improving for 3\n"
BAD_TOML = '[training]\npolicy = "stop after 0 epochs"\n'
GOOD_JSON = '{"training": {"policy": ["stop after 5 epochs", "log to \'train.csv\'"]}}\n'
WRONG_KEY_YAML = "train:\n  policy: stop after 5 epochs\n"


def _selects(hook: dict[str, Any], name: str) -> bool:
    """pre-commit's file filter: `files`/`exclude` regexes, then `types`/`types_or`/`exclude_types`."""
    if not re.search(hook["files"], name) or (hook["exclude"] != "^$" and re.search(hook["exclude"], name)):
        return False
    tags = tags_from_filename(name) | {"file", "text"}
    if not set(hook["types"]) <= tags or (hook["types_or"] and not set(hook["types_or"]) & tags):
        return False
    return not set(hook["exclude_types"]) & tags


def _run(hook: dict[str, Any], names: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    entry = shlex.split(hook["entry"])
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert f'\n{entry[0]} = "policy.cli:main"' in pyproject, "the entry must be the console script we install"
    argv = [sys.executable, "-m", "policy", *entry[1:], *hook["args"], *names]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    files = {
        "good.policy": GOOD_POLICY,
        "rules/bad.policy": BAD_POLICY,
        "configs/train.yaml": GOOD_YAML,
        "configs/sweep.toml": BAD_TOML,
        "configs/run.json": GOOD_JSON,
        "configs/other.yml": WRONG_KEY_YAML,
        "README.md": "# not a policy\n",
        "train.py": "print('not a policy')\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def test_the_manifest_is_valid_and_runs_our_console_script() -> None:
    assert set(HOOKS) == {"keras-policy-check", "keras-policy-check-config"}
    for hook in HOOKS.values():
        assert hook["language"] == "python" and shlex.split(hook["entry"]) == ["keras-policy", "check"]
        assert hook["pass_filenames"]
    assert HOOKS["keras-policy-check"]["args"] == []
    assert HOOKS["keras-policy-check-config"]["args"] == ["--key", "training.policy"]


def test_the_policy_file_hook_selects_policy_files_and_fails_on_a_bad_one(repo: Path) -> None:
    hook = HOOKS["keras-policy-check"]
    names = sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file())
    selected = [n for n in names if _selects(hook, n)]
    assert selected == ["good.policy", "rules/bad.policy"]
    done = _run(hook, selected, repo)
    assert done.returncode == 1
    assert "good.policy: 2 rules, ok" in done.stdout
    assert "rules/bad.policy:1:11: cannot tell whether 'val_los' should go up or down" in done.stderr
    assert done.stderr.rstrip().endswith("1 of 2 policies have errors")
    assert _run(hook, ["good.policy"], repo).returncode == 0


def test_the_config_hook_checks_each_config_under_its_key(repo: Path) -> None:
    hook = HOOKS["keras-policy-check-config"]
    names = sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file())
    selected = [n for n in names if _selects(hook, n)]
    assert selected == ["configs/other.yml", "configs/run.json", "configs/sweep.toml", "configs/train.yaml"]
    done = _run(hook, selected, repo)
    assert done.returncode == 1
    assert "configs/run.json: 2 rules, ok" in done.stdout
    assert "configs/train.yaml: 1 rule, ok" in done.stdout
    assert "configs/sweep.toml:2:" in done.stderr  # the bad rule, placed in the file
    assert "training" in done.stderr and "configs/other.yml" in done.stderr  # the missing key, named
    assert done.stderr.rstrip().endswith("2 of 4 policies have errors")
    # A user's override of the key (args in .pre-commit-config.yaml replace the hook's).
    override = {**hook, "args": ["--key", "train.policy"]}
    assert _run(override, ["configs/other.yml"], repo).returncode == 0
