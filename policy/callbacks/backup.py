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
- a folder written under a different policy is refused with :class:`PolicyError`.

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
from policy.callbacks.atomic import PARTIAL_PREFIX, discarded, fsync_path, sweep_partials
from policy.callbacks.base import POLICY_RULE
from policy.callbacks.processes import AGREE_EVERY, agree_max, is_writer, process_count
from policy.callbacks.state import get_state, set_state
from policy.errors import PolicyError, problem_at

FORMAT = 1
WEIGHTS = "model.weights.h5"
STATE = "state.json"
ARRAYS = "rules.npz"
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


class _Damaged(Exception):
    """A generation that does not verify (the message says what is wrong)."""


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _split_arrays(state: dict[str, Any], arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """Move the weight lists of one callback's state into ``arrays``; JSON keeps their names."""
    plain: dict[str, Any] = {}
    for name, value in state.items():
        if name.endswith("_weights") and value is not None:
            names = []
            for w in value:
                array_name = str(len(arrays))
                arrays[array_name] = np.asarray(w)
                names.append(array_name)
            plain[name] = {"arrays": names}
        else:
            plain[name] = value
    return plain


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
        self._batches_begun = 0

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
        self._batches_begun = 0
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

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
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

    def _stop_if_preempted(self) -> None:
        preempted = self._preempted
        if self._processes > 1:
            # A SIGTERM reaches each process at its own moment: all leave if any was told to,
            # at the same step, or the others would wait for it in the next collective.
            preempted = agree_max([1.0 if preempted else 0.0])[0] > 0
        if preempted:
            self._uninstall_sigterm()
            raise Preempted(self.backup_dir)

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        # The previous batch has ended; the newest backup on disk is complete. With several
        # processes the signal is agreed every AGREE_EVERY batches (and at every epoch end).
        self._batches_begun += 1
        ended = self._batches_begun - 1
        if self._processes > 1 and (ended == 0 or ended % AGREE_EVERY):
            return
        self._stop_if_preempted()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        super().on_epoch_end(epoch, logs)
        self._stop_if_preempted()

    # ------------------------------------------------------------------ writing

    def _save_model(self) -> None:
        """Write one generation under a temporary name, then rename it into place.

        Under multi-process training only the writer does so; the other processes write the
        same generation (saving weights is collective work on JAX) into a private folder that
        is deleted at once, and remove nothing.
        """
        name = f"generation-{self._next:08d}"
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
        self.model.save_weights(os.path.join(tmp, WEIGHTS), overwrite=True)
        arrays: dict[str, np.ndarray] = {}
        states = {key: _split_arrays(get_state(cb), arrays) for key, cb in self._members}
        with open(os.path.join(tmp, ARRAYS), "wb") as out:
            savez: Any = np.savez
            savez(out, **arrays)
        state = {
            "format": FORMAT,
            "epoch": self._current_epoch,
            "batch": self._last_batch_seen,
            "batches_since_save": self._batches_seen_since_last_saving,
            "stopped": bool(self.model.stop_training),
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
        self.model.load_weights(os.path.join(path, WEIGHTS))
        saved = state["callbacks"]
        for key, cb in self._members:
            if key in saved:
                set_state(cb, _join_arrays(saved[key], arrays))
        self._current_epoch = state["epoch"]
        self._last_batch_seen = state["batch"]
        self._batches_seen_since_last_saving = state["batches_since_save"]
        epoch = int(state["epoch"])
        if state["stopped"]:
            # A rule had stopped training when this backup was taken: run no more epochs.
            epoch = max(epoch, int(self.params.get("epochs", epoch)))
        self.model._initial_epoch = epoch
        with contextlib.suppress(AttributeError):
            self.model.stop_training = False
