"""Testing helpers: run a policy inside a real Keras ``fit`` over a scripted history."""

from __future__ import annotations

from policy.testing.harness import Run, ScriptedHistory, run_callbacks, run_in_keras, tiny_model

__all__ = ["Run", "ScriptedHistory", "run_callbacks", "run_in_keras", "tiny_model"]

# Hypothesis strategies for property-testing policies (pure Python; no keras import).
from policy.testing.strategies import Case, cases, histories, policies, policy_texts

__all__ += ["Case", "cases", "histories", "policies", "policy_texts"]
