"""The differential tests are strong enough: every mutant reference in ``tests/mutants.py`` is caught.

A mutant is caught when a case exists, among those the differential strategy generates, on
which the mutant's prediction differs from what real Keras does. Searching that directly would
mean one ``fit`` per case per mutant, so the search runs in two steps:

1. pure Python (hundreds of cases a second): one fixed, derandomized sample of
   ``POLICY_MUTANT_EXAMPLES`` cases from :func:`policy.testing.strategies.cases` (the differential
   property's strategy) is generated once and shared by every mutant; the first case of the
   smallest size on which the mutant and the true reference disagree is picked;
2. real Keras: that one case is fitted (cached, shared with ``test_differential.py``) and the
   mutant's prediction must differ from the measured outcome, i.e. the differential property
   run with the mutant as its reference fails on it.

If step 2 finds the mutant agreeing with Keras, the *reference* is wrong on that case; the
failure message says so and shows the case.

Everything runs on the backend under test (``KERAS_BACKEND``): the true reference and every
mutant are built for it. A mutant that is no mistake on this backend (its ``wrong_on`` leaves
the backend out: keeping float32 subnormals is what torch does) must instead agree with the
reference on every pinned fact and every generated case. The sample is larger than the Keras property's
budget (pure Python is cheap); the summary printed at the end also says how many of the first
``POLICY_EXAMPLES`` cases (the Keras property's budget) already catch each mutant.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import Phase, given, settings
from mutants import HARD_MUTANTS, MUTANTS, overridden, wrong_on
from terminal_summary import write_summary
from test_differential import (
    BACKEND,
    EXAMPLES,
    FACTS,
    KERAS_RUNS,
    Raises,
    Result,
    budget,
    describe,
    measured,
    predicted,
)

from policy.reference.semantics import Semantics
from policy.testing.strategies import Case, cases

SEARCH_EXAMPLES = int(os.environ.get("POLICY_MUTANT_EXAMPLES", "2000"))


@dataclass(frozen=True)
class Caught:
    """How one mutant was caught, for the summary printed at the end of the module."""

    name: str
    disagreeing: int
    within_budget: int
    case_text: str


CAUGHT: list[Caught] = []


@functools.cache
def sample() -> tuple[tuple[Case, Result], ...]:
    """The shared search sample: generated cases with the true reference's prediction for each."""
    found: list[Case] = []

    # Generation only: nothing fails here, so there is nothing to shrink.
    @settings(budget(SEARCH_EXAMPLES), phases=[Phase.generate])
    @given(cases())
    def collect(case: Case) -> None:
        found.append(case)

    collect()
    return tuple((case, predicted(case)) for case in found)


def size(case: Case) -> tuple[int, int, int]:
    """Smaller cases fit faster and read better: fewer rules, epochs, batches."""
    return (len(case.policy.rules), len(case.history), case.steps_per_epoch)


def mutant_prediction(case: Case, semantics: Semantics) -> Result:
    """The mutant's prediction; a crash inside the mutant counts as a (wrong) prediction too."""
    try:
        return predicted(case, semantics)
    except Exception as exc:
        return Raises(f"the mutant crashed: {type(exc).__name__}: {exc}")


@pytest.fixture(scope="module", autouse=True)
def summary(request: pytest.FixtureRequest) -> Iterator[None]:
    """Print which mutants were caught, in how many sample cases, and the Keras fits used."""
    started = time.perf_counter()
    fits_before = KERAS_RUNS["fits"]
    yield
    write_summary(request, lambda: _summary_lines(started, fits_before))


def _summary_lines(started: float, fits_before: int) -> Iterator[str]:
    yield (
        f"mutants on {BACKEND} caught or shown right there: {len(CAUGHT)}/{len(MUTANTS) + len(HARD_MUTANTS)}; search sample {SEARCH_EXAMPLES} cases, Keras budget "
        f"{EXAMPLES}; {KERAS_RUNS['fits'] - fits_before} new Keras fits; {time.perf_counter() - started:.1f} s"
    )
    yield f"  {'mutant':32} {'generated hits':>16} {'in first ' + str(EXAMPLES):>18}  pinned facts that catch it"
    for c in CAUGHT:
        first_line = c.case_text.splitlines()[0] if c.case_text else ""
        yield f"  {c.name:32} {c.disagreeing:16} {c.within_budget:18}  {first_line}"


