"""Figure 4: batch hooks a policy adds, and whether Keras keeps async batch dispatch on.

On a thread-safe backend (JAX and torch in Keras 3.15.1; not TensorFlow) Keras's ``CallbackList._configure_async_dispatch`` dispatches
``on_train_batch_end`` to a thread pool unless some callback overrides ``on_batch_end`` or
``on_train_batch_end`` (and does not declare ``async_safe = True``). An epoch-level rule has no
business with batches, so the goal is 0 overridden batch hooks among the callbacks of ours.
Keras's own classes are counted apart: ModelCheckpoint overrides ``on_train_batch_end`` even
with ``save_freq="epoch"``, so every ``save best``/``save every epoch``/``save last`` rule turns
async dispatch off. That cost is timed on every backend there is an interpreter for
(:mod:`benchmarks.backends`): on JAX and torch, which have async dispatch, and on TensorFlow,
which runs every batch hook synchronously anyway, as the control.
"""

from __future__ import annotations

from typing import Any

from benchmarks import backends
from benchmarks.common import SEED_POLICY, Figure, Row, Stat, overridden_hooks, verdict

# Up to three backends, one after the other (torch's fits are the slow ones): ten minutes each.
WATCHDOG_FULL = 1800

# Epoch-level policies: nothing in them needs to see a training batch.
EPOCH_LEVEL = [
    SEED_POLICY,
    "stop when val_loss not improving for 3, restore best",
    "stop when val_accuracy >= 0.9 or val_loss not improving by 1% for 2",
    "stop when loss is nan",
    "stop after 5 epochs",
    'save every 3 epochs to "c/{epoch}.keras"',
    'save top 2 on val_loss min to "t/{epoch}.keras"',
    "warm up lr to 0.001 over 5 epochs, then cosine to 1e-5 over 100 epochs",
    "multiply lr by 0.5 when val_loss not improving for 2",
    'log to "train.csv"',
    "save best on val_loss min",
    'save every epoch to "e/{epoch}.keras"',
    'save last to "last.keras"',
    'backup to "backup/"',
    'log to tensorboard "logs/"',
]


def _is_ours(cb: Any) -> bool:
    return type(cb).__module__.startswith("policy.")


def _measure(backend: str, rounds: int, epochs: int) -> dict[str, Any]:
    """Async decisions and ModelCheckpoint timings on ``backend``: in-process for this process's
    backend, else through its worker."""
    request = {"policies": EPOCH_LEVEL, "rounds": rounds, "epochs": epochs}
    if backend == backends.current():
        import keras

        from benchmarks.backend_worker import async_decisions, checkpoint_timings

        return {
            "thread_safe": bool(keras.src.backend.IS_THREAD_SAFE),
            "async": async_decisions(EPOCH_LEVEL),
            "timings": checkpoint_timings(rounds, epochs) if rounds else {},
        }
    return backends.ask(backend, request)


def _patched_decisions(policies: list[str]) -> dict[str, Any]:
    """The async decisions without JAX: Keras's own check, with ``IS_THREAD_SAFE`` patched on.

    Used by --quick, where starting a JAX interpreter would cost a sixth of the time budget;
    ``_configure_async_dispatch`` reads nothing else from the backend.
    """
    from unittest import mock

    import keras
    from keras.src.callbacks.callback_list import CallbackList

    from policy import compile_policy

    with mock.patch.object(keras.src.backend, "IS_THREAD_SAFE", True):
        decisions = {text: bool(CallbackList(compile_policy(text))._async_train) for text in policies}
    return {"where": "TF process with IS_THREAD_SAFE patched (--quick)", "async": decisions, "timings": {}}


