"""Many processes, one decision: which process writes files, and agreeing on local signals.

Under multi-process training (Keras's distribution API on JAX, a ``torch.distributed`` group,
a multi-worker ``tf.distribute`` strategy) every process runs the same callbacks. Decisions
taken from the epoch logs agree by themselves, because the logs are global. Two things do not:

- **Files.** Every process would write every file. :func:`is_writer` says whether this process
  is the one that writes (process 0, TensorFlow's chief); :mod:`policy.callbacks.atomic` sends
  the others' writes to a private temporary place that is deleted straight away. They still
  run the save, because on JAX saving a model takes part in cross-process collectives.
- **Local signals** (the wall clock, a SIGTERM delivered to one process). A decision taken on
  one process alone leaves it outside the next collective while the others wait in it: a hang.
  :func:`agree_max` gathers one small vector from every process (elementwise maximum), at the
  points :func:`agreement_due` names, so every process acts on the same values at the same step.

Nothing here is decided at compile time: the distribution is read when a callback asks
(train begin, a write), since it may be set up after ``compile_policy`` ran. Only the
framework Keras already runs on is imported.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

AGREE_EVERY = 16
"""Local signals are agreed after every AGREE_EVERY-th training batch counted from train begin
(and after the last batch of every epoch): one collective costs about 1-5 ms on CPU here, so
agreeing after every batch would cost more than the rules it serves (docs/semantics.md)."""


def process_index() -> int:
    """This process's index in the running distribution; 0 when training in one process."""
    return _distribution()[0]


def process_count() -> int:
    """How many processes train together; 1 when training in one process."""
    return _distribution()[1]


def is_writer() -> bool:
    """Whether this process writes the files (process 0, or TensorFlow's chief worker)."""
    return process_index() == 0


def _distribution() -> tuple[int, int]:
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return int(jax.process_index()), int(jax.process_count())
    if backend == "tensorflow":
        import tensorflow as tf

        if tf.distribute.has_strategy():
            extended = tf.distribute.get_strategy().extended
            # MirroredStrategy and other one-process strategies: should_checkpoint is True.
            workers = int(getattr(extended, "_num_workers", 1) or 1)
            return (0 if extended.should_checkpoint else 1), workers
        return 0, 1
    if backend == "torch" and "torch.distributed" in sys.modules:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return int(dist.get_rank()), int(dist.get_world_size())
    return 0, 1


def agreement_due(steps_run: int, batch: int, steps_per_epoch: object) -> bool:
    """Whether the training batch that just ended is an agreement point.

    ``steps_run`` counts training batches since train begin, this one included; ``batch`` is
    the index Keras passed; ``steps_per_epoch`` is ``params["steps"]`` (None when unknown).
    The answer depends only on those, so every process gives the same one.
    """
    last = isinstance(steps_per_epoch, int) and steps_per_epoch > 0 and batch >= steps_per_epoch - 1
    return last or steps_run % AGREE_EVERY == 0


class BatchAgreement:
    """Where a batch-level decision on a local value (a clock reading) is taken: after every batch
    in one process; under several, only at the agreement points (:func:`agreement_due`), on the
    longest value of any process, so every process decides the same at the same batch."""

    def __init__(self) -> None:
        self.processes = 1
        self.batches = 0

    def begin(self) -> None:
        """At train begin: how many processes train, and no batch counted yet."""
        self.processes = process_count()
        self.batches = 0

    def after_batch(self, value: float, batch: int, params: dict[str, Any] | None) -> float | None:
        """The value to decide on after training batch ``batch``; None where no decision is taken."""
        if self.processes == 1:
            return value
        self.batches += 1
        if not agreement_due(self.batches, batch, (params or {}).get("steps")):
            return None
        return agree_max([value])[0]


def agree_max(values: Sequence[float]) -> list[float]:
    """The elementwise maximum of ``values`` over all processes (``values`` itself in one process).

    A collective: every process must call it at the same point with a vector of the same
    length. Values travel as float32, so every process gets the same bits back.
    """
    local = np.asarray(values, dtype=np.float32)
    if process_count() == 1:
        return [float(v) for v in local]
    backend = keras.backend.backend()
    if backend == "jax":
        from jax.experimental import multihost_utils

        gathered = np.asarray(multihost_utils.process_allgather(local))
        return [float(v) for v in gathered.reshape(-1, local.size).max(axis=0)]
    if backend == "torch":
        import torch
        import torch.distributed as dist

        tensor = torch.from_numpy(local.copy())
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return [float(v) for v in tensor.numpy()]
    # A multi-worker tf.distribute strategy (broken in Keras 3 itself, keras#20585): no
    # cross-worker channel outside a replica context; each worker keeps its own values.
    return [float(v) for v in local]
