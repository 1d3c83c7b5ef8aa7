"""The one error a user sees for a bad policy: :class:`PolicyError`.

It is a ``ValueError``. Each problem carries a 1-based line and column, the source line,
a caret under the column and, where one exists, a suggestion. Validation collects every
problem before raising, so one error may carry several; ``line``/``column``/``message``
are those of the first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from policy.ast import Pos
from policy.frozen import Frozen, frozen


@frozen(kw_only=False)
class Problem(Frozen):
    """One thing wrong with a policy, and where."""

    message: str
    line: int = 0
    column: int = 0
    source_line: str = ""
    suggestion: str | None = None

    def render(self, filename: str | None = None) -> str:
        """Compiler-style text: ``[file:]line:col: message``, the line, a caret, a hint."""
        where = f"{self.line}:{self.column}" if self.line else ""
        head = ":".join(part for part in (filename or "", where) if part)
        out = [f"{head}: {self.message}" if head else self.message]
        if self.line:
            out.append(f"    {self.source_line}")
            out.append("    " + " " * max(self.column - 1, 0) + "^")
        if self.suggestion:
            out.append(f"hint: {self.suggestion}")
        return "\n".join(out)


class PolicyError(ValueError):
    """A policy that cannot be parsed, checked or run as written."""

    def __init__(self, problems: Sequence[Problem], filename: str | None = None) -> None:
        if not problems:
            raise ValueError("PolicyError needs at least one problem")
        self.problems: tuple[Problem, ...] = tuple(problems)
        self.filename = filename
        first = self.problems[0]
        self.message = first.message
        self.line = first.line
        self.column = first.column
        self.source_line = first.source_line
        self.suggestion = first.suggestion
        super().__init__(self.render())

    @classmethod
    def plain(cls, message: str, suggestion: str | None = None) -> PolicyError:
        """An error that belongs to no place in the text (wrong type, missing input)."""
        return cls([Problem(message, suggestion=suggestion)])

    def render(self) -> str:
        return "\n".join(p.render(self.filename) for p in self.problems)

    def with_filename(self, filename: str, line_offset: int = 0) -> PolicyError:
        """The same problems, reported as being in ``filename`` (lines shifted by ``line_offset``)."""
        moved = [
            Problem(p.message, p.line + line_offset if p.line else 0, p.column, p.source_line, p.suggestion)
            for p in self.problems
        ]
        return PolicyError(moved, filename)


def problem_at(source: str, pos: Pos | tuple[int, int], message: str, suggestion: str | None = None) -> Problem:
    """A problem located in ``source`` (line and column are 1-based; 0 means nowhere)."""
    line, column = (pos.line, pos.column) if isinstance(pos, Pos) else pos
    lines = source.splitlines()
    text = lines[line - 1] if 0 < line <= len(lines) else ""
    return Problem(message, line, column, text, suggestion)


def error_at(source: str, pos: Pos | tuple[int, int], message: str, suggestion: str | None = None) -> PolicyError:
    return PolicyError([problem_at(source, pos, message, suggestion)])


def shown(value: object, limit: int = 60) -> str:
    """``repr(value)`` for an error message: shortened, and safe for any value (the repr of an
    int with more than 4300 digits raises ValueError; a user object's ``__repr__`` may raise)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not hide the real error
        return f"a {type(value).__name__}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def closest(word: str, choices: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The choice most like ``word``, if any is close enough to be a likely typo."""
    import difflib  # only when there is something to suggest: not on a clean `check`

    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=cutoff)
    return found[0] if found else None


class HistoryError(ValueError):
    """A history file that cannot be read as per-epoch logs; says which file and line."""

    def __init__(self, message: str, filename: str | None = None, line: int = 0) -> None:
        self.message = message
        self.filename = filename
        self.line = line
        where = ":".join(p for p in (filename or "", str(line) if line else "") if p)
        super().__init__(f"{where}: {message}" if where else message)
