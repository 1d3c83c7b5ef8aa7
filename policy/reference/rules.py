"""One small state machine per rule, mirroring the callback each rule compiles to.

Each class keeps exactly the state its callback keeps (``wait``, ``best``, a cooldown counter,
the kept top-k epochs) and asks the :class:`~policy.reference.semantics.Semantics` object for
every decision. Epoch-level rules see the same mutable ``logs`` dict in rule order, as Keras's
CallbackList hands one dict to every callback (so ``learning_rate`` written by an lr rule is
visible to the rules after it). Batch-level rules (TerminateOnNaN, step and time budgets,
step checkpoints) are answered per epoch, arithmetically, by :mod:`policy.reference.simulate`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

from policy import ast, meaning
from policy.logs import EpochLogs
from policy.printer import condition as condition_text
from policy.reference.semantics import Semantics


@dataclass
class RunState:
    """What every rule of one run shares: the semantics, the learning rate, the writes so far and
    the checkpoint files they left (in write order; a dict used as an ordered set)."""

    sem: Semantics
    lr0: float | None
    lr: float | None
    iterations: int = 0
    """Optimizer steps run so far (``optimizer.iterations``)."""
    steps_per_epoch: int | None = None
    total_steps: int | None = None
    """``fit``'s epochs x steps per epoch: what "P% of training" is a share of."""
    saves: list[tuple[int, str]] = field(default_factory=list)
    files: dict[str, None] = field(default_factory=dict)
    weights: int = -1
    """Whose weights the model holds: the epoch at whose end they were trained. Each epoch end
    starts with that epoch's own; a rollback (``multiply lr ..., restore best``) sets older ones,
    which a later rule's snapshot then keeps."""
    rollbacks: list[tuple[int, int]] = field(default_factory=list)
    retained: dict[int, list[str]] = field(default_factory=dict)
    """Per ``keep last K`` rule (by its place in the text): the files it wrote, oldest first."""

    def write(self, epoch: int, path: str) -> None:
        """A save rule writes ``path`` after ``epoch`` (creating or overwriting the file)."""
        self.saves.append((epoch, path))
        self.files[path] = None

    def write_retained(self, epoch: int, path: str, order: int, keep: int | None) -> None:
        """A save rule writes ``path``; with ``keep last K`` (``keep``), the files that rule wrote in
        this run beyond its newest K are then deleted (:meth:`Semantics.retained_after_write`)."""
        self.write(epoch, path)
        if keep is None:
            return
        kept, dropped = self.sem.retained_after_write(self.retained.get(order, []), path, keep)
        self.retained[order] = kept
        for gone in dropped:
            self.delete(gone)

    def delete(self, path: str) -> None:
        """A top-k rule deletes ``path`` (which it wrote); a later write may create it again."""
        self.files.pop(path, None)


class EpochRule:
    """The epoch-level hooks of one rule; the defaults do nothing (logging, backup, batch rules)."""

    def __init__(self, rule: ast.Rule, text: str) -> None:
        self.rule = rule
        self.text = text
        self.stopped = False
        self.held = False
        """``train at least`` holds back this rule's stops (set by the simulator's plan)."""

    def on_epoch_begin(self, run: RunState, epoch: int) -> None:
        return None

    def on_epoch_end(self, run: RunState, epoch: int, logs: EpochLogs) -> str | None:
        """Run the rule's epoch-end hook; return a reason sentence if it sets ``stop_training``."""
        return None

    def restored_epoch(self, run: RunState, training_stopped: bool) -> int | None:
        """The epoch whose weights this rule puts back at train end, if any."""
        return None


# --------------------------------------------------------------------------- stopping


