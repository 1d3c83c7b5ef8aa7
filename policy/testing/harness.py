"""Run a policy inside a real ``model.fit`` whose epoch metrics are scripted, and measure it.

The model is one Dense unit on one input, trained with SGD on tiny data; what it learns
does not matter. A scripting callback placed first overwrites the logs Keras passes to
every later callback with the scripted values, so the policy's callbacks see exactly the
history under test. The harness then measures what happened, from the outside:

- ``epochs_run`` from the ``History`` that ``fit`` returns;
- the learning rate in effect during each epoch, read at epoch begin after every other
  callback (a LearningRateScheduler among them) has run;
- the learning rate every optimizer step ran with (``step_learning_rates``), read off a probe
  weight: the input carries a one-hot of the step's position in the epoch, and a probe layer
  adds ``sum(one_hot * p)`` to the loss, so plain SGD moves row j of ``p`` by exactly ``-lr`` at
  the epoch's step j, inside the compiled step whatever ``steps_per_execution`` is. The probe is
  zeroed at epoch begin and read at epoch end (epoch hooks only), for the steps the optimizer
  ran (``optimizer.iterations``); epochs longer than the probe (``PROBE_STEPS``) are not read;
- every checkpoint write, found on disk: after each callback's epoch end (and batch end
  for per-step checkpoints) the workdir is scanned for model files written since the last
  scan, so writes are listed in the order the callbacks made them;
- ``files``: which of those written paths still exist once ``fit`` has returned (a top-k rule
  deletes the files of epochs it drops). Files in the workdir before ``fit`` are marked as
  seen by a first scan, so they count only if a save rule writes them again;
- ``restored_epoch``: at each epoch end the weights are set to values encoding the epoch;
  at train end, before any restore rule runs, to a sentinel. Whatever epoch the final
  weights encode was put back by a restore rule;
- ``stop`` from :func:`policy.compiler.why_stopped`;
- ``failed``: when ``fit`` raises and :func:`policy.compiler.why_failed` names a ``fail when``
  rule, the run is measured up to the raise (the epochs begun, the files written) instead of
  propagating the error; any other error propagates.

One model is built per process and reused (weights and learning rate reset per run),
because building and tracing dominate the cost of a few-epoch ``fit``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pathlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias, TypedDict, Unpack

from policy import ast
from policy.logs import HistoryLike, epoch_logs
from policy.outcome import Outcome

ScriptedHistory: TypeAlias = HistoryLike
"""The logs a harness run scripts: anything :func:`policy.logs.epoch_logs` reads."""

DEFAULT_LR = 0.01
PROBE_STEPS = 32  # rows of the step-rate probe: epochs up to this many steps are measured per step
_SENTINEL = -1000.0  # the kernel value meaning "no epoch's weights were put back"
_MARK_NS = 1  # mtime given to checkpoint files already recorded; any new write changes it
_MODEL_SUFFIXES = (".keras", ".h5")


@dataclass
class Run:
    """Everything one harness run measured: the outcome, plus the final kernel for comparisons."""

    outcome: Outcome
    final_weights: list[Any] = field(default_factory=list)


class _Clock:
    """Scripted time: each training batch takes ``step`` seconds."""

    def __init__(self, step: float) -> None:
        self.step = step
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class _Record:
    """What the observers share while one ``fit`` runs."""

    workdir: pathlib.Path
    excluded: tuple[pathlib.Path, ...]
    epoch: int = 0
    learning_rates: list[float] = field(default_factory=list)
    step_learning_rates: list[float] = field(default_factory=list)
    step_rates_known: bool = True
    saves: list[tuple[int, str]] = field(default_factory=list)
    enabled: bool = True
    rollbacks: list[tuple[int, int]] = field(default_factory=list)
    held: tuple[int, int] = (-1, -1)
    """(epoch, whose weights the model held after the last callback looked at at that epoch's end)."""

    def note_weights(self, epoch: int, model: Any) -> None:
        """After a callback's epoch end: did it set the weights back to another epoch's?"""
        current = self.held[1] if self.held[0] == epoch else epoch
        found = _decode(model)
        if found is not None and found != current:
            self.rollbacks.append((epoch, found))
            current = found
        self.held = (epoch, current)

    def scan(self, record: bool = True) -> None:
        """Note every model file written since the last scan (and mark it as seen)."""
        if not self.enabled:
            return
        found: list[str] = []
        for folder, _, files in os.walk(self.workdir):
            here = pathlib.Path(folder)
            if any(here == ex or ex in here.parents for ex in self.excluded):
                continue
            for name in files:
                if not name.endswith(_MODEL_SUFFIXES):
                    continue
                path = here / name
                if path.stat().st_mtime_ns != _MARK_NS:
                    found.append(path.relative_to(self.workdir).as_posix())
                    os.utime(path, ns=(_MARK_NS, _MARK_NS))
        if record:
            self.saves.extend((self.epoch, p) for p in sorted(found))

    def files_left(self) -> tuple[str, ...]:
        """The written paths whose file still exists, sorted (each path once)."""
        return tuple(sorted(p for p in {p for _, p in self.saves} if (self.workdir / p).is_file()))


@functools.cache
def _harness_classes() -> dict[str, Any]:
    """The harness's callback classes, defined on first use so that importing it imports no keras."""
    import keras

    class Script(keras.callbacks.Callback):  # type: ignore[misc]
        """First in the list after StepRates: writes the scripted values into the logs everyone else sees."""

        def __init__(
            self,
            logs: list[dict[str, float]],
            batch_losses: Sequence[Sequence[float | None]] | None,
            clock: _Clock,
            initial_epoch: int = 0,
        ) -> None:
            super().__init__()
            self.logs = logs
            self.batch_losses = batch_losses
            self.clock = clock
            self.initial_epoch = initial_epoch
            self.index = 0  # the epoch's entry in the script (epochs are absolute)
            self.last_batch = -1

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.index = epoch - self.initial_epoch
            self.last_batch = -1

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            # With steps_per_execution k this runs once per k batches, with the index of the
            # chunk's last batch (past the epoch's end for a short last chunk): the clock moves
            # by every batch trained since the previous call, the loss is the last real batch's.
            steps = self.params.get("steps") if self.params else None
            ran = min(batch, steps - 1) if isinstance(steps, int) and steps > 0 else batch
            for _ in range(ran - self.last_batch):  # t += d per batch, as the reference sums it
                self.clock.now += self.clock.step
            self.last_batch = ran
            if logs is None:
                return
            # The running training loss: scripted per batch, else the epoch's loss (a constant
            # running average ends at the epoch's value, as real batch logs do).
            loss: float | None = self.logs[self.index].get("loss")
            if self.batch_losses is not None:
                losses = self.batch_losses[self.index] if self.index < len(self.batch_losses) else []
                loss = losses[ran] if ran < len(losses) else None
            logs.clear()
            if loss is not None:
                logs["loss"] = float(loss)

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            if logs is not None:
                # Keras decides which epochs validate (fit's validation_freq): scripted val_
                # values are only shown on those, as Keras would log them.
                validated = any(k.startswith("val_") for k in logs)
                logs.clear()
                logs.update(
                    {k: v for k, v in self.logs[epoch - self.initial_epoch].items() if validated or not k.startswith("val_")}
                )
            _encode(self.model, float(epoch + 1))

        def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
            _encode(self.model, _SENTINEL)

    class Noting(keras.callbacks.Callback):  # type: ignore[misc]
        """A callback of the harness's own, writing what it sees into the run's record."""

        def __init__(self, record: _Record) -> None:
            super().__init__()
            self.record = record

    class ScanAfter(Noting):
        """Placed after a callback: notes the checkpoint files it wrote at epoch end."""

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.record.epoch = epoch
            self.record.scan()
            if self.record.enabled:
                self.record.note_weights(epoch, self.model)

    class ScanAfterBatch(ScanAfter):
        """After a per-step checkpoint: also notes the files written after each batch."""

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            self.record.scan()

    class Observe(Noting):
        """Last in the list: the learning rate in effect once every callback has run."""

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.record.epoch = epoch
            lr = keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
            self.record.learning_rates.append(float(lr))

        def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
            self.record.scan()

    class StepRates(keras.callbacks.Callback):  # type: ignore[misc]
        """First in the list: zeroes the step-rate probe at epoch begin and reads it at epoch end,
        before any callback can set the weights back (a restore during training would put back
        an earlier epoch's probe)."""

        def __init__(self, record: _Record) -> None:
            super().__init__()
            self.record = record
            self.iterations = 0

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            probe = _probe(self.model)
            probe.assign(_constant(0.0, tuple(probe.shape)))
            self.iterations = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            ran = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)) - self.iterations
            if ran > PROBE_STEPS:
                self.record.step_rates_known = False
            rows = keras.ops.convert_to_numpy(_probe(self.model))[:ran]
            self.record.step_learning_rates.extend(float(-v) for v in rows)

    return {
        "Script": Script,
        "ScanAfter": ScanAfter,
        "ScanAfterBatch": ScanAfterBatch,
        "Observe": Observe,
        "StepRates": StepRates,
    }


