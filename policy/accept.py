"""What the public functions accept as a policy, and the ``TypeError`` for anything else.

``compile_policy``, ``simulate``, ``explain`` and ``parse_policy`` take policy text (a ``str``)
or an already parsed :class:`~policy.ast.Policy`. Anything else is a programming mistake, not
a bad policy, so it is a ``TypeError`` (not a :class:`~policy.errors.PolicyError`) whose
sentence says what is accepted. A Policy built by hand is checked for shape first (every node
of the type its field says, numbers finite and in range), so a malformed one is a ``TypeError``
or ``PolicyError`` too, never an ``AttributeError`` from deep inside the compiler.
"""

from __future__ import annotations

from policy import ast
from policy.shape import check_shape


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


def not_a_policy(value: object, caller: str) -> str:
    """The sentence for a policy argument that is neither text nor a Policy."""
    hint = " (decode the bytes first)" if isinstance(value, bytes | bytearray) else ""
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
        hint = ' (join a list of rules with "\\n" first)'
    policy = "a Policy" if caller == "parse_policy" else "a Policy from parse_policy()"
    return f"{caller}() takes policy text (a str) or {policy}; got {type(value).__name__}{hint}"
