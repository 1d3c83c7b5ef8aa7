"""Kill training for real, restart it, and measure what the chain of runs decided.

A *worker* (a process forked by ``python -m policy.testing.kills --serve``, which imports
Keras once; or ``python -m policy.testing.kills SPEC.json``) runs one ``fit`` over scripted
metrics (the harness's tiny model and scripting callback, :mod:`policy.testing.harness`)
with either the compiled policy or the hand-written Keras callbacks ``keras-policy compile
--python`` prints for it, and appends what it decides to a journal (one JSON line per event,
flushed and fsynced before going on). It kills itself with SIGKILL at a chosen moment: after
the N-th *event* (a training batch, an epoch begin or end, a file flushed or renamed: so
between epochs, mid-epoch and in the middle of a save), or after a delay in seconds.

:func:`run_chain` starts the worker again and again in the same folder, each time with the
next kill, then once without, and stitches the journal: a run that resumed at epoch ``e``
replaces every decision the earlier runs journaled for epochs ``e`` and later. The result
(:class:`ChainResult`) holds the stitched :class:`~policy.outcome.Outcome`, the final
weights, the CSV log's rows, and the torn files and failed restarts seen along the way.
"""

from __future__ import annotations

import atexit
import functools
import importlib.util
import json
import math
import os
import pathlib
import signal
import subprocess
import sys
import threading
import traceback
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from policy.outcome import Outcome, Stop

_MODEL_SUFFIXES = (".keras", ".h5")
BACKUP_DIR = "bk"  # the backup folder a chain's policy must use (its files are not checkpoints)
_real_fsync = os.fsync  # the journal's own flushes are not kill points


@dataclass(frozen=True)
class Kill:
    """When a worker kills itself: after ``event`` events, after the ``batch``-th training batch
    end of the run (inside an epoch, or at its last batch), or ``delay`` seconds after train begin.

    ``signal`` is ``"SIGKILL"`` (the default) or ``"SIGTERM"`` (what schedulers send first).
    """

    event: int | None = None
    delay: float | None = None
    batch: int | None = None
    signal: str = "SIGKILL"


@dataclass
class ChainResult:
    """What a chain of killed runs and a final one did, stitched together."""

    outcome: Outcome
    final_weights: list[float]
    csv_rows: list[str]
    real_logs: list[tuple[int, dict[str, float]]] = field(default_factory=list)  # with ``learn``: fit's own epoch logs
    resumes: list[tuple[int, int]] = field(default_factory=list)  # where each run began: (epoch, last batch done or -1)
    torn: list[str] = field(default_factory=list)  # model files at their final name that do not load
    failed_restarts: list[str] = field(default_factory=list)  # restarts that raised instead of training
    kills: int = 0  # workers that really died of the kill (SIGKILL, or SIGTERM's clean stop)
    exit_codes: list[int] = field(default_factory=list)  # each worker's exit code (-N: signal N)


# --------------------------------------------------------------------------- the worker


class _Events:
    """Counts events and kills the process with SIGKILL at the chosen one."""

    def __init__(self, kill_at: int | None, signum: int = signal.SIGKILL) -> None:
        self.kill_at = kill_at
        self.signum = signum
        self.count = 0
        self.armed = kill_at is not None

    def tick(self) -> None:
        if not self.armed:
            return
        self.count += 1
        if self.count >= (self.kill_at or 0):
            self.armed = False  # a SIGTERM is sent once; a SIGKILL never returns
            os.kill(os.getpid(), self.signum)


def _patch_file_events(events: _Events) -> None:
    """Make every fsync and rename (the steps of an atomic write) and every write of a file into
    a .keras archive an event, so kills land in the middle of saves."""
    real_fsync, real_replace, real_writestr = os.fsync, os.replace, zipfile.ZipFile.writestr

    def fsync(fd: Any) -> None:
        events.tick()
        real_fsync(fd)

    def replace(src: Any, dst: Any, **kw: Any) -> None:
        events.tick()
        real_replace(src, dst, **kw)

    def writestr(self: zipfile.ZipFile, *args: Any, **kw: Any) -> None:
        events.tick()
        real_writestr(self, *args, **kw)

    os.fsync = fsync
    os.replace = replace
    setattr(zipfile.ZipFile, "writestr", writestr)  # noqa: B010


class _Journal:
    def __init__(self, path: pathlib.Path) -> None:
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the process's life

    def write(self, **entry: Any) -> None:
        self.file.write(json.dumps(entry) + "\n")
        self.file.flush()
        _real_fsync(self.file.fileno())