@functools.cache
def _probe_layer() -> Any:
    """The probe layer class: passes the first input column on, adds ``sum(one_hot * p)`` to the loss."""
    import keras

    @keras.saving.register_keras_serializable(package="policy_harness")
    class StepRateProbe(keras.layers.Layer):  # type: ignore[misc]
        def build(self, input_shape: Any) -> None:
            self.p = self.add_weight(shape=(PROBE_STEPS,), initializer="zeros", name="p")

        def call(self, x: Any) -> Any:
            self.add_loss(keras.ops.sum(x[:, 1:] * self.p))
            return x[:, :1]

        def compute_output_shape(self, input_shape: Any) -> Any:
            return (input_shape[0], 1)

    return StepRateProbe


def _probe(model: Any) -> Any:
    return model.get_layer("step_rate_probe").p


def _dense(model: Any) -> Any:
    return model.get_layer("dense")


def main_weights(model: Any) -> list[Any]:
    """The weights that say which epoch's weights the model holds: the harness model's Dense unit
    (not the step-rate probe, whose rows depend on how many steps ran), any other model's all."""
    if any(layer.name == "step_rate_probe" for layer in model.layers):
        return list(_dense(model).get_weights())
    return list(model.get_weights())


_models: dict[str, Any] = {}
_data: dict[int, dict[str, Any]] = {}