class EarlyStop(EpochRule):
    """A single absolute plateau: keras.callbacks.EarlyStopping, options and all."""

    def __init__(self, rule: ast.StopWhen, text: str, sem: Semantics) -> None:
        super().__init__(rule, text)
        plateau = rule.condition
        assert isinstance(plateau, ast.Plateau)
        self.metric = plateau.metric.name
        self.direction = meaning.plateau_direction(plateau)
        self.delta = plateau.delta
        self.patience = plateau.patience
        self.baseline = rule.baseline
        self.restore = rule.restore_best
        self.start = rule.ignore_first
        self.wait = 0
        self.best = sem.initial_best(rule.baseline)
        self.best_epoch: int | None = None  # the epoch of best_weights (only kept with restore)

    def on_epoch_end(self, run: RunState, epoch: int, logs: EpochLogs) -> str | None:
        sem = run.sem
        value = logs.get(self.metric)
        if value is None or sem.ignores_epoch(epoch, self.start):
            return None
        if self.restore and self.best_epoch is None:
            self.best_epoch = run.weights  # Keras snapshots the weights at the first epoch it evaluates
        self.wait += 1
        if sem.monitor_improves(value, self.best, self.delta, self.direction):
            self.best = value
            if self.restore:
                self.best_epoch = run.weights
            if sem.reset_wait_on_improvement(value, self.baseline, self.delta, self.direction):
                self.wait = 0
            return None
        if sem.early_stop_fires(self.wait, self.patience, epoch):
            self.stopped = True
            by = f" by {abs(self.delta):g}" if self.delta else ""
            return f"{self.metric} did not improve{by} for {self.wait} epochs (patience {self.patience})"
        return None

    def restored_epoch(self, run: RunState, training_stopped: bool) -> int | None:
        if not self.restore:
            return None
        has_best = self.best_epoch is not None
        if run.sem.restore_at_end(has_best=has_best, stopped_by_rule=self.stopped, training_stopped=training_stopped):
            return self.best_epoch
        return None


class _PlateauAtom:
    """``M not improving [by D[%]] for N`` inside one of our conditions (docs/semantics.md)."""

    def __init__(self, plateau: ast.Plateau) -> None:
        self.metric = plateau.metric.name
        self.direction = meaning.plateau_direction(plateau)
        self.delta = plateau.delta
        self.relative = plateau.relative
        self.patience = plateau.patience
        self.wait = 0
        self.best: float | None = None
        self.best_changed = False

    def update(self, sem: Semantics, value: float | None) -> bool:
        """One evaluated epoch, with the value the atom reads (None: missing or not yet averaged)."""
        self.best_changed = False
        if value is None:
            return False
        self.wait += 1
        if self.relative:
            improved = sem.relative_improves(value, self.best, self.delta, self.direction)
        else:
            improved = sem.improves(value, self.best, self.delta, self.direction)
        if improved:
            self.best = value
            self.wait = 0
            self.best_changed = True
            return False
        return sem.plateau_holds(self.wait, self.patience)


class _BestTracker:
    """``restore best M`` for a metric no plateau of the condition watches: delta 0, its direction."""

    def __init__(self, metric: str, direction: ast.Direction) -> None:
        self.metric = metric
        self.direction = direction
        self.best: float | None = None
        self.best_changed = False

    def update(self, sem: Semantics, logs: EpochLogs) -> None:
        self.best_changed = False
        value = logs.get(self.metric)
        if value is not None and sem.improves(value, self.best, 0.0, self.direction):
            self.best = value
            self.best_changed = True


