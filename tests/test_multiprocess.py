"""Many processes, one decision: two real processes on localhost (Keras's distribution API on JAX).

One launch of two processes (:func:`policy.testing.processes.launch`, free port, ``timeout -k``)
runs every case below in a shared folder. Each process's decisions are compared with the other's,
with the same policy in one process (the harness, in this pytest process) and with ``simulate``;
the files on disk with the one-process run's (each model file loads); and who wrote them, from
each process's audit events: process 1 must not have written, renamed or removed anything there.

The two-process tests run in the JAX pass of the suite (``KERAS_BACKEND=jax``) and skip cleanly
elsewhere; the single-writer test with a faked process index runs on every backend, and the
MirroredStrategy test (one process, 2 logical CPU devices) in the TensorFlow pass.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import tempfile
from typing import Any

import keras
import pytest

from policy import compile_policy, simulate
from policy.callbacks import processes
from policy.outcome import Outcome, Stop
from policy.testing import run_callbacks, run_in_keras

EVERYTHING = (
    'backup to "bk/"; decay lr by 0.5 every 1 epochs; stop when val_loss not improving for 2, restore best; '
    'save top 2 on val_loss to "ck/{epoch}.keras"; log to "log.csv"; save best on val_loss to "best.keras"; '
    'save weights every 2 epochs to "w/{epoch}.weights.h5"; save last to "last.keras"; '
    "stop when val_loss not improving by 1% for 3 or val_loss < 0.1, restore best val_loss; stop after 40 steps"
)
HISTORY = {
    "loss": [1.0, 0.9, 0.8, 0.85, 0.7, 0.75, 0.76, 0.77, 0.78],
    "val_loss": [1.0, 0.9, 0.95, 0.85, 0.86, 0.84, 0.9, 0.91, 0.92],
}
PLATEAU = (
    "multiply lr by 0.5 when val_loss not improving for 1, cooldown 1; stop when loss is not finite; "
    'save every 2 steps to "s/e{epoch}-b{batch}.keras"; log to "logs/train.csv"; stop after 11 steps'
)
PLATEAU_LOSSES = [[1.0, 1.0, 1.0], [0.9, 0.9, 0.9], [0.8, 0.8, 0.8], [0.8, float("nan"), 0.8], [0.7] * 3]
REAL = (
    "stop when val_loss not improving for 2; multiply lr by 0.5 when val_loss not improving for 1; "
    "save best on val_loss to 'best.keras'; log to 'log.csv'"
)
CASES: list[dict[str, Any]] = [
    {"kind": "scripted", "name": "everything", "policy": EVERYTHING, "history": HISTORY, "steps_per_epoch": 3},
    {
        "kind": "scripted",
        "name": "plateau",
        "policy": PLATEAU,
        "history": {"loss": [1.0, 0.9, 0.8, 0.8, 0.7], "val_loss": [1.0, 1.0, 0.9, 0.9, 0.9]},
        "steps_per_epoch": 3,
        "batch_losses": PLATEAU_LOSSES,
    },
    # Process 1's clock runs 2.5x as fast: its budget runs out at step 12, the last of epoch 2
    # (an agreement point); process 0 alone would go on to step 30. Both must stop at step 12.
    {
        "kind": "scripted",
        "name": "clock",
        "policy": "stop after 30s",
        "history": {"loss": [1.0] * 5},
        "steps_per_epoch": 4,
        "step_seconds": [1.0, 2.5],
    },
    # Time-based saves agree like the budget: process 1's clock reaches 10 s since the last write
    # at the last batch of every epoch (an agreement point), process 0's never does; both write
    # there (process 0 only, really), as one process on the faster clock does. keep last 2 deletes
    # on process 0 only.
    {
        "kind": "scripted",
        "name": "timed",
        "policy": 'save every 10s to "t/{epoch}-{batch}.keras"; save every epoch to "k/e{epoch}.keras", keep last 2',
        "history": {"loss": [1.0] * 4},
        "steps_per_epoch": 4,
        "step_seconds": [1.0, 2.5],
    },
    # With 40 steps an epoch, process 1's budget runs out at step 12, between agreement points:
    # both stop at step 16 (AGREE_EVERY), with the longest clock (40 s) in the reason.
    {
        "kind": "scripted",
        "name": "cadence",
        "policy": "stop after 30s",
        "history": {"loss": [1.0] * 2},
        "steps_per_epoch": 40,
        "step_seconds": [1.0, 2.5],
    },
    # SIGTERM reaches process 1 alone, in epoch 2: both leave at the next agreement point with
    # the backup written, and the run started again resumes with the uninterrupted decisions.
    {
        "kind": "scripted",
        "name": "preempted",
        "policy": EVERYTHING,
        "history": HISTORY,
        "steps_per_epoch": 3,
        "sigterm_at": [1, 2, 1],
    },
    # A step schedule handing the rate over to a plateau rule: the cut is written into the
    # optimizer's rate variable, which each process (each replica) must read in its train step.
    {
        "kind": "scripted",
        "name": "handover",
        "policy": "warm up lr to 0.02 over 5 steps, then cosine to 0.004 over 4 steps; "
        "multiply lr by 0.5 when val_loss not improving for 1, restore best",
        "history": {"loss": [1.0] * 6, "val_loss": [1.0, 1.0, 0.9, 0.95, 0.96, 0.97]},
        "steps_per_epoch": 3,
    },
    {"kind": "real", "name": "real", "policy": REAL, "epochs": 10},
]


def _on_jax() -> bool:
    return keras.backend.backend() == "jax"


needs_jax = pytest.mark.skipif(not _on_jax(), reason="two-process runs use Keras's distribution API on JAX")


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> tuple[pathlib.Path, list[dict[str, Any]]]:
    workdir = tmp_path_factory.mktemp("two")
    answers = _launch(workdir)
    return workdir, answers


def _launch(workdir: pathlib.Path) -> list[dict[str, Any]]:
    from policy.testing.processes import launch

    return launch({"cases": CASES}, workdir, count=2, timeout=float(os.environ.get("POLICY_MP_TIMEOUT", "240")))


def _case(name: str) -> dict[str, Any]:
    return next(c for c in CASES if c["name"] == name)


def _outcome(data: dict[str, Any]) -> Outcome:
    stop = data["stop"]
    return Outcome(
        epochs_run=data["epochs_run"],
        learning_rates=tuple(data["learning_rates"]),
        saves=tuple((e, p) for e, p in data["saves"]),
        files=tuple(data["files"]),
        restored_epoch=data["restored_epoch"],
        stop=None if stop is None else Stop(stop["rule"], stop["epoch"], stop["reason"]),
        rollbacks=tuple((e, w) for e, w in data.get("rollbacks", ())),
    )


def _decisions(o: Outcome) -> tuple[Any, ...]:
    reason = None if o.stop is None else o.stop.reason
    return (o.epochs_run, o.learning_rates, o.restored_epoch, o.stop, reason)


def _files(folder: pathlib.Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _one_process(name: str, folder: pathlib.Path) -> Outcome:
    case = _case(name)
    seconds = case.get("step_seconds")
    return run_in_keras(
        case["policy"],
        case["history"],
        steps_per_epoch=case.get("steps_per_epoch", 1),
        batch_losses=case.get("batch_losses"),
        step_seconds=max(seconds) if isinstance(seconds, list) else seconds,
        workdir=folder,
    )


@needs_jax
@pytest.mark.parametrize("name", ["everything", "plateau", "clock", "timed", "handover"])
def test_two_processes_decide_as_one_process_and_as_simulate(
    name: str, two: tuple[pathlib.Path, list[dict[str, Any]]], tmp_path: pathlib.Path
) -> None:
    workdir, answers = two
    p0, p1 = (_outcome(a["cases"][name]["outcome"]) for a in answers)
    one = _one_process(name, tmp_path)
    case = _case(name)
    seconds = case.get("step_seconds")
    predicted = simulate(
        case["policy"],
        case["history"],
        steps_per_epoch=case["steps_per_epoch"],
        batch_losses=case.get("batch_losses"),
        step_seconds=max(seconds) if isinstance(seconds, list) else None,
        initial_lr=0.01,
        strict=True,
    )
    assert _decisions(p0) == _decisions(p1) == _decisions(one)
    assert p0 == one == predicted
    # why_stopped() is the same on both processes, reason included.
    assert answers[0]["cases"][name]["stop"] == answers[1]["cases"][name]["stop"]
    assert answers[0]["cases"][name]["weights"] == answers[1]["cases"][name]["weights"]
    # The same files as one process leaves (the CSV log with the same rows), and nothing else.
    folder = workdir / name
    assert _files(folder) == _files(tmp_path)
    for rel in _files(folder):
        if rel.endswith(".csv"):
            assert (folder / rel).read_text() == (tmp_path / rel).read_text()
        elif rel.endswith(".keras"):
            keras.saving.load_model(folder / rel)
        elif rel.endswith(".weights.h5"):
            keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]).load_weights(folder / rel)


@needs_jax
def test_only_process_zero_writes(two: tuple[pathlib.Path, list[dict[str, Any]]]) -> None:
    workdir, answers = two
    for name in [c["name"] for c in CASES]:
        assert answers[1]["cases"][name]["writes"] == [], name
    writes = answers[0]["cases"]["everything"]["writes"]
    # Every checkpoint reached its name by a rename (atomic), top-k deleted on process 0 only.
    renamed = {path for event, path in writes if event == "os.rename"}
    assert {"everything/best.keras", "everything/last.keras", "everything/ck/4.keras"} <= renamed
    assert ["os.remove", "everything/ck/1.keras"] in writes
    assert ["shutil.rmtree", "everything/bk"] in writes  # the backup folder, once fit returned
    # Each process's temporary folder (TMPDIR): the private saves of process 1 were all deleted.
    for i in (0, 1):
        left = os.listdir(workdir.parent / f"{workdir.name}-tmp{i}")
        assert [n for n in left if n.startswith("policy-discard-")] == []


@needs_jax
def test_local_clocks_are_agreed_at_the_cadence(two: tuple[pathlib.Path, list[dict[str, Any]]]) -> None:
    _, answers = two
    stops = [a["cases"]["cadence"]["stop"] for a in answers]
    assert stops[0] == stops[1]
    assert processes.AGREE_EVERY == 16
    assert stops[0][1] == 0 and stops[0][2] == "40s of training had elapsed, the budget was 30s"
    assert [a["cases"]["cadence"]["outcome"]["epochs_run"] for a in answers] == [1, 1]


@needs_jax
def test_sigterm_to_one_process_stops_both_and_the_rerun_resumes_exactly(
    two: tuple[pathlib.Path, list[dict[str, Any]]],
) -> None:
    workdir, answers = two
    assert [a["cases"]["preempted"]["preempted"] for a in answers] == [True, True]
    whole = _outcome(answers[0]["cases"]["everything"]["outcome"])
    for a in answers:
        resumed = _outcome(a["cases"]["preempted"]["outcome"])
        skipped = whole.epochs_run - resumed.epochs_run
        assert skipped > 0
        assert resumed.learning_rates == whole.learning_rates[skipped:]
        assert (resumed.stop, resumed.restored_epoch) == (whole.stop, whole.restored_epoch)
    assert _files(workdir / "preempted") == _files(workdir / "everything")
    assert (workdir / "preempted" / "log.csv").read_text() == (workdir / "everything" / "log.csv").read_text()


@needs_jax
def test_real_metrics_are_global_so_both_processes_decide_alike(
    two: tuple[pathlib.Path, list[dict[str, Any]]],
) -> None:
    workdir, answers = two
    r0, r1 = (a["cases"]["real"] for a in answers)
    assert r0["history"] == r1["history"] and r0["stop"] == r1["stop"] and r0["final_lr"] == r1["final_lr"]
    history = {k: v for k, v in r0["history"].items() if k != "learning_rate"}
    predicted = simulate(REAL, history, initial_lr=0.5)
    assert predicted.epochs_run == r0["epochs_run"]
    assert predicted.learning_rates == tuple(r0["history"]["learning_rate"])
    assert (None if predicted.stop is None else [predicted.stop.rule, predicted.stop.epoch]) == (
        None if r0["stop"] is None else r0["stop"][:2]
    )
    assert _files(workdir / "real") == ["best.keras", "log.csv"]
    keras.saving.load_model(workdir / "real" / "best.keras")
    rows = (workdir / "real" / "log.csv").read_text().splitlines()
    assert len(rows) == 1 + r0["epochs_run"]


# --------------------------------------------------------------------------- any backend


def test_a_process_that_is_not_the_writer_leaves_nothing(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Process 1 of 2 (faked): the whole policy runs, every save runs, nothing reaches the folder."""
    monkeypatch.setattr(processes, "_distribution", lambda: (1, 2))
    # One process plays process 1 of 2; agreeing with nobody gives its own values back.
    from policy.callbacks import backup

    for module in (processes, backup):
        monkeypatch.setattr(module, "agree_max", lambda values: [float(v) for v in values])
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    text = EVERYTHING
    if importlib.util.find_spec("tensorboard") is not None:
        text += '; log to tensorboard "tb"'  # TensorBoard writes its model summary in set_model
    out = run_callbacks(compile_policy(text), HISTORY, workdir=tmp_path / "w", steps_per_epoch=3)
    assert out.outcome.files == () and out.outcome.saves == ()
    assert _files(tmp_path / "w") == []
    assert [p for p in scratch.iterdir() if p.name.startswith("policy-discard-")] == []  # all deleted
    monkeypatch.undo()
    one = run_in_keras(text, HISTORY, workdir=tmp_path / "one", steps_per_epoch=3)
    assert _decisions(out.outcome) == _decisions(one)
    written = _files(tmp_path / "one")  # the writer does write
    assert "log.csv" in written and (text == EVERYTHING or any(f.startswith("tb/") for f in written))


