"""Figure 7: ``simulate`` on batch-level histories of 10k, 100k and 1M training steps.

The run is batch-level: ``steps_per_epoch`` and ``batch_losses`` (distinct floats, one per
step) are given, and the policy has a step checkpoint whose path formats the batch loss, a
step budget that never fires, and a plateau stop that never fires (val_loss keeps falling).
Time is measured without tracemalloc (which slows allocation several-fold); peak memory in
a separate run under tracemalloc, counting only what ``simulate`` allocates beyond its input.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from typing import Any

from benchmarks.common import Figure, Row, Stat, verdict

GOAL_SECONDS = 3.0  # for 1M steps
STEPS_PER_EPOCH = 100
SAVE_EVERY = 1000


def policy_for(steps: int) -> str:
    """The benchmark policy for a run of ``steps`` steps: a budget that does not fire."""
    return (
        "stop when val_loss not improving for 5\n"
        f'save every {SAVE_EVERY} steps to "steps/e{{epoch}}-b{{batch}}-{{loss:.4f}}.keras"\n'
        f"stop after {2 * steps} steps\n"
    )


def inputs(steps: int) -> dict[str, Any]:
    """History and batch losses for ``steps`` steps: loss and val_loss fall every epoch."""
    epochs = steps // STEPS_PER_EPOCH
    # Running batch losses end on the epoch's loss, as Keras's running averages do.
    batch_losses = [
        [1.0 / (1.0 + e + b / STEPS_PER_EPOCH) for b in range(1, STEPS_PER_EPOCH + 1)] for e in range(epochs)
    ]
    history = {
        "loss": [row[-1] for row in batch_losses],
        "val_loss": [1.1 / (1.0 + e) for e in range(epochs)],
    }
    return {"history": history, "steps_per_epoch": STEPS_PER_EPOCH, "batch_losses": batch_losses}


def _once(text: str, data: dict[str, Any]) -> Any:
    from policy.reference import simulate

    return simulate(text, data["history"], steps_per_epoch=data["steps_per_epoch"], batch_losses=data["batch_losses"])


def measure(steps: int, repeats: int) -> tuple[Stat, int, int, int]:
    """Seconds per simulate (median of ``repeats``), peak extra bytes, saves, epochs run."""
    text, data = policy_for(steps), inputs(steps)
    outcome = _once(text, data)  # parser tables and imports outside the measurement
    if outcome.stop is not None:
        raise AssertionError(f"the benchmark policy must not stop, but: {outcome.stop}")
    seconds: list[float] = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        _once(text, data)
        seconds.append(time.perf_counter() - start)
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        _once(text, data)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return Stat.of(seconds), peak, len(outcome.saves), outcome.epochs_run


def run(quick: bool) -> Figure:
    """10k, 100k and 1M steps: seconds, µs per step (flat = linear) and peak memory."""
    fig = Figure(7, "simulate on batch-level histories (seconds, peak memory)")
    sizes = {10_000: 3 if quick else 9, 100_000: 2 if quick else 7, 1_000_000: 1 if quick else 5}
    totals: list[float] = []
    for steps, repeats in sizes.items():
        stat, peak, saves, epochs = measure(steps, repeats)
        totals.append(stat.median)
        label = f"{steps:,} steps ({epochs:,} epochs x {STEPS_PER_EPOCH}, {saves:,} step saves)"
        goal = steps == 1_000_000
        fig.rows += [
            Row(
                f"simulate, {label}",
                stat,
                "s",
                goal=f"<= {GOAL_SECONDS:g} s" if goal else "",
                verdict=verdict(stat.median <= GOAL_SECONDS) if goal else "",
            ),
            Row(f"  per step, {steps:,} steps", stat.scaled(1e6 / steps), "µs"),
            Row(f"  peak memory beyond the input, {steps:,} steps", Stat.of([peak / 2**20]), "MiB"),
        ]
    fig.details.append(
        "Policy: `stop when val_loss not improving for 5`, `save every 1000 steps to "
        '"steps/e{epoch}-b{batch}-{loss:.4f}.keras"` and `stop after 2N steps` (never fires), over N steps '
        "in epochs of 100 with a distinct running loss per step. The simulator decides the batch phase "
        "per epoch (a scan of the batch losses, range arithmetic for the saves), so time and memory "
        "grow with the batch data given, linearly. The peak, about 10 bytes per step, is the input check's "
        "copy of every epoch's list of batch losses (`_series` in `policy/reference/inputs.py` returns "
        "`list(values)`: one 8-byte pointer per step); the goal is met 10x over, so nothing to do."
    )
    # Linear means a constant cost per extra step. Compare the marginal cost per step from 100k
    # to 1M with that from 10k to 100k (the fixed cost, parsing and planning, cancels out);
    # superlinear growth (a quadratic pass somewhere) would show as a ratio well above 1.
    (s1, t1), (s2, t2), (s3, t3) = ((steps, median) for steps, median in zip(sizes, totals, strict=True))
    growth = ((t3 - t2) / (s3 - s2)) / ((t2 - t1) / (s2 - s1))
    fig.rows.append(
        Row(
            "linearity: cost per extra step, 100k->1M over 10k->100k",
            Stat.of([growth]),
            "x",
            goal="<= 1.5 (no superlinear growth)",
            verdict=verdict(growth <= 1.5),
        )
    )
    return fig
