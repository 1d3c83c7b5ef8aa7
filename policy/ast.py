"""The typed syntax tree of a policy.

Every node is a frozen, keyword-only dataclass (made by :func:`policy.frozen.frozen`, which
shares its methods instead of compiling them per class: cheaper start-up). Its position
(`pos`) records where the construct starts and ends in the source text; it is excluded from
equality and hashing, so two policies that say the same thing compare equal however they
were spelled.

Numbers are stored as the user meant them (a patience is an ``int``, a factor a ``float``);
the parser converts, the validator checks ranges, the printer writes the canonical text.
Nothing here knows about Lark or Keras.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import field
from typing import Final, Literal, TypeAlias, TypeVar

from policy.frozen import Frozen, frozen


@frozen(kw_only=False)
class Pos(Frozen):
    """A 1-based source span: where a node starts and where it ends (exclusive column)."""

    line: int = 0
    column: int = 0
    end_line: int = 0
    end_column: int = 0


NOWHERE = Pos()

Direction: TypeAlias = Literal["min", "max"]
Trend: TypeAlias = Literal["improving", "decreasing", "increasing"]
Comparison: TypeAlias = Literal[">=", ">", "<=", "<"]
TimeUnit: TypeAlias = Literal["epochs", "steps", "s", "min", "h"]
ClockUnit: TypeAlias = Literal["s", "min", "h"]
SaveUnit: TypeAlias = Literal["epochs", "steps"]
Side: TypeAlias = Literal["below", "above"]

# The direction each side of a ``save best`` threshold implies.
SIDE_DIRECTION: Final[Mapping[str, Direction]] = {"below": "min", "above": "max"}

# Seconds in each clock unit of ``stop after`` (epochs and steps are counts, not clock units):
# a fact of the language, read by the callbacks, the reference, describe and eject alike.
SECONDS_PER_UNIT: Final[Mapping[str, float]] = {"s": 1.0, "min": 60.0, "h": 3600.0}


@frozen
class Node(Frozen):
    """What every node has: where it is in the source."""

    pos: Pos = field(default=NOWHERE, compare=False, repr=False)


@frozen
class Metric(Node):
    """A name as it appears in Keras's logs (``val_loss``, ``val_accuracy``).

    ``window`` > 1 (only in a ``stop when`` condition: ``val_loss averaged over 3 epochs``) reads
    the mean of the metric's last ``window`` logged values instead of the value itself.
    """

    name: str
    window: int = 1


@frozen
class Path(Node):
    """A file or folder path as the user quoted it, escapes resolved (``"ckpt/{epoch:03d}.keras"``).

    A node of its own, not a plain string, so that a problem with the path (a wrong suffix, a
    bad placeholder) points at the quote itself.
    """

    value: str


# --------------------------------------------------------------------------- conditions


@frozen
class Plateau(Node):
    """``METRIC not improving [by DELTA[%]] for PATIENCE [epochs]``.

    ``trend`` "improving" takes the direction from the metric's name; "decreasing" means
    the metric should go down (min), "increasing" up (max). ``relative`` makes ``delta``
    a fraction of the best value so far (written as a percentage).
    """

    metric: Metric
    trend: Trend = "improving"
    delta: float = 0.0
    relative: bool = False
    patience: int


@frozen
class Threshold(Node):
    """``METRIC >= VALUE``: holds at the end of an epoch where the comparison holds."""

    metric: Metric
    op: Comparison
    value: float


@frozen
class NotFinite(Node):
    """``METRIC is not finite`` (NaN or +-inf), or ``METRIC is nan`` (NaN only)."""

    metric: Metric
    nan_only: bool = False


@frozen
class AnyOf(Node):
    """``A or B or ...``: holds when any part holds (every part is still evaluated)."""

    parts: tuple[Condition, ...]


@frozen
class AllOf(Node):
    """``A and B and ...``: holds when every part holds (every part is still evaluated)."""

    parts: tuple[Condition, ...]


Condition: TypeAlias = Plateau | Threshold | NotFinite | AnyOf | AllOf

MAX_CONDITION_DEPTH = 32
"""How deeply and/or groups may nest in one condition (``(A and (B or (C and ...)))``).