def run(quick: bool) -> Figure:
    """Count batch hooks per policy; ask every backend about async dispatch and time ModelCheckpoint there."""
    from policy import compile_policy

    fig = Figure(4, "Batch hooks added by epoch-level policies; async batch dispatch (JAX), per backend")
    ours_total = 0
    keras_forced: dict[str, list[str]] = {}
    table = ["| policy | batch hooks, our callbacks | batch hooks, Keras's classes | async on JAX |", "|---|---|---|---|"]
    per_policy: list[tuple[str, list[str], list[str]]] = []
    for text in EPOCH_LEVEL:
        ours: list[str] = []
        theirs: list[str] = []
        for cb in compile_policy(text):
            hooks = overridden_hooks(cb)
            if getattr(cb, "async_safe", False):
                continue  # exempt, as Keras exempts it
            named = [f"{type(cb).__name__}.{hook}" for hook in hooks]
            (ours if _is_ours(cb) else theirs).extend(named)
        ours_total += len(ours)
        # TensorBoard's batch hooks do real work (step counts, the graph, batch scalars), so it
        # is listed but not held against the goal; the others only return early.
        if any(not hook.startswith("TensorBoard.") for hook in theirs):
            keras_forced[text] = theirs
        per_policy.append((text, ours, theirs))

    # JAX gets the most rounds (the async question was first asked there); the others fewer.
    epochs = 3
    answers: dict[str, dict[str, Any]] = {}
    failures: dict[str, str] = {}
    if quick:
        answers["jax (patched)"] = _patched_decisions(EPOCH_LEVEL)
    else:
        for backend in [backends.current(), *backends.others()]:
            try:
                answers[backend] = _measure(backend, 15 if backend == "jax" else 6, epochs)
            except Exception as exc:  # one backend failing must not lose the others' numbers
                failures[backend] = f"{type(exc).__name__}: {exc}"
    jax = answers.get("jax") or answers.get("jax (patched)")
    for text, ours, theirs in per_policy:
        decision = "-" if jax is None else ("on" if jax["async"][text] else "**off**")
        table.append(
            f"| `{text.replace('|', '/')}` | {', '.join(ours) or '0'} | {', '.join(theirs) or '0'} | {decision} |"
        )

    fig.rows.append(
        Row(
            f"batch hooks overridden by our callbacks, {len(EPOCH_LEVEL)} epoch-level policies",
            Stat.of([float(ours_total)]),
            "hooks",
            goal="0",
            verdict=verdict(ours_total == 0),
        )
    )
    fig.rows.append(
        Row(
            "epoch-level policies where a Keras class forces a batch hook it does not use",
            Stat.of([float(len(keras_forced))]),
            "policies",
            goal="0",
            verdict=verdict(not keras_forced),
            note="ModelCheckpoint / BackupAndRestore with save_freq='epoch', compiled unchanged (TensorBoard not counted)",
        )
    )
    if jax is None:
        fig.rows.append(
            Row("async batch dispatch on JAX", None, "", note="not measured: no JAX interpreter (set POLICY_PYTHON_JAX)")
        )
    else:
        # TensorBoard needs its batch hooks (see above), so its policy is not held to the goal.
        relevant = [text for text in EPOCH_LEVEL if "tensorboard" not in text]
        kept = sum(1 for text in relevant if jax["async"][text])
        fig.rows.append(
            Row(
                "JAX: epoch-level policies keeping async batch dispatch (TensorBoard excepted)",
                Stat.of([float(kept)]),
                f"of {len(relevant)}",
                goal=f"{len(relevant)}",
                verdict=verdict(kept == len(relevant)),
                note=f"CallbackList(compile_policy(text))._async_train, {jax.get('where') or 'JAX worker'}",
            )
        )
    for backend, answer in answers.items():
        if backend.endswith("(patched)"):
            continue
        if answer["thread_safe"] and backend != "jax":
            relevant = [text for text in EPOCH_LEVEL if "tensorboard" not in text]
            kept = sum(1 for text in relevant if answer["async"][text])
            fig.rows.append(
                Row(f"{backend}: epoch-level policies keeping async batch dispatch (TensorBoard excepted)",
                    Stat.of([float(kept)]), f"of {len(relevant)}", goal=f"{len(relevant)}",
                    verdict=verdict(kept == len(relevant)), note="CallbackList(compile_policy(text))._async_train")
            )
        if not answer["thread_safe"]:
            on = sum(1 for text in EPOCH_LEVEL if answer["async"][text])
            fig.rows.append(
                Row(f"{backend}: async batch dispatch", Stat.of([float(on)]), f"of {len(EPOCH_LEVEL)} policies",
                    note="not thread-safe in Keras: every batch hook runs synchronously, whatever the callbacks")
            )
        t = answer["timings"]
        if not t:
            continue
        none, plain, safe = t["none"], t["ModelCheckpoint"], t["ModelCheckpoint async_safe"]
        rounds = len(none)
        fig.rows += [
            Row(f"{backend}: fit {epochs} epochs x 64 steps, no callbacks", Stat.of(none), "s"),
            Row(f'{backend}: fit, ModelCheckpoint(save_freq="epoch")', Stat.of(plain), "s",
                note="async dispatch off" if answer["thread_safe"] else "synchronous backend"),
            Row(f"{backend}: fit, the same ModelCheckpoint with async_safe = True", Stat.of(safe), "s",
                note="async on" if answer["thread_safe"] else "no effect: synchronous backend"),
            Row(
                f"{backend}: ratio plain / async_safe ModelCheckpoint",
                Stat.of([a / b for a, b in zip(plain, safe, strict=True)]),
                "x",
                note=f"{rounds} rounds, order rotated; >1 is what forcing the hook costs"
                + ("" if answer["thread_safe"] else " (expected 1: nothing to turn off here)"),
            ),
            Row(
                f"{backend}: ratio plain ModelCheckpoint / no callbacks",
                Stat.of([a / b for a, b in zip(plain, none, strict=True)]),
                "x",
                note="includes the per-epoch save itself",
            ),
        ]
    if quick:
        fig.rows.append(Row("fit timings", None, "", note="not timed with --quick"))
    for backend, error in failures.items():
        fig.rows.append(Row(f"{backend}: figure 4", None, "", verdict="missed", note=error))
    for backend in backends.missing():
        fig.rows.append(Row(f"{backend}: figure 4", None, "", note=f"not measured: no interpreter with it "
                            f"(set POLICY_PYTHON_{backend.upper()})"))
    fig.details.append("\n".join(table))
    marked = any(getattr(cb, "async_safe", False) for cb in compile_policy('save last to "l.keras"'))
    fig.details.append(
        (
            "What the project does about Keras classes that force a batch hook: epoch-frequency "
            "ModelCheckpoints are compiled with `async_safe = True`. "
            if marked
            else "What the project does about Keras classes that force a batch hook: nothing yet. `save best`, "
            "`save every epoch` and `save last` compile to a plain `keras.callbacks.ModelCheckpoint` "
            "(`policy/compiler.py`, `compile_rule`), so any policy with one of them runs every training batch "
            "synchronously on JAX and torch. "
        )
        + "With `save_freq=\"epoch\"` its `on_train_batch_end` only calls "
        "`_should_save_on_batch`, which returns False at once, so marking the instance `async_safe = True` "
        "is honest and keeps the class Keras's own. `BackupAndRestore(save_freq=\"epoch\")` is the same case "
        "(its `_should_save_on_batch` also returns False at once). `TensorBoard` is not: its batch hooks count "
        "steps, write the train graph at the first batch and hand batch scalars to its writer, so it should "
        "stay synchronous."
    )
    return fig
