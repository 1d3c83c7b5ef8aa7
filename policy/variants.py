"""Variants of one policy from a template: ``stop when val_loss not improving for {2,3,5,8}``.

A brace outside quotes holds the choices for that spot: a list (``{2,3,5}``, items may be any
text: ``{val_loss,val_accuracy}``) or a whole-number range (``{2..8}``, ``{8..2}``, with a step:
``{2..20..2}``). Several braces give every combination, the first brace varying slowest. Braces
inside quoted paths (``"ckpt/{epoch}.keras"``) and comments are left alone: they belong to the
policy. Each variant's text then goes through the normal parser; its errors are reported at the
place in the *template* they came from (a problem inside a substituted value points at its brace).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

from policy.ast import Policy
from policy.errors import PolicyError, Problem

MAX_VARIANTS = 1000


@dataclass(frozen=True)
class _Brace:
    start: int  # offset of "{" in the template
    end: int  # offset just past "}"
    choices: tuple[str, ...]


@dataclass(frozen=True)
class _Span:
    """Where a piece of a variant's text came from in the template."""

    start: int  # offset in the variant text
    end: int
    template_start: int
    literal: bool  # copied from the template (True) or a brace's chosen value (False)


@dataclass(frozen=True)
class Variant:
    """One expansion of a template: its text and the value chosen for each brace."""

    text: str
    values: tuple[str, ...]
    spans: tuple[_Span, ...] = ()

    @property
    def label(self) -> str:
        """What tells this variant apart: its chosen values, or its text when the template had no brace."""
        return ", ".join(self.values) if self.values else " ".join(self.text.split())

    def template_offset(self, offset: int) -> int:
        """The template offset a position in this variant's text came from."""
        for span in self.spans:
            if span.start <= offset < span.end or (span.literal and offset == span.end):
                return span.template_start + (offset - span.start if span.literal else 0)
        return self.spans[-1].template_start if self.spans else offset


def has_braces(template: str) -> bool:
    """Whether the template has a variant brace (outside quotes and comments)."""
    return any(kind in "{}" for kind, _ in _scan(template))


def expand(template: str) -> list[Variant]:
    """Every variant of ``template``, in order; a template without braces is its own single variant."""
    braces = _braces(template)
    if not braces:
        return [Variant(template, (), (_Span(0, len(template), 0, True),))]
    count = 1
    for brace in braces:
        count *= len(brace.choices)
    if count > MAX_VARIANTS:
        raise _error(template, braces[0].start, f"the braces give {count:,} variants; at most {MAX_VARIANTS:,} are replayed",
                     "use fewer or shorter lists")
    out: list[Variant] = []
    for values in itertools.product(*(b.choices for b in braces)):
        pieces: list[str] = []
        spans: list[_Span] = []
        at = 0  # template offset
        length = 0  # variant text length so far
        for brace, value in zip(braces, values, strict=True):
            literal = template[at:brace.start]
            spans.append(_Span(length, length + len(literal), at, True))
            length += len(literal)
            spans.append(_Span(length, length + len(value), brace.start, False))
            length += len(value)
            pieces += [literal, value]
            at = brace.end
        spans.append(_Span(length, length + len(template) - at, at, True))
        pieces.append(template[at:])
        out.append(Variant("".join(pieces), tuple(values), tuple(spans)))
    return out


def parse_variants(template: str) -> list[tuple[Variant, Policy]]:
    """Expand and parse every variant; one :class:`PolicyError` for all problems, placed in the template."""
    from policy import parse_policy

    parsed: list[tuple[Variant, Policy]] = []
    problems: dict[tuple[int, int, str], Problem] = {}
    for variant in expand(template):
        try:
            parsed.append((variant, parse_policy(variant.text)))
        except PolicyError as exc:
            for p in exc.problems:
                moved = place_in_template(p, variant, template)
                problems.setdefault((moved.line, moved.column, moved.message), moved)
    if problems:
        raise PolicyError(sorted(problems.values(), key=lambda p: (p.line, p.column)))
    return parsed


def place_in_template(problem: Problem, variant: Variant, template: str) -> Problem:
    """A problem found in a variant's text, moved to where it came from in the template."""
    if not problem.line or not variant.values:
        return problem
    offset = _offset(variant.text, problem.line, problem.column)
    moved = variant.template_offset(offset)
    line, column = _line_column(template, moved)
    values = [variant.text[s.start:s.end] for s in variant.spans if not s.literal and s.start <= offset < max(s.end, s.start + 1)]
    # Inside a brace: say which of its values is wrong (the same problem from other variants merges).
    message = f"{problem.message} (the value {values[0]!r})" if values else problem.message
    source_line = template.splitlines()[line - 1] if template.splitlines() else ""
    return Problem(message, line, column, source_line, problem.suggestion)


def _offset(text: str, line: int, column: int) -> int:
    lines = text.split("\n")
    return sum(len(lines[i]) + 1 for i in range(min(line - 1, len(lines)))) + column - 1


def _line_column(text: str, offset: int) -> tuple[int, int]:
    before = text[:offset]
    return before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1


def _scan(template: str) -> Iterator[tuple[str, int]]:
    """The braces of the template outside quotes and comments, as (character, offset)."""
    quote: str | None = None
    comment = False
    for i, ch in enumerate(template):
        if comment:
            comment = ch != "\n"
        elif quote is not None:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            comment = True
        elif ch in "{}":
            yield ch, i


def _braces(template: str) -> list[_Brace]:
    out: list[_Brace] = []
    open_at: int | None = None
    for ch, i in _scan(template):
        if ch == "{":
            if open_at is not None:
                raise _error(template, i, "braces cannot be nested", "write one list per brace: {2,3} ... {0.5,0.1}")
            open_at = i
        else:
            if open_at is None:
                raise _error(template, i, "a '}' without its '{'")
            out.append(_Brace(open_at, i + 1, _choices(template, open_at, template[open_at + 1:i])))
            open_at = None
    if open_at is not None:
        raise _error(template, open_at, "this '{' is never closed", "close it: {2,3,5}")
    return out


def _choices(template: str, at: int, body: str) -> tuple[str, ...]:
    if ".." in body and "," not in body:
        return _range(template, at, body)
    items = [item.strip() for item in body.split(",")]
    if any(not item for item in items):
        raise _error(template, at, "an empty choice in braces", "list the values: {2,3,5} or a range: {2..8}")
    if any("\n" in item for item in items):
        raise _error(template, at, "a choice in braces spans lines")
    return tuple(items)


def _range(template: str, at: int, body: str) -> tuple[str, ...]:
    parts = [p.strip() for p in body.split("..")]
    hint = "a range is {FIRST..LAST} or {FIRST..LAST..STEP} with whole numbers; list other values: {0.5,0.1}"
    if len(parts) not in (2, 3):
        raise _error(template, at, f"{{{body}}} is not a range", hint)
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        raise _error(template, at, f"{{{body}}} is not a range of whole numbers", hint) from None
    first, last = numbers[0], numbers[1]
    step = abs(numbers[2]) if len(numbers) == 3 else 1
    if step == 0:
        raise _error(template, at, "a range's step must not be 0", hint)
    if last < first:
        step = -step
    return tuple(str(n) for n in range(first, last + (1 if step > 0 else -1), step))


def _error(template: str, offset: int, message: str, suggestion: str | None = None) -> PolicyError:
    line, column = _line_column(template, offset)
    source_line = template.split("\n")[line - 1]
    return PolicyError([Problem(message, line, column, source_line, suggestion)])