A chain of any length (``A or B or C ...``) is one flat group; only a group inside a group
counts. Every stage walks conditions recursively (printer, validator, compiler, reference), so
the parser and the validator bound the depth with a PolicyError, well inside Python's recursion
limit. Nobody writes more than a few levels.
"""


def condition_depth(condition: Condition) -> int:
    """How deeply and/or groups nest in ``condition`` (0 for a single atom); never recurses."""
    deepest = 0
    stack: list[tuple[Condition, int]] = [(condition, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, AnyOf | AllOf):
            depth += 1
            # A hand-built AST may be deeper than any text can be; stop counting past the limit.
            if depth > MAX_CONDITION_DEPTH:
                return depth
            stack.extend((part, depth) for part in node.parts)
        deepest = max(deepest, depth)
    return deepest


# --------------------------------------------------------------------------- rules


@frozen
class StopWhen(Node):
    """``stop when CONDITION [, restore best [METRIC]] [, ignore first N epochs] [, baseline X]``."""

    condition: Condition
    restore_best: bool = False
    restore_metric: Metric | None = None
    ignore_first: int = 0
    baseline: float | None = None


@frozen
class FailWhen(Node):
    """``fail when loss is not finite``: ``fit`` raises at once instead of stopping gracefully."""

    condition: Condition


@frozen
class TrainAtLeast(Node):
    """``train at least N epochs|steps``: no ``stop when`` rule stops training before that.

    Stops of a condition that is only ``is not finite`` / ``is nan`` atoms are not held back.
    """

    amount: int
    unit: SaveUnit


@frozen
class StopAfter(Node):
    """``stop after N epochs|steps|s|min|h``: a budget."""

    amount: float
    unit: TimeUnit


@frozen
class BestThreshold(Node):
    """``below X`` / ``above X`` after ``save best on METRIC``: the first save needs a value
    strictly below (min) or above (max) X (Keras's ``initial_value_threshold``)."""

    side: Side
    value: float


@frozen
class SaveBest(Node):
    """``save best [weights] on METRIC [min|max] [below|above X] [to PATH]``."""

    metric: Metric
    direction: Direction | None = None
    path: Path | None = None
    weights_only: bool = False
    threshold: BestThreshold | None = None


@frozen
class SaveTop(Node):
    """``save top K [weights] on METRIC [min|max] to PATH``: keep the K best checkpoints."""

    k: int
    metric: Metric
    direction: Direction | None = None
    path: Path
    weights_only: bool = False


@frozen
class SaveEvery(Node):
    """``save [weights] every epoch|N epochs|N steps to PATH [, keep last K]``.

    ``keep`` (``keep last K``): after each write, the files this rule wrote in this run beyond the
    newest K are deleted; None keeps every file.
    """

    every: int = 1
    unit: SaveUnit = "epochs"
    path: Path
    weights_only: bool = False
    keep: int | None = None


@frozen
class SaveTimed(Node):
    """``save [weights] every T s|min|h to PATH``: a write after the first training batch that ends
    at least T of training after the previous write (or train begin)."""

    amount: float
    unit: ClockUnit
    path: Path
    weights_only: bool = False


@frozen
class SaveLast(Node):
    """``save last [weights] to PATH``: one file, overwritten after every epoch."""

    path: Path
    weights_only: bool = False


@frozen
class ReduceLR(Node):
    """``multiply lr by F when PLATEAU [, cooldown N] [, min lr X] [, restore best]``.

    ``restore_best``: when the rate is cut, the weights of the best epoch so far are put back first.
    """

    factor: float
    when: Plateau
    cooldown: int = 0
    min_lr: float = 0.0
    restore_best: bool = False


SpanUnit: TypeAlias = Literal["epochs", "steps", "percent"]


@frozen(kw_only=False)
class Span(Frozen):
    """How long a schedule segment lasts: ``N epochs``, ``N steps`` or ``P% of training``.

    ``count`` is a whole number for epochs and steps; for ``percent`` it is P as written (a
    fraction is allowed), resolved at train begin to ceil(P x total steps / 100) steps.
    """

    count: float
    unit: SpanUnit = "epochs"


@frozen
class Warmup(Node):
    """``warm up lr to TARGET over SPAN``: linear, lr in the segment's unit t is TARGET*(t+1)/N."""

    target: float
    over: Span

    @property
    def epochs(self) -> int:
        """The length in epochs (only meaningful when ``over.unit == "epochs"``)."""
        return int(self.over.count)


@frozen
class Cosine(Node):
    """``cosine lr to TARGET over SPAN [, restart every SPAN[, periods times T][, peaks times P]]``:
    half cosine from the current lr to TARGET; with a restart period, the half cosine starts again
    every period (SGDR). Each period is ``period_factor`` times as long as the one before (Keras's
    t_mul), and each restart's height above TARGET ``peak_factor`` times the one before (m_mul)."""

    target: float
    over: Span
    restart: Span | None = None
    period_factor: float = 1.0
    peak_factor: float = 1.0

    @property
    def epochs(self) -> int:
        """The length in epochs (only meaningful when ``over.unit == "epochs"``)."""
        return int(self.over.count)


@frozen
class Linear(Node):
    """``linear lr to TARGET over SPAN``: a straight line from the current lr to TARGET."""

    target: float
    over: Span


@frozen
class Hold(Node):
    """``hold lr for SPAN``: the current lr, unchanged (warm-up, hold, decay: WSD)."""

    over: Span


@frozen
class Decay(Node):
    """``decay lr by F every N epochs|steps[, smoothly]``: step decay, open-ended; ``smooth``: by
    F ** (t / N) at every unit t instead of F ** floor(t / N) (Keras's ExponentialDecay default)."""

    factor: float
    every: int
    unit: Literal["epochs", "steps"] = "epochs"
    smooth: bool = False


@frozen
class Milestones(Node):
    """``multiply lr by F at epochs A, B, C`` (or ``at steps``): open-ended; F once more at each
    milestone, counted from the segment's start."""

    factor: float
    at: tuple[int, ...]
    unit: Literal["epochs", "steps"] = "epochs"


@frozen
class InverseSqrt(Node):
    """``inverse sqrt lr``: open-ended; v * sqrt(s / (s + t)) after a segment that ended at s."""


Segment: TypeAlias = Warmup | Cosine | Linear | Hold | Decay | Milestones | InverseSqrt
OPEN_ENDED = (Decay, Milestones, InverseSqrt)


def counts_steps(schedule: Schedule) -> bool:
    """Whether the schedule runs per optimizer step (some length in steps or a percentage)."""
    for seg in schedule.segments:
        spans = [getattr(seg, "over", None), getattr(seg, "restart", None)]
        if any(s is not None and s.unit != "epochs" for s in spans):
            return True
        if isinstance(seg, Decay | Milestones) and seg.unit == "steps":
            return True
    return False


@frozen
class Schedule(Node):
    """One or more segments chained with ``then``, each starting where the last ended."""

    segments: tuple[Segment, ...]


@frozen
class LogCSV(Node):
    """``log to "train.csv" [, append]``."""

    path: Path
    append: bool = False


@frozen
class LogTensorBoard(Node):
    """``log to tensorboard "logs/"``."""

    path: Path


@frozen
class LogLR(Node):
    """``log lr``: the learning rate in effect is written into every epoch's logs as ``learning_rate``."""


@frozen
class Backup(Node):
    """``backup to "dir/" [every epoch|every N steps]``; ``steps`` None means every epoch."""

    path: Path
    steps: int | None = None


Rule: TypeAlias = (
    StopWhen
    | FailWhen
    | TrainAtLeast
    | StopAfter
    | SaveBest
    | SaveTop
    | SaveEvery
    | SaveTimed
    | SaveLast
    | ReduceLR
    | Schedule
    | LogCSV
    | LogTensorBoard
    | LogLR
    | Backup
)


@frozen
class Policy(Node):
    """A whole policy: its rules in the order they were written.

    ``source`` keeps the text it was parsed from, so that errors found later (at the
    first epoch end, say) can still point at the line; it does not take part in equality.
    """

    rules: tuple[Rule, ...]
    source: str = field(default="", compare=False, repr=False)


# --------------------------------------------------------------------------- walking conditions

Atom: TypeAlias = Plateau | Threshold | NotFinite
Group: TypeAlias = AnyOf | AllOf
_T = TypeVar("_T")


def fold(condition: Condition, atom: Callable[[Atom], _T], group: Callable[[Group, list[_T]], _T]) -> _T:
    """The one walk over a condition: ``atom`` on every leaf, in source order, and ``group`` on
    every and/or group with the results of its parts.

    The parts' results come as a list, every part walked whatever the others gave: a condition
    has no short-circuit, each part updates its state at every epoch. The walk recurses once per
    level of nesting, which the parser and validator bound (:data:`MAX_CONDITION_DEPTH`).
    """
    if isinstance(condition, AnyOf | AllOf):
        return group(condition, [fold(part, atom, group) for part in condition.parts])
    return atom(condition)


def atoms(condition: Condition) -> tuple[Atom, ...]:
    """The leaves of a condition, in source order."""
    return fold(condition, lambda leaf: (leaf,), lambda _, parts: tuple(leaf for part in parts for leaf in part))


def metrics_of(condition: Condition) -> tuple[Metric, ...]:
    """Every metric a condition reads, in source order (repeats kept)."""
    return tuple(leaf.metric for leaf in atoms(condition))


def plateaus_of(condition: Condition) -> tuple[Plateau, ...]:
    """Every plateau inside a condition, in source order."""
    return tuple(leaf for leaf in atoms(condition) if isinstance(leaf, Plateau))
