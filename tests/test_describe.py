"""policy.describe: Keras callbacks -> policy text -> the same callbacks again."""

from __future__ import annotations

import math
import os
from typing import Any

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from policy import callbacks as ours  # noqa: E402
from policy import format_policy, parse_policy  # noqa: E402
from policy.ast import Policy  # noqa: E402
from policy.describe import describe  # noqa: E402
from policy.errors import PolicyError  # noqa: E402
from policy.metrics import name_direction  # noqa: E402
from policy.testing.strategies import policies  # noqa: E402

cbs = keras.callbacks
EXAMPLES = int(os.environ.get("POLICY_EXAMPLES", "50"))


def _has_compiler() -> bool:
    try:
        import policy.compiler  # noqa: F401
    except ImportError:
        return False
    return True


needs_compiler = pytest.mark.skipif(not _has_compiler(), reason="policy.compiler is not written yet")


# --------------------------------------------------------------------------- text


@pytest.mark.parametrize(
    ("callback", "text"),
    [
        (cbs.EarlyStopping(patience=3), "stop when val_loss not improving for 3"),
        (cbs.EarlyStopping(monitor="val_accuracy", mode="max", min_delta=-0.01, patience=5, baseline=0.6,
                           restore_best_weights=True, start_from_epoch=2),
         "stop when val_accuracy not improving by 0.01 for 5, restore best, ignore first 2 epochs, baseline 0.6"),
        (cbs.EarlyStopping(monitor="val_loss", mode="max", patience=2), "stop when val_loss not increasing for 2"),
        (cbs.EarlyStopping(monitor="score_x", mode="min", patience=2), "stop when score_x not decreasing for 2"),
        (cbs.EarlyStopping(),
         "stop when val_loss not improving for 1  # EarlyStopping patience=0 acts as 1 in Keras "
         "(wait is counted before the test)"),
        # Keras's min_delta default (1e-4) is not the policy's (0), so it is written out.
        (cbs.ReduceLROnPlateau(), "multiply lr by 0.1 when val_loss not improving by 0.0001 for 10"),
        (cbs.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=2, min_delta=0, cooldown=2, min_lr=1e-6),
         "multiply lr by 0.5 when loss not improving for 2, cooldown 2, min lr 1e-06"),
        (cbs.ModelCheckpoint("best.keras", save_best_only=True), 'save best on val_loss to "best.keras"'),
        (cbs.ModelCheckpoint("b.weights.h5", monitor="val_accuracy", mode="min", save_best_only=True,
                             save_weights_only=True),
         'save best weights on val_accuracy min to "b.weights.h5"'),
        (cbs.ModelCheckpoint("best.keras", save_best_only=True, initial_value_threshold=0.5),
         'save best on val_loss below 0.5 to "best.keras"'),
        (cbs.ModelCheckpoint("best.keras", monitor="val_accuracy", save_best_only=True, initial_value_threshold=0.8),
         'save best on val_accuracy above 0.8 to "best.keras"'),
        (cbs.ModelCheckpoint("e{epoch:02d}.keras"), 'save every epoch to "e{epoch:02d}.keras"'),
        (ours.KeepLastModelCheckpoint("e{epoch:02d}.keras", keep=3), 'save every epoch to "e{epoch:02d}.keras", keep last 3'),
        (ours.KeepLastModelCheckpoint("s{batch}.weights.h5", keep=1, save_freq=5, save_weights_only=True),
         'save weights every 5 steps to "s{batch}.weights.h5", keep last 1'),
        (ours.TimedCheckpoint("t{epoch}-{batch}.keras", 1800), 'save every 30 min to "t{epoch}-{batch}.keras"'),
        (ours.TimedCheckpoint("t.weights.h5", 90, weights_only=True), 'save weights every 90s to "t.weights.h5"'),
        (ours.PeriodicCheckpoint("p{epoch}.keras", 3, keep=2), 'save every 3 epochs to "p{epoch}.keras", keep last 2'),
        (cbs.ModelCheckpoint("last.keras"), 'save last to "last.keras"'),
        (cbs.ModelCheckpoint("s.weights.h5", save_freq=100, save_weights_only=True),
         'save weights every 100 steps to "s.weights.h5"'),
        (cbs.TerminateOnNaN(), "stop when loss is not finite"),
        (cbs.TerminateOnNaN(raise_error=True), "fail when loss is not finite"),
        (cbs.CSVLogger("train.csv", append=True), 'log to "train.csv", append'),
        (cbs.TensorBoard("tb"), 'log to tensorboard "tb"'),
        (cbs.BackupAndRestore("bk"), 'backup to "bk"'),
        (cbs.BackupAndRestore("bk", save_freq=20), 'backup to "bk" every 20 steps'),
    ],
)
def test_describe_text(callback: Any, text: str) -> None:
    assert describe([callback]) == text
    parse_policy(text)  # and it is a valid policy


