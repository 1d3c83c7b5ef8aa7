"""``backup to DIR``: the whole training state as one unit, so a killed run resumes exactly.

Keras's BackupAndRestore keeps the weights, the optimizer and the epoch, in two files
written in place one after the other. :class:`PolicyBackup` keeps Keras's class, arguments
and save cadence (``_should_save_on_batch``, ``on_epoch_end``, deleting the folder at train
end) and replaces only how a backup is written and read:

- a backup is a *generation* folder ``generation-NNNNNNNN`` holding the model's weights
  with the optimizer (``model.weights.h5``), every rule's state (``state.json``, with the
  epoch and the policy's rules) and the weights rules keep (``rules.npz``). It is written
  under a temporary name, every file flushed to the disk, then renamed into place in one
  step, so after any kill the folder holds the previous complete generation or the new one;
- ``state.json`` holds checksums of the other two files. At train begin the newest
  generation that verifies is used; a damaged newest generation falls back to the one
  before it (a warning says so); nothing is applied before everything is verified;
- a folder written under a different policy is refused with :class:`PolicyError`;
- a backup taken inside an epoch (``every N steps``, or on SIGTERM) also holds the model's
  metric accumulators, and the position (epoch, batch). The resumed run starts that epoch
  and lets its first batches go by untrained (:class:`_Skip` stands in for the model's train
  function; the policy's own callbacks do not see those batches), so the batches after the
  backup are trained exactly once, with the logs, counters and rates of the uninterrupted run.

Every backup also holds the state of the model's random seed generators (dropout's), which
``save_weights`` leaves out, so a resumed run draws the same masks as the uninterrupted one.

The compiler puts this callback last in the list, whatever the rule's place in the text:
at train begin it restores after every other callback has reset itself, and at an epoch end
it saves after every other callback has decided, so the text's order changes nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import threading
import warnings
from collections import Counter
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from policy import ast
from policy.callbacks.atomic import PARTIAL_PREFIX, discarded, fsync_path, sweep_partials, write_bytes
from policy.callbacks.base import POLICY_RULE
from policy.callbacks.processes import agree_max, agreement_due, is_writer, process_count
from policy.callbacks.state import get_state, set_state
from policy.errors import PolicyError, problem_at

FORMAT = 1
WEIGHTS = "model.weights.h5"
STATE = "state.json"
ARRAYS = "rules.npz"
# Where each CSV log kept with `append` ended before this run wrote to it (see _appended_logs).
LOG_STARTS = "log-starts.json"
_GENERATION = re.compile(r"^generation-(\d{8})$")


class Preempted(SystemExit):
    """Raised out of ``fit`` after a SIGTERM, once the backup is safe on disk.

    A ``SystemExit`` (code 143, as a process ended by SIGTERM reports), so the script ends
    without running the code after ``fit`` as if training had finished, ``finally`` blocks
    still run, and ``except Exception`` does not swallow it.
    """

    def __init__(self, backup_dir: str) -> None:
        super().__init__(143)
        self.backup_dir = backup_dir

    def __str__(self) -> str:
        return f"training stopped on SIGTERM; run the same script again to resume from the backup in {self.backup_dir!r}"


class _Skip:
    """The model's train function while a resumed epoch's already-trained batches go by.

    It consumes the batches one execution of the real train function would consume (fit's own
    loop hands it what it hands the real one: TensorFlow an iterator, JAX the state and an
    iterator, torch a batch already taken) and returns the logs the backup recorded, trains
    nothing and leaves every variable alone.
    """

    def __init__(self, original: Any, steps_per_execution: int) -> None:
        self.original = original
        self.steps_per_execution = steps_per_execution
        self.logs: dict[str, Any] | None = None  # set before the first call, or by ``first``
        self.first: Any = None  # called with the first skipped batch when logs is still None

    def __call__(self, *args: Any) -> Any:
        backend = keras.backend.backend()
        if backend == "jax":
            state, iterator = args
            self._advance(iterator)
            return self._logs(), state
        if backend == "tensorflow":
            self._advance(args[0])
        else:
            self._seen(args[0][0])  # torch: fit's loop took the batch itself
        return self._logs()

    def _logs(self) -> dict[str, Any]:
        assert self.logs is not None
        return dict(self.logs)

    def _seen(self, batch: Any) -> None:
        if self.logs is None:
            self.logs = self.first(batch)

    def _advance(self, iterator: Any) -> None:
        for i in range(self.steps_per_execution):
            if hasattr(iterator, "get_next_as_optional"):  # a tf.data or distributed iterator
                optional = iterator.get_next_as_optional()
                if not bool(optional.has_value()):
                    if i == 0:
                        raise StopIteration
                    return
                if self.logs is None:
                    self._seen(optional.get_value())
                continue
            try:
                batch = next(iterator)
            except StopIteration:
                if i == 0:
                    raise
                return
            self._seen(batch)


def _seed_states(model: Any) -> list[Any]:
    """The model's variables ``save_weights`` leaves out: its seed generators' states."""
    saved = {id(v) for v in model.weights}
    return [v for v in model.non_trainable_variables if id(v) not in saved]


def _global_rng() -> list[np.ndarray]:
    """torch's global random state (what Keras's unseeded dropout draws from on torch)."""
    if keras.backend.backend() != "torch":
        return []
    import torch

    states = [torch.get_rng_state().numpy().copy()]
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states.extend(s.numpy().copy() for s in torch.cuda.get_rng_state_all())
    return states


def _set_global_rng(states: Sequence[np.ndarray]) -> None:
    if keras.backend.backend() != "torch" or not states:
        return
    import torch

    torch.set_rng_state(torch.from_numpy(np.array(states[0])))
    if len(states) > 1 and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.from_numpy(np.array(s)) for s in states[1:]])


def _values(variables: Sequence[Any]) -> list[np.ndarray]:
    return [np.array(keras.ops.convert_to_numpy(v.value), copy=True) for v in variables]


class _Damaged(Exception):
    """A generation that does not verify (the message says what is wrong)."""


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _store(values: Sequence[Any], arrays: dict[str, np.ndarray]) -> list[str]:
    """Add ``values`` to ``arrays`` (numbered in order of arrival); their names, for the JSON."""
    names = []
    for w in values:
        array_name = str(len(arrays))
        arrays[array_name] = np.asarray(w)
        names.append(array_name)
    return names


def _split_arrays(state: dict[str, Any], arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """Move the weight lists of one callback's state into ``arrays``; JSON keeps their names."""
    return {
        name: {"arrays": _store(value, arrays)} if name.endswith("_weights") and value is not None else value
        for name, value in state.items()
    }


