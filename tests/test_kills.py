"""Real SIGKILLs: a policy with a backup, killed at any moment and restarted, decides as if never killed.

Each run is a real process (forked from a server that imported Keras once) that kills itself
with SIGKILL after its N-th event: a training batch, an epoch begin or end, an fsync, a rename,
a file written into a .keras archive (so between epochs, mid-epoch and in the middle of a
save). The chain of killed runs plus a final one must make exactly the decisions of an
uninterrupted run, which must equal ``simulate``: learning rate of every epoch, every
checkpoint write, the files left, the stop, the final weights, and the CSV log's rows.
Backups every N steps and SIGTERMs land inside epochs: the resumed run goes on after the
backed-up batch, so with a model that really learns (``learn``: its weights change every batch,
its dropout draws masks) the final weights and fit's own epoch logs must be the uninterrupted
run's to the bit. Dropout's masks come from Keras's seed generator on TensorFlow and JAX and
from torch's global generator on torch: a backup that left out the first (on TensorFlow or JAX)
or the second (on torch) fails both learning tests, at the shared budgets too (measured).

Runs on every backend (``tests/backends.py``). Budgets: ``POLICY_KILL_EXAMPLES`` generated cases
(default 4) with 4 kills each, ``POLICY_KILLS`` kills of a fixed rich policy (default 30), and
``POLICY_KILL_STEP_KILLS`` kills of the rich policy backed up every 2 steps with a model that
learns (default 12). ``tests/backends.py`` shares each budget between the backends it tests, as
it shares ``POLICY_EXAMPLES``: with three, each gets a third (2 cases, 10 and 4 kills), draws its
own cases (the seed is the backend's name) and walks its own stretch of the sequence of kill
moments, so together they kill at every moment one backend alone would. The fixed tests
(SIGTERMs inside epochs with a learning model, timed kills, the plain-Keras counterpart) run in
full on each.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import tempfile
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from terminal_summary import write_summary

from policy import ast, format_policy, simulate
from policy.outcome import Outcome
from policy.testing.kills import BACKUP_DIR, ChainResult, Kill, run_chain
from policy.testing.strategies import RULE_KINDS, Case, cases

EXAMPLES = int(os.environ.get("POLICY_KILL_EXAMPLES", "4"))
RICH_KILLS = int(os.environ.get("POLICY_KILLS", "30"))
STEP_KILLS = int(os.environ.get("POLICY_KILL_STEP_KILLS", "12"))
# conftest.py sets KERAS_BACKEND before keras is imported. Each backend starts its walk through
# the kill moments where the one before it stops (shares of the default budgets put end to end
# are the walk one backend alone takes), and draws its own generated cases.
BACKEND = os.environ["KERAS_BACKEND"]
WALK_START = ("tensorflow", "jax", "torch").index(BACKEND)
# `fail when` makes fit raise by design: a chain of restarts cannot finish a run that fails.
KINDS = [k for k in RULE_KINDS if k not in ("backup", "tensorboard", "fail_when")]


def _with_backup(policy: ast.Policy, steps: int | None = None) -> ast.Policy:
    rules = (*policy.rules, ast.Backup(path=ast.Path(value=BACKUP_DIR), steps=steps))
    return ast.Policy(rules=rules, source=format_policy(ast.Policy(rules=rules)))


def _decisions(outcome: Outcome) -> tuple[Any, ...]:
    """What must agree: writes compared as a set per epoch (the order of rules within an epoch
    is not journaled), the stop as (rule, epoch)."""
    stop = None if outcome.stop is None else (outcome.stop.rule, outcome.stop.epoch)
    return (
        outcome.epochs_run,
        outcome.learning_rates,
        tuple(sorted(outcome.saves)),
        outcome.files,
        outcome.restored_epoch,
        stop,
    )


TALLY = {"chains": 0, "kills": 0, "inside": 0, "inside_learning": 0}


@pytest.fixture(scope="module", autouse=True)
def kill_summary(request: pytest.FixtureRequest) -> Iterator[None]:
    """Print what the checked chains did on this backend (CI's log shows it)."""
    yield
    if TALLY["chains"]:
        write_summary(request, lambda: [
            f"kills on {BACKEND}: {TALLY['kills']} processes killed in {TALLY['chains']} checked chains; "
            f"{TALLY['inside']} restarts resumed inside an epoch, {TALLY['inside_learning']} of them with a "
            f"learning model (budgets POLICY_KILL_EXAMPLES={EXAMPLES} POLICY_KILLS={RICH_KILLS} "
            f"POLICY_KILL_STEP_KILLS={STEP_KILLS})"
        ])


def _check(spec: dict[str, Any], kills: list[Kill], expected: Outcome | None) -> ChainResult:
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        whole = run_chain(spec, [], root / "whole", in_process=True)
        cut = run_chain(spec, kills, root / "cut")
    inside = sum(batch >= 0 for _, batch in cut.resumes)
    TALLY["chains"] += 1
    TALLY["kills"] += cut.kills
    TALLY["inside"] += inside
    TALLY["inside_learning"] += inside if spec.get("learn") else 0
    assert cut.torn == []
    assert cut.failed_restarts == []
    assert _decisions(cut.outcome) == _decisions(whole.outcome)
    assert cut.final_weights == whole.final_weights
    assert cut.csv_rows == whole.csv_rows
    assert cut.real_logs == whole.real_logs
    if expected is not None:
        if spec.get("learn"):  # the weights are learned, not the epoch's mark: restored best is in them
            expected = dataclasses.replace(expected, restored_epoch=None)
        assert _decisions(whole.outcome) == _decisions(expected)
    return cut


def _spec(case: Case, policy: ast.Policy) -> dict[str, Any]:
    return {
        "kind": "policy",
        "policy": format_policy(policy),
        "history": [dict(logs) for logs in case.history],
        "initial_lr": case.initial_lr,
        "steps_per_epoch": case.steps_per_epoch,
        "batch_losses": None if case.batch_losses is None else [list(b) for b in case.batch_losses],
        "step_seconds": case.step_seconds,
        "strict": case.strict,
        "validation_freq": case.validation_freq,
        "steps_per_execution": case.steps_per_execution,
        "initial_epoch": case.initial_epoch,
    }


@seed(zlib.crc32(BACKEND.encode()))
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    cases(kinds=KINDS, max_rules=4),
    st.lists(st.integers(1, 40), min_size=4, max_size=4),
    st.sampled_from([None, 1, 2, 3]),
)
def test_killed_and_restarted_runs_decide_as_one_uninterrupted_run(
    case: Case, events: list[int], backup_steps: int | None
) -> None:
    policy = _with_backup(case.policy, backup_steps)
    spec = _spec(case, policy)
    try:
        expected = simulate(policy, case.history, **case.run_options())
    except Exception:
        return
    if expected.failed is not None:
        return  # a `fail when` rule ends fit with an exception: no finished run to compare with
    _check(spec, [Kill(event=e) for e in events], expected)


