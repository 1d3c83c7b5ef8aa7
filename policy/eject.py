"""Policy -> the Keras code a person would write by hand (``keras-policy compile --python``).

For users who want to leave the DSL behind, or just see what it does: the output is a
runnable module with the imports and a ``callbacks = [...]`` list. Rules Keras has become
``keras.callbacks.*`` calls; rules it lacks import our classes from ``policy.callbacks``.
The calls come from :func:`policy.explain.callback_call`, so ``explain`` and ``compile``
never disagree. No keras import here.
"""

from __future__ import annotations

from policy import ast
from policy.explain import KERAS, OUR_SCHEDULES, OURS, callback_call
from policy.printer import format_policy, rule


def eject(policy: ast.Policy) -> str:
    """Python source building the policy's callbacks, ending with a newline."""
    calls = [callback_call(r) for r in policy.rules]
    ours = sorted({c.name for c in calls if c.module == OURS})
    needs_schedule = any(isinstance(r, ast.Schedule) for r in policy.rules)
    header = "\n".join(f"    {line}" for line in format_policy(policy).splitlines())
    out = [f'"""Keras callbacks for this policy, written out by keras-policy:\n\n{header}\n"""', ""]
    out.append("import keras")
    if ours or needs_schedule:
        out.append("")
    if ours:
        out.append(f"from {OURS} import {', '.join(ours)}")
    if needs_schedule:
        out.append(f"from {OUR_SCHEDULES} import Schedule")
    out += ["", "callbacks = ["]
    for r, call in zip(policy.rules, calls, strict=True):
        out.append(f"    # {rule(r)}")
        out.append(f"    {call.text(qualified=call.module == KERAS)},")
    out.append("]")
    return "\n".join(out) + "\n"

