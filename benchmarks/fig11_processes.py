"""Figure 11: two data-parallel JAX processes on localhost, plain Keras callbacks vs the policy.

Both parts run in two real processes (:func:`policy.testing.processes.launch`, Keras's
distribution API, ``DataParallel`` over the CPU devices of both processes), under the JAX
interpreter :mod:`benchmarks.backends` finds (``$POLICY_PYTHON_JAX``):

- **Overhead**: ``fit`` time with the compiled policy / ``fit`` time with the same rules written
  by hand (the Keras callbacks ``keras-policy compile --python`` prints: every process writes
  every file in place), alternated in the same two processes, one ratio per pair; process 0's
  clock. The compiled side adds the single writer (process 1 saves into a private folder that is
  deleted), atomic renames and fsyncs, and the strict metric check.
- **Files**: rounds of ``fit`` saving a best and a last checkpoint (``.keras``) and a CSV log,
  each round in a fresh folder, with Keras's ModelCheckpoint and CSVLogger, then with the policy.
  Counted over the rounds: files torn at the end (a checkpoint that does not load, a CSV log
  whose rows are not one header and one row per epoch), and files written by both processes
  (from each process's audit events).
"""

from __future__ import annotations

import csv
import pathlib
import statistics
import tempfile
from typing import Any

from benchmarks import backends
from benchmarks.common import Figure, Row, Stat, median_interval, verdict

POLICY = (
    "stop when val_loss not improving for 3; multiply lr by 0.5 when val_loss not improving for 2; "
    'save best on val_loss to "ck/best.keras"; log to "log.csv"'
)
FILES_POLICY = 'save best on val_loss to "ck/best.keras"; save last to "ck/last.keras"; log to "log.csv"'
EPOCHS = 3
WATCHDOG_FULL = 1800  # two processes, 12 timed pairs and 40 rounds of fit on a shared machine


def _torn(folder: pathlib.Path, epochs: int) -> int:
    """Files in ``folder`` that are not whole: model files that do not load, CSV logs off shape."""
    import zipfile

    torn = 0
    for path in sorted(folder.rglob("*")):
        if path.suffix == ".keras":
            try:
                with zipfile.ZipFile(path) as z:
                    bad = z.testzip() is not None or not {"config.json", "model.weights.h5"} <= set(z.namelist())
            except (zipfile.BadZipFile, OSError):
                bad = True
            torn += int(bad)
        elif path.suffix == ".csv":
            with open(path, newline="") as f:
                rows = list(csv.reader(f))
            width = len(rows[0]) if rows else 0
            torn += int(len(rows) != epochs + 1 or any(len(r) != width for r in rows))
    return torn


def _both_wrote(rounds: list[list[list[str]]], other: list[list[list[str]]]) -> int:
    """Files (by final name) that both processes wrote, summed over the rounds."""
    total = 0
    for mine, theirs in zip(rounds, other, strict=True):
        a = {path for event, path in mine if not pathlib.PurePath(path).name.startswith(".partial-")}
        b = {path for event, path in theirs if not pathlib.PurePath(path).name.startswith(".partial-")}
        total += len(a & b)
    return total


