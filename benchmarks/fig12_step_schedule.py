"""Figure 12: learning rate by the step (issue 14), per backend.

Three questions, on every Keras backend there is an interpreter for (:mod:`benchmarks.backends`;
this process's backend in-process, the others through :mod:`benchmarks.backend_worker`, which
calls :func:`measure` there):

1. What does a compiled step schedule cost against Keras's own? One run written twice: the
   optimizer built by hand with ``CosineDecay(0, decay_steps, alpha, warmup_target=...,
   warmup_steps=...)``, and the policy text ``describe`` gives for that object, compiled (its
   ``StepLearningRate`` installs a ``PolicyLearningRateSchedule`` at train begin and rebuilds the
   train function). Timed two ways, in alternating pairs: a fresh model per fit (the train
   function traced inside the timed fit, as in a user's run), and one model per side whose train
   function is already traced (weights and ``optimizer.iterations`` reset before each fit: the
   schedule's cost per step alone). Goal 1.00 for both.
2. Does a batch callback that assigns the rate reach the compiled train step? The probes of
   :mod:`benchmarks.lr_reach` with ``steps_per_execution`` 1 and 4: a callback assigning
   ``optimizer.learning_rate`` in ``on_train_batch_begin`` against a ``LearningRateSchedule`` of
   ``optimizer.iterations``.
3. Async batch dispatch: the batch hooks the compiled step-schedule callbacks override (Keras's
   own test, ``utils.is_default``, as figure 4; goal 0), and Keras's decision itself,
   ``CallbackList(callbacks, model=model)._async_train`` (``_configure_async_dispatch``), which
   can be on only on a thread-safe backend (JAX and torch).
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks import backends
from benchmarks.common import Figure, Row, Stat, alternate, median_interval, overridden_hooks, verdict

# Up to three backends, one after the other (torch's fits are the slow ones).
WATCHDOG_FULL = 1800

STEPS, EPOCHS, WARMUP = 64, 3, 64  # 64 steps an epoch: warm-up over the first epoch, cosine over the rest
TOTAL = STEPS * EPOCHS
PEAK, FLOOR = 1e-2, 1e-4
# "Free": a step schedule may cost no more than Keras's own schedule object. Met when the 95%
# interval of the median pair ratio reaches 1.00 or below (below: cheaper than CosineDecay).
_GOAL = 1.0


def keras_schedule() -> Any:
    """The hand-built side: Keras's CosineDecay with a linear warm-up from 0."""
    import keras

    return keras.optimizers.schedules.CosineDecay(
        0.0, TOTAL - WARMUP, alpha=FLOOR / PEAK, warmup_target=PEAK, warmup_steps=WARMUP
    )


def policy_text() -> str:
    """The same run as policy text: what ``describe`` writes for :func:`keras_schedule` (the
    optimizer then starts from rate 0, as the comment ``describe`` adds says)."""
    from policy.describe import describe

    return describe([keras_schedule()]).split("  # ")[0]


def _data() -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(STEPS * 32, 20)).astype("float32")
    y = (x[:, :3].sum(axis=1) + rng.normal(scale=1.0, size=len(x)) > 0).astype("float32")
    return x, y


