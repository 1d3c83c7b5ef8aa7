"""The reference: what a policy does over a metric history, in plain Python, without Keras.

This is the executable specification of ``docs/semantics.md`` (and of the Keras 3.15.1 callbacks
the Keras-backed rules compile to). Property tests run the compiled callbacks inside real Keras
and check they make exactly the decisions :func:`simulate` predicts.

    >>> from policy.reference import simulate
    >>> out = simulate("stop when val_loss not improving for 2", {"val_loss": [1.0, 0.9, 0.95, 0.97, 0.5]})
    >>> out.epochs_run, out.stop.epoch
    (4, 3)

``simulate(policy, history, *, initial_lr=None, steps_per_epoch=None, batch_losses=None,
step_seconds=None, strict=False, validation_freq=1, steps_per_execution=1, initial_epoch=0,
backend=None, semantics=None) -> Outcome``

- ``policy``: policy text or a :class:`policy.ast.Policy` (checked with the validator).
- ``history``: the logs Keras hands to ``on_epoch_end``, one entry per epoch, either as a mapping
  ``metric -> per-epoch values`` (``History.history``; a ``History`` object is accepted too) or as
  a list of per-epoch dicts (rows of a CSVLogger file). ``None`` (or a missing key, or "NA"/"" in
  a row) means the metric was not logged that epoch. Values are turned into plain floats as
  Keras's ``pythonify_logs`` does; numeric strings are read, anything else non-numeric is a
  :class:`PolicyError`, as are series of different lengths. An ``epoch`` key is CSVLogger's index
  column and is ignored. Training runs for as many epochs as the history has, unless a rule stops
  it; values after the stop are never read.
- ``initial_lr``: the optimizer's learning rate at train begin. Required when the policy has an lr
  rule; with it, ``Outcome.learning_rates`` lists the float32 lr of every epoch run.
- ``steps_per_epoch``: training batches per epoch, for step budgets and step checkpoints.
- ``batch_losses``: per epoch, the list of running-average training losses after each batch
  (``logs["loss"]`` at ``on_train_batch_end``; None = not logged). Its length per epoch is that
  epoch's number of batches (must agree with ``steps_per_epoch`` if both are given). Used by
  ``stop when loss is not finite`` (TerminateOnNaN) and by ``{loss}`` in step-checkpoint paths.
  Without it TerminateOnNaN is judged from the epoch's ``loss`` (which is non-finite exactly when a
  batch's running loss was); that is refused if other step-level rules need the exact batch.
- ``step_seconds``: how long each training batch takes, for time budgets: one number for every
  batch, or per epoch a list of per-batch durations (shaped like ``batch_losses``). The elapsed
  time after a batch is the running float64 sum of the durations so far, from 0 at train begin.
- ``backend``: ``"tensorflow"``, ``"jax"`` or ``"torch"``, the Keras backend the run is on; by
  default the one Keras would use (``KERAS_BACKEND``, else ``~/.keras/keras.json``, else
  TensorFlow), read without importing keras. The backends differ in two float32 facts of
  Keras's monitor comparisons (:mod:`policy.reference.backends`).
- ``validation_freq``: ``fit(validation_freq=k)``: ``val_*`` metrics exist only after epochs e with
  ``(e + 1) % k == 0``. A mapping's ``val_*`` series may then hold one value per validation epoch
  (as ``History.history`` records it); a ``val_*`` value on an epoch that does not validate is a
  :class:`PolicyError`.
- ``steps_per_execution``: ``compile(steps_per_execution=k)``: batch-level rules see one batch end
  per k batches (the index of the chunk's last batch); see docs/semantics.md, "Fit arguments".
- ``initial_epoch``: ``fit(initial_epoch=e0)``: the history's first entry is epoch e0; every epoch in
  the outcome is absolute.
- ``semantics``: the decision primitives; by default the real ones for ``backend``
  (:func:`semantics_for`; :data:`KERAS_3_15` is TensorFlow's); subclasses of
  :class:`Semantics` are deliberate mutants (see :mod:`policy.reference.semantics`).

A rule whose real callback would raise inside ``fit`` (a path placeholder missing from the logs, a
metric beyond float32 range in a monitor) makes :func:`simulate` raise :class:`KerasWouldRaise`,
a :class:`PolicyError`.

Stops: ``Outcome.stop`` is the first rule to set ``stop_training`` in time. A batch-level rule
(TerminateOnNaN, step and time budgets) acts before the epoch-end rules of the same epoch; among
rules acting in the same hook call (same batch, or the same ``on_epoch_end``) the first in rule
order is recorded.

The modelled Keras release is :data:`MODELLED_KERAS`; :func:`check_keras_version` guards others.
"""

from __future__ import annotations

from policy.reference.backends import BACKENDS, FACTS, Backend, BackendFacts, default_backend
from policy.reference.semantics import KERAS_3_15, KerasWouldRaise, Semantics, round_f32, semantics_for
from policy.reference.simulate import simulate
from policy.reference.version import MODELLED_KERAS, UnmodelledKerasError, check_keras_version

__all__ = [
    "BACKENDS",
    "FACTS",
    "KERAS_3_15",
    "MODELLED_KERAS",
    "Backend",
    "BackendFacts",
    "KerasWouldRaise",
    "Semantics",
    "UnmodelledKerasError",
    "check_keras_version",
    "default_backend",
    "round_f32",
    "semantics_for",
    "simulate",
]