def test_everything_without_an_equivalent_is_named_at_once() -> None:
    with pytest.raises(PolicyError) as info:
        describe([
            cbs.EarlyStopping(patience=2),
            cbs.LearningRateScheduler(lambda epoch: 0.1),
            cbs.TensorBoard("tb", histogram_freq=1),
            cbs.EarlyStopping(monitor="foo"),
            cbs.ModelCheckpoint("m.h5"),
            cbs.ModelCheckpoint("m.keras", save_best_only=True, initial_value_threshold=math.nan),
            cbs.LambdaCallback(),
        ])
    assert [p.message for p in info.value.problems] == [
        "callback 1 (LearningRateScheduler): schedule <lambda> is a Python function; only schedules built by a "
        "policy (warm up / cosine / decay) can be written as one",
        "callback 2 (TensorBoard): histogram_freq set; a policy's TensorBoard rule takes only the log folder",
        "callback 3 (EarlyStopping): mode='auto' on 'foo': cannot tell from the name whether it should go up or "
        "down; pass mode='min' or mode='max'",
        "callback 4 (ModelCheckpoint): filepath='m.h5': a policy saves models in the .keras format only",
        "callback 5 (ModelCheckpoint): initial_value_threshold=nan has no equivalent (a threshold is a finite number)",
        "callback 6 (LambdaCallback): no policy rule does what this callback does",
    ]


def test_condition_stopping_watching_against_its_text_has_no_equivalent() -> None:
    from policy.callbacks import ConditionStopping

    condition = parse_policy("stop when val_loss not improving by 1% for 3").rules[0].condition  # type: ignore[union-attr]
    assert describe([ConditionStopping(condition)]) == "stop when val_loss not improving by 1% for 3"
    with pytest.raises(PolicyError, match=r"directions=\['max'\] is not what"):
        describe([ConditionStopping(condition, directions=["max"])])


def test_conflicting_callbacks_are_reported_on_the_described_text() -> None:
    with pytest.raises(PolicyError, match=r"two rules write 'a\.keras'"):
        describe([cbs.ModelCheckpoint("a.keras"), cbs.ModelCheckpoint("a.keras", save_best_only=True)])


# --------------------------------------------------------------------------- round trip


def keras_class(cb: Any) -> type:
    """The Keras class a callback is or extends (ours may subclass Keras's)."""
    for klass in type(cb).__mro__:
        if klass.__module__.startswith("keras."):
            return klass
    return type(cb)


def _mode(monitor: str, mode: str) -> str:
    return (name_direction(monitor) or "min") if mode == "auto" else mode


