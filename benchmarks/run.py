"""Run every benchmark figure and write ``BENCHMARKS.md``: the one entry point.

    python benchmarks/run.py            # full run, a few minutes; writes BENCHMARKS.md at the repo root
    python benchmarks/run.py --quick    # well under a minute, fewer repetitions: checks it all still runs
    python benchmarks/run.py --only 3 5 --output /tmp/b.md

Figures (one module each): 1 parse + validate and the parse cache question, 2 compile vs
hand-written callbacks, 3 ``fit`` with compiled vs hand-written callbacks, 4 batch hooks and
async dispatch, 5 CLI start-up vs ``import keras``, 6 differential-harness throughput
and profile, 7 ``simulate`` at 10k/100k/1M steps, 8 bad input (100,000 random and mutated
inputs, exceptions other than PolicyError counted), 9 replaying 1,000 recorded runs x 10
variants and the ``replay``/``tune`` command lines, 10 real kills and restarts, plain Keras vs
the policy (torn files, failed restarts, wrong decisions per 100 kills), 11 two JAX processes on
localhost (fit time of the compiled policy / hand-written callbacks, torn and duplicated files), 12 a
step-counted learning-rate schedule vs Keras's CosineDecay with warm-up (fit time), whether a batch
callback's rate reaches the compiled step, and async batch dispatch. Medians with min and max; ratios
from alternating pairs measured in the same run.
"""

from __future__ import annotations

import os
import sys

# Before anything imports keras: the TensorFlow backend, no C++ log noise.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Run as a script, this file's folder is on sys.path, not the repository: add the latter so
# that ``benchmarks`` (and ``policy``, in a checkout without an install) import.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import argparse  # noqa: E402
import datetime  # noqa: E402
import faulthandler  # noqa: E402
import importlib  # noqa: E402
import importlib.metadata  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

from benchmarks.common import ROOT, Figure, Row, fmt  # noqa: E402

FIGURES = {
    1: "benchmarks.fig1_parse",
    2: "benchmarks.fig2_compile",
    3: "benchmarks.fig3_fit",
    4: "benchmarks.fig4_batch_hooks",
    5: "benchmarks.fig5_cli",
    6: "benchmarks.fig6_harness",
    7: "benchmarks.fig7_simulate",
    8: "benchmarks.fig8_bad_input",
    9: "benchmarks.fig9_replay",
    10: "benchmarks.fig10_kills",
    11: "benchmarks.fig11_processes",
    12: "benchmarks.fig12_step_schedule",
}


# Figure 7 runs first, before anything imports TensorFlow: its timings and its tracemalloc run
# must not share the process with TensorFlow's background threads (a full run once hung in
# figure 7's tracemalloc pass after figure 6's fits, every thread waiting on a futex).
RUN_ORDER = (7, 9, 8, 1, 2, 3, 4, 12, 5, 6, 10, 11)

# A figure that takes longer than this is hung: dump every thread's stack and exit non-zero
# rather than block CI (seconds; a full figure takes about a minute).
WATCHDOG = {"quick": 120, "full": 600}


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _backend_versions() -> str:
    """Each backend's packages, in the interpreter figures 3, 4 and 12 use for it (no import)."""
    from benchmarks import backends

    return "; ".join(backends.versions(b) for b in backends.BACKENDS)


def _git_commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False)
    return done.stdout.strip() or "unknown"


