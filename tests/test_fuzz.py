"""Fuzzing every entry point that reads user input: only PolicyError (or one of our TypeErrors saying
what an argument should be) ever escapes. Random and mutated policy texts, random histories and
keyword arguments into ``simulate``, random config documents into ``load``.

``POLICY_FUZZ_EXAMPLES`` sets the examples per property (default small, for CI); figure 8 of
BENCHMARKS.md runs the same generators (:mod:`policy.testing.fuzz`) over 100,000 inputs.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy import PolicyError, parse_policy
from policy.load import load
from policy.reference import simulate
from policy.testing import fuzz
from policy.testing.strategies import policy_texts

EXAMPLES = int(os.environ.get("POLICY_FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


def keeps_the_promise(call: Any) -> None:
    try:
        call()
    except Exception as exc:  # the promise is about every exception
        if fuzz.unexpected(exc):
            raise AssertionError(f"{type(exc).__name__} escaped: {exc}") from exc


@FUZZ
@given(st.text(max_size=300))
def test_arbitrary_text(text: str) -> None:
    keeps_the_promise(lambda: parse_policy(text))


@FUZZ
@given(policy_texts(), st.randoms(use_true_random=False), st.integers(1, 3))
def test_mutated_generated_policies(text: str, rng: random.Random, edits: int) -> None:
    for _ in range(edits):
        text = fuzz.mutate(text, rng)
    keeps_the_promise(lambda: parse_policy(text))


@FUZZ
@given(st.lists(st.sampled_from((*fuzz.WORDS, "\n", "{epoch}", '"{val_loss[0]}.keras"')), max_size=30))
def test_sequences_of_the_languages_own_words(words: list[str]) -> None:
    keeps_the_promise(lambda: parse_policy(" ".join(words)))


_JSONISH = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.sampled_from([10**400, "NA", "1e999", "x"]) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@FUZZ
@given(
    st.randoms(use_true_random=False),
    st.one_of(
        _JSONISH,
        st.dictionaries(st.sampled_from(fuzz.METRICS), st.lists(_JSONISH, max_size=5), max_size=3),
        st.lists(st.dictionaries(st.sampled_from(fuzz.METRICS), _JSONISH, max_size=3), max_size=5),
    ),
)
def test_simulate_with_random_histories_and_arguments(rng: random.Random, history: Any) -> None:
    import inspect

    text = fuzz.policy_input(rng) if rng.random() < 0.5 else fuzz.policy_text(rng)
    kwargs = fuzz.simulate_kwargs(rng, frozenset(inspect.signature(simulate).parameters))
    keeps_the_promise(lambda: simulate(text, history, **kwargs))
    keeps_the_promise(lambda: simulate(text, fuzz.history(rng), **kwargs))


@FUZZ
@given(st.randoms(use_true_random=False), st.binary(max_size=200), st.sampled_from([".json", ".yaml", ".toml", ".policy"]))
def test_load_random_and_mutated_config_documents(rng: random.Random, noise: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        noise_path = Path(folder) / f"noise{suffix}"
        noise_path.write_bytes(noise)
        keeps_the_promise(lambda: load(noise_path))
        generated_suffix, data, key = fuzz.config_document(rng)
        path = Path(folder) / f"config{generated_suffix}"
        path.write_bytes(data)
        keeps_the_promise(lambda: load(path, key=key))


@FUZZ
@given(st.integers(0, 2**32))
def test_the_benchmarks_input_mix(seed: int) -> None:
    counts, failures = fuzz.run(seed, 5)
    assert sum(counts.values()) == 5
    assert failures == []
    assert not [key for key in counts if key[1] == "other"]


def test_the_promise_itself() -> None:
    # What counts as an answer, and what as a bug.
    assert not fuzz.unexpected(PolicyError.plain("x"))
    assert not fuzz.unexpected(TypeError("compile_policy() takes policy text (a str) or a Policy; got int"))
    assert not fuzz.unexpected(TypeError("simulate() got an unexpected keyword argument 'x'"))
    assert fuzz.unexpected(TypeError("'<' not supported between instances of 'NoneType' and 'str'"))
    assert fuzz.unexpected(RecursionError())
    assert fuzz.unexpected(KeyError("x"))
