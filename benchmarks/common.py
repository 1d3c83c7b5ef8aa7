"""What every figure shares: statistics, alternating A/B timing, table rows, policy texts.

The machine is shared with other people's test runs, so absolute times drift while a figure
runs. Ratios are therefore always taken from *pairs* measured back to back, alternating
which side goes first (A B, B A, A B, ...) so that a slow patch hits both sides alike, and
the median over pairs is reported with the smallest and largest pair beside it.
"""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# The README's first example: the policy every figure calls "the seed policy".
SEED_POLICY = "stop when val_loss not improving for 3; save best on val_loss min"

# Ten rules, one of (almost) every kind, and no conflicts (one lr rule, distinct files).
TEN_RULE_POLICY = """\
stop when val_loss not improving for 3, restore best
stop when val_accuracy >= 0.99 or val_loss not improving by 1% for 5
stop after 100 epochs
stop when loss is not finite
save best on val_loss min to "ckpt/best.keras"
save top 3 on val_accuracy max to "top/{epoch:03d}.keras"
save every 5 epochs to "every/{epoch:03d}.keras"
multiply lr by 0.5 when val_loss not improving for 2, cooldown 1, min lr 1e-5
log to "train.csv"
backup to "backup/"
"""


@dataclass(frozen=True)
class Stat:
    """Median, min and max of a sample (``n`` values)."""

    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        """Summarise ``values`` (at least one)."""
        if not values:
            raise ValueError("Stat.of needs at least one value")
        return cls(statistics.median(values), min(values), max(values), len(values))

    def scaled(self, factor: float) -> Stat:
        """The same statistic in another unit (e.g. seconds -> microseconds)."""
        return Stat(self.median * factor, self.low * factor, self.high * factor, self.n)


@dataclass(frozen=True)
class Row:
    """One line of the results table.

    ``verdict`` is ``"met"``, ``"missed"``, or ``""`` for a figure without a goal.
    """

    name: str
    stat: Stat | None
    unit: str
    goal: str = ""
    verdict: str = ""
    note: str = ""


@dataclass
class Figure:
    """A figure's rows, plus free text (profiles, findings) for the report below the table."""

    number: int
    title: str
    rows: list[Row] = field(default_factory=list)
    details: list[str] = field(default_factory=list)


def median_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """A distribution-free confidence interval for the median (order statistics, binomial tails).

    With n values sorted, the interval is ``(x[k], x[n-1-k])`` for the largest k such that the
    chance of fewer than k+1 values falling below the median, P(Binom(n, 1/2) <= k), stays within
    (1 - confidence) / 2. Too few values for any k give ``(min, max)``.
    """
    ordered = sorted(values)
    n = len(ordered)
    tail = (1.0 - confidence) / 2.0
    k, cumulative = -1, 0.0
    while k + 1 < n // 2:
        cumulative_next = cumulative + math.comb(n, k + 1) / 2**n
        if cumulative_next > tail:
            break
        cumulative, k = cumulative_next, k + 1
    low = max(k, 0)
    return ordered[low], ordered[n - 1 - low]


def verdict(ok: bool) -> str:
    """``"met"`` or ``"missed"``."""
    return "met" if ok else "missed"


def time_calls(fn: Callable[[], object], number: int) -> float:
    """Seconds per call of ``fn``, averaged over ``number`` back-to-back calls."""
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def repeat(fn: Callable[[], object], *, number: int, repeats: int) -> Stat:
    """``repeats`` samples of :func:`time_calls` (seconds per call)."""
    fn()  # warm caches (imports, Lark tables) outside the measurement
    return Stat.of([time_calls(fn, number) for _ in range(repeats)])


@dataclass(frozen=True)
class Paired:
    """Side A, side B and the per-pair ratio A/B, each summarised over the pairs."""

    a: Stat
    b: Stat
    ratio: Stat
    ratios: tuple[float, ...] = ()  # the per-pair ratios themselves, in measurement order


def alternate(
    a: Callable[[], float],
    b: Callable[[], float],
    pairs: int,
) -> Paired:
    """Measure ``a`` and ``b`` back to back ``pairs`` times, alternating which goes first.

    Each callable runs once and returns the seconds it measured (so it can exclude its own
    setup). The ratio is taken within each pair, then summarised: drift between pairs
    cancels out, drift within a pair is split evenly by the alternation.
    """
    sa: list[float] = []
    sb: list[float] = []
    for i in range(pairs):
        if i % 2 == 0:
            ta = a()
            tb = b()
        else:
            tb = b()
            ta = a()
        sa.append(ta)
        sb.append(tb)
    ratios = tuple(x / y for x, y in zip(sa, sb, strict=True))
    return Paired(Stat.of(sa), Stat.of(sb), Stat.of(ratios), ratios)


def rotate(measurements: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Like :func:`alternate` for any number of sides: each round runs every side once, the
    starting side rotating from round to round. Returns each side's samples, round by round,
    so ratios can be taken within rounds."""
    names = list(measurements)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(measurements[name]())
    return samples


def ratio(a: Sequence[float], b: Sequence[float]) -> Stat:
    """Per-round ratios ``a[i] / b[i]``, summarised."""
    return Stat.of([x / y for x, y in zip(a, b, strict=True)])


def calls(fn: Callable[[], object], number: int) -> Callable[[], float]:
    """A measurement for :func:`alternate`: seconds per call of ``fn`` over ``number`` calls."""
    return lambda: time_calls(fn, number)


def quiet_env(**extra: str) -> dict[str, str]:
    """The environment for child processes: TensorFlow backend, no C++ log noise."""
    env = dict(os.environ)
    env.setdefault("KERAS_BACKEND", "tensorflow")
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env.update(extra)
    return env


def run_process(argv: Sequence[str], env: dict[str, str] | None = None, timeout: float = 300) -> float:
    """Run a command to completion; return its wall time in seconds (raise if it fails)."""
    start = time.perf_counter()
    done = subprocess.run(
        list(argv), env=env or quiet_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)!r} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return elapsed


def python() -> str:
    """The interpreter running the benchmarks (the project's venv)."""
    return sys.executable


def fmt(value: float) -> str:
    """Three significant figures, without scientific notation for everyday magnitudes."""
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    if magnitude >= 0.01:
        return f"{value:.3f}"
    return f"{value:.2g}"


# The hooks ``_configure_async_dispatch`` looks at (train, test and predict batch ends) plus
# the batch-begin hooks, which run synchronously on every batch whatever the backend.
BATCH_HOOKS = (
    "on_batch_begin",
    "on_batch_end",
    "on_train_batch_begin",
    "on_train_batch_end",
    "on_test_batch_begin",
    "on_test_batch_end",
    "on_predict_batch_begin",
    "on_predict_batch_end",
)


def overridden_hooks(cb: Any) -> list[str]:
    """The batch hooks ``cb``'s class overrides (Keras's own test: ``utils.is_default``)."""
    from keras.src import utils

    return [hook for hook in BATCH_HOOKS if not utils.is_default(getattr(cb, hook))]
