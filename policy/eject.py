"""Policy -> the Keras code a person would write by hand (``keras-policy compile --python``).

For users who want to leave the DSL behind, or just see what it does: the output is a
runnable module with the imports and a ``callbacks = [...]`` list. The calls are each rule's
plan (:mod:`policy.plan`), the one :mod:`policy.compiler` builds from: rules Keras has become
``keras.callbacks.*`` calls, rules it lacks construct our classes from :mod:`policy.callbacks`.
Helpers only ``compile_policy`` adds (the strict metric check, FitStart, the TerminateOnNaN
recorder) are left out; hand-written code does without them. No keras import here.
"""

from __future__ import annotations

from policy import ast
from policy.plan import plan_policy
from policy.printer import format_policy


def eject(policy: ast.Policy) -> str:
    """Python source building the policy's callbacks, ending with a newline."""
    plans = plan_policy(policy)
    imports: dict[str, set[str]] = {}
    for plan in plans:
        for call in plan.written():
            for module, name in call.imports():
                imports.setdefault(module, set()).add(name)
    header = "\n".join(f"    {line}" for line in format_policy(policy).splitlines())
    out = [
        f'"""Keras callbacks for this policy, written out by keras-policy:\n\n{header}\n\n'
        "compile_policy() also puts a MetricCheck first, which fails the first epoch if a watched\n"
        'metric is missing from the logs; written by hand, Keras only warns."""',
        "",
        "import keras",
    ]
    if imports:
        out.append("")
        for module, names in sorted(imports.items()):
            line = f"from {module} import {', '.join(sorted(names))}"
            if len(line) > 100:  # one name a line, as a formatter would
                line = f"from {module} import (\n" + "".join(f"    {n},\n" for n in sorted(names)) + ")"
            out.append(line)
    # `train at least` holds back other rules' stops: its callback is built first, as `minimum`,
    # and wraps each held rule's callback (minimum.hold(...) puts the pair around it).
    minimum = next((p for p in plans if p.callback.name in ("MinimumEpochs", "MinimumSteps")), None)
    if minimum is not None:
        out += ["", f"minimum = {minimum.callback.source()}"]
    out += ["", "callbacks = ["]
    for plan in plans:
        out.append(f"    # {plan.text}")
        for call in plan.written():
            if plan is minimum and call is plan.callback:
                out.append("    minimum,")
            elif plan.held and minimum is not None and call is plan.callback:
                out.append(f"    *minimum.hold({call.source()}),")
            else:
                out.append(f"    {call.source()},")
    out.append("]")
    return "\n".join(out) + "\n"
