"""A module's summary lines for the terminal (CI's log), written past pytest's output capture."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable

import pytest


def write_summary(request: pytest.FixtureRequest, lines: Callable[[], Iterable[str]]) -> None:
    """Write ``lines()`` after a blank line, from a module fixture's teardown. Teardown output is
    captured at the file-descriptor level, so the capture is suspended while writing."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        reporter.write_line("")
        for line in lines():
            reporter.write_line(line)