def test_agreement_points() -> None:
    due = [b for b in range(40) if processes.agreement_due(b + 1, b, 40)]
    assert due == [15, 31, 39]
    assert processes.agreement_due(3, 2, 3) and not processes.agreement_due(2, 1, 3)
    assert processes.agree_max([1.0, 2.0]) == [1.0, 2.0]  # one process: its own values
    assert processes.is_writer() and processes.process_count() == 1


# --------------------------------------------------------------------------- TensorFlow


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="MirroredStrategy is TensorFlow's")
def test_mirrored_strategy_over_two_devices_decides_as_one_device(tmp_path: pathlib.Path) -> None:
    """One process, MirroredStrategy over 2 logical CPUs: the decisions and files of one device."""
    import json
    import subprocess
    import sys

    cases = [c for c in CASES if c["name"] in ("everything", "plateau", "handover")]
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    root = str(pathlib.Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    command = ["timeout", "-k", "5", "240", sys.executable, "-m", "policy.testing.mirrored", str(tmp_path / "mirrored")]
    done = subprocess.run(
        [*command, json.dumps({"cases": cases})],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["replicas"] == 2
    for case in cases:
        name = case["name"]
        mirrored = _outcome(answer["cases"][name])
        one = _one_process(name, tmp_path / "one" / name)
        predicted = simulate(
            case["policy"],
            case["history"],
            steps_per_epoch=case["steps_per_epoch"],
            batch_losses=case.get("batch_losses"),
            initial_lr=0.01,
            strict=True,
        )
        assert mirrored == one == predicted
        assert _decisions(mirrored) == _decisions(one)
        assert _files(tmp_path / "mirrored" / name) == _files(tmp_path / "one" / name)
