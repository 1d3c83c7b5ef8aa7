"""Figure 3: ``model.fit`` wall time with the compiled seed policy vs the hand-written callbacks.

Measured on every Keras backend there is an interpreter for (:mod:`benchmarks.backends`): this
process's backend in-process, the others through :mod:`benchmarks.backend_worker`, which calls
:func:`measure` there (a full run only; ``--quick`` measures this process's backend alone).

One model and one dataset for every run. Before each run the weights go back to their
initial values (plain SGD keeps no other state that matters), so both sides train the same
trajectory, stop in the same epoch and write the same checkpoints; the number of epochs run
is checked to be equal in every pair. One untimed fit first traces the train function.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

from benchmarks import backends
from benchmarks.common import SEED_POLICY, Figure, Row, Stat, alternate, median_interval, verdict
from benchmarks.fig2_compile import hand_written

# Up to three backends, one after the other (torch's fits are the slow ones): ten minutes each.
WATCHDOG_FULL = 1800

_GOAL = 1.0  # compiled / hand-written: the same Keras classes, so the same time


def make_model_and_data(samples: int = 2048, features: int = 20) -> tuple[Any, dict[str, Any]]:
    """A small MLP and a fixed, locally generated binary task (nothing is downloaded)."""
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(samples + samples // 4, features)).astype("float32")
    y = (x[:, :3].sum(axis=1) + rng.normal(scale=1.0, size=len(x)) > 0).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((features,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="binary_crossentropy")
    data = {
        "x": x[:samples],
        "y": y[:samples],
        "validation_data": (x[samples:], y[samples:]),
        "batch_size": 32,
        "shuffle": False,
        "verbose": 0,
    }
    return model, data


def measure(quick: bool, pairs: int | None = None) -> dict[str, Any]:
    """Alternating pairs of fits on this process's backend: compiled policy (a) vs hand-written (b).

    Returns plain lists (JSON, so a worker process can answer with it): wall seconds per side, the
    per-pair process-CPU ratios, and whether both sides ran as many epochs in every pair.
    """
    from policy import compile_policy

    # Many short fits rather than a few long ones: the median of many pair ratios shrugs off
    # the bursts of load that a shared machine has.
    default_pairs, epochs = (2, 2) if quick else (21, 4)
    pairs = pairs or default_pairs
    model, data = make_model_and_data()
    initial = model.get_weights()
    epochs_run: dict[str, list[int]] = {"a": [], "b": [], "warm-up": []}
    # CPU seconds of the whole process (all backend threads): less disturbed than wall time
    # by other people's jobs on the same two cores, so a second opinion on the ratio.
    cpu_seconds: dict[str, list[float]] = {"a": [], "b": [], "warm-up": []}
    wall_seconds: dict[str, list[float]] = {"a": [], "b": [], "warm-up": []}

    with tempfile.TemporaryDirectory(prefix="policy-bench-fit-") as tmp:
        before = os.getcwd()
        os.chdir(tmp)  # the checkpoint lands in tmp/checkpoints/
        try:

            def fit(callbacks: list[Any], side: str) -> float:
                model.set_weights(initial)
                start, cpu = time.perf_counter(), time.process_time()
                history = model.fit(epochs=epochs, callbacks=callbacks, **data)
                elapsed = time.perf_counter() - start
                cpu_seconds[side].append(time.process_time() - cpu)
                wall_seconds[side].append(elapsed)
                epochs_run[side].append(len(history.epoch))
                return elapsed

            # Untimed: traces the train and test functions and pays the first checkpoint save
            # (which imports the saving machinery), so neither side's first run carries them.
            fit(hand_written(), "warm-up")
            # Callbacks are built outside the timed region on both sides: figure 2 times that.
            pair = alternate(
                lambda: fit(compile_policy(SEED_POLICY), "a"),
                lambda: fit(hand_written(), "b"),
                pairs,
            )
        finally:
            os.chdir(before)
    return {
        "pairs": pairs,
        "epochs": epochs,
        "ratios": list(pair.ratios),
        "a_seconds": wall_seconds["a"],
        "b_seconds": wall_seconds["b"],
        "cpu_ratios": [a / b for a, b in zip(cpu_seconds["a"], cpu_seconds["b"], strict=True)],
        "same_epochs": epochs_run["a"] == epochs_run["b"],
    }


def rows(data: dict[str, Any], backend: str) -> list[Row]:
    """The figure's rows for one backend's measurements."""
    pairs, epochs = data["pairs"], data["epochs"]
    ratios = data["ratios"]
    low, high = median_interval(ratios)
    # "1.00 within noise": the 95% confidence interval of the median pair ratio (order
    # statistics, no assumption about the noise) contains 1.00.
    ok = low <= _GOAL <= high
    return [
        Row(f"{backend}: fit, {epochs} epochs x 64 steps, compiled seed policy", Stat.of(data["a_seconds"]), "s"),
        Row(f"{backend}: fit, {epochs} epochs x 64 steps, hand-written callbacks", Stat.of(data["b_seconds"]), "s"),
        Row(
            f"{backend}: ratio compiled / hand-written",
            Stat.of(ratios),
            "x",
            goal="1.00 within noise",
            verdict=verdict(ok),
            note=f"{pairs} alternating pairs, 95% CI of the median {low:.3f}-{high:.3f}; "
            f"epochs run equal in every pair: {data['same_epochs']}",
        ),
        Row(
            f"{backend}: ratio compiled / hand-written, process CPU time",
            Stat.of(data["cpu_ratios"]),
            "x",
            note="same pairs; CPU time is less disturbed by other jobs",
        ),
    ]


def run(quick: bool) -> Figure:
    """Figure 3 on this process's backend, then (full runs) on every other backend available."""
    fig = Figure(3, "model.fit with the compiled policy vs the hand-written callbacks, per backend")
    fig.rows += rows(measure(quick), backends.current())
    if quick:
        fig.details.append("`--quick`: this process's backend only.")
    else:
        for backend in backends.others():
            try:
                # Fewer pairs in the workers: a torch fit of this model takes several times
                # TensorFlow's, and the 95% interval of 9 pair ratios still decides the goal.
                fig.rows += rows(backends.ask(backend, {"fig3": True, "pairs": 9})["fig3"], backend)
            except Exception as exc:  # one backend failing must not lose the others' numbers
                fig.rows.append(Row(f"{backend}: figure 3", None, "", verdict="missed", note=f"{type(exc).__name__}: {exc}"))
        for backend in backends.missing():
            fig.rows.append(Row(f"{backend}: figure 3", None, "", note="not measured: no interpreter with it "
                                f"(set POLICY_PYTHON_{backend.upper()})"))
    fig.details.append(
        "Model: Dense(64, relu) -> Dense(1, sigmoid), SGD, 2048 training and 512 validation samples of "
        "20 features, batch 32 (64 steps per epoch), `verbose=0`, weights reset before each fit. The "
        "compiled side has one more callback (strict mode's MetricCheck, epoch-level only); both write "
        "the same checkpoints. Each backend runs in a process of its own (Keras picks the backend at "
        "import), one after the other, so their absolute times are comparable only roughly; the ratios "
        "are paired within each backend."
    )
    return fig
