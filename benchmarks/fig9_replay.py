"""Figure 9: replaying recorded runs, 1,000 runs of 100 epochs x 10 variants (``policy.replay``).

The runs are generated learning curves (a falling loss, a validation loss that bottoms out at a
random epoch and drifts back up, float32 values, noise), held as the per-epoch dicts that reading
a CSVLogger file gives: the goal is about replaying, so the CSV is already parsed. The 10 variants
are the issue's own ``stop when val_loss not improving for {1..10}``; a two-rule template
(``..., restore best; save best on val_loss min``) is measured beside it. The goal is judged on
the process's CPU time: the replay is single-threaded and does no I/O, so on an idle core its
wall time is its CPU time, and on a shared machine the wall time also counts waiting for a core
(both are shown).
Also measured: reading the same runs from 1,000 CSV files, and the command line over a folder of
CSV files and over a TensorBoard log folder (``examples/runs/run-7``, written by Keras), in a fresh interpreter, with the frameworks it
imported counted (the event reader must not pull in TensorFlow).
"""

from __future__ import annotations

import cProfile
import gc
import importlib.util
import io
import math
import os
import pstats
import random
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, Figure, Row, Stat, verdict

GOAL_SECONDS = 2.0
RUNS = 1000
EPOCHS = 100
TEMPLATE = "stop when val_loss not improving for {1..10}"
TWO_RULES = "stop when val_loss not improving for {1..10}, restore best; save best on val_loss min"
_F32 = struct.Struct("f")


def _f32(x: float) -> float:
    return float(_F32.unpack(_F32.pack(x))[0])


def recorded_runs(count: int = RUNS, epochs: int = EPOCHS, seed: int = 0) -> list[list[dict[str, float]]]:
    """``count`` runs of ``epochs`` epochs of loss, accuracy, val_loss, val_accuracy (float32 values)."""
    rng = random.Random(seed)
    runs = []
    for _ in range(count):
        floor, scale, tau = rng.uniform(0.2, 0.5), rng.uniform(0.5, 1.5), rng.uniform(3, 20)
        turn, drift, noise = rng.uniform(10, 140), rng.uniform(0.0005, 0.01), rng.uniform(0.002, 0.03)
        rows = []
        for e in range(epochs):
            loss = floor * 0.8 + scale * math.exp(-e / tau) + rng.gauss(0, noise / 3)
            val = floor + scale * math.exp(-e / tau) + drift * max(0.0, e - turn) + rng.gauss(0, noise)
            rows.append({
                "accuracy": _f32(1 - loss / 3),
                "loss": _f32(loss),
                "val_accuracy": _f32(1 - val / 3),
                "val_loss": _f32(val),
            })
        runs.append(rows)
    return runs


def _replay(runs: list[list[dict[str, float]]], template: str = TEMPLATE) -> object:
    from policy import replay

    return replay(template, runs)


def _measure(runs: list[list[dict[str, float]]], template: str, repeats: int) -> tuple[Stat, Stat]:
    """Wall and CPU seconds per replay of every run under every variant of ``template``."""
    wall, cpu = [], []
    for _ in range(repeats):
        gc.collect()
        start, start_cpu = time.perf_counter(), time.process_time()
        _replay(runs, template)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return Stat.of(wall), Stat.of(cpu)


