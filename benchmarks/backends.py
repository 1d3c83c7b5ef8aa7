"""Where the benchmarks find each Keras backend, and how they ask one in another process.

Keras picks its backend once per process, so the figures that exist on every backend (3: ``fit``
with the compiled policy vs the hand-written callbacks; 4: batch hooks and async dispatch; 12: a step
schedule vs Keras's CosineDecay) measure
the backend of the running process in-process and every other backend in a worker process
(:mod:`benchmarks.backend_worker`). The interpreter for a backend is ``$POLICY_PYTHON_JAX`` /
``$POLICY_PYTHON_TORCH`` / ``$POLICY_PYTHON_TENSORFLOW`` (the variables ``tests/backends.py``
reads; ``$POLICY_BENCH_JAX_PYTHON`` is still honoured for JAX), else this interpreter when it can
import the backend's package.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from typing import Any

from benchmarks.common import ROOT, quiet_env

BACKENDS = ("tensorflow", "jax", "torch")
_PACKAGE = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
_VERSIONED = {"tensorflow": ("tensorflow-cpu", "tensorflow"), "jax": ("jax", "jaxlib"), "torch": ("torch",)}


def current() -> str:
    """The backend of this process (set before keras is imported; run.py defaults it)."""
    return os.environ.get("KERAS_BACKEND", "tensorflow")


def interpreter(backend: str) -> str | None:
    """A Python that can run ``backend``, or None."""
    given = os.environ.get(f"POLICY_PYTHON_{backend.upper()}")
    if not given and backend == "jax":
        given = os.environ.get("POLICY_BENCH_JAX_PYTHON")
    if given:
        return given if os.path.isfile(given) else None
    return sys.executable if importlib.util.find_spec(_PACKAGE[backend]) is not None else None


def others() -> list[str]:
    """The backends other than this process's that have an interpreter here."""
    return [b for b in BACKENDS if b != current() and interpreter(b) is not None]


def missing() -> list[str]:
    return [b for b in BACKENDS if b != current() and interpreter(b) is None]


def ask(backend: str, request: dict[str, Any], timeout: float = 900) -> dict[str, Any]:
    """Run :mod:`benchmarks.backend_worker` under ``backend`` and return its JSON answer."""
    python = interpreter(backend)
    if python is None:
        raise RuntimeError(f"no interpreter for {backend}")
    env = quiet_env(KERAS_BACKEND=backend)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    done = subprocess.run(
        [python, "-m", "benchmarks.backend_worker", json.dumps(request)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the {backend} worker failed:\n{done.stderr[-3000:]}")
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def versions(backend: str) -> str:
    """``backend``'s package versions in its interpreter (read from metadata: nothing imported)."""
    python = interpreter(backend)
    if python is None:
        return f"{backend}: no interpreter"
    names = _VERSIONED[backend] + ("keras",)
    code = (
        "import importlib.metadata as m\n"
        "out = []\n"
        f"for n in {names!r}:\n"
        "    try: out.append(n + ' ' + m.version(n))\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(', '.join(out))"
    )
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False)
    # Which interpreter, not where it lives: paths of this machine do not belong in the report.
    where = "this interpreter" if python == sys.executable else "an interpreter of its own"
    return f"{backend}: {done.stdout.strip() or 'versions unreadable'} ({where})"
