"""The Quickstart's demo trains for real and the reference agrees with what happened."""

from __future__ import annotations

from pathlib import Path

import pytest

from policy.demo import run


def test_demo_runs_and_the_reference_agrees(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path / "out") == 0
    printed = capsys.readouterr().out
    assert "agrees on epochs run, stop, learning rates, checkpoint writes" in printed
    assert "stopped training at the end of epoch" in printed
    assert (tmp_path / "out" / "train.csv").is_file() and (tmp_path / "out" / "best.keras").is_file()
    assert len(list((tmp_path / "out" / "top").glob("*.keras"))) == 2