def behaviour(cb: Any) -> tuple[Any, ...]:
    """What decides a callback's behaviour, normalised where Keras treats values alike."""
    k = keras_class(cb)
    if k is cbs.EarlyStopping:
        return (k, cb.monitor, float(cb.min_delta), max(cb.patience, 1), _mode(cb.monitor, cb.mode), cb.baseline,
                bool(cb.restore_best_weights), cb.start_from_epoch)
    if k is cbs.ReduceLROnPlateau:
        return (k, cb.monitor, float(cb.factor), max(cb.patience, 1), _mode(cb.monitor, cb.mode),
                float(cb.min_delta), cb.cooldown, float(cb.min_lr))
    if k is cbs.ModelCheckpoint:
        best = (cb.monitor, _mode(cb.monitor, cb.mode), cb.best) if cb.save_best_only else ()
        return (k, cb.filepath, cb.save_best_only, cb.save_weights_only, cb.save_freq, *best)
    if k is cbs.TerminateOnNaN:
        return (k, cb.raise_error)
    if k is cbs.CSVLogger:
        return (k, cb.filename, cb.sep, cb.append)
    if k is cbs.TensorBoard:
        return (k, cb.log_dir, cb.histogram_freq, cb.write_graph, cb.update_freq)
    if k is cbs.BackupAndRestore:
        return (k, cb.backup_dir, cb.save_freq, cb.double_checkpoint, cb.delete_checkpoint)
    if k is cbs.LearningRateScheduler:
        return (type(cb), cb.schedule)
    # One of ours: its class and what it was built with (not what it records during fit).
    built = {key: v for key, v in vars(cb).items() if not key.startswith("_") and key not in _RUNTIME}
    return (type(cb), sorted(built.items()))


_RUNTIME = {"model", "stop_record", "best_weights", "best_epoch", "kept", "seen", "clock", "policy", "policy_rule"}


def compiled_behaviour(text: str) -> list[tuple[Any, ...]]:
    from policy import compile_policy
    from policy.callbacks import FitStart, MetricCheck, StopHold, StopRelease, TerminateOnNaNRecorder

    # compile_policy adds helpers (the strict metric check, TerminateOnNaN's stop recorder, the
    # train-begin reset of Keras's cross-fit state) that have no counterpart in hand-written code,
    # and a minimum's pair around each held rule, which the minimum itself stands for.
    helpers = MetricCheck | TerminateOnNaNRecorder | FitStart | StopHold | StopRelease
    return [behaviour(cb) for cb in compile_policy(text) if not isinstance(cb, helpers)]


MONITORS = ["val_loss", "loss", "val_accuracy", "auc", "val_mae"]
MODES = ["auto", "min", "max"]
deltas = st.sampled_from([0.0, 0.01, -0.001, 1e-4, 0.5])


def early_stopping(i: int) -> st.SearchStrategy[Any]:
    return st.builds(cbs.EarlyStopping, monitor=st.sampled_from(MONITORS), min_delta=deltas,
                     patience=st.integers(0, 8), mode=st.sampled_from(MODES),
                     baseline=st.none() | st.sampled_from([0.5, 1.25]), restore_best_weights=st.booleans(),
                     start_from_epoch=st.integers(0, 4))


def reduce_lr(i: int) -> st.SearchStrategy[Any]:
    return st.builds(cbs.ReduceLROnPlateau, monitor=st.sampled_from(MONITORS), factor=st.sampled_from([0.1, 0.5, 0.9]),
                     patience=st.integers(0, 8), mode=st.sampled_from(MODES), min_delta=deltas,
                     cooldown=st.integers(0, 3), min_lr=st.sampled_from([0.0, 1e-6, 1e-3]))


def checkpoint(i: int) -> st.SearchStrategy[Any]:
    @st.composite
    def build(draw: st.DrawFn) -> Any:
        weights = draw(st.booleans())
        best = draw(st.booleans())
        name = f"ck{i}" + ("-{epoch}" if draw(st.booleans()) else "")
        return cbs.ModelCheckpoint(
            name + (".weights.h5" if weights else ".keras"), monitor=draw(st.sampled_from(MONITORS)),
            mode=draw(st.sampled_from(MODES)), save_best_only=best, save_weights_only=weights,
            save_freq="epoch" if best else draw(st.sampled_from(["epoch", 1, 50])),
        )

    return build()