def _encode(model: Any, value: float) -> None:
    """Set the kernel to ``value`` (and the bias to 0): weights that say which epoch they are."""
    kernel, bias = _dense(model).kernel, _dense(model).bias
    kernel.assign(_constant(value, tuple(kernel.shape)))
    bias.assign(_constant(0.0, tuple(bias.shape)))


@functools.cache
def _constant(value: float, shape: tuple[int, ...]) -> Any:
    import numpy as np

    return np.full(shape, value, dtype="float32")


def _decode(model: Any) -> int | None:
    kernel = float(main_weights(model)[0].reshape(-1)[0])
    return None if kernel == _SENTINEL else round(kernel) - 1


def tiny_model(initial_lr: float = DEFAULT_LR, steps_per_execution: int = 1) -> Any:
    """The harness's model (one per ``steps_per_execution``, built once per process), reset to
    kernel 0 and ``initial_lr``, as a freshly built model would be."""
    import keras

    from policy.callbacks.schedules import forget_starting_lr
    from policy.callbacks.step_schedule import remove_step_schedule

    model = _models.get(str(steps_per_execution))
    if model is None:
        model = keras.Sequential(
            [
                keras.Input(shape=(1 + PROBE_STEPS,)),
                _probe_layer()(name="step_rate_probe"),
                keras.layers.Dense(1, name="dense"),
            ]
        )
        model.compile(
            optimizer=keras.optimizers.SGD(learning_rate=initial_lr),
            loss="mse",
            steps_per_execution=steps_per_execution,
        )
        _models[str(steps_per_execution)] = model
    if remove_step_schedule(model.optimizer):
        model.train_function = None  # traced with the schedule: trace again with the variable
    model.optimizer.learning_rate = initial_lr
    model.optimizer.iterations.assign(0)  # a fresh optimizer: step schedules count from 0
    forget_starting_lr(model.optimizer)
    _encode(model, 0.0)
    model.stop_training = False
    return model