def run(quick: bool) -> Figure:
    fig = Figure(11, "two JAX processes on localhost: overhead of the compiled policy, torn and duplicated files")
    python = backends.interpreter("jax")
    if python is None:
        fig.details.append("Skipped: no JAX interpreter here (set POLICY_PYTHON_JAX).")
        return fig
    from policy.testing.processes import launch

    rounds = 1 if quick else 20
    timing_rounds = 1 if quick else 10
    cases: list[dict[str, Any]] = [
        {"kind": "timing", "name": "timing", "policy": POLICY, "rounds": timing_rounds, "epochs": 4},
        {"kind": "files", "name": "keras", "side": "keras", "rounds": rounds, "epochs": EPOCHS},
        {"kind": "files", "name": "policy", "side": "policy", "policy": FILES_POLICY, "rounds": rounds, "epochs": EPOCHS},
    ]
    if not quick:  # what agreeing on the clocks costs: the same policy with a budget that never fires
        cases.append(
            {"kind": "timing", "name": "agree", "policy": POLICY + "; stop after 1h", "against": POLICY}
            | {"rounds": timing_rounds, "epochs": 4}
        )
    with tempfile.TemporaryDirectory(prefix="policy-fig11-") as tmp:
        workdir = pathlib.Path(tmp) / "shared"
        answers = launch({"cases": cases}, workdir, count=2, python=python, timeout=600 if quick else 1800)
        times = answers[0]["cases"]["timing"]["times"]
        ratios = [p / k for p, k in zip(times["policy"], times["keras"], strict=True)]
        low, high = median_interval(ratios)
        fig.rows.append(
            Row(
                "fit time, compiled policy / hand-written callbacks (2 processes)",
                Stat.of(ratios),
                "x",
                goal="1.00 within noise",
                verdict=verdict(low <= 1.0 <= high or abs(statistics.median(ratios) - 1.0) <= 0.05),
                note=f"95% CI of the median {low:.3f}-{high:.3f}; fit {statistics.median(times['keras']):.2f} s by hand",
            )
        )
        agree = answers[0]["cases"].get("agree", {}).get("times", {"policy": [], "keras": []})
        agree_ratios = [p / k for p, k in zip(agree["policy"], agree["keras"], strict=True)]
        low, high = median_interval(agree_ratios) if agree_ratios else (0.0, 0.0)
        fig.rows += [] if not agree_ratios else [
            Row(
                "fit time, the policy plus `stop after 1h` / the policy (2 processes)",
                Stat.of(agree_ratios),
                "x",
                note=f"95% CI of the median {low:.3f}-{high:.3f}; one allgather every 16 batches and at each "
                "epoch's last (24 batches an epoch here)",
            )
        ]
        for side, label in (("keras", "plain Keras callbacks"), ("policy", "compiled policy")):
            per_round = [answers[i]["cases"][side]["rounds"] for i in (0, 1)]
            torn = sum(_torn(workdir / side / f"round{r:02d}", EPOCHS) for r in range(rounds))
            both = _both_wrote(per_round[0], per_round[1])
            files = sum(1 for r in range(rounds) for p in (workdir / side / f"round{r:02d}").rglob("*") if p.is_file())
            fig.rows.append(
                Row(
                    f"{label}: files torn at the end, over {rounds} rounds",
                    Stat.of([float(torn)]),
                    "files",
                    goal="0" if side == "policy" else "",
                    verdict=verdict(torn == 0) if side == "policy" else "",
                    note=f"{files} files left",
                )
            )
            fig.rows.append(
                Row(
                    f"{label}: files written by both processes, over {rounds} rounds",
                    Stat.of([float(both)]),
                    "files",
                    goal="0" if side == "policy" else "",
                    verdict=verdict(both == 0) if side == "policy" else "",
                )
            )
    fig.details.append(
        f"Overhead policy: {POLICY}; a 8-256-1 classifier, 2048 samples split between the processes, global batch 64, "
        f"4 epochs a fit, {timing_rounds} alternated pairs after an untimed pair, process 0's clock. Files: per round one fit of "
        f"{EPOCHS} epochs with Keras's ModelCheckpoint (best, on val_loss), ModelCheckpoint (every epoch) and "
        f"CSVLogger, or the policy `{FILES_POLICY}`. A .keras file is torn when its zip does not verify or lacks "
        "the config or weights; a CSV log when it is not one header and one row per epoch of equal width. "
        "The `ck/` folder is created before each round: with it missing, plain ModelCheckpoint in two processes "
        "races through Keras's check-then-create and one process fails with FileExistsError (seen in the first "
        "run of this figure), which the policy avoids by creating the folder tolerantly first."
    )
    return fig
