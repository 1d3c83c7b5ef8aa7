"""The run loop of the reference: ``fit`` replayed over a metric history, without Keras.

It follows Keras 3.15.1's TensorFlow ``fit`` loop: for each epoch, ``on_epoch_begin`` (schedules
set the lr), the training batches (``on_train_batch_end`` after each; a stop set there ends the
epoch early), then ``on_epoch_end`` with the epoch's logs for every rule in rule order, then the
loop ends if a rule set ``stop_training``; ``on_train_end`` restores best weights.

The batch phase is computed per epoch, not per batch: each batch-level rule says at which batch
of the epoch it would act (a bisection over clock readings, a scan for the first invalid loss,
``range`` arithmetic for step budgets and step checkpoints), so the cost is O(epochs) plus the
batch data actually given plus the saves produced.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from policy import ast
from policy.errors import PolicyError
from policy.logs import FitArgs
from policy.meaning import epoch_end_paths, held_by_minimum, minimum_of, step_paths, stop_form, watched_names
from policy.outcome import Outcome, Stop
from policy.printer import rule as rule_text
from policy.reference import rules as r
from policy.reference.backends import backend_name, default_backend
from policy.reference.inputs import RunInput, run_input
from policy.reference.semantics import KerasWouldRaise, Semantics, placeholder_names, semantics_for


@dataclass(frozen=True)
class _BatchStop:
    """A rule that may set ``stop_training`` after a training batch."""

    order: int
    text: str
    kind: Literal["nan", "fail", "steps", "time"]
    amount: float


@dataclass(frozen=True)
class _StepCheckpoint:
    """``save every N steps``: ModelCheckpoint(save_freq=N), written after training batches."""

    order: int
    path: str
    every: int
    fields: frozenset[str]
    keep: int | None = None
    seconds: float | None = None
    """``save every T min``: the training time between writes (``every`` is then unused)."""


@dataclass(frozen=True)
class _Plan:
    epoch_rules: tuple[r.EpochRule, ...]
    batch_stops: tuple[_BatchStop, ...]
    step_checkpoints: tuple[_StepCheckpoint, ...]
    uses_lr: bool
    minimum: ast.TrainAtLeast | None = None


def simulate(
    policy: str | ast.Policy,
    history: Any,
    *,
    initial_lr: float | None = None,
    steps_per_epoch: int | None = None,
    batch_losses: Sequence[Sequence[float | None]] | None = None,
    step_seconds: float | Sequence[Sequence[float]] | None = None,
    strict: bool = False,
    validation_freq: int = 1,
    steps_per_execution: int = 1,
    initial_epoch: int = 0,
    backend: str | None = None,
    semantics: Semantics | None = None,
) -> Outcome:
    """What ``policy`` does over one training run; see :mod:`policy.reference` for the inputs.

    ``backend`` is the Keras backend the run is on (``"tensorflow"``, ``"jax"``, ``"torch"``);
    by default the one Keras would pick (``KERAS_BACKEND``, else ``keras.json``), read without
    importing keras. ``semantics`` (a mutant, in the test suite) carries its own backend.

    ``strict=True`` models ``compile_policy(strict=True)``: a watched training metric or a
    checkpoint-path placeholder missing from the logs at the end of the first epoch, a watched
    ``val_*`` metric missing at the first epoch that validated, or a watched ``val_*`` metric in
    a run that never validated makes ``fit`` raise, so the simulation raises
    :class:`KerasWouldRaise` naming it. The default replays recorded histories leniently, as
    ``strict=False`` compiles (Keras's monitors warn and skip).

    ``validation_freq``, ``steps_per_execution`` and ``initial_epoch`` are the ``fit`` /
    ``compile`` arguments of the run (see :mod:`policy.reference`).
    """
    parsed = _parse(policy)
    if not isinstance(strict, bool):
        raise TypeError(f"simulate(strict=...) takes True or False; got {type(strict).__name__}")
    if semantics is not None and not isinstance(semantics, Semantics):
        raise TypeError(f"simulate(semantics=...) takes a Semantics object; got {type(semantics).__name__}")
    if backend is not None and not isinstance(backend, str):
        raise TypeError(f"simulate(backend=...) takes a backend's name; got {type(backend).__name__}")
    semantics = _semantics(backend, semantics)
    fit = FitArgs(
        initial_lr=initial_lr,
        steps_per_epoch=steps_per_epoch,
        batch_losses=batch_losses,
        step_seconds=step_seconds,
        validation_freq=validation_freq,
        steps_per_execution=steps_per_execution,
        initial_epoch=initial_epoch,
    )
    return simulate_checked(parsed, run_input(history, fit), strict=strict, semantics=semantics)


def simulate_checked(
    policy: ast.Policy, data: RunInput, *, strict: bool = False, semantics: Semantics | None = None
) -> Outcome:
    """:func:`simulate` for a policy already validated and a run already checked by ``run_input``.

    ``simulate`` is exactly ``simulate_checked(validated policy, run_input(...))``; replaying many
    policies over many recorded runs (:mod:`policy.replays`) checks each policy and each run once
    and calls this for every pair, so both paths run the same decisions. Without ``semantics``,
    those of Keras's default backend (as :func:`simulate` picks them).
    """
    sem = _semantics(None, semantics)
    plan = _plan(policy, sem)
    _check_inputs(plan, data)
    if data.steps_per_execution > 1 and not sem.facts.multi_step_execution:
        raise KerasWouldRaise.because(
            f"steps_per_execution={data.steps_per_execution} on the {sem.backend} backend: Keras's fit "
            "raises ValueError (it must be 1 there)"
        )
    if strict and data.epochs:
        _check_first_batch(policy, data, sem)
    try:
        outcome = _run(plan, data, sem)
    except KerasWouldRaise:
        if strict and data.epochs:
            _check_first_epoch(policy, data.logs[0])  # the earlier of the two errors, when it is one
        raise
    if strict and data.epochs and not (outcome.failed is not None and outcome.epochs_run == 1):
        # The strict check runs at the end of the first epoch, which a failure inside it never reaches.
        _check_first_epoch(policy, data.logs[0])
    if strict:
        completed = outcome.epochs_run - (outcome.failed is not None)
        _check_validation(policy, data.logs[:completed], finished=outcome.failed is None)
    return outcome


def _semantics(backend: str | None, semantics: Semantics | None) -> Semantics:
    """The semantics to simulate with: the given one (its backend must match ``backend`` if both
    are given), else the true semantics of ``backend`` or of Keras's default backend."""
    if semantics is None:
        return semantics_for(backend_name(backend) if backend is not None else default_backend())
    if backend is not None and backend_name(backend) != semantics.backend:
        raise PolicyError.plain(
            f"backend={backend!r} but the semantics given model {semantics.backend!r}",
            "pass one of them, or build the semantics for that backend",
        )
    return semantics


# The strict check below is the reference's own, written from docs/semantics.md, not a call into
# policy.strictness (which MetricCheck runs inside fit): the differential suite compares the two,
# so sharing the judgement would let a wrong one pass unseen. Only the facts of the language
# (which metrics a rule reads, which paths are formatted at an epoch end) come from policy.meaning.
def _watched(policy: ast.Policy) -> set[str]:
    """The metric names the strict check judges. ``learning_rate`` is exempt: no model logs it,
    the policy's lr rule writes it during the epoch-end dispatch (the validator makes every
    reader come after that rule)."""
    return set(watched_names(policy))


def _check_first_batch(policy: ast.Policy, data: RunInput, sem: Semantics) -> None:
    """The strict check at the first training batch end: a step checkpoint path's placeholders
    other than ``{epoch}`` and ``{batch}`` must be in the batch logs, which hold the running
    training metrics (the reference knows the loss) and never a validation metric."""
    fields = {n for _, path in step_paths(policy) for n in placeholder_names(path)} - {"epoch", "batch"}
    if not fields:
        return
    steps = data.steps[0] if data.steps is not None else 1
    first = min(sem.seen_batches(steps, data.steps_per_execution)[0], steps - 1)
    loss = data.batch_losses[0][first] if data.batch_losses is not None else data.logs[0].get("loss")
    known = {"loss"} if loss is not None else set()
    unknowable = sorted(n for n in fields if n != "loss" and not n.startswith("val_"))
    if unknowable:
        raise PolicyError.plain(
            f"a step checkpoint path uses {{{unknowable[0]}}}; the reference only knows the loss at batch level",
            "use {epoch}, {batch} or {loss} in step checkpoint paths",
        )
    missing = sorted(fields - known)
    if missing:
        raise KerasWouldRaise.because(
            f"{', '.join('{' + n + '}' for n in missing)} of a step checkpoint path not in the batch logs at the "
            "first training batch end; the strict check raises PolicyError",
            "use {epoch}, {batch} or a training metric in step checkpoint paths, or simulate with strict=False",
        )


def _check_first_epoch(policy: ast.Policy, first: Mapping[str, float]) -> None:
    """The strict check at the first epoch end: watched training metrics (names without ``val_``)
    and the placeholders of paths formatted at epoch ends (other than ``{epoch}``) are logged."""
    missing = sorted(n for n in _watched(policy) if not n.startswith("val_") and n not in first)
    missing += sorted(
        {f"{{{n}}}" for _, p in epoch_end_paths(policy) for n in placeholder_names(p) if n != "epoch" and n not in first}
    )
    if missing:
        raise KerasWouldRaise.because(
            f"{', '.join(missing)} not in the logs at the end of the first epoch "
            "(they have: " + (", ".join(sorted(first)) or "none") + "); the strict check raises PolicyError",
            "log the metric, fix its name, or simulate with strict=False",
        )


def _check_validation(policy: ast.Policy, run: Sequence[Mapping[str, float]], finished: bool = True) -> None:
    """The strict check for ``val_*`` names: at the first epoch run that holds any ``val_`` value,
    every watched ``val_*`` metric must be there; if no epoch run validated, fit had no
    validation data (raised at the last epoch's end or at train end, so only in a ``finished``
    run: a ``fail when`` rule that raised reaches neither)."""
    wanted = sorted(n for n in _watched(policy) if n.startswith("val_"))
    if not wanted:
        return
    validated = next((logs for logs in run if any(k.startswith("val_") for k in logs)), None)
    if validated is None:
        if not finished:
            return
        raise KerasWouldRaise.because(
            f"the policy watches {', '.join(wanted)}, but no epoch of the run logged a validation metric; "
            "the strict check raises PolicyError (fit has no validation data)",
            "give the history validation metrics, or simulate with strict=False",
        )
    missing = [n for n in wanted if n not in validated]
    if missing:
        raise KerasWouldRaise.because(
            f"{', '.join(missing)} not in the logs of the first epoch that validated "
            "(they have: " + ", ".join(sorted(validated)) + "); the strict check raises PolicyError",
            "log the metric, fix its name, or simulate with strict=False",
        )


def _parse(policy: str | ast.Policy) -> ast.Policy:
    from policy.accept import policy_argument

    return policy_argument(policy, "simulate")


def _plan(policy: ast.Policy, sem: Semantics) -> _Plan:
    epoch_rules: list[r.EpochRule] = []
    batch_stops: list[_BatchStop] = []
    checkpoints: list[_StepCheckpoint] = []
    uses_lr = False
    for order, rule in enumerate(policy.rules):
        text = rule_text(rule)
        if isinstance(rule, ast.FailWhen):
            # TerminateOnNaN(raise_error=True): the loss check of ``stop when loss is not finite``,
            # but fit raises where the other stops.
            batch_stops.append(_BatchStop(order, text, "fail" if sem.fail_raises() else "nan", 0))
        elif isinstance(rule, ast.StopWhen):
            form = stop_form(rule)
            if form == "TerminateOnNaN":
                batch_stops.append(_BatchStop(order, text, "nan", 0))
            elif form == "EarlyStopping":
                epoch_rules.append(r.EarlyStop(rule, text, sem))
            else:
                epoch_rules.append(r.StopCondition(rule, text))
        elif isinstance(rule, ast.StopAfter):
            if rule.unit == "epochs":
                epoch_rules.append(r.EpochBudget(rule, text))
            elif rule.unit == "steps":
                batch_stops.append(_BatchStop(order, text, "steps", rule.amount))
            else:
                batch_stops.append(_BatchStop(order, text, "time", sem.budget_seconds(rule.amount, rule.unit)))
        elif isinstance(rule, ast.SaveBest):
            epoch_rules.append(r.SaveBestCheckpoint(rule, text, sem))
        elif isinstance(rule, ast.SaveTop):
            epoch_rules.append(r.SaveTopK(rule, text))
        elif isinstance(rule, ast.SaveEvery) and rule.unit == "steps":
            fields = frozenset(placeholder_names(rule.path.value)) - {"epoch", "batch"}
            checkpoints.append(_StepCheckpoint(order, rule.path.value, rule.every, fields, rule.keep))
        elif isinstance(rule, ast.SaveTimed):
            fields = frozenset(placeholder_names(rule.path.value)) - {"epoch", "batch"}
            seconds = sem.budget_seconds(rule.amount, rule.unit)
            checkpoints.append(_StepCheckpoint(order, rule.path.value, 0, fields, None, seconds))
        elif isinstance(rule, ast.SaveEvery) and rule.every > 1:
            epoch_rules.append(r.SaveEveryEpochs(rule, text, order))
        elif isinstance(rule, ast.SaveEvery | ast.SaveLast):
            epoch_rules.append(r.SaveEachEpoch(rule, text, order))
        elif isinstance(rule, ast.ReduceLR):
            uses_lr = True
            epoch_rules.append(r.PlateauLR(rule, text))
        elif isinstance(rule, ast.Schedule):
            uses_lr = True
            stepped = ast.counts_steps(rule)
            epoch_rules.append(r.StepScheduleLR(rule, text) if stepped else r.ScheduleLR(rule, text))
        elif isinstance(rule, ast.LogTensorBoard):
            epoch_rules.append(r.TensorBoardLog(rule, text))
        elif isinstance(rule, ast.LogLR):
            uses_lr = True
            # Placed before every other rule's callback (docs/semantics.md), wherever it is written.
            epoch_rules.insert(0 if sem.lr_logger_first() else len(epoch_rules), r.LogLearningRate(rule, text))
        # CSV logging and backup rules decide nothing in one uninterrupted run (their callbacks
        # never touch the logs dict or stop_training); backup's folder is not a save. Neither
        # does `train at least` on its own: it holds back the stops of the rules marked here.
        if epoch_rules and epoch_rules[-1].rule is rule:
            epoch_rules[-1].held = held_by_minimum(rule) and minimum_of(policy) is not None
    step_rule = next((s for s in epoch_rules if isinstance(s, r.StepScheduleLR)), None)
    for reader in epoch_rules:
        # Both read optimizer.learning_rate, which a step schedule answers (the next step's rate).
        if isinstance(reader, r.LogLearningRate | r.PlateauLR):
            reader.step_rule = step_rule
    return _Plan(tuple(epoch_rules), tuple(batch_stops), tuple(checkpoints), uses_lr, minimum_of(policy))


def _check_inputs(plan: _Plan, data: RunInput) -> None:
    """Refuse to guess: each rule must have the inputs it needs to decide."""
    if plan.uses_lr and data.initial_lr is None:
        raise PolicyError.plain(
            "the policy sets the learning rate, so the simulation needs the starting one",
            "pass initial_lr (the optimizer's learning rate at train begin)",
        )
    kinds = {stop.kind for stop in plan.batch_stops}
    stepped = any(isinstance(rule, r.StepScheduleLR) for rule in plan.epoch_rules)
    if data.steps is None and ({"steps", "time"} & kinds or plan.step_checkpoints or stepped):
        raise PolicyError.plain(
            "the policy counts training steps, so the simulation needs the number of batches per epoch",
            "pass steps_per_epoch (or batch_losses)",
        )
    if plan.minimum is not None and plan.minimum.unit == "steps" and data.steps is None:
        raise PolicyError.plain(
            "the policy has a minimum in training steps, so the simulation needs the number of batches per epoch",
            "pass steps_per_epoch (or batch_losses)",
        )
    if any(ckpt.seconds is not None for ckpt in plan.step_checkpoints) and data.step_seconds is None:
        raise PolicyError.plain(
            "the policy saves by training time, so the simulation needs how long each batch takes",
            "pass step_seconds",
        )
    if "time" in kinds and data.step_seconds is None:
        raise PolicyError.plain(
            "the policy has a time budget, so the simulation needs how long each batch takes",
            "pass step_seconds",
        )
    if {"nan", "fail"} & kinds and data.batch_losses is None and (len(plan.batch_stops) > 1 or plan.step_checkpoints):
        # Without batch losses we know the epoch TerminateOnNaN stops in (the epoch's running loss
        # is non-finite exactly when some batch's was), but not the batch, which the other
        # batch-level rules would need.
        raise PolicyError.plain(
            "'stop/fail when loss is not finite' acts after the first batch with an invalid loss; with other "
            "step-level rules the simulation needs that batch",
            "pass batch_losses",
        )


@dataclass
class _Clock:
    """What the batch phase carries across epochs."""

    steps_before: int = 0
    """Training batches run since train begin, by the batch indices Keras passed (clamped to the epoch)."""
    elapsed: float = 0.0
    since_save: dict[int, int] = field(default_factory=dict)
    """Per step checkpoint (by rule order), ModelCheckpoint's ``_batches_seen_since_last_saving``."""
    last_save: dict[int, float] = field(default_factory=dict)
    """Per time-based save (by rule order), the elapsed time of its last write (0: train begin)."""


def _run(plan: _Plan, data: RunInput, sem: Semantics) -> Outcome:
    lr0 = sem.lr_round(data.initial_lr) if data.initial_lr is not None else None
    run = r.RunState(sem=sem, lr0=lr0, lr=lr0)
    if data.steps:  # (an empty history has no epoch to take them from)
        # Keras's params["steps"]: the steps of one epoch, the same for every epoch of a fit.
        run.steps_per_epoch = data.steps[0]
        run.total_steps = (data.initial_epoch + data.epochs) * data.steps[0]
    step_rule = next((rule for rule in plan.epoch_rules if isinstance(rule, r.StepScheduleLR)), None)
    learning_rates: list[float] = []
    step_learning_rates: list[float] = []
    clock = _Clock()
    stop: Stop | None = None
    failed: Stop | None = None
    epochs_run = 0
    batch_level = bool(plan.batch_stops or plan.step_checkpoints)
    # Only schedules act at epoch begin; skipping the others' empty hook changes nothing.
    begin_rules = [rule for rule in plan.epoch_rules if type(rule).on_epoch_begin is not r.EpochRule.on_epoch_begin]
    for index in range(data.epochs):
        epoch = data.initial_epoch + index  # absolute, as Keras passes it to every hook
        epochs_run = index + 1
        for rule in begin_rules:
            rule.on_epoch_begin(run, epoch)
        if run.lr is not None:
            learning_rates.append(run.lr)
        before = clock.steps_before
        if batch_level:
            stop, failed = _batch_phase(plan, data, sem, run, clock, epoch, index)
        elif data.steps is not None:
            clock.steps_before += data.steps[index]
        if data.steps is not None and run.lr is not None:
            for step in range(run.iterations, run.iterations + clock.steps_before - before):
                step_learning_rates.append(step_rule.rate(run, step) if step_rule is not None else run.lr)
        run.iterations += clock.steps_before - before
        if failed is not None:
            break  # fit raised inside the batch hook: no epoch end, no train end
        logs = dict(data.logs[index])  # one dict, handed to every rule in order
        run.weights = epoch  # the weights this epoch trained (until a rule rolls them back)
        allowed = plan.minimum is None or sem.minimum_reached(
            epoch, clock.steps_before, plan.minimum.amount, plan.minimum.unit
        )
        for rule in plan.epoch_rules:
            if rule.held and not allowed:
                # Before the minimum a held rule still sees the epoch (its state moves on), but
                # whatever it decides to stop is undone, its own record of it included.
                if sem.evaluates_before_minimum():
                    stopped = rule.stopped
                    rule.on_epoch_end(run, epoch, logs)
                    rule.stopped = stopped
                continue
            reason = rule.on_epoch_end(run, epoch, logs)
            if reason is not None and stop is None:
                stop = Stop(rule.text, epoch, reason)
        if stop is not None:
            break
    restored: int | None = None
    for rule in plan.epoch_rules if failed is None else ():  # on_train_end in order: the last restore wins
        found = rule.restored_epoch(run, stop is not None)
        if found is not None:
            restored = found
    return Outcome(
        epochs_run=epochs_run,
        learning_rates=tuple(learning_rates),
        step_learning_rates=tuple(step_learning_rates),
        saves=tuple(run.saves),
        files=tuple(sorted(run.files)),
        restored_epoch=restored,
        stop=stop,
        failed=failed,
        rollbacks=tuple(run.rollbacks),
    )


def _batch_phase(
    plan: _Plan, data: RunInput, sem: Semantics, run: r.RunState, clock: _Clock, epoch: int, index: int
) -> tuple[Stop | None, Stop | None]:
    """The training batches of one epoch: which batch-level stop fires first, whether a ``fail``
    rule raises, which step saves run. Returns ``(stop, failure)``.

    With ``steps_per_execution`` k, callbacks see only the batch indices Keras passes (one per
    k batches, :meth:`Semantics.seen_batches`); every batch-level rule acts at the first of
    those at or after the batch where its condition is met. The epoch ends after the first such
    batch; in it the rules run in list order, so a stop before a failure (in rule order) is
    recorded, and nothing after the failing rule runs (nor any later hook).
    """
    steps = data.steps[index] if data.steps is not None else 1
    seen = sem.seen_batches(steps, data.steps_per_execution)
    readings: list[float] | None = None
    acting: list[tuple[int, int, _BatchStop, str]] = []
    for bs in plan.batch_stops:
        batch: int | None
        if bs.kind in ("nan", "fail"):
            batch, reason = _invalid_loss(data, sem, index, steps, seen)
        elif bs.kind == "steps":
            batch = _step_budget(sem, clock.steps_before, seen, steps, int(bs.amount))
            reason = f"reached the budget of {int(bs.amount)} training steps"
        else:
            assert data.step_seconds is not None
            if readings is None:
                readings = sem.clock_readings(clock.elapsed, data.step_seconds[index])
            batch = sem.first_seen(seen, sem.time_budget_batch(readings, bs.amount))
            reason = (
                f"{readings[min(batch, steps - 1)]:g} s elapsed after batch {batch}, budget {bs.amount:g} s"
                if batch is not None else ""
            )
        if batch is not None:
            acting.append((batch, bs.order, bs, reason))
    acting.sort(key=lambda a: a[:2])
    last = acting[0][0] if acting else seen[-1]
    # At the batch where the epoch ends, the rules act in list order until one raises.
    at_last = [a for a in acting if a[0] == last]
    failing = next((a for a in at_last if a[2].kind == "fail"), None)
    first = next((a for a in at_last if a[2].kind != "fail" and (failing is None or a[1] < failing[1])), None)

    writes: list[tuple[int, int, str]] = []
    for ckpt in plan.step_checkpoints:
        since = clock.since_save.get(ckpt.order, 0)
        if ckpt.seconds is not None:
            assert data.step_seconds is not None
            if readings is None:
                readings = sem.clock_readings(clock.elapsed, data.step_seconds[index])
            timed: list[int] = []
            for b in seen:
                if b > last:
                    break
                now = readings[min(b, steps - 1)]
                if sem.timed_save_due(now - clock.last_save.get(ckpt.order, 0.0), ckpt.seconds):
                    clock.last_save[ckpt.order] = now
                    timed.append(b)
            batches: Sequence[int] = timed
        elif data.steps_per_execution == 1:
            # One call per batch: the sum since the last save is the batch count modulo N.
            batches = [b for b in sem.step_save_batches(since, steps, ckpt.every) if b <= last]
            clock.since_save[ckpt.order] = (since + last + 1) % ckpt.every
        else:
            batches, clock.since_save[ckpt.order] = sem.step_save_seen(since, seen, last, ckpt.every)
        for batch in batches:
            if failing is not None and batch == last and ckpt.order > failing[1]:
                continue  # after the rule that raised: never reached
            logs = _batch_logs(ckpt, data, index, min(batch, steps - 1))
            writes.append((batch, ckpt.order, sem.format_path(ckpt.path, epoch, batch, logs)))
    if len(plan.step_checkpoints) > 1:
        writes.sort(key=lambda w: (w[0], w[1]))
    keeps = {ckpt.order: ckpt.keep for ckpt in plan.step_checkpoints}
    for _, order, path in writes:
        run.write_retained(epoch, path, order, keeps[order])

    ran = sem.steps_counted(seen, seen.index(last), steps)
    clock.steps_before += ran
    if readings is not None:
        clock.elapsed = readings[ran - 1]
    stop = None if first is None else Stop(first[2].text, epoch, first[3])
    failure = None if failing is None else Stop(failing[2].text, epoch, failing[3])
    return stop, failure


def _step_budget(sem: Semantics, steps_before: int, seen: range, steps: int, budget: int) -> int | None:
    """``stop after N steps``: the first batch index a callback sees after which the count reaches N."""
    target = sem.step_budget_batch(steps_before, steps, budget)
    if target is None:
        return None
    # The count of this epoch's batches must reach target + 1; counts grow with each call.
    position = bisect.bisect_left(range(len(seen)), target + 1, key=lambda p: sem.steps_counted(seen, p, steps))
    return seen[position] if position < len(seen) else None


def _invalid_loss(data: RunInput, sem: Semantics, index: int, steps: int, seen: Sequence[int]) -> tuple[int | None, str]:
    if data.batch_losses is not None:
        losses = data.batch_losses[index]
        if data.steps_per_execution == 1:
            batch = sem.invalid_loss_batch(losses)
        else:  # TerminateOnNaN sees the running loss only after each chunk's last batch
            found = sem.invalid_loss_batch([losses[min(b, steps - 1)] for b in seen])
            batch = None if found is None else seen[found]
        if batch is None:
            return None, ""
        return batch, f"invalid loss {losses[min(batch, steps - 1)]} after batch {batch}"
    # No batch data: the epoch's loss is the running average after its last batch, which is
    # non-finite exactly when some batch's was (a NaN or inf stays in a running mean).
    loss = data.logs[index].get("loss")
    if sem.invalid_loss_batch([loss]) is None:
        return None, ""
    return seen[-1], f"invalid loss {loss} in epoch {index + data.initial_epoch}"


def _batch_logs(ckpt: _StepCheckpoint, data: RunInput, index: int, batch: int) -> dict[str, float]:
    """The batch logs a step checkpoint formats its path with, as far as the reference knows them.

    Batch logs hold the running training metrics only; the reference knows the loss (from
    ``batch_losses``). A ``val_`` placeholder is a real Keras KeyError; any other training metric
    is unknowable here.
    """
    if not ckpt.fields:
        return {}
    unknown = sorted(f for f in ckpt.fields if f != "loss" and not f.startswith("val_"))
    if unknown:
        raise PolicyError.plain(
            f"the step checkpoint path {ckpt.path!r} uses {{{unknown[0]}}}; the reference only knows the "
            "loss at batch level",
            "use {epoch}, {batch} or {loss} in step checkpoint paths",
        )
    if "loss" not in ckpt.fields:
        return {}
    if data.batch_losses is None:
        raise PolicyError.plain(
            f"the step checkpoint path {ckpt.path!r} uses {{loss}}, so the simulation needs the batch losses",
            "pass batch_losses",
        )
    loss = data.batch_losses[index][batch]
    return {} if loss is None else {"loss": loss}


__all__ = ["KerasWouldRaise", "simulate", "simulate_checked"]