class StopCondition(EpochRule):
    """Our ``stop when CONDITION[, restore best [M]][, ignore first K epochs]``."""

    def __init__(self, rule: ast.StopWhen, text: str) -> None:
        super().__init__(rule, text)
        self.condition = rule.condition
        self.start = rule.ignore_first
        self.atoms: list[ast.Atom] = list(ast.atoms(rule.condition))
        self.plateaus: dict[int, _PlateauAtom] = {
            i: _PlateauAtom(a) for i, a in enumerate(self.atoms) if isinstance(a, ast.Plateau)
        }
        self.best_source: _PlateauAtom | _BestTracker | None = None
        target = meaning.restore_target(rule)
        if target is not None:
            name, direction = target
            watching = [p for p in self.plateaus.values() if p.metric == name]
            self.best_source = watching[0] if watching else _BestTracker(name, direction)
        self.best_epoch: int | None = None
        # ``M averaged over N epochs``: each such atom's last N logged values, oldest first.
        self.windows: dict[int, list[float]] = {i: [] for i, a in enumerate(self.atoms) if a.metric.window > 1}

    def on_epoch_end(self, run: RunState, epoch: int, logs: EpochLogs) -> str | None:
        sem = run.sem
        if sem.ignores_epoch(epoch, self.start):
            return None
        results = [self._atom(sem, i, atom, self._read(sem, i, atom, logs)) for i, atom in enumerate(self.atoms)]
        if isinstance(self.best_source, _BestTracker):
            self.best_source.update(sem, logs)
        if self.best_source is not None and self.best_source.best_changed:
            self.best_epoch = run.weights
        if _combine(self.condition, iter(results)):
            self.stopped = True
            return f"{condition_text(self.condition)} held at epoch {epoch}"
        return None

    def _read(self, sem: Semantics, index: int, atom: ast.Atom, logs: EpochLogs) -> float | None:
        """What an atom reads this epoch: the logged value, or the mean of the last N logged ones
        (None while fewer than N have been logged, and on an epoch that logs none)."""
        value = logs.get(atom.metric.name)
        if index not in self.windows or value is None:
            return value
        window = self.windows[index]
        window.append(value)
        del window[: -atom.metric.window]
        return sem.window_mean(window, atom.metric.window)

    def _atom(self, sem: Semantics, index: int, atom: ast.Condition, value: float | None) -> bool:
        if index in self.plateaus:
            return self.plateaus[index].update(sem, value)
        assert isinstance(atom, ast.Threshold | ast.NotFinite)
        if value is None:
            return False
        if isinstance(atom, ast.Threshold):
            return sem.threshold_holds(value, atom.op, atom.value)
        return sem.not_finite(value, atom.nan_only)

    def restored_epoch(self, run: RunState, training_stopped: bool) -> int | None:
        if self.best_source is None:
            return None
        has_best = self.best_epoch is not None
        if run.sem.restore_at_end(has_best=has_best, stopped_by_rule=self.stopped, training_stopped=training_stopped):
            return self.best_epoch
        return None


def _combine(c: ast.Condition, results: Iterator[bool]) -> bool:
    """Fold the leaves' results (consumed in source order) through ``and``/``or``."""
    # fold walks every part (a list, no short-circuit), so every leaf's result is consumed.
    return ast.fold(c, lambda _: next(results), lambda g, parts: any(parts) if isinstance(g, ast.AnyOf) else all(parts))


class EpochBudget(EpochRule):
    """``stop after N epochs``."""

    def __init__(self, rule: ast.StopAfter, text: str) -> None:
        super().__init__(rule, text)
        self.epochs = int(rule.amount)

    def on_epoch_end(self, run: RunState, epoch: int, logs: EpochLogs) -> str | None:
        if run.sem.epoch_budget_reached(epoch, self.epochs):
            self.stopped = True
            return f"reached the budget of {self.epochs} epochs"
        return None


# --------------------------------------------------------------------------- checkpoints


class SaveBestCheckpoint(EpochRule):
    """``save best``: ModelCheckpoint(save_best_only=True, save_freq="epoch"), no min_delta."""

    def __init__(self, rule: ast.SaveBest, text: str, sem: Semantics) -> None:
        super().__init__(rule, text)
        self.metric = rule.metric.name
        self.direction = meaning.checkpoint_direction(rule)
        self.path = meaning.best_path(rule)
        # ``below X`` / ``above X`` is ModelCheckpoint's initial_value_threshold: the starting best.
        self.best = sem.checkpoint_initial_best(None if rule.threshold is None else rule.threshold.value)

    def on_epoch_end(self, run: RunState, epoch: int, logs: EpochLogs) -> str | None:
        sem = run.sem
        # Keras formats the path before deciding whether to save, so a bad placeholder fails
        # even in epochs that write nothing.
        path = sem.format_path(self.path, epoch, None, logs)
        value = logs.get(self.metric)
        if value is None:
            save = sem.save_best_when_missing()
        elif sem.monitor_improves(value, self.best, 0.0, self.direction):
            self.best = value
            save = True
        else:
            save = False
        if save:
            run.write(epoch, path)
        return None


class SaveEachEpoch(EpochRule):
    """``save every epoch`` / ``save last``: ModelCheckpoint(save_freq="epoch") writes every epoch."""

    def __init__(self, rule: ast.SaveEvery | ast.SaveLast, text: str, order: int = 0) -> None:
        super().__init__(rule, text)
        self.path = rule.path.value
        self.order = order
        self.keep = rule.keep if isinstance(rule, ast.SaveEvery) else None

    def on_epoch_end(self, run: RunState, epoch: int, logs: EpochLogs) -> str | None:
        run.write_retained(epoch, run.sem.format_path(self.path, epoch, None, logs), self.order, self.keep)
        return None


