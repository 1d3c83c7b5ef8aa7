"""Replay a policy, or several variants of one, over many recorded runs: what would it have saved and lost?

For each (variant, run) pair the reference simulator decides exactly as :func:`policy.simulate`
does (each policy is checked once, each run's logs once, then
:func:`policy.reference.simulate.simulate_checked` runs the same decisions for every pair). What
is reported per run: the epochs the policy would have run out of those recorded, the stop epoch
and rule, and the *objective* (a metric, by default the first one the policy watches) as its
best value within the epochs run against its best over the whole recorded run. The difference,
always >= 0 and in the metric's own units, is what the stop *lost*; a run is *hurt* when it lost
more than the tolerance (by default 1% of the run's best value).

A run the policy cannot use (a watched metric never logged; when ``strict``, one missing where
``compile_policy(strict=True)`` checks it: a training metric at the first epoch end, a ``val_``
metric at the first epoch that validated; an lr rule with no starting lr) is *skipped* with the
reason; a run that cannot be read is *failed*. Neither stops the others.

The recommended variant: the one with the largest share of epochs saved among those that hurt
no run; ties go to the smaller worst loss, then to template order. When every variant hurts some
run: the fewest runs hurt, then the smallest worst loss, then the most epochs saved. "Worst loss"
is measured as the tolerance is (a share of each run's best for a percentage, else an amount).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from policy import ast
from policy.errors import PolicyError, closest
from policy.history import history_from_data
from policy.logs import FitArgs
from policy.meaning import direction_watched, watched_names
from policy.metrics import name_direction
from policy.outcome import Outcome, Stop
from policy.runs import RecordedRun, find_runs

Status = Literal["replayed", "skipped", "failed"]

RECOMMENDATION_RULE = (
    "the most epochs saved (as a share of those recorded) with no run losing more than the tolerance; "
    "ties: the smaller worst loss, then the earlier variant"
)
FALLBACK_RULE = (
    "every variant hurts some run, so: the fewest runs hurt, then the smallest worst loss, then the most epochs saved"
)


@dataclass(frozen=True)
class Tolerance:
    """How much worse a run's best objective may get before the run counts as hurt."""

    amount: float
    relative: bool  # a fraction of the run's full-run best (|best|), or an absolute amount

    @classmethod
    def parse(cls, value: str | float | Tolerance) -> Tolerance:
        """``"1%"`` (relative), ``0.01`` or ``"0.01"`` (absolute, in the metric's units)."""
        if isinstance(value, Tolerance):
            return value
        text = str(value).strip()
        relative = text.endswith("%")
        try:
            amount = float(text[:-1] if relative else text)
        except ValueError:
            raise PolicyError.plain(f"a tolerance is a number or a percentage, got {value!r}",
                                    "for example 1% or 0.005") from None
        if not (math.isfinite(amount) and amount >= 0):
            raise PolicyError.plain(f"a tolerance must be a finite number >= 0, got {value!r}")
        return cls(amount / 100 if relative else amount, relative)

    def limit(self, best: float) -> float:
        """The largest loss that does not hurt a run whose full-run best is ``best``."""
        return self.amount * abs(best) if self.relative else self.amount

    def __str__(self) -> str:
        return f"{self.amount * 100:g}%" if self.relative else f"{self.amount:g}"


DEFAULT_TOLERANCE = Tolerance(0.01, relative=True)


@dataclass(frozen=True)
class RunReplay:
    """One recorded run under one variant."""

    run: str
    status: Status
    epochs_recorded: int = 0
    epochs_run: int = 0
    stop: Stop | None = None
    best_run: float | None = None  # the objective's best within the epochs run
    best_recorded: float | None = None  # ... and over the whole recorded run
    lost: float = 0.0  # how much worse best_run is than best_recorded (>= 0; inf: no value within the run)
    hurt: bool = False
    reason: str = ""  # why skipped or failed
    notes: tuple[str, ...] = ()
    outcome: Outcome | None = field(default=None, compare=False, repr=False)

    @property
    def epochs_saved(self) -> int:
        return self.epochs_recorded - self.epochs_run if self.status == "replayed" else 0

    @property
    def lost_fraction(self) -> float:
        """``lost`` as a fraction of the run's full-run best (what a relative tolerance compares)."""
        if not self.lost:
            return 0.0
        return self.lost / abs(self.best_recorded) if self.best_recorded else math.inf


