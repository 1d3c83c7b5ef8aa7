"""What the public functions accept as a policy, and the ``TypeError`` for anything else.

``compile_policy``, ``simulate``, ``explain`` and ``parse_policy`` take policy text (a ``str``)
or an already parsed :class:`~policy.ast.Policy`. Anything else is a programming mistake, not
a bad policy, so it is a ``TypeError`` (not a :class:`~policy.errors.PolicyError`) whose
sentence says what is accepted. A Policy built by hand is checked for shape first (every node
of the type its field says, numbers finite and in range), so a malformed one is a ``TypeError``
or ``PolicyError`` too, never an ``AttributeError`` from deep inside the compiler.
"""

from __future__ import annotations

import functools
import types
import typing
from dataclasses import fields, is_dataclass
from typing import Any

from policy import ast
from policy.errors import PolicyError, shown


def policy_argument(value: object, caller: str) -> ast.Policy:
    """``value`` parsed (if text) and validated; a TypeError naming ``caller`` for anything else."""
    if isinstance(value, str):
        from policy import parse_policy

        return parse_policy(value)
    if isinstance(value, ast.Policy):
        from policy.validate import validate

        check_shape(value)
        return validate(value)  # validate checks the depth first
    raise TypeError(not_a_policy(value, caller))


def well_formed(value: object, caller: str) -> ast.Policy:
    """``value`` if it is a Policy of the right shape and depth (not otherwise validated)."""
    from policy.validate import check_depth

    if not isinstance(value, ast.Policy):
        raise TypeError(f"{caller}() takes a Policy from parse_policy(); got {type(value).__name__}")
    check_shape(value)
    check_depth(value)
    return value


def not_a_policy(value: object, caller: str) -> str:
    """The sentence for a policy argument that is neither text nor a Policy."""
    hint = " (decode the bytes first)" if isinstance(value, bytes | bytearray) else ""
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
        hint = ' (join a list of rules with "\\n" first)'
    policy = "a Policy" if caller == "parse_policy" else "a Policy from parse_policy()"
    return f"{caller}() takes policy text (a str) or {policy}; got {type(value).__name__}{hint}"


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