class TensorBoardLog(EpochRule):
    """``log to tensorboard``: keras.callbacks.TensorBoard decides nothing, but it raises on a value
    it cannot write (:meth:`Semantics.summary_converts`), with the logs as they reach it."""

    def on_epoch_end(self, run: RunState, epoch: int, logs: EpochLogs) -> str | None:
        run.sem.summary_converts(logs)
        return None


class SaveEveryEpochs(EpochRule):
    """Our ``save every N epochs`` (N > 1): after epoch e when ``(e + 1) % N == 0``."""

    def __init__(self, rule: ast.SaveEvery, text: str, order: int = 0) -> None:
        super().__init__(rule, text)
        self.path = rule.path.value
        self.every = rule.every
        self.order = order
        self.keep = rule.keep

    def on_epoch_end(self, run: RunState, epoch: int, logs: EpochLogs) -> str | None:
        if run.sem.every_epochs_due(epoch, self.every):
            run.write_retained(epoch, run.sem.format_path(self.path, epoch, None, logs), self.order, self.keep)
        return None


class SaveTopK(EpochRule):
    """Our ``save top K on M``: the folder always holds the files of the K best epochs so far."""

    def __init__(self, rule: ast.SaveTop, text: str) -> None:
        super().__init__(rule, text)
        self.metric = rule.metric.name
        self.direction = meaning.checkpoint_direction(rule)
        self.path = rule.path.value
        self.k = rule.k
        self.kept: list[tuple[int, float]] = []
        self.paths: list[str] = []  # the file of each kept epoch, parallel to ``kept``

    def on_epoch_end(self, run: RunState, epoch: int, logs: EpochLogs) -> str | None:
        sem = run.sem
        value = logs.get(self.metric)
        if value is None or math.isnan(value):
            return None
        worst = self.kept[sem.top_k_worst(self.kept, self.direction)][1] if self.kept else None
        if sem.top_k_admits(value, worst, len(self.kept), self.k, self.direction):
            path = sem.format_path(self.path, epoch, None, logs)
            run.write(epoch, path)
            self.kept.append((epoch, value))
            self.paths.append(path)
            if len(self.kept) > self.k:
                dropped = sem.top_k_worst(self.kept, self.direction)
                del self.kept[dropped]
                gone = self.paths.pop(dropped)
                if sem.top_k_deletes(gone, self.paths):
                    run.delete(gone)
        return None


# --------------------------------------------------------------------------- learning rate


class PlateauLR(EpochRule):
    """``multiply lr by F when M not improving [by D] for N``: keras ReduceLROnPlateau."""

    def __init__(self, rule: ast.ReduceLR, text: str) -> None:
        super().__init__(rule, text)
        self.metric = rule.when.metric.name
        self.direction = meaning.plateau_direction(rule.when)
        self.delta = rule.when.delta
        self.patience = rule.when.patience
        self.factor = rule.factor
        self.cooldown = rule.cooldown
        self.min_lr = rule.min_lr
        self.wait = 0
        self.best: float | None = None
        self.cooldown_counter = 0
        self.restore = rule.restore_best
        self.best_weights: int | None = None  # whose weights the restore keeps (RunState.weights)
        self.step_rule: StepScheduleLR | None = None  # a step schedule handing the rate over

    def on_epoch_end(self, run: RunState, epoch: int, logs: EpochLogs) -> str | None:
        sem = run.sem
        assert run.lr is not None
        # After a step schedule, optimizer.learning_rate reads the schedule: the next step's rate.
        before = self.step_rule.rate(run, run.iterations) if self.step_rule is not None else run.lr
        after = before
        logs["learning_rate"] = before  # written first, so the monitor may even read it
        value = logs.get(self.metric)
        if value is not None:
            counter_before = self.cooldown_counter
            if self.cooldown_counter > 0:
                self.cooldown_counter -= 1
                self.wait = 0
            if sem.monitor_improves(value, self.best, self.delta, self.direction):
                self.best = value
                self.wait = 0
                self.best_weights = run.weights
            elif sem.counts_toward_patience(counter_before, self.cooldown_counter):
                self.wait += 1
                due = sem.lr_reduce_due(self.wait, self.patience)
                cut = due and sem.lr_can_reduce(before, self.min_lr)
                if cut:
                    after = sem.reduced_lr(before, self.factor, self.min_lr)
                    if self.step_rule is not None:
                        self.step_rule.take_cut(run, run.iterations, after)
                    else:
                        run.lr = after
                    self.cooldown_counter = self.cooldown
                    self.wait = 0
                if self.restore and self.best_weights is not None and sem.rolls_back(cut, due):
                    run.weights = self.best_weights
                    run.rollbacks.append((epoch, self.best_weights))
        logs["learning_rate"] = sem.logged_lr(before, after)
        return None