def _model_files(workdir: pathlib.Path, excluded: Sequence[pathlib.Path]) -> dict[str, int]:
    found: dict[str, int] = {}
    for folder, _, files in os.walk(workdir):
        here = pathlib.Path(folder)
        if any(here == ex or ex in here.parents for ex in excluded):
            continue
        for name in files:
            if name.endswith(_MODEL_SUFFIXES) and not name.startswith(".partial-"):
                path = here / name
                found[path.relative_to(workdir).as_posix()] = path.stat().st_mtime_ns
    return found


def _hand_written(text: str) -> list[Any]:
    """The plain Keras callbacks ``compile --python`` writes for ``text``."""
    from policy import parse_policy
    from policy.eject import eject

    namespace: dict[str, Any] = {}
    exec(eject(parse_policy(text)), namespace)
    callbacks: list[Any] = namespace["callbacks"]
    return callbacks


def run_worker(spec: Mapping[str, Any]) -> None:
    """One ``fit`` as described by ``spec`` (see :func:`run_chain`), journaling its decisions."""
    import keras

    from policy import compile_policy
    from policy.callbacks import StopAfterTime, TimedCheckpoint
    from policy.compiler import why_stopped
    from policy.logs import epoch_logs
    from policy.testing.harness import _Clock, _decode, _fit_data, _harness_classes, main_weights, tiny_model

    workdir = pathlib.Path(spec["workdir"])
    journal = _Journal(pathlib.Path(spec["journal"]))
    events = _Events(spec.get("kill_event"), signal.Signals[spec.get("kill_signal") or "SIGKILL"])
    _patch_file_events(events)
    history = epoch_logs(spec["history"])
    clock = _Clock(spec.get("step_seconds") or 0.0)
    if spec["kind"] == "policy":
        callbacks = compile_policy(spec["policy"], strict=spec.get("strict", True))
    else:
        callbacks = _hand_written(spec["policy"])
    for cb in callbacks:
        if isinstance(cb, StopAfterTime | TimedCheckpoint):
            cb.clock = clock
    backups = [i for i, cb in enumerate(callbacks) if isinstance(cb, keras.callbacks.BackupAndRestore)]
    excluded = [(workdir / callbacks[i].backup_dir).resolve() for i in backups]
    timer: list[threading.Timer] = []

    class Journaling(keras.callbacks.Callback):  # type: ignore[misc]
        """Right before the backup: journals the files written so far, before the backup says
        that epoch is done, and the end of training before the backup folder goes."""

        def __init__(self) -> None:
            super().__init__()
            self.seen = _model_files(workdir, excluded)
            self.epoch = 0

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.epoch = epoch

        def scan(self, batch: int | None) -> None:
            now = _model_files(workdir, excluded)
            for path in sorted(p for p, t in now.items() if self.seen.get(p) != t):
                journal.write(kind="save", epoch=self.epoch, batch=batch, path=path)
            self.seen = now

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            self.scan(batch)

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.scan(None)

        def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
            self.scan(None)
            events.armed = False
            for t in timer:
                t.cancel()
            # The Dense unit's weights (they say which epoch's weights the model holds); the
            # step-rate probe's depend on how many steps ran, which a re-run epoch changes.
            weights = [float(x) for w in main_weights(self.model) for x in w.reshape(-1)]
            stop = why_stopped(callbacks)
            journal.write(
                kind="end",
                restored_epoch=None if learn else _decode(self.model),
                weights=weights,
                stop=None if stop is None else [stop.rule, stop.epoch],
            )

    class Ticks(keras.callbacks.Callback):  # type: ignore[misc]
        """First: counts batches and epoch boundaries as events; journals each epoch's lr last."""

        batches = 0

        def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
            delay = spec.get("kill_delay")
            if delay is not None:
                t = threading.Timer(delay, lambda: os.kill(os.getpid(), events.signum))
                t.daemon = True
                t.start()
                timer.append(t)

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            events.tick()

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            events.tick()
            self.batches += 1
            if self.batches == spec.get("kill_batch"):
                os.kill(os.getpid(), events.signum)

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            events.tick()

    class LearningRate(keras.callbacks.Callback):  # type: ignore[misc]
        """Last: journals where this run began (after the backup has put everything back) and
        each epoch's lr once every callback has set it."""

        inside: int | None = None  # the epoch this run resumed inside of, if it did

        def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
            epoch = self.model._initial_epoch or initial_epoch
            batch = -1
            for i in backups:
                if getattr(callbacks[i], "_skip", None) is not None:
                    batch = int(callbacks[i]._skip_until)  # resumed after this batch of `epoch`
            self.inside = int(epoch) if batch >= 0 else None
            journal.write(kind="resume", epoch=int(epoch), batch=batch)

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            if epoch == self.inside:
                # That epoch began in an earlier run, which journaled its lr. Read here, a rate
                # counted in optimizer steps is already the one of the step after the backed-up
                # batch (the optimizer's iterations are back), not the epoch's first.
                return
            lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            journal.write(kind="lr", epoch=epoch, lr=lr)

    class RealLogs(keras.callbacks.Callback):  # type: ignore[misc]
        """Before the script: journals the epoch logs fit itself computed (running metrics)."""

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            journal.write(kind="real", epoch=epoch, logs={k: float(v) for k, v in (logs or {}).items()})

    initial_epoch = int(spec.get("initial_epoch") or 0)
    learn = bool(spec.get("learn"))
    spe = int(spec.get("steps_per_execution") or 1)
    script = _harness_classes()["Script"](history, spec.get("batch_losses"), clock, initial_epoch)
    where = backups[0] if backups else len(callbacks)
    ordered = [script, Ticks(), *callbacks[:where], Journaling(), *callbacks[where:], LearningRate()]
    if learn:
        script.on_epoch_end = functools.partial(_script_logs_only, script)  # the weights are learned
        script.on_train_end = lambda logs=None: None
        ordered.insert(0, RealLogs())
    journal.write(kind="start", pid=os.getpid())
    model = learning_model(spec.get("initial_lr") or 0.01, spe) if learn else tiny_model(spec.get("initial_lr") or 0.01, spe)
    data = _learning_data(spec.get("steps_per_epoch", 1)) if learn else _fit_data(spec.get("steps_per_epoch", 1))
    os.chdir(workdir)
    model.fit(
        epochs=initial_epoch + len(history),
        initial_epoch=initial_epoch,
        validation_freq=int(spec.get("validation_freq") or 1),
        callbacks=ordered,
        verbose=0,
        shuffle=False,
        **data,
    )


