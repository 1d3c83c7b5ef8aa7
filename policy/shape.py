"""What a hand-built policy must be before anything walks it: its shape, and how deep its conditions nest.

Every other check (and the printer, compiler and reference) walks conditions recursively; a
hand-built AST may nest deeper than any parsed text can (the parser refuses such text), so the
depth is checked first, without recursion, and the type of every field before any check reads it.
Its own module so that validation, the printer and the argument checks of the public functions
(:mod:`policy.accept`) share it without importing each other.
"""

from __future__ import annotations

import functools
import types
import typing
from collections.abc import Iterator
from dataclasses import fields, is_dataclass
from typing import Any

from policy import ast
from policy.errors import PolicyError, problem_at, shown

_TOO_DEEP = f"this condition nests and/or groups more than {ast.MAX_CONDITION_DEPTH} levels deep"


def check_depth(policy: ast.Policy) -> None:
    """Raise PolicyError if a condition nests and/or groups deeper than ``MAX_CONDITION_DEPTH``.

    Every other check (and the printer, compiler and reference) walks conditions recursively; a
    hand-built AST may nest deeper than any parsed text can (the parser refuses it), so this is
    checked first and alone, without recursion.
    """
    too_deep = [
        problem_at(policy.source, condition.pos, _TOO_DEEP, "split the condition into several rules")
        for condition in _conditions(policy)
        if ast.condition_depth(condition) > ast.MAX_CONDITION_DEPTH
    ]
    if too_deep:
        raise PolicyError(too_deep)


def _conditions(policy: ast.Policy) -> Iterator[ast.Condition]:
    for rule in policy.rules:
        if isinstance(rule, ast.StopWhen | ast.FailWhen):
            yield rule.condition
        elif isinstance(rule, ast.ReduceLR):
            yield rule.when


def well_formed(value: object, caller: str) -> ast.Policy:
    """``value`` if it is a Policy of the right shape and depth (not otherwise validated)."""
    if not isinstance(value, ast.Policy):
        raise TypeError(f"{caller}() takes a Policy from parse_policy(); got {type(value).__name__}")
    check_shape(value)
    check_depth(value)
    return value


# --------------------------------------------------------------------------- hand-built ASTs


@typing.no_type_check
def check_shape(policy: ast.Policy) -> None:
    """Raise TypeError if a node of ``policy`` is not of its field's type, PolicyError if a number
    is not finite or a count is out of range. Walks with an explicit stack, so any depth is safe."""
    from policy.parser import MAX_COUNT

    stack: list[tuple[Any, Any, str]] = [(policy, ast.Policy, "policy")]
    while stack:
        value, expected, where = stack.pop()
        if not _matches(value, expected):
            raise TypeError(f"{where} must be {_describe(expected)}; got {type(value).__name__} {shown(value)}")
        if isinstance(value, bool):
            continue
        if isinstance(value, int) and _is_count(expected):
            if not 0 <= value <= MAX_COUNT:
                raise PolicyError.plain(f"{where} must be a whole number from 0 to {MAX_COUNT}, got {shown(value)}")
        elif isinstance(value, int | float) and not (abs(value) <= _FLOAT_MAX):  # NaN fails too
            raise PolicyError.plain(f"{where} must be a finite number, got {shown(value)}")
        if isinstance(value, tuple) and not is_dataclass(value):
            item = typing.get_args(expected)[0]
            stack.extend((v, item, f"{where}[{i}]") for i, v in reversed(list(enumerate(value))))
        elif is_dataclass(value) and isinstance(value, ast.Node):
            hints = _hints(type(value))
            for f in reversed(fields(value)):
                if f.name not in ("pos", "source"):
                    stack.append((getattr(value, f.name), hints[f.name], f"{where}.{f.name}"))


_FLOAT_MAX = 1.7976931348623157e308


def _is_count(expected: Any) -> bool:
    """A field of whole numbers (patience, k, epochs): ``int``, maybe optional, never ``float``."""
    options = typing.get_args(expected) or (expected,)
    return int in options and float not in options


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, vars(ast))


def _matches(value: object, expected: Any) -> bool:
    origin = typing.get_origin(expected)
    if expected is type(None) or expected is None:
        return value is None
    if origin is typing.Literal:
        return isinstance(value, str) and value in typing.get_args(expected)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, option) for option in typing.get_args(expected))
    if origin is tuple:
        return isinstance(value, tuple)
    if expected is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def _describe(expected: Any) -> str:
    origin = typing.get_origin(expected)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(expected))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(option) for option in typing.get_args(expected))
    if origin is tuple:
        return f"a tuple of {_describe(typing.get_args(expected)[0])}"
    if expected is type(None):
        return "None"
    return getattr(expected, "__name__", str(expected))
