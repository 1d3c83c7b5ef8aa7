"""Run the test suite on every Keras backend available: the one command CI and the README use.

    python tests/backends.py                      # every backend this machine can run
    python tests/backends.py jax torch            # just these
    python tests/backends.py tensorflow -- -k lr  # arguments after -- go to pytest

Each backend runs in its own pytest process with ``KERAS_BACKEND`` set (Keras picks its backend
once, at import). The interpreter for a backend is ``$POLICY_PYTHON_TENSORFLOW``,
``$POLICY_PYTHON_JAX`` or ``$POLICY_PYTHON_TORCH`` when set (CI gives each backend a virtual
environment of its own), else this interpreter when it can import that backend's package. With no
backend named, every backend that has an interpreter runs; a named one without an interpreter is
an error.

The first backend run (TensorFlow when available) runs the whole suite; the others run the files
whose outcome depends on the backend (:data:`BACKEND_TESTS`: everything that trains, compiles to
Keras callbacks or compares with Keras). The generated budgets are shared: the differential
property's ``POLICY_EXAMPLES`` (default 500) and the kill tests' ``POLICY_KILL_EXAMPLES``,
``POLICY_KILLS`` and ``POLICY_KILL_STEP_KILLS`` (defaults 4, 30, 12). Each backend gets an equal
part of each and draws its own fixed sequence of cases (of kill moments), so three backends cover
as much as one would, not the same thing three times.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

BACKENDS = ("tensorflow", "jax", "torch")
PACKAGE = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}

# Budgets shared between the backends tested, with the defaults the test files use for one
# backend alone (tests/test_differential.py, tests/test_kills.py).
SHARED_BUDGETS = {"POLICY_EXAMPLES": 500, "POLICY_KILL_EXAMPLES": 4, "POLICY_KILLS": 30, "POLICY_KILL_STEP_KILLS": 12}

BACKEND_TESTS = (
    "test_compile_keras_rules.py",
    "test_compile_our_rules.py",
    "test_differential.py",
    "test_mutants_caught.py",
    "test_reference_vs_keras_facts.py",
    "test_fit_directly.py",
    "test_fit_arguments.py",
    "test_schedule_handoff.py",
    "test_step_schedules.py",
    "test_describe.py",
    "test_demo.py",
    "test_resume.py",
    "test_next_keras.py",
    "test_multiprocess.py",
    "test_kills.py",
)
"""The files run on every backend after the first: the phrasebook and compile tests, the
differential suite and its mutants, the Keras facts, real ``fit`` with the README's usage, Keras's
schedule objects (computed with the backend's ops) against their described rules, the demo,
backups and resumes, real SIGKILLs and SIGTERMs. The rest (parsing, the reference alone, the CLI, configs, the wheel,
the benchmarks' smoke run, integrations) never depends on the backend and runs once."""


@dataclass
class Result:
    backend: str
    python: str
    files: str
    budgets: dict[str, int]
    seconds: float
    returncode: int
    summary: str


def interpreter(backend: str) -> str | None:
    """The Python that runs ``backend``'s tests, or None if there is none here."""
    given = os.environ.get(f"POLICY_PYTHON_{backend.upper()}")
    if given:
        return given
    return sys.executable if importlib.util.find_spec(PACKAGE[backend]) is not None else None


def shares(backends: int) -> dict[str, int]:
    """Each backend's part of every shared budget (the environment's total, or the default)."""
    return {name: max(1, math.ceil(int(os.environ.get(name, str(default))) / backends))
            for name, default in SHARED_BUDGETS.items()}


def run_backend(backend: str, python: str, *, whole: bool, budgets: dict[str, int], pytest_args: Sequence[str]) -> Result:
    files = ["tests"] if whole else [f"tests/{name}" for name in BACKEND_TESTS]
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", **{k: str(v) for k, v in budgets.items()})
    # This checkout first, whatever the interpreter has installed.
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    command = [python, "-m", "pytest", "-q", *files, *pytest_args]
    given = " ".join(f"{k}={v}" for k, v in budgets.items())
    print(f"\n=== {backend}: {' '.join(command)} ({given})", flush=True)
    started = time.perf_counter()
    lines: list[str] = []
    # Streamed as it comes (CI shows progress), and kept for the summary line.
    with subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            lines.append(line)
    seconds = time.perf_counter() - started
    summaries = re.findall(r"^=*\s*(\d+ (?:passed|failed|deselected|skipped|errors?)\b.*? in [\d.]+s.*?)\s*=*$", "".join(lines), flags=re.M)
    summary = summaries[-1] if summaries else f"pytest exited {proc.returncode}"
    return Result(backend, python, "whole suite" if whole else f"{len(files)} backend files", budgets, seconds,
                  proc.returncode, summary)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    pytest_args: list[str] = []
    if "--" in args:
        cut = args.index("--")
        args, pytest_args = args[:cut], args[cut + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("backends", nargs="*", metavar="BACKEND",
                        help=f"backends to test ({', '.join(BACKENDS)}); default: every one available")
    chosen: list[str] = parser.parse_args(args).backends
    unknown = [b for b in chosen if b not in BACKENDS]
    if unknown:
        parser.error(f"unknown backend {unknown[0]!r}; choose from {', '.join(BACKENDS)}")

    found = {b: interpreter(b) for b in BACKENDS}
    if chosen:
        missing = [b for b in chosen if found[b] is None]
        if missing:
            parser.error(
                f"no interpreter for {', '.join(missing)}: install it here (pip install -e '.[{missing[0]}]') or set "
                f"POLICY_PYTHON_{missing[0].upper()} to a Python that has it"
            )
        backends = [b for b in BACKENDS if b in chosen]
    else:
        backends = [b for b in BACKENDS if found[b] is not None]
        skipped = [b for b in BACKENDS if found[b] is None]
        if skipped:
            print(f"not tested (no interpreter with it; see tests/backends.py): {', '.join(skipped)}", flush=True)
    if not backends:
        print("no Keras backend is installed", file=sys.stderr)
        return 2

    budgets = shares(len(backends))
    results = []
    for i, backend in enumerate(backends):
        python = found[backend]
        assert python is not None
        results.append(run_backend(backend, python, whole=i == 0, budgets=budgets, pytest_args=pytest_args))

    print("\n=== backends")
    for r in results:
        verdict = "ok" if r.returncode == 0 else "FAILED"
        print(f"{r.backend:10} {verdict:6} {r.summary} ({r.files}, {r.budgets['POLICY_EXAMPLES']} differential "
              f"examples, {r.budgets['POLICY_KILLS'] + r.budgets['POLICY_KILL_STEP_KILLS']} fixed kills + "
              f"{r.budgets['POLICY_KILL_EXAMPLES']} generated kill cases, {r.seconds:.0f} s, {r.python})")
    return 0 if all(r.returncode == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