def learning_model(initial_lr: float, steps_per_execution: int = 1) -> Any:
    """A model whose weights really change every batch (and whose dropout draws masks): with
    ``learn``, a batch trained twice or with another rate, or a mask drawn anew, shows in the
    final weights. Built from a fixed seed, so every run starts from the same weights."""
    import keras

    keras.utils.set_random_seed(11)
    model = keras.Sequential(
        [keras.Input(shape=(1,)), keras.layers.Dense(4, activation="tanh"), keras.layers.Dropout(0.25), keras.layers.Dense(1)]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=initial_lr), loss="mse", steps_per_execution=steps_per_execution
    )
    return model


def _learning_data(steps_per_epoch: int) -> dict[str, Any]:
    import numpy as np

    x = np.linspace(-1.0, 1.0, steps_per_epoch, dtype="float32").reshape(-1, 1)
    y = 2.0 * x + 1.0
    return {"x": x, "y": y, "batch_size": 1, "validation_data": (x[:1], y[:1])}


def _script_logs_only(script: Any, epoch: int, logs: dict[str, Any] | None = None) -> None:
    """The script's epoch end without writing the epoch into the weights."""
    if logs is not None:
        validated = any(k.startswith("val_") for k in logs)
        logs.clear()
        logs.update(
            {k: v for k, v in script.logs[epoch - script.initial_epoch].items() if validated or not k.startswith("val_")}
        )


# --------------------------------------------------------------------------- the chain


def _loads(path: pathlib.Path) -> bool:
    """Does a model file at its final name load (is it whole)?"""
    try:
        if path.name.endswith(".keras"):
            with zipfile.ZipFile(path) as z:
                return z.testzip() is None
        import h5py  # type: ignore[import-untyped]

        with h5py.File(path, "r") as f:
            f.visit(lambda name: None)
        return True
    except Exception:
        return False


def torn_files(workdir: pathlib.Path) -> list[str]:
    """Model files at their final name anywhere under ``workdir`` (backups included) that do not load.

    A file under a temporary name (``.partial-*``), or inside a folder under one (a backup
    generation being written), is not at its final name: nobody reads it as a checkpoint.
    """
    found = []
    for p in workdir.rglob("*"):
        relative = p.relative_to(workdir)
        if any(part.startswith(".partial-") for part in relative.parts):
            continue
        if p.is_file() and p.name.endswith(_MODEL_SUFFIXES) and not _loads(p):
            found.append(relative.as_posix())
    return sorted(found)