def _cli(args: list[str], cwd: Path) -> tuple[float, list[str], int]:
    """Seconds for the command in a fresh interpreter, the frameworks it imported, its exit code."""
    code = (
        "import sys, policy.cli\n"
        f"rc = policy.cli.main({args!r})\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'keras', 'tensorflow', 'jax', 'torch'})\n"
        "print('HEAVY', ','.join(heavy), file=sys.stderr)\n"
        "sys.exit(rc)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, env=env, check=False)
    seconds = time.perf_counter() - start
    heavy = next((line[6:].split(",") for line in done.stderr.splitlines() if line.startswith("HEAVY ")), ["?"])
    return seconds, [h for h in heavy if h], done.returncode


def run(quick: bool) -> Figure:
    fig = Figure(9, "replaying recorded runs: 1,000 runs x 100 epochs x 10 variants")
    runs = recorded_runs()
    report = _replay(runs)  # imports and parser tables outside the measurement
    repeats = 1 if quick else 7
    wall, cpu = _measure(runs, TEMPLATE, repeats)
    variants = report.variants  # type: ignore[attr-defined]
    pairs = sum(len(v.runs) for v in variants)
    ran = sum(v.epochs_run for v in variants) / sum(v.epochs_recorded for v in variants)
    wall2, cpu2 = _measure(runs, TWO_RULES, repeats)
    label = f"{RUNS:,} runs x {EPOCHS} epochs x {len(variants)} variants (parsed)"
    fig.rows += [
        Row(f"replay {label}, CPU time", cpu, "s", goal=f"<= {GOAL_SECONDS:g} s",
            verdict=verdict(cpu.median <= GOAL_SECONDS), note="single-threaded, no I/O: the wall time on an idle core"),
        Row("  the same, wall time", wall, "s", note="includes waiting for a core on this shared machine"),
        Row("  per (run, variant), CPU time", cpu.scaled(1e6 / pairs), "µs"),
        Row("  epochs simulated, share of those recorded", Stat.of([100 * ran]), "%",
            note="the epochs after each stop are not simulated"),
        Row("two-rule variants (restore best; save best): CPU time", cpu2, "s", note=f"wall {wall2.median:.2f} s"),
    ]

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "runs"
        folder.mkdir()
        keys = list(runs[0][0])
        for i, rows in enumerate(runs):
            lines = ["epoch," + ",".join(keys)] + [f"{e}," + ",".join(repr(r[k]) for k in keys) for e, r in enumerate(rows)]
            (folder / f"run{i:04d}.csv").write_text("\n".join(lines) + "\n")
        from policy.runs import find_runs

        read = Stat.of([_timed(lambda: find_runs([folder])) for _ in range(1 if quick else 3)])
        fig.rows.append(Row(f"  for scale: reading the {RUNS:,} runs from CSV files", read, "s", note="not in the goal"))

        cli_runs = Path(tmp) / "cli"
        cli_runs.mkdir()
        for i in range(20):
            (cli_runs / f"run{i:02d}.csv").write_text((folder / f"run{i:04d}.csv").read_text())
        # A real Keras TensorBoard folder (40 epochs), shipped with the examples.
        tb_folder = ROOT / "examples" / "runs" / "run-7"
        tb_ok = importlib.util.find_spec("tensorboard") is not None and tb_folder.is_dir()
        args_csv = ["tune", TEMPLATE, "--history", str(cli_runs)]
        args_tb = ["replay", "stop when val_loss not improving for 5", "--history", str(tb_folder)]
        samples = 1 if quick else 5
        csv_times, tb_times, csv_heavy, tb_heavy = [], [], set(), set()
        for _ in range(samples):
            t, heavy, rc = _cli(args_csv, Path(tmp))
            if rc != 0:
                raise AssertionError(f"the CLI over CSV files exited {rc}")
            csv_times.append(t)
            csv_heavy.update(heavy)
            if tb_ok:
                t, heavy, rc = _cli(args_tb, Path(tmp))
                if rc != 0:
                    raise AssertionError(f"the CLI over a TensorBoard folder exited {rc}")
                tb_times.append(t)
                tb_heavy.update(heavy)
        fig.rows += [
            Row("keras-policy tune, 10 variants over 20 CSV files (fresh process)", Stat.of(csv_times), "s"),
            Row("  frameworks imported", Stat.of([len(csv_heavy)]), "modules", goal="0",
                verdict=verdict(not csv_heavy), note=", ".join(sorted(csv_heavy)) or "no keras, tensorflow, jax or torch"),
        ]
        if tb_ok:
            fig.rows += [
                Row("keras-policy replay over a TensorBoard folder (fresh process)", Stat.of(tb_times), "s",
                    note="tensorboard's event reader, its TensorFlow stub"),
                Row("  frameworks imported", Stat.of([len(tb_heavy)]), "modules", goal="0",
                    verdict=verdict(not tb_heavy), note=", ".join(sorted(tb_heavy)) or "no keras, tensorflow, jax or torch"),
            ]
        else:
            fig.rows.append(Row("keras-policy replay over a TensorBoard folder", None, "s",
                                note="tensorboard not installed: not measured"))

    profile = cProfile.Profile()
    profile.enable()
    _replay(runs[:100])
    profile.disable()
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(8)
    # Paths relative to the checkout: the report names files, not the machine it ran on.
    text = out.getvalue().replace(str(ROOT) + "/", "")
    top = [line for line in text.splitlines() if line.strip() and ("{" in line or "/" in line or ".py:" in line)][:8]
    fig.details.append(
        f"Template `{TEMPLATE}` over {RUNS:,} generated runs of {EPOCHS} epochs (4 metrics, float32 values; "
        "validation loss bottoming out between epoch 10 and 140). Each run's logs are checked once and each "
        "variant parsed once; every (run, variant) pair then runs the reference's own decision loop "
        "(`simulate_checked`, what `simulate` calls), so the cost is the epochs actually simulated. "
        "Profile of 100 runs (top functions by own time):\n\n```text\n" + "\n".join(top) + "\n```"
    )
    return fig


def _timed(fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start