@dataclass(frozen=True)
class VariantReplay:
    """One variant over every run, with its totals."""

    label: str
    policy: str
    runs: tuple[RunReplay, ...]

    @property
    def replayed(self) -> tuple[RunReplay, ...]:
        return tuple(r for r in self.runs if r.status == "replayed")

    @property
    def skipped(self) -> tuple[RunReplay, ...]:
        return tuple(r for r in self.runs if r.status == "skipped")

    @property
    def failed(self) -> tuple[RunReplay, ...]:
        return tuple(r for r in self.runs if r.status == "failed")

    @property
    def epochs_recorded(self) -> int:
        return sum(r.epochs_recorded for r in self.replayed)

    @property
    def epochs_run(self) -> int:
        return sum(r.epochs_run for r in self.replayed)

    @property
    def epochs_saved(self) -> int:
        return self.epochs_recorded - self.epochs_run

    @property
    def saved_fraction(self) -> float:
        """Epochs saved over epochs recorded, among the runs replayed (0 when none was)."""
        return self.epochs_saved / self.epochs_recorded if self.epochs_recorded else 0.0

    @property
    def mean_lost(self) -> float:
        return _mean([r.lost for r in self.replayed])

    @property
    def worst_lost(self) -> float:
        return max((r.lost for r in self.replayed), default=0.0)

    @property
    def mean_lost_fraction(self) -> float:
        return _mean([r.lost_fraction for r in self.replayed])

    @property
    def worst_lost_fraction(self) -> float:
        return max((r.lost_fraction for r in self.replayed), default=0.0)

    def worst(self, relative: bool) -> float:
        """The worst loss as a tolerance of that kind measures it: a share of the best, or an amount."""
        return self.worst_lost_fraction if relative else self.worst_lost

    def mean(self, relative: bool) -> float:
        return self.mean_lost_fraction if relative else self.mean_lost

    @property
    def runs_hurt(self) -> tuple[RunReplay, ...]:
        return tuple(r for r in self.replayed if r.hurt)


_SINGLE = ("runs", "replayed", "skipped", "failed", "epochs_recorded", "epochs_run", "epochs_saved",
           "saved_fraction", "mean_lost", "worst_lost", "mean_lost_fraction", "worst_lost_fraction", "runs_hurt")


@dataclass(frozen=True)
class Report:
    """What :func:`replay` found: one :class:`VariantReplay` per variant, and which to pick.

    With a single variant its figures are also attributes of the report itself
    (``report.epochs_saved``, ``report.runs``, ...).
    """

    variants: tuple[VariantReplay, ...]
    objective: str
    direction: ast.Direction
    tolerance: Tolerance
    recommended: VariantReplay | None
    rule: str  # the recommendation rule that chose it

    def __getattr__(self, name: str) -> Any:
        if name in _SINGLE:
            if len(self.variants) != 1:
                raise AttributeError(
                    f"this report has {len(self.variants)} variants: read report.variants[i].{name} "
                    f"or report.recommended.{name}"
                )
            return getattr(self.variants[0], name)
        raise AttributeError(name)

    def to_rows(self) -> list[dict[str, Any]]:
        """One dict per (variant, run), ready for ``pandas.DataFrame(report.to_rows())``."""
        rows = []
        for v in self.variants:
            for r in v.runs:
                rows.append({
                    "variant": v.label,
                    "policy": v.policy,
                    "run": r.run,
                    "status": r.status,
                    "epochs_recorded": r.epochs_recorded,
                    "epochs_run": r.epochs_run,
                    "epochs_saved": r.epochs_saved,
                    "stop_epoch": r.stop.epoch if r.stop else None,
                    "stop_rule": r.stop.rule if r.stop else None,
                    "objective": self.objective,
                    "best_run": r.best_run,
                    "best_recorded": r.best_recorded,
                    "lost": r.lost if r.status == "replayed" else None,
                    "lost_fraction": r.lost_fraction if r.status == "replayed" else None,
                    "hurt": r.hurt,
                    "reason": r.reason,
                })
        return rows

    def summary_rows(self) -> list[dict[str, Any]]:
        """One dict per variant: the totals the ``tune`` table shows."""
        return [{
            "variant": v.label,
            "policy": v.policy,
            "recommended": v is self.recommended,
            "runs_replayed": len(v.replayed),
            "runs_skipped": len(v.skipped),
            "runs_failed": len(v.failed),
            "epochs_recorded": v.epochs_recorded,
            "epochs_saved": v.epochs_saved,
            "saved_fraction": v.saved_fraction,
            "mean_lost": v.mean_lost,
            "worst_lost": v.worst_lost,
            "mean_lost_fraction": v.mean_lost_fraction,
            "worst_lost_fraction": v.worst_lost_fraction,
            "runs_hurt": len(v.runs_hurt),
        } for v in self.variants]