def simple(i: int) -> st.SearchStrategy[Any]:
    return st.sampled_from([
        cbs.TerminateOnNaN(), cbs.CSVLogger(f"log{i}.csv"), cbs.CSVLogger(f"log{i}.csv", append=True),
        cbs.TensorBoard(f"tb{i}"), cbs.BackupAndRestore(f"bk{i}"), cbs.BackupAndRestore(f"bk{i}", save_freq=7),
    ])


@st.composite
def callback_lists(draw: st.DrawFn) -> list[Any]:
    n = draw(st.integers(1, 4))
    # Index-based file names: two callbacks never write one path, which a policy forbids.
    return [draw(st.one_of(early_stopping(i), reduce_lr(i), checkpoint(i), simple(i))) for i in range(n)]


@needs_compiler
@pytest.mark.parametrize("callback", [cbs.EarlyStopping(patience=3), cbs.ReduceLROnPlateau(),
                                      cbs.ModelCheckpoint("best.keras", save_best_only=True),
                                      cbs.BackupAndRestore("bk", save_freq=3), cbs.TerminateOnNaN()])
def test_compiles_back_to_the_same_callback(callback: Any) -> None:
    assert compiled_behaviour(describe([callback])) == [behaviour(callback)]


@needs_compiler
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(callback_lists())
def test_describe_then_compile_round_trips(callbacks: list[Any]) -> None:
    # Every monitor drawn says its direction, so describe() never refuses here.
    # compile_policy puts a backup last (docs/semantics.md, "Backups").
    backups = [cb for cb in callbacks if isinstance(cb, cbs.BackupAndRestore)]
    ordered = [cb for cb in callbacks if cb not in backups] + backups
    assert compiled_behaviour(describe(callbacks)) == [behaviour(cb) for cb in ordered]


@needs_compiler
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies())
def test_describing_a_compiled_policy_gives_the_policy_back(policy: Policy) -> None:
    """Our own callbacks too: what describe() writes compiles to callbacks built the same way.

    The text need not be the policy's own (``save best on val_loss min`` comes back without
    the ``min`` the name already implies), so the compiled callbacks are compared.
    """
    from policy import compile_policy

    described = describe(compile_policy(policy))
    assert compiled_behaviour(described) == compiled_behaviour(format_policy(policy))
    # ...and describing is stable: a second round gives the same text.
    assert describe(compile_policy(described)) == described


@needs_compiler
def test_our_callbacks_are_described() -> None:
    from policy import compile_policy

    text = (
        "stop when val_accuracy >= 0.95 or val_loss not improving by 5% for 4, restore best val_loss\n"
        "stop after 90 min\n"
        "save top 3 weights on val_accuracy to \"ck/{epoch:03d}.weights.h5\"\n"
        "save every 2 epochs to \"e{epoch}.keras\"\n"
        "warm up lr to 0.01 over 3 epochs, then cosine to 0.0001 over 10 epochs\n"
        "stop when loss is not finite\n"
        "save best on val_loss\n"
        "train at least 12 steps\n"
        "multiply lr by 0.5 when val_loss not improving for 2, restore best"
    )
    assert describe(compile_policy(text)) == text


# --------------------------------------------------------------------------- real fits


def _has_harness() -> bool:
    try:
        from policy.testing.harness import run_callbacks, run_in_keras  # noqa: F401
    except ImportError:
        return False
    return True


HISTORY = {
    "loss": [1.0, 0.8, 0.7, 0.69, 0.69, 0.68, 0.7, 0.71],
    "val_loss": [1.0, 0.9, 0.95, 0.9, 0.97, 0.98, 0.89, 0.99],
    "val_accuracy": [0.5, 0.6, 0.61, 0.6, 0.6, 0.59, 0.62, 0.62],
}

