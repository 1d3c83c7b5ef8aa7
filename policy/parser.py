"""Text -> AST. The only module that touches Lark.

The grammar lives in ``grammar/policy.lark`` (shipped inside the package as
``policy/policy.lark`` in a wheel). The parser is built once, on first use. Every Lark
error is turned into a :class:`PolicyError` here, in plain words; no Lark object or
exception leaves this module.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import math
import os
import re
from typing import Any

import lark
from lark import Token, Transformer, v_args
from lark.tree import Meta

from policy import ast
from policy.errors import PolicyError, Problem, closest, error_at

# The largest whole number a count may be (patience, epochs, steps, k). Larger is a typo.
MAX_COUNT = 10**9

# How deeply and/or groups may nest in one condition (see policy.ast.MAX_CONDITION_DEPTH).
MAX_CONDITION_DEPTH = ast.MAX_CONDITION_DEPTH

_TIME_UNITS: dict[str, ast.TimeUnit] = {
    "epoch": "epochs",
    "epochs": "epochs",
    "step": "steps",
    "steps": "steps",
    "s": "s",
    "sec": "s",
    "secs": "s",
    "second": "s",
    "seconds": "s",
    "m": "min",
    "min": "min",
    "mins": "min",
    "minute": "min",
    "minutes": "min",
    "h": "h",
    "hr": "h",
    "hrs": "h",
    "hour": "h",
    "hours": "h",
}

# Plain words for the tokens that are not keywords, used in "expected ..." lists.
_TOKEN_WORDS = {
    "NAME": "a metric name",
    "NUMBER": "a number",
    "STRING": 'a quoted path ("...")',
    "_SEP": "end of rule",
    "$END": "end of policy",
    "PERCENT": "%",
}


def _grammar_text() -> str:
    # Inside an installed wheel the grammar sits in the package; in a checkout it is
    # in grammar/ at the top of the repository (the package holds no copy there).
    # Plain paths first: importlib.resources adds ~2 ms to every `keras-policy check`
    # (BENCHMARKS.md, figure 5), pathlib ~4 ms; it is only needed for a package imported from a zip.
    here = os.path.dirname(os.path.realpath(__file__))
    for candidate in (os.path.join(here, "policy.lark"), os.path.join(os.path.dirname(here), "grammar", "policy.lark")):
        if os.path.isfile(candidate):
            with open(candidate, encoding="utf-8") as file:
                return file.read()
    from importlib import resources

    return resources.files("policy").joinpath("policy.lark").read_text(encoding="utf-8")


@functools.cache
def _lark() -> lark.Lark:
    return lark.Lark(
        _grammar_text(),
        parser="lalr",
        lexer="basic",
        propagate_positions=True,
        maybe_placeholders=True,
        # Building the LALR tables costs ~55 ms per process; Lark's cache (a file in the temp
        # folder, keyed on the grammar's hash and Lark's version, ignored if unwritable) makes
        # it ~5 ms, which is most of `keras-policy check`'s start-up (BENCHMARKS.md, figure 5).
        cache=True,
    )


@functools.cache
def keywords() -> frozenset[str]:
    """Every keyword of the language (a metric may not be named like one)."""
    out = set()
    for term in _lark().terminals:
        pattern = term.pattern
        if pattern.type == "str" and pattern.value.isalpha():
            out.add(pattern.value)
    return frozenset(out)


def parse(text: str) -> ast.Policy:
    """Parse policy text into an AST (syntax only; see :mod:`policy.validate` for meaning).

    A text with syntax errors raises one :class:`PolicyError` listing the error of every
    rule that has one, not only the first: each rule is parsed again on its own to find them.
    """
    if not isinstance(text, str):
        raise PolicyError.plain(f"a policy must be text, got {type(text).__name__}")
    try:
        return _parse_whole(text)
    except PolicyError as first:
        found = _problems_per_rule(text)
        raise PolicyError(found if found else first.problems) from None


def _parse_whole(text: str) -> ast.Policy:
    try:
        tree = _lark().parse(text)
    except lark.exceptions.UnexpectedInput as exc:
        raise _syntax_error(text, exc) from None
    _check_depth(text, tree)
    try:
        rules = _ToAst(text).transform(tree)
    except lark.exceptions.VisitError as exc:
        if isinstance(exc.orig_exc, PolicyError):
            raise exc.orig_exc from None
        raise
    if not rules:
        raise error_at(
            text,
            (1, 1),
            "the policy is empty",
            'write at least one rule, e.g. "stop when val_loss not improving for 3"',
        )
    return ast.Policy(rules=tuple(rules), source=text, pos=ast.Pos(1, 1, *_end_of(text)))


def _problems_per_rule(text: str) -> list[Problem]:
    """The first problem of each rule, each rule parsed alone at its own place in the text.

    Only the lines the rule spans are parsed, with every character on them outside the rule
    blanked, so columns are those of the original text and lines are shifted back by the lines
    before; the source line shown is taken from the original. (Parsing the whole masked text for
    each rule would make a text of many bad rules quadratic.)
    """
    lines = text.splitlines()
    newlines = [i for i, c in enumerate(text) if c == "\n"]
    found: list[Problem] = []
    for start, end in _rule_spans(text):
        before = bisect.bisect_left(newlines, start)  # lines wholly before the rule's first line
        first = newlines[before - 1] + 1 if before else 0
        after = bisect.bisect_left(newlines, end + 1)
        last = newlines[after] if after < len(newlines) else len(text)
        masked = _blank(text[first:start]) + text[start : end + 1] + _blank(text[end + 1 : last])
        try:
            _parse_whole(masked)
        except PolicyError as err:
            for p in err.problems:
                number = p.line + before if p.line else 0
                line = lines[number - 1] if 0 < number <= len(lines) else p.source_line
                found.append(Problem(p.message, number, p.column, line, p.suggestion))
    return found


_NOT_NEWLINE = re.compile(r"[^\n]")


def _blank(text: str) -> str:
    """``text`` with every character but newlines turned into a space (lines and columns kept)."""
    return _NOT_NEWLINE.sub(" ", text)


def _rule_spans(text: str) -> list[tuple[int, int]]:
    """``(first, last)`` character indices of each non-blank rule: split at ``;`` and newlines
    outside quotes, comments skipped. ``last`` includes the rule's ``;`` when it has one."""
    spans: list[tuple[int, int]] = []
    start, quote, comment, content = 0, "", False, False
    for i, c in enumerate(text):
        if c == "\n":
            if content:
                spans.append((start, i - 1))
            start, quote, comment, content = i + 1, "", False, False
        elif comment:
            continue
        elif quote:
            quote = "" if c == quote and text[i - 1] != "\\" else quote
        elif c in "\"'":
            quote, content = c, True
        elif c == "#":
            comment = True
        elif c == ";":
            if content:
                spans.append((start, i))
            start, content = i + 1, False
        elif not c.isspace():
            content = True
    if content:
        spans.append((start, len(text) - 1))
    return spans