def _fit_data(steps_per_epoch: int) -> dict[str, Any]:
    """``fit`` arguments for ``steps_per_epoch`` batches of one sample and one validation batch.

    Under TensorFlow, prebuilt ``tf.data`` datasets are reused across runs: building the
    pipeline from numpy arrays on every ``fit`` costs six times the rest of a short run.
    """
    found = _data.get(steps_per_epoch)
    if found is None:
        import keras
        import numpy as np

        # Column 0 feeds the Dense unit (zeros: it learns nothing); the others are the one-hot
        # position of the step in the epoch, for the step-rate probe.
        x = np.zeros((steps_per_epoch, 1 + PROBE_STEPS), dtype="float32")
        for j in range(min(steps_per_epoch, PROBE_STEPS)):
            x[j, 1 + j] = 1.0
        y = np.zeros((steps_per_epoch, 1), dtype="float32")
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            # tf.data's default prefetch injection and autotuning cost ~7 ms per pass over
            # these 1-sample batches, and fit makes two passes an epoch; off, the harness runs
            # ~1.5x as many cases per second with identical outcomes (BENCHMARKS.md, figure 6).
            options = tf.data.Options()
            options.experimental_optimization.inject_prefetch = False
            options.autotune.enabled = False
            found = {
                "x": tf.data.Dataset.from_tensor_slices((x, y)).batch(1).with_options(options),
                "validation_data": tf.data.Dataset.from_tensor_slices((x[:1], y[:1])).batch(1).with_options(options),
            }
        else:
            found = {"x": x, "y": y, "batch_size": 1, "validation_data": (x[:1], y[:1])}
        _data[steps_per_epoch] = found
    return found


@contextlib.contextmanager
def working_directory(path: pathlib.Path) -> Iterator[None]:
    """``chdir`` into ``path`` for the block, then back, even if the block raises."""
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


class FitOptions(TypedDict, total=False):
    """How the harness runs ``fit`` (every key may be left out; the default is said by each).

    ``initial_lr``: the optimizer's learning rate at train begin (default 0.01).
    ``steps_per_epoch``: training batches per epoch (1).
    ``batch_losses``: per epoch, the running-average training loss after each batch, as the
    batch logs carry it; without it (None) every batch log carries the epoch's ``loss``.
    ``step_seconds``: how long each training batch takes, for time budgets (None: no time passes).
    ``validation_freq``: ``fit(validation_freq=)`` (1); scripted ``val_*`` values are shown only
    on the epochs Keras validated.
    ``steps_per_execution``: ``compile(steps_per_execution=)`` of the harness model (1).
    ``initial_epoch``: ``fit(initial_epoch=)`` (0); the history's first entry is that epoch.
    """

    initial_lr: float | None
    steps_per_epoch: int
    batch_losses: Sequence[Sequence[float | None]] | None
    step_seconds: float | None
    validation_freq: int
    steps_per_execution: int
    initial_epoch: int


