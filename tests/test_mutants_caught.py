"""The differential tests are strong enough: every mutant reference in ``tests/mutants.py`` is caught.

A mutant is caught when a case exists, among those the differential strategies generate at the
default budget, on which the mutant's prediction differs from what real Keras does. Searching
that directly would mean one ``fit`` per case per mutant, so the search runs in two steps:

1. pure Python (thousands of cases a second): ``hypothesis.find`` looks, within the same budget
   of generated cases as the differential property (``POLICY_EXAMPLES``), for a case where the
   mutant and the true reference disagree, and shrinks it to a small one;
2. real Keras: that one case is fitted (cached, shared with ``test_differential.py``) and the
   mutant's prediction must differ from the measured outcome, i.e. the differential property
   run with the mutant as its reference fails on it.

If step 2 finds the mutant agreeing with Keras, the *reference* is wrong on that case; the
failure message says so and shows the case.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import find
from hypothesis.errors import NoSuchExample
from mutants import MUTANTS, overridden
from test_differential import EXAMPLES, KERAS_RUNS, Raises, Result, budget, describe, measured, predicted

from policy.reference.semantics import KERAS_3_15, Semantics
from policy.testing.strategies import Case, cases


@dataclass(frozen=True)
class Caught:
    """How one mutant was caught, for the summary printed at the end of the module."""

    name: str
    examples_to_first: int
    case_text: str
    keras: Result
    mutant: Result


CAUGHT: list[Caught] = []


def mutant_prediction(case: Case, semantics: Semantics) -> Result:
    """The mutant's prediction; a crash inside the mutant counts as a (wrong) prediction too."""
    try:
        return predicted(case, semantics)
    except Exception as exc:
        return Raises(f"the mutant crashed: {type(exc).__name__}: {exc}")


@pytest.fixture(scope="module", autouse=True)
def summary(request: pytest.FixtureRequest) -> Iterator[None]:
    """Print which mutants were caught, after how many generated examples, and the Keras fits used."""
    started = time.perf_counter()
    fits_before = KERAS_RUNS["fits"]
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    reporter.write_line("")
    reporter.write_line(
        f"mutants caught: {len(CAUGHT)}/{len(MUTANTS)} at {EXAMPLES} examples, "
        f"{KERAS_RUNS['fits'] - fits_before} new Keras fits, {time.perf_counter() - started:.1f} s"
    )
    for c in CAUGHT:
        first_line = c.case_text.splitlines()[0] if c.case_text else ""
        reporter.write_line(f"  {c.name:32} first disagreement at example {c.examples_to_first:4}: {first_line}")


def test_every_mutant_overrides_exactly_one_primitive() -> None:
    names = [m.name for m in MUTANTS]
    assert len(set(names)) == len(names) >= 10
    for mutant in MUTANTS:
        assert issubclass(mutant, Semantics)
        assert len(overridden(mutant)) == 1, (mutant.__name__, overridden(mutant))


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_differential_search_catches_mutant(mutant: type[Semantics]) -> None:
    semantics = mutant()
    tried = 0
    first: int | None = None

    def disagrees(case: Case) -> bool:
        nonlocal tried, first
        tried += 1
        differs = mutant_prediction(case, semantics) != predicted(case, KERAS_3_15)
        if differs and first is None:
            first = tried
        return differs

    try:
        case = find(cases(), disagrees, settings=budget())
    except NoSuchExample:
        pytest.fail(
            f"{mutant.name}: in {EXAMPLES} generated cases the mutant never disagrees with the reference, "
            "so the differential tests cannot notice this mistake; strengthen policy/testing/strategies.py"
        )
    keras = measured(case)
    wrong = mutant_prediction(case, semantics)
    right = predicted(case, KERAS_3_15)
    assert keras != wrong, (
        f"{mutant.name} agrees with real Keras where the reference does not, so the reference is wrong here:\n"
        + describe(case, keras, right)
    )
    assert first is not None
    CAUGHT.append(Caught(mutant.name, first, case.text, keras, wrong))
