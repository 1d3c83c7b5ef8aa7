"""keras-policy: training-control rules for Keras, written as one sentence.

    >>> from policy import parse_policy, format_policy
    >>> p = parse_policy("stop when val_loss not improving for 3; save best on val_loss min")
    >>> print(format_policy(p))
    stop when val_loss not improving for 3
    save best on val_loss min

Importing this package, parsing, checking and formatting never import keras or
TensorFlow; only :func:`compile_policy` does, when it is called.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from policy.ast import Policy
from policy.errors import PolicyError, Problem
from policy.printer import format_policy

if TYPE_CHECKING:
    import keras

    from policy.callbacks.step_schedule import lr_schedule
    from policy.describe import describe
    from policy.explain import explain
    from policy.load import load
    from policy.outcome import Outcome, Stop
    from policy.reference.simulate import simulate
    from policy.replays import Report, Tolerance

__all__ = [
    "Outcome",
    "Policy",
    "PolicyError",
    "Problem",
    "Report",
    "Stop",
    "compile_policy",
    "describe",
    "explain",
    "format_policy",
    "load",
    "lr_schedule",
    "parse_policy",
    "replay",
    "simulate",
    "why_failed",
    "why_stopped",
]
__version__ = "0.1.0"


def parse_policy(text: str | Policy) -> Policy:
    """Parse and check policy text; raise :class:`PolicyError` listing every problem.

    A :class:`Policy` is checked and returned as is; anything else is a ``TypeError``. Every
    entry point that takes policy text (the CLI, config files, ``compile_policy``, ``simulate``,
    ``describe``) reads it here.
    """
    if isinstance(text, str):  # the common case, and `keras-policy check`'s: no shape checks to load
        from policy.parser import parse
        from policy.validate import validate

        return validate(parse(text))
    from policy.accept import policy_argument

    return policy_argument(text, "parse_policy")


def compile_policy(policy: str | Policy, *, strict: bool = True) -> list[keras.callbacks.Callback]:
    """Turn a policy into Keras callbacks for ``model.fit(callbacks=...)``, in rule order.

    With ``strict`` (the default) a monitored metric or checkpoint-path placeholder missing
    from the logs stops training with a :class:`PolicyError` naming the closest metric that
    does exist (training metrics and placeholders at the first epoch end, ``val_*`` metrics at
    the first epoch that validated; see :mod:`policy.strictness`); ``strict=False`` keeps
    Keras's own warning instead.
    """
    from policy.accept import policy_argument

    parsed = policy_argument(policy, "compile_policy")
    if not isinstance(strict, bool):
        raise TypeError(f"compile_policy(strict=...) takes True or False; got {type(strict).__name__}")
    from policy.compiler import compile_rules

    return compile_rules(parsed, strict=strict)


def replay(
    policy_or_variants: str | Policy | Sequence[str | Policy],
    histories: Any,
    *,
    objective: str | None = None,
    tolerance: str | float | Tolerance = "1%",
    strict: bool = True,
    initial_lr: float | None = None,
    steps_per_epoch: int | None = None,
) -> Report:
    """Replay a policy, or its variants, over many recorded runs: epochs saved, objective lost.

    ``policy_or_variants`` is policy text (braces give variants: ``"... for {2,3,5,8}"``), a
    Policy, or a list; ``histories`` are paths (CSV, JSON, TensorBoard folders, folders, globs),
    in-memory ``History.history`` dicts or ``History`` objects, or a dict naming them. Each run
    is decided exactly as :func:`simulate` decides it. See :mod:`policy.replays` for every figure
    of the :class:`~policy.replays.Report` and the recommendation rule.
    """
    from policy.replays import replay as _replay

    return _replay(
        policy_or_variants,
        histories,
        objective=objective,
        tolerance=tolerance,
        strict=strict,
        initial_lr=initial_lr,
        steps_per_epoch=steps_per_epoch,
    )


# Names the package answers lazily (PEP 562), so that `import policy` and `keras-policy check`
# pay only for the parser, the checker and the printer.
_LAZY = {
    "Outcome": "policy.outcome",
    "Report": "policy.replays",
    "Stop": "policy.outcome",
    "describe": "policy.describe",
    "explain": "policy.explain",
    "load": "policy.load",
    # Step schedules import keras; the function itself, not a second signature.
    "lr_schedule": "policy.callbacks.step_schedule",
    # The reference's own function (its docstring lists every input), not a second signature.
    "simulate": "policy.reference.simulate",
}


def __getattr__(name: str) -> Any:
    """The names in ``_LAZY``, imported from their modules when first asked for."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'policy' has no attribute {name!r}")


class _Package(types.ModuleType):
    """The package's own type: ``policy.describe`` stays the function when its submodule loads.

    Importing a submodule for the first time binds it as an attribute of the package, which would
    hide the lazily imported function of the same name (``describe``, ``explain``, ``load``) from
    ``__getattr__``. The submodule stays in ``sys.modules``; only the attribute is not bound.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


_SHADOWED = frozenset(name for name, module in _LAZY.items() if module == f"policy.{name}")
sys.modules[__name__].__class__ = _Package


def why_stopped(callbacks: Iterable[object]) -> Stop | None:
    """After ``fit``: which rule of a compiled policy stopped training, at which epoch, and why.

    ``callbacks`` is the list :func:`compile_policy` returned (other callbacks may be mixed in).
    None means no rule stopped training: it ran for all its epochs.
    """
    if isinstance(callbacks, str | bytes) or not isinstance(callbacks, Iterable):
        raise TypeError(
            f"why_stopped() takes the list compile_policy() returned; got {type(callbacks).__name__}"
        )
    from policy.compiler import why_stopped as _why_stopped

    return _why_stopped(callbacks)



def why_failed(callbacks: Iterable[object]) -> Stop | None:
    """After ``fit`` raised: which ``fail when`` rule of a compiled policy made it raise, at which
    epoch, and why; None if none did (the error came from elsewhere, or ``fit`` returned)."""
    if isinstance(callbacks, str | bytes) or not isinstance(callbacks, Iterable):
        raise TypeError(f"why_failed() takes the list compile_policy() returned; got {type(callbacks).__name__}")
    from policy.compiler import why_failed as _why_failed

    return _why_failed(callbacks)
