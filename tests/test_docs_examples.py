"""Every example in README.md and docs/*.md runs as written, and prints what it shows.

The extractor reads each fenced block of each document, in order, and runs it in a fresh
folder holding a copy of ``examples/`` (the README's commands name files in it):

- ``python`` blocks: with ``>>>`` prompts, run as a doctest (output compared); otherwise run as a
  script in a fresh namespace. ``model``, ``x``, ``y``, ``xv`` and ``yv`` (the README's stand-ins
  for the reader's model and data) are a tiny compiled model and a little data.
- ``console`` blocks: each ``$`` line is run in a subprocess (``keras-policy`` as
  ``python -m policy``, ``python`` as this interpreter), and the lines after it, when there are
  any, must be exactly what it prints (stdout and stderr, interleaved as a terminal shows them).
  Without shown output the command must succeed.
- A block whose info string has ``file=NAME`` (```` ```yaml file=train.yaml ````) is a file the
  reader is shown: it is written into the folder before the blocks after it run.
- ``text`` and other data blocks run nothing, so they may not hide a prompt (``>>>`` or ``$``).
- The one untagged block is the Quickstart (installing, and the CI command that runs this test):
  its commands must be exactly the ones listed in :data:`NOT_RUN`, each with the reason.

An example that cannot run as written is fixed in the document, not here.
"""

from __future__ import annotations

import doctest
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Commands shown but not run here, and why.
NOT_RUN = {
    "python -m pip install . && keras-policy demo": "installs the package; the wheel and the demo have their own tests "
    "(test_wheel.py, test_demo.py)",
    'python -m pip install -e ".[test]" && python -m ruff check . && python -m mypy && python tests/backends.py': "the "
    "CI command, which is what runs this test",
}

FENCE = re.compile(r"^(?P<indent> *)```(?P<info>.*)$")


@dataclass(frozen=True)
class Block:
    document: Path
    line: int  # 1-based line of the opening fence
    language: str
    attrs: dict[str, str]
    text: str

    @property
    def where(self) -> str:
        return f"{self.document.relative_to(ROOT)}:{self.line}"


def blocks(document: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, in order."""
    found: list[Block] = []
    lines = document.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        words = match["info"].split()
        language = words[0] if words else ""
        attrs = dict(word.split("=", 1) for word in words[1:] if "=" in word)
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith("```"):
            body.append(lines[i])
            i += 1
        assert i < len(lines), f"{document.name}:{start + 1}: a fence that is never closed"
        found.append(Block(document, start + 1, language, attrs, "\n".join(body) + "\n"))
        i += 1
    return found


@pytest.fixture(scope="module")
def reader_stand_ins() -> dict[str, Any]:
    """The model and data the README's ``model.fit(x, y, validation_data=(xv, yv))`` stands for.

    The validation labels are noise, so ``val_loss`` soon stops improving and the README's
    plateau rules end its ``fit`` calls within a few epochs (the test stays quick)."""
    import keras
    import numpy as np

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x.sum(axis=1, keepdims=True) > 0).astype("float32")
    xv = rng.normal(size=(32, 4)).astype("float32")
    yv = rng.integers(0, 2, size=(32, 1)).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="binary_crossentropy", metrics=["accuracy"])
    return {"model": model, "x": x, "y": y, "xv": xv, "yv": yv}


def _run_python(block: Block, stand_ins: dict[str, Any]) -> None:
    namespace: dict[str, Any] = {"__name__": "__readme__", **stand_ins}
    if any(line.lstrip().startswith(">>>") for line in block.text.splitlines()):
        parser = doctest.DocTestParser()
        test = parser.get_doctest(block.text, namespace, block.where, str(block.document), block.line)
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
        failures: list[str] = []
        runner.run(test, out=failures.append)
        assert runner.failures == 0, f"{block.where}: the doctest fails:\n" + "".join(failures)
    else:
        code = compile(block.text, block.where, "exec")
        exec(code, namespace)


def _commands(block: Block) -> list[tuple[str, list[str]]]:
    """A console block as (command, the output lines shown after it)."""
    runs: list[tuple[str, list[str]]] = []
    for line in block.text.splitlines():
        if line.startswith("$ "):
            runs.append((line[2:], []))
        else:
            assert runs, f"{block.where}: output before any command"
            runs[-1][1].append(line)
    return runs


def _argv(command: str, where: str) -> list[str]:
    words = shlex.split(command)
    if words[0] == "keras-policy":
        return [sys.executable, "-m", "policy", *words[1:]]
    if words[0] == "python":
        return [sys.executable, *words[1:]]
    raise AssertionError(f"{where}: the extractor does not know how to run {words[0]!r}")


def _run_console(block: Block, cwd: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", "COLUMNS": "100"}
    for command, shown in _commands(block):
        done = subprocess.run(
            _argv(command, block.where),
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=300,
        )
        expected = "\n".join(shown).rstrip()
        if expected:
            got = "\n".join(line.rstrip() for line in done.stdout.splitlines()).rstrip()
            assert got == "\n".join(line.rstrip() for line in expected.splitlines()), (
                f"{block.where}: `{command}` printed something else:\n{done.stdout}"
            )
        else:
            assert done.returncode == 0, f"{block.where}: `{command}` failed ({done.returncode}):\n{done.stdout}"


def _check_not_hiding(block: Block) -> None:
    for line in block.text.splitlines():
        assert not line.lstrip().startswith((">>>", "$ ")), (
            f"{block.where}: a prompt in a {block.language or 'plain'} block runs nothing; "
            "tag it python or console so it is tested"
        )


@pytest.mark.parametrize("document", DOCUMENTS, ids=[p.name for p in DOCUMENTS])
def test_every_example_runs_as_written(
    document: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reader_stand_ins: dict[str, Any]
) -> None:
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    for block in blocks(document):
        if "file" in block.attrs:
            target = tmp_path / block.attrs["file"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.text, encoding="utf-8")
        elif block.language in ("python", "pycon"):
            _run_python(block, reader_stand_ins)
        elif block.language == "console":
            _run_console(block, tmp_path)
        elif block.language == "":
            for command in block.text.splitlines():
                assert command in NOT_RUN, f"{block.where}: untagged block with {command!r}; tag it console"
        else:
            _check_not_hiding(block)


def test_the_extractor_sees_every_kind_of_example() -> None:
    """A guard on the extractor itself: the README's examples are all found and classified."""
    found = blocks(ROOT / "README.md")
    languages = {b.language for b in found}
    assert {"python", "console", ""} <= languages
    doctests = [b for b in found if b.language == "python" and ">>>" in b.text]
    scripts = [b for b in found if b.language == "python" and ">>>" not in b.text]
    consoles = [b for b in found if b.language == "console"]
    assert len(doctests) >= 2 and len(scripts) >= 3 and len(consoles) >= 3