def _end_of(text: str) -> tuple[int, int]:
    lines = text.split("\n")
    return len(lines), len(lines[-1]) + 1


def _check_depth(text: str, tree: lark.Tree[Token]) -> None:
    """Refuse conditions whose and/or groups nest deeper than :data:`MAX_CONDITION_DEPTH`.

    Walks the tree with an explicit stack (the tree may be arbitrarily deep here, which is the
    point) and points at the opening parenthesis of the first group that is one level too deep.
    """
    stack: list[tuple[lark.Tree[Token], int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if node.data in ("any_of", "all_of"):
            depth += 1
            if depth > MAX_CONDITION_DEPTH:
                raise error_at(
                    text,
                    _opening_paren(text, node.meta),
                    f"this condition nests parentheses more than {MAX_CONDITION_DEPTH} levels deep",
                    "split it into several 'stop when' rules (they act as one 'or'), or flatten the groups",
                )
        stack.extend((child, depth) for child in node.children if isinstance(child, lark.Tree))


def _opening_paren(text: str, meta: Meta) -> tuple[int, int]:
    """The ``(`` just before a group (its own span starts at its first term), else its start."""
    i = meta.start_pos - 1
    while i >= 0 and text[i] in " \t\f\r":
        i -= 1
    if i < 0 or text[i] != "(":
        return meta.line, meta.column
    line = text.count("\n", 0, i) + 1
    return line, i - (text.rfind("\n", 0, i) + 1) + 1


# --------------------------------------------------------------------------- errors


def _describe_terminal(name: str) -> str:
    if name in _TOKEN_WORDS:
        return _TOKEN_WORDS[name]
    for term in _lark().terminals:
        if term.name == name:
            return f'"{term.pattern.value}"' if term.pattern.type == "str" else name.lower()
    return name.lower()


def _expected_words(names: set[str] | frozenset[str]) -> list[str]:
    words = {_describe_terminal(n) for n in names}
    # Keywords first (alphabetical), then the kinds of token.
    return sorted(words, key=lambda w: (not w.startswith('"'), w))


def _syntax_error(text: str, exc: lark.exceptions.UnexpectedInput) -> PolicyError:
    line, column = exc.line, exc.column
    if line is None or line < 1:  # an error at the end of text carries no position
        line, column = _end_of(text)
    if isinstance(exc, lark.exceptions.UnexpectedCharacters):
        char = exc.char
        if char in "\"'":
            return error_at(
                text, (line, column), "this string is never closed", f"add a closing {char} on the same line"
            )
        allowed = _expected_words(set(exc.allowed or ()))
        return error_at(
            text,
            (line, column),
            f"unexpected character {char!r}",
            f"expected {_join(allowed)}" if allowed else None,
        )
    assert isinstance(exc, lark.exceptions.UnexpectedToken | lark.exceptions.UnexpectedEOF)
    expected_names = set(getattr(exc, "accepts", None) or exc.expected or ())
    expected = _expected_words(expected_names)
    token = getattr(exc, "token", None)
    if token is None or token.type == "$END":
        what = "the policy ends too early"
        line, column = _end_of(text)
    elif token.type == "_SEP":
        what = "this rule is incomplete"
    else:
        what = f"unexpected {_token_text(token)}"
    suggestion = f"expected {_join(expected)}" if expected else None
    if token is not None and token.type == "NAME":
        keyword_choices = [w.strip('"') for w in expected if w.startswith('"')]
        guess = closest(str(token), keyword_choices) or closest(str(token), sorted(keywords()))
        if guess is not None and guess in keyword_choices:
            suggestion = f"did you mean {guess!r}? ({suggestion})"
    return error_at(text, (line, column), what, suggestion)


def _token_text(token: Token) -> str:
    if token.type == "NAME":
        return f"word {str(token)!r}"
    if token.type == "NUMBER":
        return f"number {token!s}"
    if token.type == "STRING":
        return f"string {token!s}"
    return repr(str(token))


def _join(words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " or " + words[-1]


# --------------------------------------------------------------------------- tree -> AST


def _pos(meta: Meta) -> ast.Pos:
    if getattr(meta, "empty", True):
        return ast.NOWHERE
    return ast.Pos(meta.line, meta.column, meta.end_line, meta.end_column)


def _tpos(token: Token) -> ast.Pos:
    return ast.Pos(token.line or 0, token.column or 0, token.end_line or 0, token.end_column or 0)


# An option after a rule's condition (``restore best``, ``cooldown 2``): its kind, its value and
# where it is written (to point at the second one when an option is given twice).
_Option = tuple[str, Any, ast.Pos]

_OPTION_WORDS = {
    "restore": "restore best",
    "ignore_first": "ignore first",
    "baseline": "baseline",
    "cooldown": "cooldown",
    "min_lr": "min lr",
}


def _flat(kind: type[ast.AnyOf] | type[ast.AllOf], parts: tuple[ast.Condition, ...], meta: Meta) -> ast.Group:
    """``A or (B or C)`` is one group of three: a part of the same kind is spliced in."""
    flat = [p for c in parts for p in (c.parts if isinstance(c, kind) else (c,))]
    return kind(parts=tuple(flat), pos=_pos(meta))


@v_args(inline=True, meta=True)
class _ToAst(Transformer[Token, Any]):
    """Builds AST nodes bottom-up; converts and range-checks numbers as it goes.

    Each method is called with the node's position and its children by name, in the order the
    grammar writes them (an optional part absent is None; anonymous keywords are left out).
    """

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    # numbers and words ---------------------------------------------------------
    def _float(self, token: Token) -> float:
        value = float(token)
        if not math.isfinite(value):
            raise error_at(self.text, _tpos(token), f"the number {token} is too large", "write a finite number")
        return value

    def _count(self, token: Token, what: str, minimum: int = 1) -> int:
        value = float(token)
        if not value.is_integer():
            raise error_at(
                self.text,
                _tpos(token),
                f"{what} must be a whole number, got {token}",
                f"write {max(minimum, math.ceil(value))}" if math.isfinite(value) else None,
            )
        if value < minimum:
            raise error_at(
                self.text, _tpos(token), f"{what} must be at least {minimum}, got {token}", f"write {minimum} or more"
            )
        if value > MAX_COUNT:
            raise error_at(
                self.text, _tpos(token), f"{what} {token} is too large (at most {MAX_COUNT})", "write a smaller number"
            )
        return int(value)

    def _path(self, token: Token) -> ast.Path:
        body = str(token)[1:-1]
        out, i = [], 0
        while i < len(body):
            if body[i] == "\\" and i + 1 < len(body):
                i += 1
            out.append(body[i])
            i += 1
        return ast.Path(value="".join(out), pos=_tpos(token))

    def _options(self, options: tuple[_Option, ...]) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        for kind, value, pos in options:
            if kind in fields:
                raise error_at(self.text, pos, f"'{_OPTION_WORDS[kind]}' is given twice", "keep one")
            fields[kind] = value
        return fields

    def _word(self, meta: Meta, word: Token) -> str:
        return str(word)

    # A keyword chosen from a few (`min`/`max`, `>=`/`<`, `improving`/`decreasing`) is its text.
    trend = cmp = direction = side = _word

    # top level ---------------------------------------------------------------
    def start(self, meta: Meta, *rules: ast.Rule | None) -> list[ast.Rule]:
        return [r for r in rules if r is not None]

    def metric(self, meta: Meta, name: Token) -> ast.Metric:
        return ast.Metric(name=str(name), pos=_pos(meta))

    def as_logged(self, meta: Meta, metric: ast.Metric) -> ast.Metric:
        return metric

    def averaged(self, meta: Meta, metric: ast.Metric, window: Token) -> ast.Metric:
        count = self._count(window, "the number of values to average")
        return ast.Metric(name=metric.name, window=count, pos=_pos(meta))

    # stopping ---------------------------------------------------------------
    def stop_when(self, meta: Meta, condition: ast.Condition, *options: _Option) -> ast.StopWhen:
        fields = self._options(options)
        if "restore" in fields:
            fields["restore_best"] = True
            fields["restore_metric"] = fields.pop("restore")
        return ast.StopWhen(condition=condition, pos=_pos(meta), **fields)

    def restore(self, meta: Meta, metric: ast.Metric | None) -> _Option:
        return ("restore", metric, _pos(meta))

    def ignore_first(self, meta: Meta, epochs: Token) -> _Option:
        return ("ignore_first", self._count(epochs, "the number of epochs to ignore", 0), _pos(meta))

    def baseline(self, meta: Meta, value: Token) -> _Option:
        return ("baseline", self._float(value), _pos(meta))

    def fail_when(self, meta: Meta, condition: ast.Condition) -> ast.FailWhen:
        return ast.FailWhen(condition=condition, pos=_pos(meta))

    def min_epochs(self, meta: Meta, number: Token) -> ast.TrainAtLeast:
        return ast.TrainAtLeast(amount=self._count(number, "the number of epochs"), unit="epochs", pos=_pos(meta))

    def min_steps(self, meta: Meta, number: Token) -> ast.TrainAtLeast:
        return ast.TrainAtLeast(amount=self._count(number, "the number of steps"), unit="steps", pos=_pos(meta))

    def stop_after(self, meta: Meta, number: Token, unit: ast.TimeUnit) -> ast.StopAfter:
        if unit in ("epochs", "steps"):
            amount: float = self._count(number, f"the number of {unit}")
        else:
            amount = self._float(number)
            if amount <= 0:
                raise error_at(self.text, _tpos(number), f"a time budget must be positive, got {number}")
            if amount.is_integer():
                amount = int(amount)
        return ast.StopAfter(amount=amount, unit=unit, pos=_pos(meta))

    def unit(self, meta: Meta, word: Token) -> ast.TimeUnit:
        if str(word) not in _TIME_UNITS:
            guess = closest(str(word), _TIME_UNITS)
            raise error_at(
                self.text,
                _tpos(word),
                f"unknown unit {str(word)!r}",
                f"did you mean {guess!r}?" if guess else "use epochs, steps, s, min or h",
            )
        return _TIME_UNITS[str(word)]

    # conditions ---------------------------------------------------------------
    def any_of(self, meta: Meta, *parts: ast.Condition) -> ast.Group:
        return _flat(ast.AnyOf, parts, meta)

    def all_of(self, meta: Meta, *parts: ast.Condition) -> ast.Group:
        return _flat(ast.AllOf, parts, meta)

    def plateau(
        self, meta: Meta, metric: ast.Metric, trend: ast.Trend, delta: tuple[float, bool] | None, patience: Token
    ) -> ast.Plateau:
        amount, relative = delta if delta is not None else (0.0, False)
        return ast.Plateau(
            metric=metric,
            trend=trend,
            delta=amount,
            relative=relative,
            patience=self._count(patience, "patience"),
            pos=_pos(meta),
        )

    def delta(self, meta: Meta, number: Token, percent: Token | None) -> tuple[float, bool]:
        value = self._float(number)
        if value < 0:
            raise error_at(
                self.text,
                _tpos(number),
                f"an improvement threshold cannot be negative, got {number}",
                f"write {str(number).lstrip('-')}",
            )
        if percent is not None:
            if value >= 100:
                raise error_at(self.text, _tpos(number), f"a relative threshold must be below 100%, got {number}%")
            return value / 100.0, True
        return value, False

    def threshold(self, meta: Meta, metric: ast.Metric, op: ast.Comparison, value: Token) -> ast.Threshold:
        return ast.Threshold(metric=metric, op=op, value=self._float(value), pos=_pos(meta))

    def not_finite(self, meta: Meta, metric: ast.Metric) -> ast.NotFinite:
        return ast.NotFinite(metric=metric, pos=_pos(meta))

    def is_nan(self, meta: Meta, metric: ast.Metric) -> ast.NotFinite:
        return ast.NotFinite(metric=metric, nan_only=True, pos=_pos(meta))

    # checkpoints ---------------------------------------------------------------
    def save_best(
        self,
        meta: Meta,
        weights: Token | None,
        metric: ast.Metric,
        direction: ast.Direction | None,
        threshold: ast.BestThreshold | None,
        path: ast.Path | None,
    ) -> ast.SaveBest:
        return ast.SaveBest(
            metric=metric,
            direction=direction,
            path=path,
            weights_only=weights is not None,
            threshold=threshold,
            pos=_pos(meta),
        )

    def best_threshold(self, meta: Meta, side: ast.Side, value: Token) -> ast.BestThreshold:
        return ast.BestThreshold(side=side, value=self._float(value), pos=_pos(meta))

    def save_top(
        self,
        meta: Meta,
        k: Token,
        weights: Token | None,
        metric: ast.Metric,
        direction: ast.Direction | None,
        path: ast.Path,
    ) -> ast.SaveTop:
        return ast.SaveTop(
            k=self._count(k, "the number of checkpoints to keep"),
            metric=metric,
            direction=direction,
            path=path,
            weights_only=weights is not None,
            pos=_pos(meta),
        )

    def save_every(
        self,
        meta: Meta,
        weights: Token | None,
        interval: tuple[int, ast.SaveUnit],
        path: ast.Path,
        keep: int | None,
    ) -> ast.SaveEvery:
        every, unit = interval
        return ast.SaveEvery(
            every=every, unit=unit, path=path, weights_only=weights is not None, keep=keep, pos=_pos(meta)
        )

    def save_timed(
        self, meta: Meta, weights: Token | None, number: Token, unit: ast.TimeUnit, path: ast.Path
    ) -> ast.SaveTimed:
        amount = self._float(number)
        if amount <= 0:
            raise error_at(self.text, _tpos(number), f"a time between saves must be positive, got {number}")
        if unit not in ("s", "min", "h"):  # unreachable: epoch(s)/step(s) are keywords, not names
            raise error_at(self.text, _tpos(number), f"unknown clock unit {unit!r}", "use s, min or h")
        return ast.SaveTimed(
            amount=int(amount) if amount.is_integer() else amount,
            unit=unit,
            path=path,
            weights_only=weights is not None,
            pos=_pos(meta),
        )

    def clock_unit(self, meta: Meta, word: Token) -> ast.TimeUnit:
        return self.unit(meta, word)

    def keep_last(self, meta: Meta, count: Token) -> int:
        return self._count(count, "the number of files to keep")

    def save_last(self, meta: Meta, weights: Token | None, path: ast.Path) -> ast.SaveLast:
        return ast.SaveLast(path=path, weights_only=weights is not None, pos=_pos(meta))

    def every_epoch(self, meta: Meta) -> tuple[int, ast.SaveUnit]:
        return 1, "epochs"

    def every_step(self, meta: Meta) -> tuple[int, ast.SaveUnit]:
        return 1, "steps"

    def every_epochs(self, meta: Meta, epochs: Token) -> tuple[int, ast.SaveUnit]:
        return self._count(epochs, "the number of epochs"), "epochs"

    def every_steps(self, meta: Meta, steps: Token) -> tuple[int, ast.SaveUnit]:
        return self._count(steps, "the number of steps"), "steps"

    def to(self, meta: Meta, path: Token) -> ast.Path:
        return self._path(path)

    # learning rate ---------------------------------------------------------------
    def reduce_lr(self, meta: Meta, factor: Token, condition: ast.Condition, *options: _Option) -> ast.ReduceLR:
        if not isinstance(condition, ast.Plateau):
            raise error_at(
                self.text,
                condition.pos,
                "the learning rate can only be multiplied when one metric stops improving",
                'write "multiply lr by F when METRIC not improving for N"',
            )
        fields = self._options(options)
        if "restore" in fields:
            metric = fields.pop("restore")
            if metric is not None:
                raise error_at(
                    self.text,
                    metric.pos,
                    "restore best on a learning-rate rule takes no metric: 'best' is its own metric's",
                    "write: restore best",
                )
            fields["restore_best"] = True
        return ast.ReduceLR(factor=self._float(factor), when=condition, pos=_pos(meta), **fields)

    def cooldown(self, meta: Meta, epochs: Token) -> _Option:
        return ("cooldown", self._count(epochs, "cooldown", 0), _pos(meta))

    def min_lr(self, meta: Meta, value: Token) -> _Option:
        return ("min_lr", self._float(value), _pos(meta))

    def schedule(self, meta: Meta, first: ast.Segment, *links: ast.Segment | _Option | Token) -> ast.Schedule:
        # Links after a comma: a segment ("then ..."), a restart period for the cosine before
        # it and how its periods and peaks change at each restart, one more milestone for the list
        # before it, or "smoothly" for the decay before it.
        segments: list[ast.Segment] = [first]
        given: set[tuple[int, str]] = set()  # (segment, "periods" | "peaks"): each once
        for link in links:
            last = segments[-1]
            if isinstance(link, tuple) and link[0] in ("periods", "peaks"):
                word, factor, pos = link
                if not isinstance(last, ast.Cosine) or last.restart is None or (len(segments), word) in given:
                    raise error_at(
                        self.text,
                        pos,
                        f"'{word} times' follows a cosine's restart period, once",
                        f'write "cosine lr to X over N steps, restart every M steps, {word} times F"',
                    )
                given.add((len(segments), word))
                field = "period_factor" if word == "periods" else "peak_factor"
                segments[-1] = dataclasses.replace(last, **{field: factor})
            elif isinstance(link, tuple) and link[0] == "smoothly":
                pos = link[2]
                if not isinstance(last, ast.Decay) or last.smooth:
                    raise error_at(
                        self.text,
                        pos,
                        "only a decay can be smooth, once",
                        'write "decay lr by F every N steps, smoothly"',
                    )
                segments[-1] = dataclasses.replace(last, smooth=True)
            elif isinstance(link, tuple):  # restart every SPAN
                _, span, pos = link
                if not isinstance(last, ast.Cosine) or last.restart is not None:
                    raise error_at(
                        self.text,
                        pos,
                        "only a cosine can restart, once",
                        'write "cosine lr to X over N steps, restart every M steps"',
                    )
                segments[-1] = dataclasses.replace(last, restart=span)
            elif isinstance(link, Token):  # one more milestone
                if not isinstance(last, ast.Milestones):
                    raise error_at(
                        self.text,
                        _tpos(link),
                        "a number here continues a milestone list",
                        'write "multiply lr by F at epochs A, B, C"',
                    )
                segments[-1] = dataclasses.replace(last, at=(*last.at, self._count(link, "a milestone", 1)))
            else:
                segments.append(link)
        return ast.Schedule(segments=tuple(segments), pos=_pos(meta))

    def more_milestone(self, meta: Meta, at: Token) -> Token:
        return at

    def periods_times(self, meta: Meta, factor: Token) -> _Option:
        return ("periods", self._float(factor), _pos(meta))

    def peaks_times(self, meta: Meta, factor: Token) -> _Option:
        return ("peaks", self._float(factor), _pos(meta))

    def smoothly(self, meta: Meta) -> _Option:
        return ("smoothly", True, _pos(meta))

    def restart(self, meta: Meta, every: ast.Span) -> _Option:
        return ("restart", every, _pos(meta))

    def span_epochs(self, meta: Meta, epochs: Token) -> ast.Span:
        return ast.Span(float(self._count(epochs, "the number of epochs")), "epochs")

    def span_steps(self, meta: Meta, steps: Token) -> ast.Span:
        return ast.Span(float(self._count(steps, "the number of steps")), "steps")

    def span_percent(self, meta: Meta, share: Token, percent: Token) -> ast.Span:
        value = self._float(share)
        if not 0 < value <= 100:
            raise error_at(
                self.text,
                _tpos(share),
                f"a share of training must be above 0% and at most 100%, got {share}%",
                "e.g. 10% of training",
            )
        return ast.Span(value, "percent")

    def warmup(self, meta: Meta, target: Token, over: ast.Span) -> ast.Warmup:
        return ast.Warmup(target=self._float(target), over=over, pos=_pos(meta))

    def cosine(self, meta: Meta, target: Token, over: ast.Span) -> ast.Cosine:
        return ast.Cosine(target=self._float(target), over=over, pos=_pos(meta))

    def linear(self, meta: Meta, target: Token, over: ast.Span) -> ast.Linear:
        return ast.Linear(target=self._float(target), over=over, pos=_pos(meta))

    def hold(self, meta: Meta, over: ast.Span) -> ast.Hold:
        return ast.Hold(over=over, pos=_pos(meta))

    def decay(self, meta: Meta, factor: Token, interval: tuple[int, ast.SaveUnit]) -> ast.Decay:
        every, unit = interval
        return ast.Decay(factor=self._float(factor), every=every, unit=unit, pos=_pos(meta))

    def milestones(self, meta: Meta, factor: Token, unit: ast.SaveUnit, first: Token) -> ast.Milestones:
        return ast.Milestones(
            factor=self._float(factor), at=(self._count(first, "a milestone", 1),), unit=unit, pos=_pos(meta)
        )

    def at_unit(self, meta: Meta, word: Token) -> ast.SaveUnit:
        return "steps" if str(word).startswith("step") else "epochs"

    def inverse_sqrt(self, meta: Meta) -> ast.InverseSqrt:
        return ast.InverseSqrt(pos=_pos(meta))

    # logging and backup ---------------------------------------------------------------
    def log_csv(self, meta: Meta, path: Token, append: Token | None) -> ast.LogCSV:
        return ast.LogCSV(path=self._path(path), append=append is not None, pos=_pos(meta))

    def log_tensorboard(self, meta: Meta, path: Token) -> ast.LogTensorBoard:
        return ast.LogTensorBoard(path=self._path(path), pos=_pos(meta))

    def backup(self, meta: Meta, path: Token, steps: int | None) -> ast.Backup:
        return ast.Backup(path=self._path(path), steps=steps, pos=_pos(meta))

    def log_lr(self, meta: Meta) -> ast.LogLR:
        return ast.LogLR(pos=_pos(meta))

    def backup_interval(self, meta: Meta, steps: Token | None = None) -> int | None:
        return self._count(steps, "the number of steps") if steps is not None else None


__all__ = ["MAX_CONDITION_DEPTH", "MAX_COUNT", "keywords", "parse"]