class LogLearningRate(EpochRule):
    """``log lr``: writes what ``optimizer.learning_rate`` reads at the epoch end into the logs as
    ``learning_rate``: the rate the epoch trained with, or under a step-counted schedule (a
    LearningRateSchedule of ``optimizer.iterations``) the rate of the next step."""

    def __init__(self, rule: ast.LogLR, text: str) -> None:
        super().__init__(rule, text)
        self.step_rule: StepScheduleLR | None = None

    def on_epoch_end(self, run: RunState, epoch: int, logs: EpochLogs) -> str | None:
        assert run.lr is not None and run.lr0 is not None
        now = self.step_rule.rate(run, run.iterations) if self.step_rule is not None else run.lr
        logs["learning_rate"] = run.sem.rate_in_effect(run.lr0, now)
        return None


class ScheduleLR(EpochRule):
    """Warm-up / cosine / decay segments: keras LearningRateScheduler with our schedule object."""

    def __init__(self, rule: ast.Schedule, text: str) -> None:
        super().__init__(rule, text)
        self.schedule = rule

    def on_epoch_begin(self, run: RunState, epoch: int) -> None:
        assert run.lr is not None and run.lr0 is not None
        run.lr = run.sem.lr_round(run.sem.schedule_lr(self.schedule, epoch, run.lr0, run.lr))

    def on_epoch_end(self, run: RunState, epoch: int, logs: EpochLogs) -> str | None:
        assert run.lr is not None
        logs["learning_rate"] = run.lr
        return None


class StepScheduleLR(EpochRule):
    """A schedule counted in steps: a LearningRateSchedule of ``optimizer.iterations`` inside the
    train step. At epoch begin the optimizer reads the rate of the epoch's first step; at epoch
    end the rule logs the rate of the next step (what ``optimizer.learning_rate`` reads then).
    A finite one hands the rate over at its end: from then on a cut by ``multiply lr ... when``
    is the rate of every later step (:meth:`take_cut`)."""

    def __init__(self, rule: ast.Schedule, text: str) -> None:
        super().__init__(rule, text)
        self.schedule = rule
        self.handed: float | None = None  # the rate after the end, once a cut set it

    def _end(self, run: RunState) -> int | None:
        assert run.steps_per_epoch is not None and run.total_steps is not None
        return run.sem.step_schedule_end(self.schedule, run.steps_per_epoch, run.total_steps)

    def rate(self, run: RunState, step: int) -> float:
        assert run.lr0 is not None and run.steps_per_epoch is not None and run.total_steps is not None
        if self.handed is not None:  # only then is the end needed (rate() runs for every step)
            end = self._end(run)
            if end is not None and step >= end:
                return self.handed
        value = run.sem.step_schedule_lr(self.schedule, step, run.lr0, run.steps_per_epoch, run.total_steps)
        return run.sem.step_rates_f32(value)

    def take_cut(self, run: RunState, step: int, rate: float) -> None:
        """A cut by ``multiply lr ... when`` at an epoch end reached after ``step`` steps."""
        end = self._end(run)
        if end is not None and run.sem.cut_reaches_handover(step, end):
            self.handed = rate

    def on_epoch_begin(self, run: RunState, epoch: int) -> None:
        run.lr = self.rate(run, run.iterations)

    def on_epoch_end(self, run: RunState, epoch: int, logs: EpochLogs) -> str | None:
        run.lr = self.rate(run, run.iterations)
        logs["learning_rate"] = run.lr
        return None