def test_a_rate_counted_in_steps_resumed_after_an_epochs_last_batch() -> None:
    """A drawn case the JAX pass found: a backup after the last batch of epoch 1, a kill before
    that epoch's end. The resumed run restarts epoch 1 with the optimizer's iterations back at 4,
    so a rate read at that epoch begin is the 5th step's, not the 3rd's that began the epoch in
    the killed run (the chain's journal keeps that run's; training and weights were exact)."""
    text = f'decay lr by 0.5 every step\nbackup to "{BACKUP_DIR}" every 1 steps'
    history = [{"loss": 1.0}, {"loss": 1.0}, {"loss": 1.0}]
    spec = {"kind": "policy", "policy": text, "history": history, "initial_lr": 0.001, "steps_per_epoch": 2}
    cut = _check(spec, [Kill(event=e) for e in (36, 1, 1, 1)], simulate(text, history, steps_per_epoch=2, initial_lr=0.001))
    assert (1, 1) in cut.resumes


def test_saves_by_training_time_count_it_across_kills() -> None:
    """Time is scripted (0.4 s a batch) for ``save every T`` too, in every run of the chain; the
    time since the last save is backed up, and the kills land inside epochs."""
    text = f'save every 1s to "ckpt/t-{{epoch}}-{{batch}}.keras"\nbackup to "{BACKUP_DIR}" every 1 steps'
    history = [{"loss": 1.0}] * 4
    spec = {"kind": "policy", "policy": text, "history": history, "steps_per_epoch": 3, "step_seconds": 0.4}
    expected = simulate(text, history, steps_per_epoch=3, step_seconds=0.4, initial_lr=0.01)
    assert len(expected.saves) >= 3
    _check(spec, [Kill(event=e) for e in (5, 9, 13)], expected)