REAL_FIT_CASES = [
    lambda: [cbs.EarlyStopping(patience=0, restore_best_weights=True)],
    # mode="max" spelled out: the harness's model compiles no accuracy metric, so Keras's
    # "auto" could not decide (describe() reads "auto" from the name, as a policy does).
    lambda: [cbs.EarlyStopping(monitor="val_accuracy", mode="max", min_delta=0.005, patience=2, baseline=0.605),
             cbs.ModelCheckpoint("best.keras", monitor="val_accuracy", mode="max", save_best_only=True)],
    lambda: [cbs.ReduceLROnPlateau(patience=1, factor=0.5, cooldown=1), cbs.CSVLogger("log.csv")],
    lambda: [cbs.ReduceLROnPlateau(monitor="loss", mode="max", patience=2, min_lr=0.004),
             cbs.ModelCheckpoint("e{epoch}.weights.h5", save_weights_only=True)],
    lambda: [cbs.EarlyStopping(monitor="val_loss", mode="min", start_from_epoch=3, patience=1),
             cbs.ModelCheckpoint("last.keras")],
]


@needs_compiler
@pytest.mark.skipif(not _has_harness(), reason="policy.testing.harness is not written yet")
@pytest.mark.parametrize("make", REAL_FIT_CASES)
def test_described_policy_behaves_like_the_callbacks_in_a_real_fit(make: Any, tmp_path: Any) -> None:
    """Hand-written callbacks and the policy describe() wrote make the same decisions in fit."""
    import dataclasses

    from policy.testing.harness import run_callbacks, run_in_keras

    text = describe(make())
    by_hand = run_callbacks(make(), HISTORY, initial_lr=0.01, workdir=tmp_path / "hand").outcome
    by_policy = run_in_keras(text, HISTORY, initial_lr=0.01, workdir=tmp_path / "policy")
    # Hand-written callbacks carry no record of which rule stopped; everything else must match.
    assert dataclasses.replace(by_policy, stop=None) == by_hand


# --------------------------------------------------------------------------- Keras schedule objects

SCHEDULE_STEPS = 400
_ks = keras.optimizers.schedules


def _as_in_the_train_step(schedule: Any) -> Any:
    """The schedule called as the optimizer calls it in ``fit``. On JAX that is inside the jitted
    train step; called eagerly there, the ``ops.cond`` in CosineDecay's warm-up and in
    CosineDecayRestarts compiles both branches again at every call (about 45 s for 400 steps),
    and eager and jitted results differ in the last bits."""
    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(schedule)
    return schedule