@dataclass
class Stitched:
    """The decisions of a chain of runs (see :func:`stitch`)."""

    lrs: list[tuple[int, float]] = field(default_factory=list)
    saves: list[tuple[int, str]] = field(default_factory=list)
    end: dict[str, Any] | None = None
    real: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    resumes: list[tuple[int, int]] = field(default_factory=list)


_EPOCH_END = 1 << 30  # a save at an epoch end comes after every batch of that epoch


def stitch(journal: pathlib.Path) -> Stitched:
    """The decisions of a chain of runs: each run says where it began (an epoch, and inside it
    the last batch its backup had done, or -1); what earlier runs journaled after that point
    is replaced by what the later run does again."""
    out = Stitched()
    saves: list[tuple[int, int, str]] = []
    for line in journal.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line cut by the kill
        kind = entry["kind"]
        if kind == "start":
            out.end = None
        elif kind == "resume":
            epoch, batch = entry["epoch"], entry["batch"]
            out.resumes.append((epoch, batch))
            # Resumed inside an epoch: the run that began it journaled its lr, and this one does not.
            out.lrs = [x for x in out.lrs if x[0] < epoch or (batch >= 0 and x[0] == epoch)]
            out.real = [x for x in out.real if x[0] < epoch]
            saves = [x for x in saves if (x[0], x[1]) <= (epoch, batch)]
        elif kind == "lr":
            out.lrs.append((entry["epoch"], entry["lr"]))
        elif kind == "real":
            out.real.append((entry["epoch"], entry["logs"]))
        elif kind == "save":
            batch = entry.get("batch")
            saves.append((entry["epoch"], _EPOCH_END if batch is None else batch, entry["path"]))
        elif kind == "end":
            out.end = entry
    out.saves = [(e, p) for e, _, p in saves]
    return out


class _Server:
    """A process that has imported Keras once and forks one worker per run.

    Importing TensorFlow takes seconds; forking a process that has imported it but run
    nothing (no thread started yet) takes milliseconds, and the forked worker is a real
    process that a real SIGKILL ends. The server reads one spec path per line and answers
    each with the worker's status: its exit code, or minus the signal that ended it.

    Forking is safe on every backend because the server computes nothing: after its imports
    it has the main thread and OpenBLAS's idle pools (numpy's, and on JAX scipy's too), which
    OpenBLAS quiesces around a fork; no TensorFlow runtime, no torch intra-op pool and no JAX
    backend (XLA's client and its threads start at the first array a worker makes). JAX warns
    that a fork after its backend started may deadlock; :func:`_unsafe_to_fork` checks before
    every fork that it has not, so a server that ever computed something fails instead. The
    price is paid on JAX: each worker traces and compiles its own train and test steps (about
    2 of a worker's 3.5 s here, against 2 s in all for a worker on torch, which compiles nothing).
    """

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(pathlib.Path(__file__).parents[2]), *sys.path])}
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "policy.testing.kills", "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )

    def run(self, spec_path: pathlib.Path) -> int:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{spec_path}\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            raise RuntimeError("the kill-test server died")
        if answer.startswith("refused:"):
            raise RuntimeError(f"the kill-test server {answer.strip()}")
        return int(answer)

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=30)


_servers: list[_Server] = []


def _server() -> _Server:
    if not _servers or _servers[0].process.poll() is not None:
        _servers[:] = [_Server()]
        atexit.register(_servers[0].close)
    return _servers[0]


def _unsafe_to_fork() -> str | None:
    """Why forking this process now could deadlock the child, or None."""
    if "jax" in sys.modules:
        from jax._src import xla_bridge  # what JAX's own fork warning looks at

        if xla_bridge.backends_are_initialized():
            return "JAX's backend (XLA's threads) started before the fork"
    return None