RICH = (
    "warm up lr to 0.02 over 2 epochs, then decay by 0.5 every 2 epochs\n"
    "stop when val_loss not improving for 3, restore best\n"
    "stop when val_accuracy not improving by 1% for 4 or val_loss < 0.05, restore best val_loss\n"
    'save top 2 on val_loss to "ck/{epoch:02d}.keras"\n'
    'save best weights on val_accuracy to "best.weights.h5"\n'
    'save every 2 epochs to "every/{epoch}.keras"\n'
    "stop after 30 steps\n"
    'log to "logs/train.csv"\n'
    f'backup to "{BACKUP_DIR}"'
)
RICH_HISTORY = [
    {"loss": 1.0 - 0.05 * e, "val_loss": v, "val_accuracy": a}
    for e, (v, a) in enumerate(
        zip(
            [1.0, 0.9, 0.92, 0.85, 0.86, 0.84, 0.84, 0.83, 0.9, 0.95, 0.97],
            [0.5, 0.6, 0.6, 0.62, 0.625, 0.63, 0.7, 0.7, 0.69, 0.68, 0.7],
            strict=True,
        )
    )
]


def test_a_rich_policy_killed_at_every_kind_of_moment() -> None:
    spec = {"kind": "policy", "policy": RICH, "history": RICH_HISTORY, "steps_per_epoch": 3, "initial_lr": 0.01}
    # Event numbers walking through batches, epoch ends, fsyncs, renames and archive writes.
    start = WALK_START * RICH_KILLS
    kills = [Kill(event=3 + (7 * i) % 23) for i in range(start, start + RICH_KILLS)]
    cut = _check(spec, kills, simulate(RICH, RICH_HISTORY, steps_per_epoch=3, initial_lr=0.01))
    assert cut.kills >= RICH_KILLS


@pytest.mark.parametrize("delay", [0.1])
def test_a_kill_at_a_random_time_too(delay: float) -> None:
    spec = {"kind": "policy", "policy": RICH, "history": RICH_HISTORY, "steps_per_epoch": 3}
    _check(spec, [Kill(delay=delay)] * 3, None)


def test_the_harness_sees_what_plain_keras_loses() -> None:
    """Teeth: the same kills, with the plain Keras callbacks the policy ejects to, go wrong."""
    text = (
        "decay lr by 0.5 every 1 epochs\n"
        "stop when val_loss not improving for 3, restore best\n"
        'save best on val_loss to "best.keras"\n'
        f'backup to "{BACKUP_DIR}"'
    )
    spec = {"kind": "keras", "policy": text, "history": RICH_HISTORY, "steps_per_epoch": 3}
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        whole = run_chain(spec, [], root / "whole", in_process=True)
        cut = run_chain(spec, [Kill(event=e) for e in (45, 70, 95)], root / "cut")
    assert cut.kills >= 1
    assert cut.torn or cut.failed_restarts or _decisions(cut.outcome) != _decisions(whole.outcome)


def test_sigterm_under_a_backup_rule_stops_cleanly_and_resumes_exactly() -> None:
    spec = {"kind": "policy", "policy": RICH, "history": RICH_HISTORY, "steps_per_epoch": 3}
    cut = _check(spec, [Kill(event=e, signal="SIGTERM") for e in (10, 30, 50)], None)
    # Each stop is policy.Preempted, a SystemExit with the code of a process ended by SIGTERM.
    assert cut.exit_codes[:3] == [143, 143, 143] and cut.exit_codes[-1] == 0


STEPPED = RICH.replace(f'backup to "{BACKUP_DIR}"', f'backup to "{BACKUP_DIR}" every 2 steps').replace(
    'log to "logs/train.csv"', 'log to "logs/train.csv"\nsave weights every 4 steps to "st/{epoch}-{batch}.weights.h5"'
)