@pytest.mark.parametrize(
    ("schedule", "text", "exact"),
    [
        (_ks.CosineDecay(1e-3, 300), "cosine lr to 0 over 300 steps", False),
        (_ks.CosineDecay(1e-3, 250, alpha=0.1), "cosine lr to 0.000100000005 over 250 steps", False),
        (_ks.CosineDecay(1e-5, 200, alpha=0.05, warmup_target=3e-3, warmup_steps=50),
         "linear lr to 0.003 over 50 steps, then cosine to 0.00015 over 200 steps", False),
        (_ks.CosineDecay(1e-3, 200, warmup_target=2e-3, warmup_steps=0), "cosine lr to 0 over 200 steps", False),
        (_ks.PolynomialDecay(0.1, 300, end_learning_rate=1e-4), "linear lr to 0.0001 over 300 steps", False),
        (_ks.ExponentialDecay(0.1, 30, 0.5, staircase=True), "decay lr by 0.5 every 30 steps", True),
        (_ks.ExponentialDecay(0.1, 7, 0.9, staircase=True), "decay lr by 0.9 every 7 steps", False),
        (_ks.ExponentialDecay(0.1, 1, 0.99), "decay lr by 0.99 every step", False),
        (_ks.ExponentialDecay(0.1, 30, 0.5), "decay lr by 0.5 every 30 steps, smoothly", False),
        (_ks.ExponentialDecay(1e-3, 7, 0.96), "decay lr by 0.96 every 7 steps, smoothly", False),
        (_ks.PiecewiseConstantDecay([100, 200], [0.1, 0.01, 0.001]), "multiply lr by 0.1 at steps 101, 201", True),
        (_ks.PiecewiseConstantDecay([0, 10], [1.0, 0.5, 0.25]), "multiply lr by 0.5 at steps 1, 11", True),
        (_ks.CosineDecayRestarts(1e-3, 60, t_mul=1.0, m_mul=1.0, alpha=0.1),
         "cosine lr to 0.000100000005 over 400 steps, restart every 60 steps", False),
        # Keras's defaults (t_mul=2, m_mul=1): periods 20, 40, 80, 160, restarts at 20, 60, 140, 300.
        (_ks.CosineDecayRestarts(1e-3, 20), "cosine lr to 0 over 400 steps, restart every 20 steps, periods times 2",
         False),
        # m_mul scales the height above alpha's floor, not the floor.
        # Restarts at steps 10, 35, 97.5 (steps 97 and 98 either side) and 253.75.
        (_ks.CosineDecayRestarts(0.1, 10, t_mul=2.5, m_mul=0.5, alpha=0.1),
         "cosine lr to 0.010000001 over 400 steps, restart every 10 steps, periods times 2.5, peaks times 0.5", False),
        (_ks.CosineDecayRestarts(0.05, 7, t_mul=3.0, m_mul=0.8, alpha=0.01),
         "cosine lr to 0.0005 over 400 steps, restart every 7 steps, periods times 3, peaks times 0.8", False),
    ],
)
def test_keras_schedule_object_gives_the_same_rate_at_every_step(schedule: Any, text: str, exact: bool) -> None:
    import numpy as np

    from policy import lr_schedule
    from policy.describe_schedules import schedule_node
    from policy.printer import rule

    described = describe([schedule], total_steps=SCHEDULE_STEPS)
    assert described.split("  # ")[0] == text
    node, start = schedule_node(schedule, SCHEDULE_STEPS)
    assert rule(node) == text and start is not None
    # The optimizer's rate variable is float32: the described rule starts from that value.
    ours = lr_schedule(text, initial_lr=float(np.float32(start)), total_steps=SCHEDULE_STEPS)
    # Steps 0..N; a described CosineDecayRestarts is written over the run (total_steps), 0..N-1.
    steps = range(SCHEDULE_STEPS + (0 if isinstance(schedule, _ks.CosineDecayRestarts) else 1))
    keras_rate = _as_in_the_train_step(schedule)
    want = np.array([keras.ops.convert_to_numpy(keras_rate(np.int64(t))) for t in steps], dtype=np.float32)
    got = np.array([keras.ops.convert_to_numpy(ours(t)) for t in steps], dtype=np.float32)
    if exact:
        assert want.tobytes() == got.tobytes()
    # Keras computes in float32 arithmetic, the policy in float64 then rounds: they may differ
    # in the last bits, never by a step (a step moves every one of these by far more). The bound
    # is about 8 float32 epsilons of the largest rate: each Keras formula is a short chain of
    # float32 operations on values up to that rate, and CosineDecayRestarts loses the bits of the
    # restart count when it subtracts it from step / period in float32. Largest differences seen
    # (Keras 3.15.1): 3.7e-7 of the largest rate on TensorFlow and torch, 8.2e-7 on JAX
    # (CosineDecayRestarts under jit, where XLA fuses the chain differently). ExponentialDecay with
    # staircase=False and CosineDecayRestarts with t_mul/m_mul: at most 2.3e-7 on all three.
    tolerance = 1e-6 * float(want.max())
    assert np.abs(want - got).max() <= tolerance
    assert np.abs(want[1:] - got[:-1]).max() > tolerance  # the tolerance would catch one step off