# --------------------------------------------------------------------------- the replay


@dataclass(frozen=True)
class _Prepared:
    """A run checked once for every variant: its logs as the reference takes them, and the objective's running best."""

    run: RecordedRun
    data: Any  # policy.reference.inputs.RunInput, or None when the run cannot be used at all
    logged: Mapping[str, int]  # metric -> in how many epochs it is logged
    running_best: tuple[float | None, ...]  # best objective value over epochs 0..i
    error: str = ""


def replay(
    policy_or_variants: str | ast.Policy | Sequence[str | ast.Policy],
    histories: Any,
    *,
    objective: str | None = None,
    tolerance: str | float | Tolerance = DEFAULT_TOLERANCE,
    strict: bool = True,
    initial_lr: float | None = None,
    steps_per_epoch: int | None = None,
) -> Report:
    """Replay each variant over each recorded run with the reference's exact decisions.

    - ``policy_or_variants``: policy text (braces outside quotes give variants:
      ``"stop when val_loss not improving for {2,3,5,8}"``), a parsed :class:`~policy.ast.Policy`,
      or a list of either.
    - ``histories``: paths (files, folders, glob patterns), in-memory histories
      (``History.history`` dicts, ``History`` objects, lists of per-epoch dicts), a list mixing
      them, or a dict ``{name: history}``.
    - ``objective``: the metric whose loss is measured (default: the first one the first variant
      watches); its direction comes from the policy, else from its name (``"val_f1 max"`` says it).
    - ``tolerance``: ``"1%"`` of each run's best (the default) or an absolute amount.
    - ``strict``: a watched metric missing where ``compile_policy(strict=True)`` checks it (a
      training metric at the first epoch end, a ``val_`` metric at the first epoch that
      validated) skips the run, as that check would stop the fit; ``False`` replays as Keras does
      with ``strict=False`` (warn and skip the epoch).
    - ``initial_lr`` / ``steps_per_epoch``: as for :func:`policy.simulate`; by default the
      starting lr is the run's logged ``learning_rate`` in epoch 0, if it has one.
    """
    variants = _variants(policy_or_variants)
    runs = _recorded(histories)
    objective_name, direction = _objective(objective, variants, runs)
    tol = Tolerance.parse(tolerance)
    prepared = [_prepare(run, objective_name, direction, initial_lr, steps_per_epoch) for run in runs]
    results = tuple(
        VariantReplay(label, text, tuple(_replay_one(parsed, p, objective_name, tol, strict) for p in prepared))
        for label, text, parsed in variants
    )
    chosen, rule = recommend(results, relative=tol.relative)
    return Report(results, objective_name, direction, tol, chosen, rule)


def recommend(variants: Sequence[VariantReplay], relative: bool = True) -> tuple[VariantReplay | None, str]:
    """The recommended variant and the rule that chose it (see the module docstring).

    "Worst loss" is measured as the tolerance is: a share of each run's best when it is a
    percentage (``relative``), an amount in the metric's units otherwise.
    """
    candidates = [(i, v) for i, v in enumerate(variants) if v.replayed]
    if not candidates:
        return None, "no run could be replayed"
    safe = [(i, v) for i, v in candidates if not v.runs_hurt]
    if safe:
        best = max(safe, key=lambda iv: (iv[1].saved_fraction, -iv[1].worst(relative), -iv[0]))
        return best[1], RECOMMENDATION_RULE
    best = min(candidates, key=lambda iv: (len(iv[1].runs_hurt), iv[1].worst(relative), -iv[1].saved_fraction, iv[0]))
    return best[1], FALLBACK_RULE


