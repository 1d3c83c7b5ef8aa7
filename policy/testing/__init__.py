"""Testing helpers: run a policy inside a real Keras ``fit`` over a scripted history."""

from __future__ import annotations

from policy.testing.harness import Run, ScriptedHistory, run_callbacks, run_in_keras, tiny_model

__all__ = ["Run", "ScriptedHistory", "run_callbacks", "run_in_keras", "tiny_model"]
