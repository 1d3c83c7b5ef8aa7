"""Figure 10: killed at random moments and restarted, plain Keras vs the same rules as a policy.

One policy of rules Keras has (EarlyStopping with restore best, ReduceLROnPlateau, a best and an
every-epoch ModelCheckpoint, a CSVLogger, a backup), run two ways by the real-kill harness
(:mod:`policy.testing.kills`): the plain Keras callbacks ``keras-policy compile --python`` writes
for it (Keras's ModelCheckpoint and BackupAndRestore), and the compiled policy. Each chain is one
run SIGKILLed after a delay drawn uniformly over an uninterrupted run's training time (so a kill
lands in proportion to where the time goes: training, checkpoint writes, backup writes), then
restarted once and run to the end. Counted per 100 kills: model files torn (at their final name
but not loadable) right after the kill, restarts that failed, and chains whose decisions
(learning rate of each epoch, checkpoint writes, files left, the stop, final weights, CSV rows)
differ from the uninterrupted run's.
"""

from __future__ import annotations

import pathlib
import random
import tempfile
import time
from typing import Any

from benchmarks.common import Figure, Row, Stat, verdict

TEXT = (
    "stop when val_loss not improving for 3, restore best\n"
    "multiply lr by 0.5 when val_loss not improving for 1\n"
    'save best on val_loss to "best.keras"\n'
    'save every epoch to "every/{epoch:02d}.keras"\n'
    'log to "train.csv"\n'
    'backup to "bk"'
)
HISTORY = [
    {"loss": 1.0 - 0.04 * e, "val_loss": v}
    for e, v in enumerate([1.0, 0.9, 0.92, 0.85, 0.86, 0.84, 0.84, 0.83, 0.9, 0.88, 0.82, 0.85])
]
STEPS = 4
SEED = 20261201
WATCHDOG_FULL = 3600  # 100 kills a side: about 400 forked runs


def _decisions(result: Any) -> tuple[Any, ...]:
    o = result.outcome
    return (o.learning_rates, tuple(sorted(o.saves)), o.files, o.restored_epoch, result.final_weights, result.csv_rows)


def measure(kind: str, kills: int, rng: random.Random, warm_up: bool = True) -> dict[str, float]:
    """Torn files, failed restarts and wrong chains over ``kills`` single-kill chains."""
    from policy.testing.kills import Kill, run_chain

    spec = {"kind": kind, "policy": TEXT, "history": HISTORY, "steps_per_epoch": STEPS}
    counts = {"kills": 0.0, "torn": 0.0, "failed": 0.0, "wrong": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        if warm_up:
            run_chain(spec, [], root / "warm-up")  # the server's start is not a run's time
        start = time.perf_counter()
        whole = run_chain(spec, [], root / "whole")
        # A kill delay is drawn over 90% of an uninterrupted run's time (measured with the
        # fork and the model build, which come before the timer starts), so nearly every
        # kill lands before training ends.
        span = 0.9 * (time.perf_counter() - start)
        for i in range(kills):
            delay = rng.uniform(0.0, span)
            # A kill drawn after the end of training (the machine got faster than when the run
            # was timed) lands nowhere: draw again below it, so every chain has its one kill.
            for attempt in range(4):
                cut = run_chain(spec, [Kill(delay=delay)], root / f"cut{i}-{attempt}")
                if cut.kills:
                    break
                delay = rng.uniform(0.0, delay)
            counts["kills"] += cut.kills
            counts["torn"] += len(cut.torn)
            counts["failed"] += len(cut.failed_restarts)
            counts["wrong"] += float(bool(cut.failed_restarts) or _decisions(cut) != _decisions(whole))
    return counts


def run(quick: bool) -> Figure:
    fig = Figure(10, "killed at random moments and restarted: plain Keras vs the policy (per 100 kills)")
    kills = 1 if quick else 100
    rng = random.Random(SEED)
    results = {kind: measure(kind, kills, rng, warm_up=not quick) for kind in ("keras", "policy")}
    for kind, label in (("keras", "plain Keras callbacks"), ("policy", "compiled policy")):
        c = results[kind]
        per100 = 100.0 / max(c["kills"], 1.0)
        note = f"{int(c['kills'])} kills landed in {kills} chains"
        fig.rows += [
            Row(f"{label}: torn model files per 100 kills", Stat.of([c["torn"] * per100]), "files", note=note),
            Row(f"{label}: failed restarts per 100 kills", Stat.of([c["failed"] * per100]), "restarts"),
            Row(
                f"{label}: runs with a wrong decision per 100 kills",
                Stat.of([c["wrong"] * per100]),
                "runs",
                goal="0" if kind == "policy" else "",
                verdict=verdict(c["wrong"] == 0 and c["torn"] == 0 and c["failed"] == 0) if kind == "policy" else "",
            ),
        ]
    fig.details.append(
        "Policy: " + "; ".join(TEXT.splitlines()) + f", over {len(HISTORY)} scripted epochs of {STEPS} batches. "
        "Keras side: the callbacks `keras-policy compile --python` writes (Keras's own classes, files written in "
        "place, BackupAndRestore restoring weights, optimizer and epoch only). A wrong decision is any "
        "difference from the uninterrupted run in the learning rate of an epoch, a checkpoint write, the "
        "files left, the restored weights, the final weights or the CSV log's rows, or a restart that fails."
    )
    return fig