def run_callbacks(
    callbacks: Sequence[Any],
    history: ScriptedHistory,
    *,
    workdir: pathlib.Path,
    scan_files: bool = True,
    **fit: Unpack[FitOptions],
) -> Run:
    """Run ``callbacks`` (a compiled policy or hand-written Keras callbacks) and measure them.

    ``fit`` holds :class:`FitOptions`. With ``scan_files=False`` the workdir is not scanned
    (``saves`` and ``files`` stay empty): for a process of a multi-process run that shares
    the workdir with the one that writes.
    """
    import keras

    from policy.callbacks import StopAfterTime, TimedCheckpoint
    from policy.compiler import why_failed, why_stopped

    initial_lr = fit.get("initial_lr")
    steps_per_epoch = fit.get("steps_per_epoch", 1)
    batch_losses = fit.get("batch_losses")
    step_seconds = fit.get("step_seconds")
    validation_freq = fit.get("validation_freq", 1)
    steps_per_execution = fit.get("steps_per_execution", 1)
    initial_epoch = fit.get("initial_epoch", 0)
    logs = epoch_logs(history)
    classes = _harness_classes()
    workdir = pathlib.Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    clock = _Clock(step_seconds or 0.0)
    for cb in callbacks:
        if isinstance(cb, StopAfterTime | TimedCheckpoint):
            cb.clock = clock
    excluded = tuple(
        (workdir / cb.backup_dir).resolve() for cb in callbacks if isinstance(cb, keras.callbacks.BackupAndRestore)
    )
    record = _Record(workdir, excluded, enabled=scan_files)
    if scan_files:
        record.scan(record=False)  # files already there were not written by this run
    step_rates = classes["StepRates"](record)
    wrapped: list[Any] = [step_rates, classes["Script"](logs, batch_losses, clock, initial_epoch)]
    for cb in callbacks:
        wrapped.append(cb)
        per_step = (isinstance(cb, keras.callbacks.ModelCheckpoint) and cb.save_freq != "epoch") or isinstance(
            cb, TimedCheckpoint
        )
        if scan_files:
            wrapped.append(classes["ScanAfterBatch" if per_step else "ScanAfter"](record))
    wrapped.append(classes["Observe"](record))

    model = tiny_model(DEFAULT_LR if initial_lr is None else initial_lr, steps_per_execution)
    with working_directory(workdir):
        try:
            fitted = model.fit(
                epochs=initial_epoch + len(logs),
                initial_epoch=initial_epoch,
                validation_freq=validation_freq,
                callbacks=wrapped,
                verbose=0,
                shuffle=False,
                **_fit_data(steps_per_epoch),
            )
            epochs_run, restored_epoch, failed = len(fitted.epoch), _decode(model), None
        except Exception:
            failed = why_failed(callbacks)
            if failed is None:
                raise
            record.scan()  # anything written in the batch that raised
            # The failing epoch's on_epoch_end never ran: read the probe for the steps it did run
            # (the batch that raised was trained before its batch hook raised).
            step_rates.on_epoch_end(-1)
            # fit raised: no History, no train end (nothing restored); every epoch begun counts.
            epochs_run, restored_epoch = len(record.learning_rates), None
    outcome = Outcome(
        epochs_run=epochs_run,
        learning_rates=tuple(record.learning_rates),
        step_learning_rates=tuple(record.step_learning_rates) if record.step_rates_known else (),
        saves=tuple(record.saves),
        files=record.files_left(),
        restored_epoch=restored_epoch,
        stop=why_stopped(callbacks),
        failed=failed,
        rollbacks=tuple(record.rollbacks),
    )
    return Run(outcome, [w.copy() for w in main_weights(model)])


def run_in_keras(
    policy: str | ast.Policy,
    history: ScriptedHistory,
    *,
    workdir: pathlib.Path,
    strict: bool = True,
    **fit: Unpack[FitOptions],
) -> Outcome:
    """Compile ``policy``, run it in a real ``fit`` over the scripted ``history``, measure the outcome.

    Args:
        policy: policy text or a parsed policy.
        history: the epoch logs, as ``{metric: [value per epoch]}`` or ``[{metric: value}, ...]``;
            a None (or missing) value leaves the metric out of that epoch's logs. ``fit``
            runs ``len(history)`` epochs unless a rule stops it.
        workdir: the folder ``fit`` runs in; the policy's relative paths land there.
        strict: compile with the strict missing-metric check.
        **fit: how ``fit`` runs (:class:`FitOptions`: ``initial_lr``, ``steps_per_epoch``,
            ``batch_losses``, ``step_seconds``, ``validation_freq``, ``steps_per_execution``,
            ``initial_epoch``).
    """
    from policy import compile_policy

    return run_callbacks(compile_policy(policy, strict=strict), history, workdir=workdir, **fit).outcome