def _join_arrays(state: dict[str, Any], arrays: Any) -> dict[str, Any]:
    return {
        name: [np.array(arrays[n]) for n in value["arrays"]]
        if name.endswith("_weights") and isinstance(value, dict)
        else value
        for name, value in state.items()
    }


class PolicyBackup(keras.callbacks.BackupAndRestore):  # type: ignore[misc]
    """Keras's BackupAndRestore, saving and restoring every rule's state as one atomic unit.

    Keras's own backup keeps the model, the optimizer and the epoch; this one also keeps the
    state of every other callback of the policy (counters, bests, kept checkpoints, budgets),
    so a killed run resumes every rule exactly where it was. ``compile_policy`` puts it last
    and tells it the other callbacks (``attach``). On SIGTERM it saves at the next batch end
    and ends ``fit`` with :class:`Preempted`.

    Args:
        backup_dir: the folder to keep the backup in, used by this callback alone (as Keras
            requires); it is deleted when training finishes.
        save_freq: ``"epoch"`` to save at every epoch end, or a number of training batches
            between saves, as for Keras's BackupAndRestore. Defaults to ``"epoch"``.
    """

    def __init__(self, backup_dir: str, save_freq: str | int = "epoch") -> None:
        super().__init__(backup_dir=backup_dir, save_freq=save_freq)
        self._members: list[tuple[str, Any]] = []
        self._rules: list[str] = []
        self._source = ""
        self._positions: dict[str, ast.Pos] = {}
        self._next = 1
        self._preempted = False
        self._previous_handler: Any = None
        self._processes = 1
        self._batches_ended = 0
        self._epoch_now = 0
        self._in_epoch: int | None = None  # the last batch index ended in this epoch, if any
        self._resume: tuple[dict[str, Any], Any] | None = None  # a mid-epoch backup being resumed
        self._skip: _Skip | None = None
        self._skip_until = -1
        self._muted: list[Any] = []
        self._saved_at: tuple[int, int | None] | None = None

    def attach(self, callbacks: Sequence[Any], policy: ast.Policy, rule_texts: Sequence[str]) -> None:
        """Tell the backup which callbacks make up the policy (every one but itself)."""
        seen: Counter[str] = Counter()
        self._members = []
        for cb in callbacks:
            if cb is self:
                continue
            rule = getattr(cb, POLICY_RULE, None) or f"<{type(cb).__name__}>"
            self._members.append((f"{rule} #{seen[rule]}", cb))
            seen[rule] += 1
        self._rules = sorted(rule_texts)
        self._source = policy.source
        self._positions = {text: r.pos for text, r in zip(rule_texts, policy.rules, strict=True)}

    # ------------------------------------------------------------------ train begin / end

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if not self.model.built:
            raise ValueError(
                "To use a backup rule, the model must be built before you call `fit()`. "
                f"Model {self.model} is unbuilt. You can build it by calling it on a batch of data."
            )
        self._preempted = False
        self._processes = process_count()
        self._batches_ended = 0
        self._end_skip()  # whatever an earlier fit of this model that raised left behind
        self._resume = None
        self._install_sigterm()
        sweep_partials(os.path.join(self.backup_dir, "x"))
        generations = self._generations()
        self._next = (generations[0][0] + 1) if generations else 1
        found = self._newest_complete(generations)
        if found is not None:
            self._apply(*found)
        else:
            # Nothing to resume: start where fit was asked to, whatever an earlier fit of this
            # model that raised (so never reached on_train_end) left behind.
            self.model._initial_epoch = None
            self._appended_logs()

    def _appended_logs(self) -> None:
        """Cut each ``append`` CSV log back to where it ended before the first backup, and record that.

        A log kept with ``append`` is never emptied by Keras, and a generation only knows the rows
        up to its own epoch. A run killed after writing a row but before its first backup would
        leave that row for the restart, which writes the same epoch again: doubled. So the first
        start records each such log's length in the backup folder (one atomic file, deleted with
        the folder when fit ends), and a start that finds the record but no generation cuts the
        log back to it.
        """
        logs = [cb for _, cb in self._members if isinstance(cb, keras.callbacks.CSVLogger) and cb.append]
        if not logs or not is_writer():
            return
        record = os.path.join(self.backup_dir, LOG_STARTS)
        known: dict[str, int] = {}
        if os.path.exists(record):
            with open(record, encoding="utf-8") as f:
                known = json.load(f)
        starts: dict[str, int] = {}
        for cb in logs:
            name = os.path.abspath(cb.filename)
            if cb.csv_file is not None and not cb.csv_file.closed:
                cb.csv_file.flush()
            size = os.path.getsize(name) if os.path.exists(name) else 0
            start = known.get(name, size)
            if size > start:
                os.truncate(name, start)  # the file is open for appending: the next row goes at the cut
                cb.append_header = start == 0
            starts[name] = start
        if not known:
            os.makedirs(self.backup_dir, exist_ok=True)
            write_bytes(record, json.dumps(starts).encode("utf-8"))

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._end_skip()
        self._uninstall_sigterm()
        if is_writer():
            super().on_train_end(logs)  # Keras: delete the folder once fit has finished
        if self._processes > 1:
            # Nobody leaves fit before the folder is gone: a next fit must not read a backup
            # that the writer is deleting.
            agree_max([0.0])
        # Keras never resets this; a later fit of the same model must start from its own epoch.
        self.model._initial_epoch = None

    # ------------------------------------------------------------------ SIGTERM

    def _install_sigterm(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        self._previous_handler = signal.signal(signal.SIGTERM, self._on_sigterm)

    def _uninstall_sigterm(self) -> None:
        if self._previous_handler is not None:
            signal.signal(signal.SIGTERM, self._previous_handler)
            self._previous_handler = None

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        # Only a flag: the handler may run in the middle of any write. The batch hooks act on it.
        self._preempted = True

    def _agreed_preempted(self) -> bool:
        preempted = self._preempted
        if self._processes > 1:
            # A SIGTERM reaches each process at its own moment: all leave if any was told to,
            # at the same step, or the others would wait for it in the next collective.
            preempted = agree_max([1.0 if preempted else 0.0])[0] > 0
        return preempted

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch_now = epoch
        self._in_epoch = None
        if self._resume is not None and self._skip is not None:
            self._begin_resumed_epoch(*self._resume)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self._skip is not None:
            # A batch the backed-up run had trained went by untrained; the last one ends the skip.
            if batch >= self._skip_until:
                self._finish_resume()
            return
        self._in_epoch = batch
        super().on_train_batch_end(batch, logs)  # Keras's cadence: every save_freq batches
        self._batches_ended += 1
        if self._processes > 1 and not agreement_due(self._batches_ended, batch, (self.params or {}).get("steps")):
            return
        if self._agreed_preempted():
            # Write the backup at the end of this batch (unless the cadence just did), then stop.
            if self._saved_at != (self._epoch_now, batch):
                self._save_model()
            self._uninstall_sigterm()
            raise Preempted(self.backup_dir)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._in_epoch = None
        super().on_epoch_end(epoch, logs)
        if self._agreed_preempted():
            self._uninstall_sigterm()
            raise Preempted(self.backup_dir)

    # ------------------------------------------------------------------ resuming inside an epoch

    def _start_skip(self, state: dict[str, Any]) -> None:
        """At train begin: the backup was taken after batch ``in_epoch`` of its epoch.

        Until that batch has gone by, the model's train function is a :class:`_Skip` and the
        batch hooks of the policy's other callbacks are muted (their state is the backed-up
        one, which already counts those batches); their epoch-begin hooks still run.
        """
        model = self.model
        spe = int(getattr(model, "steps_per_execution", 1) or 1)
        steps = (self.params or {}).get("steps")
        if state.get("steps_per_execution") != spe or state.get("steps") != steps:
            raise PolicyError.plain(
                f"the backup in {self.backup_dir!r} was taken inside an epoch of "
                f"{state.get('steps')} batches run {state.get('steps_per_execution')} per execution; "
                f"this fit has {steps} batches per epoch run {spe} per execution, so its batches "
                "cannot be matched to the backed-up ones",
                "resume with the batch size, data and steps_per_execution the backup was written with, "
                "or delete the folder to start afresh",
            )
        self._skip = _Skip(model.train_function, spe)
        self._skip_until = int(state["in_epoch"])
        model.train_function = self._skip
        for _, cb in self._members:
            for hook in ("on_train_batch_begin", "on_train_batch_end"):
                if hook not in vars(cb):
                    setattr(cb, hook, _ignore)
            self._muted.append(cb)

    def _begin_resumed_epoch(self, state: dict[str, Any], arrays: Any) -> None:
        """At the resumed epoch's begin (fit has just reset the metrics): put back the learning
        rate and the metric accumulators the backup holds, and the logs the skip returns."""
        model = self.model
        optimizer = model.optimizer
        rate = state.get("learning_rate")
        if rate is not None and optimizer is not None and isinstance(optimizer._learning_rate, keras.Variable):
            optimizer.learning_rate = rate
        assert self._skip is not None
        if len(model.metrics_variables) == len(state.get("metrics") or []):
            self._skip.logs = self._restore_metrics(state, arrays)
        else:
            # TensorFlow without a strategy builds the compiled metrics when it first traces the
            # train step: build them from the first skipped batch, then put the values back.
            self._skip.first = lambda batch: self._restore_metrics(state, arrays, batch)

    def _restore_metrics(self, state: dict[str, Any], arrays: Any, batch: Any = None) -> dict[str, Any]:
        model = self.model
        names = state.get("metrics") or []
        if batch is not None and len(model.metrics_variables) != len(names):
            with model.distribute_strategy.scope() if hasattr(model, "distribute_strategy") else contextlib.nullcontext():
                model._symbolic_build(data_batch=batch)
        for variable, name in zip(model.metrics_variables, names, strict=True):
            variable.assign(arrays[name])
        return {k: float(np.asarray(keras.ops.convert_to_numpy(v))) for k, v in model.get_metrics_result().items()}

    def _finish_resume(self) -> None:
        """The last backed-up batch has gone by: every rule gets its backed-up state again (an
        epoch-begin hook may have moved it), training goes on with the next batch."""
        assert self._resume is not None
        state, arrays = self._resume
        self._end_skip()
        self._restore_members(state, arrays)
        self._last_batch_seen = state["batch"]
        self._batches_seen_since_last_saving = state["batches_since_save"]
        self._in_epoch = self._skip_until
        self._resume = None
        # After the batches went by (torch's data loader draws from it when an epoch starts).
        _set_global_rng([arrays[name] for name in state.get("global_rng") or []])
        if state["stopped"]:
            # A rule stopped training at this batch: the epoch ends here, as it did.
            self.model.stop_training = True

    def _end_skip(self) -> None:
        skip = self._skip
        if skip is not None:
            original = skip.original
            if getattr(self.model, "train_function", None) is skip:
                self.model.train_function = original
            self._skip = None
        for cb in self._muted:
            for hook in ("on_train_batch_begin", "on_train_batch_end"):
                if vars(cb).get(hook) is _ignore:
                    delattr(cb, hook)
        self._muted = []

    # ------------------------------------------------------------------ writing

    def _save_model(self) -> None:
        """Write one generation under a temporary name, then rename it into place.

        Under multi-process training only the writer does so; the other processes write the
        same generation (saving weights is collective work on JAX) into a private folder that
        is deleted at once, and remove nothing.
        """
        name = f"generation-{self._next:08d}"
        self._saved_at = (self._epoch_now, self._in_epoch)
        if not is_writer():
            with discarded(name) as tmp:
                os.makedirs(tmp)
                self._write_generation(tmp)
            self._next += 1
            return
        os.makedirs(self.backup_dir, exist_ok=True)
        final = os.path.join(self.backup_dir, name)
        tmp = os.path.join(self.backup_dir, f"{PARTIAL_PREFIX}{os.getpid()}-{name}")
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
        os.makedirs(tmp)
        self._write_generation(tmp)
        fsync_path(tmp)
        os.replace(tmp, final)  # the switch: this generation now exists, complete
        fsync_path(self.backup_dir)
        self._next += 1
        # Keep this generation and the one before it (the fallback); remove older ones.
        for _, old in self._generations()[2:]:
            self._remove_generation(old)

    def _write_generation(self, tmp: str) -> None:
        """Write the three files of one generation into the folder ``tmp``, each flushed."""
        model = self.model
        model.save_weights(os.path.join(tmp, WEIGHTS), overwrite=True)
        arrays: dict[str, np.ndarray] = {}
        states = {key: _split_arrays(get_state(cb), arrays) for key, cb in self._members}
        seeds = _store(_values(_seed_states(model)), arrays)
        rng = _store(_global_rng(), arrays)
        in_epoch = self._in_epoch
        position: dict[str, Any] = {"epoch": self._current_epoch, "in_epoch": None}
        if in_epoch is not None:
            # Inside an epoch: resume that epoch after this batch, with its running metrics.
            metrics = _store(_values(model.metrics_variables), arrays)
            optimizer = model.optimizer
            rate = None
            if optimizer is not None and isinstance(optimizer._learning_rate, keras.Variable):
                rate = float(keras.ops.convert_to_numpy(optimizer._learning_rate))
            position = {
                "epoch": self._epoch_now,
                "in_epoch": in_epoch,
                "steps": (self.params or {}).get("steps"),
                "steps_per_execution": int(getattr(model, "steps_per_execution", 1) or 1),
                "metrics": metrics,
                "learning_rate": rate,
            }
        with open(os.path.join(tmp, ARRAYS), "wb") as out:
            savez: Any = np.savez
            savez(out, **arrays)
        state = {
            "format": FORMAT,
            **position,
            "batch": self._last_batch_seen,
            "batches_since_save": self._batches_seen_since_last_saving,
            "stopped": bool(model.stop_training),
            "seeds": seeds,
            "global_rng": rng,
            "rules": self._rules,
            "callbacks": states,
            "checksums": {f: _sha256(os.path.join(tmp, f)) for f in (WEIGHTS, ARRAYS)},
        }
        with open(os.path.join(tmp, STATE), "w", encoding="utf-8") as text:
            json.dump(state, text)
        for file in (WEIGHTS, ARRAYS, STATE):
            fsync_path(os.path.join(tmp, file))

    def _remove_generation(self, path: str) -> None:
        # Renamed away first, so a kill during the removal never leaves a half generation
        # under a generation's name.
        doomed = os.path.join(self.backup_dir, f"{PARTIAL_PREFIX}{os.getpid()}-old-{os.path.basename(path)}")
        os.replace(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)

    # ------------------------------------------------------------------ reading

    def _generations(self) -> list[tuple[int, str]]:
        """The generation folders, newest first."""
        if not os.path.isdir(self.backup_dir):
            return []
        found = []
        for entry in os.listdir(self.backup_dir):
            match = _GENERATION.match(entry)
            if match:
                found.append((int(match.group(1)), os.path.join(self.backup_dir, entry)))
        return sorted(found, reverse=True)

    def _newest_complete(self, generations: list[tuple[int, str]]) -> tuple[dict[str, Any], Any, str] | None:
        if not generations:
            if os.path.exists(os.path.join(self.backup_dir, "training_metadata.json")):
                raise PolicyError.plain(
                    f"the folder {self.backup_dir!r} holds a backup of Keras's BackupAndRestore, not of a policy",
                    "give the backup rule a folder of its own, or delete this one to start from the beginning",
                )
            return None
        damaged: list[str] = []
        for _, path in generations:
            try:
                state, arrays = self._verify(path)
            except _Damaged as e:
                damaged.append(f"{os.path.basename(path)}: {e}")
                continue
            self._check_policy(state)
            if damaged:
                warnings.warn(
                    f"backup generation(s) damaged ({'; '.join(damaged)}); resuming from the complete "
                    f"earlier generation {os.path.basename(path)}",
                    stacklevel=2,
                )
            return state, arrays, path
        raise PolicyError.plain(
            f"the backup in {self.backup_dir!r} is damaged and no complete earlier backup is left "
            f"({'; '.join(damaged)})",
            "delete the folder to train from the beginning",
        )

    def _verify(self, path: str) -> tuple[dict[str, Any], Any]:
        """Read and check one generation completely, applying nothing."""
        try:
            with open(os.path.join(path, STATE), encoding="utf-8") as f:
                state = json.load(f)
        except (OSError, ValueError) as e:
            raise _Damaged(f"{STATE} unreadable ({e})") from e
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise _Damaged(f"{STATE} is not a policy backup of format {FORMAT}")
        for name, expected in state["checksums"].items():
            file = os.path.join(path, name)
            if not os.path.exists(file) or _sha256(file) != expected:
                raise _Damaged(f"{name} is missing or does not match its checksum")
        with np.load(os.path.join(path, ARRAYS), allow_pickle=False) as npz:
            arrays = {k: np.array(npz[k]) for k in npz.files}
        return state, arrays

    def _check_policy(self, state: dict[str, Any]) -> None:
        saved, now = Counter(state["rules"]), Counter(self._rules)
        if saved == now:
            return
        extra = [r for r in self._positions if now[r] > saved[r]]
        missing = sorted(r for r in saved if saved[r] > now[r])
        hint = "use the policy the backup was written with, or another backup folder to start afresh"
        if extra:
            raise PolicyError(
                [
                    problem_at(
                        self._source,
                        self._positions[extra[0]],
                        f"the backup in {self.backup_dir!r} was written under a different policy, "
                        f"without the rule {extra[0]!r}",
                        hint,
                    )
                ]
            )
        raise PolicyError.plain(
            f"the backup in {self.backup_dir!r} was written under a different policy, with the rule "
            f"{missing[0]!r} that this policy does not have",
            hint,
        )

    def _apply(self, state: dict[str, Any], arrays: Any, path: str) -> None:
        """Put everything back: weights and optimizer, then every rule's state, then the epoch."""
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        model = self.model
        model.load_weights(os.path.join(path, WEIGHTS))
        for variable, name in zip(_seed_states(model), state.get("seeds") or [], strict=False):
            variable.assign(arrays[name])
        _set_global_rng([arrays[name] for name in state.get("global_rng") or []])
        self._restore_members(state, arrays)
        self._current_epoch = state["epoch"]
        self._last_batch_seen = state["batch"]
        self._batches_seen_since_last_saving = state["batches_since_save"]
        epoch = int(state["epoch"])
        if state.get("in_epoch") is not None:
            # Taken inside epoch `epoch`: run it again, its backed-up batches going by untrained.
            self._resume = (state, arrays)
            self._start_skip(state)
        elif state["stopped"]:
            # A rule had stopped training when this backup was taken: run no more epochs.
            epoch = max(epoch, int(self.params.get("epochs", epoch)))
        model._initial_epoch = epoch
        with contextlib.suppress(AttributeError):
            model.stop_training = False

    def _restore_members(self, state: dict[str, Any], arrays: Any) -> None:
        saved = state["callbacks"]
        for key, cb in self._members:
            if key in saved:
                set_state(cb, _join_arrays(saved[key], arrays))


def _ignore(*args: Any, **kwargs: Any) -> None:
    """A muted batch hook (see :meth:`PolicyBackup._start_skip`)."""