def _variants(given: Any) -> list[tuple[str, str, ast.Policy]]:
    from policy.accept import policy_argument
    from policy.printer import format_policy
    from policy.variants import parse_variants

    if not isinstance(given, str | ast.Policy) and (
        isinstance(given, bytes | Mapping) or not isinstance(given, Iterable)
    ):
        raise TypeError(
            f"replay() takes policy text (a str), a Policy, or a list of them; got {type(given).__name__}"
        )
    items = [given] if isinstance(given, str | ast.Policy) else list(given)
    if not items:
        raise PolicyError.plain("no policy to replay")
    out: list[tuple[str, str, ast.Policy]] = []
    for item in items:
        if isinstance(item, str):
            for variant, parsed in parse_variants(item):
                label = variant.label if len(items) == 1 else " ".join(variant.text.split())
                out.append((label, format_policy(parsed).replace("\n", "; "), parsed))
        else:
            parsed = policy_argument(item, "replay")
            text = format_policy(parsed).replace("\n", "; ")
            out.append((text, text, parsed))
    return out


def _recorded(histories: Any) -> list[RecordedRun]:
    """Every run ``histories`` names or holds, read (errors kept per run)."""
    if isinstance(histories, str | Path):
        return find_runs([histories])
    if _is_one_history(histories):
        return [_in_memory("run 0", histories)]
    if not isinstance(histories, Mapping | Iterable) or isinstance(histories, bytes):
        raise TypeError(
            "replay() takes recorded runs: a path, a History.history dict or History, or a list or dict of "
            f"them; got {type(histories).__name__}"
        )
    named = list(histories.items()) if isinstance(histories, Mapping) else [(None, h) for h in histories]
    out: list[RecordedRun] = []
    seen: set[Path] = set()  # a file named by a folder and by a glob is one run
    for i, (name, item) in enumerate(named):
        if isinstance(item, RecordedRun):
            out.append(item)
        elif isinstance(item, str | Path):
            found = [r for r in find_runs([item]) if Path(r.name).resolve() not in seen]
            seen.update(Path(r.name).resolve() for r in found)
            out += found if name is None else [RecordedRun(str(name), r.history, r.error, r.notes) for r in found]
        else:
            out.append(_in_memory(str(name) if name is not None else f"run {i}", item))
    if not out:
        raise PolicyError.plain("no recorded runs given")
    return out


def _is_one_history(value: Any) -> bool:
    """A single ``History.history`` dict or ``History`` object (rather than a collection of runs)."""
    if isinstance(getattr(value, "history", None), Mapping):
        return True
    if isinstance(value, Mapping):
        return bool(value) and all(
            isinstance(v, Sequence) and not isinstance(v, str) and all(x is None or isinstance(x, int | float) for x in v)
            for v in value.values()
        )
    return False


def _in_memory(name: str, item: Any) -> RecordedRun:
    from policy.history import HistoryError

    inner = getattr(item, "history", None)
    data = inner if isinstance(inner, Mapping) else item
    if isinstance(data, list) and data and all(type(row) is dict for row in data):
        # Per-epoch dicts (what reading a CSV gives) are checked, value by value, by the
        # reference's own input check when the run is prepared: no second pass here.
        return RecordedRun(name, data)
    try:
        return RecordedRun(name, history_from_data(data))
    except HistoryError as exc:
        return RecordedRun(name, None, exc.message)


_OBJECTIVE = re.compile(r"^\s*(?P<name>[A-Za-z_][\w.\-/]*)(?:\s+(?P<dir>min|max))?\s*$")


def _objective(
    given: str | None, variants: Sequence[tuple[str, str, ast.Policy]], runs: Sequence[RecordedRun]
) -> tuple[str, ast.Direction]:
    if given is None:
        watched = watched_names(variants[0][2])
        if watched:
            name = watched[0]
        else:  # a policy that watches nothing (budgets, schedules): judge it by the validation loss
            logged = {k for run in runs if run.history for logs in run.history for k in logs}
            name = "val_loss" if "val_loss" in logged or not logged else "loss"
        explicit: ast.Direction | None = None
    else:
        match = _OBJECTIVE.match(given)
        if match is None:
            raise PolicyError.plain(f"the objective must be a metric name, optionally followed by min or max; got {given!r}")
        name = match["name"]
        explicit = match["dir"]  # type: ignore[assignment]
    direction = explicit or direction_watched(variants[0][2], name) or name_direction(name)
    if direction is None:
        raise PolicyError.plain(f"cannot tell whether the objective {name!r} should go up or down",
                                f"say it: '{name} min' or '{name} max'")
    return name, direction


