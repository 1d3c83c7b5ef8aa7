"""Testing helpers for policies.

- Hypothesis strategies (:mod:`policy.testing.strategies`, pure Python): ``policies()``,
  ``policy_texts()``, ``histories()`` and whole ``cases()``, for property tests of your own policies
  against :func:`policy.simulate`.
- A harness (:mod:`policy.testing.harness`, imports keras when called): ``run_in_keras`` runs a
  policy's compiled callbacks inside a real ``model.fit`` over a scripted history and returns the
  same :class:`policy.Outcome` that ``simulate`` predicts.
"""

from __future__ import annotations

from policy.testing.harness import Run, ScriptedHistory, run_callbacks, run_in_keras, tiny_model
from policy.testing.strategies import Case, cases, histories, policies, policy_texts

__all__ = [
    "Case",
    "Run",
    "ScriptedHistory",
    "cases",
    "histories",
    "policies",
    "policy_texts",
    "run_callbacks",
    "run_in_keras",
    "tiny_model",
]