def serve() -> None:
    """The server's loop (``python -m policy.testing.kills --serve``)."""
    import keras  # noqa: F401 - imported once, before any fork

    if importlib.util.find_spec("tensorflow") is not None:
        # On JAX and torch, Keras imports TensorFlow lazily when it is installed (it is a
        # dependency here): the first model.save asks whether it is there. Imported here, not
        # in each forked worker: that import was 5 of the 7 s a worker took on those backends.
        import tensorflow  # noqa: F401

    import policy.callbacks
    import policy.compiler
    import policy.testing.harness  # noqa: F401

    for line in sys.stdin:
        spec_path = pathlib.Path(line.strip())
        unsafe = _unsafe_to_fork()
        if unsafe is not None:
            sys.stdout.write(f"refused: {unsafe}\n")
            sys.stdout.flush()
            continue
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                err = os.open(f"{spec_path}.err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                os.dup2(err, 2)
                # stdout is the server's answer channel: what Keras prints (TerminateOnNaN's
                # message) goes to the .err file, never into an answer.
                os.dup2(err, 1)
                run_worker(json.loads(spec_path.read_text(encoding="utf-8")))
            except SystemExit as e:  # what a SIGTERM under a backup rule ends in (policy.Preempted)
                traceback.print_exc()
                code = e.code if isinstance(e.code, int) else 1
            except BaseException:  # reported through the exit code and the .err file
                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        sys.stdout.write(f"{code}\n")
        sys.stdout.flush()


def run_chain(
    spec: Mapping[str, Any],
    kills: Sequence[Kill],
    workdir: pathlib.Path,
    *,
    in_process: bool = False,
    on_restart: Callable[[pathlib.Path], None] | None = None,
) -> ChainResult:
    """Run the worker once per kill, then once to the end, in ``workdir``; stitch the result.

    ``spec`` holds ``kind`` ("policy" or "keras"), ``policy`` (text), ``history`` (per-epoch
    dicts), and optionally ``initial_lr``, ``steps_per_epoch``, ``batch_losses``,
    ``step_seconds``, ``strict``, ``validation_freq``, ``steps_per_execution``, ``initial_epoch``
    (as :func:`policy.testing.run_in_keras` takes them). With ``in_process`` and no kills, the single run happens in
    this process (for the uninterrupted reference run).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    journal = workdir.parent / f"{workdir.name}.journal"
    journal.unlink(missing_ok=True)
    torn: list[str] = []
    failed: list[str] = []
    died = 0
    codes: list[int] = []
    runs = [*kills, None]
    for kill in runs:
        full = {**spec, "workdir": str(workdir), "journal": str(journal)}
        if kill is not None:
            full["kill_event"] = kill.event
            full["kill_delay"] = kill.delay
            full["kill_batch"] = kill.batch
            full["kill_signal"] = kill.signal
        if in_process and kill is None and not kills:
            before = os.getcwd()
            try:
                run_worker(full)
            finally:
                os.chdir(before)
            break
        spec_path = workdir.parent / f"{workdir.name}.spec.json"
        spec_path.write_text(json.dumps(full), encoding="utf-8")
        code = _server().run(spec_path)
        codes.append(code)
        if kill is not None and code == (-signal.SIGKILL if kill.signal == "SIGKILL" else 143):
            died += 1
            torn.extend(torn_files(workdir))
            if on_restart is not None:
                on_restart(workdir)
            continue
        if code != 0:
            err = pathlib.Path(f"{spec_path}.err").read_text(encoding="utf-8", errors="replace").strip()
            failed.append(err.splitlines()[-1] if err else f"exit {code}")
            if kill is None:
                break
            continue
        if kill is not None:
            break  # finished before the kill came: the chain is complete
    stitched = stitch(journal)
    lrs, saves, end = stitched.lrs, stitched.saves, stitched.end
    files = tuple(sorted(_model_files(workdir, [workdir / BACKUP_DIR])))
    stop = None
    if end is not None and end["stop"] is not None:
        stop = Stop(end["stop"][0], end["stop"][1])
    outcome = Outcome(
        epochs_run=len(lrs),
        learning_rates=tuple(lr for _, lr in lrs),
        saves=tuple(saves),
        files=files,
        restored_epoch=None if end is None else end["restored_epoch"],
        stop=stop,
    )
    csv_rows: list[str] = []
    for log in sorted(workdir.rglob("*.csv")):
        csv_rows.extend(f"{log.relative_to(workdir).as_posix()}: {row}" for row in log.read_text().splitlines())
    weights = [] if end is None else list(end["weights"])
    return ChainResult(outcome, weights, csv_rows, stitched.real, stitched.resumes, torn, failed, died, codes)


def same(a: float, b: float) -> bool:
    """Equal, NaN equal to NaN."""
    return a == b or (math.isnan(a) and math.isnan(b))


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve()
    else:
        run_worker(json.loads(pathlib.Path(sys.argv[1]).read_text(encoding="utf-8")))
