"""Figure 8: bad input, 100,000 random and mutated inputs, and how many broke the promise.

The inputs come from :mod:`policy.testing.fuzz` (the generators ``tests/test_fuzz.py`` drives from
Hypothesis): generated policies with up to three mutations each (characters and tokens inserted,
deleted, swapped and repeated; conditions nested deep or chained long; huge, tiny and malformed
numbers; odd Unicode; broken checkpoint paths) into ``parse_policy``; such policies with random
histories and keyword arguments into ``simulate``; and generated config files (JSON, YAML, TOML,
``.policy``; not UTF-8, nested hundreds deep, byte-mutated, huge integers, odd YAML tags, wrong
keys) into ``load``. The promise: every input is accepted or answered with PolicyError (or with one
of our TypeErrors naming what an argument should be); anything else is counted. Goal: 0.
"""

from __future__ import annotations

import time

from benchmarks.common import Figure, Row, Stat, verdict

FULL = 100_000
# About 2 ms of CPU per input: a few minutes alone, longer on a shared machine.
WATCHDOG_FULL = 2400
QUICK = 1_000
SEED = 8
ENTRY_POINTS = ("parse", "simulate", "load")
ENDINGS = ("accepted", "PolicyError", "TypeError", "other")


def run(quick: bool) -> Figure:
    """Run the inputs once (a count, not a timing: one pass is the measurement)."""
    from policy.testing import fuzz

    count = QUICK if quick else FULL
    fig = Figure(8, f"bad input: {count:,} random and mutated inputs to parse, simulate and load")
    start = time.perf_counter()
    counts, failures = fuzz.run(SEED, count)
    seconds = time.perf_counter() - start
    others = len(failures)
    fig.rows.append(
        Row(
            "inputs answered with an exception other than PolicyError or our TypeError",
            Stat.of([others]),
            "inputs",
            goal=f"0 in {count:,}",
            verdict=verdict(others == 0),
        )
    )
    for name in ENTRY_POINTS:
        total = sum(n for (entry, _), n in counts.items() if entry == name)
        split = ", ".join(f"{counts.get((name, e), 0):,} {e}" for e in ENDINGS)
        fig.rows.append(Row(f"  {name}: inputs", Stat.of([total]), "inputs", note=split))
    fig.rows.append(Row("throughput", Stat.of([count / seconds]), "inputs/s", note=f"{seconds:.0f} s in all"))
    listing = "; ".join(f"{entry}: {what}" for entry, what in failures[:5]) or "none"
    fig.details.append(
        f"Seed {SEED}, {count:,} inputs in {seconds:.0f} s. Each entry point's row notes how its inputs "
        "ended: `accepted` (a valid policy, a simulation that ran, a config that loaded), `PolicyError`, "
        "`TypeError` (ours: an argument of the wrong kind, such as `strict=None`, named with what is "
        "accepted; a TypeError from inside, such as comparing None with a float, would count as other), "
        f"`other` (the promise broken). Unexpected exceptions, first five: {listing}. "
        "The same generators run under Hypothesis in `tests/test_fuzz.py` "
        "(`POLICY_FUZZ_EXAMPLES`, default 60 per property)."
    )
    return fig
