"""What differs between Keras's backends, as far as a policy's decisions can tell.

Every fact here was found by running Keras 3.15.1's own monitors (``ops.less``/``ops.greater``
on the Python floats ``MonitorCallback._is_improvement`` hands them) on the CPU builds of
TensorFlow 2.21, JAX 0.10 and torch 2.13; ``tests/test_reference_vs_keras_facts.py`` re-checks
the row of whichever backend it runs under. Facts that are the same on all three (NaN compares
false, +-inf compare as infinities, logged metrics arrive as Python floats, integers included,
the learning rate is a float32 variable that keeps subnormals and stores an over-range value as
inf, the first ``on_epoch_end`` logs hold the same keys) have no field: nothing to choose.

The backend is read as Keras reads it (``KERAS_BACKEND``, else ``keras.json``'s ``"backend"``,
else TensorFlow) without importing keras, so simulating stays cheap.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, TypeAlias

from policy.errors import PolicyError

Backend: TypeAlias = Literal["tensorflow", "jax", "torch"]
BACKENDS: Final[tuple[Backend, ...]] = ("tensorflow", "jax", "torch")


@dataclass(frozen=True)
class BackendFacts:
    """How Keras's monitor comparisons behave on one backend (CPU build)."""

    backend: Backend
    flushes_subnormals: bool
    """``ops.less(1e-40, 2e-40)`` is False: float32 subnormals compare as zero. TensorFlow's CPU
    kernels and XLA's CPU code (JAX) flush them; torch compares them as they are."""
    overflow_raises: bool
    """A finite Python float beyond the float32 range (3.5e38) makes the comparison raise
    ValueError ("out of range") under TensorFlow; JAX and torch round it to inf and compare."""
    multi_step_execution: bool = True
    """``compile(steps_per_execution=k)`` with k > 1 is accepted; on torch ``fit`` raises
    ValueError ("`steps_per_execution` must be 1 with the PyTorch backend")."""


FACTS: Final[dict[Backend, BackendFacts]] = {
    "tensorflow": BackendFacts("tensorflow", flushes_subnormals=True, overflow_raises=True),
    "jax": BackendFacts("jax", flushes_subnormals=True, overflow_raises=False),
    "torch": BackendFacts("torch", flushes_subnormals=False, overflow_raises=False, multi_step_execution=False),
}


def backend_name(name: str) -> Backend:
    """``name`` checked against the modelled backends (a :class:`PolicyError` otherwise)."""
    for known in BACKENDS:
        if name == known:
            return known
    raise PolicyError.plain(
        f"the reference models the backends {', '.join(BACKENDS)}; got {name!r}",
        "pass backend='tensorflow', 'jax' or 'torch' (Keras's numpy and openvino backends cannot train)",
    )


def _keras_json_backend() -> str | None:
    """The ``"backend"`` entry of Keras's config file, where Keras looks for it, if any."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        config = json.loads(Path(home, "keras.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = config.get("backend") if isinstance(config, dict) else None
    return value if isinstance(value, str) else None


def default_backend() -> Backend:
    """The backend Keras would use in this process: ``KERAS_BACKEND``, else ``keras.json``, else
    TensorFlow (Keras's own order), read without importing keras."""
    name = os.environ.get("KERAS_BACKEND") or _keras_json_backend() or "tensorflow"
    return backend_name(name)