def test_every_mutant_overrides_exactly_one_primitive() -> None:
    names = [m.name for m in MUTANTS + HARD_MUTANTS]
    assert len(set(names)) == len(names) and len(MUTANTS) >= 10
    for mutant in MUTANTS + HARD_MUTANTS:
        assert issubclass(mutant, Semantics)
        assert len(overridden(mutant)) == 1, (mutant.__name__, overridden(mutant))


def _disagreeing(mutant: type[Semantics]) -> list[tuple[int, Case]]:
    """(index in the sample, case) of every generated case where the mutant and the reference differ."""
    semantics = mutant(BACKEND)
    return [(i, case) for i, (case, right) in enumerate(sample()) if mutant_prediction(case, semantics) != right]


def _confirm(mutant: type[Semantics], case: Case) -> None:
    """The differential property, run with the mutant as its reference, fails on ``case``."""
    keras = measured(case)
    wrong = mutant_prediction(case, mutant(BACKEND))
    assert keras != wrong, (
        f"{mutant.name} agrees with real Keras where the reference does not, so the reference is wrong here:\n"
        + describe(case, keras, predicted(case))
    )


@pytest.mark.parametrize("mutant", MUTANTS + HARD_MUTANTS, ids=[m.name for m in MUTANTS + HARD_MUTANTS])
def test_differential_suite_catches_mutant(mutant: type[Semantics]) -> None:
    """The whole differential suite (pinned facts, then generated cases) catches every mutant."""
    pins = [name for name, case in FACTS.items() if mutant_prediction(case, mutant(BACKEND)) != predicted(case)]
    generated = _disagreeing(mutant)
    if BACKEND not in wrong_on(mutant):
        _right_here(mutant, pins, generated)
        CAUGHT.append(Caught(mutant.name, 0, 0, f"no mistake on {BACKEND}: agrees with the reference everywhere"))
        return
    if not pins and not generated:
        pytest.fail(
            f"{mutant.name}: no pinned fact and none of {SEARCH_EXAMPLES} generated cases tells it from the "
            "reference, so the differential tests cannot notice this mistake"
        )
    # Confirm on a pin (small, readable) when there is one, else on the smallest generated case.
    case = FACTS[pins[0]] if pins else min(generated, key=lambda item: size(item[1]))[1]
    _confirm(mutant, case)
    within = sum(1 for i, _ in generated if i < EXAMPLES)
    CAUGHT.append(Caught(mutant.name, len(generated), within, ", ".join(pins) or case.text))


def _right_here(mutant: type[Semantics], pins: list[str], generated: list[tuple[int, Case]]) -> None:
    """A mutant that models this backend truly must be indistinguishable from the reference."""
    assert not pins and not generated, (
        f"{mutant.name} is no mistake on {BACKEND} (it is one on {', '.join(wrong_on(mutant))}), yet it differs "
        f"from the reference on pins {pins} and {len(generated)} generated cases: one of the two models "
        f"{BACKEND} wrongly"
    )


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_generated_cases_alone_catch_mutant(mutant: type[Semantics]) -> None:
    """Without the pins, the generator still finds every mutant but the rare HARD_MUTANTS."""
    generated = _disagreeing(mutant)
    if BACKEND not in wrong_on(mutant):
        _right_here(mutant, [], generated)
        return
    if not generated:
        pytest.fail(
            f"{mutant.name}: in {SEARCH_EXAMPLES} generated cases the mutant never disagrees with the reference; "
            "strengthen policy/testing/strategies.py"
        )
    _confirm(mutant, min(generated, key=lambda item: size(item[1]))[1])