def _model(learning_rate: Any) -> Any:
    """Figure 3's model (Dense(64, relu) -> Dense(1, sigmoid), SGD), the same initial weights each time."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((20,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(1, activation="sigmoid")]
    )
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=learning_rate), loss="binary_crossentropy")
    return model


def _timings(quick: bool, pairs: int | None) -> dict[str, Any]:
    """Alternating pairs, policy (a) vs Keras (b): fresh models, then traced models."""
    from policy import compile_policy

    text = policy_text()
    x, y = _data()
    fit_args = {"x": x, "y": y, "batch_size": 32, "epochs": EPOCHS, "shuffle": False, "verbose": 0}
    pairs = pairs or (2 if quick else 25)
    cpu: dict[str, list[float]] = {"fresh a": [], "fresh b": [], "traced a": [], "traced b": []}
    wall: dict[str, list[float]] = {key: [] for key in cpu}
    final_loss: dict[str, list[float]] = {"a": [], "b": []}

    def timed(model: Any, callbacks: list[Any], key: str) -> float:
        start, cpu0 = time.perf_counter(), time.process_time()
        history = model.fit(callbacks=callbacks, **fit_args)
        elapsed = time.perf_counter() - start
        cpu[key].append(time.process_time() - cpu0)
        wall[key].append(elapsed)
        final_loss[key[-1]].append(float(history.history["loss"][-1]))
        return elapsed

    # Untimed: imports, the first trace of each kind, Keras's one-off set-up.
    timed(_model(0.0), compile_policy(text), "fresh a")
    timed(_model(keras_schedule()), [], "fresh b")
    for values in (*cpu.values(), *wall.values(), *final_loss.values()):
        values.clear()

    # Models and callbacks are built outside the timed region on both sides.
    def fresh(side: str) -> float:
        if side == "a":
            model, callbacks = _model(0.0), compile_policy(text)
        else:
            model, callbacks = _model(keras_schedule()), []
        return timed(model, callbacks, f"fresh {side}")

    fresh_pairs = alternate(lambda: fresh("a"), lambda: fresh("b"), pairs)

    traced = {"a": _model(0.0), "b": _model(keras_schedule())}
    initial = traced["a"].get_weights()
    timed(traced["a"], compile_policy(text), "traced a")  # traces each side's train function
    timed(traced["b"], [], "traced b")
    for key in ("traced a", "traced b"):
        cpu[key].clear()
        wall[key].clear()

    def again(side: str) -> float:
        model = traced[side]
        model.set_weights(initial)
        model.optimizer.iterations.assign(0)  # the same steps, so the same rates, every fit
        # A new StepLearningRate finds its own schedule already installed and keeps it: no rebuild.
        return timed(model, compile_policy(text) if side == "a" else [], f"traced {side}")

    traced_pairs = alternate(lambda: again("a"), lambda: again("b"), pairs)
    return {
        "policy": text,
        "pairs": pairs,
        "fresh_ratios": list(fresh_pairs.ratios),
        "traced_ratios": list(traced_pairs.ratios),
        "wall": wall,
        "cpu_ratios": {
            kind: [a / b for a, b in zip(cpu[f"{kind} a"], cpu[f"{kind} b"], strict=True)] for kind in ("fresh", "traced")
        },
        "final_loss": final_loss,
    }


def _dispatch() -> dict[str, Any]:
    """The batch hooks the compiled step schedule overrides, and Keras's async decision for it."""
    import keras
    from keras.src.callbacks.callback_list import CallbackList

    from policy import compile_policy

    callbacks = compile_policy(policy_text())
    return {
        "callbacks": [type(cb).__name__ for cb in callbacks],
        "hooks": [f"{type(cb).__name__}.{hook}" for cb in callbacks for hook in overridden_hooks(cb)],
        "thread_safe": bool(keras.src.backend.IS_THREAD_SAFE),
        "async": bool(CallbackList(callbacks, model=_model(0.0))._async_train),
    }


def _reach() -> dict[str, Any]:
    """:mod:`benchmarks.lr_reach`'s probes with steps_per_execution 1 and 4."""
    from benchmarks import lr_reach

    def each(probe: Any, spe: int) -> dict[str, Any]:
        try:
            return probe(spe)  # type: ignore[no-any-return]
        except ValueError as e:  # a backend that refuses steps_per_execution > 1
            return {"steps_per_execution": spe, "refused": str(e)}

    return {
        "callback": [each(lr_reach.probe_callback, spe) for spe in (1, 4)],
        "schedule": [each(lr_reach.probe_schedule, spe) for spe in (1, 4)],
        "async_with_batch_begin_only": lr_reach.async_dispatch(False),
    }