def machine(load_before: tuple[float, float, float]) -> list[str]:
    """The machine-description lines of the report."""
    load_after = os.getloadavg()
    return [
        f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores ({platform.machine()}, {platform.system()} "
        f"{platform.release()})",
        f"- Load average (1 min) at start / end: {load_before[0]:.2f} / {load_after[0]:.2f} "
        "(the machine is shared: read ratios, which are paired, before absolute times)",
        f"- Python {platform.python_version()} ({sys.executable})",
        f"- Keras {_version('keras')}, TensorFlow {_version('tensorflow-cpu') if _version('tensorflow-cpu') != 'not installed' else _version('tensorflow')}, "
        f"backend {os.environ['KERAS_BACKEND']}; lark {_version('lark')}, numpy {_version('numpy')}, "
        f"hypothesis {_version('hypothesis')}",
        f"- Backends for figures 3, 4 and 12: {_backend_versions()}",
    ]


def _cell(value: float | None) -> str:
    return "-" if value is None else fmt(value)


def table(figures: Sequence[Figure]) -> list[str]:
    """The results table: one row per measurement, figure number first."""
    lines = [
        "| fig | measurement | median | min | max | n | unit | goal | met | note |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for fig in figures:
        for row in fig.rows:
            stat = row.stat
            met = {"met": "yes", "missed": "**NO**"}.get(row.verdict, "")
            lines.append(
                f"| {fig.number} | {row.name.strip()} | {_cell(stat.median if stat else None)} | "
                f"{_cell(stat.low if stat else None)} | {_cell(stat.high if stat else None)} | "
                f"{stat.n if stat else '-'} | {row.unit} | {row.goal} | {met} | {row.note} |"
            )
    return lines


def goals(figures: Sequence[Figure]) -> list[str]:
    """One line per measurement that has a goal, met or missed."""
    out: list[str] = []
    for fig in figures:
        for row in fig.rows:
            if row.verdict:
                value = fmt(row.stat.median) if row.stat else "-"
                out.append(f"- Figure {fig.number}, {row.name.strip()}: {value} {row.unit} (goal {row.goal}): "
                           f"**{row.verdict}**")
    return out


HOW_TO_RUN = """\
`python benchmarks/run.py` runs every figure (about fifteen to twenty minutes on two cores with three
backends; figure 12 alone about three) and rewrites this file; `--quick` runs each figure with few repetitions in under a
minute (what `tests/test_benchmarks_smoke.py` runs), `--only 3 5` runs some figures, `--output
PATH` writes elsewhere. Figures 3, 4 and 12 run on every Keras backend there is an interpreter for:
this process's backend (TensorFlow by default) in-process, JAX and torch in a worker process each
(`benchmarks/backend_worker.py`), under `$POLICY_PYTHON_JAX` / `$POLICY_PYTHON_TORCH` when set (as
for `tests/backends.py`; `$POLICY_BENCH_JAX_PYTHON` still works for JAX), else this interpreter
when it has the backend installed (`pip install -e ".[jax,torch]"`); a backend without one is
reported as not measured. Every ratio comes from pairs measured back to back in alternating order,
so drift from other work on the machine hits both sides; absolute times are only comparable within
one report."""


def report(figures: Sequence[Figure], *, quick: bool, seconds: float, load_before: tuple[float, float, float]) -> str:
    """The whole BENCHMARKS.md text."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    mode = "`--quick` (few repetitions: a smoke run, not a measurement)" if quick else "full"
    parts = [
        "# Benchmarks",
        "",
        f"Written by `python benchmarks/run.py{' --quick' if quick else ''}` on {now}, commit {_git_commit()}, "
        f"mode {mode}, {seconds:.0f} s. Medians with min and max over n samples; ratios are per pair "
        "(A/B measured back to back, order alternating) and then summarised.",
        "",
        "## Machine",
        "",
        *machine(load_before),
        "",
        "## Results",
        "",
        *table(figures),
        "",
        "## Goals",
        "",
        *goals(figures),
        "",
        "## Details",
    ]
    for fig in figures:
        parts += ["", f"### Figure {fig.number}: {fig.title}"]
        for text in fig.details:
            parts += ["", text]
    parts += ["", "## How to run", "", HOW_TO_RUN, ""]
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen figures, print progress on stderr, write the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few repetitions, under a minute: a smoke run")
    parser.add_argument("--only", type=int, nargs="+", choices=sorted(FIGURES), help="run only these figures")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md", help="where to write the report")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()
    started = time.perf_counter()
    figures: list[Figure] = []
    chosen = set(args.only or FIGURES)
    for number in (n for n in RUN_ORDER if n in chosen):
        t0 = time.perf_counter()
        module = importlib.import_module(FIGURES[number])
        # A figure whose full run is long by design (8: 100,000 inputs) says how long it may take.
        watchdog = WATCHDOG["quick"] if args.quick else getattr(module, "WATCHDOG_FULL", WATCHDOG["full"])
        faulthandler.dump_traceback_later(watchdog, exit=True)
        print(f"figure {number} ...", file=sys.stderr, flush=True)
        try:
            figures.append(module.run(args.quick))
        except Exception as exc:  # one broken figure must not lose the others' numbers
            fig = Figure(number, f"{FIGURES[number]} failed")
            fig.rows.append(Row("figure failed", None, "", verdict="missed", note=f"{type(exc).__name__}: {exc}"))
            figures.append(fig)
        faulthandler.cancel_dump_traceback_later()
        print(f"figure {number} done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    figures.sort(key=lambda fig: fig.number)
    text = report(figures, quick=args.quick, seconds=time.perf_counter() - started, load_before=load_before)
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
