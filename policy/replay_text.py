"""The text ``keras-policy replay`` and ``keras-policy tune`` print for a :class:`~policy.replays.Report`."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from policy.replays import Report, RunReplay, VariantReplay


def _num(x: float | None, digits: int = 6) -> str:
    if x is None:
        return "-"
    if math.isinf(x):
        return "inf"
    return f"{x:.{digits}g}" if x else "0"


def _lost(amount: float, fraction: float) -> str:
    """A loss in the metric's units with its share of the run's best: ``0.0126 (2.7%)``."""
    if not amount:
        return "0"
    share = "inf" if math.isinf(fraction) else f"{fraction:.1%}"
    return f"{_num(amount, 3)} ({share})"


def _share(value: float, relative: bool) -> str:
    """A loss as the tolerance measures it: ``2.7%`` of the run's best, or an amount."""
    if relative:
        return "inf" if math.isinf(value) else f"{value:.1%}" if value else "0"
    return _num(value, 3)


def _table(header: list[str], rows: Sequence[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows] if i < len(r)) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        out = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=False))]
        return "  ".join(out).rstrip()

    return [line(header), *(line(r) for r in rows)]


def runs_text(report: Report, variant: VariantReplay) -> str:
    """``replay``: one line per run, then the totals."""
    obj = report.objective
    header = ["run", "epochs run", "stop", f"best {obj}", "full-run best", "lost", "stopped by"]
    rows: list[list[str]] = []
    extra: dict[int, list[str]] = {}
    for r in variant.runs:
        if r.status == "replayed":
            rows.append([
                r.run,
                f"{r.epochs_run} of {r.epochs_recorded}",
                str(r.stop.epoch) if r.stop else "-",
                _num(r.best_run),
                _num(r.best_recorded),
                _lost(r.lost, r.lost_fraction) + (" HURT" if r.hurt else ""),
                r.stop.rule if r.stop else "(runs to the end)",
            ])
        else:
            rows.append([r.run, r.status.upper(), r.reason])
        if r.notes:
            extra[len(rows) - 1] = [f"    note: {n}" for n in r.notes]
    lines = _table(header, [r if len(r) == len(header) else r[:2] for r in rows], right={3, 4, 5})
    out = [lines[0]]
    for i, (row, line) in enumerate(zip(rows, lines[1:], strict=True)):
        # Failed and skipped runs: the reason runs on past the columns, it does not fit one.
        out.append(line if len(row) == len(header) else f"{line}  {row[2]}")
        out += extra.get(i, [])
    out += ["", *totals_text(report, variant)]
    return "\n".join(out)


def totals_text(report: Report, v: VariantReplay) -> list[str]:
    """The closing lines of ``replay``: runs replayed, epochs saved, runs hurt."""
    counts = []
    if v.skipped:
        counts.append(f"{len(v.skipped)} skipped")
    if v.failed:
        counts.append(f"{len(v.failed)} failed")
    out = [f"Replayed {len(v.replayed)} of {len(v.runs)} runs" + (f" ({', '.join(counts)})" if counts else "") + "."]
    if not v.replayed:
        return out
    out.append(f"Epochs saved: {v.epochs_saved} of {v.epochs_recorded} recorded ({v.saved_fraction:.1%}).")
    hurt = v.runs_hurt
    names = f": {', '.join(r.run for r in hurt)}" if hurt else ""
    out.append(
        f"Runs whose best {report.objective} got worse by more than {_tolerance(report)}: "
        f"{len(hurt)} of {len(v.replayed)}{names}."
    )
    worst = max(v.replayed, key=lambda r: r.lost_fraction if report.tolerance.relative else r.lost)
    out.append(f"Lost {report.objective}: mean {_lost(v.mean_lost, v.mean_lost_fraction)}, worst "
               f"{_lost(worst.lost, worst.lost_fraction)}" + (f" ({worst.run})" if worst.lost else "") + ".")
    return out


def _tolerance(report: Report) -> str:
    tol = report.tolerance
    return f"{tol} of the run's best" if tol.relative else f"{tol}"


def variants_text(report: Report, template: str) -> str:
    """``tune``: one row per variant, most epochs saved first, the recommended one marked."""
    obj = report.objective
    relative = report.tolerance.relative
    ordered = sorted(report.variants, key=lambda v: (-v.saved_fraction, v.worst(relative)))
    header = ["", "variant", "epochs saved", f"{obj} lost: mean", "worst", "runs hurt", "skipped"]
    rows = []
    for v in ordered:
        rows.append([
            "*" if v is report.recommended else "",
            v.label,
            f"{v.saved_fraction:.1%} ({v.epochs_saved})",
            _share(v.mean(relative), relative),
            _share(v.worst(relative), relative),
            f"{len(v.runs_hurt)} of {len(v.replayed)}",
            str(len(v.skipped)) if v.skipped else "",
        ])
    runs = report.variants[0].runs
    failed = [r for r in runs if r.status == "failed"]
    unit = "as a share of each run's best" if relative else "in its own units"
    out = [
        f"Template: {' '.join(template.split())}",
        f"Objective: {obj} ({report.direction}); lost = how much worse its best within the epochs run is than over "
        f"the whole recorded run, {unit}; a run is hurt when it lost more than {_tolerance(report)}.",
        f"Runs: {len(runs)}" + (f" ({len(failed)} could not be read, listed below)" if failed else "") + ".",
        "",
        *_table(header, rows, right={2, 3, 4, 5}),
        "",
    ]
    if report.recommended is not None:
        out.append(f"Recommended (*): {report.recommended.policy}")
        out.append(f"  rule: {report.rule}.")
    else:
        out.append(f"No recommendation: {report.rule}.")
    skipped = {r.run: r.reason for v in report.variants for r in v.skipped}
    if skipped:
        out += ["", "Skipped runs (by at least one variant):", *(f"  {n}: {why}" for n, why in skipped.items())]
    if failed:
        out += ["", "Runs that could not be read:", *(f"  {r.run}: {r.reason}" for r in failed)]
    return "\n".join(out)


def report_json(report: Report) -> str:
    """Everything as JSON: the settings, the per-variant totals and the per-run rows."""
    def clean(x: Any) -> Any:
        return None if isinstance(x, float) and not math.isfinite(x) else x

    data = {
        "objective": report.objective,
        "direction": report.direction,
        "tolerance": str(report.tolerance),
        "recommended": report.recommended.policy if report.recommended else None,
        "rule": report.rule,
        "variants": [{k: clean(v) for k, v in row.items()} for row in report.summary_rows()],
        "runs": [{k: clean(v) for k, v in row.items()} for row in report.to_rows()],
    }
    return json.dumps(data, indent=2)


def any_failed(report: Report) -> bool:
    """Whether a run could not be read, or no run could be replayed at all (the exit code's question)."""
    first: Sequence[RunReplay] = report.variants[0].runs
    return any(r.status == "failed" for r in first) or not any(v.replayed for v in report.variants)