def measure(quick: bool, pairs: int | None = None) -> dict[str, Any]:
    """Everything the figure reports for this process's backend, as plain JSON values."""
    import keras

    threads = None
    if keras.backend.backend() == "torch":
        import torch

        # One intra-op thread, both sides alike: with torch's default (a thread per core) on a
        # shared two-core machine, one fit of this model took anywhere from 0.5 to 10 s (threads
        # waiting on each other while other jobs hold a core); with one, 0.3 to 0.5 s.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
    return {"timings": _timings(quick, pairs), "dispatch": _dispatch(), "reach": _reach(), "torch_threads": threads}


def _ratio_rows(backend: str, data: dict[str, Any]) -> list[Row]:
    t = data["timings"]
    rows: list[Row] = []
    for kind, label in (("fresh", "fresh model, trace included"), ("traced", "train function already traced")):
        ratios = t[f"{kind}_ratios"]
        low, high = median_interval(ratios)
        rows += [
            Row(f"{backend}: fit {EPOCHS} x {STEPS} steps, {label}: compiled step schedule",
                Stat.of(t["wall"][f"{kind} a"]), "s"),
            Row(f"{backend}: the same, Keras CosineDecay(warmup_target, warmup_steps)",
                Stat.of(t["wall"][f"{kind} b"]), "s"),
            Row(
                f"{backend}: ratio step schedule / CosineDecay, {label}",
                Stat.of(ratios),
                "x",
                goal="<= 1.00 within noise",
                verdict=verdict(low <= _GOAL),
                note=f"{t['pairs']} alternating pairs, 95% CI of the median {low:.3f}-{high:.3f}",
            ),
            Row(f"{backend}: the same ratio, process CPU time", Stat.of(t["cpu_ratios"][kind]), "x",
                note="same pairs; CPU time is less disturbed by other jobs"),
        ]
    losses = t["final_loss"]
    diff = max(abs(a - b) / abs(b) for a, b in zip(losses["a"], losses["b"], strict=True))
    rows.append(Row(f"{backend}: final loss, step schedule vs CosineDecay, largest relative difference",
                    Stat.of([diff]), "", note="the same run: rates agree to float32 rounding"))
    return rows


def _dispatch_rows(backend: str, data: dict[str, Any]) -> list[Row]:
    d = data["dispatch"]
    rows = [
        Row(
            f"{backend}: batch hooks overridden by the compiled step schedule",
            Stat.of([float(len(d["hooks"]))]),
            "hooks",
            goal="0",
            verdict=verdict(not d["hooks"]),
            note=f"{', '.join(d['callbacks'])}; {', '.join(d['hooks']) or 'none'}",
        )
    ]
    if d["thread_safe"]:
        rows.append(
            Row(f"{backend}: async batch dispatch kept with the compiled step schedule", Stat.of([float(d["async"])]),
                "yes=1", goal="1", verdict=verdict(d["async"]),
                note="CallbackList(compile_policy(text), model=model)._async_train")
        )
    else:
        rows.append(
            Row(f"{backend}: async batch dispatch", Stat.of([float(d["async"])]), "yes=1",
                note="not thread-safe in Keras: every batch hook runs synchronously, whatever the callbacks")
        )
    return rows


def _reach_lines(backend: str, data: dict[str, Any]) -> list[str]:
    r = data["reach"]
    lines = []
    for cb, sched in zip(r["callback"], r["schedule"], strict=True):
        spe = cb["steps_per_execution"]
        if "refused" in cb:
            lines.append(f"| {backend} | {spe} | refused: {cb['refused'][:80]} | - | - |")
            continue
        lines.append(
            f"| {backend} | {spe} | {'yes' if cb['exact'] else '**no**'} "
            f"({', '.join(f'{v:g}' for v in cb['epoch_rate_sums'])}; exact "
            f"{', '.join(f'{v:g}' for v in cb['if_exact_per_step'])}) | "
            f"{'yes' if cb['reaches'] else 'no'} | {'yes' if sched.get('exact') else '**no**'} |"
        )
    return lines