def _prepare(run: RecordedRun, objective: str, direction: ast.Direction, initial_lr: float | None,
             steps_per_epoch: int | None) -> _Prepared:
    from policy.reference.inputs import run_input

    if run.history is None:
        return _Prepared(run, None, {}, (), run.error or "unreadable")
    lr = initial_lr
    if lr is None and run.history and "learning_rate" in run.history[0]:
        # Keras logs the learning rate in effect during the epoch: epoch 0's is the starting one.
        lr = run.history[0]["learning_rate"]
    try:
        data = run_input(run.history, FitArgs(initial_lr=lr, steps_per_epoch=steps_per_epoch))
    except PolicyError as exc:
        return _Prepared(run, None, {}, (), exc.message)
    logged: dict[str, int] = {}
    for logs in data.logs:
        for key in logs:
            logged[key] = logged.get(key, 0) + 1
    return _Prepared(run, data, logged, _running_best(data.logs, objective, direction))


def _running_best(logs: Sequence[Mapping[str, float]], metric: str, direction: ast.Direction) -> tuple[float | None, ...]:
    out: list[float | None] = []
    best: float | None = None
    for epoch_logs in logs:
        value = epoch_logs.get(metric)
        if value is not None and not math.isnan(value) and (
            best is None or (value < best if direction == "min" else value > best)
        ):
            best = value
        out.append(best)
    return tuple(out)


def _replay_one(policy: ast.Policy, p: _Prepared, objective: str, tol: Tolerance, strict: bool) -> RunReplay:
    from policy.reference.simulate import simulate_checked

    name = p.run.name
    if p.data is None:
        return RunReplay(name, "failed", reason=p.error, notes=p.run.notes)
    recorded = p.data.epochs
    needed = watched_names(policy)
    notes = list(p.run.notes)
    for metric in dict.fromkeys([*needed, objective]):
        if 0 < p.logged.get(metric, 0) < recorded:
            notes.append(f"{metric} logged in {p.logged[metric]} of {recorded} epochs")
        if metric not in p.logged:
            near = closest(metric, p.logged)
            # loss for val_loss is no typo: the run had no validation data.
            hint = f"; did you mean {near!r}?" if near and near != metric.removeprefix("val_") else ""
            has = ", ".join(sorted(p.logged)) or "nothing"
            return RunReplay(name, "skipped", recorded, reason=f"{metric} is not in this run (it has {has}){hint}",
                             notes=tuple(notes))
    data = p.data
    if data.initial_lr is not None and not any(isinstance(r, ast.ReduceLR | ast.Schedule) for r in policy.rules):
        # The lr a run logged matters only to lr rules; without one the outcome lists no lrs, so a
        # TensorBoard folder (which always logs it) and a CSV file (which may not) replay alike.
        data = dataclasses.replace(data, initial_lr=None)
    try:
        outcome = simulate_checked(policy, data, strict=strict)
    except PolicyError as exc:
        hint = f" ({exc.suggestion})" if exc.suggestion else ""
        return RunReplay(name, "skipped", recorded, reason=f"{exc.message}{hint}", notes=tuple(notes))
    best_run = p.running_best[outcome.epochs_run - 1] if outcome.epochs_run else None
    best_all = p.running_best[-1] if p.running_best else None
    if best_all is None:
        lost = 0.0
    elif best_run is None:
        lost = math.inf  # the objective was first logged after the stop
    else:
        lost = abs(best_run - best_all)
    hurt = best_all is not None and lost > tol.limit(best_all)
    return RunReplay(name, "replayed", recorded, outcome.epochs_run, outcome.stop, best_run, best_all, lost, hurt,
                     notes=tuple(notes), outcome=outcome)


__all__ = ["DEFAULT_TOLERANCE", "Report", "RunReplay", "Tolerance", "VariantReplay", "recommend", "replay"]


def _mean(values: list[float]) -> float:
    """The mean, 0 for no values (no run replayed)."""
    return sum(values) / len(values) if values else 0.0