def test_a_restart_keras_misses_is_named() -> None:
    # Keras's float32 log puts step 8191 (the 13th restart of t_mul=2 from a 1-step period) at
    # the end of period 12, on every backend: Keras gives 0 there, a policy the peak.
    schedule = _ks.CosineDecayRestarts(1.0, 1)
    with pytest.raises(PolicyError, match="misses its restart at step 8191 on this backend"):
        describe([schedule], total_steps=9000)
    assert describe([schedule], total_steps=8191).startswith(
        "cosine lr to 0 over 8191 steps, restart every 1 step, periods times 2")


def test_an_optimizer_built_with_a_schedule_is_described_by_its_schedule() -> None:
    opt = keras.optimizers.AdamW(learning_rate=_ks.CosineDecay(1e-3, 1000, warmup_target=1e-2, warmup_steps=100))
    assert describe([opt, cbs.EarlyStopping(patience=3)]) == (
        "linear lr to 0.01 over 100 steps, then cosine to 0 over 1000 steps  # starts from lr 0.001: build the "
        "optimizer with learning_rate=0.001\nstop when val_loss not improving for 3")
    with pytest.raises(PolicyError, match="no callbacks to describe"):
        describe([keras.optimizers.SGD(0.1)])  # a fixed rate needs no rule


def test_a_policy_schedule_object_is_described_by_its_text() -> None:
    from policy import lr_schedule

    text = "warm up lr to 0.001 over 500 steps, then cosine to 1e-05 over 20000 steps"
    assert describe([lr_schedule(text)]) == text
    assert describe([lr_schedule("decay lr by 0.5 every 10 steps", initial_lr=0.1)]) == (
        "decay lr by 0.5 every 10 steps  # starts from lr 0.1: build the optimizer with learning_rate=0.1")


def test_keras_schedules_without_an_exact_rule_are_named_with_the_reason() -> None:
    with pytest.raises(PolicyError) as info:
        describe([
            _ks.PolynomialDecay(0.1, 100, power=2.0),
            _ks.PolynomialDecay(0.1, 100, cycle=True),
            _ks.ExponentialDecay(0.1, 10, 1.5, staircase=True),
            _ks.PiecewiseConstantDecay([10, 20], [0.1, 0.05, 0.04]),
            _ks.CosineDecayRestarts(1e-3, 60, t_mul=0.5),
            _ks.CosineDecayRestarts(1e-3, 60, t_mul=1.0),
            _ks.InverseTimeDecay(0.1, 10, 0.5),
            _ks.CosineDecay(1e-3, 10.5),
            _ks.CosineDecayRestarts(1e-3, 60, t_mul=1.1),
        ])
    assert [p.message for p in info.value.problems] == [
        "callback 0 (PolynomialDecay): power=2.0: only power=1 (a straight line, 'linear lr to X over N steps') "
        "has a policy rule",
        "callback 1 (PolynomialDecay): cycle=True (the decay starts again with a longer period) has no policy rule",
        "callback 2 (ExponentialDecay): decay_rate=1.5: a policy's decay factor is between 0 and 1 (exclusive)",
        "callback 3 (PiecewiseConstantDecay): values=[0.1, 0.05, 0.04] are not the first times one factor at each "
        "boundary (exactly, in float32); a policy multiplies by one factor at each milestone",
        "callback 4 (CosineDecayRestarts): t_mul=0.5: a policy's restart periods stay or grow (t_mul >= 1)",
        "callback 5 (CosineDecayRestarts): CosineDecayRestarts restarts forever while a policy's cosine ends: pass "
        "total_steps (the steps the run trains) to describe",
        "callback 6 (InverseTimeDecay): InverseTimeDecay has no policy rule (supported: CosineDecay, "
        "PiecewiseConstantDecay, PolynomialDecay with power=1, ExponentialDecay, CosineDecayRestarts)",
        "callback 7 (CosineDecay): decay_steps=10.5 is not a whole number of steps >= 1",
        "callback 8 (CosineDecayRestarts): t_mul=1.1 is not exact in float32, so Keras's restarts drift from a "
        "policy's (use a t_mul such as 1.5, 2 or 3)",
    ]