def test_kills_with_backups_every_2_steps_resume_inside_epochs_exactly() -> None:
    """SIGKILLs anywhere (batches, saves, backups) with a backup every 2 steps: most restarts
    resume inside an epoch, and the learned weights, fit's own running losses, every decision,
    file and CSV row are the uninterrupted run's."""
    spec = {"kind": "policy", "policy": STEPPED, "history": RICH_HISTORY, "steps_per_epoch": 3, "learn": True}
    start = WALK_START * STEP_KILLS
    kills = [Kill(event=4 + (11 * i) % 29) for i in range(start, start + STEP_KILLS)]
    expected = simulate(STEPPED, RICH_HISTORY, steps_per_epoch=3, initial_lr=0.01)
    cut = _check(spec, kills, expected)
    assert cut.kills >= min(STEP_KILLS, 10)
    assert sum(batch >= 0 for _, batch in cut.resumes) >= max(1, cut.kills // 3)  # inside an epoch, really


@pytest.mark.parametrize("spe", [1, 2])
def test_sigterm_inside_an_epoch_writes_a_backup_there_and_loses_no_work(spe: int) -> None:
    """SIGTERM after a batch: the backup is written at the end of that batch and the restart
    goes on with the next one (no batch trained twice: the learned weights show it)."""
    import keras

    if spe > 1 and keras.backend.backend() == "torch":
        pytest.skip("torch runs one batch per execution")
    spec = {
        "kind": "policy", "policy": RICH, "history": RICH_HISTORY, "steps_per_epoch": 3, "learn": True,
        "steps_per_execution": spe,
    }
    # The 4th batch end of a run is inside an epoch (3 batches an epoch), as is the 3rd with 2 per execution.
    cut = _check(spec, [Kill(batch=4 if spe == 1 else 3, signal="SIGTERM")] * 3, None)
    assert cut.exit_codes[:3] == [143, 143, 143] and cut.exit_codes[-1] == 0
    assert [batch >= 0 for _, batch in cut.resumes[1:]] == [True, True, True]


@pytest.mark.parametrize("events", [[7], [10, 14]])
def test_a_log_kept_with_append_killed_before_the_first_backup_has_no_doubled_row(events: list[int]) -> None:
    # The kills fall after the first epoch's row is written and before its backup (and again
    # later): the restart must cut the log back to where it stood when training began.
    text = 'multiply lr by 0.5 when val_loss not improving for 1\nlog to "train.csv", append\nbackup to "bk"'
    history = [{"loss": 1.0, "val_loss": v} for v in (1.0, 0.9, 0.95, 0.97, 0.8)]
    spec = {"kind": "policy", "policy": text, "history": history, "initial_lr": 0.01, "steps_per_epoch": 3}
    cut = _check(spec, [Kill(event=e) for e in events], None)
    assert len(cut.csv_rows) == 1 + len(history)


def test_sigterm_without_a_backup_rule_is_left_alone() -> None:
    text = "decay lr by 0.5 every 1 epochs; stop when val_loss not improving for 3"
    spec = {"kind": "policy", "policy": text, "history": RICH_HISTORY, "steps_per_epoch": 3}
    with tempfile.TemporaryDirectory() as tmp:
        cut = run_chain(spec, [Kill(event=10, signal="SIGTERM")], pathlib.Path(tmp) / "cut")
    assert cut.exit_codes[0] == -15  # Python's default: the process ends by the signal


def test_torn_means_at_its_final_name(tmp_path: pathlib.Path) -> None:
    from policy.testing.kills import torn_files

    (tmp_path / "bk" / ".partial-1-generation-00000002").mkdir(parents=True)
    (tmp_path / "bk" / ".partial-1-generation-00000002" / "model.weights.h5").write_bytes(b"half")
    (tmp_path / ".partial-1-best.keras").write_bytes(b"half")
    (tmp_path / "best.keras").write_bytes(b"half")
    assert torn_files(tmp_path) == ["best.keras"]


def test_the_server_refuses_to_fork_once_jax_has_started() -> None:
    """The fork server's guard has teeth: JAX's backend started (as in this process, which runs
    the uninterrupted reference run in place) makes a fork unsafe, and the check says so."""
    import keras

    from policy.testing.kills import _unsafe_to_fork

    if keras.backend.backend() != "jax":
        pytest.skip("only JAX's runtime is checked: the server never starts any backend's")
    keras.ops.convert_to_numpy(keras.ops.zeros(1))
    assert _unsafe_to_fork() is not None