def run(quick: bool) -> Figure:
    """Figure 12 on this process's backend, then (full runs) on every other backend available."""
    fig = Figure(12, "Learning rate by the step: compiled step schedule vs Keras's CosineDecay, per backend")
    answers: dict[str, dict[str, Any]] = {backends.current(): measure(quick)}
    unmeasured: list[Row] = []
    if quick:
        fig.details.append("`--quick`: this process's backend only.")
    else:
        for backend in backends.others():
            try:
                request = {"fig12": True, "pairs": 25}
                answers[backend] = backends.ask(backend, request)["fig12"]
            except Exception as exc:  # one backend failing must not lose the others' numbers
                unmeasured.append(Row(f"{backend}: figure 12", None, "", verdict="missed",
                                    note=f"{type(exc).__name__}: {exc}"))
        for backend in backends.missing():
            unmeasured.append(Row(f"{backend}: figure 12", None, "", note="not measured: no interpreter with it "
                                f"(set POLICY_PYTHON_{backend.upper()})"))
    for backend, data in answers.items():
        fig.rows += _ratio_rows(backend, data)
    for backend, data in answers.items():
        fig.rows += _dispatch_rows(backend, data)
    fig.rows += unmeasured
    text = next(iter(answers.values()))["timings"]["policy"]
    fig.details.append(
        f"The run: `CosineDecay(0, {TOTAL - WARMUP}, alpha={FLOOR / PEAK:g}, warmup_target={PEAK:g}, "
        f"warmup_steps={WARMUP})` in `SGD`, against the policy `{text}` (what `describe` writes for that "
        "object) compiled, the optimizer built with rate 0. Figure 3's model (Dense(64, relu) -> Dense(1, "
        f"sigmoid)), {STEPS * 32} samples of 20 features, batch 32, {EPOCHS} epochs ({TOTAL} optimizer steps), "
        "`verbose=0`, no validation. Fresh model: each fit builds a new model outside the timed region, so the "
        "timed fit traces its train function (the policy's `StepLearningRate` rebuilds it at train begin, "
        "before the first trace: one trace per fit on both sides). Traced: one model per side, weights and "
        "`optimizer.iterations` reset before each fit; the policy's callback finds its schedule installed "
        "and keeps it. The goal is the issue's \"free\": no dearer than Keras's own schedule object, met when "
        "the 95% interval of the median pair ratio reaches 1.00 or below."
        + "".join(
            f" {backend} ran with one intra-op thread (its default here: {data['torch_threads']}), both sides "
            "alike: with the default, fits of this model on this shared machine varied twentyfold."
            for backend, data in answers.items()
            if data.get("torch_threads")
        )
    )
    fig.details.append(
        "Does a batch callback assigning the rate reach the compiled step? `benchmarks/lr_reach.py`'s probe: "
        "the model's bias moves by exactly -lr per step (rates 1, 2, 3, ... for steps 0, 1, 2, ...), so the "
        "sum of the rates an epoch used is read off the bias. Columns: the batch callback is exact per step "
        "(the sums per epoch it produced; the exact ones); its assignment reaches the next execution; a "
        "`LearningRateSchedule` of `optimizer.iterations` (what a step schedule compiles to) is exact per "
        "step.\n\n| backend | steps_per_execution | batch callback exact per step | reaches the next "
        "execution | schedule in the step exact |\n|---|---|---|---|---|\n"
        + "\n".join(line for backend, data in answers.items() for line in _reach_lines(backend, data))
    )
    begin_only = {backend: data["reach"]["async_with_batch_begin_only"] for backend, data in answers.items()}
    fig.details.append(
        "Async dispatch is measured by asking Keras, not by timing: the compiled callbacks' overridden batch "
        "hooks are counted with Keras's own `utils.is_default`, and `CallbackList(callbacks, model=model)` "
        "reports its decision in `_async_train` (on only where `keras.src.backend.IS_THREAD_SAFE`: JAX and "
        "torch). What turning it off costs is timed in figure 4. For comparison, a callback overriding only "
        "`on_train_batch_begin` keeps async dispatch too ("
        + ", ".join(f"{backend}: {'on' if on else 'off'}" for backend, on in begin_only.items())
        + "): Keras looks only at the batch-end hooks, but a batch-begin hook still runs synchronously before "
        "every execution and, with `steps_per_execution` > 1, misses the steps inside one (table above)."
    )
    return fig
