"""Run policies in several real processes on this machine (Keras's distribution API on JAX).

:func:`launch` starts ``count`` processes of this module on localhost (a free port, each under
``timeout -k`` so that a process left waiting in a collective cannot hang the caller) and
returns what each one printed as JSON. Every process joins the same JAX distributed system,
sets a ``DataParallel`` distribution over all CPU devices, and runs the requested cases, in
order, in one shared folder:

- ``{"kind": "scripted", ...}``: the policy in the harness's real ``fit`` with scripted epoch
  logs (:func:`policy.testing.run_callbacks`), the same on every process, so every process must
  decide exactly as one process does and as ``simulate`` predicts. ``step_seconds`` may be a
  list, one per process: each process's clock then runs at its own speed (a local signal).
  ``sigterm_at = [process, epoch, batch]`` sends SIGTERM to that one process at that training
  batch; the run then ends in ``Preempted`` and is run again, which resumes from the backup.
- ``{"kind": "real", ...}``: a small classifier on generated data, each process feeding its own
  half, the policy deciding on the real (global) metrics; the answer holds the history.

Each answer also lists what the process did to the shared folder (files opened for writing,
renames, removals), read from Python's audit events, which is how a test tells who wrote.

    KERAS_BACKEND=jax python -m policy.testing.processes WORKDIR PORT INDEX COUNT REQUEST_JSON
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

_WRITE_EVENTS = ("os.rename", "os.remove", "os.unlink", "shutil.rmtree")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return int(s.getsockname()[1])


def launch(
    request: dict[str, Any],
    workdir: pathlib.Path,
    *,
    count: int = 2,
    python: str | None = None,
    timeout: float = 120.0,
    module: str = "policy.testing.processes",
) -> list[dict[str, Any]]:
    """Run ``request`` in ``count`` processes sharing ``workdir``; each process's JSON answer.

    Raises RuntimeError (with every process's output) if any process fails or times out.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3", "JAX_PLATFORMS": "cpu"}
    root = str(pathlib.Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([root, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    args = json.dumps(request)
    procs = []
    command = ["timeout", "-k", "5", str(int(timeout)), python or sys.executable, "-m", module, str(workdir), str(port)]
    for i in range(count):
        # Each process's own temporary folder beside the shared one, so a caller can check
        # that the private saves of the processes that do not write were all deleted.
        scratch = workdir.parent / f"{workdir.name}-tmp{i}"
        scratch.mkdir(exist_ok=True)
        procs.append(
            subprocess.Popen(
                [*command, str(i), str(count), args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**env, "TMPDIR": str(scratch)},
            )
        )
    # A process that fails leaves the others waiting in a collective: end them at once.
    while any(p.poll() is None for p in procs):
        if any(p.returncode not in (None, 0) for p in procs):
            for p in procs:
                if p.poll() is None:
                    p.kill()
            break
        time.sleep(0.2)
    outputs = [p.communicate() for p in procs]
    if any(p.returncode != 0 for p in procs):
        report = "\n".join(
            f"--- process {i} exited {p.returncode}\n{out[-2000:]}\n{err[-4000:]}"
            for i, (p, (out, err)) in enumerate(zip(procs, outputs, strict=True))
        )
        raise RuntimeError(f"a process failed:\n{report}")
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]


# --------------------------------------------------------------------------- inside a process


class _Writes:
    """What this process does to files under ``root``, from Python's audit events."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = str(root.resolve())
        self.events: list[list[str]] = []
        self.on = True

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.on:
            return
        if event == "open":
            path, mode = args[0], args[1]
            writing = isinstance(mode, str) and any(c in mode for c in "wax+")
            if writing and isinstance(path, str | os.PathLike):
                self._note("open", os.fspath(path))
        elif event in _WRITE_EVENTS and args and isinstance(args[0], str | os.PathLike):
            if event in ("os.remove", "os.unlink") and len(args) > 1 and args[1] not in (None, -1, -100):
                return  # relative to a folder descriptor: inside an rmtree, noted as that
            self._note(event, os.fspath(args[1] if event == "os.rename" else args[0]))

    def _note(self, event: str, path: str) -> None:
        full = os.path.abspath(path)
        if full == self.root or full.startswith(self.root + os.sep):
            self.events.append([event, os.path.relpath(full, self.root)])


def _start(port: int, index: int, count: int) -> None:
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    import keras

    if count > 1:
        keras.distribution.initialize(f"localhost:{port}", num_processes=count, process_id=index)
    devices = keras.distribution.list_devices("cpu")
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False))


def _sigterm_at(process: int, epoch: int, batch: int) -> Any:
    import keras

    from policy.callbacks.processes import process_index

    class SigtermAt(keras.callbacks.Callback):  # type: ignore[misc]
        """Sends SIGTERM to this process at one training batch, on one process only."""

        def __init__(self) -> None:
            super().__init__()
            self._epoch = 0

        def on_epoch_begin(self, e: int, logs: dict[str, Any] | None = None) -> None:
            self._epoch = e

        def on_train_batch_begin(self, b: int, logs: dict[str, Any] | None = None) -> None:
            if process_index() == process and (self._epoch, b) == (epoch, batch):
                os.kill(os.getpid(), signal.SIGTERM)

    return SigtermAt()


def _scripted(case: dict[str, Any], workdir: pathlib.Path, index: int) -> dict[str, Any]:
    from policy import compile_policy
    from policy.callbacks import Preempted
    from policy.compiler import why_stopped
    from policy.testing.harness import run_callbacks

    seconds = case.get("step_seconds")
    if isinstance(seconds, list):
        seconds = seconds[index]
    kw = {
        "steps_per_epoch": int(case.get("steps_per_epoch", 1)),
        "batch_losses": case.get("batch_losses"),
        "step_seconds": seconds,
        "workdir": workdir / case["name"],
        "scan_files": index == 0,
    }
    answer: dict[str, Any] = {}
    if case.get("sigterm_at"):
        callbacks = compile_policy(case["policy"])
        try:
            run_callbacks([*callbacks, _sigterm_at(*case["sigterm_at"])], case["history"], **kw)
            answer["preempted"] = False
        except Preempted:
            answer["preempted"] = True
        answer["stop_before"] = _stop_json(why_stopped(callbacks))
    callbacks = compile_policy(case["policy"])
    run = run_callbacks(callbacks, case["history"], **kw)
    answer["outcome"] = run.outcome.to_json()
    answer["stop"] = _stop_json(why_stopped(callbacks))
    answer["weights"] = [w.tolist() for w in run.final_weights]
    return answer


def _stop_json(stop: Any) -> list[Any] | None:
    return None if stop is None else [stop.rule, stop.epoch, stop.reason]


def real_data(index: int, count: int, size: int = 512) -> dict[str, Any]:
    """A noisy two-class problem; this process's share of the training and validation data."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(size, 8)).astype("float32")
    y = ((x[:, :3].sum(axis=1) + rng.normal(scale=1.5, size=size)) > 0).astype("float32")
    cut = size * 3 // 4
    return {
        "x": x[:cut][index::count],
        "y": y[:cut][index::count],
        "validation_data": (x[cut:][index::count], y[cut:][index::count]),
    }


def real_model(units: int = 16) -> Any:
    """The classifier the real runs train (same initial weights on every process: seeded)."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(units, activation="relu"), keras.layers.Dense(1, activation="sigmoid")]
    )
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.5), loss="binary_crossentropy", metrics=["accuracy"])
    return model


def _real(case: dict[str, Any], workdir: pathlib.Path, index: int, count: int) -> dict[str, Any]:
    from policy import compile_policy
    from policy.compiler import why_stopped
    from policy.testing.harness import working_directory

    folder = workdir / case["name"]
    folder.mkdir(parents=True, exist_ok=True)
    model = real_model()
    callbacks = compile_policy(case["policy"])
    batch = int(case.get("batch_size", 32))
    with working_directory(folder):
        history = model.fit(
            epochs=int(case.get("epochs", 8)),
            batch_size=batch // count,
            callbacks=callbacks,
            shuffle=False,
            verbose=0,
            **real_data(index, count),
        )
    import keras

    lr = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    return {
        "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
        "epochs_run": len(history.epoch),
        "stop": _stop_json(why_stopped(callbacks)),
        "final_lr": lr,
    }


def _timing(case: dict[str, Any], workdir: pathlib.Path, index: int, count: int) -> dict[str, Any]:
    """Seconds of ``fit`` with the compiled policy and with the hand-written callbacks, alternated.

    With ``against``, the second side is that policy compiled instead of hand-written code.
    """
    import keras

    from policy import compile_policy, parse_policy
    from policy.callbacks.processes import agree_max
    from policy.eject import eject
    from policy.testing.harness import working_directory

    def hand_written() -> list[Any]:
        namespace: dict[str, Any] = {}
        exec(eject(parse_policy(case["policy"])), namespace)  # what `keras-policy compile --python` prints
        return list(namespace["callbacks"])

    variants = {"policy": lambda: compile_policy(case["policy"]), "keras": hand_written}
    if case.get("against"):  # the policy against another compiled policy instead of by hand
        variants = {"policy": lambda: compile_policy(case["policy"]), "keras": lambda: compile_policy(case["against"])}
    model = real_model(int(case.get("units", 256)))
    initial = model.get_weights()
    data = real_data(index, count, size=int(case.get("size", 2048)))
    batch = int(case.get("batch_size", 64)) // count
    times: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(int(case["rounds"]) + 1):
        order = list(variants) if r % 2 == 0 else list(reversed(variants))
        for name in order:
            folder = workdir / case["name"] / f"{name}{r}"
            # The hand-written side's ModelCheckpoint would race to create "ck/" (see _files): a
            # process that loses raises FileExistsError while its peer waits in a collective.
            (folder / "ck").mkdir(parents=True, exist_ok=True)
            callbacks = variants[name]()
            model.set_weights(initial)
            model.optimizer.learning_rate = 0.5
            agree_max([0.0])  # start together
            with working_directory(folder):
                start = time.perf_counter()
                model.fit(epochs=int(case.get("epochs", 4)), batch_size=batch, callbacks=callbacks, shuffle=False,
                          verbose=0, **data)
                elapsed = time.perf_counter() - start
            if r > 0:  # round 0 compiles the step functions: not timed
                times[name].append(elapsed)
    del keras
    return {"times": times}


def _files(case: dict[str, Any], workdir: pathlib.Path, index: int, count: int, writes: _Writes) -> dict[str, Any]:
    """Rounds of ``fit`` saving checkpoints and a CSV log: plain Keras callbacks or the policy."""
    import keras

    from policy import compile_policy
    from policy.callbacks.processes import agree_max
    from policy.testing.harness import working_directory

    model = real_model(int(case.get("units", 256)))
    data = real_data(index, count, size=int(case.get("size", 1024)))
    batch = int(case.get("batch_size", 64)) // count
    rounds = []
    for r in range(int(case["rounds"])):
        folder = workdir / case["name"] / f"round{r:02d}"
        # The checkpoint folder exists before fit: Keras's ModelCheckpoint creates a missing one
        # with a check-then-create that two processes race through (one raises FileExistsError).
        (folder / "ck").mkdir(parents=True, exist_ok=True)
        if case["side"] == "keras":
            callbacks = [
                keras.callbacks.ModelCheckpoint("ck/best.keras", monitor="val_loss", save_best_only=True),
                keras.callbacks.ModelCheckpoint("ck/last.keras"),
                keras.callbacks.CSVLogger("log.csv"),
            ]
        else:
            callbacks = compile_policy(case["policy"])
        agree_max([0.0])
        before = len(writes.events)
        with working_directory(folder):
            model.fit(epochs=int(case.get("epochs", 3)), batch_size=batch, callbacks=callbacks, shuffle=False,
                      verbose=0, **data)
        agree_max([0.0])  # every process has finished writing before anyone looks
        rounds.append(writes.events[before:])
    return {"rounds": rounds}


def main(argv: Sequence[str]) -> int:
    """One process: join the others, run every case, print one JSON line."""
    workdir, port, index, count, request = pathlib.Path(argv[0]), int(argv[1]), int(argv[2]), int(argv[3]), argv[4]
    writes = _Writes(workdir)
    sys.addaudithook(writes)
    _start(port, index, count)
    from policy.callbacks.processes import process_count, process_index

    answers: dict[str, Any] = {"index": process_index(), "count": process_count(), "cases": {}}
    for case in json.loads(request)["cases"]:
        before = len(writes.events)
        kind = case["kind"]
        if kind == "real":
            answer = _real(case, workdir, index, count)
        elif kind == "timing":
            answer = _timing(case, workdir, index, count)
        elif kind == "files":
            answer = _files(case, workdir, index, count, writes)
        else:
            answer = _scripted(case, workdir, index)
        answer["writes"] = writes.events[before:]
        answers["cases"][case["name"]] = answer
    writes.on = False
    print(json.dumps(answers))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
