"""A picture of a replayed run, for ``keras-policy simulate --plot out.png``.

The metrics the policy watches are drawn per epoch (one panel each), with a marker on
every epoch that wrote a checkpoint, a vertical line where the learning rate changed and
a red line where training stops; the learning rate gets its own panel when it moves.
matplotlib is optional (``pip install 'keras-policy[plot]'``) and only imported here.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from policy.ast import Policy
from policy.errors import PolicyError
from policy.history import History
from policy.meaning import watched_names
from policy.outcome import Outcome

if TYPE_CHECKING:
    from policy.replays import Report

INSTALL_HINT = "pip install 'keras-policy[plot]'"


def require_matplotlib() -> Any:
    """The pyplot module, with a non-interactive backend; PolicyError naming the install command if missing."""
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError:
        raise PolicyError.plain("--plot needs matplotlib, which is not installed", INSTALL_HINT) from None
    # Agg writes files without a display, so plotting works over ssh and in CI.
    matplotlib.use("Agg")
    return importlib.import_module("matplotlib.pyplot")


def plot_outcome(policy: Policy, history: History, outcome: Outcome, path: str | Path) -> None:
    """Draw the watched metrics of the epochs that ran, with stop, save and lr-change markers."""
    plt = require_matplotlib()
    metrics = [m for m in watched_names(policy, learning_rate=True) if any(m in logs for logs in history)]
    if not metrics:  # a policy that watches nothing (budgets, logging): show the loss curves
        metrics = [m for m in ("loss", "val_loss") if any(m in logs for logs in history)]
    lrs = list(outcome.learning_rates[: outcome.epochs_run])
    step_lrs = list(outcome.step_learning_rates)
    show_lr = len(set(lrs)) > 1 or len(set(step_lrs)) > 1
    panels = len(metrics) + (1 if show_lr else 0)
    fig, axes = plt.subplots(max(panels, 1), 1, sharex=True, figsize=(8, 2.4 * max(panels, 1)), squeeze=False)
    epochs = list(range(len(history)))
    lr_changes = [e for e in range(1, len(lrs)) if lrs[e] != lrs[e - 1]]
    saved = sorted({e for e, _ in outcome.saves})
    for ax, metric in zip(axes[:, 0], metrics, strict=False):
        values = [logs.get(metric, float("nan")) for logs in history]
        ax.plot(epochs, values, color="0.75", linewidth=1, label="recorded")
        ran = epochs[: outcome.epochs_run]
        ax.plot(ran, values[: outcome.epochs_run], color="C0", marker=".", label=metric)
        saved_here = [e for e in saved if e < len(values)]
        if saved_here:
            ax.scatter(saved_here, [values[e] for e in saved_here], marker="v", s=60, color="C2", zorder=3,
                       label="checkpoint saved")
        if outcome.restored_epoch is not None and outcome.restored_epoch < len(values):
            ax.scatter([outcome.restored_epoch], [values[outcome.restored_epoch]], marker="*", s=160, color="C3",
                       zorder=4, label="weights restored")
        _markers(ax, lr_changes, outcome)
        ax.set_ylabel(metric)
        ax.legend(loc="best", fontsize="small")
    if show_lr:
        ax = axes[-1, 0]
        # Each epoch's lr drawn across that epoch (e - 0.5 to e + 0.5), so the steps meet the markers.
        ax.step([e - 0.5 for e in range(len(lrs) + 1)], [*lrs, lrs[-1]], where="post", color="C1",
                label="at epoch begin")
        if step_lrs:
            # The rate of every optimizer step, the epochs' steps spread evenly across them.
            width = outcome.epochs_run / len(step_lrs)
            xs = [-0.5 + i * width for i in range(len(step_lrs) + 1)]
            ax.step(xs, [*step_lrs, step_lrs[-1]], where="post", color="C4", linewidth=0.8, label="per step")
        ax.set_yscale("log")
        ax.set_ylabel("learning rate")
        _markers(ax, lr_changes, outcome)
        ax.legend(loc="best", fontsize="small")
    axes[-1, 0].set_xlabel("epoch (0-based)")
    title = f"stops at epoch {outcome.stop.epoch}: {outcome.stop.rule}" if outcome.stop else "runs to the end"
    fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    fig.savefig(str(path), dpi=110)
    plt.close(fig)


def _markers(ax: Any, lr_changes: list[int], outcome: Outcome) -> None:
    """Dotted orange: the learning rate changed between two epochs; dashed red: training stops."""
    for i, e in enumerate(lr_changes):
        ax.axvline(e - 0.5, color="C1", linestyle=":", linewidth=1, label="lr changed" if i == 0 else None)
    if outcome.stop is not None:
        ax.axvline(outcome.stop.epoch, color="C3", linestyle="--", linewidth=1.2, label="stop")


def plot_tradeoff(report: Report, path: str | Path) -> None:
    """``tune --plot``: epochs saved (%) against the objective lost, one point per variant.

    Each variant is a dot at its mean loss with a line out to its worst; the recommended one is a
    star. Up and to the left is better: more epochs saved, less lost.
    """
    plt = require_matplotlib()
    relative = report.tolerance.relative
    scale = 100 if relative else 1
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for v in report.variants:
        if not v.replayed:
            continue
        x, worst, y = scale * v.mean(relative), scale * v.worst(relative), 100 * v.saved_fraction
        chosen = v is report.recommended
        if worst > x and worst != float("inf"):
            ax.plot([x, worst], [y, y], color="0.7", linewidth=1, zorder=1)
        ax.scatter([x], [y], marker="*" if chosen else "o", s=180 if chosen else 40,
                   color="C3" if chosen else ("C1" if v.runs_hurt else "C0"), zorder=3)
        ax.annotate(v.label, (x, y), textcoords="offset points", xytext=(6, 4), fontsize="small")
    ax.axvline(scale * report.tolerance.amount, color="0.5", linestyle=":", linewidth=1)
    ax.annotate("tolerance", (scale * report.tolerance.amount, 1), xycoords=("data", "axes fraction"),
                textcoords="offset points", xytext=(3, -12), fontsize="small", color="0.4")
    unit = " (% of each run's best)" if relative else ""
    ax.set_xlabel(f"{report.objective} lost{unit}: mean over runs (dot) to worst run (line end)")
    ax.set_ylabel("epochs saved (% of recorded)")
    title = f"recommended: {report.recommended.label}" if report.recommended else "no recommendation"
    ax.set_title(f"{title} (orange: hurts a run by more than {report.tolerance})", fontsize="medium")
    fig.tight_layout()
    fig.savefig(str(path), dpi=110)
    plt.close(fig)
