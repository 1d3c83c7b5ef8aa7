"""Which Keras releases the reference models, and a guard for the others.

The reference encodes Keras 3.15.1 to the bit. Only that release has been checked (by reading
its callbacks and by ``tests/test_reference_vs_keras_facts.py``), so it is the only one listed:
a neighbouring release is not assumed to agree, and pyproject.toml accepts exactly this list.
One change is known: keras PR 23559 (merged after 3.15.1) makes EarlyStopping reset ``wait``
on every improvement, even one that does not beat the baseline, and rejects negative patience.
The language keeps 3.15.1's ``baseline`` on such a Keras (the compiler switches to
``policy.callbacks.baseline.BaselineEarlyStopping``), so the reference's baseline rule is the
language's on every release; what else a new release changes must be checked before it is listed.
"""

from __future__ import annotations

from importlib import metadata
from typing import Final

MODELLED_KERAS: Final[tuple[str, ...]] = ("3.15.1",)
"""Keras releases whose callback semantics the reference reproduces."""


class UnmodelledKerasError(RuntimeError):
    """The installed (or named) Keras is not one the reference models."""


def check_keras_version(version: str | None = None) -> None:
    """Raise :class:`UnmodelledKerasError` unless ``version`` is a modelled Keras release.

    Without ``version``, reads the installed distribution's version from package metadata
    (``importlib.metadata``), which does not import keras. A local suffix (``3.15.1+cpu``) is
    ignored.
    """
    if version is None:
        try:
            version = metadata.version("keras")
        except metadata.PackageNotFoundError:
            raise UnmodelledKerasError("keras is not installed, so there is no Keras to compare with") from None
    release = version.split("+", 1)[0].strip()
    if release not in MODELLED_KERAS:
        modelled = ", ".join(MODELLED_KERAS)
        raise UnmodelledKerasError(
            f"the reference models Keras {modelled}, not {version}. Callback semantics change between "
            "releases: keras-team/keras PR 23559 (after 3.15.1) makes EarlyStopping reset its wait on any "
            "improvement, even below the baseline, so predictions for other releases cannot be trusted. "
            "Re-check docs/semantics.md against that release and add it to MODELLED_KERAS."
        )
